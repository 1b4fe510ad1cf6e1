//! Scalar functions whose output can be far larger than their input, bounded before they run.
//!
//! DataFusion's memory pool accounts what sorts, joins and aggregations hold, not the arrays a
//! projection computes: `repeat('x', 1500000000)` or `range(1, 1e9)` would allocate gigabytes
//! outside any limit, before anything could stop them. [`install`] replaces each such function in
//! a session with a [`Bounded`] copy that estimates, from its arguments alone, how many bytes one
//! call (one batch, or one constant while planning) would produce, and refuses the call as
//! exhausted memory when that is above the limit; after the call, the output is measured too.
//! The functions that only combine their inputs (`concat`, `array_concat`, …) are bounded by the
//! sum of their inputs, so chains of them cannot grow past the limit either.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text `n` times.
    Repeat,
    /// `lpad`/`rpad(text, n[, fill])`: `n` characters of up to four bytes.
    Pad,
    /// `array_repeat(element, n)`, `array_resize(array, n[, value])`: `n` elements, each at
    /// most the size of the first argument's row.
    Elements,
    /// `range`/`generate_series(start, stop[, step])`: one value per step.
    Series,
    /// `replace(text, from, to)`: every `from` may become `to`.
    Replace,
    /// `regexp_replace(text, pattern, to[, flags])`: every position may become `to`.
    RegexpReplace,
    /// The output holds the inputs (`concat`, `array_concat`, `array_append`, …).
    Sum,
}

/// The functions bounded, by name (aliases follow their function).
const BOUNDED: [(&str, Growth); 16] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::Elements),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::RegexpReplace),
    ("concat", Growth::Sum),
    ("concat_ws", Growth::Sum),
    ("array_concat", Growth::Sum),
    ("array_append", Growth::Sum),
    ("array_prepend", Growth::Sum),
    ("make_array", Growth::Sum),
    ("string_to_array", Growth::Sum),
    ("array_resize", Growth::Elements),
];

/// Replaces every function of [`BOUNDED`] registered in `ctx` by a copy that refuses calls whose
/// output would exceed `max_bytes`.
pub fn install(ctx: &SessionContext, max_bytes: usize) {
    let state = ctx.state();
    for (name, growth) in BOUNDED {
        let Some(inner) = state.scalar_functions().get(name).cloned() else {
            continue;
        };
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner,
            growth,
            max_bytes,
        }));
    }
}

/// The `||` operators one expression may chain: each is DataFusion's own kernel, not a function
/// [`install`] can bound, and a chain of them over one long value would grow with its length.
pub const MAX_CONCAT_CHAIN: usize = 16;

/// Refuses a plan with an expression that chains more than [`MAX_CONCAT_CHAIN`] `||`.
pub fn check_plan(plan: &LogicalPlan) -> Result<()> {
    let mut longest = 0usize;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            let mut chain = 0usize;
            expr.apply(|e| {
                if let Expr::BinaryExpr(BinaryExpr {
                    op: Operator::StringConcat,
                    ..
                }) = e
                {
                    chain += 1;
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
            longest = longest.max(chain);
            Ok(TreeNodeRecursion::Continue)
        })
    })?;
    if longest > MAX_CONCAT_CHAIN {
        return Err(DataFusionError::ResourcesExhausted(format!(
            "an expression chains {longest} || operators, more than the {MAX_CONCAT_CHAIN} allowed: use concat()"
        )));
    }
    Ok(())
}

/// A function refused when its output would exceed `max_bytes`; see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    max_bytes: usize,
}

/// The refusal, as exhausted memory so that every surface reports it as the memory limit.
fn too_large(name: &str, bytes: u128, max: usize) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name} would produce about {bytes} bytes, more than the {max} bytes one function call may"
    ))
}

/// Per-row values of an argument, as an array of `rows` (a constant repeated).
fn as_array(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    value.to_array(rows.max(1))
}

/// Byte length of each row of a text or binary argument (0 for nulls and other types).
fn byte_lengths(value: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    if let ColumnarValue::Scalar(scalar) = value {
        let len = scalar_bytes(scalar);
        return Ok(vec![len; rows.max(1)]);
    }
    let array = as_array(value, rows)?;
    let lengths = match arrow::compute::kernels::length::length(&array) {
        Ok(lengths) => cast(&lengths, &DataType::Int64)?,
        Err(_) => return Ok(vec![row_bytes(&array); array.len()]),
    };
    let lengths = lengths
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.iter().map(|v| v.unwrap_or(0).max(0) as u64).collect())
        .unwrap_or_default();
    Ok(lengths)
}

/// Bytes of a constant's value (text and binary: their length; anything else: its size).
fn scalar_bytes(scalar: &ScalarValue) -> u64 {
    match scalar {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as u64,
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => b.len() as u64,
        other => other.size() as u64,
    }
}

/// Average bytes per row of an array.
fn row_bytes(array: &ArrayRef) -> u64 {
    (array.get_array_memory_size() / array.len().max(1)).max(1) as u64
}

/// Each row of an integer argument (nulls as 0); `None` when it is not an integer.
fn integers(value: &ColumnarValue, rows: usize) -> Result<Option<Vec<i64>>> {
    let array = as_array(value, rows)?;
    if !array.data_type().is_integer() && !array.data_type().is_floating() {
        return Ok(None);
    }
    let array = cast(&array, &DataType::Int64)?;
    Ok(array
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.iter().map(|v| v.unwrap_or(0)).collect()))
}

/// Bytes one argument holds over the call's rows (a constant counts once per row).
fn held_bytes(value: &ColumnarValue, rows: usize) -> u128 {
    match value {
        ColumnarValue::Scalar(scalar) => u128::from(scalar_bytes(scalar)) * rows.max(1) as u128,
        ColumnarValue::Array(array) => array.get_array_memory_size() as u128,
    }
}

/// Number of values a series from `start` to `stop` by `step` holds, for integers and for
/// times stepped by an interval; `None` when it cannot be told.
fn series_len(args: &[ColumnarValue], rows: usize) -> Result<Option<Vec<u128>>> {
    let (start, stop, step) = match args {
        [stop] => (None, stop, None),
        [start, stop] => (Some(start), stop, None),
        [start, stop, step, ..] => (Some(start), stop, Some(step)),
        [] => return Ok(Some(Vec::new())),
    };
    if let Some(stops) = integers(stop, rows)? {
        let starts = match start {
            Some(s) => integers(s, rows)?.unwrap_or_else(|| vec![0; stops.len()]),
            None => vec![0; stops.len()],
        };
        let steps = match step {
            Some(s) => integers(s, rows)?.unwrap_or_else(|| vec![1; stops.len()]),
            None => vec![1; stops.len()],
        };
        return Ok(Some(
            (0..stops.len())
                .map(|i| {
                    let span = (i128::from(stops[i]) - i128::from(starts[i])).unsigned_abs();
                    span / i128::from(steps[i]).unsigned_abs().max(1) + 1
                })
                .collect(),
        ));
    }
    // Times: the span in microseconds over the step's length (a month as 28 days, the
    // shortest, so the estimate never falls short).
    let (Some(start), Some(step)) = (start, step) else {
        return Ok(None);
    };
    let micros = |value: &ColumnarValue| -> Result<Option<Vec<i64>>> {
        let array = as_array(value, rows)?;
        let target = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);
        if !matches!(
            array.data_type(),
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
        ) {
            return Ok(None);
        }
        let array = cast(&cast(&array, &target)?, &DataType::Int64)?;
        Ok(array
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.iter().map(|v| v.unwrap_or(0)).collect()))
    };
    let (Some(starts), Some(stops)) = (micros(start)?, micros(stop)?) else {
        return Ok(None);
    };
    let step_micros = match step {
        ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(i))) => {
            i128::from(i.months) * 28 * 86_400_000_000
                + i128::from(i.days) * 86_400_000_000
                + i128::from(i.nanoseconds / 1000)
        }
        ColumnarValue::Scalar(ScalarValue::IntervalDayTime(Some(i))) => {
            i128::from(i.days) * 86_400_000_000 + i128::from(i.milliseconds) * 1000
        }
        ColumnarValue::Scalar(ScalarValue::IntervalYearMonth(Some(months))) => {
            i128::from(*months) * 28 * 86_400_000_000
        }
        _ => return Ok(None),
    }
    .unsigned_abs()
    .max(1);
    Ok(Some(
        starts
            .iter()
            .zip(&stops)
            .map(|(a, b)| (i128::from(*b) - i128::from(*a)).unsigned_abs() / step_micros + 1)
            .collect(),
    ))
}

impl Bounded {
    /// Bytes the call would produce at most, as far as its arguments tell.
    fn estimate(&self, args: &ScalarFunctionArgs) -> Result<u128> {
        let rows = args.number_rows;
        let a = &args.args;
        let arg = |i: usize| a.get(i);
        let sum = |values: Vec<u128>| values.into_iter().fold(0u128, u128::saturating_add);
        Ok(match self.growth {
            Growth::Repeat => match (arg(0), arg(1)) {
                (Some(text), Some(n)) => {
                    let lengths = byte_lengths(text, rows)?;
                    let counts = integers(n, rows)?.unwrap_or_default();
                    sum(lengths
                        .iter()
                        .zip(&counts)
                        .map(|(len, n)| u128::from(*len) * (*n).max(0) as u128)
                        .collect())
                }
                _ => 0,
            },
            Growth::Pad => match arg(1) {
                Some(n) => {
                    let counts = integers(n, rows)?.unwrap_or_default();
                    sum(counts.iter().map(|n| (*n).max(0) as u128 * 4).collect())
                }
                None => 0,
            },
            Growth::Elements => match (arg(0), arg(1)) {
                (Some(first), Some(n)) => {
                    let per_element = match first {
                        ColumnarValue::Scalar(s) => scalar_bytes(s).max(8),
                        ColumnarValue::Array(array) => row_bytes(array).max(8),
                    };
                    let counts = integers(n, rows)?.unwrap_or_default();
                    sum(counts
                        .iter()
                        .map(|n| (*n).max(0) as u128 * u128::from(per_element))
                        .collect())
                }
                _ => 0,
            },
            Growth::Series => match series_len(a, rows)? {
                Some(lengths) => sum(lengths.into_iter().map(|n| n * 8).collect()),
                None => 0,
            },
            Growth::Replace | Growth::RegexpReplace => match (arg(0), arg(1), arg(2)) {
                (Some(text), Some(from), Some(to)) => {
                    let texts = byte_lengths(text, rows)?;
                    let froms = byte_lengths(from, rows)?;
                    let tos = byte_lengths(to, rows)?;
                    sum((0..texts.len())
                        .map(|i| {
                            let (text, to) = (u128::from(texts[i]), u128::from(tos[i]));
                            let matches = if self.growth == Growth::Replace {
                                text / u128::from(froms[i].max(1))
                            } else {
                                text + 1
                            };
                            text + matches * to
                        })
                        .collect())
                }
                _ => 0,
            },
            Growth::Sum => sum(a.iter().map(|v| held_bytes(v, rows)).collect()),
        })
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let estimate = self.estimate(&args)?;
        if estimate > self.max_bytes as u128 {
            return Err(too_large(self.name(), estimate, self.max_bytes));
        }
        let output = self.inner.invoke_with_args(args)?;
        let produced = match &output {
            ColumnarValue::Array(array) => array.get_array_memory_size(),
            ColumnarValue::Scalar(scalar) => scalar.size(),
        };
        if produced > self.max_bytes.saturating_mul(2) {
            return Err(too_large(self.name(), produced as u128, self.max_bytes));
        }
        Ok(output)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn functions_that_would_outgrow_the_limit_are_refused_before_they_run() {
        let ctx = SessionContext::new();
        install(&ctx, 1 << 20);
        for sql in [
            "SELECT length(repeat('x', 1500000000))",
            "SELECT length(lpad('x', 1500000000))",
            "SELECT cardinality(range(1, 1000000000))",
            "SELECT cardinality(generate_series(1, 1000000000, 1))",
            "SELECT unnest(range(1, 200000000))",
            "SELECT cardinality(array_repeat('abc', 1000000000))",
            "SELECT length(replace(repeat('a', 100000), 'a', repeat('b', 1000)))",
            "SELECT cardinality(range(TIMESTAMP '2020-01-01', TIMESTAMP '2026-01-01', INTERVAL '1 second'))",
            "SELECT length(concat(repeat('a', 900000), repeat('a', 900000)))",
            "SELECT cardinality(array_resize([1], 1000000000))",
        ] {
            let error = run(&ctx, sql).await.expect_err(sql);
            assert!(
                matches!(error.find_root(), DataFusionError::ResourcesExhausted(_)),
                "{sql}: {error}"
            );
        }
        for sql in [
            "SELECT length(repeat('x', 1000))",
            "SELECT cardinality(range(1, 1000))",
            "SELECT unnest(range(1, 1000))",
            "SELECT length(concat('a', 'b'))",
            "SELECT replace('abc', 'b', 'x')",
        ] {
            run(&ctx, sql).await.expect(sql);
        }
    }

    #[tokio::test]
    async fn long_chains_of_the_concatenation_operator_are_refused() {
        let ctx = SessionContext::new();
        let chain = |n: usize| vec!["s"; n + 1].join(" || ");
        let plan = |n: usize| {
            let sql = format!("WITH a AS (SELECT 'x' AS s) SELECT {} FROM a", chain(n));
            let ctx = ctx.clone();
            async move { ctx.state().create_logical_plan(&sql).await.expect("plan") }
        };
        assert!(check_plan(&plan(MAX_CONCAT_CHAIN).await).is_ok());
        let refused = check_plan(&plan(MAX_CONCAT_CHAIN + 1).await).expect_err("refused");
        assert!(matches!(refused, DataFusionError::ResourcesExhausted(_)));
    }
}

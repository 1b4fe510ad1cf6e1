//! SQL functions that replace DataFusion's own where the lake's data allows a faster path.
//!
//! Every time column of the lake is a UTC timestamp (`Timestamp(µs, "UTC")`). DataFusion's
//! `date_trunc` converts each value through the time zone unless the timestamp has none, which
//! makes "per day" and "per hour" questions several times slower than the scan under them. In
//! UTC, truncating the instant is truncating its wall-clock value, so [`UtcDateTrunc`] hands
//! DataFusion the same values without the zone (a zero-copy relabel) and puts the zone back on
//! the result. Every other input goes to DataFusion's `date_trunc` untouched.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, make_array};
use arrow::datatypes::DataType;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// `date_trunc` with a fast path for UTC timestamps; see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    /// The function, to register in place of DataFusion's `date_trunc`.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(UtcDateTrunc {
            inner: datafusion::functions::datetime::date_trunc(),
        })
    }
}

/// Whether a time zone name denotes UTC itself (no offset, no rules).
fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "Z" | "+00:00" | "Etc/UTC")
}

/// The array with its time zone label replaced by `tz` (the values are instants either way).
fn with_timezone(array: &ArrayRef, tz: Option<Arc<str>>) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return Ok(Arc::clone(array));
    };
    let relabelled = array
        .to_data()
        .into_builder()
        .data_type(DataType::Timestamp(*unit, tz))
        .build()?;
    Ok(make_array(relabelled))
}

impl ScalarUDFImpl for UtcDateTrunc {
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

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let utc_array = match args.args.get(1) {
            Some(ColumnarValue::Array(array)) => match array.data_type() {
                DataType::Timestamp(_, Some(tz)) if is_utc(tz) => {
                    Some((Arc::clone(array), Arc::clone(tz)))
                }
                _ => None,
            },
            _ => None,
        };
        let Some((array, tz)) = utc_array else {
            return self.inner.invoke_with_args(args);
        };
        let naive = with_timezone(&array, None)?;
        // DataFusion checks (in debug builds) that a result has the type promised at planning:
        // promise the inner function the zone-less type, as for a zone-less argument.
        let naive_field = |field: &FieldRef| -> FieldRef {
            Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(naive.data_type().clone()),
            )
        };
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = naive_field(field);
        }
        args.return_field = naive_field(&args.return_field);
        args.args[1] = ColumnarValue::Array(Arc::clone(&naive));
        match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(truncated) => {
                Ok(ColumnarValue::Array(with_timezone(&truncated, Some(tz))?))
            }
            scalar => Ok(scalar),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::TimestampMicrosecondArray;
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    use super::*;

    fn truncate(udf: &ScalarUDF, unit: &str, array: ArrayRef) -> ArrayRef {
        let field = Arc::new(Field::new("t", array.data_type().clone(), true));
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(unit.into()),
                ColumnarValue::Array(Arc::clone(&array)),
            ],
            arg_fields: vec![
                Arc::new(Field::new("u", DataType::Utf8, false)),
                field.clone(),
            ],
            number_rows: array.len(),
            // As planned: the result has the argument's type, zone included.
            return_field: field,
            config_options: Arc::new(ConfigOptions::default()),
        };
        match udf.invoke_with_args(args).expect("date_trunc") {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(s) => s.to_array().expect("array"),
        }
    }

    #[test]
    fn utc_and_zoned_timestamps_truncate_as_datafusion_does() {
        let ours = UtcDateTrunc::udf();
        let theirs = datafusion::functions::datetime::date_trunc();
        // 2026-11-01T23:59:59.999999Z, 1969-12-31T12:34:56Z, null, 2026-03-29T01:30:00Z.
        let values = vec![
            Some(1_794_009_599_999_999),
            Some(-41_104_000_000),
            None,
            Some(1_774_747_800_000_000),
        ];
        for tz in ["UTC", "+00:00", "Europe/Paris", "+05:30"] {
            let array: ArrayRef =
                Arc::new(TimestampMicrosecondArray::from(values.clone()).with_timezone(tz));
            for unit in ["day", "hour", "month", "week", "minute"] {
                let expected = truncate(&theirs, unit, Arc::clone(&array));
                let got = truncate(&ours, unit, Arc::clone(&array));
                assert_eq!(got.data_type(), expected.data_type(), "{tz} {unit}");
                assert_eq!(&got, &expected, "{tz} {unit}");
            }
        }
    }
}

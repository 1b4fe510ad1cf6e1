//! Row-at-a-time Arrow builders for one table.
//!
//! A decoder names its columns once with [`table_columns!`], which yields an index enum in schema
//! order; [`TableBuilder::new`] checks that order against the table's schema, so a decoder and the
//! schema crate cannot drift apart silently. Per row, the decoder sets the cells it has and
//! [`TableBuilder::end_row`] fills the rest with nulls, keeping every column the same length.
//! [`TableBuilder::reserve`] sizes the columns for an object's rows at once, from the bytes per
//! row of the last batch of the same table built on the thread: growing a column by doubling
//! copies it again and again and leaves a third of it unused on average. A cell that is the same
//! in every row of an object (its source, when it was ingested) is set once with
//! [`TableBuilder::same_in_every_row`] and laid out when the batch is finished.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
    new_null_array,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Declares the column index enum of a table, in schema order.
macro_rules! table_columns {
    ($vis:vis enum $name:ident { $($col:ident),* $(,)? }) => {
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        $vis enum $name { $($col),* }

        impl $name {
            /// Column names in schema order.
            $vis const NAMES: &'static [&'static str] = &[$(stringify!($col)),*];
        }

        impl From<$name> for usize {
            fn from(col: $name) -> usize {
                col as usize
            }
        }
    };
}
pub(crate) use table_columns;

#[derive(Debug)]
enum Column {
    Utf8(StringBuilder),
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Binary(BinaryBuilder),
    Utf8List(ListBuilder<StringBuilder>),
}

thread_local! {
    /// For each table, the bytes per row of each column's values in the last batch finished on
    /// this thread (zero for fixed-width columns).
    static VALUE_BYTES_PER_ROW: RefCell<HashMap<&'static str, Vec<usize>>> =
        RefCell::new(HashMap::new());
}

/// Extra room reserved beyond the bytes per row of the last batch, as a fraction (1/16).
const VALUE_BYTES_SLACK_SHIFT: u32 = 4;

impl Column {
    /// An empty column of `data_type` with room for `rows` rows and `value_bytes` bytes of
    /// values (text, binary or list items).
    fn for_type(data_type: &DataType, rows: usize, value_bytes: usize) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Column::Utf8(StringBuilder::with_capacity(rows, value_bytes)),
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Int32 => Column::Int32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => Column::Int64(Int64Builder::with_capacity(rows)),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Column::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(tz.clone()),
            ),
            DataType::Binary => Column::Binary(BinaryBuilder::with_capacity(rows, value_bytes)),
            DataType::List(item) if item.data_type() == &DataType::Utf8 => Column::Utf8List(
                ListBuilder::with_capacity(StringBuilder::with_capacity(rows, value_bytes), rows)
                    .with_field(item.clone()),
            ),
            _ => return None,
        })
    }

    /// Bytes of values held (text, binary or list items); zero for fixed-width columns.
    fn value_bytes(&self) -> usize {
        match self {
            Column::Utf8(b) => b.values_slice().len(),
            Column::Binary(b) => b.values_slice().len(),
            Column::Utf8List(b) => b.values_ref().values_slice().len(),
            Column::Bool(_) | Column::Int32(_) | Column::Int64(_) | Column::Timestamp(_) => 0,
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Utf8(b) => b.len(),
            Column::Bool(b) => b.len(),
            Column::Int32(b) => b.len(),
            Column::Int64(b) => b.len(),
            Column::Timestamp(b) => b.len(),
            Column::Binary(b) => b.len(),
            Column::Utf8List(b) => b.len(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Utf8(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::Binary(b) => b.append_null(),
            Column::Utf8List(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Binary(b) => Arc::new(b.finish()),
            Column::Utf8List(b) => Arc::new(b.finish()),
        }
    }
}

/// A cell every row of a batch has; `None` values are nulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SameInEveryRow<'a> {
    Text(Option<&'a str>),
    Timestamp(Option<i64>),
}

#[derive(Debug, Clone)]
enum Constant {
    Text(Option<String>),
    Timestamp(Option<i64>),
}

impl Constant {
    /// The column of `rows` copies, of the field's type (its time zone included).
    fn repeated(&self, data_type: &DataType, rows: usize) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Constant::Text(Some(text)) => {
                let bytes = text.len().saturating_mul(rows);
                if i32::try_from(bytes).is_err() {
                    return Err(ArrowError::OffsetOverflowError(bytes));
                }
                let offsets = OffsetBuffer::from_repeated_length(text.len(), rows);
                let values = Buffer::from_vec(text.as_bytes().repeat(rows));
                Arc::new(StringArray::new(offsets, values, None))
            }
            Constant::Timestamp(Some(micros)) => Arc::new(
                TimestampMicrosecondArray::from_value(*micros, rows)
                    .with_data_type(data_type.clone()),
            ),
            Constant::Text(None) | Constant::Timestamp(None) => new_null_array(data_type, rows),
        })
    }
}

/// Builds one table's rows; see the module documentation.
#[derive(Debug)]
pub struct TableBuilder {
    table: &'static str,
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
    /// Bit `i` set: column `i` has a cell in the current row.
    set_in_row: u64,
    /// Bit `i` set for each of the table's columns.
    all_columns: u64,
    /// The columns set once for every row, by index.
    constants: Vec<(usize, Constant)>,
    /// Bit `i` set: column `i` is one of `constants`.
    constant_columns: u64,
}

impl TableBuilder {
    /// A builder for `table` of `schema`, whose field names must be exactly `names`, in order.
    ///
    /// # Panics
    /// When `names` and the schema disagree: a programming error that every decoder's unit
    /// tests exercise.
    pub fn new(table: &'static str, schema: SchemaRef, names: &[&str]) -> Self {
        let schema_names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            schema_names, names,
            "decoder columns out of step with the schema"
        );
        let columns: Vec<Column> = schema
            .fields()
            .iter()
            .map(|f| {
                Column::for_type(f.data_type(), 0, 0).unwrap_or_else(|| {
                    panic!("no builder for column {} ({})", f.name(), f.data_type())
                })
            })
            .collect();
        assert!(
            columns.len() <= 64,
            "a table has at most 64 columns (one bit each per row)"
        );
        let all_columns = u64::MAX.checked_shr(64 - columns.len() as u32).unwrap_or(0);
        TableBuilder {
            table,
            schema,
            columns,
            rows: 0,
            set_in_row: 0,
            all_columns,
            constants: Vec::new(),
            constant_columns: 0,
        }
    }

    /// Sets a cell of every row of every batch this builder makes, laid out once per batch by
    /// [`TableBuilder::finish`]; the cell must not be set per row as well.
    ///
    /// # Panics
    /// When rows were begun, or the value is not of the column's type: programming errors that
    /// every decoder's unit tests exercise.
    pub fn same_in_every_row(&mut self, col: impl Into<usize>, value: SameInEveryRow<'_>) {
        let col = col.into();
        assert!(
            self.rows == 0 && self.set_in_row == 0,
            "a cell of every row is set before the first row"
        );
        let constant = match (&self.columns[col], value) {
            (Column::Utf8(_), SameInEveryRow::Text(text)) => {
                Constant::Text(text.map(str::to_owned))
            }
            (Column::Timestamp(_), SameInEveryRow::Timestamp(micros)) => {
                Constant::Timestamp(micros)
            }
            (_, value) => panic!(
                "{value:?} is not of the type of column {}",
                self.schema.field(col).name()
            ),
        };
        self.constants.retain(|(c, _)| *c != col);
        self.constants.push((col, constant));
        self.constant_columns |= 1 << col;
        // The builder of the column is not used: free what it holds.
        self.columns[col] = Column::for_type(self.schema.field(col).data_type(), 0, 0)
            .expect("a column of a type with a builder");
    }

    /// Makes room for `rows` rows, with the bytes per row of the last batch of this table
    /// finished on this thread; nothing once a row was begun.
    pub fn reserve(&mut self, rows: usize) {
        if self.rows != 0 || self.set_in_row != 0 {
            return;
        }
        VALUE_BYTES_PER_ROW.with(|hints| {
            let hints = hints.borrow();
            let per_row = hints.get(self.table);
            for (i, (column, field)) in self
                .columns
                .iter_mut()
                .zip(self.schema.fields())
                .enumerate()
            {
                if self.constant_columns & (1 << i) != 0 {
                    continue;
                }
                let bytes = per_row.and_then(|p| p.get(i)).copied().unwrap_or(0) * rows;
                let bytes = bytes + (bytes >> VALUE_BYTES_SLACK_SHIFT);
                if let Some(sized) = Column::for_type(field.data_type(), rows, bytes) {
                    *column = sized;
                }
            }
        });
    }

    /// Rows completed so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was completed yet.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Sets a text cell of the current row; `None` leaves it null.
    pub fn str(&mut self, col: impl Into<usize>, value: Option<&str>) {
        let col = col.into();
        if let (Column::Utf8(b), Some(v)) = (&mut self.columns[col], value) {
            b.append_value(v);
            self.set_in_row |= 1 << col;
        }
    }

    /// Sets a boolean cell of the current row; `None` leaves it null.
    pub fn bool(&mut self, col: impl Into<usize>, value: Option<bool>) {
        let col = col.into();
        if let (Column::Bool(b), Some(v)) = (&mut self.columns[col], value) {
            b.append_value(v);
            self.set_in_row |= 1 << col;
        }
    }

    /// Sets a 32-bit integer cell of the current row; `None` leaves it null.
    pub fn i32(&mut self, col: impl Into<usize>, value: Option<i32>) {
        let col = col.into();
        if let (Column::Int32(b), Some(v)) = (&mut self.columns[col], value) {
            b.append_value(v);
            self.set_in_row |= 1 << col;
        }
    }

    /// Sets a 64-bit integer cell of the current row; `None` leaves it null.
    pub fn i64(&mut self, col: impl Into<usize>, value: Option<i64>) {
        let col = col.into();
        if let (Column::Int64(b), Some(v)) = (&mut self.columns[col], value) {
            b.append_value(v);
            self.set_in_row |= 1 << col;
        }
    }

    /// Sets a timestamp cell (microseconds since the epoch, UTC); `None` leaves it null.
    pub fn timestamp(&mut self, col: impl Into<usize>, micros: Option<i64>) {
        let col = col.into();
        if let (Column::Timestamp(b), Some(v)) = (&mut self.columns[col], micros) {
            b.append_value(v);
            self.set_in_row |= 1 << col;
        }
    }

    /// Sets a binary cell of the current row; `None` leaves it null.
    pub fn binary(&mut self, col: impl Into<usize>, value: Option<&[u8]>) {
        let col = col.into();
        if let (Column::Binary(b), Some(v)) = (&mut self.columns[col], value) {
            b.append_value(v);
            self.set_in_row |= 1 << col;
        }
    }

    /// Sets a list-of-text cell whose items are each the concatenation of their parts, written
    /// straight into the column (an empty list, not null, for no items).
    pub fn str_list_joined<P, S>(
        &mut self,
        col: impl Into<usize>,
        items: impl IntoIterator<Item = P>,
    ) where
        P: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        use std::fmt::Write as _;
        let col = col.into();
        if let Column::Utf8List(b) = &mut self.columns[col] {
            self.set_in_row |= 1 << col;
            let values = b.values();
            for parts in items {
                for part in parts {
                    // Writing into a builder's buffer cannot fail.
                    let _ = values.write_str(part.as_ref());
                }
                values.append_value("");
            }
            b.append(true);
        }
    }

    /// Completes the current row: every cell not set is null.
    pub fn end_row(&mut self) {
        self.rows += 1;
        let set = std::mem::take(&mut self.set_in_row);
        debug_assert_eq!(
            set & self.constant_columns,
            0,
            "a cell of every row set in one row"
        );
        let mut unset = self.all_columns & !set & !self.constant_columns;
        while unset != 0 {
            self.columns[unset.trailing_zeros() as usize].append_null();
            unset &= unset - 1;
        }
        debug_assert!(
            self.columns.iter().enumerate().all(|(i, column)| {
                let expected = if self.constant_columns & (1 << i) == 0 {
                    self.rows
                } else {
                    0
                };
                column.len() == expected
            }),
            "a cell set twice in one row"
        );
    }

    /// The rows built so far as one batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        if self.rows > 0 {
            let per_row = self
                .columns
                .iter()
                .map(|c| c.value_bytes().div_ceil(self.rows))
                .collect();
            VALUE_BYTES_PER_ROW.with(|hints| hints.borrow_mut().insert(self.table, per_row));
        }
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        for (col, constant) in &self.constants {
            arrays[*col] = constant.repeated(self.schema.field(*col).data_type(), self.rows)?;
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, Schema};

    use super::*;

    impl TableBuilder {
        /// Bytes of values column `col` has room for.
        fn value_capacity(&self, col: usize) -> usize {
            match &self.columns[col] {
                Column::Utf8(b) => b.values_capacity(),
                _ => 0,
            }
        }
    }

    fn builder(table: &'static str) -> TableBuilder {
        let schema = Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        TableBuilder::new(table, Arc::new(schema), &["name", "n"])
    }

    fn add_rows(rows: &mut TableBuilder, count: usize) {
        for n in 0..count {
            rows.str(0usize, Some("0123456789"));
            rows.i64(1usize, Some(n as i64));
            rows.end_row();
        }
    }

    #[test]
    fn a_cell_of_every_row_is_laid_out_once_per_batch_with_its_type() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::TimestampMicrosecondType;

        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new("source", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("at", utc.clone(), true),
            Field::new("project", DataType::Utf8, true),
        ]);
        let names = ["source", "n", "at", "project"];
        let mut rows = TableBuilder::new("every_row", Arc::new(schema), &names);
        rows.same_in_every_row(0usize, SameInEveryRow::Text(Some("file:///a")));
        rows.same_in_every_row(2usize, SameInEveryRow::Timestamp(Some(7)));
        rows.same_in_every_row(3usize, SameInEveryRow::Text(None));
        for n in 0..3 {
            rows.i64(1usize, Some(n));
            rows.end_row();
        }
        let batch = rows.finish().expect("batch");
        assert_eq!(batch.num_rows(), 3);
        let sources = batch.column(0).as_string::<i32>();
        assert_eq!(sources.iter().collect::<Vec<_>>(), [Some("file:///a"); 3]);
        assert_eq!(batch.column(2).data_type(), &utc, "the time zone is kept");
        let at = batch.column(2).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(at.values().as_ref(), [7, 7, 7]);
        assert_eq!(batch.column(3).null_count(), 3);

        // The next batch of the same builder has them too.
        rows.i64(1usize, Some(9));
        rows.end_row();
        let batch = rows.finish().expect("batch");
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "file:///a");
    }

    #[test]
    #[should_panic(expected = "before the first row")]
    fn a_cell_of_every_row_cannot_be_set_once_rows_were_begun() {
        let mut rows = builder("every_row_late");
        add_rows(&mut rows, 1);
        rows.same_in_every_row(0usize, SameInEveryRow::Text(Some("late")));
    }

    #[test]
    fn a_builder_reserves_the_bytes_per_row_of_the_last_batch_of_its_table() {
        let mut first = builder("sized_by_the_last_batch");
        add_rows(&mut first, 10);
        first.finish().expect("batch");

        let mut next = builder("sized_by_the_last_batch");
        next.reserve(100);
        let reserved = next.value_capacity(0);
        assert!(
            (1000..1100).contains(&reserved),
            "100 rows of 10 bytes and a little room: {reserved}"
        );
        add_rows(&mut next, 100);
        assert_eq!(next.value_capacity(0), reserved, "no growth");
        let batch = next.finish().expect("batch");
        assert_eq!(batch.num_rows(), 100);

        // Another table is not sized by this one's rows, and a begun builder is left as it is.
        let mut other = builder("another_table");
        other.reserve(100);
        assert_eq!(other.value_capacity(0), 0);
        add_rows(&mut first, 1);
        let before = first.value_capacity(0);
        first.reserve(1000);
        assert_eq!(first.value_capacity(0), before);
    }
}

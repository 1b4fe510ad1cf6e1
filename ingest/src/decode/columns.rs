//! Row-at-a-time Arrow builders for one table.
//!
//! A decoder names its columns once with [`table_columns!`], which yields an index enum in schema
//! order; [`TableBuilder::new`] checks that order against the table's schema, so a decoder and the
//! schema crate cannot drift apart silently. Per row, the decoder sets the cells it has and
//! [`TableBuilder::end_row`] fills the rest with nulls, keeping every column the same length.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
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

impl Column {
    fn for_type(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Column::Utf8(StringBuilder::new()),
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Column::Timestamp(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
            }
            DataType::Binary => Column::Binary(BinaryBuilder::new()),
            DataType::List(item) if item.data_type() == &DataType::Utf8 => {
                Column::Utf8List(ListBuilder::new(StringBuilder::new()).with_field(item.clone()))
            }
            _ => return None,
        })
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

/// Builds one table's rows; see the module documentation.
#[derive(Debug)]
pub struct TableBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: usize,
    /// Bit `i` set: column `i` has a cell in the current row.
    set_in_row: u64,
}

impl TableBuilder {
    /// A builder for `schema`, whose field names must be exactly `names`, in order.
    ///
    /// # Panics
    /// When `names` and the schema disagree: a programming error that every decoder's unit
    /// tests exercise.
    pub fn new(schema: SchemaRef, names: &[&str]) -> Self {
        let schema_names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            schema_names, names,
            "decoder columns out of step with the schema"
        );
        let columns: Vec<Column> = schema
            .fields()
            .iter()
            .map(|f| {
                Column::for_type(f.data_type()).unwrap_or_else(|| {
                    panic!("no builder for column {} ({})", f.name(), f.data_type())
                })
            })
            .collect();
        assert!(
            columns.len() <= 64,
            "a table has at most 64 columns (one bit each per row)"
        );
        TableBuilder {
            schema,
            columns,
            rows: 0,
            set_in_row: 0,
        }
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
        for (i, column) in self.columns.iter_mut().enumerate() {
            if set & (1 << i) == 0 {
                column.append_null();
            }
            debug_assert_eq!(column.len(), self.rows, "a cell set twice in one row");
        }
    }

    /// The rows built so far as one batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

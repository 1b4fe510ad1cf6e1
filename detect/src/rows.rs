//! Typed, by-name access to the columns of a lake batch, for rules.

use arrow::array::{Array, AsArray, Int32Array, Int64Array, TimestampMicrosecondArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;

use crate::alert::Evidence;

/// A batch's columns by name; a missing or mistyped column reads as all-null.
#[derive(Debug)]
pub struct Rows<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Rows<'a> {
    pub fn new(batch: &'a RecordBatch) -> Self {
        Rows { batch }
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// A text cell, from a string or string-view column (the lake's reader gives views).
    pub fn str(&self, column: &str, row: usize) -> Option<&'a str> {
        let array = self.batch.column_by_name(column)?;
        if !array.is_valid(row) {
            return None;
        }
        if let Some(strings) = array.as_string_opt::<i32>() {
            return Some(strings.value(row));
        }
        array.as_string_view_opt().map(|views| views.value(row))
    }

    /// A 32-bit integer cell.
    pub fn i32(&self, column: &str, row: usize) -> Option<i32> {
        let array: &Int32Array = self
            .batch
            .column_by_name(column)?
            .as_primitive_opt::<Int32Type>()?;
        array.is_valid(row).then(|| array.value(row))
    }

    fn i64(&self, column: &str, row: usize) -> Option<i64> {
        let array: &Int64Array = self
            .batch
            .column_by_name(column)?
            .as_primitive_opt::<Int64Type>()?;
        array.is_valid(row).then(|| array.value(row))
    }

    /// A timestamp cell, microseconds.
    pub fn time(&self, column: &str, row: usize) -> Option<i64> {
        let array: &TimestampMicrosecondArray = self
            .batch
            .column_by_name(column)?
            .as_primitive_opt::<TimestampMicrosecondType>()?;
        array.is_valid(row).then(|| array.value(row))
    }

    /// A boolean cell.
    pub fn bool(&self, column: &str, row: usize) -> Option<bool> {
        let array = self.batch.column_by_name(column)?.as_boolean_opt()?;
        array.is_valid(row).then(|| array.value(row))
    }

    /// Where row `row` is, with the event time read from `time_column`.
    pub fn evidence(&self, row: usize, time_column: &str) -> Evidence {
        Evidence {
            event_id: self.str("event_id", row).map(str::to_owned),
            source_uri: self.str("source_uri", row).unwrap_or_default().to_owned(),
            source_index: self.i64("source_index", row).unwrap_or_default(),
            event_time_micros: self.time(time_column, row).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray, StringViewArray};

    use super::*;

    #[test]
    fn text_cells_read_alike_from_string_and_string_view_columns() {
        let values = [
            Some("AssumeRole"),
            None,
            Some("a value longer than twelve bytes"),
        ];
        let batch = RecordBatch::try_from_iter([
            (
                "plain",
                Arc::new(StringArray::from(values.to_vec())) as ArrayRef,
            ),
            (
                "view",
                Arc::new(StringViewArray::from(values.to_vec())) as ArrayRef,
            ),
        ])
        .expect("batch");
        let rows = Rows::new(&batch);
        for (row, expected) in values.iter().enumerate() {
            assert_eq!(rows.str("plain", row), *expected);
            assert_eq!(rows.str("view", row), *expected);
        }
        assert_eq!(rows.str("missing", 0), None);
    }
}

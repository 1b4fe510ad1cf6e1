//! Typed, by-name access to the columns of a lake batch, for rules.

use arrow::array::{
    Array, AsArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
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

    fn strings(&self, column: &str) -> Option<&'a StringArray> {
        self.batch.column_by_name(column)?.as_string_opt::<i32>()
    }

    /// A text cell.
    pub fn str(&self, column: &str, row: usize) -> Option<&'a str> {
        let array = self.strings(column)?;
        array.is_valid(row).then(|| array.value(row))
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

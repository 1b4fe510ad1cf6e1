//! Rows and readers for the lake's unit tests.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};

pub(super) use std::fs::File;
pub(super) use std::path::Path;

pub(super) use arrow::record_batch::RecordBatch;
pub(super) use auditlake_schema::{self as schema, LakeRoot};
pub(super) use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub(super) use super::LakeWriter;

/// A writer over a new local lake in a temporary folder.
pub(super) fn local_lake() -> (tempfile::TempDir, LakeWriter) {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
    (dir, writer)
}

pub(super) const HOUR: i64 = 3_600_000_000;

/// Rejected rows of `uri` at the given hours (the rejected table's time is `ingested_at`).
pub(super) fn rows(uri: &str, hours: &[i64]) -> RecordBatch {
    let micros: Vec<i64> = hours.iter().map(|h| h * HOUR).collect();
    rows_at(uri, &micros)
}

/// Rejected rows of `uri` at the given times, numbered 0, 1, ... in `source_index`.
pub(super) fn rows_at(uri: &str, micros: &[i64]) -> RecordBatch {
    let schema = schema::file_schema(schema::REJECTED).expect("schema");
    let n = micros.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                "source_uri" => Arc::new(StringArray::from(vec![uri; n])),
                "source_index" => Arc::new(Int64Array::from_iter_values(0..n as i64)),
                "raw_size" => Arc::new(Int64Array::from(vec![1; n])),
                "ingested_at" => {
                    Arc::new(TimestampMicrosecondArray::from(micros.to_vec()).with_timezone("UTC"))
                }
                _ => arrow::array::new_null_array(field.data_type(), n),
            }
        })
        .map(|c| {
            if c.null_count() == n && !c.is_empty() {
                // Non-null columns get a value.
                match c.data_type() {
                    arrow::datatypes::DataType::Utf8 => {
                        Arc::new(StringArray::from(vec!["r"; n])) as ArrayRef
                    }
                    arrow::datatypes::DataType::Boolean => {
                        Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef
                    }
                    _ => c,
                }
            } else {
                c
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("batch")
}

/// Column `name` of every row of a lake file, in file order.
pub(super) fn read_column(root: &Path, relative: impl AsRef<str>, name: &str) -> ArrayRef {
    let file = File::open(root.join(relative.as_ref())).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .expect("reader");
    let parts: Vec<ArrayRef> = reader
        .map(|batch| {
            batch
                .expect("batch")
                .column_by_name(name)
                .expect(name)
                .clone()
        })
        .collect();
    let parts: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
    arrow::compute::concat(&parts).expect("concat")
}

pub(super) fn read_uris(root: &Path, relative: impl AsRef<str>) -> Vec<String> {
    let column = read_column(root, relative, "source_uri");
    let column = column.as_any().downcast_ref::<StringArray>().expect("utf8");
    column
        .iter()
        .map(|u| u.unwrap_or_default().to_owned())
        .collect()
}

pub(super) fn read_indexes(root: &Path, relative: impl AsRef<str>) -> Vec<i64> {
    let column = read_column(root, relative, "source_index");
    let column = column.as_any().downcast_ref::<Int64Array>().expect("int64");
    column.values().to_vec()
}

pub(super) fn parquet_files(root: &Path) -> Vec<String> {
    let mut files: Vec<String> = walk(root)
        .into_iter()
        .filter_map(|p| {
            let name = p.strip_prefix(root).ok()?.to_string_lossy().into_owned();
            name.ends_with(".parquet").then_some(name)
        })
        .collect();
    files.sort();
    files
}

pub(super) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

//! The Parquet lake, in a local folder or under an S3 prefix.
//!
//! Layout: `<lake>/<table>/date=YYYY-MM-DD/hour=HH/<stem>.parquet`, partitioned by each row's
//! event time (rows without one go to the partition of their object's modification time).
//! A commit group of objects (see `pipeline`) streams its rows into one file per table and
//! partition through [`GroupFiles`], named by [`group_stem`]; with a shared lake each
//! object has its own files, named by [`file_stem`]. A local file is written under a temporary
//! name, synced and renamed, so a reader never sees half a file and a crash leaves at most a
//! stray `.tmp` file; on S3 each file is one PUT, which appears whole or not at all.
//!
//! Inside, in the order a row travels: [`LakeWriter`] (`writer`, the pipeline's entry point)
//! opens a [`GroupFiles`] (`group`: the group's files by table and partition), which feeds
//! each row to its `file` (one Parquet file, encoded on the encoder threads with the column
//! settings of `properties`); `store` creates, publishes, reads and deletes files, the one
//! place that touches the disk or the object store. `rewrite` replaces an object's rows.

mod file;
#[cfg(test)]
mod fixtures;
mod group;
mod properties;
mod rewrite;
mod store;
mod writer;

use std::path::Path;

use auditlake_schema::LakeFile;
use sha2::{Digest, Sha256};

pub use file::start_encoders;
pub use group::{FinishedGroup, GroupFiles, MAX_OPEN_FILES};
pub use writer::LakeWriter;

/// Lake write failures, each naming the file or table concerned.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("table {table} has no time column {column} of timestamp type")]
    NoTimeColumn { table: String, column: String },
    #[error("partitioning rows of {table}: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("storing {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// A file written to the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Where the file is below the lake root.
    pub relative_path: LakeFile,
    pub rows: usize,
}

/// The file stem for every lake file made from one source object alone: a readable tail of its
/// key and a hash of its URI, so that the same object always maps to the same names (a redo
/// replaces rather than duplicates) and different objects never collide.
pub fn file_stem(source_uri: &str) -> String {
    let hash = Sha256::digest(source_uri.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let tail = source_uri.rsplit('/').next().unwrap_or_default();
    let readable: String = tail
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("{readable}-{hex}")
}

/// The file stem of a commit group's files, starting with the first object's readable tail
/// and ending in a random part: the files of a redo never share a name with those of an
/// abandoned attempt (which the ledger has deleted, see `pipeline::group`).
pub fn group_stem(first_uri: &str) -> String {
    let readable = file_stem(first_uri);
    let readable = readable
        .rsplit_once('-')
        .map_or(readable.as_str(), |(r, _)| r);
    format!("{readable}-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn stems_are_stable_readable_and_distinct() {
        let a = file_stem(
            "file:///data/AWSLogs/1/CloudTrail/us-east-1/2026/11/01/x_20261101T0000Z_a.json.gz",
        );
        assert_eq!(
            a,
            file_stem(
                "file:///data/AWSLogs/1/CloudTrail/us-east-1/2026/11/01/x_20261101T0000Z_a.json.gz"
            )
        );
        assert!(a.starts_with("x_20261101T0000Z_a_json_gz-"), "{a}");
        assert_ne!(
            a,
            file_stem(
                "file:///other/AWSLogs/1/CloudTrail/us-east-1/2026/11/01/x_20261101T0000Z_a.json.gz"
            )
        );
    }
}

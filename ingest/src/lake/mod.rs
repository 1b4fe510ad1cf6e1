//! The Parquet lake, in a local folder or under an S3 prefix.
//!
//! Layout: `<lake>/<table>/date=YYYY-MM-DD/hour=HH/<stem>.parquet`, partitioned by each row's
//! event time (rows without one go to the partition of their object's modification time).
//! A commit group of objects (see `pipeline`) streams its rows into one file per table and
//! partition through [`writer::GroupFiles`], named by [`group_stem`]; with a shared lake each
//! object has its own files, named by [`file_stem`]. A local file is written under a temporary
//! name, synced and renamed, so a reader never sees half a file and a crash leaves at most a
//! stray `.tmp` file; on S3 each file is one PUT, which appears whole or not at all.

pub mod writer;

use sha2::{Digest, Sha256};

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
/// abandoned attempt (which the ledger has deleted, see `pipeline::Group`).
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

//! Where objects come from.
//!
//! Every source implements one contract, [`LogSource`]: it lists the objects there are to
//! ingest now and fetches their bytes, and says when its position may be committed
//! ([`Positions`]); it knows nothing of decoding, of the lake, or of what was ingested
//! before. The pipeline asks the ledger which listed objects are new (by URI and version),
//! classifies them with the source ([`layout::classify`] by default), and fetches only those.
//!
//! The sources: [`folder`] and [`s3`] list (the latter through [`keytime`]'s dated folders),
//! [`notify`] receives S3 notifications from SQS for the S3 sources that name the queue,
//! [`cloudwatch`] reads log events in turns; [`memory`] holds objects given to it, for tests.

pub mod cloudwatch;
pub mod folder;
pub mod keytime;
pub mod layout;
pub mod memory;
pub mod notify;
pub mod s3;

use std::collections::HashSet;
use std::fmt::Debug;

/// One object a source holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    /// Stable, unique address (`file:///...`, `s3://bucket/key`); names lake files and ledger rows.
    pub uri: String,
    /// The key relative to the source root, `/`-separated; used to classify the object.
    pub key: String,
    /// Changes whenever the content may have changed (size and modification time, or ETag).
    pub version: String,
    /// Size in bytes as listed.
    pub size: u64,
    /// Last modification, microseconds since the epoch; the partition time of rows without one.
    pub modified_micros: i64,
}

/// Errors of a source, each naming what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("listing {location}: {source}")]
    List {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {uri}: {source}")]
    Fetch {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    /// The object no longer exists; retrying cannot help.
    #[error("{uri} is gone (deleted after it was listed)")]
    Gone { uri: String },
    #[error("{location}: {message}")]
    Remote { location: String, message: String },
    /// A queue of notifications refused a receive or a delete.
    #[error("{location}: {message}")]
    Queue { location: String, message: String },
}

impl SourceError {
    /// The label a failed listing counts under: `sqs` for a queue, else `list`.
    pub fn listing_kind(&self) -> &'static str {
        match self {
            SourceError::Queue { .. } => "sqs",
            _ => "list",
        }
    }

    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::List { .. } => "list",
            SourceError::Fetch { .. } => "fetch",
            SourceError::Gone { .. } => "gone",
            SourceError::Remote { .. } => "remote",
            SourceError::Queue { .. } => "sqs",
        }
    }
}

/// A place that yields log objects: a folder or bucket listed, a queue of notifications, a
/// stream of log events read in turns.
///
/// Contract: each `list` returns the objects there are to ingest now, every one complete (a
/// file still being written is left for a later call); it may return objects already
/// ingested, and the same object always under the same URI, its `version` changed whenever
/// its content may have. `fetch` returns the bytes of one listed object, or an error naming
/// it; it never returns partial content. A source commits its position only as
/// [`Listing::positions`] says, so that an object whose rows are not durable is listed again.
#[async_trait::async_trait]
pub trait LogSource: Send + Sync + Debug {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;
    /// What an object is; by default its key's layout decides.
    fn classify(&self, object: &SourceObject) -> layout::ObjectKind {
        layout::classify(&object.key, None)
    }
    /// Whether `list` waits for objects to arrive (a queue's receive) rather than listing
    /// what there is: such a source's calls are not counted as scans, it never makes the
    /// service busy, and a one-shot run leaves it to the listings of its buckets.
    fn receives(&self) -> bool {
        false
    }
    /// Objects to ingest now; see the trait contract.
    async fn list(&self) -> Result<Listing, SourceError>;
    /// The bytes of one object.
    async fn fetch(&self, object: &SourceObject) -> Result<Vec<u8>, SourceError>;
    /// After a listing that asked for it ([`Listing::acknowledge`]) was ingested: `recorded`
    /// holds the URIs of its objects the ledger now records, so the source can let go of what
    /// it holds for them (a queue deletes their messages). Those not recorded come back.
    async fn acknowledge(&self, recorded: &HashSet<String>) -> Result<(), SourceError> {
        let _ = recorded;
        Ok(())
    }
}

/// What one call of [`LogSource::list`] yields.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// Complete objects.
    pub objects: Vec<SourceObject>,
    /// Objects seen but not yet complete (still being written); listed again later.
    pub unsettled: usize,
    /// Where the source stands once the objects are ingested, and when that may be committed.
    pub positions: Positions,
    /// More is waiting now (a read cut at its size limit): list again without a pause.
    pub more: bool,
    /// Call [`LogSource::acknowledge`] once the objects are ingested.
    pub acknowledge: bool,
    /// What the source read besides objects, for the process counters.
    pub counts: ReadCounts,
}

/// Source positions (named byte strings the ledger keeps, read back by the source) and when
/// they may be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Positions {
    /// Saved once every listed object is recorded (see
    /// [`crate::ledger::Ledger::save_cursors`]): a listing's continuation, such as the newest
    /// key seen per folder. Any failure lists from the old position again.
    AfterAll(Vec<(String, Vec<u8>)>),
    /// Committed in the same ledger transaction as the listing's one object: a stream's read,
    /// whose rows and the position past them become durable together. Such an object is
    /// retried until it is ingested and never recorded as failed, since the stream cannot
    /// move past it.
    WithObject(Vec<(String, Vec<u8>)>),
}

impl Default for Positions {
    fn default() -> Self {
        Positions::AfterAll(Vec::new())
    }
}

/// What a listing read besides objects; the pipeline adds it to its counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadCounts {
    /// Notifications received, those ignored (test events, other buckets, removals) and those
    /// that could not be read.
    pub notifications: u64,
    pub notifications_ignored: u64,
    pub notifications_malformed: u64,
    /// Log events read from a stream; counted once the listing's objects are recorded.
    pub log_events: u64,
}

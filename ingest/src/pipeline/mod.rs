//! From listed objects to committed lake files.
//!
//! For each source scan ([`schedule`]): list → keep objects the ledger has not recorded in this
//! version → up to twice `concurrency` objects at once ([`prepare`]): classify the key, fetch
//! the bytes, then (at most `concurrency` at once) on a decoder thread decode and drop
//! CloudTrail events another object already holds → in listing order, append each object's
//! rows to the open commit group ([`group`]), the rule engine seeing them as they join
//! ([`detection`]) → a full group completes its Parquet files (durable on return) and only
//! then commits its objects to the ledger, on a blocking thread while the next group fills
//! (one commit at a time, in order). An object that fails is retried on later scans, and
//! recorded as failed after [`MAX_ATTEMPTS`] tries so that one bad object cannot stall the
//! others ([`in_flight`]). A failure of the lake or the ledger is not the object's: ingestion
//! pauses until they take writes again ([`sink`]) and the object is retried. The objects
//! between fetch and group are bounded in bytes as well as in number ([`budget`]). At start
//! and once an hour, [`recovery`] cleans up; [`stats`] counts, through the named
//! [`events`] that log and count together.

mod budget;
mod decoders;
mod detection;
mod events;
mod group;
mod in_flight;
mod prepare;
mod recovery;
mod schedule;
mod sink;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::decode::{self, DecodeLimits};
use crate::lake::{self, LakeWriter};
use crate::ledger::{Ledger, LedgerError};
use crate::shared::{SharedError, SharedLake};
use crate::source::SourceError;

pub use detection::Detection;
pub use stats::{IngestStats, ScanReport, StatsSnapshot};

use group::Unresolved;

/// How long after a publish began its files are deleted at recovery from an object store:
/// time for a write the stopped process had sent to be applied (or refused) by the store.
pub const PUBLISH_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Age past which a temporary file in a shared lake is a stray: a group fills and publishes in
/// seconds, so no live worker still writes one this old.
const STRAY_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long before the newest event the ledger keeps event-id claims, by default (see
/// [`Ledger::forget_old_claims`]).
pub const EVENT_ID_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Time between two clean-ups of old event-id claims.
const CLAIM_CLEANUP_INTERVAL_MICROS: i64 = 3_600_000_000;

/// Tries before an object is recorded as failed.
pub const MAX_ATTEMPTS: u32 = 5;

/// A commit group is committed once it holds this many rows, objects, or bytes of encoded rows
/// in memory (or when its scan has nothing more). Large groups make few, large files (one per
/// table and hour) and few ledger commits; the bounds keep memory and the claims held in flight
/// small whatever the input.
pub const GROUP_MAX_ROWS: usize = 128 * 1024;

/// Why one object could not be ingested (this attempt).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Fetch(#[from] SourceError),
    #[error("decoding {uri}: {source}")]
    Decode {
        uri: String,
        #[source]
        source: decode::DecodeError,
    },
    #[error("writing lake files for {uri}: {source}")]
    Write {
        uri: String,
        #[source]
        source: lake::WriteError,
    },
    #[error("{action} for {uri}: {source}")]
    Arrow {
        uri: String,
        action: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Shared(#[from] SharedError),
    #[error("worker task for {uri} ended abnormally: {message}")]
    Task { uri: String, message: String },
    #[error("{uri} not committed: the group committed before its own failed ({cause})")]
    AfterFailedGroup { uri: String, cause: String },
}

impl ObjectError {
    /// A short, stable label for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectError::Fetch(e) => e.kind(),
            ObjectError::Decode { .. } => "decode",
            ObjectError::Write { .. } => "write",
            ObjectError::Arrow { .. } => "arrow",
            ObjectError::Ledger(_) => "ledger",
            ObjectError::Shared(_) => "shared",
            ObjectError::Task { .. } => "task",
            ObjectError::AfterFailedGroup { .. } => "after_failed_group",
        }
    }

    /// Whether the lake, the ledger or the shared claims failed to take a write or a read (a
    /// full disk, a store that refuses): a failure of ours, not of the object.
    pub fn is_sink_failure(&self) -> bool {
        use lake::WriteError;
        match self {
            ObjectError::Write { source, .. } => matches!(
                source,
                WriteError::Io { .. } | WriteError::Store { .. } | WriteError::Parquet { .. }
            ),
            ObjectError::Ledger(e) => !matches!(e, LedgerError::Corrupt { .. }),
            ObjectError::Shared(e) => matches!(e, SharedError::Store { .. }),
            _ => false,
        }
    }

    /// Whether this attempt counts towards recording the object as failed.
    fn counts_against_object(&self) -> bool {
        !self.is_sink_failure() && !matches!(self, ObjectError::AfterFailedGroup { .. })
    }
}

/// Kinds of entries recorded as failed for a cause that was ours (by versions that did so,
/// `task` for the objects of a group after a failed one): they are ingested again.
const SINK_FAILURE_KINDS: [&str; 4] = ["write", "ledger", "shared", "task"];

/// Failures that stop a whole scan.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("source {source_name}: {error}")]
    List {
        source_name: String,
        #[source]
        error: SourceError,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The ingest pipeline; see the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    ledger: Arc<Ledger>,
    writer: LakeWriter,
    limits: DecodeLimits,
    concurrency: usize,
    /// Objects decoding at once: `concurrency`, each on one of the decoders' threads. Twice as
    /// many objects are in flight, so that a decoder freed while an earlier object is still
    /// decoding (objects are added in listing order) finds the next one fetched and starts on it.
    decoders: Arc<decoders::Decoders>,
    /// Rows after which a commit group is full.
    group_rows: usize,
    event_id_retention: std::time::Duration,
    /// When old event-id claims were last forgotten (microseconds since the epoch; 0: never).
    claims_cleaned_at: AtomicI64,
    stats: Arc<IngestStats>,
    attempts: Mutex<HashMap<String, u32>>,
    /// URIs of objects being ingested by a call of [`Pipeline::ingest_objects`]; another call
    /// (a listing and a notification naming the same object) leaves them to it.
    in_flight: Mutex<HashSet<String>>,
    detection: Option<Detection>,
    /// Claims and markers shared with other workers of the same lake, if configured.
    shared: Option<Arc<SharedLake>>,
    /// Bytes the objects between fetch and group may hold; see [`budget`].
    budget: budget::DecodeBudget,
    /// Whether the lake and the ledger take writes; see [`sink`].
    sink: sink::SinkHealth,
    /// Whether ingestion waits for a failed sink to recover (a service) or leaves the objects
    /// for a later run (one-shot).
    wait_for_sink: AtomicBool,
    /// One probe of the sink at a time.
    probing: tokio::sync::Mutex<()>,
    /// Groups whose commit failed when it may have gone through (see [`Unresolved`]).
    unresolved: Mutex<Vec<Unresolved>>,
}

impl Pipeline {
    pub fn new(
        ledger: Arc<Ledger>,
        writer: LakeWriter,
        limits: DecodeLimits,
        concurrency: usize,
    ) -> Self {
        Pipeline {
            ledger,
            writer,
            limits,
            concurrency: concurrency.max(1),
            decoders: Arc::new(decoders::Decoders::new(concurrency)),
            group_rows: GROUP_MAX_ROWS,
            event_id_retention: EVENT_ID_RETENTION,
            claims_cleaned_at: AtomicI64::new(0),
            stats: Arc::default(),
            attempts: Mutex::default(),
            in_flight: Mutex::default(),
            detection: None,
            shared: None,
            budget: budget::DecodeBudget::new(budget::DECODE_BUDGET_BYTES),
            sink: sink::SinkHealth::default(),
            wait_for_sink: AtomicBool::new(true),
            probing: tokio::sync::Mutex::new(()),
            unresolved: Mutex::default(),
        }
    }

    /// Whether ingestion waits for a lake or ledger that refused writes to take them again
    /// (the default, for a service), or leaves the objects for a later run (`false`, for a
    /// one-shot run).
    pub fn set_wait_for_sink(&self, wait: bool) {
        self.wait_for_sink.store(wait, Ordering::Relaxed);
    }

    /// Why the lake or the ledger refuses writes, while it does.
    pub fn sink_error(&self) -> Option<String> {
        self.sink.error()
    }

    /// Completes and commits a group's files once they hold `rows` rows (default
    /// [`GROUP_MAX_ROWS`]); the other bounds of a group still hold.
    pub fn with_group_rows(mut self, rows: usize) -> Self {
        self.group_rows = rows.max(1);
        self
    }

    /// Keeps event-id claims for `retention` before the newest event (default
    /// [`EVENT_ID_RETENTION`]).
    pub fn with_event_id_retention(mut self, retention: std::time::Duration) -> Self {
        self.event_id_retention = retention;
        self
    }

    /// Decides event-id ownership and skips objects through `shared`, for several workers.
    /// Each object then has files of its own, named after it, so that two workers that
    /// process the same object at once write the same files instead of two copies.
    pub fn with_shared(mut self, shared: Arc<SharedLake>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Runs `detection` on every batch this pipeline persists.
    pub fn with_detection(mut self, detection: Detection) -> Self {
        self.detection = Some(detection);
        self
    }

    pub fn detection(&self) -> Option<&Detection> {
        self.detection.as_ref()
    }

    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }
}

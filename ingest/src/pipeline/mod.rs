//! From listed objects to committed lake files.
//!
//! For each source scan: list → keep objects the ledger has not recorded in this version →
//! up to twice `concurrency` objects at once: classify the key, fetch the bytes, then (at most
//! `concurrency` at once) on a blocking thread decode and drop CloudTrail events another object
//! already holds → in listing order, append each object's rows to the open commit group
//! ([`Group`]) → a full group completes its Parquet files (durable on return) and only then
//! commits its objects to the ledger, on a blocking thread while the next group fills (one
//! commit at a time, in order). An object that fails is retried on later scans, and recorded as
//! failed after [`MAX_ATTEMPTS`] tries so that one bad object cannot stall the others. A failure
//! of the lake or the ledger is not the object's: ingestion pauses until they take writes again
//! ([`sink`]) and the object is retried. The objects between fetch and group are bounded in
//! bytes as well as in number ([`budget`]). Once an hour, the ledger forgets the event-id claims
//! older than the retention.

mod budget;
mod decoders;
mod sink;

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use auditlake_query::LakeRoot;
use auditlake_schema as schema;

use auditlake_detect::deliver::Webhook;
use auditlake_detect::engine::EngineState;
use auditlake_detect::{Alert, Engine, outbox};
use tokio::sync::Notify;

use crate::decode::{self, DecodeLimits, Decoded, ObjectContext};
use crate::lake::{
    self,
    writer::{GroupFiles, LakeWriter},
};
use crate::ledger::{
    Claim, ClaimKey, CommittedObject, Ledger, LedgerError, ObjectEntry, ObjectStatus,
};
use crate::shared::{SharedError, SharedLake};
use crate::source::layout::ObjectKind;
use crate::source::{LogSource, SourceError, SourceObject};

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
const GROUP_MAX_OBJECTS: usize = 4096;
const GROUP_MAX_BUFFERED_BYTES: usize = 48 << 20;

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
        source: lake::writer::WriteError,
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
        use lake::writer::WriteError;
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

/// Counters of this process, for status and metrics.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub scans: AtomicU64,
    pub objects_ingested: AtomicU64,
    pub objects_skipped: AtomicU64,
    pub objects_failed: AtomicU64,
    pub object_errors: AtomicU64,
    pub bytes_read: AtomicU64,
    pub cloudtrail_rows: AtomicU64,
    pub mongodb_audit_rows: AtomicU64,
    pub rejected_rows: AtomicU64,
    pub duplicate_events: AtomicU64,
    pub digests: AtomicU64,
    pub alerts: AtomicU64,
    /// SQS messages received, those ignored (test events, other buckets, removals) and those
    /// that could not be read.
    pub notifications: AtomicU64,
    pub notifications_ignored: AtomicU64,
    pub notifications_malformed: AtomicU64,
    /// Log events read from CloudWatch Logs.
    pub cloudwatch_events: AtomicU64,
    /// Newest modification time of an object seen in a listing or notification, and of one
    /// ingested, in microseconds; their difference is the ingest lag.
    pub newest_seen_micros: AtomicI64,
    pub newest_ingested_micros: AtomicI64,
    /// Errors by kind (`fetch`, `gone`, `decode`, `list`, `sqs`, ...).
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// True after a scan that found nothing new, nothing unsettled and no failure.
    pub idle: AtomicBool,
}

/// A point-in-time copy of [`IngestStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub scans: u64,
    pub objects_ingested: u64,
    pub objects_skipped: u64,
    pub objects_failed: u64,
    pub object_errors: u64,
    pub bytes_read: u64,
    pub cloudtrail_rows: u64,
    pub mongodb_audit_rows: u64,
    pub rejected_rows: u64,
    pub duplicate_events: u64,
    pub digests: u64,
    pub alerts: u64,
    pub notifications: u64,
    pub notifications_ignored: u64,
    pub notifications_malformed: u64,
    pub cloudwatch_events: u64,
    pub newest_seen_micros: i64,
    pub newest_ingested_micros: i64,
}

impl IngestStats {
    /// Counts one error of `kind`.
    pub fn count_error(&self, kind: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// Errors by kind, so far.
    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            scans: load(&self.scans),
            objects_ingested: load(&self.objects_ingested),
            objects_skipped: load(&self.objects_skipped),
            objects_failed: load(&self.objects_failed),
            object_errors: load(&self.object_errors),
            bytes_read: load(&self.bytes_read),
            cloudtrail_rows: load(&self.cloudtrail_rows),
            mongodb_audit_rows: load(&self.mongodb_audit_rows),
            rejected_rows: load(&self.rejected_rows),
            duplicate_events: load(&self.duplicate_events),
            digests: load(&self.digests),
            alerts: load(&self.alerts),
            notifications: load(&self.notifications),
            notifications_ignored: load(&self.notifications_ignored),
            notifications_malformed: load(&self.notifications_malformed),
            cloudwatch_events: load(&self.cloudwatch_events),
            newest_seen_micros: self.newest_seen_micros.load(Ordering::Relaxed),
            newest_ingested_micros: self.newest_ingested_micros.load(Ordering::Relaxed),
        }
    }
}

/// What one scan of one source did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub listed: usize,
    /// Listed objects the ledger had not recorded in this version.
    pub fresh: usize,
    pub processed: usize,
    pub failed: usize,
    pub unsettled: usize,
    /// Objects left for a later scan because the lake or the ledger refused writes.
    pub deferred: usize,
    /// The source listed objects and none of them matches a known layout (a prefix or `kind`
    /// that points beside the logs): one of them, as an example.
    pub none_recognized: Option<String>,
}

/// The rule engine and where its alerts go; shared by the objects in flight.
#[derive(Debug, Clone)]
pub struct Detection {
    pub engine: Arc<Mutex<Engine>>,
    pub webhooks: Arc<Vec<Webhook>>,
    /// Woken when alerts are queued.
    pub wake: Arc<Notify>,
}

impl Detection {
    fn observe(&self, table: &str, batch: &RecordBatch, now_micros: i64) -> Vec<Alert> {
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        engine.observe(table, batch, now_micros)
    }

    /// The engine state now.
    fn save(&self) -> EngineState {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).save()
    }

    /// Saves `state` (the engine's after a group's last object) and queues `alerts`, inside
    /// the ledger transaction `tx`.
    fn persist(
        &self,
        tx: &redb::WriteTransaction,
        state: &EngineState,
        alerts: &[Alert],
        now_micros: i64,
    ) -> Result<(), redb::Error> {
        outbox::save_state(tx, state)?;
        let sinks_for = |a: &Alert| {
            self.webhooks
                .iter()
                .filter(|w| w.takes(a))
                .map(|w| w.name.clone())
                .collect()
        };
        outbox::enqueue(tx, alerts, &sinks_for, now_micros)?;
        Ok(())
    }
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

/// A group whose publish was noted in the ledger and whose commit failed for a cause of the
/// machine: whether the commit went through is known only once the ledger reads again. Its
/// files stay until then; if the note is still there, the commit did not happen and they go.
#[derive(Debug)]
struct Unresolved {
    stem: String,
    paths: Vec<String>,
}

/// One object read, decoded and deduplicated, on its way into a commit group.
struct Prepared {
    object: SourceObject,
    entry: ObjectEntry,
    /// Rows to write; `cloudtrail` holds only the events this object keeps.
    decoded: Decoded,
    /// Claim keys of the events its rows hold.
    claims: Vec<ClaimKey>,
    /// Source positions committed with it.
    cursors: Vec<(String, Vec<u8>)>,
}

/// An object of a group, what its commit records.
struct Member {
    object: SourceObject,
    entry: ObjectEntry,
    claims: Vec<ClaimKey>,
    digest: bool,
}

/// A group's commit running on a blocking thread.
struct Committing {
    objects: Vec<SourceObject>,
    task: tokio::task::JoinHandle<CommitResult>,
}

/// A committed group's objects and alerts, or the group (to abandon) and why it failed.
type CommitResult = Result<(Vec<Member>, Vec<Alert>), Box<(Group, ObjectError)>>;

/// How a commit failed: with the group to abandon, or with its task (a panic).
enum CommitFailed {
    Group(Box<(Group, ObjectError)>),
    Lost(GroupFailure),
}

/// Why a group could not be committed, and the objects that were in it.
struct GroupFailure {
    objects: Vec<SourceObject>,
    error: Box<ObjectError>,
    /// Its files, if the commit may have gone through.
    unresolved: Option<Unresolved>,
}

/// Objects whose rows share one set of lake files and one ledger commit. Rows stream into
/// one Parquet file per table and partition ([`GroupFiles`]); detection runs as each object
/// joins, in order, so the detector state committed with the group covers exactly its objects.
///
/// Commit order: files completed and synced under temporary names → their paths noted in the
/// ledger (`begin_publish`) → files put in place → objects, claims, cursors, detector state
/// and alerts committed, ending the publish, in one transaction. A crash after the note and
/// before the commit leaves files no object owns; [`Pipeline::recover`] deletes them at the
/// next start, so the redo's rows are the only ones.
struct Group {
    ledger: Arc<Ledger>,
    writer: LakeWriter,
    detection: Option<Detection>,
    /// One object per group, its files named after it (see [`Pipeline::with_shared`]).
    per_object: bool,
    /// Rows after which the group is full.
    max_rows: usize,
    stem: String,
    files: Option<GroupFiles>,
    /// The files' paths once they were closed for publishing, and whether the ledger notes them.
    closed_paths: Vec<String>,
    noted: bool,
    members: Vec<Member>,
    alerts: Vec<Alert>,
    cursors: Vec<(String, Vec<u8>)>,
    /// Detector state before the first object joined, restored if the group is abandoned.
    detector_before: Option<EngineState>,
    /// Detector state after the last object joined (see [`Group::seal`]), committed with the
    /// group: the next group may be observing already while this one commits.
    detector_after: Option<EngineState>,
}

impl Group {
    fn new(
        ledger: Arc<Ledger>,
        writer: LakeWriter,
        detection: Option<Detection>,
        per_object: bool,
        max_rows: usize,
    ) -> Self {
        Group {
            ledger,
            writer,
            detection,
            per_object,
            max_rows,
            stem: String::new(),
            files: None,
            closed_paths: Vec::new(),
            noted: false,
            members: Vec::new(),
            alerts: Vec::new(),
            cursors: Vec::new(),
            detector_before: None,
            detector_after: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether the group is large enough to commit.
    fn is_full(&self) -> bool {
        (self.per_object && !self.members.is_empty())
            || self.members.len() >= GROUP_MAX_OBJECTS
            || self.files.as_ref().is_some_and(|f| {
                f.rows() >= self.max_rows || f.buffered_bytes() >= GROUP_MAX_BUFFERED_BYTES
            })
    }

    /// Runs detection on `prepared`'s rows and appends them (and the alerts they raise) to the
    /// group's files. On error the group holds part of the object's rows: abandon it.
    fn add(&mut self, prepared: Prepared) -> Result<(), Box<(SourceObject, ObjectError)>> {
        let Prepared {
            object,
            mut entry,
            decoded,
            claims,
            cursors,
        } = prepared;
        let now = chrono::Utc::now().timestamp_micros();
        let mut alerts = Vec::new();
        if let Some(d) = &self.detection {
            if self.detector_before.is_none() {
                let mut engine = d.engine.lock().unwrap_or_else(|p| p.into_inner());
                self.detector_before = Some(engine.save());
            }
            if let Some(batch) = &decoded.cloudtrail {
                alerts.extend(d.observe(schema::CLOUDTRAIL, batch, now));
            }
            if let Some(batch) = &decoded.mongodb_audit {
                alerts.extend(d.observe(schema::MONGODB_AUDIT, batch, now));
            }
        }
        let alert_rows = if alerts.is_empty() {
            None
        } else {
            match auditlake_detect::alert::to_batch(&alerts) {
                Ok(batch) => Some(batch),
                Err(source) => {
                    let error = ObjectError::Arrow {
                        uri: object.uri.clone(),
                        action: "building alert rows",
                        source,
                    };
                    return Err(Box::new((object, error)));
                }
            }
        };
        entry.alerts = alerts.len() as u64;
        let tables = [
            (schema::CLOUDTRAIL, &decoded.cloudtrail),
            (schema::MONGODB_AUDIT, &decoded.mongodb_audit),
            (schema::ALERTS, &alert_rows),
            (schema::REJECTED, &decoded.rejected),
        ];
        for (table, batch) in tables {
            let Some(batch) = batch.as_ref().filter(|b| b.num_rows() > 0) else {
                continue;
            };
            let files = self.files.get_or_insert_with(|| {
                self.stem = if self.per_object {
                    lake::file_stem(&object.uri)
                } else {
                    lake::group_stem(&object.uri)
                };
                self.writer.open_group(self.stem.clone())
            });
            match files.append(table, batch, object.modified_micros) {
                Ok(paths) => {
                    for path in paths {
                        if !entry.files.contains(&path) {
                            entry.files.push(path);
                        }
                    }
                }
                Err(source) => {
                    let error = ObjectError::Write {
                        uri: object.uri.clone(),
                        source,
                    };
                    return Err(Box::new((object, error)));
                }
            }
        }
        self.alerts.extend(alerts);
        self.cursors.extend(cursors);
        self.members.push(Member {
            object,
            entry,
            claims,
            digest: decoded.digest,
        });
        Ok(())
    }

    /// Ends the group: no object joins after this. Notes the detector state to commit.
    fn seal(&mut self) {
        if let Some(d) = &self.detection {
            self.detector_after = Some(d.save());
        }
    }

    /// Publishes the group's files and commits its objects; see [`Group`]. On failure the
    /// group is handed back to be abandoned (after any group that joined objects since).
    fn commit(mut self) -> CommitResult {
        match self.publish_and_commit() {
            Ok(()) => Ok((self.members, self.alerts)),
            Err(error) => Err(Box::new((self, error))),
        }
    }

    fn publish_and_commit(&mut self) -> Result<(), ObjectError> {
        let uri = self
            .members
            .first()
            .map(|m| m.object.uri.clone())
            .unwrap_or_default();
        let write_err = |source| ObjectError::Write {
            uri: uri.clone(),
            source,
        };
        let mut noted = false;
        if let Some(files) = self.files.take() {
            self.closed_paths = files.paths();
            let finished = files.finish().map_err(write_err)?;
            // Files named after their one object are replaced by a redo: no note needed.
            if !self.per_object {
                self.ledger.begin_publish(&self.stem, &self.closed_paths)?;
                self.noted = true;
                noted = true;
            }
            finished.publish().map_err(write_err)?;
        }
        let objects: Vec<CommittedObject> = self
            .members
            .iter()
            .map(|m| CommittedObject {
                uri: &m.object.uri,
                entry: &m.entry,
                claims: &m.claims,
            })
            .collect();
        let stem = noted.then_some(self.stem.as_str());
        let now = chrono::Utc::now().timestamp_micros();
        let detector = match (&self.detection, &self.detector_after) {
            (Some(d), Some(state)) => Some((d, state)),
            _ => None,
        };
        self.ledger.commit_group(&objects, stem, &|tx| {
            crate::ledger::put_cursors(tx, &self.cursors)?;
            match detector {
                Some((d, state)) => d.persist(tx, state, &self.alerts, now),
                None => Ok(()),
            }
        })?;
        Ok(())
    }

    /// Undoes what the group wrote (its files, the detector's observations of its objects and
    /// of `also`, an object that failed joining it) after `error`. Files of a commit that
    /// failed in the ledger may be committed: they are left, unresolved, for the pipeline.
    fn abandon(mut self, error: ObjectError, also: Option<&str>) -> GroupFailure {
        let paths = match self.files.take() {
            Some(files) => files.paths(),
            None => std::mem::take(&mut self.closed_paths),
        };
        self.undo_detection(also);
        if self.noted && matches!(error, ObjectError::Ledger(_)) {
            return GroupFailure {
                objects: self.members.into_iter().map(|m| m.object).collect(),
                error: Box::new(error),
                unresolved: Some(Unresolved {
                    stem: self.stem,
                    paths,
                }),
            };
        }
        let mut unresolved = None;
        // Files named after their object may be another worker's committed copy, and a redo
        // replaces them anyway: only their temporary names go.
        let discarded = if self.per_object {
            self.writer.discard_unpublished(&paths)
        } else {
            self.writer.discard(&paths)
        };
        match discarded {
            Ok(()) if self.noted => {
                if let Err(e) = self.ledger.end_publish(&self.stem) {
                    tracing::warn!(group = %self.stem, error = %e, "files of an abandoned group deleted; the ledger still lists them");
                    unresolved = Some(Unresolved {
                        stem: self.stem.clone(),
                        paths,
                    });
                }
            }
            Ok(()) => {}
            // The ledger's note (if any) has them deleted at the next start.
            Err(e) => {
                tracing::warn!(group = %self.stem, error = %e, "could not delete the files of an abandoned group")
            }
        }
        GroupFailure {
            objects: self.members.into_iter().map(|m| m.object).collect(),
            error: Box::new(error),
            unresolved,
        }
    }

    /// Takes back the detector's observations of the group's objects and of `also`; see
    /// [`auditlake_detect::Engine::abandon`].
    fn undo_detection(&mut self, also: Option<&str>) {
        if let (Some(d), Some(state)) = (&self.detection, self.detector_before.take()) {
            let owners: HashSet<&str> = self
                .members
                .iter()
                .map(|m| m.object.uri.as_str())
                .chain(also)
                .collect();
            d.engine
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .abandon(state, &owners);
        }
    }
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

    /// Whether the lake and the ledger take writes, waiting (in a service) for them to take
    /// writes again after a failure: probes with growing pauses until one succeeds or `stop`.
    pub async fn sink_ready(&self, stop: &CancellationToken) -> bool {
        loop {
            let Some(wait) = self.sink.wait() else {
                return true;
            };
            if !self.wait_for_sink.load(Ordering::Relaxed) {
                return false;
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
            // Tasks of other sources wait for this probe, then find the sink up or its next
            // probe due later.
            let _probing = self.probing.lock().await;
            if self.sink.wait().is_none_or(|w| !w.is_zero()) {
                continue;
            }
            match self.probe_sink().await {
                Ok(()) => {
                    if let Some(down) = self.sink.recovered() {
                        tracing::info!(
                            down_ms = down.as_millis() as u64,
                            "the lake and the ledger take writes again; ingestion resumes"
                        );
                    }
                }
                Err(error) => {
                    let probes = self.sink.probe_failed(&error.to_string());
                    tracing::warn!(probes, error = %error, "the lake or the ledger still refuses writes");
                }
            }
        }
    }

    /// Probes the lake and the ledger (reopening a ledger that an I/O error closed), then
    /// settles the groups whose commit may have gone through.
    async fn probe_sink(&self) -> Result<(), ObjectError> {
        let writer = self.writer.clone();
        let ledger = self.ledger.clone();
        let unresolved =
            std::mem::take(&mut *self.unresolved.lock().unwrap_or_else(|p| p.into_inner()));
        let (result, left) = tokio::task::spawn_blocking(move || {
            let probed = writer
                .probe()
                .map_err(|source| ObjectError::Write {
                    uri: String::new(),
                    source,
                })
                .and_then(|()| ledger.check_writable().map_err(ObjectError::from));
            if let Err(e) = probed {
                return (Err(e), unresolved);
            }
            let mut left = Vec::new();
            let mut result = Ok(());
            for group in unresolved {
                if result.is_err() {
                    left.push(group);
                    continue;
                }
                let settled = ledger.is_publishing(&group.stem).map_err(ObjectError::from).and_then(|noted| {
                    if noted {
                        writer.discard(&group.paths).map_err(|source| ObjectError::Write { uri: group.stem.clone(), source })?;
                        ledger.end_publish(&group.stem)?;
                        tracing::info!(group = %group.stem, files = group.paths.len(), "deleted the files of a group whose commit failed");
                    }
                    Ok(())
                });
                if let Err(e) = settled {
                    result = Err(e);
                    left.push(group);
                }
            }
            (result, left)
        })
        .await
        .map_err(|e| ObjectError::Task {
            uri: String::new(),
            message: e.to_string(),
        })?;
        self.unresolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(left);
        result
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

    /// Forgets the event-id claims older than the retention, at most once an hour (the first
    /// time at the first ingest). Housekeeping: a failure is logged and tried again an hour
    /// later, and ingestion goes on.
    async fn forget_old_claims(&self) {
        let now = chrono::Utc::now().timestamp_micros();
        let last = self.claims_cleaned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < CLAIM_CLEANUP_INTERVAL_MICROS
            || self
                .claims_cleaned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let ledger = self.ledger.clone();
        let retention = self.event_id_retention;
        let forgotten =
            tokio::task::spawn_blocking(move || ledger.forget_old_claims(retention, now)).await;
        let retention = humantime::format_duration(retention);
        match forgotten {
            Ok(Ok(0)) => {}
            Ok(Ok(claims)) => tracing::info!(
                claims,
                %retention,
                "forgot the event-id claims older than the retention"
            ),
            Ok(Err(error)) => {
                self.stats.count_error("ledger");
                tracing::warn!(%error, "forgetting old event-id claims failed; trying again in an hour");
            }
            Err(error) => tracing::warn!(%error, "forgetting old event-id claims ended abnormally"),
        }
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

    /// Deletes the files of groups that were being published when an earlier run stopped and
    /// were never committed (see [`Group`]), and the temporary files it left. Call once, before
    /// ingesting.
    pub async fn recover(&self) -> Result<usize, ObjectError> {
        // Temporary files of groups a killed run was filling, or that failed: in a lake of its
        // own all are ours; a shared lake keeps what another worker may be writing now.
        let older_than = self.shared.as_ref().map(|_| STRAY_TEMP_AGE);
        let writer = self.writer.clone();
        let removed =
            tokio::task::spawn_blocking(move || writer.remove_stray_temp_files(older_than))
                .await
                .map_err(|e| ObjectError::Task {
                    uri: String::new(),
                    message: e.to_string(),
                })?
                .map_err(|source| ObjectError::Write {
                    uri: String::new(),
                    source,
                })?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed temporary files an earlier run left in the lake"
            );
        }
        let ledger = self.ledger.clone();
        let unfinished = ledger.unfinished_publishes()?;
        if unfinished.is_empty() {
            return Ok(0);
        }
        // A PUT the stopped process had sent may still be applied by the store after it died:
        // deleting before then would leave that file in the lake. Local files appear only by a
        // rename, which a stopped process cannot make.
        if matches!(self.writer.root(), LakeRoot::Store { .. }) {
            let now = chrono::Utc::now().timestamp_micros();
            let youngest = unfinished
                .iter()
                .map(|u| u.noted_at_micros.unwrap_or(now))
                .max()
                .unwrap_or(now);
            let settled_at = youngest + PUBLISH_SETTLE.as_micros() as i64;
            if settled_at > now {
                let wait = std::time::Duration::from_micros((settled_at - now) as u64);
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "waiting for writes of the stopped run to settle before deleting its uncommitted files"
                );
                tokio::time::sleep(wait).await;
            }
        }
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            for u in &unfinished {
                writer
                    .discard(&u.paths)
                    .map_err(|source| ObjectError::Write {
                        uri: u.stem.clone(),
                        source,
                    })?;
                ledger.end_publish(&u.stem)?;
                tracing::info!(group = %u.stem, files = u.paths.len(), "deleted the files of a group an earlier run did not commit");
            }
            Ok(unfinished.len())
        })
        .await
        .map_err(|e| ObjectError::Task {
            uri: String::new(),
            message: e.to_string(),
        })?
    }

    /// Lists `source` and ingests every object not yet recorded, until `stop`. The listing's
    /// cursors are saved only when every listed object is recorded and `stop` did not cut the
    /// scan short.
    pub async fn scan(
        &self,
        source: &dyn LogSource,
        stop: &CancellationToken,
    ) -> Result<ScanReport, ScanError> {
        self.scan_with_progress(source, stop, None).await
    }

    /// [`Pipeline::scan`], advancing `progress` once per object done.
    pub async fn scan_with_progress(
        &self,
        source: &dyn LogSource,
        stop: &CancellationToken,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<ScanReport, ScanError> {
        if !self.sink_ready(stop).await {
            return Ok(ScanReport::default());
        }
        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        let listing = source.list().await.map_err(|error| {
            self.stats.count_error("list");
            ScanError::List {
                source_name: source.name().to_owned(),
                error,
            }
        })?;
        let mut report = self
            .ingest_objects(source, &listing.objects, stop, progress)
            .await?;
        report.unsettled = listing.unsettled;
        if !listing.objects.is_empty()
            && listing
                .objects
                .iter()
                .all(|o| source.classify(&o.key) == ObjectKind::Unrecognized)
        {
            let example = listing.objects[0].uri.clone();
            self.stats.count_error("none_recognized");
            tracing::warn!(source = source.name(), listed = listing.objects.len(), example = %example,
                "the source lists objects but none matches a known layout (CloudTrail AWSLogs/…/CloudTrail/…, Atlas <cluster>/<host>/<logType>/…): check its prefix and kind");
            report.none_recognized = Some(example);
        }
        if report.failed == 0 && report.processed == report.fresh && !stop.is_cancelled() {
            self.ledger
                .save_cursors(&listing.cursors)
                .inspect_err(|e| self.ledger_failed(e))?;
        }
        Ok(report)
    }

    /// Ingests those of `objects` (from `source`) that the ledger has not recorded in their
    /// listed version, until `stop`: up to twice `concurrency` objects fetched and at most
    /// `concurrency` decoded at once, in listing order, through a bounded channel into commit groups (see [`Group`]).
    /// `progress` is advanced once per object done.
    pub async fn ingest_objects(
        &self,
        source: &dyn LogSource,
        objects: &[SourceObject],
        stop: &CancellationToken,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<ScanReport, ScanError> {
        if !self.sink_ready(stop).await {
            return Ok(ScanReport {
                listed: objects.len(),
                fresh: objects.len(),
                deferred: objects.len(),
                ..ScanReport::default()
            });
        }
        self.forget_old_claims().await;
        // A key once skipped as matching no layout is looked at again when this source
        // recognises it (it was listed before under a prefix the layouts were not matched on).
        // So is one recorded as failed for a cause of ours (by an earlier version).
        let unrecognized = ObjectKind::Unrecognized.label();
        let fresh: Vec<SourceObject> = self
            .ledger
            .unrecorded_or(
                objects,
                |o| (o.uri.as_str(), o.version.as_str()),
                |o, entry| {
                    (entry.kind == unrecognized
                        && source.classify(&o.key) != ObjectKind::Unrecognized)
                        || (entry.status == ObjectStatus::Failed
                            && SINK_FAILURE_KINDS.contains(&entry.kind.as_str()))
                },
            )
            .inspect_err(|e| self.ledger_failed(e))?
            .into_iter()
            .cloned()
            .collect();
        let mut report = ScanReport {
            listed: objects.len(),
            fresh: fresh.len(),
            ..ScanReport::default()
        };
        let fresh = InFlight::take(&self.in_flight, fresh);
        if let Some(newest) = objects.iter().map(|o| o.modified_micros).max() {
            self.stats
                .newest_seen_micros
                .fetch_max(newest, Ordering::Relaxed);
        }
        if let Some(bar) = progress {
            bar.inc_length(fresh.objects.len() as u64);
        }
        let done = |n: usize| {
            if let Some(bar) = progress {
                bar.inc(n as u64);
            }
        };
        let taken = fresh.objects.clone();
        let (sender, mut receiver) =
            tokio::sync::mpsc::channel::<(Prepared, Option<Reserved>)>(self.concurrency);
        // Objects in flight finish when `stop` fires; no new one starts.
        let produce = async move {
            let (mut failed, mut sent) = (0, 0);
            // Budget is reserved one object after another, in listing order, before its fetch.
            let prepared = futures::stream::iter(taken)
                .take_until(stop.clone().cancelled_owned())
                .then({
                    let budget = self.budget.clone();
                    move |object: SourceObject| budget.clone().reserve_owned(object)
                })
                .map(|(object, reserved)| async move {
                    let result = self.prepare(source, &object).await;
                    (object, result, reserved)
                })
                .buffered(2 * self.concurrency);
            let mut prepared = std::pin::pin!(prepared);
            while let Some((object, result, mut reserved)) = prepared.next().await {
                // The lake or the ledger refuses writes: take no more (those not sent are
                // left for a later scan).
                if self.sink.is_down() {
                    break;
                }
                match result {
                    Ok(p) => {
                        if let Some(reserved) = reserved.as_mut() {
                            self.budget.settle(reserved, p.decoded.memory_size());
                        }
                        if sender.send((p, reserved)).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    Err(error) => {
                        self.object_failed(source.name(), &object, &error);
                        failed += 1;
                        done(1);
                    }
                }
            }
            (failed, sent)
        };
        // A full group commits while the next one fills; one commit at a time, in order.
        let consume = async {
            let (mut committed, mut failed, mut deferred) = (0, 0, 0);
            let mut group = self.new_group();
            let mut committing: Option<Committing> = None;
            let mut next = receiver.recv().await;
            while let Some((prepared, reserved)) = next.take() {
                if self.sink.is_down() {
                    deferred += 1;
                    done(1);
                } else {
                    let added;
                    (group, added) = self.add_to(group, prepared).await;
                    // Its rows are the group's now, and count against its bounds.
                    drop(reserved);
                    if let Err(failure) = added {
                        let n = self.group_failed(source.name(), failure);
                        failed += n;
                        done(n);
                    }
                }
                next = receiver.recv().await;
                if group.is_full() || (next.is_none() && !group.is_empty()) {
                    let full = std::mem::replace(&mut group, self.new_group());
                    let (ok, bad, full) = self
                        .end_commit(source.name(), committing.take(), Some(full))
                        .await;
                    (committed, failed) = (committed + ok, failed + bad);
                    done(ok + bad);
                    committing = full.map(|g| self.start_commit(g));
                }
            }
            let (ok, bad, _) = self
                .end_commit(source.name(), committing.take(), None)
                .await;
            done(ok + bad);
            (committed + ok, failed + bad, deferred)
        };
        let count = fresh.objects.len();
        let ((produce_failed, sent), (committed, consume_failed, consume_deferred)) =
            tokio::join!(produce, consume);
        drop(fresh);
        let never_sent = count - sent - produce_failed;
        report.processed = committed + consume_failed + produce_failed;
        report.failed = consume_failed + produce_failed;
        report.deferred = consume_deferred + never_sent;
        done(never_sent);
        Ok(report)
    }

    /// Ingests bytes that a stream source has already read, as object `object`, committing
    /// `cursors` in the same ledger transaction as the object (see [`crate::source::cloudwatch`]).
    pub async fn ingest_read(
        &self,
        object: SourceObject,
        kind: ObjectKind,
        bytes: Vec<u8>,
        cursors: Vec<(String, Vec<u8>)>,
    ) -> Result<(), ObjectError> {
        let result = async {
            let prepared = self.prepare_bytes(&object, kind, bytes, cursors).await?;
            let (group, added) = self.add_to(self.new_group(), prepared).await;
            added.map_err(|f| *f.error)?;
            match self.finish_commit(self.start_commit(group)).await {
                Ok(_) => Ok::<(), ObjectError>(()),
                Err(CommitFailed::Group(failed)) => {
                    let (group, error) = *failed;
                    let message = error.to_string();
                    let failure = Self::abandon(vec![(group, error)]).await.pop();
                    Err(failure.map_or(
                        ObjectError::Task {
                            uri: object.uri.clone(),
                            message,
                        },
                        |f| *f.error,
                    ))
                }
                Err(CommitFailed::Lost(failure)) => Err(*failure.error),
            }
        }
        .await;
        if let Err(e) = &result {
            if e.is_sink_failure() {
                self.sink.failed(&e.to_string());
            }
            self.stats.object_errors.fetch_add(1, Ordering::Relaxed);
            self.stats.count_error(e.kind());
            tracing::warn!(uri = %object.uri, kind = e.kind(), error = %e, "read not ingested");
        }
        result
    }

    fn new_group(&self) -> Group {
        Group::new(
            self.ledger.clone(),
            self.writer.clone(),
            self.detection.clone(),
            self.shared.is_some(),
            self.group_rows,
        )
    }

    /// Adds `prepared` to `group` on a blocking thread; on failure (or panic) the group is
    /// abandoned.
    async fn add_to(
        &self,
        mut group: Group,
        prepared: Prepared,
    ) -> (Group, Result<(), GroupFailure>) {
        let object = prepared.object.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // A panic while adding leaves the group half written: abandon it like an error,
            // which deletes its files and restores the detector state.
            let added =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.add(prepared)));
            let (object, error) = match added {
                Ok(Ok(())) => return Ok(group),
                Ok(Err(failed)) => *failed,
                Err(panic) => {
                    let error = ObjectError::Task {
                        uri: object.uri.clone(),
                        message: decoders::panic_message(panic.as_ref()),
                    };
                    (object, error)
                }
            };
            let mut failure = group.abandon(error, Some(&object.uri));
            failure.objects.push(object);
            Err(failure)
        })
        .await;
        match joined {
            Ok(Ok(group)) => (group, Ok(())),
            Ok(Err(failure)) => (self.new_group(), Err(failure)),
            // Only when the runtime shuts down; the group's objects are not recorded, so a
            // later run processes them.
            Err(e) => (
                self.new_group(),
                Err(GroupFailure {
                    objects: Vec::new(),
                    error: Box::new(ObjectError::Task {
                        uri: String::new(),
                        message: e.to_string(),
                    }),
                    unresolved: None,
                }),
            ),
        }
    }

    /// Seals `group` and starts its commit on a blocking thread.
    fn start_commit(&self, mut group: Group) -> Committing {
        group.seal();
        Committing {
            objects: group.members.iter().map(|m| m.object.clone()).collect(),
            task: tokio::task::spawn_blocking(move || group.commit()),
        }
    }

    /// Waits for the commit in flight, if any, then hands back `next` (the group that filled
    /// meanwhile) to be committed in turn: the objects committed and failed, and that group. If
    /// the commit failed, `next` is abandoned first (its detector observations came after the
    /// failed group's, which are undone next) and its objects fail with it, to be retried.
    async fn end_commit(
        &self,
        source_name: &str,
        committing: Option<Committing>,
        next: Option<Group>,
    ) -> (usize, usize, Option<Group>) {
        let Some(committing) = committing else {
            return (0, 0, next);
        };
        let failed = match self.finish_commit(committing).await {
            Ok(n) => return (n, 0, next),
            Err(failed) => failed,
        };
        let message = |error: &ObjectError| error.to_string();
        let mut to_abandon = Vec::new();
        let mut lost = None;
        let cause = match failed {
            CommitFailed::Group(failed) => {
                let (group, error) = *failed;
                let cause = message(&error);
                to_abandon.push((group, error));
                cause
            }
            CommitFailed::Lost(failure) => {
                let cause = message(&failure.error);
                lost = Some(failure);
                cause
            }
        };
        if let Some(next) = next.filter(|g| !g.is_empty()) {
            let error = ObjectError::AfterFailedGroup {
                uri: next.members[0].object.uri.clone(),
                cause,
            };
            to_abandon.insert(0, (next, error));
        }
        let mut n = 0;
        for failure in Self::abandon(to_abandon).await.into_iter().chain(lost) {
            n += self.group_failed(source_name, failure);
        }
        (0, n, None)
    }

    /// Abandons `groups` in order, on a blocking thread (deleting files may wait on a store).
    async fn abandon(groups: Vec<(Group, ObjectError)>) -> Vec<GroupFailure> {
        if groups.is_empty() {
            return Vec::new();
        }
        let abandoned = tokio::task::spawn_blocking(move || {
            groups
                .into_iter()
                .map(|(group, error)| group.abandon(error, None))
                .collect()
        })
        .await;
        // Only when the runtime shuts down: the objects were not recorded, a later run
        // processes them.
        abandoned.unwrap_or_default()
    }

    /// Waits for a commit, then counts its objects and tells other workers and the webhook
    /// deliverer; the number of objects committed.
    async fn finish_commit(&self, committing: Committing) -> Result<usize, CommitFailed> {
        let Committing { objects, task } = committing;
        let (members, alerts) = match task.await {
            Ok(Ok(committed)) => committed,
            Ok(Err(failed)) => return Err(CommitFailed::Group(failed)),
            // A panic: the group is gone with its thread; its objects are retried.
            Err(e) => {
                return Err(CommitFailed::Lost(GroupFailure {
                    error: Box::new(ObjectError::Task {
                        uri: objects.first().map(|o| o.uri.clone()).unwrap_or_default(),
                        message: e.to_string(),
                    }),
                    objects,
                    unresolved: None,
                }));
            }
        };
        let s = &self.stats;
        for member in &members {
            let (object, e) = (&member.object, &member.entry);
            self.forget_attempts(&object.uri);
            if let Some(shared) = &self.shared
                && e.status == ObjectStatus::Ingested
                && let Err(err) = shared.mark_ingested(&object.uri, &object.version).await
            {
                // Only costs another worker a redo with the same result.
                tracing::warn!(uri = %object.uri, error = %err, "could not mark the object as ingested for other workers");
            }
            if member.digest {
                s.digests.fetch_add(1, Ordering::Relaxed);
            }
            if e.status == ObjectStatus::Skipped {
                s.objects_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            s.objects_ingested.fetch_add(1, Ordering::Relaxed);
            s.newest_ingested_micros
                .fetch_max(object.modified_micros, Ordering::Relaxed);
            s.cloudtrail_rows
                .fetch_add(e.cloudtrail_rows, Ordering::Relaxed);
            s.mongodb_audit_rows
                .fetch_add(e.mongodb_audit_rows, Ordering::Relaxed);
            s.rejected_rows
                .fetch_add(e.rejected_rows, Ordering::Relaxed);
            s.duplicate_events
                .fetch_add(e.duplicate_events, Ordering::Relaxed);
            tracing::debug!(uri = %object.uri, cloudtrail = e.cloudtrail_rows, mongodb_audit = e.mongodb_audit_rows,
                rejected = e.rejected_rows, duplicates = e.duplicate_events, alerts = e.alerts, files = e.files.len(), "object ingested");
        }
        if !alerts.is_empty() {
            s.alerts.fetch_add(alerts.len() as u64, Ordering::Relaxed);
            for alert in &alerts {
                tracing::warn!(rule = %alert.rule_id, severity = alert.severity.as_str(), alert_id = %alert.alert_id, summary = %alert.summary, "alert");
            }
            if let Some(d) = &self.detection {
                d.wake.notify_one();
            }
        }
        Ok(members.len())
    }

    /// Takes the sink down if `error` says the ledger must be reopened.
    fn ledger_failed(&self, error: &LedgerError) {
        if error.needs_reopen() && self.sink.failed(&error.to_string()) {
            tracing::error!(error = %error, "the ledger refused a write; ingestion pauses until it takes writes again");
        }
    }

    /// Counts the failure of every object of a failed group; how many there were.
    fn group_failed(&self, source_name: &str, failure: GroupFailure) -> usize {
        if let Some(unresolved) = failure.unresolved {
            self.unresolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(unresolved);
        }
        for object in &failure.objects {
            self.object_failed(source_name, object, &failure.error);
        }
        failure.objects.len()
    }

    /// Logs and counts one object's failed attempt, recording it as failed after
    /// [`MAX_ATTEMPTS`] (at once when it vanished: no retry can bring it back). A failure that
    /// is not the object's takes the sink down instead, or is only logged.
    fn object_failed(&self, source_name: &str, object: &SourceObject, error: &ObjectError) {
        self.stats.object_errors.fetch_add(1, Ordering::Relaxed);
        self.stats.count_error(error.kind());
        if error.is_sink_failure() {
            if self.sink.failed(&error.to_string()) {
                tracing::error!(source = source_name, uri = %object.uri, kind = error.kind(), error = %error,
                    "the lake or the ledger refused a write; ingestion pauses until they take writes again, and the objects in flight are retried");
            }
            return;
        }
        if !error.counts_against_object() {
            tracing::debug!(source = source_name, uri = %object.uri, error = %error, "object to be retried");
            return;
        }
        let attempts = self.count_attempt(&object.uri);
        tracing::warn!(source = source_name, key = %object.key, uri = %object.uri, kind = error.kind(), attempts, error = %error, "object not ingested");
        let gone = matches!(error, ObjectError::Fetch(SourceError::Gone { .. }));
        if gone || attempts >= MAX_ATTEMPTS {
            self.record_failure(object, error);
        }
    }

    /// Fetches and decodes `object`, or notes why it is skipped.
    async fn prepare(
        &self,
        source: &dyn LogSource,
        object: &SourceObject,
    ) -> Result<Prepared, ObjectError> {
        if let Some(shared) = &self.shared
            && shared
                .ingested_elsewhere(&object.uri, &object.version)
                .await?
        {
            return Ok(skipped(object, "ingested_elsewhere", false));
        }
        let kind = source.classify(&object.key);
        if kind.format().is_none() {
            if kind == ObjectKind::Unrecognized {
                tracing::info!(uri = %object.uri, "object skipped: its key matches no known layout");
            } else {
                tracing::debug!(uri = %object.uri, kind = kind.label(), "object skipped: not an event log");
            }
            let digest = kind == ObjectKind::CloudTrailDigest;
            return Ok(skipped(object, kind.label(), digest));
        }
        // Not read at all when its listed size is over the limit (with a margin for gzip's
        // framing of content that does not compress): it could only be rejected.
        let limit = self.limits.max_object_bytes as u64;
        if object.size > limit.saturating_add(limit / 256) {
            return self
                .prepare_content(object, kind, Content::TooLarge(object.size), Vec::new())
                .await;
        }
        let bytes = source.fetch(object).await?;
        self.prepare_bytes(object, kind, bytes, Vec::new()).await
    }

    /// Decodes one object's bytes on a blocking thread, first removing the rows an earlier
    /// version of it left in the lake, and keeps only the CloudTrail events it owns.
    async fn prepare_bytes(
        &self,
        object: &SourceObject,
        kind: ObjectKind,
        bytes: Vec<u8>,
        cursors: Vec<(String, Vec<u8>)>,
    ) -> Result<Prepared, ObjectError> {
        self.stats
            .bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.prepare_content(object, kind, Content::Read(bytes), cursors)
            .await
    }

    /// [`Pipeline::prepare_bytes`] for what was read of an object, or of one too large to read.
    async fn prepare_content(
        &self,
        object: &SourceObject,
        kind: ObjectKind,
        content: Content,
        cursors: Vec<(String, Vec<u8>)>,
    ) -> Result<Prepared, ObjectError> {
        let Some(format) = kind.format() else {
            return Ok(skipped(object, kind.label(), false));
        };
        let ledger = self.ledger.clone();
        let writer = self.writer.clone();
        let limits = self.limits;
        let task_object = object.clone();
        let shared = self.shared.clone();
        self.decoders
            .run(move || {
                let now = chrono::Utc::now().timestamp_micros();
                let mut prepared = decode_object(
                    &ledger,
                    shared.as_deref(),
                    &writer,
                    limits,
                    task_object,
                    kind,
                    format,
                    &content,
                    now,
                )?;
                prepared.cursors = cursors;
                Ok(prepared)
            })
            .await
            .map_err(|message| ObjectError::Task {
                uri: object.uri.clone(),
                message,
            })?
    }

    fn count_attempt(&self, uri: &str) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(uri.to_owned()).or_default();
        *n += 1;
        *n
    }

    fn forget_attempts(&self, uri: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uri);
    }

    fn record_failure(&self, object: &SourceObject, error: &ObjectError) {
        // Not `task`: entries of that kind (earlier versions' victims of a failed group) are
        // ingested again, and an object whose decoding panics must stay recorded.
        let kind = match error {
            ObjectError::Task { .. } => "panicked",
            _ => error.kind(),
        };
        let entry = ObjectEntry {
            version: object.version.clone(),
            kind: kind.to_owned(),
            status: ObjectStatus::Failed,
            ..empty_entry()
        };
        match self.ledger.commit(&object.uri, &entry, &[]) {
            Ok(()) => {
                self.stats.objects_failed.fetch_add(1, Ordering::Relaxed);
                self.forget_attempts(&object.uri);
                tracing::error!(key = %object.key, uri = %object.uri, kind = error.kind(), error = %error, "object recorded as failed");
            }
            Err(e) => {
                tracing::error!(uri = %object.uri, error = %e, "could not record failed object")
            }
        }
    }
}

/// Objects one call of [`Pipeline::ingest_objects`] has taken, released when it ends.
struct InFlight<'p> {
    set: &'p Mutex<HashSet<String>>,
    objects: Vec<SourceObject>,
}

impl<'p> InFlight<'p> {
    /// Takes those of `objects` no other call has, leaving the others to it.
    fn take(set: &'p Mutex<HashSet<String>>, objects: Vec<SourceObject>) -> Self {
        let mut busy = set.lock().unwrap_or_else(|p| p.into_inner());
        let objects = objects
            .into_iter()
            .filter(|o| busy.insert(o.uri.clone()))
            .collect();
        InFlight { set, objects }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut busy = self.set.lock().unwrap_or_else(|p| p.into_inner());
        for object in &self.objects {
            busy.remove(&object.uri);
        }
    }
}

/// An object recorded without decoding, `label` saying why.
fn skipped(object: &SourceObject, label: &str, digest: bool) -> Prepared {
    Prepared {
        object: object.clone(),
        entry: ObjectEntry {
            version: object.version.clone(),
            kind: label.to_owned(),
            status: ObjectStatus::Skipped,
            ..empty_entry()
        },
        decoded: Decoded {
            digest,
            ..Decoded::default()
        },
        claims: Vec::new(),
        cursors: Vec::new(),
    }
}

fn empty_entry() -> ObjectEntry {
    ObjectEntry {
        version: String::new(),
        kind: String::new(),
        status: ObjectStatus::Ingested,
        cloudtrail_rows: 0,
        mongodb_audit_rows: 0,
        rejected_rows: 0,
        duplicate_events: 0,
        alerts: 0,
        bytes: 0,
        files: Vec::new(),
    }
}

/// An object's share of the [`budget::DecodeBudget`], held until its rows join a group.
type Reserved = tokio::sync::OwnedSemaphorePermit;

/// An object's content as the pipeline got it.
enum Content {
    Read(Vec<u8>),
    /// Not read: its listed size (this) is over the object limit.
    TooLarge(u64),
}

/// Decodes and deduplicates one object; the blocking half of [`Pipeline::prepare_bytes`].
#[allow(clippy::too_many_arguments)]
fn decode_object(
    ledger: &Ledger,
    shared: Option<&SharedLake>,
    writer: &LakeWriter,
    limits: DecodeLimits,
    object: SourceObject,
    kind: ObjectKind,
    format: decode::Format,
    content: &Content,
    now_micros: i64,
) -> Result<Prepared, ObjectError> {
    // A new version replaces the rows of the one ingested before (idempotent, so a crash
    // before this object's commit just repeats it).
    if let Some(earlier) = ledger.entry(&object.uri)?
        && earlier.version != object.version
        && !earlier.files.is_empty()
    {
        writer
            .remove_rows_of(&object.uri, &earlier.files)
            .map_err(|source| ObjectError::Write {
                uri: object.uri.clone(),
                source,
            })?;
    }
    let atlas = match &kind {
        ObjectKind::AtlasAudit(ctx) => Some(ctx.clone()),
        _ => None,
    };
    let ctx = ObjectContext {
        source_uri: &object.uri,
        ingested_at_micros: now_micros,
        atlas,
    };
    let (decoded, size) = match content {
        Content::Read(bytes) => (
            decode::decode_object(format, bytes, &ctx, limits),
            bytes.len() as u64,
        ),
        Content::TooLarge(size) => (decode::oversized(format, *size, &ctx, limits), 0),
    };
    let mut decoded: Decoded = decoded.map_err(|source| ObjectError::Decode {
        uri: object.uri.clone(),
        source,
    })?;
    let rows = |b: &Option<RecordBatch>| b.as_ref().map_or(0, |b| b.num_rows() as u64);
    let mut entry = ObjectEntry {
        version: object.version.clone(),
        kind: kind.label().to_owned(),
        bytes: size,
        ..empty_entry()
    };
    let mut claims = Vec::new();
    if let Some(batch) = decoded.cloudtrail.take() {
        let (kept, keys, duplicates) =
            drop_duplicate_events(ledger, shared, &object.uri, &batch, object.modified_micros)?;
        entry.duplicate_events = duplicates;
        claims = keys;
        decoded.cloudtrail = Some(kept);
    }
    entry.cloudtrail_rows = rows(&decoded.cloudtrail);
    entry.mongodb_audit_rows = rows(&decoded.mongodb_audit);
    entry.rejected_rows = rows(&decoded.rejected);
    Ok(Prepared {
        object,
        entry,
        decoded,
        claims,
        cursors: Vec::new(),
    })
}

/// Each row's time column value (microseconds), `None` where it has none.
fn event_times(batch: &RecordBatch) -> Vec<Option<i64>> {
    let times = batch
        .column_by_name(schema::time_column(schema::CLOUDTRAIL).unwrap_or_default())
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        });
    (0..batch.num_rows())
        .map(|row| times.filter(|t| t.is_valid(row)).map(|t| t.value(row)))
        .collect()
}

/// The rows of `batch` whose event id this object keeps, their claim keys, and how many were
/// dropped.
fn drop_duplicate_events(
    ledger: &Ledger,
    shared: Option<&SharedLake>,
    uri: &str,
    batch: &RecordBatch,
    fallback_micros: i64,
) -> Result<(RecordBatch, Vec<ClaimKey>, u64), ObjectError> {
    let ids = batch
        .column_by_name("event_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .map(|a| a.iter().collect::<Vec<Option<&str>>>())
        .unwrap_or_default();
    let times = event_times(batch);
    let claims: Vec<Option<Claim<'_>>> = ids
        .iter()
        .zip(&times)
        .map(|(id, micros)| id.map(|id| Claim::new(*micros, id)))
        .collect();
    let keep = match shared {
        None => ledger.claim_event_ids(uri, &claims)?,
        Some(shared) => {
            // The lake partition (`date=…/hour=…`) of each row.
            let hours: Vec<String> = times
                .iter()
                .map(|t| schema::Partition::of_micros(t.unwrap_or(fallback_micros)).path())
                .collect();
            // On a decoder thread, which runs inside the runtime (see `Decoders::run`).
            tokio::runtime::Handle::current().block_on(shared.claim(uri, &ids, &hours))?
        }
    };
    let kept_ids: Vec<ClaimKey> = claims
        .iter()
        .zip(&keep)
        .filter_map(|(claim, keep)| claim.filter(|_| *keep).map(|c| c.key))
        .collect();
    let duplicates = keep.iter().filter(|k| !**k).count() as u64;
    if duplicates == 0 {
        return Ok((batch.clone(), kept_ids, 0));
    }
    let mask = BooleanArray::from(keep);
    let kept = filter_record_batch(batch, &mask).map_err(|source| ObjectError::Arrow {
        uri: uri.to_owned(),
        action: "dropping duplicate events",
        source,
    })?;
    debug_assert_eq!(kept.num_rows(), mask.true_count());
    Ok((kept, kept_ids, duplicates))
}

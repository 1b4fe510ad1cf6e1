//! From listed objects to committed lake files.
//!
//! For each source scan: list → keep objects the ledger has not recorded in this version →
//! up to `concurrency` objects at once: classify the key, fetch the bytes, then on a blocking
//! thread decode, drop CloudTrail events another object already holds, write the Parquet files
//! (durable on return) and only then commit the object to the ledger. An object that fails is
//! retried on later scans, and recorded as failed after [`MAX_ATTEMPTS`] tries so that one bad
//! object cannot stall the others.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use auditlake_schema as schema;

use auditlake_detect::deliver::Webhook;
use auditlake_detect::{Alert, Engine, outbox};
use tokio::sync::Notify;

use crate::decode::{self, DecodeLimits, Decoded, ObjectContext};
use crate::lake::{self, writer::LakeWriter};
use crate::ledger::{Ledger, LedgerError, ObjectEntry, ObjectStatus};
use crate::shared::{SharedError, SharedLake};
use crate::source::layout::ObjectKind;
use crate::source::{LogSource, SourceError, SourceObject};

/// Tries before an object is recorded as failed.
pub const MAX_ATTEMPTS: u32 = 5;

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
        }
    }
}

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
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub listed: usize,
    /// Listed objects the ledger had not recorded in this version.
    pub fresh: usize,
    pub processed: usize,
    pub failed: usize,
    pub unsettled: usize,
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

    /// Saves the engine state and queues `alerts`, inside the ledger transaction `tx`.
    fn persist(
        &self,
        tx: &redb::WriteTransaction,
        alerts: &[Alert],
        now_micros: i64,
    ) -> Result<(), redb::Error> {
        let state = self.engine.lock().unwrap_or_else(|p| p.into_inner()).save();
        outbox::save_state(tx, &state)?;
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
    stats: Arc<IngestStats>,
    attempts: Mutex<HashMap<String, u32>>,
    detection: Option<Detection>,
    /// Claims and markers shared with other workers of the same lake, if configured.
    shared: Option<Arc<SharedLake>>,
}

/// What processing one object produced, before the ledger commit.
struct Outcome {
    entry: ObjectEntry,
    event_ids: Vec<String>,
    digest: bool,
    alerts: Vec<Alert>,
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
            stats: Arc::default(),
            attempts: Mutex::default(),
            detection: None,
            shared: None,
        }
    }

    /// Decides event-id ownership and skips objects through `shared`, for several workers.
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
        if report.failed == 0 && report.processed == report.fresh && !stop.is_cancelled() {
            self.ledger.save_cursors(&listing.cursors)?;
        }
        Ok(report)
    }

    /// Ingests those of `objects` (from `source`) that the ledger has not recorded in their
    /// listed version, up to `concurrency` at once, until `stop`. `progress` is advanced once
    /// per object done.
    pub async fn ingest_objects(
        &self,
        source: &dyn LogSource,
        objects: &[SourceObject],
        stop: &CancellationToken,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<ScanReport, ScanError> {
        let fresh: Vec<SourceObject> = self
            .ledger
            .unrecorded(objects, |o| (o.uri.as_str(), o.version.as_str()))?
            .into_iter()
            .cloned()
            .collect();
        let mut report = ScanReport {
            listed: objects.len(),
            fresh: fresh.len(),
            ..ScanReport::default()
        };
        if let Some(newest) = objects.iter().map(|o| o.modified_micros).max() {
            self.stats
                .newest_seen_micros
                .fetch_max(newest, Ordering::Relaxed);
        }
        if let Some(bar) = progress {
            bar.inc_length(fresh.len() as u64);
        }
        // Objects in flight finish when `stop` fires; no new one starts.
        let results: Vec<bool> = futures::stream::iter(fresh)
            .take_until(stop.clone().cancelled_owned())
            .map(|object| async move {
                let ok = self.ingest_object(source, object).await;
                if let Some(bar) = progress {
                    bar.inc(1);
                }
                ok
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        report.processed = results.len();
        report.failed = results.iter().filter(|ok| !**ok).count();
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
        let result = self.process_and_commit(&object, kind, bytes, cursors).await;
        if let Err(e) = &result {
            self.stats.object_errors.fetch_add(1, Ordering::Relaxed);
            self.stats.count_error(e.kind());
            tracing::warn!(uri = %object.uri, kind = e.kind(), error = %e, "read not ingested");
        }
        result
    }

    /// Ingests one object, logging and counting a failure; true on success.
    async fn ingest_object(&self, source: &dyn LogSource, object: SourceObject) -> bool {
        match self.try_ingest(source, &object).await {
            Ok(()) => {
                self.forget_attempts(&object.uri);
                true
            }
            Err(error) => {
                self.stats.object_errors.fetch_add(1, Ordering::Relaxed);
                self.stats.count_error(error.kind());
                let attempts = self.count_attempt(&object.uri);
                tracing::warn!(source = source.name(), key = %object.key, uri = %object.uri, kind = error.kind(), attempts, error = %error, "object not ingested");
                // A vanished object is recorded at once: no retry can bring it back.
                let gone = matches!(error, ObjectError::Fetch(SourceError::Gone { .. }));
                if gone || attempts >= MAX_ATTEMPTS {
                    self.record_failure(&object, &error);
                }
                false
            }
        }
    }

    async fn try_ingest(
        &self,
        source: &dyn LogSource,
        object: &SourceObject,
    ) -> Result<(), ObjectError> {
        if let Some(shared) = &self.shared
            && shared
                .ingested_elsewhere(&object.uri, &object.version)
                .await?
        {
            return self.record_skipped(object, "ingested_elsewhere").await;
        }
        let kind = source.classify(&object.key);
        if kind.format().is_none() {
            if kind == ObjectKind::Unrecognized {
                tracing::info!(uri = %object.uri, "object skipped: its key matches no known layout");
            } else {
                tracing::debug!(uri = %object.uri, kind = kind.label(), "object skipped: not an event log");
            }
            if kind == ObjectKind::CloudTrailDigest {
                self.stats.digests.fetch_add(1, Ordering::Relaxed);
            }
            return self.record_skipped(object, kind.label()).await;
        }
        let bytes = source.fetch(object).await?;
        self.process_and_commit(object, kind, bytes, Vec::new())
            .await
    }

    /// Records `object` as skipped (not decoded), with `label` saying why.
    async fn record_skipped(&self, object: &SourceObject, label: &str) -> Result<(), ObjectError> {
        let entry = ObjectEntry {
            version: object.version.clone(),
            kind: label.to_owned(),
            status: ObjectStatus::Skipped,
            ..empty_entry()
        };
        self.commit_blocking(object.uri.clone(), entry, Vec::new())
            .await?;
        self.stats.objects_skipped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Decodes, writes and commits one object's bytes (with `cursors` in the same transaction).
    async fn process_and_commit(
        &self,
        object: &SourceObject,
        kind: ObjectKind,
        bytes: Vec<u8>,
        cursors: Vec<(String, Vec<u8>)>,
    ) -> Result<(), ObjectError> {
        let Some(format) = kind.format() else {
            return Ok(());
        };
        self.stats
            .bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);

        let ledger = self.ledger.clone();
        let writer = self.writer.clone();
        let limits = self.limits;
        let task_object = object.clone();
        let detection = self.detection.clone();
        let shared = self.shared.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now().timestamp_micros();
            let outcome = process(
                &ledger,
                shared.as_deref(),
                &writer,
                detection.as_ref(),
                limits,
                &task_object,
                kind,
                format,
                &bytes,
                now,
            )?;
            let ids: Vec<&str> = outcome.event_ids.iter().map(String::as_str).collect();
            ledger.commit_with(&task_object.uri, &outcome.entry, &ids, &|tx| {
                crate::ledger::put_cursors(tx, &cursors)?;
                match &detection {
                    Some(d) => d.persist(tx, &outcome.alerts, now),
                    None => Ok(()),
                }
            })?;
            Ok::<_, ObjectError>(outcome)
        })
        .await
        .map_err(|e| ObjectError::Task {
            uri: object.uri.clone(),
            message: e.to_string(),
        })??;

        if let Some(shared) = &self.shared
            && let Err(e) = shared.mark_ingested(&object.uri, &object.version).await
        {
            // Only costs another worker a redo with the same result.
            tracing::warn!(uri = %object.uri, error = %e, "could not mark the object as ingested for other workers");
        }
        let s = &self.stats;
        let e = &outcome.entry;
        if outcome.digest {
            s.digests.fetch_add(1, Ordering::Relaxed);
        }
        if !outcome.alerts.is_empty() {
            s.alerts
                .fetch_add(outcome.alerts.len() as u64, Ordering::Relaxed);
            for alert in &outcome.alerts {
                tracing::warn!(rule = %alert.rule_id, severity = alert.severity.as_str(), alert_id = %alert.alert_id, summary = %alert.summary, "alert");
            }
            if let Some(d) = &self.detection {
                d.wake.notify_one();
            }
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
            rejected = e.rejected_rows, duplicates = e.duplicate_events, files = e.files.len(), "object ingested");
        Ok(())
    }

    async fn commit_blocking(
        &self,
        uri: String,
        entry: ObjectEntry,
        ids: Vec<String>,
    ) -> Result<(), ObjectError> {
        let ledger = self.ledger.clone();
        let task_uri = uri.clone();
        tokio::task::spawn_blocking(move || {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            ledger.commit(&task_uri, &entry, &ids)
        })
        .await
        .map_err(|e| ObjectError::Task {
            uri,
            message: e.to_string(),
        })?
        .map_err(ObjectError::from)
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
        let entry = ObjectEntry {
            version: object.version.clone(),
            kind: error.kind().to_owned(),
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

/// Decode, dedupe, detect and write one object; the blocking half of [`Pipeline::try_ingest`].
#[allow(clippy::too_many_arguments)]
fn process(
    ledger: &Ledger,
    shared: Option<&SharedLake>,
    writer: &LakeWriter,
    detection: Option<&Detection>,
    limits: DecodeLimits,
    object: &SourceObject,
    kind: ObjectKind,
    format: decode::Format,
    bytes: &[u8],
    now_micros: i64,
) -> Result<Outcome, ObjectError> {
    let atlas = match &kind {
        ObjectKind::AtlasAudit(ctx) => Some(ctx.clone()),
        _ => None,
    };
    let ctx = ObjectContext {
        source_uri: &object.uri,
        ingested_at_micros: now_micros,
        atlas,
    };
    let decoded: Decoded =
        decode::decode_object(format, bytes, &ctx, limits).map_err(|source| {
            ObjectError::Decode {
                uri: object.uri.clone(),
                source,
            }
        })?;

    let mut entry = ObjectEntry {
        version: object.version.clone(),
        kind: kind.label().to_owned(),
        bytes: bytes.len() as u64,
        ..empty_entry()
    };
    let mut event_ids = Vec::new();
    let stem = lake::file_stem(&object.uri);
    let write =
        |table: &str, batch: &RecordBatch, entry: &mut ObjectEntry| -> Result<u64, ObjectError> {
            let files = writer
                .write(table, batch, &stem, object.modified_micros)
                .map_err(|source| ObjectError::Write {
                    uri: object.uri.clone(),
                    source,
                })?;
            entry
                .files
                .extend(files.into_iter().map(|f| f.relative_path));
            Ok(batch.num_rows() as u64)
        };

    let mut alerts = Vec::new();
    if let Some(batch) = &decoded.cloudtrail {
        let (kept, ids, duplicates) =
            drop_duplicate_events(ledger, shared, &object.uri, batch, object.modified_micros)?;
        entry.duplicate_events = duplicates;
        event_ids = ids;
        if let Some(d) = detection {
            alerts.extend(d.observe(schema::CLOUDTRAIL, &kept, now_micros));
        }
        entry.cloudtrail_rows = write(schema::CLOUDTRAIL, &kept, &mut entry)?;
    }
    if let Some(batch) = &decoded.mongodb_audit {
        if let Some(d) = detection {
            alerts.extend(d.observe(schema::MONGODB_AUDIT, batch, now_micros));
        }
        entry.mongodb_audit_rows = write(schema::MONGODB_AUDIT, batch, &mut entry)?;
    }
    if !alerts.is_empty() {
        let batch =
            auditlake_detect::alert::to_batch(&alerts).map_err(|source| ObjectError::Arrow {
                uri: object.uri.clone(),
                action: "building alert rows",
                source,
            })?;
        entry.alerts = write(schema::ALERTS, &batch, &mut entry)?;
    }
    if let Some(batch) = &decoded.rejected {
        entry.rejected_rows = write(schema::REJECTED, batch, &mut entry)?;
    }
    Ok(Outcome {
        entry,
        event_ids,
        digest: decoded.digest,
        alerts,
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
) -> Result<(RecordBatch, Vec<String>, u64), ObjectError> {
    let ids = batch
        .column_by_name("event_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .map(|a| a.iter().collect::<Vec<Option<&str>>>())
        .unwrap_or_default();
    let times = event_times(batch);
    let keys: Vec<Option<String>> = ids
        .iter()
        .zip(&times)
        .map(|(id, micros)| id.map(|id| crate::ledger::claim_key(*micros, id)))
        .collect();
    let key_refs: Vec<Option<&str>> = keys.iter().map(Option::as_deref).collect();
    let keep = match shared {
        None => ledger.claim_event_ids(uri, &key_refs)?,
        Some(shared) => {
            // The lake partition (`date=…/hour=…`) of each row.
            let hours: Vec<String> = times
                .iter()
                .map(|t| schema::Partition::of_micros(t.unwrap_or(fallback_micros)).path())
                .collect();
            // On a blocking thread of the runtime (see `try_ingest`).
            tokio::runtime::Handle::current().block_on(shared.claim(uri, &ids, &hours))?
        }
    };
    let kept_ids: Vec<String> = keys
        .into_iter()
        .zip(&keep)
        .filter_map(|(key, keep)| if *keep { key } else { None })
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

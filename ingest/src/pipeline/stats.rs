//! What the pipeline counts: [`IngestStats`] (this process's counters, read by status and
//! metrics) and [`ScanReport`] (one scan's outcome).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

use crate::source::ReadCounts;

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

    /// Counts what a source read besides objects (its log events count once ingested).
    pub fn count_read(&self, counts: &ReadCounts) {
        self.notifications
            .fetch_add(counts.notifications, Ordering::Relaxed);
        self.notifications_ignored
            .fetch_add(counts.notifications_ignored, Ordering::Relaxed);
        self.notifications_malformed
            .fetch_add(counts.notifications_malformed, Ordering::Relaxed);
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
    /// The source has more waiting now (see [`crate::source::Listing::more`]).
    pub more: bool,
    /// Log events of a stream ingested.
    pub log_events: u64,
}

impl ScanReport {
    /// Adds `other`, a later scan of the same source.
    pub fn add(&mut self, other: ScanReport) {
        self.listed += other.listed;
        self.fresh += other.fresh;
        self.processed += other.processed;
        self.failed += other.failed;
        self.unsettled = other.unsettled;
        self.deferred += other.deferred;
        self.none_recognized = self.none_recognized.take().or(other.none_recognized);
        self.more = other.more;
        self.log_events += other.log_events;
    }
}

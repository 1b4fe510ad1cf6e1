//! The pipeline's named events: each logs its line and moves its counters in one place, so a
//! counter of [`IngestStats`] never drifts from what the log says (the way vector's
//! `internal_events` do). Callers build an event and [`Emit::emit`] it.

use std::sync::atomic::Ordering;

use auditlake_detect::Alert;

use super::ObjectError;
use super::stats::IngestStats;
use crate::ledger::{ObjectEntry, ObjectStatus};
use crate::source::SourceObject;

/// An event to log and count; see the module documentation.
pub(super) trait Emit {
    fn emit(self, stats: &IngestStats);
}

/// An object committed to the ledger with its group, ingested or skipped.
pub(super) struct ObjectCommitted<'a> {
    pub(super) object: &'a SourceObject,
    pub(super) entry: &'a ObjectEntry,
    /// A CloudTrail digest file (skipped, but counted apart).
    pub(super) digest: bool,
}

impl Emit for ObjectCommitted<'_> {
    fn emit(self, s: &IngestStats) {
        let (object, e) = (self.object, self.entry);
        if self.digest {
            s.digests.fetch_add(1, Ordering::Relaxed);
        }
        if e.status == ObjectStatus::Skipped {
            s.objects_skipped.fetch_add(1, Ordering::Relaxed);
            return;
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
}

/// Alerts a committed group raised.
pub(super) struct AlertsRaised<'a>(pub(super) &'a [Alert]);

impl Emit for AlertsRaised<'_> {
    fn emit(self, s: &IngestStats) {
        s.alerts.fetch_add(self.0.len() as u64, Ordering::Relaxed);
        for alert in self.0 {
            tracing::warn!(rule = %alert.rule_id, severity = alert.severity.as_str(), alert_id = %alert.alert_id, summary = %alert.summary, "alert");
        }
    }
}

/// What became of one failed attempt at an object.
pub(super) enum Outcome {
    /// The lake or the ledger refused a write, and the sink just went down for it (`true`) or
    /// was down already.
    SinkDown(bool),
    /// Not the object's fault (a group that failed before it): retried without counting.
    Retried,
    /// A stream's read: read again, never recorded as failed.
    ReadAgain,
    /// Counted against the object: its `attempts` so far.
    Attempted(u32),
}

/// One attempt at an object failed.
pub(super) struct ObjectNotIngested<'a> {
    pub(super) source: &'a str,
    pub(super) object: &'a SourceObject,
    pub(super) error: &'a ObjectError,
    pub(super) outcome: Outcome,
}

impl Emit for ObjectNotIngested<'_> {
    fn emit(self, s: &IngestStats) {
        let Self {
            source,
            object,
            error,
            outcome,
        } = self;
        s.object_errors.fetch_add(1, Ordering::Relaxed);
        s.count_error(error.kind());
        match outcome {
            Outcome::SinkDown(true) => {
                tracing::error!(source, uri = %object.uri, kind = error.kind(), error = %error,
                "the lake or the ledger refused a write; ingestion pauses until they take writes again, and the objects in flight are retried")
            }
            Outcome::SinkDown(false) => {}
            Outcome::Retried => {
                tracing::debug!(source, uri = %object.uri, error = %error, "object to be retried")
            }
            Outcome::ReadAgain => {
                tracing::warn!(source, uri = %object.uri, kind = error.kind(), error = %error,
                "read not ingested; read again next time")
            }
            Outcome::Attempted(attempts) => {
                tracing::warn!(source, key = %object.key, uri = %object.uri, kind = error.kind(), attempts, error = %error,
                "object not ingested")
            }
        }
    }
}

/// An object recorded as failed in the ledger, after its last attempt.
pub(super) struct ObjectRecordedFailed<'a> {
    pub(super) object: &'a SourceObject,
    pub(super) error: &'a ObjectError,
}

impl Emit for ObjectRecordedFailed<'_> {
    fn emit(self, s: &IngestStats) {
        s.objects_failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(key = %self.object.key, uri = %self.object.uri, kind = self.error.kind(), error = %self.error, "object recorded as failed");
    }
}

/// A source listed objects and none of them matches a known layout.
pub(super) struct NoneRecognized<'a> {
    pub(super) source: &'a str,
    pub(super) listed: usize,
    pub(super) example: &'a str,
}

impl Emit for NoneRecognized<'_> {
    fn emit(self, s: &IngestStats) {
        s.count_error("none_recognized");
        tracing::warn!(source = self.source, listed = self.listed, example = %self.example,
            "the source lists objects but none matches a known layout (CloudTrail AWSLogs/…/CloudTrail/…, Atlas <cluster>/<host>/<logType>/…): check its prefix and kind");
    }
}

/// A source could not be told which of its objects were recorded.
pub(super) struct AcknowledgeFailed<'a> {
    pub(super) source: &'a str,
    pub(super) error: &'a crate::source::SourceError,
}

impl Emit for AcknowledgeFailed<'_> {
    fn emit(self, s: &IngestStats) {
        s.count_error(self.error.kind());
        tracing::warn!(source = self.source, error = %self.error, "acknowledging ingested objects to the source failed");
    }
}

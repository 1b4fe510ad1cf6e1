//! Objects between listing and commit: the set a call of [`Pipeline::ingest_objects`] holds
//! (so that a listing and a notification never ingest one object twice at once), and what a
//! failure does: count the attempt, retry on a later scan, record the object as failed after
//! [`super::MAX_ATTEMPTS`], or take the sink down when the failure is not the object's.

use std::collections::HashSet;
use std::sync::Mutex;

use super::events::{Emit, ObjectNotIngested, ObjectRecordedFailed, Outcome};
use super::group::GroupFailure;
use super::prepare::empty_entry;
use super::schedule::Scan;
use super::{MAX_ATTEMPTS, ObjectError, Pipeline};
use crate::ledger::{LedgerError, ObjectEntry, ObjectStatus};
use crate::source::{SourceError, SourceObject};

impl Pipeline {
    /// Takes the sink down if `error` says the ledger must be reopened.
    pub(super) fn ledger_failed(&self, error: &LedgerError) {
        if error.needs_reopen() && self.sink.failed(&error.to_string()) {
            tracing::error!(error = %error, "the ledger refused a write; ingestion pauses until it takes writes again");
        }
    }

    /// Counts the failure of every object of a failed group; how many there were.
    pub(super) fn group_failed(&self, scan: Scan<'_>, failure: GroupFailure) -> usize {
        if let Some(unresolved) = failure.unresolved {
            self.unresolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(unresolved);
        }
        for object in &failure.objects {
            self.object_failed(scan, object, &failure.error);
        }
        failure.objects.len()
    }

    /// Logs and counts one object's failed attempt, recording it as failed after
    /// [`MAX_ATTEMPTS`] (at once when it vanished: no retry can bring it back). A failure that
    /// is not the object's takes the sink down instead, or is only logged.
    pub(super) fn object_failed(&self, scan: Scan<'_>, object: &SourceObject, error: &ObjectError) {
        let outcome = if error.is_sink_failure() {
            Outcome::SinkDown(self.sink.failed(&error.to_string()))
        } else if !error.counts_against_object() {
            Outcome::Retried
        } else if scan.is_stream() {
            Outcome::ReadAgain
        } else {
            Outcome::Attempted(self.count_attempt(&object.uri))
        };
        let attempts = match outcome {
            Outcome::Attempted(attempts) => Some(attempts),
            _ => None,
        };
        ObjectNotIngested {
            source: scan.source.name(),
            object,
            error,
            outcome,
        }
        .emit(&self.stats);
        let gone = matches!(error, ObjectError::Fetch(SourceError::Gone { .. }));
        if attempts.is_some_and(|n| gone || n >= MAX_ATTEMPTS) {
            self.record_failure(object, error);
        }
    }

    pub(super) fn count_attempt(&self, uri: &str) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(uri.to_owned()).or_default();
        *n += 1;
        *n
    }

    pub(super) fn forget_attempts(&self, uri: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uri);
    }

    pub(super) fn record_failure(&self, object: &SourceObject, error: &ObjectError) {
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
                self.forget_attempts(&object.uri);
                ObjectRecordedFailed { object, error }.emit(&self.stats);
            }
            Err(e) => {
                tracing::error!(uri = %object.uri, error = %e, "could not record failed object")
            }
        }
    }
}

/// Objects one call of [`Pipeline::ingest_objects`] has taken, released when it ends.
pub(super) struct InFlight<'p> {
    pub(super) set: &'p Mutex<HashSet<String>>,
    pub(super) objects: Vec<SourceObject>,
}

impl<'p> InFlight<'p> {
    /// Takes those of `objects` no other call has, leaving the others to it.
    pub(super) fn take(set: &'p Mutex<HashSet<String>>, objects: Vec<SourceObject>) -> Self {
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

//! The commit group: objects whose rows share one set of lake files and one ledger commit.
//! [`Group`] holds its members and files and commits or abandons itself; the `impl Pipeline`
//! below runs that lifecycle on blocking threads, one commit at a time, in order, while the
//! next group fills.

use std::collections::HashSet;
use std::sync::Arc;

use auditlake_detect::Alert;
use auditlake_detect::engine::EngineState;
use auditlake_schema::{self as schema, LakeFile};

use super::events::{AlertsRaised, Emit, ObjectCommitted};
use super::prepare::Prepared;
use super::schedule::Scan;
use super::{Detection, ObjectError, Pipeline, decoders};
use crate::lake::{self, GroupFiles, LakeWriter};
use crate::ledger::{ClaimKey, CommittedObject, Ledger, ObjectEntry, ObjectStatus};
use crate::source::SourceObject;

/// A commit group is committed once it holds this many objects, or bytes of encoded rows in
/// memory (see [`super::GROUP_MAX_ROWS`] for rows).
const GROUP_MAX_OBJECTS: usize = 4096;
const GROUP_MAX_BUFFERED_BYTES: usize = 48 << 20;

/// A group whose publish was noted in the ledger and whose commit failed for a cause of the
/// machine: whether the commit went through is known only once the ledger reads again. Its
/// files stay until then; if the note is still there, the commit did not happen and they go.
#[derive(Debug)]
pub(super) struct Unresolved {
    pub(super) stem: String,
    pub(super) paths: Vec<LakeFile>,
}

/// An object of a group, what its commit records.
pub(super) struct Member {
    pub(super) object: SourceObject,
    pub(super) entry: ObjectEntry,
    pub(super) claims: Vec<ClaimKey>,
    pub(super) digest: bool,
}

/// A group's commit running on a blocking thread.
pub(super) struct Committing {
    pub(super) objects: Vec<SourceObject>,
    pub(super) task: tokio::task::JoinHandle<CommitResult>,
}

/// A committed group's objects and alerts, or the group (to abandon) and why it failed.
pub(super) type CommitResult = Result<(Vec<Member>, Vec<Alert>), Box<(Group, ObjectError)>>;

/// How a commit failed: with the group to abandon, or with its task (a panic).
pub(super) enum CommitFailed {
    Group(Box<(Group, ObjectError)>),
    Lost(GroupFailure),
}

/// Why a group could not be committed, and the objects that were in it.
pub(super) struct GroupFailure {
    pub(super) objects: Vec<SourceObject>,
    pub(super) error: Box<ObjectError>,
    /// Its files, if the commit may have gone through.
    pub(super) unresolved: Option<Unresolved>,
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
pub(super) struct Group {
    pub(super) ledger: Arc<Ledger>,
    pub(super) writer: LakeWriter,
    pub(super) detection: Option<Detection>,
    /// One object per group, its files named after it (see [`Pipeline::with_shared`]).
    pub(super) per_object: bool,
    /// Rows after which the group is full.
    pub(super) max_rows: usize,
    pub(super) stem: String,
    pub(super) files: Option<GroupFiles>,
    /// The files' paths once they were closed for publishing, and whether the ledger notes them.
    pub(super) closed_paths: Vec<LakeFile>,
    pub(super) noted: bool,
    pub(super) members: Vec<Member>,
    pub(super) alerts: Vec<Alert>,
    pub(super) cursors: Vec<(String, Vec<u8>)>,
    /// Detector state before the first object joined, restored if the group is abandoned.
    pub(super) detector_before: Option<EngineState>,
    /// Detector state after the last object joined (see [`Group::seal`]), committed with the
    /// group: the next group may be observing already while this one commits.
    pub(super) detector_after: Option<EngineState>,
}

impl Group {
    pub(super) fn new(
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

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether the group is large enough to commit.
    pub(super) fn is_full(&self) -> bool {
        (self.per_object && !self.members.is_empty())
            || self.members.len() >= GROUP_MAX_OBJECTS
            || self.files.as_ref().is_some_and(|f| {
                f.rows() >= self.max_rows || f.buffered_bytes() >= GROUP_MAX_BUFFERED_BYTES
            })
    }

    /// Runs detection on `prepared`'s rows and appends them (and the alerts they raise) to the
    /// group's files. On error the group holds part of the object's rows: abandon it.
    pub(super) fn add(
        &mut self,
        prepared: Prepared,
    ) -> Result<(), Box<(SourceObject, ObjectError)>> {
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
    pub(super) fn seal(&mut self) {
        if let Some(d) = &self.detection {
            self.detector_after = Some(d.save());
        }
    }

    /// Publishes the group's files and commits its objects; see [`Group`]. On failure the
    /// group is handed back to be abandoned (after any group that joined objects since).
    pub(super) fn commit(mut self) -> CommitResult {
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
    pub(super) fn abandon(mut self, error: ObjectError, also: Option<&str>) -> GroupFailure {
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
    pub(super) fn new_group(&self) -> Group {
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
    pub(super) async fn add_to(
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
    pub(super) fn start_commit(&self, mut group: Group) -> Committing {
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
    pub(super) async fn end_commit(
        &self,
        scan: Scan<'_>,
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
            n += self.group_failed(scan, failure);
        }
        (0, n, None)
    }

    /// Abandons `groups` in order, on a blocking thread (deleting files may wait on a store).
    pub(super) async fn abandon(groups: Vec<(Group, ObjectError)>) -> Vec<GroupFailure> {
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
    pub(super) async fn finish_commit(
        &self,
        committing: Committing,
    ) -> Result<usize, CommitFailed> {
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
            ObjectCommitted {
                object,
                entry: e,
                digest: member.digest,
            }
            .emit(&self.stats);
        }
        if !alerts.is_empty() {
            AlertsRaised(&alerts).emit(&self.stats);
            if let Some(d) = &self.detection {
                d.wake.notify_one();
            }
        }
        Ok(members.len())
    }
}

//! What has been ingested: the checkpoint that makes ingestion exactly-once.
//!
//! One redb database holds `objects` (source URI → the version ingested and what it produced),
//! `cloudtrail_event_claim_runs` (which object holds each CloudTrail event, see [`claims`]),
//! `source_cursors` (listing and log-stream positions, see `EXACTLY_ONCE.md`) and
//! `publishing_files` (files of a commit group about to appear in the lake), next to the
//! detector's outbox tables.
//! The pipeline notes a group's files ([`Ledger::begin_publish`]), puts them in place, and only
//! then calls [`Ledger::commit_group`], which records the group's objects and their event ids
//! and drops the note in one transaction; a crash before the commit leaves the objects
//! unrecorded, so they are processed again, and the files the note still lists are deleted
//! at the next start ([`Ledger::unfinished_publishes`]).
//!
//! CloudTrail delivers some events twice. [`Ledger::claim_event_ids`] decides which object keeps
//! each event id: the first to claim it, in memory while objects are in flight, and durably once
//! committed (the claims of recent hours are also kept in memory). An object re-processed keeps the ids it already owns, so a redo is identical.

mod claims;

use std::path::Path;
use std::sync::{Arc, Mutex};

use auditlake_detect::store::{self, Store};
use auditlake_schema::LakeFile;
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use claims::{CACHED_CLAIMS, CLAIM_RUNS, ClaimCache, FastSet, owner_hash};
pub use claims::{Claim, ClaimKey};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

/// Bytes of redb page cache.
const LEDGER_CACHE_BYTES: usize = 32 << 20;

/// Lake files of a commit group being published: group stem → JSON list of relative paths.
/// Written before the files appear in the lake, removed by the group's commit; an entry left
/// by a crash names files no object owns, which [`Ledger::unfinished_publishes`] hands back for
/// deletion.
const PUBLISHING: TableDefinition<&str, &[u8]> = TableDefinition::new("publishing_files");
/// Source positions (listing and log-stream cursors): name → opaque bytes owned by the source.
const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("source_cursors");

/// What the ledger remembers of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// The version of the object that was processed.
    pub version: String,
    /// The object kind label (`cloudtrail`, `atlas_audit`, `unrecognized`, ...).
    pub kind: String,
    /// Whether its records went to the lake, it was set aside, or it failed.
    pub status: ObjectStatus,
    /// Rows written per table.
    pub cloudtrail_rows: u64,
    pub mongodb_audit_rows: u64,
    pub rejected_rows: u64,
    /// CloudTrail records dropped because another object holds the same event id.
    pub duplicate_events: u64,
    /// Alerts its rows raised.
    #[serde(default)]
    pub alerts: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Lake files written.
    pub files: Vec<LakeFile>,
}

/// Outcome recorded for an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectStatus {
    Ingested,
    Skipped,
    /// Given up on after repeated errors; `kind` holds the error kind. Retried when it changes.
    Failed,
}

/// Ledger failures, each naming what was attempted.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("opening ledger {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::Error,
    },
    #[error("{action} in the ledger: {source}")]
    Store {
        action: &'static str,
        #[source]
        source: redb::Error,
    },
    #[error("ledger entry for {uri} is unreadable: {source}")]
    Corrupt {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
}

fn store(action: &'static str) -> impl Fn(redb::Error) -> LedgerError {
    move |source| LedgerError::Store { action, source }
}

impl LedgerError {
    /// Whether the ledger failed to take a write for a cause of the machine (a full disk), after
    /// which it must be reopened (see [`Ledger::check_writable`]).
    pub fn needs_reopen(&self) -> bool {
        match self {
            LedgerError::Open { source, .. } | LedgerError::Store { source, .. } => {
                store::needs_reopen(source)
            }
            LedgerError::Corrupt { .. } => false,
        }
    }
}

/// How long a reopen of the ledger waits for the operations using it to end.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One object of a commit group: its entry and the claim keys of the events its rows hold.
#[derive(Debug, Clone, Copy)]
pub struct CommittedObject<'a> {
    pub uri: &'a str,
    pub entry: &'a ObjectEntry,
    pub claims: &'a [ClaimKey],
}

/// What [`Ledger::begin_publish`] notes for a group.
#[derive(Debug, Serialize, Deserialize)]
struct PublishNote {
    paths: Vec<LakeFile>,
    noted_at_micros: Option<i64>,
}

/// A group whose publish began and was never committed (see [`Ledger::unfinished_publishes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedPublish {
    pub stem: String,
    /// Its files.
    pub paths: Vec<LakeFile>,
    /// When the publish began; `None` for a note written by an earlier version.
    pub noted_at_micros: Option<i64>,
}

/// The ingestion checkpoint; see the module documentation.
#[derive(Debug)]
pub struct Ledger {
    db: Arc<Store>,
    /// Claims of objects in flight and committed claims of recent hours.
    claims: Mutex<ClaimCache>,
    /// Whether claims written by an earlier version (by id alone) are to be consulted.
    legacy_claims: bool,
}

impl Ledger {
    /// Opens (or creates) the ledger file.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        // redb's page cache defaults to 1 GiB; the ledger is mostly appended to, so a small
        // cache keeps the process's memory bounded whatever the lake's size.
        let db = Store::open(path, LEDGER_CACHE_BYTES).map_err(|source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let db = Arc::new(db);
        let database = db.get().map_err(store("creating tables"))?;
        let tx = database
            .begin_write()
            .map_err(|e| store("creating tables")(e.into()))?;
        tx.open_table(OBJECTS)
            .map_err(|e| store("creating tables")(e.into()))?;
        tx.open_table(CLAIM_RUNS)
            .map_err(|e| store("creating tables")(e.into()))?;
        tx.open_table(CURSORS)
            .map_err(|e| store("creating tables")(e.into()))?;
        tx.open_table(PUBLISHING)
            .map_err(|e| store("creating tables")(e.into()))?;
        auditlake_detect::outbox::create_tables(&tx).map_err(store("creating tables"))?;
        claims::move_earlier_claims(&tx).map_err(store("moving claims into runs"))?;
        tx.commit()
            .map_err(|e| store("creating tables")(e.into()))?;
        let legacy_claims = match claims::legacy_table(&database) {
            Ok(Some(table)) => !table
                .is_empty()
                .map_err(|e| store("reading tables")(e.into()))?,
            Ok(None) => false,
            Err(e) => return Err(store("reading tables")(e)),
        };
        drop(database);
        Ok(Ledger {
            db,
            claims: Mutex::new(ClaimCache::new(CACHED_CLAIMS)),
            legacy_claims,
        })
    }

    /// The listed objects whose current version the ledger has not recorded.
    pub fn unrecorded<'o, T>(
        &self,
        objects: &'o [T],
        uri_version: impl Fn(&T) -> (&str, &str),
    ) -> Result<Vec<&'o T>, LedgerError> {
        self.unrecorded_or(objects, uri_version, |_, _| false)
    }

    /// As [`Ledger::unrecorded`], and also the objects recorded in their version for which
    /// `reconsider` says yes (a key skipped as unrecognised that a source now recognises).
    pub fn unrecorded_or<'o, T>(
        &self,
        objects: &'o [T],
        uri_version: impl Fn(&T) -> (&str, &str),
        reconsider: impl Fn(&T, &ObjectEntry) -> bool,
    ) -> Result<Vec<&'o T>, LedgerError> {
        let action = "reading object entries";
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_read().map_err(|e| store(action)(e.into()))?;
        let table = tx
            .open_table(OBJECTS)
            .map_err(|e| store(action)(e.into()))?;
        let mut fresh = Vec::new();
        for object in objects {
            let (uri, version) = uri_version(object);
            let current = match table.get(uri).map_err(|e| store(action)(e.into()))? {
                Some(bytes) => {
                    let entry: ObjectEntry =
                        serde_json::from_slice(bytes.value()).map_err(|source| {
                            LedgerError::Corrupt {
                                uri: uri.to_owned(),
                                source,
                            }
                        })?;
                    entry.version == version && !reconsider(object, &entry)
                }
                None => false,
            };
            if !current {
                fresh.push(object);
            }
        }
        Ok(fresh)
    }

    /// Decides, for each event of object `uri` in order, whether this object keeps it (`true`)
    /// or another object already holds it (`false`). A later duplicate within the same object is
    /// also `false`. Rows without an id (`None`) are always kept.
    pub fn claim_event_ids(
        &self,
        uri: &str,
        claims: &[Option<Claim<'_>>],
    ) -> Result<Vec<bool>, LedgerError> {
        let action = "claiming event ids";
        let owner = owner_hash(uri);
        let db = self.db.get().map_err(store(action))?;
        let legacy = if self.legacy_claims {
            claims::legacy_table(&db).map_err(store(action))?
        } else {
            None
        };
        // Held throughout: look-ups are in memory but for an hour's first (one range read), so
        // objects decoded at once wait for each other only briefly.
        let mut cache = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen_here: FastSet<ClaimKey> =
            FastSet::with_capacity_and_hasher(claims.len(), Default::default());
        let mut keep = Vec::with_capacity(claims.len());
        for claim in claims {
            let Some(Claim { key, id }) = *claim else {
                keep.push(true);
                continue;
            };
            if !seen_here.insert(key) {
                keep.push(false);
                continue;
            }
            let mut committed = cache.committed_owner(&db, key).map_err(store(action))?;
            if committed.is_none()
                && let Some(legacy) = &legacy
            {
                committed = legacy
                    .get(id)
                    .map_err(|e| store(action)(e.into()))?
                    .map(|o| owner_hash(o.value()));
            }
            let owner_is_other = match committed {
                Some(committed) => committed != owner,
                None => cache.pending.get(&key).is_some_and(|p| *p != owner),
            };
            if !owner_is_other {
                cache.pending.insert(key, owner);
            }
            keep.push(!owner_is_other);
        }
        Ok(keep)
    }

    /// The database, shared with the alert outbox.
    pub fn database(&self) -> &Arc<Store> {
        &self.db
    }

    /// Whether the ledger takes a write now (an empty commit). A ledger that refused a write
    /// for a cause of the machine is reopened first, which redb requires before it takes
    /// another; until that succeeds (space is back) every use of the ledger fails.
    pub fn check_writable(&self) -> Result<(), LedgerError> {
        let action = "checking that the ledger takes writes";
        let commit = || -> Result<(), redb::Error> {
            let db = self.db.get()?;
            db.begin_write()?.commit()?;
            Ok(())
        };
        match commit() {
            Err(e) if store::needs_reopen(&e) => {
                self.db
                    .reopen(REOPEN_WAIT)
                    .map_err(store("reopening the ledger"))?;
                tracing::info!(path = %self.db.path().display(), "ledger reopened after an I/O error");
                commit().map_err(store(action))
            }
            done => done.map_err(store(action)),
        }
    }

    /// Whether the publish of group `stem` is still noted (it was not committed).
    pub fn is_publishing(&self, stem: &str) -> Result<bool, LedgerError> {
        let action = "reading a publish note";
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_read().map_err(|e| store(action)(e.into()))?;
        let table = tx
            .open_table(PUBLISHING)
            .map_err(|e| store(action)(e.into()))?;
        Ok(table
            .get(stem)
            .map_err(|e| store(action)(e.into()))?
            .is_some())
    }

    /// Records object `uri` and the events its rows hold (their claim keys), atomically. Call
    /// only after the files listed in `entry` are durable.
    pub fn commit(
        &self,
        uri: &str,
        entry: &ObjectEntry,
        claims: &[ClaimKey],
    ) -> Result<(), LedgerError> {
        let object = CommittedObject { uri, entry, claims };
        self.commit_group(&[object], None, &|_| Ok(()))
    }

    /// Notes that the lake files `paths` of the group `stem` are about to be published (before
    /// the first of them appears in the lake), and when.
    pub fn begin_publish(&self, stem: &str, paths: &[LakeFile]) -> Result<(), LedgerError> {
        let action = "recording files about to be published";
        let note = PublishNote {
            paths: paths.to_vec(),
            noted_at_micros: Some(chrono::Utc::now().timestamp_micros()),
        };
        let bytes = serde_json::to_vec(&note).map_err(|source| LedgerError::Corrupt {
            uri: stem.to_owned(),
            source,
        })?;
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_write().map_err(|e| store(action)(e.into()))?;
        tx.open_table(PUBLISHING)
            .map_err(|e| store(action)(e.into()))?
            .insert(stem, bytes.as_slice())
            .map_err(|e| store(action)(e.into()))?;
        tx.commit().map_err(|e| store(action)(e.into()))?;
        Ok(())
    }

    /// Forgets the files of group `stem` (after they were deleted).
    pub fn end_publish(&self, stem: &str) -> Result<(), LedgerError> {
        let action = "forgetting files of an abandoned group";
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_write().map_err(|e| store(action)(e.into()))?;
        tx.open_table(PUBLISHING)
            .map_err(|e| store(action)(e.into()))?
            .remove(stem)
            .map_err(|e| store(action)(e.into()))?;
        tx.commit().map_err(|e| store(action)(e.into()))?;
        Ok(())
    }

    /// Groups whose files were being published when the process stopped, never committed: their
    /// files, which no object owns and which are to be deleted.
    pub fn unfinished_publishes(&self) -> Result<Vec<UnfinishedPublish>, LedgerError> {
        self.read_all(PUBLISHING, "listing unfinished publishes", |stem, note| {
            // Notes of earlier versions are the bare list of paths.
            let note = serde_json::from_slice::<PublishNote>(note)
                .or_else(|_| {
                    serde_json::from_slice(note).map(|paths| PublishNote {
                        paths,
                        noted_at_micros: None,
                    })
                })
                .map_err(|source| LedgerError::Corrupt {
                    uri: stem.to_owned(),
                    source,
                })?;
            Ok(UnfinishedPublish {
                stem: stem.to_owned(),
                paths: note.paths,
                noted_at_micros: note.noted_at_micros,
            })
        })
    }

    /// Every entry of a text-keyed `table`, as `read` makes it of the key and the value.
    fn read_all<T>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        action: &'static str,
        mut read: impl FnMut(&str, &[u8]) -> Result<T, LedgerError>,
    ) -> Result<Vec<T>, LedgerError> {
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_read().map_err(|e| store(action)(e.into()))?;
        let table = tx.open_table(table).map_err(|e| store(action)(e.into()))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| store(action)(e.into()))? {
            let (key, value) = item.map_err(|e| store(action)(e.into()))?;
            out.push(read(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// Records every object of a commit group and the events their rows hold, and ends the
    /// publish of group `stem` if any, atomically, with `also` writing more in the same
    /// transaction (detector state, queued alerts, source cursors), so that they become
    /// durable exactly when the objects do. Call only after the group's files are durable.
    pub fn commit_group(
        &self,
        objects: &[CommittedObject<'_>],
        stem: Option<&str>,
        also: &dyn Fn(&WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), LedgerError> {
        let action = "committing objects";
        let mut owned: Vec<(ClaimKey, u64)> = objects
            .iter()
            .flat_map(|o| {
                let owner = owner_hash(o.uri);
                o.claims.iter().map(move |key| (*key, owner))
            })
            .collect();
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_write().map_err(|e| store(action)(e.into()))?;
        {
            let mut table = tx
                .open_table(OBJECTS)
                .map_err(|e| store(action)(e.into()))?;
            for object in objects {
                let bytes =
                    serde_json::to_vec(object.entry).map_err(|source| LedgerError::Corrupt {
                        uri: object.uri.to_owned(),
                        source,
                    })?;
                table
                    .insert(object.uri, bytes.as_slice())
                    .map_err(|e| store(action)(e.into()))?;
            }
            claims::write_runs(&tx, &mut owned).map_err(store(action))?;
            if let Some(stem) = stem {
                tx.open_table(PUBLISHING)
                    .map_err(|e| store(action)(e.into()))?
                    .remove(stem)
                    .map_err(|e| store(action)(e.into()))?;
            }
        }
        also(&tx).map_err(store(action))?;
        tx.commit().map_err(|e| store(action)(e.into()))?;
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .committed(owned);
        Ok(())
    }

    /// Forgets which object holds each CloudTrail event more than `retention` older than the
    /// newest event claimed (taken as no later than a day after `now_micros`, so that one event
    /// with a time far ahead cannot make every other look old); events without a time stay
    /// claimed. CloudTrail delivers an event again within minutes or hours, not weeks, so older
    /// claims would only grow the ledger with every event ever ingested. An event older than
    /// that is then checked only against the objects in flight. Measured from the events'
    /// times, not the clock, so that a backfill of old logs keeps its claims while it runs.
    /// Returns the claims forgotten.
    pub fn forget_old_claims(
        &self,
        retention: std::time::Duration,
        now_micros: i64,
    ) -> Result<u64, LedgerError> {
        let action = "forgetting old event claims";
        let hours = u32::try_from(retention.as_secs() / 3600).unwrap_or(u32::MAX);
        let latest = now_micros.saturating_add(24 * 3_600_000_000);
        // Locked throughout, so that no hour is read back into memory half forgotten.
        let mut cache = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_write().map_err(|e| store(action)(e.into()))?;
        let (first_kept, removed) =
            claims::remove_runs_before(&tx, hours, latest).map_err(store(action))?;
        tx.commit().map_err(|e| store(action)(e.into()))?;
        cache.forget_before(first_kept);
        Ok(removed)
    }

    /// The entry recorded for `uri`, if any.
    pub fn entry(&self, uri: &str) -> Result<Option<ObjectEntry>, LedgerError> {
        let action = "reading an object entry";
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_read().map_err(|e| store(action)(e.into()))?;
        let table = tx
            .open_table(OBJECTS)
            .map_err(|e| store(action)(e.into()))?;
        let Some(bytes) = table.get(uri).map_err(|e| store(action)(e.into()))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|source| LedgerError::Corrupt {
                uri: uri.to_owned(),
                source,
            })
    }

    /// The cursor saved under `name`, if any.
    pub fn cursor(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let action = "reading a source cursor";
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_read().map_err(|e| store(action)(e.into()))?;
        let table = tx
            .open_table(CURSORS)
            .map_err(|e| store(action)(e.into()))?;
        let value = table.get(name).map_err(|e| store(action)(e.into()))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Saves cursors in their own transaction (for positions that cover no lake data).
    pub fn save_cursors(&self, cursors: &[(String, Vec<u8>)]) -> Result<(), LedgerError> {
        if cursors.is_empty() {
            return Ok(());
        }
        let action = "saving source cursors";
        let db = self.db.get().map_err(store(action))?;
        let tx = db.begin_write().map_err(|e| store(action)(e.into()))?;
        put_cursors(&tx, cursors).map_err(store(action))?;
        tx.commit().map_err(|e| store(action)(e.into()))?;
        Ok(())
    }

    /// Every recorded object, by URI.
    pub fn entries(&self) -> Result<Vec<(String, ObjectEntry)>, LedgerError> {
        self.read_all(OBJECTS, "listing object entries", |uri, value| {
            let entry = serde_json::from_slice(value).map_err(|source| LedgerError::Corrupt {
                uri: uri.to_owned(),
                source,
            })?;
            Ok((uri.to_owned(), entry))
        })
    }
}

/// Writes cursors inside `tx`, so that they advance exactly when the data they cover commits.
pub fn put_cursors(
    tx: &WriteTransaction,
    cursors: &[(String, Vec<u8>)],
) -> Result<(), redb::Error> {
    let mut table = tx.open_table(CURSORS)?;
    for (name, value) in cursors {
        table.insert(name.as_str(), value.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::claims::{KEYED_CLAIMS, LEGACY_EVENT_IDS, TEXT_EVENT_CLAIMS};
    use super::*;

    const HOUR_MICROS: i64 = 3_600_000_000;

    fn entry(version: &str) -> ObjectEntry {
        ObjectEntry {
            version: version.into(),
            kind: "cloudtrail".into(),
            status: ObjectStatus::Ingested,
            cloudtrail_rows: 1,
            mongodb_audit_rows: 0,
            rejected_rows: 0,
            duplicate_events: 0,
            alerts: 0,
            bytes: 10,
            files: vec![],
        }
    }

    /// Creates at `path` a ledger as an earlier version wrote it: the tables `write` fills.
    fn earlier_ledger(path: &Path, write: impl FnOnce(&WriteTransaction)) {
        let db = redb::Database::create(path).expect("create");
        let tx = db.begin_write().expect("tx");
        write(&tx);
        tx.commit().expect("commit");
    }

    #[test]
    fn first_claimer_keeps_an_event_id_and_a_redo_keeps_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
        let hour = Some(493_000 * HOUR_MICROS);
        let (e1, e2, e3) = (
            Claim::new(hour, "e1"),
            Claim::new(hour, "e2"),
            Claim::new(hour, "e3"),
        );
        let keep_a = ledger
            .claim_event_ids("a", &[Some(e1), Some(e2), Some(e1), None])
            .expect("claim");
        assert_eq!(keep_a, [true, true, false, true]);
        // In flight: b loses e2 to a.
        assert_eq!(
            ledger
                .claim_event_ids("b", &[Some(e2), Some(e3)])
                .expect("claim"),
            [false, true]
        );
        ledger
            .commit("a", &entry("v1"), &[e1.key, e2.key])
            .expect("commit");
        // After commit: still a's, and a redo of a keeps them.
        assert_eq!(
            ledger.claim_event_ids("b", &[Some(e1)]).expect("claim"),
            [false]
        );
        assert_eq!(
            ledger
                .claim_event_ids("a", &[Some(e1), Some(e2)])
                .expect("claim"),
            [true, true]
        );
        // The same id in another hour is another event.
        assert_eq!(
            ledger
                .claim_event_ids("b", &[Some(Claim::new(Some(0), "e1"))])
                .expect("claim"),
            [true]
        );
    }

    #[test]
    fn claims_older_than_the_retention_before_the_newest_event_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
        let hour = 493_000 * HOUR_MICROS;
        let day = std::time::Duration::from_secs(86_400);
        let old = Claim::new(Some(hour - 30 * HOUR_MICROS), "old");
        let last = Claim::new(Some(hour - 24 * HOUR_MICROS - 1), "last-before");
        let kept = Claim::new(Some(hour - 24 * HOUR_MICROS), "kept");
        let newest = Claim::new(Some(hour + 5), "newest");
        let untimed = Claim::new(None, "untimed");
        let all = [
            Some(old),
            Some(last),
            Some(kept),
            Some(newest),
            Some(untimed),
        ];
        assert_eq!(ledger.claim_event_ids("a", &all).expect("claim"), [true; 5]);
        let keys: Vec<ClaimKey> = all.iter().flatten().map(|c| c.key).collect();
        ledger.commit("a", &entry("v1"), &keys).expect("commit");
        // Every hour read into memory, to be forgotten there too.
        assert_eq!(
            ledger.claim_event_ids("b", &all).expect("claim"),
            [false; 5]
        );

        // With the clock two days behind the newest event, that event counts as a day after
        // the clock: nothing is a day older than that.
        let now = hour;
        let two_days_before = now - 2 * day.as_micros() as i64;
        assert_eq!(
            ledger
                .forget_old_claims(day, two_days_before)
                .expect("forget"),
            0
        );
        assert_eq!(ledger.forget_old_claims(day, now).expect("forget"), 2);
        assert_eq!(claims_in_runs(&ledger), 3);
        assert_eq!(ledger.forget_old_claims(day, now).expect("forget"), 0);
        let held = [Some(kept), Some(newest), Some(untimed)];
        let mut ledger = ledger;
        for round in 0..2 {
            assert_eq!(
                ledger.claim_event_ids("c", &held).expect("claim"),
                [false; 3],
                "round {round}: still held by a"
            );
            drop(ledger);
            ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("reopen");
        }
        assert_eq!(
            ledger.claim_event_ids("b", &all).expect("claim"),
            [true, true, false, false, false],
            "the events a day older than the newest are no longer held by a"
        );
    }

    #[test]
    fn claims_of_an_earlier_ledger_by_id_alone_still_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.redb");
        earlier_ledger(&path, |tx| {
            tx.open_table(LEGACY_EVENT_IDS)
                .expect("table")
                .insert("e1", "a")
                .expect("insert");
        });
        let ledger = Ledger::open(&path).expect("open");
        let claim = Claim::new(Some(493_000 * HOUR_MICROS), "e1");
        assert_eq!(
            ledger.claim_event_ids("b", &[Some(claim)]).expect("claim"),
            [false]
        );
        assert_eq!(
            ledger.claim_event_ids("a", &[Some(claim)]).expect("claim"),
            [true]
        );
    }

    #[test]
    fn publish_notes_carry_their_time_and_notes_of_earlier_versions_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
        let before = chrono::Utc::now().timestamp_micros();
        ledger
            .begin_publish("new", &["cloudtrail/a.parquet".into()])
            .expect("note");
        {
            let tx = ledger.db.get().expect("db").begin_write().expect("tx");
            tx.open_table(PUBLISHING)
                .expect("table")
                .insert("old", br#"["mongodb_audit/b.parquet"]"#.as_slice())
                .expect("insert");
            tx.commit().expect("commit");
        }
        let mut notes = ledger.unfinished_publishes().expect("list");
        notes.sort_by(|a, b| a.stem.cmp(&b.stem));
        assert_eq!(notes[0].stem, "new");
        assert_eq!(notes[0].paths, ["cloudtrail/a.parquet"]);
        assert!(notes[0].noted_at_micros.is_some_and(|t| t >= before));
        assert_eq!(
            notes[1],
            UnfinishedPublish {
                stem: "old".into(),
                paths: vec!["mongodb_audit/b.parquet".into()],
                noted_at_micros: None,
            }
        );
        ledger.end_publish("new").expect("end");
        ledger.end_publish("old").expect("end");
        assert!(ledger.unfinished_publishes().expect("list").is_empty());
    }

    #[test]
    fn claims_of_a_ledger_with_text_keys_are_moved_and_still_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.redb");
        earlier_ledger(&path, |tx| {
            let mut text = tx.open_table(TEXT_EVENT_CLAIMS).expect("table");
            text.insert("0000493000/e1", owner_hash("a"))
                .expect("insert");
            text.insert("untimed/e2", owner_hash("a")).expect("insert");
        });
        let ledger = Ledger::open(&path).expect("open");
        let timed = Claim::new(Some(493_000 * HOUR_MICROS + 5), "e1");
        let untimed = Claim::new(None, "e2");
        assert_eq!(
            ledger
                .claim_event_ids("b", &[Some(timed), Some(untimed)])
                .expect("claim"),
            [false, false]
        );
        assert_eq!(
            ledger
                .claim_event_ids("a", &[Some(timed), Some(untimed)])
                .expect("claim"),
            [true, true]
        );
        let read = ledger.db.get().expect("db").begin_read().expect("read");
        assert!(matches!(
            read.open_table(TEXT_EVENT_CLAIMS),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        assert_eq!(claims_in_runs(&ledger), 2);
    }

    /// Claims held in the ledger's runs.
    fn claims_in_runs(ledger: &Ledger) -> usize {
        let read = ledger.db.get().expect("db").begin_read().expect("read");
        let runs = read.open_table(CLAIM_RUNS).expect("runs");
        runs.iter()
            .expect("iter")
            .map(|item| item.expect("run").1.value().len() / claims::DIGEST_BYTES)
            .sum()
    }

    #[test]
    fn claims_kept_one_entry_per_event_are_moved_into_runs_and_still_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.redb");
        let hour = 493_000 * HOUR_MICROS;
        let a1 = Claim::new(Some(hour), "a1");
        let a2 = Claim::new(Some(hour + 60), "a2");
        let a3 = Claim::new(Some(hour + HOUR_MICROS), "a3");
        let b1 = Claim::new(Some(hour), "b1");
        earlier_ledger(&path, |tx| {
            let mut keyed = tx.open_table(KEYED_CLAIMS).expect("table");
            for (claim, owner) in [(a1, "a"), (a2, "a"), (a3, "a"), (b1, "b")] {
                keyed.insert(claim.key, owner_hash(owner)).expect("insert");
            }
        });
        let ledger = Ledger::open(&path).expect("open");
        assert!(matches!(
            ledger
                .db
                .get()
                .expect("db")
                .begin_read()
                .expect("read")
                .open_table(KEYED_CLAIMS),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        // Two owners in the first hour, one in the second.
        let read = ledger.db.get().expect("db").begin_read().expect("read");
        assert_eq!(
            read.open_table(CLAIM_RUNS)
                .expect("runs")
                .len()
                .expect("len"),
            3
        );
        drop(read);
        assert_eq!(claims_in_runs(&ledger), 4);
        let all = [Some(a1), Some(a2), Some(a3), Some(b1)];
        assert_eq!(
            ledger.claim_event_ids("c", &all).expect("claim"),
            [false; 4]
        );
        assert_eq!(
            ledger.claim_event_ids("a", &all).expect("claim"),
            [true, true, true, false]
        );
    }

    #[test]
    fn a_redo_adds_to_its_runs_and_hours_dropped_from_memory_are_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("ledger.redb")).expect("open");
        // Room for one hour's claims in memory.
        *ledger.claims.lock().expect("lock") = ClaimCache::new(2);
        let hour = 493_000 * HOUR_MICROS;
        let first = Claim::new(Some(hour), "first");
        let later = Claim::new(Some(hour + 5), "later");
        let next_hour = Claim::new(Some(hour + HOUR_MICROS), "next");
        assert_eq!(
            ledger.claim_event_ids("a", &[Some(first)]).expect("claim"),
            [true]
        );
        ledger
            .commit("a", &entry("v1"), &[first.key])
            .expect("commit");
        // The redo holds one more event of the same hour.
        assert_eq!(
            ledger
                .claim_event_ids("a", &[Some(first), Some(later), Some(next_hour)])
                .expect("claim"),
            [true, true, true]
        );
        ledger
            .commit("a", &entry("v2"), &[first.key, later.key, next_hour.key])
            .expect("commit");
        assert_eq!(claims_in_runs(&ledger), 3);
        // Each hour read in turn pushes the other out of memory; the claims still hold.
        for _ in 0..2 {
            for claim in [first, next_hour, later] {
                assert_eq!(
                    ledger.claim_event_ids("b", &[Some(claim)]).expect("claim"),
                    [false]
                );
                assert_eq!(ledger.claims.lock().expect("lock").hours_loaded(), 1);
            }
        }
        // Claims committed into an hour held in memory are seen without reading it again.
        let fresh = Claim::new(Some(hour + 9), "fresh");
        assert_eq!(
            ledger.claim_event_ids("b", &[Some(fresh)]).expect("claim"),
            [true]
        );
        ledger
            .commit("b", &entry("v1"), &[fresh.key])
            .expect("commit");
        assert!(ledger.claims.lock().expect("lock").pending.is_empty());
        assert_eq!(
            ledger.claim_event_ids("a", &[Some(fresh)]).expect("claim"),
            [false]
        );
    }

    #[test]
    fn unrecorded_compares_versions_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.redb");
        {
            let ledger = Ledger::open(&path).expect("open");
            ledger
                .commit("a", &entry("v1"), &[Claim::new(None, "e1").key])
                .expect("commit");
        }
        let ledger = Ledger::open(&path).expect("reopen");
        let listed = [("a", "v1"), ("a2", "v1")];
        let fresh = ledger
            .unrecorded(&listed, |o| (o.0, o.1))
            .expect("unrecorded");
        assert_eq!(fresh, [&("a2", "v1")]);
        let changed = [("a", "v2")];
        assert_eq!(
            ledger
                .unrecorded(&changed, |o| (o.0, o.1))
                .expect("unrecorded")
                .len(),
            1
        );
        assert_eq!(
            ledger
                .claim_event_ids("b", &[Some(Claim::new(None, "e1"))])
                .expect("claim"),
            [false]
        );
        assert_eq!(ledger.entries().expect("entries").len(), 1);
    }
}

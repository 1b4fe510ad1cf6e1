//! What has been ingested: the checkpoint that makes ingestion exactly-once.
//!
//! One redb database holds `objects` (source URI → the version ingested and what it produced),
//! `cloudtrail_event_claim_runs` (which object holds each CloudTrail event, see [`claims`]),
//! `source_cursors` (listing and log-stream positions, see [`cursors`] and `EXACTLY_ONCE.md`)
//! and `publishing_files` (files of a commit group about to appear in the lake, see
//! [`publish`]), next to the detector's outbox tables.
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
mod cursors;
mod publish;

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
use cursors::CURSORS;
pub use cursors::put_cursors;
use publish::PUBLISHING;
pub use publish::UnfinishedPublish;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

/// Bytes of redb page cache.
const LEDGER_CACHE_BYTES: usize = 32 << 20;

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

#[cfg(test)]
mod tests;

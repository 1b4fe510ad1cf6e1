//! What several workers sharing one lake agree on, kept in the lake itself.
//!
//! Each worker has its own ledger (its `state_dir`), so on its own it would neither know which
//! objects another worker has ingested nor which CloudTrail `eventID`s another object already
//! holds. With `[ingest] shared_lake = true` two things go through the lake's store:
//!
//! - **Event-id claims**, an append-only log per event hour:
//!   `_claims/cloudtrail/date=…/hour=…/<sequence>.json`, each entry naming one object and the
//!   ids it took. A worker reads the hour's entries it has not seen, keeps the ids nobody else
//!   owns (and those its object already owns, so a redo is identical), and appends its entry
//!   with a create-only put (`If-None-Match: *` on S3, an exclusive create on a folder). If
//!   another worker took that sequence number first, it reads the new entry and tries again.
//!   Duplicate deliveries share their event time, hence their hour, so one log decides them.
//! - **Object markers**, `_objects/<hash of the URI>.json` holding the version ingested, put
//!   after the ledger commit. A worker that lists an object its own ledger does not know, but
//!   whose marker has the listed version, records it as done instead of reading it again.
//!
//! Both are idempotent: a crash between any two steps leaves at worst an object that is
//! processed again, with the same claims and the same file names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use auditlake_schema::LakeRoot;

/// Failures of the shared log or markers.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("{action} {path}: {source}")]
    Store {
        action: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("claim log entry {path} is unreadable: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClaimEntry {
    object: String,
    ids: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ObjectMarker {
    uri: String,
    version: String,
}

/// One hour's log, as far as this process has read it.
#[derive(Debug, Default)]
struct HourLog {
    read: BTreeMap<u64, ClaimEntry>,
    owner: HashMap<String, String>,
}

impl HourLog {
    fn add(&mut self, sequence: u64, entry: ClaimEntry) {
        for id in &entry.ids {
            self.owner
                .entry(id.clone())
                .or_insert_with(|| entry.object.clone());
        }
        self.read.insert(sequence, entry);
    }

    fn next_sequence(&self) -> u64 {
        self.read.keys().next_back().map_or(0, |s| s + 1)
    }
}

/// The shared claims and markers of one lake; see the module documentation.
#[derive(Debug)]
pub struct SharedLake {
    store: Arc<dyn ObjectStore>,
    /// Path prefix of the lake root inside the store ("" or ending in `/`).
    root: String,
    hours: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<HourLog>>>>,
}

/// Hours of claim log kept in memory (about three days).
const CACHED_HOURS: usize = 72;

fn store_err(
    action: &'static str,
    path: &StorePath,
) -> impl FnOnce(object_store::Error) -> SharedError {
    let path = path.to_string();
    move |source| SharedError::Store {
        action,
        path,
        source,
    }
}

impl SharedLake {
    /// The shared state of the lake at `root`.
    pub fn new(root: &LakeRoot) -> Result<Self, SharedError> {
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match root {
            LakeRoot::Local(path) => {
                std::fs::create_dir_all(path).map_err(|e| SharedError::Store {
                    action: "creating",
                    path: path.display().to_string(),
                    source: object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    },
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(store_err("opening", &StorePath::from("")))?;
                (Arc::new(store), String::new())
            }
            LakeRoot::Store { url, store } => {
                let prefix = url.path().trim_start_matches('/').to_owned();
                (store.clone(), prefix)
            }
        };
        Ok(SharedLake {
            store,
            root: prefix,
            hours: Mutex::default(),
        })
    }

    fn hour_log(&self, hour: &str) -> Arc<tokio::sync::Mutex<HourLog>> {
        let mut hours = self.hours.lock().unwrap_or_else(|p| p.into_inner());
        // Keys sort by time: forget the oldest hours beyond a bound. A forgotten hour is read
        // again from the store if a late event needs it, so this bounds memory, not correctness.
        while hours.len() >= CACHED_HOURS && !hours.contains_key(hour) {
            let Some(oldest) = hours.keys().next().cloned() else {
                break;
            };
            hours.remove(&oldest);
        }
        hours.entry(hour.to_owned()).or_default().clone()
    }

    fn hour_prefix(&self, hour: &str) -> StorePath {
        StorePath::from(format!("{}_claims/cloudtrail/{hour}", self.root))
    }

    /// Reads the entries of `hour` this process has not read yet.
    async fn refresh(&self, hour: &str, log: &mut HourLog) -> Result<(), SharedError> {
        let prefix = self.hour_prefix(hour);
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(store_err("listing", &prefix))?;
        for meta in listed {
            let Some(sequence) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if log.read.contains_key(&sequence) {
                continue;
            }
            let bytes = self
                .store
                .get(&meta.location)
                .await
                .map_err(store_err("reading", &meta.location))?
                .bytes()
                .await
                .map_err(store_err("reading", &meta.location))?;
            let entry: ClaimEntry =
                serde_json::from_slice(&bytes).map_err(|source| SharedError::Corrupt {
                    path: meta.location.to_string(),
                    source,
                })?;
            log.add(sequence, entry);
        }
        Ok(())
    }

    /// Decides, for each event id of object `uri` (with the partition `hours[i]` of its row),
    /// whether this object keeps it; see the module documentation. Rows without an id are kept;
    /// a later duplicate within the object is not.
    pub async fn claim(
        &self,
        uri: &str,
        ids: &[Option<&str>],
        hours: &[String],
    ) -> Result<Vec<bool>, SharedError> {
        let mut keep = vec![true; ids.len()];
        let mut by_hour: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut seen_here = HashSet::new();
        for (row, id) in ids.iter().enumerate() {
            let Some(id) = id else { continue };
            if !seen_here.insert(*id) {
                keep[row] = false;
                continue;
            }
            by_hour.entry(hours[row].as_str()).or_default().push(row);
        }
        for (hour, rows) in by_hour {
            let log = self.hour_log(hour);
            // One claimer per hour in this process; other processes are kept out by the
            // create-only put.
            let mut log = log.lock().await;
            loop {
                self.refresh(hour, &mut log).await?;
                let mut new_ids = Vec::new();
                for &row in &rows {
                    let id = ids[row].unwrap_or_default();
                    match log.owner.get(id) {
                        Some(owner) => keep[row] = owner == uri,
                        None => {
                            keep[row] = true;
                            new_ids.push(id.to_owned());
                        }
                    }
                }
                if new_ids.is_empty() {
                    break;
                }
                let sequence = log.next_sequence();
                let entry = ClaimEntry {
                    object: uri.to_owned(),
                    ids: new_ids,
                };
                let path =
                    StorePath::from(format!("{}/{sequence:012}.json", self.hour_prefix(hour)));
                let body = serde_json::to_vec(&entry).unwrap_or_default();
                let put = self
                    .store
                    .put_opts(
                        &path,
                        PutPayload::from(body),
                        PutOptions::from(PutMode::Create),
                    )
                    .await;
                match put {
                    Ok(_) => {
                        log.add(sequence, entry);
                        break;
                    }
                    // Another claimer took this sequence number: read it and decide again.
                    Err(object_store::Error::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(store_err("appending to", &path)(e)),
                }
            }
        }
        Ok(keep)
    }

    fn marker_path(&self, uri: &str) -> StorePath {
        let hash = Sha256::digest(uri.as_bytes());
        let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
        StorePath::from(format!("{}_objects/{hex}.json", self.root))
    }

    /// Whether another worker has ingested `uri` in `version`.
    pub async fn ingested_elsewhere(&self, uri: &str, version: &str) -> Result<bool, SharedError> {
        let path = self.marker_path(uri);
        let bytes = match self.store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(store_err("reading", &path))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(store_err("reading", &path)(e)),
        };
        let marker: ObjectMarker =
            serde_json::from_slice(&bytes).map_err(|source| SharedError::Corrupt {
                path: path.to_string(),
                source,
            })?;
        Ok(marker.uri == uri && marker.version == version)
    }

    /// Marks `uri` as ingested in `version` (after the ledger commit).
    pub async fn mark_ingested(&self, uri: &str, version: &str) -> Result<(), SharedError> {
        let path = self.marker_path(uri);
        let body = serde_json::to_vec(&ObjectMarker {
            uri: uri.to_owned(),
            version: version.to_owned(),
        })
        .unwrap_or_default();
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(store_err("writing", &path))
    }
}

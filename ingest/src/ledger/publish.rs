//! Publish notes: the lake files of a commit group, noted before the first of them appears in
//! the lake and dropped by the group's commit, so that files a crash left behind are found and
//! deleted at the next start.

use auditlake_schema::LakeFile;
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError, store};

/// Lake files of a commit group being published: group stem → JSON list of relative paths.
/// Written before the files appear in the lake, removed by the group's commit; an entry left
/// by a crash names files no object owns, which [`Ledger::unfinished_publishes`] hands back for
/// deletion.
pub(super) const PUBLISHING: TableDefinition<&str, &[u8]> =
    TableDefinition::new("publishing_files");

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

impl Ledger {
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
}

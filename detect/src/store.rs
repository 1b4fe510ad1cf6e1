//! The service's redb database, shared by the ingest ledger and the alert [`crate::outbox`], and
//! reopened in place after an I/O error.
//!
//! redb refuses every transaction after a write failed (a full disk) with "Previous I/O error
//! occurred" until the database is closed and opened again. Users take the database for one
//! operation at a time ([`Store::get`]); [`Store::reopen`] takes it out of service, waits for
//! those operations to end, closes it and opens the file again (redb repairs it on opening), so
//! space that returns needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

/// A redb database that can be reopened; see the module documentation.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    cache_bytes: usize,
    /// `None` while being reopened, or when reopening failed (the next [`Store::reopen`] tries
    /// again).
    current: RwLock<Option<Arc<Database>>>,
}

impl Store {
    /// Opens (or creates) the database file at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, redb::Error> {
        let db = Self::open_file(path, cache_bytes)?;
        Ok(Store {
            path: path.to_path_buf(),
            cache_bytes,
            current: RwLock::new(Some(Arc::new(db))),
        })
    }

    fn open_file(path: &Path, cache_bytes: usize) -> Result<Database, redb::Error> {
        Ok(redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?)
    }

    /// The database, for one operation: hold it no longer, or a reopen waits for it. While the
    /// database is closed (being reopened, or after a reopen failed) this is
    /// [`redb::Error::PreviousIo`].
    pub fn get(&self) -> Result<Arc<Database>, redb::Error> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(redb::Error::PreviousIo)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the database and opens its file again, after waiting up to `wait` for operations
    /// that hold it to end. If they do not end in time, the database stays in service and this
    /// fails; if opening fails (the disk is still full), it stays closed until a later call.
    pub fn reopen(&self, wait: Duration) -> Result<(), redb::Error> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = current.take() {
            let deadline = Instant::now() + wait;
            let mut db = db;
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        db = shared;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(shared) => {
                        *current = Some(shared);
                        return Err(redb::Error::Corrupted(format!(
                            "{} is still in use after {} ms; not reopened",
                            self.path.display(),
                            wait.as_millis()
                        )));
                    }
                }
            }
        }
        let db = Self::open_file(&self.path, self.cache_bytes)?;
        *current = Some(Arc::new(db));
        Ok(())
    }
}

/// Whether `error` means the database must be reopened before it takes another transaction.
pub fn needs_reopen(error: &redb::Error) -> bool {
    matches!(error, redb::Error::PreviousIo | redb::Error::Io(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("t");

    #[test]
    fn a_reopened_store_keeps_what_was_committed_and_waits_for_operations_in_flight() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("db.redb"), 1 << 20).expect("open"));
        let db = store.get().expect("db");
        let tx = db.begin_write().expect("write");
        tx.open_table(TABLE)
            .expect("table")
            .insert("a", 1)
            .expect("insert");
        tx.commit().expect("commit");

        // Held elsewhere for longer than the wait: the store stays in service.
        let err = store.reopen(Duration::from_millis(50)).expect_err("held");
        assert!(err.to_string().contains("still in use"), "{err}");
        assert!(store.get().is_ok());

        // Released while the reopen waits: it goes through.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(db);
        });
        store.reopen(Duration::from_secs(5)).expect("reopen");
        release.join().expect("join");
        let db = store.get().expect("db");
        let read = redb::ReadableDatabase::begin_read(&*db).expect("read");
        let value = read
            .open_table(TABLE)
            .expect("table")
            .get("a")
            .expect("get");
        assert_eq!(value.map(|v| v.value()), Some(1));
    }
}

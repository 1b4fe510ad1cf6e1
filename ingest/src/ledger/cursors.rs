//! Source positions: listing and log-stream cursors, saved with the data they cover (or alone,
//! for positions that cover none).

use redb::{ReadableDatabase, TableDefinition, WriteTransaction};

use super::{Ledger, LedgerError, store};

/// Source positions (listing and log-stream cursors): name → opaque bytes owned by the source.
pub(super) const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("source_cursors");

impl Ledger {
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

//! Erasing a whole store: `tally purge`.
//!
//! Unlike retention ([`crate::retention`]), which keeps every total, purge forgets
//! everything, and makes sure no deleted byte stays behind in the file or its WAL.

use rusqlite::TransactionBehavior;

use crate::{Location, Store, StoreError};

impl Store {
    /// Removes every event, session, rollup and meta value (the install id and secret
    /// too: a new identity is made on next use, so old hashes cannot be linked to new
    /// ones), then rewrites the file so no deleted byte remains in it or its WAL.
    pub fn purge(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DELETE FROM event_rows; DELETE FROM session_rows; DELETE FROM strings; DELETE FROM install_ids; \
             DELETE FROM session_ids; DELETE FROM metrics; \
             DELETE FROM meta; DELETE FROM sync_rejected; DELETE FROM sqlite_sequence;",
        )?;
        tx.commit()?;
        self.conn.execute_batch("VACUUM")?;
        if matches!(self.location, Location::File(_)) {
            let (busy, _, _): (i64, i64, i64) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            if busy != 0 {
                return Err(StoreError::Busy(
                    "another process is reading the store; its old pages stay in the WAL until it closes".into(),
                ));
            }
        }
        Ok(())
    }
}

//! What the collector's tests share: the backends every contract test runs against.

pub(crate) mod postgres;

use std::sync::Arc;

use tally_server::storage::Storage;
use tally_server::storage::sqlite::SqliteStorage;

/// A store under test and what keeps it alive (its directory or database).
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) store: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
    _database: Option<postgres::TestDatabase>,
}

/// A fresh embedded store.
pub(crate) fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStorage::open(&dir.path().join("collector.db")).unwrap();
    Backend {
        name: "sqlite",
        store: Arc::new(store),
        _dir: Some(dir),
        _database: None,
    }
}

/// A fresh store on each backend: SQLite always, PostgreSQL when the test cluster is
/// configured (and, under CI, it must be).
pub(crate) async fn backends() -> Vec<Backend> {
    let mut backends = vec![sqlite()];
    if let Some(database) = postgres::TestDatabase::create().await {
        backends.push(Backend {
            name: "postgres",
            store: database.open().await,
            _dir: None,
            _database: Some(database),
        });
    }
    backends
}

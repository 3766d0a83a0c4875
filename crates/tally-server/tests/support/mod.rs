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

/// Every table of the collector that holds an install id, in both backends.
pub(crate) const INSTALL_TABLES: [&str; 8] = [
    "events",
    "sessions",
    "installs",
    "group_installs",
    "install_days",
    "count_uploads",
    "install_keys",
    "install_nonces",
];

impl Backend {
    /// Rows naming `install_id` of `app`, per table, read straight from the database.
    pub(crate) async fn rows_of_install(&self, app: &str, install_id: &str) -> Vec<(&'static str, i64)> {
        let mut rows = Vec::new();
        for table in INSTALL_TABLES {
            let sql = format!("SELECT count(*) FROM {table} WHERE app = $1 AND install_id = $2");
            let count = match (&self._dir, &self._database) {
                (Some(dir), _) => {
                    let conn = rusqlite::Connection::open(dir.path().join("collector.db")).unwrap();
                    conn.query_row(&sql.replace('$', "?"), (app, install_id), |row| row.get(0))
                        .unwrap()
                }
                (None, Some(database)) => database
                    .client()
                    .await
                    .query_one(&sql, &[&app, &install_id])
                    .await
                    .unwrap()
                    .get(0),
                (None, None) => unreachable!("a backend keeps its database"),
            };
            rows.push((table, count));
        }
        rows
    }
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

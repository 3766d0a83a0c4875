//! Throwaway PostgreSQL databases for tests.
//!
//! `scripts/test` starts a PostgreSQL cluster and exports its URL in
//! [`URL_VARIABLE`]. Each test gets a database of its own, `tally_test_<random>`,
//! created through that URL and dropped when the [`TestDatabase`] is dropped, even when
//! the test panics. Without the variable, a PostgreSQL test is skipped with a note, or
//! fails when `CI` is set: CI must never pass by skipping the production backend.

use std::sync::Arc;

use tally_server::storage::Storage;
use tally_server::storage::postgres::PostgresStorage;
use tokio_postgres::{Client, NoTls};

/// Where the cluster is: `postgres://postgres@127.0.0.1:PORT/tally_test`.
pub(crate) const URL_VARIABLE: &str = "TALLY_TEST_POSTGRES_URL";

/// A database that exists for one test.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database; `None` (after a note) when no cluster is
    /// configured outside CI.
    pub(crate) async fn create() -> Option<TestDatabase> {
        let admin_url = admin_url()?;
        let name = format!("tally_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url)
            .await
            .unwrap_or_else(|err| panic!("{URL_VARIABLE}={admin_url}: cannot connect: {err}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|err| panic!("create database {name}: {err}"));
        Some(TestDatabase {
            url: with_database_name(&admin_url, &name),
            admin_url,
            name,
        })
    }

    /// The database's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A new collector's store on this database (its own connection pool).
    pub(crate) async fn open(&self) -> Arc<dyn Storage> {
        Arc::new(
            PostgresStorage::connect(&self.url)
                .await
                .expect("connect to the test database"),
        )
    }

    /// A plain connection, to look at what the store wrote.
    pub(crate) async fn client(&self) -> Client {
        connect(&self.url).await.expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime, which cannot be blocked on, so the
        // database is dropped from a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let admin = connect(&admin_url).await.map_err(|err| err.to_string())?;
                // FORCE ends the connections the test's stores still hold.
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|err| err.to_string())
            })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("warning: could not drop test database {}: {err}", self.name);
        }
    }
}

/// The cluster's URL, or `None` when there is none and this is not CI.
pub(crate) fn admin_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) => panic!(
            "{URL_VARIABLE} is not set, and CI is: PostgreSQL tests must run in CI. \
             Run ./scripts/test, which starts a throwaway PostgreSQL cluster"
        ),
        _ => {
            eprintln!(
                "note: {URL_VARIABLE} is not set, so this PostgreSQL test is skipped; \
                 ./scripts/test starts a throwaway cluster and runs it"
            );
            None
        }
    }
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        // The connection ends with an error when its database is dropped; that is fine.
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` with its database name replaced by `name`.
fn with_database_name(url: &str, name: &str) -> String {
    let authority = url.find("://").map_or(0, |index| index + 3);
    let rest = &url[authority..];
    let query = rest.find('?').unwrap_or(rest.len());
    let path = rest[..query].find('/').unwrap_or(query);
    format!("{}{}/{name}{}", &url[..authority], &rest[..path], &rest[query..])
}

#[test]
fn database_name_replaces_the_path_only() {
    assert_eq!(
        with_database_name("postgres://postgres@127.0.0.1:5433/tally_test", "x"),
        "postgres://postgres@127.0.0.1:5433/x"
    );
    assert_eq!(
        with_database_name("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database_name("postgres://h:1", "x"), "postgres://h:1/x");
}

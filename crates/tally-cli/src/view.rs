//! `tally view`: the collector's dashboard for the user's own store, served read-only on
//! 127.0.0.1 at a free port, behind a random token (see `tally_server::dashboard::local`).
//! Nothing leaves the machine: the page loads only from this server, and the server
//! reads only the local file.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use jiff::Timestamp;
use tally::cli::Target;
use tally_core::Event;
use tally_server::config::ServerConfig;
use tally_server::storage::sqlite::SqliteStore;
use tally_server::storage::{ApiKey, EventQuery, RollupRow, SessionSummary, StorageError, Store, TotalRow};

/// Options of `tally view`.
#[derive(Debug, Args)]
pub(crate) struct ViewArgs {
    /// Open the page in the default browser too.
    #[arg(long)]
    open: bool,
    /// The loopback port to listen on (default: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

pub(crate) fn view(target: &Target, args: &ViewArgs) -> anyhow::Result<()> {
    let path = target.settings().dir.join(tally_store::DB_FILE_NAME);
    if !path.exists() {
        bail!(
            "no telemetry recorded yet for {} (no store at {}); run the app first, or try `tally demo --app {}`",
            target.app,
            path.display(),
            target.app
        );
    }
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|err| anyhow::anyhow!("no OS randomness: {err}"))?;
    let token = hex::encode(random);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let sqlite = SqliteStore::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let store: Arc<dyn Store> = Arc::new(LocalStore {
            sqlite,
            path: path.clone(),
        });
        let (state, _committer) = tally_server::AppState::new(store, ServerConfig::default());
        let router = tally_server::dashboard::local::app(state, &target.app, &token);
        let address = SocketAddr::from(([127, 0, 0, 1], args.port));
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let url = format!("http://{}/?token={token}", listener.local_addr()?);
        println!("{} telemetry, read-only, on this machine only:", target.app);
        println!("{url}");
        println!("(Ctrl-C stops it)");
        if args.open {
            open_browser(&url);
        }
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the view server failed")
    })
}

/// Starts the platform's opener; a failure only prints a note, the URL is already shown.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(err) = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("tally: cannot start {opener} ({err}); open the address above yourself");
    }
}

/// The user's store seen through the collector's storage interface. Only the collector
/// keeps an installs table, so active installs are counted from the store's sessions
/// (its one install, or several after a restore); everything else is the collector's
/// SQLite code on the same schema.
struct LocalStore {
    sqlite: SqliteStore,
    path: std::path::PathBuf,
}

#[async_trait::async_trait]
impl Store for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn insert(&self, _events: Vec<Event>) -> Result<Vec<bool>, StorageError> {
        Err(StorageError::Internal("tally view is read-only".to_owned()))
    }

    async fn rollups(&self, app: &str, from_hour: &str, to_hour: &str) -> Result<Vec<RollupRow>, StorageError> {
        self.sqlite.rollups(app, from_hour, to_hour).await
    }

    async fn sessions(&self, app: &str, from: Timestamp, to: Timestamp) -> Result<SessionSummary, StorageError> {
        self.sqlite.sessions(app, from, to).await
    }

    async fn active_installs(&self, since: &[Timestamp]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let path = self.path.clone();
        let since: Vec<String> = since.iter().map(|ts| tally_core::time::format(*ts)).collect();
        tokio::task::spawn_blocking(move || {
            let failed = |err: rusqlite::Error| StorageError::Internal(err.to_string());
            let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(failed)?;
            let mut apps: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
            let mut statement = db
                .prepare("SELECT app, count(DISTINCT install_id) FROM sessions WHERE ended_at >= ?1 GROUP BY app")
                .map_err(failed)?;
            for (index, start) in since.iter().enumerate() {
                let rows = statement
                    .query_map([start], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
                    })
                    .map_err(failed)?;
                for row in rows {
                    let (app, count) = row.map_err(failed)?;
                    apps.entry(app).or_insert_with(|| vec![0; since.len()])[index] = count;
                }
            }
            Ok(apps.into_iter().collect())
        })
        .await
        .map_err(|err| StorageError::Internal(err.to_string()))?
    }

    async fn named_counts(&self, name: &str, from_hours: &[String]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        self.sqlite.named_counts(name, from_hours).await
    }

    async fn totals(&self) -> Result<Vec<TotalRow>, StorageError> {
        self.sqlite.totals().await
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StorageError> {
        self.sqlite.events(query).await
    }

    async fn erase_install(&self, _app: &str, _install_id: &str) -> Result<u64, StorageError> {
        Err(StorageError::Internal("tally view is read-only".to_owned()))
    }

    async fn expire(&self, _before: Timestamp) -> Result<u64, StorageError> {
        Err(StorageError::Internal("tally view is read-only".to_owned()))
    }

    async fn put_key(&self, _key: &ApiKey) -> Result<(), StorageError> {
        Err(StorageError::Internal("tally view is read-only".to_owned()))
    }

    async fn key(&self, _id: &str) -> Result<Option<ApiKey>, StorageError> {
        Ok(None)
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, StorageError> {
        Ok(Vec::new())
    }

    async fn revoke_key(&self, _id: &str, _at: Timestamp) -> Result<bool, StorageError> {
        Err(StorageError::Internal("tally view is read-only".to_owned()))
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.sqlite.ping().await
    }
}

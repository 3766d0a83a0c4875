//! `tally serve` and `tally keys`: the collector side of the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tally_server::config::ServerConfig;
use tally_server::storage::{self, Role};

/// Options of `tally serve`; each overrides the config file.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A SQLite file (default tally-collector.db) or a postgres:// URL.
    #[arg(long, env = "TALLY_DB")]
    db: Option<String>,
    /// A TOML file with any of the collector's settings (see docs/API.md).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `tally keys ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a key; its last line of output is the key alone, shown only this once.
    Create {
        /// The collector's database: a SQLite file or a postgres:// URL.
        #[arg(long, env = "TALLY_DB")]
        db: String,
        /// The app the key is for.
        #[arg(long)]
        app: String,
        /// ingest (write events) or admin (read and erase).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A note for people (where the key is used).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List keys (never their secrets).
    List {
        /// The collector's database.
        #[arg(long, env = "TALLY_DB")]
        db: String,
    },
    /// Revoke a key by id; collectors stop accepting it within 5 seconds.
    Revoke {
        /// The collector's database.
        #[arg(long, env = "TALLY_DB")]
        db: String,
        /// The key's id (the third part of the key, shown by `keys list`).
        id: String,
    },
}

/// Options of `tally ingest`.
#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// The collector's database: a SQLite file or a postgres:// URL.
    #[arg(long, env = "TALLY_DB")]
    db: String,
    /// Batch files (`batch-*.json.gz`) written by `sync --to-dir`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// `tally --app APP ingest --db DB FILE...`: each file is checked as an HTTP batch from
/// an ingest key of `app` would be, so events of another app are refused.
pub(crate) fn ingest(app: &str, args: IngestArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let store = open(&args.db).await?;
        let config = ServerConfig::default();
        let mut failed = 0;
        for path in &args.files {
            let now = tally_core::time::now_millis();
            match tally_server::files::ingest_file(store.as_ref(), path, app, now, &config).await {
                Ok(report) => {
                    println!(
                        "{}: {} stored, {} already there, {} refused",
                        tally_server::files::shown(path),
                        report.accepted,
                        report.duplicates,
                        report.rejected.len()
                    );
                    for refused in report.rejected {
                        println!(
                            "  event {}: {}",
                            refused.index,
                            tally_server::files::escape_controls(&refused.message)
                        );
                    }
                }
                Err(err) => {
                    eprintln!("tally: {err}");
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            bail!(
                "{failed} of {} files could not be loaded; the others were",
                args.files.len()
            );
        }
        Ok(())
    })
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path).map_err(anyhow::Error::msg)?,
        None => ServerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = args.db {
        config.db = db;
    }
    runtime()?.block_on(async move {
        let store = storage::open(&config.db)
            .await
            .with_context(|| format!("cannot open the collector's database {}", redact_url(&config.db)))?;
        tally_server::serve(store, config).await?;
        Ok(())
    })
}

/// A database URL without its password, for messages.
fn redact_url(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &db[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &db[..scheme + 3], &db[at..]),
                None => db.to_owned(),
            }
        }
        _ => db.to_owned(),
    }
}

pub(crate) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match command {
            KeysCommand::Create { db, app, role, label } => {
                tally_core::validate::check_app(&app)?;
                let store = open(&db).await?;
                let key = tally_server::auth::generate(&app, role, &label, jiff::Timestamp::now())
                    .map_err(anyhow::Error::msg)?;
                store.put_key(&key.stored).await?;
                println!(
                    "created {} key {} for app {app}; store it now, it is not shown again:",
                    role.as_str(),
                    key.stored.id
                );
                println!("{}", key.secret);
            }
            KeysCommand::List { db } => {
                let store = open(&db).await?;
                let keys = store.keys().await?;
                if keys.is_empty() {
                    println!("no keys; make one with `tally keys create --db ... --app NAME --role ingest`");
                }
                for key in keys {
                    let state = match key.revoked_at {
                        Some(at) => format!("revoked {}", tally_core::time::format(at)),
                        None => "active".to_owned(),
                    };
                    println!(
                        "{}  {:<7} {:<20} {}  {state}  {}",
                        key.id,
                        key.role.as_str(),
                        key.app,
                        tally_core::time::format(key.created_at),
                        key.label
                    );
                }
            }
            KeysCommand::Revoke { db, id } => {
                let store = open(&db).await?;
                if !store.revoke_key(&id, jiff::Timestamp::now()).await? {
                    bail!("no key with id {id:?}; `tally keys list` shows the ids");
                }
                println!("revoked key {id}");
            }
        }
        Ok(())
    })
}

async fn open(db: &str) -> anyhow::Result<std::sync::Arc<dyn storage::Storage>> {
    storage::open(db)
        .await
        .with_context(|| format!("cannot open the collector's database {}", redact_url(db)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            super::redact_url("postgres://tally:s3cret@db:5432/tally"),
            "postgres://tally:***@db:5432/tally"
        );
        assert_eq!(super::redact_url("collector.db"), "collector.db");
    }
}

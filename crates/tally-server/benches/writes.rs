//! The collector's writes against the fastest plain write of the same rows into the same
//! database, in the same run (issue 10; see "Collector writes against raw writes" in
//! `docs/BENCHMARKS.md` §5).
//!
//! `cargo bench -p tally-server --bench writes`; PostgreSQL too when
//! `TALLY_TEST_POSTGRES_URL` names a cluster (each side gets a fresh database there).
//!
//! Every side writes the same kind of batches: [`BATCH`] new events each, one install and
//! session per batch (`common::Workload`), into a store of its own made by the backend
//! itself, so the tables and indexes are the collector's.
//!
//! **SQLite** (target: the collector ≥ 0.5x the raw writer):
//!
//! - `raw rusqlite` (the baseline): one connection, WAL, `synchronous=FULL` (as the
//!   collector's), one `BEGIN IMMEDIATE` transaction per batch of [`BATCH`] rows, each
//!   row by the store's own `INSERT OR IGNORE INTO event_rows` with the same values (a
//!   name or id it has not written before first goes into its table). One
//!   writer: SQLite takes one writer at a time, so more writers only wait on its lock;
//!   a single writer is the fastest way to fill the file and so the strict baseline.
//! - `Storage::insert`: the collector's SQLite backend, one batch after the other; what
//!   the store's write path (events, sessions, rollups) and the collector's own tables
//!   add to the raw rows.
//! - `collector, http, 4 clients`: the collector served on 127.0.0.1, four clients at
//!   once posting gzip batches to `POST /v1/events/batch` (group commit may merge them).
//!
//! **PostgreSQL** (target: `Storage::insert` ≥ 0.6x binary `COPY`):
//!
//! - `binary COPY` (the baseline): one connection, one transaction per batch holding one
//!   `COPY events (...) FROM STDIN (FORMAT binary)` of its [`BATCH`] rows, committed.
//!   One writer, as the collector's group-commit task is one writer.
//! - `events only, staging`: the write path issue 10 proposed, for its events alone (no
//!   aggregates): one transaction per batch holding a binary `COPY` into a temporary
//!   table (`ON COMMIT DELETE ROWS`, one per connection), then `INSERT INTO events
//!   SELECT ... ORDER BY id, ts ON CONFLICT DO NOTHING RETURNING id, ts`.
//! - `events only, unnest`: the collector's own events statement alone (no aggregates),
//!   one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING id, ts`
//!   with one binary array per column, one transaction per batch: the like-for-like
//!   comparison for the staging side.
//! - `Storage::insert`: the PostgreSQL backend, one batch after the other, as the
//!   group-commit task calls it.
//! - `collector, http, 4 clients`: as for SQLite.
//!
//! Bodies and events are built before the clock starts. Sides alternate in rotating
//! order for `TALLY_BENCH_ROUNDS` (default [`ROUNDS`]) rounds of [`BATCHES_PER_ROUND`]
//! batches, so a change of machine load hits every side alike; the verdict uses the
//! median of the per-round ratios (baseline time ÷ side time = side events/s ÷ baseline
//! events/s).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_core::Event;
use tally_server::storage::Storage;
use tally_server::storage::postgres::PostgresStorage;
use tally_server::storage::sqlite::SqliteStorage;
use tokio::runtime::Runtime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};

use crate::common::{
    BATCH, BATCHES_PER_ROUND, CLIENTS, Databases, ROUNDS, Running, URL_VARIABLE, WARM_UP_BATCHES, Workload, agent,
    gzip_body, median, send_all, serve_collector,
};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let rounds = std::env::var("TALLY_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(ROUNDS);
    println!(
        "collector writes against raw writes: {BATCH} events per batch, {rounds} rounds of {BATCHES_PER_ROUND} \
         batches per side; {} logical CPUs",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    sqlite(&runtime, dir.path(), rounds);
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => postgres(&runtime, &Databases::new(url), rounds),
        _ => println!("\n(postgres: {URL_VARIABLE} is not set, so the PostgreSQL runs are skipped)"),
    }
}

/// One way of writing batches: `write` takes the run's batches, stores them and returns
/// the time that took.
struct Side<'a> {
    label: String,
    write: Box<dyn FnMut(Vec<Vec<Event>>) -> Duration + 'a>,
}

/// The side a target applies to, by its index in the sides, and the least ratio it needs.
struct Target {
    side: usize,
    ratio: f64,
}

/// Runs `sides` (the first is the baseline) in rotating order and prints the table.
fn compare(backend: &str, rounds: usize, target: Target, mut sides: Vec<Side<'_>>) {
    let mut workload = Workload::new();
    for side in &mut sides {
        (side.write)((0..WARM_UP_BATCHES).map(|_| workload.batch(BATCH)).collect());
    }
    let mut totals = vec![Duration::ZERO; sides.len()];
    let mut ratios = vec![Vec::new(); sides.len()];
    for round in 0..rounds {
        let mut times = vec![Duration::ZERO; sides.len()];
        for offset in 0..sides.len() {
            let index = (round + offset) % sides.len();
            let batches = (0..BATCHES_PER_ROUND).map(|_| workload.batch(BATCH)).collect();
            times[index] = (sides[index].write)(batches);
            totals[index] += times[index];
        }
        for (index, time) in times.iter().enumerate() {
            ratios[index].push(times[0].as_secs_f64() / time.as_secs_f64());
        }
    }
    let events = (rounds * BATCHES_PER_ROUND * BATCH) as f64;
    println!("\n{backend}: {} events per side", events as u64);
    println!("| side | events/s | ms per batch | ratio to the baseline, all rounds | median round | target |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for (index, side) in sides.iter().enumerate() {
        let seconds = totals[index].as_secs_f64();
        let rate = events / seconds;
        let per_batch = seconds * 1e3 / (rounds * BATCHES_PER_ROUND) as f64;
        let all = totals[0].as_secs_f64() / seconds;
        let median = median(&mut ratios[index]);
        let ratio = target.ratio;
        let verdict = match index {
            0 => "baseline".to_owned(),
            _ if index != target.side => String::new(),
            _ if median >= ratio => format!("≥ {ratio}x: met"),
            _ => format!("≥ {ratio}x: NOT met"),
        };
        println!(
            "| {} | {rate:.0} | {per_batch:.2} | {all:.2}x | {median:.2}x | {verdict} |",
            side.label
        );
    }
}

/// Times `insert` of each batch, one after the other.
fn storage_side<'a>(runtime: &'a Runtime, store: Arc<dyn Storage>) -> Side<'a> {
    Side {
        label: "Storage::insert, one batch at a time".to_owned(),
        write: Box::new(move |batches| {
            let began = Instant::now();
            for batch in batches {
                let stored = runtime.block_on(store.insert(batch)).expect("insert");
                assert!(stored.iter().all(|new| *new));
            }
            began.elapsed()
        }),
    }
}

/// Times the collector receiving the batches as gzip bodies from [`CLIENTS`] clients.
fn http_side(runtime: &Runtime, store: Arc<dyn Storage>) -> Side<'static> {
    let running: Running = serve_collector(runtime, store);
    let agents: Vec<ureq::Agent> = (0..CLIENTS).map(|_| agent()).collect();
    Side {
        label: format!("collector, http, {CLIENTS} clients, gzip"),
        write: Box::new(move |batches| {
            let bodies = batches.iter().map(|batch| gzip_body(batch)).collect();
            send_all(&running, &agents, bodies)
        }),
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

/// The store's own statement for one event (`tally_store::write`): ids and times in
/// their compact forms, names and install and session ids as numbers of their tables.
const SQLITE_INSERT: &str = "INSERT OR IGNORE INTO event_rows (id, ts, app, app_version, source, type, name, \
     command, session_id, install_id, workspace, target_type, target_id, duration_ms, success, error_category, \
     error_message, props) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

fn sqlite(runtime: &Runtime, dir: &Path, rounds: usize) {
    let mut files = 0;
    let mut fresh = || {
        files += 1;
        let path = dir.join(format!("side-{files}.db"));
        (
            Arc::new(SqliteStorage::open(&path).expect("open a SQLite store")) as Arc<dyn Storage>,
            path,
        )
    };
    // The raw side's file is made by the collector, so it has every table and index,
    // then written through a connection of its own.
    let (made, raw_path) = fresh();
    drop(made);
    let mut raw = RawSqlite::open(&raw_path);
    let raw_side = Side {
        label: "raw rusqlite, 1 writer (baseline)".to_owned(),
        write: Box::new(move |batches| {
            let began = Instant::now();
            for batch in batches {
                raw.write(&batch);
            }
            began.elapsed()
        }),
    };
    let sides = vec![
        raw_side,
        storage_side(runtime, fresh().0),
        http_side(runtime, fresh().0),
    ];
    compare("sqlite", rounds, Target { side: 2, ratio: 0.5 }, sides);
}

/// The fastest plain writer of the store's event rows: the numbers of the names and ids
/// it has written stay in memory, so a value costs one insert the first time it is
/// seen and nothing after.
struct RawSqlite {
    conn: rusqlite::Connection,
    /// Per table, the number of each value written (looked up by `&str`, no allocation).
    numbers: std::collections::HashMap<&'static str, std::collections::HashMap<String, i64>>,
}

impl RawSqlite {
    fn open(path: &Path) -> RawSqlite {
        let conn = rusqlite::Connection::open(path).expect("open the raw side's file");
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .expect("WAL");
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("synchronous=FULL");
        RawSqlite {
            conn,
            numbers: std::collections::HashMap::new(),
        }
    }

    fn write(&mut self, batch: &[Event]) {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        for event in batch {
            let mut number = |table: &'static str, value: &str| -> i64 {
                let known = self.numbers.entry(table).or_default();
                if let Some(number) = known.get(value) {
                    return *number;
                }
                // As the store keeps them: a session id that is a UUID as its 16 bytes.
                let stored: rusqlite::types::Value = match uuid::Uuid::try_parse(value) {
                    Ok(uuid) if table == "session_ids" => uuid.as_bytes().to_vec().into(),
                    _ => value.to_owned().into(),
                };
                tx.prepare_cached(&format!("INSERT INTO {table} (value) VALUES (?1)"))
                    .expect("prepare")
                    .execute([stored])
                    .expect("intern");
                let number = tx.last_insert_rowid();
                known.insert(value.to_owned(), number);
                number
            };
            let app = number("strings", &event.app);
            let app_version = number("strings", &event.app_version);
            let source = number("strings", event.source.as_str());
            let kind = number("strings", &event.kind);
            let name = number("strings", &event.name);
            let command = event.command.as_deref().map(|value| number("strings", value));
            let session = number("session_ids", &event.session_id);
            let install = number("install_ids", &event.install_id);
            let target_type = event.target_type.as_deref().map(|value| number("strings", value));
            let category = event.error_category.as_deref().map(|value| number("strings", value));
            let props = (!event.props.is_empty()).then(|| serde_json::to_string(&event.props).expect("props"));
            let changed = tx
                .prepare_cached(SQLITE_INSERT)
                .expect("prepare")
                .execute(rusqlite::params![
                    event.id.as_bytes(),
                    event.ts.as_millisecond(),
                    app,
                    app_version,
                    source,
                    kind,
                    name,
                    command,
                    session,
                    install,
                    event.workspace.as_deref().map(hash_bytes),
                    target_type,
                    event.target_id.as_deref().map(hash_bytes),
                    event.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
                    event.success,
                    category,
                    event.error_message,
                    props,
                ])
                .expect("insert");
            assert_eq!(changed, 1);
        }
        tx.commit().expect("commit");
    }
}

/// The 12 bytes a keyed hash (`h1:` and 24 hex digits) is stored as.
fn hash_bytes(hash: &str) -> Vec<u8> {
    hex::decode(hash.strip_prefix("h1:").expect("the workload's hashes are keyed")).expect("hex")
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

const COPY_EVENTS: &str = "COPY events (id, ts, app, app_version, source, type, name, command, session_id, \
     install_id, workspace, target_type, target_id, duration_ms, success, error_category, error_message, props) \
     FROM STDIN (FORMAT binary)";

const COPY_TYPES: [Type; 18] = [
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
];

fn postgres(runtime: &Runtime, databases: &Databases, rounds: usize) {
    let mut copy_client = raw_client(runtime, databases);
    let copy_side = Side {
        label: "binary COPY, 1 writer (baseline)".to_owned(),
        write: Box::new(move |batches| {
            let began = Instant::now();
            for batch in batches {
                runtime.block_on(copy_batch(&mut copy_client, &batch));
            }
            began.elapsed()
        }),
    };
    let mut staging_client = raw_client(runtime, databases);
    runtime
        .block_on(staging_client.batch_execute(STAGING_TABLE))
        .expect("the staging table");
    let staging_side = Side {
        label: "events only: binary COPY into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING"
            .to_owned(),
        write: Box::new(move |batches| {
            let began = Instant::now();
            for batch in batches {
                runtime.block_on(staged_batch(&mut staging_client, &batch));
            }
            began.elapsed()
        }),
    };
    let mut unnest_client = raw_client(runtime, databases);
    let unnest = runtime
        .block_on(unnest_client.prepare(INSERT_UNNEST))
        .expect("prepare the insert");
    let unnest_side = Side {
        label: "events only: INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING (the collector's insert)"
            .to_owned(),
        write: Box::new(move |batches| {
            let began = Instant::now();
            for batch in batches {
                runtime.block_on(unnest_batch(&mut unnest_client, &unnest, &batch));
            }
            began.elapsed()
        }),
    };
    let sides = vec![
        copy_side,
        staging_side,
        unnest_side,
        storage_side(runtime, databases.fresh_store(runtime)),
        http_side(runtime, databases.fresh_store(runtime)),
    ];
    compare("postgres", rounds, Target { side: 3, ratio: 0.6 }, sides);
}

/// A connection to a new database made by the collector (its schema, indexes and the
/// partitions of this month and the last: a batch of each goes in through
/// `Storage::insert` first), for a side that writes its own SQL.
fn raw_client(runtime: &Runtime, databases: &Databases) -> tokio_postgres::Client {
    let url = databases.fresh_url(runtime);
    let mut workload = Workload::new();
    let mut an_hour_ago = workload.batch(BATCH);
    for event in &mut an_hour_ago {
        event.ts -= jiff::SignedDuration::from_hours(1);
    }
    runtime.block_on(async {
        let store = PostgresStorage::connect(&url).await.expect("connect");
        for batch in [workload.batch(BATCH), an_hour_ago] {
            store.insert(batch).await.expect("make the partitions");
        }
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    })
}

/// One transaction holding one binary `COPY` of `batch` into `events`.
async fn copy_batch(client: &mut tokio_postgres::Client, batch: &[Event]) {
    let tx = client.transaction().await.expect("begin");
    copy_rows(&tx, COPY_EVENTS, batch).await;
    tx.commit().await.expect("commit");
}

/// The staging table the alternative write path would use: one per connection, emptied
/// at every commit.
const STAGING_TABLE: &str = "CREATE TEMPORARY TABLE tally_staged_events (id uuid NOT NULL, \
     ts timestamptz NOT NULL, app text NOT NULL, app_version text NOT NULL, source text NOT NULL, \
     type text NOT NULL, name text NOT NULL, command text, session_id text NOT NULL, install_id text NOT NULL, \
     workspace text, target_type text, target_id text, duration_ms bigint, success boolean, error_category text, \
     error_message text, props jsonb) ON COMMIT DELETE ROWS";

const COPY_STAGED: &str = "COPY tally_staged_events FROM STDIN (FORMAT binary)";

const INSERT_STAGED: &str = "INSERT INTO events SELECT * FROM tally_staged_events ORDER BY id, ts \
     ON CONFLICT DO NOTHING RETURNING id, ts";

/// One transaction: `batch` copied into the staging table, then moved into `events`
/// with the dedupe the collector needs, the stored keys returned.
async fn staged_batch(client: &mut tokio_postgres::Client, batch: &[Event]) {
    let tx = client.transaction().await.expect("begin");
    copy_rows(&tx, COPY_STAGED, batch).await;
    let stored = tx.query(INSERT_STAGED, &[]).await.expect("insert the staged rows");
    assert_eq!(stored.len(), batch.len());
    tx.commit().await.expect("commit");
}

/// The collector's own events statement (`storage/postgres/batch.rs`): one array per
/// column.
const INSERT_UNNEST: &str = "INSERT INTO events (id, ts, app, app_version, source, type, name, command, \
     session_id, install_id, workspace, target_type, target_id, duration_ms, success, error_category, \
     error_message, props) \
     SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int8[], \
     $15::bool[], $16::text[], $17::text[], $18::jsonb[]) \
     ON CONFLICT DO NOTHING RETURNING id, ts";

/// One transaction holding the collector's insert of `batch`, the stored keys returned.
async fn unnest_batch(client: &mut tokio_postgres::Client, statement: &tokio_postgres::Statement, batch: &[Event]) {
    let tx = client.transaction().await.expect("begin");
    let column = |field: fn(&Event) -> Option<&str>| batch.iter().map(field).collect::<Vec<_>>();
    let ids: Vec<_> = batch.iter().map(|event| event.id).collect();
    let times: Vec<_> = batch.iter().map(|event| event.ts).collect();
    let durations: Vec<Option<i64>> = batch
        .iter()
        .map(|event| event.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)))
        .collect();
    let successes: Vec<Option<bool>> = batch.iter().map(|event| event.success).collect();
    let props: Vec<_> = batch
        .iter()
        .map(|event| (!event.props.is_empty()).then_some(Json(&event.props)))
        .collect();
    let stored = tx
        .query(
            statement,
            &[
                &ids,
                &times,
                &column(|event| Some(&event.app)),
                &column(|event| Some(&event.app_version)),
                &column(|event| Some(event.source.as_str())),
                &column(|event| Some(&event.kind)),
                &column(|event| Some(&event.name)),
                &column(|event| event.command.as_deref()),
                &column(|event| Some(&event.session_id)),
                &column(|event| Some(&event.install_id)),
                &column(|event| event.workspace.as_deref()),
                &column(|event| event.target_type.as_deref()),
                &column(|event| event.target_id.as_deref()),
                &durations,
                &successes,
                &column(|event| event.error_category.as_deref()),
                &column(|event| event.error_message.as_deref()),
                &props,
            ],
        )
        .await
        .expect("insert");
    assert_eq!(stored.len(), batch.len());
    tx.commit().await.expect("commit");
}

/// Copies `batch` in binary with `copy`, a `COPY ... FROM STDIN (FORMAT binary)` of the
/// 18 event columns.
async fn copy_rows(tx: &tokio_postgres::Transaction<'_>, copy: &str, batch: &[Event]) {
    let sink = tx.copy_in(copy).await.expect("copy");
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    let mut writer = std::pin::pin!(writer);
    for event in batch {
        let props = (!event.props.is_empty()).then_some(Json(&event.props));
        let duration = event.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX));
        let source = event.source.as_str();
        let row: [&(dyn ToSql + Sync); 18] = [
            &event.id,
            &event.ts,
            &event.app,
            &event.app_version,
            &source,
            &event.kind,
            &event.name,
            &event.command,
            &event.session_id,
            &event.install_id,
            &event.workspace,
            &event.target_type,
            &event.target_id,
            &duration,
            &event.success,
            &event.error_category,
            &event.error_message,
            &props,
        ];
        writer.as_mut().write(&row).await.expect("a row");
    }
    let rows = writer.finish().await.expect("finish the copy");
    assert_eq!(rows, batch.len() as u64);
}

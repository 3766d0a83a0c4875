//! Flush throughput: `Store::insert_batch` of 500-event batches against raw rusqlite
//! inserts of the same rows, in the same run (see `docs/BENCHMARKS.md`).
//!
//! Every side writes to its own fresh file in a temporary directory, in WAL mode with
//! `synchronous=OFF` (the store's default, `OpenOptions::default()`), one `BEGIN
//! IMMEDIATE` transaction per batch through one cached prepared statement. Each timed batch is 500 new events of one session finished at
//! level `enhanced` (fresh UUIDv7 ids, hashed workspaces and targets, props on a fifth),
//! built untimed just before it is written:
//!
//! - `store`: `Store::insert_batch(&events)`, which also turns each event into column
//!   values (the compact layout of schema 7: id as 16 bytes, time as milliseconds, names
//!   and ids numbered in the dictionaries, props as JSON) and updates the session's row.
//! - `raw, same schema`: the store's own schema and pragmas (a file made by `Store::open`,
//!   reopened with plain rusqlite), the store's `INSERT OR IGNORE`, and the column values
//!   (dictionary numbers included) computed before the clock starts.
//! - `raw, primary key only`: a table with schema 6's text columns and no index but the integer
//!   primary key, a plain `INSERT`, only `journal_mode=WAL` and `synchronous=OFF`, and
//!   the column values computed before the clock starts.
//! - `raw, primary key only, store's pragmas`: the same plus `auto_vacuum=INCREMENTAL`
//!   and `secure_delete=ON`, to tell what the indexes cost from what the pragmas cost.
//! - `raw, same schema, events converted inside the timing`: `raw, same schema` with the
//!   turning of events into column values timed too, to tell what that conversion costs
//!   from what the store's session and rollup bookkeeping costs.
//! - `store, then checkpoint_now`: what the SDK's flush thread does per batch:
//!   `Store::insert_batch`, then `Store::checkpoint_now` (`wal_checkpoint(TRUNCATE)`),
//!   both timed. The other sides leave checkpoints to `wal_autocheckpoint`.
//!
//! Criterion measures the sides one after the other; then an interleaved run writes one
//! batch per side per round into fresh files (`FLUSH_ROUNDS` rounds, default 1000) and
//! reports the ratio per round, which the machine's changing load cannot bias.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rusqlite::{Connection, TransactionBehavior};
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_store::{DropCounts, OpenOptions, Store};

/// Events per transaction, as the SDK's flush thread writes them (its `max_batch`).
const BATCH: usize = 500;

/// The store's insert, word for word.
const INSERT_OR_IGNORE: &str = "INSERT OR IGNORE INTO event_rows (id, ts, app, app_version, source, type, name, \
     command, session_id, install_id, workspace, target_type, target_id, duration_ms, success, error_category, \
     error_message, props) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

const PLAIN_INSERT: &str = "INSERT INTO events (id, ts, app, app_version, source, type, name, \
     command, session_id, install_id, workspace, target_type, target_id, duration_ms, success, error_category, \
     error_message, props) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// The store's `events` columns with the integer primary key as the only index.
const PK_ONLY_TABLE: &str = "CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL,
    ts             TEXT NOT NULL,
    app            TEXT NOT NULL,
    app_version    TEXT NOT NULL,
    source         TEXT NOT NULL,
    type           TEXT NOT NULL,
    name           TEXT NOT NULL,
    command        TEXT,
    session_id     TEXT NOT NULL,
    install_id     TEXT NOT NULL,
    workspace      TEXT,
    target_type    TEXT,
    target_id      TEXT,
    duration_ms    INTEGER,
    success        INTEGER,
    error_category TEXT,
    error_message  TEXT,
    props          TEXT
)";

/// One app run's context: one session, as the SDK's flush thread writes it.
struct Run {
    session_id: String,
    install_id: String,
    hasher: KeyedHasher,
    made: u64,
}

impl Run {
    fn new() -> Run {
        Run {
            session_id: uuid::Uuid::now_v7().to_string(),
            install_id: uuid::Uuid::new_v4().to_string(),
            hasher: KeyedHasher::new(&[1; 32]),
            made: 0,
        }
    }

    /// 500 new events of a workspace manager's usual kinds, finished at `enhanced`.
    fn batch(&mut self) -> Vec<Event> {
        let context = EventContext {
            app: "benchapp",
            app_version: "1.0.0",
            source: Source::Cli,
            session_id: &self.session_id,
            install_id: &self.install_id,
            hasher: &self.hasher,
            level: Level::Enhanced,
        };
        (0..BATCH)
            .map(|_| {
                let n = self.made;
                self.made += 1;
                let workspace = format!("workspace-{}", n % 13);
                let builder = match n % 5 {
                    0 => Event::builder("command", "command_executed")
                        .command("task done")
                        .workspace(workspace)
                        .duration_ms(n % 400)
                        .success(true),
                    1 => Event::builder("task", "task_completed")
                        .command("task done")
                        .workspace(workspace)
                        .target("task", format!("task-{n}")),
                    2 => Event::builder("workspace", "workspace_created")
                        .command("workspace create")
                        .workspace(workspace)
                        .prop("template", "rust")
                        .prop("files_count", 3),
                    3 => Event::builder("command", "command_executed")
                        .command("workspace create")
                        .workspace(workspace)
                        .duration_ms(n % 900)
                        .success(n % 7 != 0)
                        .error_category("already_exists"),
                    _ => Event::builder("error", "error_occurred")
                        .command("workspace create")
                        .workspace(workspace)
                        .error_category("already_exists")
                        .error_message("workspace already exists"),
                };
                builder.finish(&context).unwrap().unwrap()
            })
            .collect()
    }
}

/// One event as column values, converted as `Store::insert_batch` converts it.
struct Row {
    id: String,
    ts: String,
    app: String,
    app_version: String,
    source: &'static str,
    kind: String,
    name: String,
    command: Option<String>,
    session_id: String,
    install_id: String,
    workspace: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    duration_ms: Option<i64>,
    success: Option<bool>,
    error_category: Option<String>,
    error_message: Option<String>,
    props: Option<String>,
}

impl Row {
    fn of(event: Event) -> Row {
        Row {
            id: event.id.to_string(),
            ts: tally_core::time::format(event.ts),
            props: (!event.props.is_empty()).then(|| serde_json::to_string(&event.props).unwrap()),
            app: event.app,
            app_version: event.app_version,
            source: event.source.as_str(),
            kind: event.kind,
            name: event.name,
            command: event.command,
            session_id: event.session_id,
            install_id: event.install_id,
            workspace: event.workspace,
            target_type: event.target_type,
            target_id: event.target_id,
            duration_ms: event.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
            success: event.success,
            error_category: event.error_category,
            error_message: event.error_message,
        }
    }
}

/// One event as the store's compact column values (schema 7), converted as
/// `Store::insert_batch` converts it; interned values are numbered through `Dictionary`.
struct CompactRow {
    id: [u8; 16],
    ts: i64,
    interned: [Option<i64>; 9],
    session_id: i64,
    workspace: Option<rusqlite::types::Value>,
    target_id: Option<rusqlite::types::Value>,
    duration_ms: Option<i64>,
    success: Option<bool>,
    error_message: Option<String>,
    props: Option<String>,
}

/// The numbers of interned values in one raw file's `strings`, `install_ids` and
/// `session_ids`, by table and value.
#[derive(Default)]
struct Dictionary {
    known: std::collections::HashMap<(&'static str, String), i64>,
}

impl Dictionary {
    fn id(&mut self, conn: &Connection, table: &'static str, value: &str) -> i64 {
        if let Some(id) = self.known.get(&(table, value.to_owned())) {
            return *id;
        }
        let stored = if table == "session_ids" {
            token(value)
        } else {
            rusqlite::types::Value::Text(value.to_owned())
        };
        conn.execute(&format!("INSERT OR IGNORE INTO {table} (value) VALUES (?1)"), [&stored])
            .unwrap();
        let id: i64 = conn
            .query_row(&format!("SELECT id FROM {table} WHERE value = ?1"), [&stored], |row| {
                row.get(0)
            })
            .unwrap();
        self.known.insert((table, value.to_owned()), id);
        id
    }
}

/// A session id's stored form, as the store makes it.
fn token(text: &str) -> rusqlite::types::Value {
    match uuid::Uuid::try_parse(text) {
        Ok(uuid) if text.len() == 36 && uuid.hyphenated().to_string() == text => {
            rusqlite::types::Value::Blob(uuid.as_bytes().to_vec())
        }
        _ => rusqlite::types::Value::Text(text.to_owned()),
    }
}

/// A keyed hash's stored form, as the store makes it.
fn hash(text: &str) -> rusqlite::types::Value {
    match text.strip_prefix("h1:").map(hex::decode) {
        Some(Ok(bytes)) if bytes.len() == 12 => rusqlite::types::Value::Blob(bytes),
        _ => rusqlite::types::Value::Text(text.to_owned()),
    }
}

impl CompactRow {
    fn of(event: Event, conn: &Connection, dictionary: &mut Dictionary) -> CompactRow {
        let mut string = |value: Option<&str>| value.map(|value| dictionary.id(conn, "strings", value));
        let interned = [
            string(Some(&event.app)),
            string(Some(&event.app_version)),
            string(Some(event.source.as_str())),
            string(Some(&event.kind)),
            string(Some(&event.name)),
            string(event.command.as_deref()),
            None,
            string(event.target_type.as_deref()),
            string(event.error_category.as_deref()),
        ];
        let mut interned = interned;
        interned[6] = Some(dictionary.id(conn, "install_ids", &event.install_id));
        CompactRow {
            id: *event.id.as_bytes(),
            ts: event.ts.as_millisecond(),
            interned,
            session_id: dictionary.id(conn, "session_ids", &event.session_id),
            workspace: event.workspace.as_deref().map(hash),
            target_id: event.target_id.as_deref().map(hash),
            duration_ms: event.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
            success: event.success,
            error_message: event.error_message,
            props: (!event.props.is_empty()).then(|| serde_json::to_string(&event.props).unwrap()),
        }
    }
}

/// [`raw_insert`] of compact rows, with the store's own insert.
fn raw_insert_compact(conn: &mut Connection, rows: &[CompactRow]) {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
    {
        let mut insert = tx.prepare_cached(INSERT_OR_IGNORE).unwrap();
        for row in rows {
            let [
                app,
                app_version,
                source,
                kind,
                name,
                command,
                install_id,
                target_type,
                error_category,
            ] = row.interned;
            let changed = insert
                .execute(rusqlite::params![
                    row.id,
                    row.ts,
                    app,
                    app_version,
                    source,
                    kind,
                    name,
                    command,
                    row.session_id,
                    install_id,
                    row.workspace,
                    target_type,
                    row.target_id,
                    row.duration_ms,
                    row.success,
                    error_category,
                    row.error_message,
                    row.props,
                ])
                .unwrap();
            assert_eq!(changed, 1);
        }
    }
    tx.commit().unwrap();
}

/// One transaction, one cached prepared statement, one `execute` per row.
fn raw_insert(conn: &mut Connection, sql: &str, rows: &[Row]) {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
    {
        let mut insert = tx.prepare_cached(sql).unwrap();
        for row in rows {
            let changed = insert
                .execute(rusqlite::params![
                    row.id,
                    row.ts,
                    row.app,
                    row.app_version,
                    row.source,
                    row.kind,
                    row.name,
                    row.command,
                    row.session_id,
                    row.install_id,
                    row.workspace,
                    row.target_type,
                    row.target_id,
                    row.duration_ms,
                    row.success,
                    row.error_category,
                    row.error_message,
                    row.props,
                ])
                .unwrap();
            assert_eq!(changed, 1);
        }
    }
    tx.commit().unwrap();
}

/// The four writers compared, each with its own fresh file in `dir`.
struct Sides {
    store: Store,
    store_path: PathBuf,
    same: Connection,
    same_path: PathBuf,
    pk_only: Connection,
    pk_only_path: PathBuf,
    pk_pragmas: Connection,
    pk_pragmas_path: PathBuf,
    same_converting: Connection,
    same_converting_path: PathBuf,
    same_dictionary: Dictionary,
    converting_dictionary: Dictionary,
    checkpointed: Store,
    checkpointed_path: PathBuf,
}

/// What each side is called in the output, in `Side` order.
const NAMES: [&str; 6] = [
    "store: Store::insert_batch",
    "raw rusqlite: same schema",
    "raw rusqlite: primary key only",
    "raw rusqlite: primary key only, store's pragmas",
    "raw rusqlite: same schema, events converted inside the timing",
    "store: Store::insert_batch, then Store::checkpoint_now",
];

#[derive(Clone, Copy)]
enum Side {
    Store,
    SameSchema,
    PkOnly,
    PkOnlyStorePragmas,
    SameSchemaConverting,
    StoreCheckpointed,
}

const SIDES: [Side; 6] = [
    Side::Store,
    Side::SameSchema,
    Side::PkOnly,
    Side::PkOnlyStorePragmas,
    Side::SameSchemaConverting,
    Side::StoreCheckpointed,
];

fn wal(conn: &Connection) {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // As the store sets it by default (`OpenOptions::default()`).
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
}

impl Sides {
    fn open(dir: &Path) -> Sides {
        let options = OpenOptions::default();
        let store_dir = dir.join("store");
        let store = Store::open(&store_dir, &options).unwrap();

        let (same, same_path) = same_schema(&dir.join("same-schema"));
        let pk_only_path = dir.join("pk-only.db");
        let pk_only = Connection::open(&pk_only_path).unwrap();
        wal(&pk_only);
        pk_only.execute_batch(PK_ONLY_TABLE).unwrap();

        // Primary key only, with the store's other pragmas: separates what the indexes
        // cost from what `auto_vacuum` and `secure_delete` cost.
        let pk_pragmas_path = dir.join("pk-only-store-pragmas.db");
        let pk_pragmas = Connection::open(&pk_pragmas_path).unwrap();
        pk_pragmas.pragma_update(None, "auto_vacuum", "INCREMENTAL").unwrap();
        wal(&pk_pragmas);
        pk_pragmas.pragma_update(None, "secure_delete", "ON").unwrap();
        pk_pragmas.execute_batch(PK_ONLY_TABLE).unwrap();

        let (same_converting, same_converting_path) = same_schema(&dir.join("same-schema-converting"));
        let checkpointed_dir = dir.join("store-checkpointed");
        let checkpointed = Store::open(&checkpointed_dir, &options).unwrap();

        Sides {
            store,
            store_path: store_dir.join(tally_store::DB_FILE_NAME),
            same,
            same_path,
            pk_only,
            pk_only_path,
            pk_pragmas,
            pk_pragmas_path,
            same_converting,
            same_converting_path,
            same_dictionary: Dictionary::default(),
            converting_dictionary: Dictionary::default(),
            checkpointed,
            checkpointed_path: checkpointed_dir.join(tally_store::DB_FILE_NAME),
        }
    }

    /// Writes one new batch made by `run` (untimed) and returns how long the write took.
    fn write(&mut self, side: Side, run: &mut Run) -> Duration {
        let events = run.batch();
        if let Side::Store = side {
            let start = Instant::now();
            let outcome = self
                .store
                .insert_batch(black_box(&events), DropCounts::default())
                .unwrap();
            let elapsed = start.elapsed();
            assert_eq!(outcome.inserted, BATCH);
            return elapsed;
        }
        if let Side::StoreCheckpointed = side {
            let busy_timeout = OpenOptions::default().busy_timeout;
            let start = Instant::now();
            let outcome = self
                .checkpointed
                .insert_batch(black_box(&events), DropCounts::default())
                .unwrap();
            let done = self.checkpointed.checkpoint_now(busy_timeout).unwrap();
            let elapsed = start.elapsed();
            assert_eq!(outcome.inserted, BATCH);
            assert!(done, "nothing else uses this file, so the checkpoint finishes");
            return elapsed;
        }
        if let Side::SameSchemaConverting = side {
            // The dictionary lookups (a few per batch, the rest from memory) are timed too.
            let start = Instant::now();
            let rows: Vec<CompactRow> = black_box(events)
                .into_iter()
                .map(|event| CompactRow::of(event, &self.same_converting, &mut self.converting_dictionary))
                .collect();
            raw_insert_compact(&mut self.same_converting, &rows);
            return start.elapsed();
        }
        if let Side::SameSchema = side {
            let rows: Vec<CompactRow> = events
                .into_iter()
                .map(|event| CompactRow::of(event, &self.same, &mut self.same_dictionary))
                .collect();
            let start = Instant::now();
            raw_insert_compact(&mut self.same, black_box(&rows));
            return start.elapsed();
        }
        let rows: Vec<Row> = events.into_iter().map(Row::of).collect();
        let conn = match side {
            Side::PkOnly => &mut self.pk_only,
            _ => &mut self.pk_pragmas,
        };
        let start = Instant::now();
        raw_insert(conn, PLAIN_INSERT, black_box(&rows));
        start.elapsed()
    }

    fn report_sizes(&self) {
        for (name, conn, path) in [
            (NAMES[0], self.store.connection(), &self.store_path),
            (NAMES[1], &self.same, &self.same_path),
            (NAMES[2], &self.pk_only, &self.pk_only_path),
            (NAMES[3], &self.pk_pragmas, &self.pk_pragmas_path),
            (NAMES[4], &self.same_converting, &self.same_converting_path),
            (NAMES[5], self.checkpointed.connection(), &self.checkpointed_path),
        ] {
            println!(
                "  {name}: {} events in the file, {:.1} MB with its WAL",
                count(conn),
                size(path) as f64 / 1e6
            );
        }
    }
}

/// A file with the store's schema and pragmas: the store makes it, then it is reopened
/// with rusqlite and given what the store sets on each connection.
fn same_schema(dir: &Path) -> (Connection, PathBuf) {
    let options = OpenOptions::default();
    drop(Store::open(dir, &options).unwrap());
    let path = dir.join(tally_store::DB_FILE_NAME);
    let conn = Connection::open(&path).unwrap();
    conn.busy_timeout(options.busy_timeout).unwrap();
    wal(&conn);
    conn.pragma_update(None, "secure_delete", "ON").unwrap();
    (conn, path)
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap()
}

fn size(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|meta| meta.len())
        .sum()
}

/// Criterion, one side after the other, each into its own fresh file.
fn bench_flush(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut sides = Sides::open(dir.path());
    let mut run = Run::new();
    let mut group = c.benchmark_group("flush 500-event batches");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (side, name) in SIDES.into_iter().zip(NAMES) {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| sides.write(side, &mut run)).sum());
        });
    }
    group.finish();
    println!("after criterion:");
    sides.report_sizes();
}

fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// The same comparison interleaved: each round writes one batch with every side, in a
/// rotating order, into files that all hold the same number of events, so a change in
/// the machine's load falls on all sides alike. Reports the ratio per round.
fn interleaved(rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut sides = Sides::open(dir.path());
    let mut run = Run::new();
    let mut times: [Vec<f64>; 6] = Default::default();
    for round in 0..rounds {
        for k in 0..SIDES.len() {
            let which = (round + k) % SIDES.len();
            times[which].push(sides.write(SIDES[which], &mut run).as_secs_f64());
        }
    }
    println!();
    println!("interleaved: {rounds} rounds, one {BATCH}-event batch per side per round, order rotating");
    println!();
    println!(
        "| side | median ms/batch | p90 ms/batch | events/s at the median | events/s overall | store ÷ side, events/s (median of rounds) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (which, name) in NAMES.iter().enumerate() {
        let med = median(&times[which]);
        let total: f64 = times[which].iter().sum();
        let ratios: Vec<f64> = times[which]
            .iter()
            .zip(&times[0])
            .map(|(side, store)| side / store)
            .collect();
        println!(
            "| {name} | {:.3} | {:.3} | {:.0} | {:.0} | {:.3} |",
            med * 1e3,
            quantile(&times[which], 0.9) * 1e3,
            BATCH as f64 / med,
            (BATCH * rounds) as f64 / total,
            median(&ratios)
        );
    }
    // Whether the ratio drifts as the files grow: the first and the last fifth of the rounds.
    let fifth = (rounds / 5).max(1);
    for (which, name) in NAMES.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = times[which]
            .iter()
            .zip(&times[0])
            .map(|(side, store)| side / store)
            .collect();
        println!(
            "  store ÷ {name}: {:.3} over the first {fifth} rounds, {:.3} over the last {fifth}",
            median(&ratios[..fifth]),
            median(&ratios[rounds - fifth..])
        );
    }
    // The flush thread's whole per-batch path against the two raw baselines.
    for which in [2, 1] {
        let ratios: Vec<f64> = times[which]
            .iter()
            .zip(&times[5])
            .map(|(side, checkpointed)| side / checkpointed)
            .collect();
        println!(
            "  store, then checkpoint_now ÷ {}: {:.3} (median of rounds), {:.3} over all batches",
            NAMES[which],
            median(&ratios),
            times[which].iter().sum::<f64>() / times[5].iter().sum::<f64>()
        );
    }
    sides.report_sizes();
}

fn main() {
    let test_mode = std::env::args().any(|arg| arg == "--test");
    let mut criterion = Criterion::default().configure_from_args();
    bench_flush(&mut criterion);
    criterion.final_summary();
    if !std::env::args().any(|arg| arg == "--list") {
        let rounds = std::env::var("FLUSH_ROUNDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(if test_mode { 2 } else { 1000 });
        interleaved(rounds);
    }
}

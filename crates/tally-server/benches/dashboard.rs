//! The dashboard's data at 10 million stored events: what the page loads for its default
//! view (one `/v1/stats` of 30 days by day, with the 30 days before in `previous` for
//! the changes), on SQLite and on PostgreSQL, against a storage ping in the same run
//! (see "The dashboard's data" in `docs/BENCHMARKS.md`).
//!
//! ```sh
//! cargo bench -p tally-server --bench dashboard
//! TALLY_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/tally_bench cargo bench -p tally-server --bench dashboard
//! ```
//!
//! The SQLite store is the one the `metrics` bench builds (its module comment says what
//! 10 million events leave behind: 90 days of hourly rollups for three apps, 60,000
//! installs, 500,000 sessions, lifetime totals and a million raw events). For PostgreSQL,
//! a fresh database gets the collector's schema from `PostgresStorage::connect`, then the
//! same rollups, sessions, installs and totals copied over; raw events are left out, as
//! the dashboard never reads them. The store's `install_days` is filled from its sessions,
//! installs and raw events as collector schema 6 fills an older database (the `metrics`
//! bench writes rows directly, not through batches), and copied too. `TALLY_BENCH_PAGES` (default 50) loads are timed per
//! backend after 5 untimed ones, alternating with a `ping`.

#[allow(dead_code, unreachable_pub)]
#[path = "metrics.rs"]
mod metrics_bench;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use metrics_bench::{build_store, env_number, percentile, show};
use serde_json::json;
use tally_core::time::Period;
use tally_server::AppState;
use tally_server::config::ServerConfig;
use tally_server::storage::postgres::PostgresStorage;
use tally_server::storage::sqlite::SqliteStorage;
use tally_server::storage::sqlite::schema::FILL_METRICS_DAILY;
use tally_server::storage::{ApiKey, Role, Storage};
use tokio::runtime::Runtime;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let pages: usize = env_number("TALLY_BENCH_PAGES", 50);
    let raw_events: u64 = env_number("TALLY_BENCH_RAW_EVENTS", 1_000_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let now = tally_core::time::now_millis();
    // `TALLY_BENCH_DIR` keeps the built store there, to look at its query plans after.
    let path = std::env::var_os("TALLY_BENCH_DIR")
        .map_or_else(|| dir.path().to_owned(), std::path::PathBuf::from)
        .join("ten-million.db");
    let began = Instant::now();
    let built = build_store(&path, now, 1, raw_events);
    println!(
        "built the SQLite store in {:.1} s: {built}",
        began.elapsed().as_secs_f64()
    );
    let began = Instant::now();
    let days = fill_install_days(&path);
    println!(
        "filled {days} install_days rows in {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let mut results = Vec::new();
    let sqlite: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&path).expect("open the built store"));
    results.push(("SQLite", measure(&runtime, sqlite, now, pages)));
    match std::env::var("TALLY_BENCH_POSTGRES_URL") {
        Ok(url) => {
            let began = Instant::now();
            let postgres = runtime.block_on(copy_to_postgres(&path, &url));
            println!("copied to PostgreSQL in {:.1} s", began.elapsed().as_secs_f64());
            results.push(("PostgreSQL", measure(&runtime, postgres, now, pages)));
        }
        Err(_) => println!("TALLY_BENCH_POSTGRES_URL is not set: PostgreSQL not measured"),
    }

    println!("\nThe dashboard's data (one /v1/stats with its previous period, 30 days by day), {pages} loads each");
    println!("| backend | call | median | p90 | max |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (backend, (loads, pings)) in &results {
        for (label, timings) in [("page data", loads), ("ping (baseline)", pings)] {
            let mut timings = timings.clone();
            println!(
                "| {backend} | {label} | {} | {} | {} |",
                show(percentile(&mut timings, 0.5)),
                show(percentile(&mut timings, 0.9)),
                show(percentile(&mut timings, 1.0)),
            );
        }
        let median = percentile(&mut loads.clone(), 0.5);
        println!(
            "| {backend} | target median <= 200 ms | {} | | |",
            if median <= Duration::from_millis(200) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

/// Times `pages` loads of the page's data for the biggest app, each followed by a ping.
fn measure(runtime: &Runtime, store: Arc<dyn Storage>, now: Timestamp, pages: usize) -> (Vec<Duration>, Vec<Duration>) {
    let state = runtime.block_on(async {
        let (mut state, _) = AppState::new(Arc::clone(&store), ServerConfig::default());
        state.clock = Arc::new(move || now);
        state
    });
    let key = ApiKey {
        id: "000000000000".to_owned(),
        app: "nexus".to_owned(),
        role: Role::Admin,
        secret_hash: [0; 32],
        label: String::new(),
        created_at: now,
        revoked_at: None,
    };
    let to = now;
    let from = to.checked_sub((30 * 24).hours()).expect("30 days ago");
    // What the page fetches for its default view: one `/v1/stats` of the last 30 days by
    // day, whose `previous` holds the 30 days before for the cards' changes. (Before the
    // dashboard-speed change the page made a second full call for the 30 days before.)
    let load = || {
        runtime.block_on(async {
            let payload = json!({
                "from": tally_core::time::format(from),
                "to": tally_core::time::format(to),
                "bucket": "day",
            });
            let (_, body) = tally_server::actions::stats::get(&state, &key, payload)
                .await
                .expect("stats");
            assert!(body["totals"]["events"].as_u64().unwrap_or(0) > 0, "{body}");
            assert!(body["previous"]["totals"]["events"].as_u64().unwrap_or(0) > 0, "{body}");
            std::hint::black_box(body);
        })
    };
    for _ in 0..5 {
        load();
    }
    let (mut loads, mut pings) = (Vec::with_capacity(pages), Vec::with_capacity(pages));
    for _ in 0..pages {
        let began = Instant::now();
        load();
        loads.push(began.elapsed());
        let began = Instant::now();
        runtime.block_on(store.ping()).expect("ping");
        pings.push(began.elapsed());
    }
    // Where a load's time goes: the storage calls one /v1/stats makes, each timed alone.
    let period = Period { from, to };
    let since: Vec<Timestamp> = [1i64, 24, 24 * 7, 24 * 30]
        .iter()
        .map(|hours| now.checked_sub(hours.hours()).expect("a past time"))
        .collect();
    // The six spans of `active_installs_windows`: 24 h, 7 d and 30 d before `to`, and
    // the span before each.
    let windows: Vec<Period> = [24i64, 24 * 7, 24 * 30]
        .iter()
        .flat_map(|hours| {
            let back = |n: i64| to.checked_sub(n.hours()).expect("a past time");
            [
                Period { from: back(*hours), to },
                Period {
                    from: back(2 * hours),
                    to: back(*hours),
                },
            ]
        })
        .collect();
    let mut parts: [(&str, Vec<Duration>); 5] = [
        ("rollups (30 days, hourly rows: the old read)", Vec::new()),
        ("daily_rollups (30 days)", Vec::new()),
        ("sessions (30 days)", Vec::new()),
        ("active_installs", Vec::new()),
        ("active_installs_in (six windows)", Vec::new()),
    ];
    for _ in 0..pages.min(20) {
        let began = Instant::now();
        let rows = runtime.block_on(store.rollups("nexus", &period)).expect("rollups");
        parts[0].1.push(began.elapsed());
        std::hint::black_box(rows);
        let began = Instant::now();
        let rows = runtime
            .block_on(store.daily_rollups("nexus", &period))
            .expect("daily rollups");
        parts[1].1.push(began.elapsed());
        std::hint::black_box(rows);
        let began = Instant::now();
        runtime.block_on(store.sessions("nexus", &period)).expect("sessions");
        parts[2].1.push(began.elapsed());
        let began = Instant::now();
        runtime.block_on(store.active_installs(&since)).expect("installs");
        parts[3].1.push(began.elapsed());
        let began = Instant::now();
        let counts = runtime
            .block_on(store.active_installs_in("nexus", &windows))
            .expect("windows");
        parts[4].1.push(began.elapsed());
        assert!(counts[5] > 0, "the activity table is filled: {counts:?}");
    }
    for (name, mut times) in parts {
        println!(
            "{} {name}: median {}",
            store.backend(),
            show(percentile(&mut times, 0.5))
        );
    }
    (loads, pings)
}

/// Fills the store's `install_days` (and `metrics_daily`) the way collector schema 6
/// fills them from older data:
/// each install active in the hours its sessions start and end in, its first and last
/// sighting, and its raw events' hours. About one row per session (500,000), as an app
/// with the bench's sessions would have written with each batch.
fn fill_install_days(path: &Path) -> usize {
    let conn = rusqlite::Connection::open(path).expect("open the built store");
    conn.execute("DELETE FROM install_days", [])
        .expect("empty install_days");
    let rows = conn
        .execute(
            "INSERT INTO install_days (app, day, install_id, hours) \
             SELECT app, day, install_id, sum(1 << hour) FROM ( \
               SELECT app, substr(ts, 1, 10) AS day, install_id, CAST(substr(ts, 12, 2) AS INTEGER) AS hour \
               FROM events \
               UNION SELECT app, substr(started_at, 1, 10), install_id, CAST(substr(started_at, 12, 2) AS INTEGER) \
               FROM sessions \
               UNION SELECT app, substr(ended_at, 1, 10), install_id, CAST(substr(ended_at, 12, 2) AS INTEGER) \
               FROM sessions \
               UNION SELECT app, substr(first_seen, 1, 10), install_id, CAST(substr(first_seen, 12, 2) AS INTEGER) \
               FROM installs \
               UNION SELECT app, substr(last_seen, 1, 10), install_id, CAST(substr(last_seen, 12, 2) AS INTEGER) \
               FROM installs) \
             GROUP BY app, day, install_id",
            [],
        )
        .expect("fill install_days");
    // The per-day rollups, as collector schema 6 fills them from the hourly ones.
    conn.execute_batch(&format!("DELETE FROM metrics_daily; {FILL_METRICS_DAILY}"))
        .expect("fill metrics_daily");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    rows
}

/// A fresh PostgreSQL database holding what the SQLite store at `path` holds, but raw events.
async fn copy_to_postgres(path: &Path, url: &str) -> Arc<dyn Storage> {
    let store = PostgresStorage::connect(url).await.expect("connect and migrate");
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
        .batch_execute("TRUNCATE metrics, metrics_daily, sessions, installs, totals, install_days")
        .await
        .expect("empty the tables");
    let sqlite = rusqlite::Connection::open(path).expect("open the built store");
    type Row = Vec<String>;
    let read = |sql: &str, columns: usize| -> Vec<Row> {
        let mut statement = sqlite.prepare(sql).expect("prepare");
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|index| {
                        let value: rusqlite::types::Value = row.get(index)?;
                        Ok(match value {
                            rusqlite::types::Value::Integer(n) => n.to_string(),
                            rusqlite::types::Value::Text(text) => text,
                            rusqlite::types::Value::Real(x) => x.to_string(),
                            _ => String::new(),
                        })
                    })
                    .collect::<Result<Row, _>>()
            })
            .expect("query")
            .collect::<Result<Vec<Row>, _>>()
            .expect("rows")
    };
    let tables: [(&str, usize, &str, &str); 6] = [
        (
            "SELECT hour, app, type, name, command, success, error_category, count, duration_count, duration_total_ms, \
             duration_min_ms, duration_max_ms, '{' || substr(histogram, 2, length(histogram) - 2) || '}' FROM metrics",
            13,
            "INSERT INTO metrics (hour, app, type, name, command, success, error_category, count, duration_count, \
             duration_total_ms, duration_min_ms, duration_max_ms, histogram) \
             SELECT a, b, c, d, e, f::smallint, g, h::bigint, i::bigint, j::bigint, nullif(k, '')::bigint, \
             nullif(l, '')::bigint, m::bigint[] \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
             $9::text[], $10::text[], $11::text[], $12::text[], $13::text[]) AS t(a, b, c, d, e, f, g, h, i, j, k, l, m)",
            "rollups",
        ),
        (
            "SELECT session_id, app, install_id, started_at, ended_at, duration_ms, commands_executed FROM sessions",
            7,
            "INSERT INTO sessions (session_id, app, install_id, started_at, ended_at, duration_ms, commands_executed) \
             SELECT a, b, c, d::timestamptz, e::timestamptz, f::bigint, g::bigint \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS t(a, b, c, d, e, f, g)",
            "sessions",
        ),
        (
            "SELECT app, install_id, first_seen, last_seen FROM installs",
            4,
            "INSERT INTO installs (app, install_id, first_seen, last_seen) SELECT a, b, c::timestamptz, d::timestamptz \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(a, b, c, d)",
            "installs",
        ),
        (
            "SELECT app, type, name, success, count FROM totals",
            5,
            "INSERT INTO totals (app, type, name, success, count) SELECT a, b, c, d::smallint, e::bigint \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS t(a, b, c, d, e)",
            "totals",
        ),
        (
            "SELECT hour, app, type, name, command, success, error_category, count, duration_count, duration_total_ms, \
             duration_min_ms, duration_max_ms, '{' || substr(histogram, 2, length(histogram) - 2) || '}' FROM metrics_daily",
            13,
            "INSERT INTO metrics_daily (hour, app, type, name, command, success, error_category, count, duration_count, \
             duration_total_ms, duration_min_ms, duration_max_ms, histogram) \
             SELECT a, b, c, d, e, f::smallint, g, h::bigint, i::bigint, j::bigint, nullif(k, '')::bigint, \
             nullif(l, '')::bigint, m::bigint[] \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
             $9::text[], $10::text[], $11::text[], $12::text[], $13::text[]) AS t(a, b, c, d, e, f, g, h, i, j, k, l, m)",
            "metrics_daily",
        ),
        (
            "SELECT app, day, install_id, hours FROM install_days",
            4,
            "INSERT INTO install_days (app, day, install_id, hours) SELECT a, b::date, c, d::int4 \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(a, b, c, d)",
            "install_days",
        ),
    ];
    for (select, columns, insert, name) in tables {
        let rows = read(select, columns);
        for chunk in rows.chunks(20_000) {
            let arrays: Vec<Vec<&str>> = (0..columns)
                .map(|column| chunk.iter().map(|row| row[column].as_str()).collect())
                .collect();
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = arrays
                .iter()
                .map(|array| array as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            client.execute(insert, &params).await.expect("copy rows");
        }
        println!("copied {} {name} rows", rows.len());
    }
    // VACUUM as autovacuum would after a bulk load: index-only scans need the visibility map.
    client
        .batch_execute("VACUUM ANALYZE")
        .await
        .expect("vacuum and analyze");
    Arc::new(store)
}

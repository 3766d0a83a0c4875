//! The per-day rollups on PostgreSQL (`metrics_daily`, see `storage::activity`): written
//! from each batch's and each counts-only upload's transaction, next to the hourly ones,
//! and read for charts by day or week. Kept apart from the batch's other writes so that
//! either can change on its own.

use std::collections::BTreeMap;

use tally_core::time::Period;
use tally_store::histogram::BUCKETS;
use tally_store::rollup::{Rollup, RollupKey};

use super::PostgresError;
use super::batch::saturating_i64;
use crate::storage::activity::{DailyRead, sum_by_day};

/// Upserts rows like the hourly rollups' upsert: `$1`..`$12` one array per column,
/// `$13` every row's histogram buckets one after the other.
fn upsert_sql() -> String {
    format!(
        "INSERT INTO metrics_daily AS m (hour, app, type, name, command, success, error_category, count, \
         duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram) \
         SELECT r.hour, r.app, r.type, r.name, r.command, r.success, r.error_category, r.count, r.duration_count, \
           r.duration_total_ms, r.duration_min_ms, r.duration_max_ms, \
           ($13::int8[])[((r.ord - 1) * {BUCKETS} + 1)::int : (r.ord * {BUCKETS})::int] \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int2[], $7::text[], \
           $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[]) WITH ORDINALITY \
           AS r(hour, app, type, name, command, success, error_category, count, duration_count, \
             duration_total_ms, duration_min_ms, duration_max_ms, ord) \
         ON CONFLICT (app, hour, type, name, command, success, error_category) DO UPDATE SET \
           count = m.count + excluded.count, \
           duration_count = m.duration_count + excluded.duration_count, \
           duration_total_ms = m.duration_total_ms + excluded.duration_total_ms, \
           duration_min_ms = least(m.duration_min_ms, excluded.duration_min_ms), \
           duration_max_ms = greatest(m.duration_max_ms, excluded.duration_max_ms), \
           histogram = ARRAY(SELECT coalesce(h.mine, 0) + coalesce(h.theirs, 0) \
             FROM unnest(m.histogram, excluded.histogram) WITH ORDINALITY AS h(mine, theirs, bucket) \
             ORDER BY h.bucket)"
    )
}

/// Adds `days` (rollups keyed by their day's first hour) to `metrics_daily` inside `tx`,
/// in key order (so concurrent batches lock rows in the same order).
pub(super) async fn record_daily_rollups(
    tx: &deadpool_postgres::Transaction<'_>,
    days: &BTreeMap<RollupKey, Rollup>,
) -> Result<(), PostgresError> {
    if days.is_empty() {
        return Ok(());
    }
    let keys: Vec<&RollupKey> = days.keys().collect();
    let values: Vec<&Rollup> = days.values().collect();
    let hours: Vec<String> = keys.iter().map(|key| key.hour.to_string()).collect();
    let apps: Vec<&str> = keys.iter().map(|key| key.app.as_str()).collect();
    let kinds: Vec<&str> = keys.iter().map(|key| key.kind.as_str()).collect();
    let names: Vec<&str> = keys.iter().map(|key| key.name.as_str()).collect();
    let commands: Vec<&str> = keys.iter().map(|key| key.command.as_str()).collect();
    let successes: Vec<i16> = keys.iter().map(|key| key.success as i16).collect();
    let categories: Vec<&str> = keys.iter().map(|key| key.error_category.as_str()).collect();
    let counts: Vec<i64> = values.iter().map(|rollup| saturating_i64(rollup.count)).collect();
    let duration_counts: Vec<i64> = values.iter().map(|r| saturating_i64(r.duration_count)).collect();
    let totals: Vec<i64> = values.iter().map(|r| saturating_i64(r.duration_total_ms)).collect();
    let mins: Vec<Option<i64>> = values.iter().map(|r| r.duration_min_ms.map(saturating_i64)).collect();
    let maxes: Vec<Option<i64>> = values.iter().map(|r| r.duration_max_ms.map(saturating_i64)).collect();
    let histograms: Vec<i64> = values
        .iter()
        .flat_map(|rollup| rollup.histogram.counts.map(saturating_i64))
        .collect();
    let statement = tx.prepare_cached(&upsert_sql()).await?;
    tx.execute(
        &statement,
        &[
            &hours,
            &apps,
            &kinds,
            &names,
            &commands,
            &successes,
            &categories,
            &counts,
            &duration_counts,
            &totals,
            &mins,
            &maxes,
            &histograms,
        ],
    )
    .await?;
    Ok(())
}

/// Rows of `table` (`metrics` or `metrics_daily`) of `app` with `from <= hour < to`;
/// a row without durations comes without its histogram (see `rollup_from_row`).
async fn read_rollups(
    tx: &deadpool_postgres::Transaction<'_>,
    table: &'static str,
    app: &str,
    from: String,
    to: String,
) -> Result<Vec<(RollupKey, Rollup)>, PostgresError> {
    let statement = tx
        .prepare_cached(&format!(
            "SELECT hour, app, type, name, command, success, error_category, count, duration_count, \
             duration_total_ms, duration_min_ms, duration_max_ms, CASE WHEN duration_count > 0 THEN histogram END \
             FROM {table} WHERE app = $1 AND hour >= $2 AND hour < $3"
        ))
        .await?;
    let rows = tx.query(&statement, &[&app, &from, &to]).await?;
    rows.iter().map(super::rollup_from_row).collect()
}

/// `Storage::daily_rollups`, in one repeatable-read transaction: whole days from
/// `metrics_daily`, the partial days at the ends from `metrics`.
pub(super) async fn read(
    client: &mut deadpool_postgres::Object,
    app: &str,
    period: &Period,
) -> Result<Vec<(RollupKey, Rollup)>, PostgresError> {
    let read = DailyRead::of(period);
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut rows = Vec::new();
    if let Some((first, end)) = read.days {
        rows = read_rollups(&tx, "metrics_daily", app, first.to_string(), end.to_string()).await?;
    }
    let mut hourly = Vec::new();
    for part in &read.hours {
        let (from, to) = part.hours();
        hourly.extend(read_rollups(&tx, "metrics", app, from.to_string(), to.to_string()).await?);
    }
    tx.commit().await?;
    rows.extend(sum_by_day(hourly));
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(rows)
}

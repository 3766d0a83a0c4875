//! The per-day rollups on PostgreSQL (`metrics_daily`, see `storage::activity`): written
//! from each batch's and each counts-only upload's transaction, next to the hourly ones,
//! and read for charts by day or week. The write is the hourly rollups' upsert on the
//! other table (`batch::Statements::daily_rollups`).

use tally_core::time::Period;
use tally_store::rollup::{Rollup, RollupKey};

use super::PostgresError;
use crate::storage::activity::{DailyRead, sum_by_day};

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

//! The `install_days` table on PostgreSQL: written from each batch's and each counts-only
//! upload's transaction, read for the installs active in given windows (see
//! `storage::activity`). Kept apart from the batch's other writes so that either can
//! change on its own.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;

use super::PostgresError;
use crate::storage::activity::ActivityWindow;

pub(super) const UPSERT_INSTALL_DAYS: &str = "INSERT INTO install_days AS d (app, day, install_id, hours) \
     SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::int4[]) \
     ON CONFLICT (app, day, install_id) DO UPDATE SET hours = d.hours | excluded.hours";

/// Adds `days` (per app, install and UTC day, the hours it was active in) to
/// `install_days` by `statement` ([`UPSERT_INSTALL_DAYS`]), in key order (so concurrent
/// batches lock rows in the same order).
pub(super) async fn record_install_days(
    client: &impl deadpool_postgres::GenericClient,
    statement: &tokio_postgres::Statement,
    days: &BTreeMap<(&str, &str, Date), i32>,
) -> Result<(), PostgresError> {
    if days.is_empty() {
        return Ok(());
    }
    let apps: Vec<&str> = days.keys().map(|(app, ..)| *app).collect();
    let dates: Vec<Date> = days.keys().map(|(.., day)| *day).collect();
    let install_ids: Vec<&str> = days.keys().map(|(_, install_id, _)| *install_id).collect();
    let hours: Vec<i32> = days.values().copied().collect();
    client
        .execute(statement, &[&apps, &dates, &install_ids, &hours])
        .await?;
    Ok(())
}

/// For each of `windows`: the installs of `app` active in it. A window ending after the
/// app's last sighting is an index count on `installs` (`ActivityWindow::
/// answered_by_last_seen`); any other counts the distinct installs of its days in
/// `install_days`, at hour resolution on its end days. One repeatable-read transaction.
pub(super) async fn count_installs_in(
    client: &mut deadpool_postgres::Object,
    app: &str,
    windows: &[ActivityWindow],
) -> Result<Vec<u64>, PostgresError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let latest: Option<Timestamp> = tx
        .query_one("SELECT max(last_seen) FROM installs WHERE app = $1", &[&app])
        .await?
        .try_get(0)?;
    let seen_since = tx
        .prepare_cached("SELECT count(*) FROM installs WHERE app = $1 AND last_seen >= $2")
        .await?;
    let active_in = tx
        .prepare_cached(
            "SELECT count(DISTINCT install_id) FROM install_days WHERE app = $1 AND day >= $2 AND day <= $4 \
             AND CASE WHEN day > $2 AND day < $4 THEN true WHEN day = $2 THEN hours & $3 <> 0 \
               ELSE hours & $5 <> 0 END",
        )
        .await?;
    let mut counts = Vec::with_capacity(windows.len());
    for window in windows {
        let row = if window.answered_by_last_seen(latest) {
            tx.query_one(&seen_since, &[&app, &window.start]).await?
        } else {
            tx.query_one(
                &active_in,
                &[
                    &app,
                    &window.first_day,
                    &window.first_hours,
                    &window.last_day,
                    &window.last_hours,
                ],
            )
            .await?
        };
        counts.push(row.try_get::<_, i64>(0)?.max(0) as u64);
    }
    tx.commit().await?;
    Ok(counts)
}

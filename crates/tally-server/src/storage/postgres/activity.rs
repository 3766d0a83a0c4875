//! The `install_days` table on PostgreSQL: written from each batch's and each counts-only
//! upload's transaction, read for the installs active in given windows (see
//! `storage::activity`). Kept apart from the batch's other writes so that either can
//! change on its own.

use std::collections::BTreeMap;

use jiff::civil::Date;
use tokio_postgres::types::ToSql;

use super::PostgresError;
use crate::storage::activity::ActivityWindow;

const UPSERT_INSTALL_DAYS: &str = "INSERT INTO install_days AS d (app, day, install_id, hours) \
     SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::int4[]) \
     ON CONFLICT (app, day, install_id) DO UPDATE SET hours = d.hours | excluded.hours";

/// Adds `days` (per app, install and UTC day, the hours it was active in) to
/// `install_days`, inside `tx`, in key order (so concurrent batches lock rows in the
/// same order).
pub(super) async fn record_install_days(
    tx: &deadpool_postgres::Transaction<'_>,
    days: &BTreeMap<(&str, &str, Date), i32>,
) -> Result<(), PostgresError> {
    if days.is_empty() {
        return Ok(());
    }
    let apps: Vec<&str> = days.keys().map(|(app, ..)| *app).collect();
    let dates: Vec<Date> = days.keys().map(|(.., day)| *day).collect();
    let install_ids: Vec<&str> = days.keys().map(|(_, install_id, _)| *install_id).collect();
    let hours: Vec<i32> = days.values().copied().collect();
    let statement = tx.prepare_cached(UPSERT_INSTALL_DAYS).await?;
    tx.execute(&statement, &[&apps, &dates, &install_ids, &hours]).await?;
    Ok(())
}

/// For each of `windows`: the installs of `app` active in it, in one pass over the
/// activity of the days they span, each install counted once per window.
pub(super) async fn count_installs_in(
    client: &deadpool_postgres::Object,
    app: &str,
    windows: &[ActivityWindow],
) -> Result<Vec<u64>, PostgresError> {
    let (Some(first), Some(last)) = (
        windows.iter().map(|window| window.first_day).min(),
        windows.iter().map(|window| window.last_day).max(),
    ) else {
        return Ok(Vec::new());
    };
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(app.to_owned()), Box::new(first), Box::new(last)];
    let mut flags = Vec::with_capacity(windows.len());
    for (index, window) in windows.iter().enumerate() {
        let at = params.len() + 1;
        flags.push(format!(
            "bool_or(CASE WHEN day > ${at} AND day < ${last_day} THEN true \
             WHEN day = ${at} THEN hours & ${first_hours} <> 0 \
             WHEN day = ${last_day} THEN hours & ${last_hours} <> 0 ELSE false END) AS w{index}",
            first_hours = at + 1,
            last_day = at + 2,
            last_hours = at + 3,
        ));
        params.push(Box::new(window.first_day));
        params.push(Box::new(window.first_hours));
        params.push(Box::new(window.last_day));
        params.push(Box::new(window.last_hours));
    }
    let counts: Vec<String> = (0..windows.len())
        .map(|index| format!("count(*) FILTER (WHERE w{index})"))
        .collect();
    let sql = format!(
        "SELECT {} FROM (SELECT {} FROM install_days WHERE app = $1 AND day >= $2 AND day <= $3 \
         GROUP BY install_id) AS per_install",
        counts.join(", "),
        flags.join(", ")
    );
    let statement = client.prepare_cached(&sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let row = client.query_one(&statement, &params).await?;
    let counts = (0..windows.len())
        .map(|index| row.try_get::<_, i64>(index).map(|count| count.max(0) as u64))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(counts)
}

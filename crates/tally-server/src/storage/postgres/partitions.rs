//! Monthly partitions of `events`.
//!
//! Each calendar month (UTC) of `ts` has its own partition, `events_YYYY_MM`. Writers
//! create the partitions a batch needs just before its transaction ([`ensure`]), and
//! retention detaches whole months older than the cutoff ([`detach_before`]) and drops
//! them ([`drop_detached`]) instead of deleting their rows one by one.
//!
//! There is deliberately no DEFAULT partition: creating a month's partition would then
//! have to move that month's rows out of the default one, and fail if any were there.
//! An insert whose month has no partition fails instead (SQLSTATE 23514), and the writer
//! creates the partition and retries.
//!
//! Two collectors may need the same new month at once, and `CREATE TABLE IF NOT EXISTS`
//! alone is not race-safe (both can pass the existence check, and one then fails on the
//! catalog's unique index), so creating and detaching happen under one transaction-level
//! advisory lock.

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio_postgres::{Client, GenericClient};

use super::PostgresError;

/// Advisory lock key held while partitions are created or detached ("tally-pa").
const PARTITION_LOCK: i64 = 0x7461_6c6c_792d_7061;

/// Advisory lock key held while a detached partition is counted and dropped ("tally-ex").
const EXPIRE_LOCK: i64 = 0x7461_6c6c_792d_6578;

/// What a detached partition is renamed with, so that its month can get a new partition.
const DETACHED_MARK: &str = "_expired_";

/// A calendar month in UTC: the unit of partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Month {
    year: i16,
    month: i8,
}

impl Month {
    /// The month `ts` falls in.
    pub(super) fn of(ts: Timestamp) -> Month {
        let civil = TimeZone::UTC.to_datetime(ts);
        Month {
            year: civil.year(),
            month: civil.month(),
        }
    }

    fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The partition's table name.
    pub(super) fn table(self) -> String {
        format!("events_{:04}_{:02}", self.year, self.month)
    }

    /// The month of a partition named by [`Month::table`].
    fn from_table(name: &str) -> Option<Month> {
        let (year, month) = name.strip_prefix("events_")?.rsplit_once('_')?;
        let month: i8 = month.parse().ok()?;
        let parsed = Month {
            year: year.parse().ok()?,
            month,
        };
        (parsed.table() == name && (1..=12).contains(&month)).then_some(parsed)
    }

    /// The first instant of the month as a PostgreSQL literal. PostgreSQL counts years
    /// before 1 AD as BC (jiff's year 0 is 1 BC).
    fn start_literal(self) -> String {
        if self.year >= 1 {
            format!("'{:04}-{:02}-01 00:00:00+00'", self.year, self.month)
        } else {
            format!("'{:04}-{:02}-01 00:00:00+00 BC'", 1 - i32::from(self.year), self.month)
        }
    }
}

/// Quotes an identifier for SQL.
pub(super) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The months that have a partition now.
pub(super) async fn existing(client: &impl GenericClient) -> Result<BTreeSet<Month>, PostgresError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| Month::from_table(row.get::<_, &str>(0)))
        .collect())
}

/// Creates the partitions of `months` that do not exist yet, in a transaction of its
/// own (so that an insert never holds its locks while waiting for another collector's
/// DDL).
pub(super) async fn ensure(client: &mut Client, months: &BTreeSet<Month>) -> Result<(), PostgresError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await?;
    let existing = existing(&tx).await?;
    for month in months.difference(&existing) {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ({}) TO ({})",
            quote(&month.table()),
            month.start_literal(),
            month.next().start_literal(),
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Detaches every partition that ends at or before `cutoff`'s month begins and renames
/// it out of the way. Detaching only changes the catalog, so the lock it needs on
/// `events` is held for moments; counting and dropping the rows happens afterwards in
/// [`drop_detached`], where no writer can reach them any more.
pub(super) async fn detach_before(client: &mut Client, cutoff: Timestamp) -> Result<(), PostgresError> {
    let first_kept = Month::of(cutoff);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await?;
    for month in existing(&tx).await?.into_iter().filter(|month| *month < first_kept) {
        let table = month.table();
        let mark = uuid::Uuid::new_v4().simple().to_string();
        let renamed = format!("{table}{DETACHED_MARK}{}", &mark[..8]);
        tx.batch_execute(&format!(
            "ALTER TABLE events DETACH PARTITION {table_q}; ALTER TABLE {table_q} RENAME TO {renamed_q}",
            table_q = quote(&table),
            renamed_q = quote(&renamed),
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Counts and drops every detached partition, including any a crashed run left behind;
/// returns the events they held.
pub(super) async fn drop_detached(client: &mut Client) -> Result<u64, PostgresError> {
    let pattern = format!("events\\_%{}%", DETACHED_MARK.replace('_', "\\_"));
    let tables: Vec<String> = client
        .query(
            "SELECT relname::text FROM pg_class \
             WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace AND relname LIKE $1",
            &[&pattern],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut deleted = 0;
    for table in tables {
        let tx = client.transaction().await?;
        // Another collector expiring at the same time may have dropped it already.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EXPIRE_LOCK]).await?;
        let exists: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quote(&table)])
            .await?
            .get(0);
        if exists {
            let count: i64 = tx
                .query_one(&format!("SELECT count(*) FROM {}", quote(&table)), &[])
                .await?
                .get(0);
            tx.batch_execute(&format!("DROP TABLE {}", quote(&table))).await?;
            deleted += count as u64;
        }
        tx.commit().await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_name_their_partition_and_bounds() {
        let month = Month::of("2026-12-31T23:59:59.999Z".parse().unwrap());
        assert_eq!(month.table(), "events_2026_12");
        assert_eq!(Month::from_table("events_2026_12"), Some(month));
        assert_eq!(month.start_literal(), "'2026-12-01 00:00:00+00'");
        assert_eq!(month.next().start_literal(), "'2027-01-01 00:00:00+00'");
        assert_eq!(Month::of("2027-01-01T00:00:00Z".parse().unwrap()), month.next());
        assert_eq!(Month::from_table("events_2026_12_expired_0a1b2c3d"), None);
        assert_eq!(Month::from_table("events_2026_13"), None);
        let early = Month { year: 0, month: 1 };
        assert_eq!(early.start_literal(), "'0001-01-01 00:00:00+00 BC'");
        assert_eq!(Month::from_table(&early.table()), Some(early));
    }
}

//! Install activity per day, and rollups summed per day: what both backends share.
//!
//! The per-day rollups (`metrics_daily`: the columns of `metrics`, keyed by the day's
//! first hour) are written with the hourly ones, in the same transaction, so a chart by
//! day or week reads one row per day and key instead of 24; the partial days at a
//! period's ends still come from the hourly rows ([`DailyRead`]).
//!
//! The collector keeps, per app, UTC day and install, which hours of the day the install
//! sent events in (`install_days`: a 24-bit mask, bit `h` for the hour starting at
//! `h:00`). A counts-only upload marks its day's first hour, where its counts land in the
//! rollups. So "installs active in a period" is an exact count for any period made of
//! whole hours, and a period that is not counts every hour it overlaps, as the rollups
//! do. [`ActivityWindow`] turns a period into the days and hour masks a query compares.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use tally_core::Event;
use tally_core::time::{HourKey, Period};
use tally_store::rollup::{Rollup, RollupKey};

/// Every hour of a day.
pub const ALL_HOURS: i32 = (1 << 24) - 1;

/// The UTC day and hour of day of `ts`.
fn day_and_hour(ts: Timestamp) -> (Date, i8) {
    let zoned = ts.to_zoned(jiff::tz::TimeZone::UTC);
    (zoned.date(), zoned.hour())
}

/// The bit of `hour` in a day's mask.
fn hour_bit(hour: i8) -> i32 {
    1 << i32::from(hour.clamp(0, 23))
}

/// The activity `events` show: per (app, install id, UTC day), the mask of the hours they
/// fall in.
pub fn install_days<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<(&'a str, &'a str, Date), i32> {
    let mut days: BTreeMap<(&str, &str, Date), i32> = BTreeMap::new();
    for event in events {
        let (day, hour) = day_and_hour(event.ts);
        *days
            .entry((event.app.as_str(), event.install_id.as_str(), day))
            .or_default() |= hour_bit(hour);
    }
    days
}

/// The mask a counts-only upload of a day sets: the day's first hour, where its counts
/// land in the rollups.
pub const COUNTS_HOURS: i32 = 1;

/// A period as the activity table sees it: the days it touches, and on its first and last
/// day the hours it overlaps. A day strictly between them counts whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityWindow {
    /// The start of the first hour the period overlaps.
    pub start: Timestamp,
    /// The end of the last hour it overlaps.
    pub end: Timestamp,
    /// The first day.
    pub first_day: Date,
    /// The hours of the first day in the period (all of them when it is the last too).
    pub first_hours: i32,
    /// The last day.
    pub last_day: Date,
    /// The hours of the last day in the period.
    pub last_hours: i32,
}

impl ActivityWindow {
    /// The window covering every hour `period` overlaps.
    pub fn of(period: &Period) -> ActivityWindow {
        let (from, to) = period.hours();
        let last = HourKey::of(
            to.start()
                .checked_sub(jiff::SignedDuration::from_hours(1))
                .unwrap_or(to.start()),
        );
        let (first_day, first_hour) = day_and_hour(from.start());
        let (last_day, last_hour) = day_and_hour(last.start().max(from.start()));
        // Hours from `first_hour` to 23, and from 0 to `last_hour`.
        let from_mask = ALL_HOURS & !(hour_bit(first_hour) - 1);
        let to_mask = (hour_bit(last_hour) << 1) - 1;
        let (start, end) = (from.start(), to.start());
        if first_day == last_day {
            ActivityWindow {
                start,
                end,
                first_day,
                first_hours: from_mask & to_mask,
                last_day,
                last_hours: from_mask & to_mask,
            }
        } else {
            ActivityWindow {
                start,
                end,
                first_day,
                first_hours: from_mask,
                last_day,
                last_hours: to_mask,
            }
        }
    }

    /// Whether the installs table alone answers this window: when no install of the app
    /// was seen at or after the window's end (`latest` is the app's last sighting), an
    /// install was active in it exactly when its last sighting is at or after the
    /// window's start, since `install_days` holds the hour of every sighting. The
    /// dashboard's windows end at the next whole hour, so it counts them by index.
    pub fn answered_by_last_seen(&self, latest: Option<Timestamp>) -> bool {
        latest.is_none_or(|latest| latest < self.end)
    }

    /// Whether an install active in `hours` of `day` was active in the window.
    pub fn contains(&self, day: Date, hours: i32) -> bool {
        if day < self.first_day || day > self.last_day {
            false
        } else if day == self.first_day {
            hours & self.first_hours != 0
        } else if day == self.last_day {
            hours & self.last_hours != 0
        } else {
            hours != 0
        }
    }
}

/// The first hour of the UTC day holding `hour`: the key of that day's rollup rows.
pub fn day_hour(hour: HourKey) -> HourKey {
    super::counts_hour(hour.start().to_zoned(jiff::tz::TimeZone::UTC).date())
}

/// Rollup rows summed per UTC day, keyed by the day's first hour, in key order: what
/// [`super::Storage::daily_rollups`] answers, computed from hourly rows in Rust. Tests
/// check each backend against it.
pub fn sum_by_day(rows: impl IntoIterator<Item = (RollupKey, Rollup)>) -> Vec<(RollupKey, Rollup)> {
    let mut days: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    for (mut key, rollup) in rows {
        key.hour = day_hour(key.hour);
        days.entry(key).or_default().merge(&rollup);
    }
    days.into_iter().collect()
}

/// Hourly rollups moved to their days' keys, for the per-day table.
pub fn to_days(rollups: &BTreeMap<RollupKey, Rollup>) -> BTreeMap<RollupKey, Rollup> {
    sum_by_day(rollups.iter().map(|(key, rollup)| (key.clone(), rollup.clone())))
        .into_iter()
        .collect()
}

/// How a period is read for [`super::Storage::daily_rollups`]: the whole UTC days it
/// covers come from the per-day table, the hours before the first and after the last
/// whole day from the hourly rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRead {
    /// Whole days, first and after-last (keys `YYYY-MM-DDT00`), when there are any.
    pub days: Option<(HourKey, HourKey)>,
    /// The hourly parts, at most two.
    pub hours: Vec<Period>,
}

impl DailyRead {
    /// The split of every hour `period` overlaps.
    pub fn of(period: &Period) -> DailyRead {
        let (from, to) = period.hours();
        let first_whole = if day_hour(from) == from {
            from
        } else {
            next_day(day_hour(from))
        };
        let end_whole = day_hour(to);
        let span = |a: HourKey, b: HourKey| {
            (a < b).then_some(Period {
                from: a.start(),
                to: b.start(),
            })
        };
        if first_whole > end_whole {
            // Within one day: hours only.
            return DailyRead {
                days: None,
                hours: span(from, to).into_iter().collect(),
            };
        }
        DailyRead {
            days: (first_whole < end_whole).then_some((first_whole, end_whole)),
            hours: [span(from, first_whole), span(end_whole, to)]
                .into_iter()
                .flatten()
                .collect(),
        }
    }
}

/// The first hour of the day after the one `day` starts.
fn next_day(day: HourKey) -> HourKey {
    HourKey::of(
        day.start()
            .checked_add(jiff::SignedDuration::from_hours(24))
            .unwrap_or(day.start()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        tally_core::time::parse(text).unwrap()
    }

    fn window(from: &str, to: &str) -> ActivityWindow {
        ActivityWindow::of(&Period {
            from: at(from),
            to: at(to),
        })
    }

    #[test]
    fn a_period_reads_whole_days_daily_and_its_ends_hourly() {
        let hour = |text: &str| text.parse::<HourKey>().unwrap();
        let period = |from: &str, to: &str| Period {
            from: at(from),
            to: at(to),
        };
        let hours = |from: &str, to: &str| Period {
            from: hour(from).start(),
            to: hour(to).start(),
        };
        // 30 days to 09:00: 29 whole days between two partial ones.
        let read = DailyRead::of(&period("2026-11-01T09:00:00Z", "2026-12-01T09:00:00Z"));
        assert_eq!(read.days, Some((hour("2026-11-02T00"), hour("2026-12-01T00"))));
        assert_eq!(
            read.hours,
            [
                hours("2026-11-01T09", "2026-11-02T00"),
                hours("2026-12-01T00", "2026-12-01T09")
            ]
        );
        // Midnight to midnight: days only.
        let read = DailyRead::of(&period("2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z"));
        assert_eq!(read.days, Some((hour("2026-11-01T00"), hour("2026-11-08T00"))));
        assert!(read.hours.is_empty());
        // Within a day, or across one midnight: hours only.
        let read = DailyRead::of(&period("2026-11-01T09:30:00Z", "2026-11-01T15:00:00Z"));
        assert_eq!(
            (read.days, read.hours),
            (None, vec![hours("2026-11-01T09", "2026-11-01T15")])
        );
        let read = DailyRead::of(&period("2026-11-01T09:00:00Z", "2026-11-02T05:00:00Z"));
        assert_eq!(read.days, None);
        assert_eq!(
            read.hours,
            [
                hours("2026-11-01T09", "2026-11-02T00"),
                hours("2026-11-02T00", "2026-11-02T05")
            ]
        );
    }

    #[test]
    fn a_window_covers_the_hours_its_period_overlaps() {
        let day = |text: &str| text.parse::<Date>().unwrap();
        // Within one day: 10:00 to 12:00 is hours 10 and 11.
        let w = window("2026-11-20T10:00:00Z", "2026-11-20T12:00:00Z");
        assert_eq!((w.first_day, w.last_day), (day("2026-11-20"), day("2026-11-20")));
        assert_eq!(w.first_hours, 0b1100_0000_0000);
        // A part of an hour counts the whole hour, as in the rollups.
        let w = window("2026-11-20T10:30:00Z", "2026-11-20T10:31:00Z");
        assert_eq!(w.first_hours, 1 << 10);
        // Across days: from 22:00 to 02:00 the next day.
        let w = window("2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z");
        assert_eq!(w.first_hours, (1 << 22) | (1 << 23));
        assert_eq!(w.last_hours, 0b11);
        assert!(w.contains(day("2026-11-21"), 1 << 1));
        assert!(!w.contains(day("2026-11-21"), 1 << 2));
        assert!(!w.contains(day("2026-11-20"), 1 << 21));
        // Whole days: midnight to midnight, every hour of each.
        let w = window("2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z");
        assert_eq!((w.first_day, w.last_day), (day("2026-11-01"), day("2026-11-07")));
        assert_eq!((w.first_hours, w.last_hours), (ALL_HOURS, ALL_HOURS));
        assert!(w.contains(day("2026-11-04"), 1 << 5));
        assert!(!w.contains(day("2026-11-08"), ALL_HOURS));
        assert!(!w.contains(day("2026-10-31"), ALL_HOURS));
    }
}

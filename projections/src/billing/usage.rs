//! Usage: daily rows per account, category and currency, and their summaries into Twilio's
//! Usage Records (pure), plus the queries of `usage_daily`.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection};
use time::{Date, Month};

use super::rating::{CALLS, CALLS_INBOUND, CALLS_OUTBOUND};
use crate::projection::{sql, ProjectionError};

/// One row of `usage_daily`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub account_sid: String,
    pub category: String,
    pub day: Date,
    pub currency: String,
    pub count: u64,
    pub minutes: u64,
    pub price_micros: i64,
}

/// How usage is grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    AllTime,
    Daily,
    Monthly,
    Yearly,
}

/// Usage of one category over one period, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub category: String,
    pub start_date: Date,
    pub end_date: Date,
    pub currency: String,
    /// Calls.
    pub count: u64,
    /// Billable minutes.
    pub minutes: u64,
    pub price_micros: i64,
}

fn month_end(date: Date) -> Date {
    let last = time::util::days_in_month(date.month(), date.year());
    date.replace_day(last).unwrap_or(date)
}

fn year_end(date: Date) -> Date {
    Date::from_calendar_date(date.year(), Month::December, 31).unwrap_or(date)
}

/// The periods of `granularity` covering `start..=end`, clipped to it.
pub fn periods(granularity: Granularity, start: Date, end: Date) -> Vec<(Date, Date)> {
    if end < start {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut from = start;
    loop {
        let until = match granularity {
            Granularity::AllTime => end,
            Granularity::Daily => from,
            Granularity::Monthly => month_end(from),
            Granularity::Yearly => year_end(from),
        }
        .min(end);
        out.push((from, until));
        match until.next_day() {
            Some(next) if until < end => from = next,
            _ => break,
        }
    }
    out
}

/// Whether a row of `row_category` counts towards `category` (`calls` rolls up `calls-*`).
fn counts_towards(category: &str, row_category: &str) -> bool {
    row_category == category
        || row_category
            .strip_prefix(category)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// Summarises daily usage rows into records per period and category, Twilio style: every
/// known call category appears (zero when unused) unless `category` picks one; `calls` is the
/// sum of its `calls-*` children. Periods ascend; categories are alphabetical.
pub fn summarize_usage(
    rows: &[UsageRow],
    granularity: Granularity,
    start: Date,
    end: Date,
    category: Option<&str>,
    default_currency: &str,
) -> Vec<UsageRecord> {
    let categories: BTreeSet<String> = match category {
        Some(c) => BTreeSet::from([c.to_owned()]),
        None => [CALLS, CALLS_INBOUND, CALLS_OUTBOUND]
            .into_iter()
            .map(str::to_owned)
            .chain(rows.iter().map(|r| r.category.clone()))
            .collect(),
    };
    let mut out = Vec::new();
    for (from, until) in periods(granularity, start, end) {
        for category in &categories {
            let mut by_currency: BTreeMap<&str, (u64, u64, i64)> = BTreeMap::new();
            for row in rows.iter().filter(|r| {
                r.day >= from && r.day <= until && counts_towards(category, &r.category)
            }) {
                let sums = by_currency.entry(&row.currency).or_default();
                sums.0 += row.count;
                sums.1 += row.minutes;
                sums.2 = sums.2.saturating_add(row.price_micros);
            }
            if by_currency.is_empty() {
                by_currency.insert(default_currency, (0, 0, 0));
            }
            for (currency, (count, minutes, price_micros)) in by_currency {
                out.push(UsageRecord {
                    category: category.clone(),
                    start_date: from,
                    end_date: until,
                    currency: currency.to_owned(),
                    count,
                    minutes,
                    price_micros,
                });
            }
        }
    }
    out
}

/// `YYYY-MM-DD`.
pub fn format_day(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(value: &str) -> Option<Date> {
    let mut parts = value.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if value.len() != 10 {
        return None;
    }
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// Daily usage rows of an account between two days (inclusive), any category.
pub fn usage_rows(
    conn: &Connection,
    account_sid: &str,
    start: Date,
    end: Date,
) -> Result<Vec<UsageRow>, ProjectionError> {
    let raw = conn
        .prepare_cached(
            "SELECT account_sid, category, day, currency, count, minutes, price_micros
             FROM usage_daily WHERE account_sid = ?1 AND day >= ?2 AND day <= ?3
             ORDER BY day, category, currency",
        )
        .and_then(|mut s| {
            s.query_map(
                params![account_sid, format_day(start), format_day(end)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u64>(4)?,
                        r.get::<_, u64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql("reading usage"))?;
    raw.into_iter()
        .map(
            |(account_sid, category, day, currency, count, minutes, price_micros)| {
                Ok(UsageRow {
                    day: parse_day(&day).ok_or_else(|| ProjectionError::CorruptRow {
                        table: "usage_daily",
                        message: format!("bad day {day:?}"),
                    })?,
                    account_sid,
                    category,
                    currency,
                    count,
                    minutes,
                    price_micros,
                })
            },
        )
        .collect()
}

/// The first day the account has usage on.
pub fn first_usage_day(
    conn: &Connection,
    account_sid: &str,
) -> Result<Option<Date>, ProjectionError> {
    let day: Option<String> = conn
        .query_row(
            "SELECT MIN(day) FROM usage_daily WHERE account_sid = ?1",
            [account_sid],
            |r| r.get(0),
        )
        .map_err(sql("reading usage"))?;
    Ok(day.and_then(|d| parse_day(&d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn periods_cover_the_range() {
        assert_eq!(
            periods(
                Granularity::Monthly,
                date!(2025 - 01 - 30),
                date!(2025 - 03 - 02)
            ),
            vec![
                (date!(2025 - 01 - 30), date!(2025 - 01 - 31)),
                (date!(2025 - 02 - 01), date!(2025 - 02 - 28)),
                (date!(2025 - 03 - 01), date!(2025 - 03 - 02)),
            ]
        );
        assert_eq!(
            periods(
                Granularity::Daily,
                date!(2025 - 01 - 01),
                date!(2025 - 01 - 03)
            )
            .len(),
            3
        );
        assert_eq!(
            periods(
                Granularity::AllTime,
                date!(2025 - 01 - 01),
                date!(2025 - 06 - 03)
            ),
            vec![(date!(2025 - 01 - 01), date!(2025 - 06 - 03))]
        );
        assert!(periods(
            Granularity::Yearly,
            date!(2025 - 01 - 02),
            date!(2025 - 01 - 01)
        )
        .is_empty());
    }

    #[test]
    fn usage_rolls_calls_up_from_children() {
        let row = |category: &str, day, minutes, price| UsageRow {
            account_sid: "AC1".into(),
            category: category.into(),
            day,
            currency: "USD".into(),
            count: 1,
            minutes,
            price_micros: price,
        };
        let rows = [
            row(CALLS_INBOUND, date!(2025 - 01 - 01), 2, 17_000),
            row(CALLS_OUTBOUND, date!(2025 - 01 - 02), 1, 14_000),
            row(CALLS_INBOUND, date!(2025 - 01 - 02), 1, 8_500),
        ];
        let all = summarize_usage(
            &rows,
            Granularity::AllTime,
            date!(2025 - 01 - 01),
            date!(2025 - 01 - 31),
            None,
            "USD",
        );
        let find = |c: &str| all.iter().find(|r| r.category == c).unwrap();
        assert_eq!(
            (
                find(CALLS).count,
                find(CALLS).minutes,
                find(CALLS).price_micros
            ),
            (3, 4, 39_500)
        );
        assert_eq!(
            (find(CALLS_INBOUND).count, find(CALLS_INBOUND).minutes),
            (2, 3)
        );
        assert_eq!(find(CALLS_OUTBOUND).price_micros, 14_000);
        let daily = summarize_usage(
            &rows,
            Granularity::Daily,
            date!(2025 - 01 - 01),
            date!(2025 - 01 - 03),
            Some(CALLS),
            "USD",
        );
        assert_eq!(
            daily.iter().map(|r| r.minutes).collect::<Vec<_>>(),
            vec![2, 2, 0]
        );
        assert!(!counts_towards(CALLS, "callsx"));
        assert!(counts_towards(CALLS_INBOUND, "calls-inbound-local"));
    }

    #[test]
    fn days_parse_strictly() {
        assert_eq!(parse_day("2025-02-28"), Some(date!(2025 - 02 - 28)));
        assert_eq!(format_day(date!(2025 - 02 - 08)), "2025-02-08");
        for bad in ["2025-02-30", "2025-2-8", "x", "2025-02-28T00", ""] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}

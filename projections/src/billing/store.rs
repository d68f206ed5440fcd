//! The billing tables: published rates, one row per call leg, daily usage. Their columns are
//! documented for billing teams' SQL in docs/billing.md.

use dialtone_events::payload::Direction;
use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use super::rating::{LegCharge, PublishedRates, RateTable};
use super::usage::{format_day, parse_day};
use crate::calls::parse_direction;
use crate::projection::{load_time, load_time_opt, sql, store_time, ProjectionError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS billing_rates (
    rate_sid       TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    account_sid    TEXT    NOT NULL,
    effective_from TEXT    NOT NULL,
    published_at   TEXT    NOT NULL,
    currency       TEXT    NOT NULL,
    prices         TEXT    NOT NULL,
    prefix_prices  TEXT    NOT NULL,
    PRIMARY KEY (rate_sid, sequence)
);
CREATE TABLE IF NOT EXISTS billing_legs (
    call_sid          TEXT PRIMARY KEY,
    account_sid       TEXT NOT NULL,
    direction         TEXT NOT NULL,
    destination       TEXT,
    state             TEXT NOT NULL,
    answered_at       TEXT,
    answered_ms       INTEGER,
    category          TEXT,
    billable_minutes  INTEGER,
    per_minute_micros INTEGER,
    price_micros      INTEGER,
    currency          TEXT,
    usage_day         TEXT,
    rated_by          TEXT,
    closed_at         TEXT
);
CREATE INDEX IF NOT EXISTS billing_legs_by_account ON billing_legs (account_sid, usage_day);
CREATE TABLE IF NOT EXISTS usage_daily (
    account_sid  TEXT    NOT NULL,
    category     TEXT    NOT NULL,
    day          TEXT    NOT NULL,
    currency     TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    minutes      INTEGER NOT NULL,
    price_micros INTEGER NOT NULL,
    PRIMARY KEY (account_sid, category, day, currency)
);
";

/// State of a leg in `billing_legs`.
pub const LEG_OPEN: &str = "open";
pub const LEG_BILLED: &str = "billed";
pub const LEG_UNBILLED: &str = "unbilled";

/// A leg as `billing_legs` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingLeg {
    pub call_sid: String,
    pub account_sid: String,
    pub direction: Direction,
    /// The dialed number (the called number for inbound legs).
    pub destination: Option<String>,
    /// [`LEG_OPEN`], [`LEG_BILLED`] or [`LEG_UNBILLED`].
    pub state: &'static str,
    pub answered_at: Option<OffsetDateTime>,
    pub answered_ms: Option<u64>,
    /// Set once billed.
    pub charge: Option<LegCharge>,
    /// Currency of the leg once closed (the charge's, or the configured one if unbilled).
    pub currency: Option<String>,
    pub usage_day: Option<time::Date>,
    pub closed_at: Option<OffsetDateTime>,
}

fn leg_state(value: &str) -> Option<&'static str> {
    [LEG_OPEN, LEG_BILLED, LEG_UNBILLED]
        .into_iter()
        .find(|s| *s == value)
}

const LEG_COLUMNS: &str = "call_sid, account_sid, direction, destination, state, answered_at,
    answered_ms, category, billable_minutes, per_minute_micros, price_micros, currency,
    usage_day, rated_by, closed_at";

fn corrupt(message: String) -> ProjectionError {
    ProjectionError::CorruptRow {
        table: "billing_legs",
        message,
    }
}

type RawLeg = (
    (String, String, String, Option<String>, String),
    (Option<String>, Option<u64>),
    (Option<String>, Option<u64>, Option<i64>, Option<i64>),
    (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
);

fn read_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawLeg> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
        (r.get(5)?, r.get(6)?),
        (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
        (r.get(11)?, r.get(12)?, r.get(13)?, r.get(14)?),
    ))
}

fn to_leg(raw: RawLeg) -> Result<BillingLeg, ProjectionError> {
    let (
        (call_sid, account_sid, direction, destination, state),
        (answered_at, answered_ms),
        (category, minutes, per_minute, price),
        (currency, day, rated_by, closed_at),
    ) = raw;
    let charge = match (
        category,
        minutes,
        per_minute,
        price,
        currency.clone(),
        rated_by,
    ) {
        (
            Some(category),
            Some(minutes),
            Some(per_minute_micros),
            Some(price_micros),
            Some(currency),
            Some(rated_by),
        ) => Some(LegCharge {
            category,
            minutes,
            per_minute_micros,
            price_micros,
            currency,
            rated_by,
        }),
        _ => None,
    };
    Ok(BillingLeg {
        direction: parse_direction(&direction)
            .ok_or_else(|| corrupt(format!("unknown direction {direction:?}")))?,
        state: leg_state(&state).ok_or_else(|| corrupt(format!("unknown state {state:?}")))?,
        call_sid,
        account_sid,
        destination,
        answered_at: load_time_opt("billing_legs", answered_at)?,
        answered_ms,
        charge,
        currency,
        usage_day: match day {
            Some(d) => Some(parse_day(&d).ok_or_else(|| corrupt(format!("bad day {d:?}")))?),
            None => None,
        },
        closed_at: load_time_opt("billing_legs", closed_at)?,
    })
}

/// A leg's billing.
pub fn get_leg(conn: &Connection, call_sid: &str) -> Result<Option<BillingLeg>, ProjectionError> {
    conn.prepare_cached(&format!(
        "SELECT {LEG_COLUMNS} FROM billing_legs WHERE call_sid = ?1"
    ))
    .and_then(|mut s| s.query_row([call_sid], read_raw).optional())
    .map_err(sql("reading a billing leg"))?
    .map(to_leg)
    .transpose()
}

/// Every leg (of one account, if given), by call SID: what reconciliation compares.
pub fn list_legs(
    conn: &Connection,
    account_sid: Option<&str>,
) -> Result<Vec<BillingLeg>, ProjectionError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LEG_COLUMNS} FROM billing_legs WHERE ?1 IS NULL OR account_sid = ?1
             ORDER BY call_sid"
        ))
        .map_err(sql("listing billing legs"))?;
    let raw = stmt
        .query_map([account_sid], read_raw)
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql("listing billing legs"))?;
    raw.into_iter().map(to_leg).collect()
}

pub(super) fn store_leg(tx: &Connection, leg: &BillingLeg) -> Result<(), ProjectionError> {
    let charge = leg.charge.as_ref();
    tx.prepare_cached(&format!(
        "INSERT INTO billing_legs ({LEG_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (call_sid) DO UPDATE SET state = excluded.state,
            destination = excluded.destination,
            answered_at = excluded.answered_at, answered_ms = excluded.answered_ms,
            category = excluded.category, billable_minutes = excluded.billable_minutes,
            per_minute_micros = excluded.per_minute_micros, price_micros = excluded.price_micros,
            currency = excluded.currency, usage_day = excluded.usage_day,
            rated_by = excluded.rated_by, closed_at = excluded.closed_at"
    ))
    .and_then(|mut s| {
        s.execute(params![
            leg.call_sid,
            leg.account_sid,
            leg.direction.as_str(),
            leg.destination,
            leg.state,
            leg.answered_at.map(store_time),
            leg.answered_ms,
            charge.map(|c| c.category.as_str()),
            charge.map(|c| c.minutes),
            charge.map(|c| c.per_minute_micros),
            charge.map(|c| c.price_micros),
            leg.currency,
            leg.usage_day.map(format_day),
            charge.map(|c| c.rated_by.as_str()),
            leg.closed_at.map(store_time),
        ])
    })
    .map_err(sql("writing a billing leg"))?;
    Ok(())
}

/// Stores a published table (idempotent).
pub(super) fn store_published(
    tx: &Connection,
    rates: &PublishedRates,
) -> Result<(), ProjectionError> {
    let prices =
        serde_json::to_string(&rates.table.per_minute_micros).unwrap_or_else(|_| "{}".to_owned());
    let prefix_prices =
        serde_json::to_string(&rates.table.by_prefix).unwrap_or_else(|_| "{}".to_owned());
    tx.prepare_cached(
        "INSERT INTO billing_rates (rate_sid, sequence, account_sid, effective_from, published_at,
            currency, prices, prefix_prices)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            rates.rate_sid,
            rates.sequence,
            rates.account_sid,
            store_time(rates.effective_from),
            store_time(rates.published_at),
            rates.table.currency,
            prices,
            prefix_prices
        ])
    })
    .map_err(sql("storing published rates"))?;
    Ok(())
}

/// Every published table, oldest effective first.
pub fn load_published(conn: &Connection) -> Result<Vec<PublishedRates>, ProjectionError> {
    type Raw = (String, u64, String, String, String, String, String, String);
    let raw: Vec<Raw> = conn
        .prepare_cached(
            "SELECT rate_sid, sequence, account_sid, effective_from, published_at, currency,
                prices, prefix_prices
             FROM billing_rates ORDER BY effective_from, published_at, rate_sid, sequence",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql("reading published rates"))?;
    raw.into_iter()
        .map(
            |(
                rate_sid,
                sequence,
                account_sid,
                effective_from,
                published_at,
                currency,
                prices,
                prefix_prices,
            )| {
                let bad = |e: serde_json::Error| ProjectionError::CorruptRow {
                    table: "billing_rates",
                    message: format!("prices of {rate_sid}/{sequence}: {e}"),
                };
                Ok(PublishedRates {
                    effective_from: load_time("billing_rates", &effective_from)?,
                    published_at: load_time("billing_rates", &published_at)?,
                    table: RateTable {
                        currency,
                        per_minute_micros: serde_json::from_str(&prices).map_err(bad)?,
                        by_prefix: serde_json::from_str(&prefix_prices).map_err(bad)?,
                    },
                    account_sid,
                    rate_sid,
                    sequence,
                })
            },
        )
        .collect()
}

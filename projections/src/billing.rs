//! Billing: per-leg rating and daily usage.
//!
//! Rules (pure functions below, tested without storage):
//! - each call leg bills separately; a leg bills only if it was answered;
//! - billable minutes = ceil(answered ms / 60 000), and at least one minute once answered
//!   (a sub-second answered call bills one minute);
//! - category by direction: `calls-inbound` for inbound legs, `calls-outbound` for
//!   outbound-api and outbound-dial legs; `calls` is the rollup of its children, computed
//!   at query time ([`summarize_usage`]);
//! - the per-minute price comes from the published rate table in force at answer time (the
//!   one with the latest `effective_from` not after it; equal dates: the later published), or
//!   from the configured [`RateTable`] when none is in force or it lacks the category;
//! - money is integer micro-units of a currency, never floats. Display helpers format Twilio's
//!   strings: a Call's `price` is negative with 5 decimals, a usage record's is positive.
//!
//! Determinism: prices depend on the events and on the configured rate table. Changing the
//! configured table changes what a rebuild produces for calls rated with it; publish rates
//! as `dialtone.rate.published` events to keep history reproducible.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dialtone_events::payload::{Direction, RatePublished};
use dialtone_events::{Payload, RecordedEvent};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime};

use crate::calls::parse_direction;
use crate::projection::{
    decode, load_time, load_time_opt, sql, store_time, Projection, ProjectionError,
};

/// The rollup category of all call legs.
pub const CALLS: &str = "calls";
pub const CALLS_INBOUND: &str = "calls-inbound";
pub const CALLS_OUTBOUND: &str = "calls-outbound";

/// Per-minute prices by usage category, in micro-units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateTable {
    /// ISO 4217, uppercase.
    pub currency: String,
    pub per_minute_micros: BTreeMap<String, i64>,
}

impl Default for RateTable {
    /// Twilio's US list prices: inbound local $0.0085/min, outbound $0.0140/min.
    fn default() -> RateTable {
        RateTable {
            currency: "USD".to_owned(),
            per_minute_micros: BTreeMap::from([
                (CALLS_INBOUND.to_owned(), 8_500),
                (CALLS_OUTBOUND.to_owned(), 14_000),
            ]),
        }
    }
}

/// The usage category of a leg.
pub fn category_for(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => CALLS_INBOUND,
        Direction::OutboundApi | Direction::OutboundDial => CALLS_OUTBOUND,
    }
}

/// Minutes billed for a leg: none if never answered; otherwise every started minute, and
/// at least one.
pub fn billable_minutes(answered: bool, answered_ms: u64) -> u64 {
    if !answered {
        return 0;
    }
    answered_ms.div_ceil(60_000).max(1)
}

/// A rate table published on the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRates {
    pub rate_sid: String,
    pub sequence: u64,
    pub effective_from: OffsetDateTime,
    /// Envelope time of the `rate.published` event.
    pub published_at: OffsetDateTime,
    pub table: RateTable,
}

impl PublishedRates {
    fn order_key(&self) -> (OffsetDateTime, OffsetDateTime, &str, u64) {
        (
            self.effective_from,
            self.published_at,
            &self.rate_sid,
            self.sequence,
        )
    }
}

/// A per-minute price and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinutePrice {
    pub per_minute_micros: i64,
    pub currency: String,
    /// `config`, or `<RT…>/<sequence>` of the published table.
    pub rated_by: String,
}

/// The price of one minute of `category` at `at`. `published` may be in any order.
pub fn price_per_minute(
    config: &RateTable,
    published: &[PublishedRates],
    category: &str,
    at: OffsetDateTime,
) -> MinutePrice {
    let in_force = published
        .iter()
        .filter(|p| p.effective_from <= at)
        .max_by(|a, b| a.order_key().cmp(&b.order_key()));
    if let Some(rates) = in_force {
        if let Some(price) = rates.table.per_minute_micros.get(category) {
            return MinutePrice {
                per_minute_micros: *price,
                currency: rates.table.currency.clone(),
                rated_by: format!("{}/{}", rates.rate_sid, rates.sequence),
            };
        }
    }
    let price = config.per_minute_micros.get(category).copied();
    if price.is_none() {
        tracing::warn!(
            category,
            "no rate for this usage category; billing it at zero"
        );
    }
    MinutePrice {
        per_minute_micros: price.unwrap_or(0),
        currency: config.currency.clone(),
        rated_by: "config".to_owned(),
    }
}

/// What one answered leg costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegCharge {
    pub category: String,
    pub minutes: u64,
    pub per_minute_micros: i64,
    /// Positive amount charged.
    pub price_micros: i64,
    pub currency: String,
    pub rated_by: String,
}

/// Rates an answered leg.
pub fn charge_leg(
    direction: Direction,
    answered_ms: u64,
    answered_at: OffsetDateTime,
    config: &RateTable,
    published: &[PublishedRates],
) -> LegCharge {
    let category = category_for(direction);
    let minutes = billable_minutes(true, answered_ms);
    let price = price_per_minute(config, published, category, answered_at);
    LegCharge {
        category: category.to_owned(),
        minutes,
        per_minute_micros: price.per_minute_micros,
        price_micros: i64::try_from(minutes)
            .unwrap_or(i64::MAX)
            .saturating_mul(price.per_minute_micros),
        currency: price.currency,
        rated_by: price.rated_by,
    }
}

/// Formats micro-units with `decimals` (≤ 6) decimals, rounding half away from zero.
pub fn format_micros(micros: i64, decimals: u32) -> String {
    let decimals = decimals.min(6);
    let divisor = 10i128.pow(6 - decimals);
    let magnitude = i128::from(micros).abs();
    let rounded = (magnitude + divisor / 2) / divisor;
    let scale = 10i128.pow(decimals);
    let sign = if micros < 0 && rounded != 0 { "-" } else { "" };
    if decimals == 0 {
        return format!("{sign}{rounded}");
    }
    format!(
        "{sign}{}.{:0width$}",
        rounded / scale,
        rounded % scale,
        width = decimals as usize
    )
}

/// A Call's `price`: the charge as a negative decimal with 5 decimals (`-0.01700`).
pub fn format_call_price(charged_micros: i64) -> String {
    format_micros(charged_micros.saturating_neg(), 5)
}

/// A usage record's `price`: positive, 5 decimals.
pub fn format_usage_price(micros: i64) -> String {
    format_micros(micros, 5)
}

// ---------------------------------------------------------------------------------------
// usage summaries (pure)

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

// ---------------------------------------------------------------------------------------
// storage

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS billing_rates (
    rate_sid       TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    effective_from TEXT    NOT NULL,
    published_at   TEXT    NOT NULL,
    currency       TEXT    NOT NULL,
    prices         TEXT    NOT NULL,
    PRIMARY KEY (rate_sid, sequence)
);
CREATE TABLE IF NOT EXISTS billing_legs (
    call_sid          TEXT PRIMARY KEY,
    account_sid       TEXT NOT NULL,
    direction         TEXT NOT NULL,
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

/// A leg as `billing_legs` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingLeg {
    pub call_sid: String,
    pub account_sid: String,
    pub direction: Direction,
    /// [`LEG_OPEN`], [`LEG_BILLED`] or [`LEG_UNBILLED`].
    pub state: &'static str,
    pub answered_at: Option<OffsetDateTime>,
    pub answered_ms: Option<u64>,
    /// Set once billed.
    pub charge: Option<LegCharge>,
    /// Currency of the leg once closed (the charge's, or the configured one if unbilled).
    pub currency: Option<String>,
    pub usage_day: Option<Date>,
    pub closed_at: Option<OffsetDateTime>,
}

fn leg_state(value: &str) -> Option<&'static str> {
    [LEG_OPEN, LEG_BILLED, LEG_UNBILLED]
        .into_iter()
        .find(|s| *s == value)
}

/// A leg's billing, for reconciliation.
pub fn get_leg(conn: &Connection, call_sid: &str) -> Result<Option<BillingLeg>, ProjectionError> {
    type Raw = (
        [Option<String>; 4],
        Option<String>,
        Option<u64>,
        Option<String>,
        Option<u64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let raw: Option<Raw> = conn
        .prepare_cached(
            "SELECT call_sid, account_sid, direction, state, answered_at, answered_ms, category,
                billable_minutes, per_minute_micros, price_micros, currency, usage_day, rated_by,
                closed_at
             FROM billing_legs WHERE call_sid = ?1",
        )
        .and_then(|mut s| {
            s.query_row([call_sid], |r| {
                Ok((
                    [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?],
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                    r.get(13)?,
                ))
            })
            .optional()
        })
        .map_err(sql("reading a billing leg"))?;
    let Some((
        [sid, account, direction, state],
        answered_at,
        answered_ms,
        category,
        minutes,
        per_minute,
        price,
        currency,
        day,
        rated_by,
        closed_at,
    )) = raw
    else {
        return Ok(None);
    };
    let corrupt = |message: String| ProjectionError::CorruptRow {
        table: "billing_legs",
        message,
    };
    let required =
        |v: Option<String>, name: &str| v.ok_or_else(|| corrupt(format!("{name} is null")));
    let direction = required(direction, "direction")?;
    let state = required(state, "state")?;
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
    Ok(Some(BillingLeg {
        call_sid: required(sid, "call_sid")?,
        account_sid: required(account, "account_sid")?,
        direction: parse_direction(&direction)
            .ok_or_else(|| corrupt(format!("unknown direction {direction:?}")))?,
        state: leg_state(&state).ok_or_else(|| corrupt(format!("unknown state {state:?}")))?,
        answered_at: load_time_opt("billing_legs", answered_at)?,
        answered_ms,
        charge,
        currency,
        usage_day: match day {
            Some(d) => Some(parse_day(&d).ok_or_else(|| corrupt(format!("bad day {d:?}")))?),
            None => None,
        },
        closed_at: load_time_opt("billing_legs", closed_at)?,
    }))
}

fn store_leg(tx: &Connection, leg: &BillingLeg) -> Result<(), ProjectionError> {
    let charge = leg.charge.as_ref();
    tx.prepare_cached(
        "INSERT INTO billing_legs (call_sid, account_sid, direction, state, answered_at,
            answered_ms, category, billable_minutes, per_minute_micros, price_micros, currency,
            usage_day, rated_by, closed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (call_sid) DO UPDATE SET state = excluded.state,
            answered_at = excluded.answered_at, answered_ms = excluded.answered_ms,
            category = excluded.category, billable_minutes = excluded.billable_minutes,
            per_minute_micros = excluded.per_minute_micros, price_micros = excluded.price_micros,
            currency = excluded.currency, usage_day = excluded.usage_day,
            rated_by = excluded.rated_by, closed_at = excluded.closed_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            leg.call_sid,
            leg.account_sid,
            leg.direction.as_str(),
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

fn load_published(conn: &Connection) -> Result<Vec<PublishedRates>, ProjectionError> {
    let raw = conn
        .prepare_cached(
            "SELECT rate_sid, sequence, effective_from, published_at, currency, prices
             FROM billing_rates ORDER BY effective_from, published_at, rate_sid, sequence",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql("reading published rates"))?;
    raw.into_iter()
        .map(
            |(rate_sid, sequence, effective_from, published_at, currency, prices)| {
                Ok(PublishedRates {
                    effective_from: load_time("billing_rates", &effective_from)?,
                    published_at: load_time("billing_rates", &published_at)?,
                    table: RateTable {
                        currency,
                        per_minute_micros: serde_json::from_str(&prices).map_err(|e| {
                            ProjectionError::CorruptRow {
                                table: "billing_rates",
                                message: format!("prices of {rate_sid}/{sequence}: {e}"),
                            }
                        })?,
                    },
                    rate_sid,
                    sequence,
                })
            },
        )
        .collect()
}

/// Key of a `usage_daily` row: account, category, day, currency.
type UsageKey = (String, String, Date, String);

/// Projects call and rate events into `billing_legs`, `usage_daily` and `billing_rates`.
/// Legs touched in a batch and the batch's usage increments stay in memory until
/// [`Projection::before_commit`].
pub struct BillingProjection {
    config: RateTable,
    /// Published rate tables, loaded lazily from `billing_rates`; dropped whenever a table is
    /// published or a transaction rolls back.
    published: Option<Vec<PublishedRates>>,
    /// Legs of this batch in first-touch order, with whether they changed.
    legs: Vec<(BillingLeg, bool)>,
    index: HashMap<String, usize>,
    /// Usage of this batch: (count, minutes, price micros) per key.
    usage: BTreeMap<UsageKey, (u64, u64, i64)>,
}

impl BillingProjection {
    pub fn new(config: RateTable) -> BillingProjection {
        BillingProjection {
            config,
            published: None,
            legs: Vec::new(),
            index: HashMap::new(),
            usage: BTreeMap::new(),
        }
    }

    fn published(&mut self, tx: &Connection) -> Result<&[PublishedRates], ProjectionError> {
        if self.published.is_none() {
            self.published = Some(load_published(tx)?);
        }
        Ok(self.published.as_deref().unwrap_or_default())
    }

    /// The staged leg of `sid`, loading it from the table on first touch.
    fn leg(&mut self, tx: &Connection, sid: &str) -> Result<Option<usize>, ProjectionError> {
        if let Some(i) = self.index.get(sid) {
            return Ok(Some(*i));
        }
        Ok(get_leg(tx, sid)?.map(|leg| self.stage(leg, false)))
    }

    fn stage(&mut self, leg: BillingLeg, dirty: bool) -> usize {
        let i = self.legs.len();
        self.index.insert(leg.call_sid.clone(), i);
        self.legs.push((leg, dirty));
        i
    }

    /// The open leg of the event's call, if any.
    fn open_leg(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Connection,
    ) -> Result<Option<usize>, ProjectionError> {
        let event = &recorded.event;
        match self.leg(tx, &event.subject)? {
            Some(i) if self.legs[i].0.state == LEG_OPEN => Ok(Some(i)),
            Some(_) => Ok(None),
            None => {
                tracing::warn!(
                    call = %event.subject,
                    event_type = %event.event_type,
                    "call event without call.initiated; not billed"
                );
                Ok(None)
            }
        }
    }

    fn publish(
        &mut self,
        recorded: &RecordedEvent,
        rates: &RatePublished,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let prices: BTreeMap<&str, i64> = rates
            .prices
            .iter()
            .map(|p| (p.category.as_str(), p.per_minute_micros))
            .collect();
        let prices = serde_json::to_string(&prices).unwrap_or_else(|_| "{}".to_owned());
        tx.prepare_cached(
            "INSERT INTO billing_rates (rate_sid, sequence, effective_from, published_at, currency, prices)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                event.subject,
                event.sequence,
                store_time(rates.effective_from),
                store_time(event.time),
                rates.currency.to_ascii_uppercase(),
                prices
            ])
        })
        .map_err(sql("storing published rates"))?;
        self.published = None;
        Ok(())
    }

    fn complete(
        &mut self,
        i: usize,
        time: OffsetDateTime,
        answered_ms: u64,
        answered_at: Option<OffsetDateTime>,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let answered_at = self.legs[i].0.answered_at.or(answered_at).or_else(|| {
            // Answered without an answer time: count back from the end.
            (answered_ms > 0).then(|| time - Duration::milliseconds(answered_ms as i64))
        });
        let Some(answered_at) = answered_at else {
            self.close_unbilled(i, time);
            return Ok(());
        };
        let config = self.config.clone();
        let direction = self.legs[i].0.direction;
        let charge = charge_leg(
            direction,
            answered_ms,
            answered_at,
            &config,
            self.published(tx)?,
        );
        let (leg, dirty) = &mut self.legs[i];
        let day = answered_at.date();
        let usage = self
            .usage
            .entry((
                leg.account_sid.clone(),
                charge.category.clone(),
                day,
                charge.currency.clone(),
            ))
            .or_default();
        usage.0 += 1;
        usage.1 += charge.minutes;
        usage.2 = usage.2.saturating_add(charge.price_micros);
        leg.state = LEG_BILLED;
        leg.answered_at = Some(answered_at);
        leg.answered_ms = Some(answered_ms);
        leg.currency = Some(charge.currency.clone());
        leg.charge = Some(charge);
        leg.usage_day = Some(day);
        leg.closed_at = Some(time);
        *dirty = true;
        Ok(())
    }

    fn close_unbilled(&mut self, i: usize, time: OffsetDateTime) {
        let (leg, dirty) = &mut self.legs[i];
        leg.state = LEG_UNBILLED;
        leg.currency = Some(self.config.currency.clone());
        leg.closed_at = Some(time);
        *dirty = true;
    }

    fn clear(&mut self) {
        self.legs.clear();
        self.index.clear();
        self.usage.clear();
    }
}

const BILLING_TYPES: &[&str] = &[
    "dialtone.call.initiated",
    "dialtone.call.answered",
    "dialtone.call.rejected",
    "dialtone.call.completed",
    "dialtone.rate.published",
];

impl Projection for BillingProjection {
    fn name(&self) -> &'static str {
        "billing"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["billing_rates", "billing_legs", "usage_daily"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating billing"))
    }

    fn wants(&self, event_type: &str) -> bool {
        BILLING_TYPES.contains(&event_type)
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        match decode(recorded) {
            Some(Payload::CallInitiated(initiated)) => {
                let known = self.leg(tx, &event.subject)?.is_some();
                if !known {
                    self.stage(
                        BillingLeg {
                            call_sid: event.subject.clone(),
                            account_sid: event.accountsid.clone(),
                            direction: initiated.direction,
                            state: LEG_OPEN,
                            answered_at: None,
                            answered_ms: None,
                            charge: None,
                            currency: None,
                            usage_day: None,
                            closed_at: None,
                        },
                        true,
                    );
                }
            }
            Some(Payload::CallAnswered(_)) => {
                if let Some(i) = self.open_leg(recorded, tx)? {
                    let (leg, dirty) = &mut self.legs[i];
                    if leg.answered_at.is_none() {
                        leg.answered_at = Some(event.time);
                        *dirty = true;
                    }
                }
            }
            Some(Payload::CallRejected(_)) => {
                if let Some(i) = self.open_leg(recorded, tx)? {
                    self.close_unbilled(i, event.time);
                }
            }
            Some(Payload::CallCompleted(completed)) => {
                if let Some(i) = self.open_leg(recorded, tx)? {
                    self.complete(
                        i,
                        event.time,
                        completed.answered_ms,
                        completed.answered_at,
                        tx,
                    )?;
                }
            }
            Some(Payload::RatePublished(rates)) => self.publish(recorded, &rates, tx)?,
            _ => {}
        }
        Ok(())
    }

    fn before_commit(&mut self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        let result = (|| {
            for (leg, _) in self.legs.iter().filter(|(_, dirty)| *dirty) {
                store_leg(tx, leg)?;
            }
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO usage_daily (account_sid, category, day, currency, count, minutes, price_micros)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (account_sid, category, day, currency) DO UPDATE SET
                        count = count + excluded.count, minutes = minutes + excluded.minutes,
                        price_micros = price_micros + excluded.price_micros",
                )
                .map_err(sql("adding usage"))?;
            for ((account, category, day, currency), (count, minutes, price)) in &self.usage {
                upsert
                    .execute(params![
                        account,
                        category,
                        format_day(*day),
                        currency,
                        count,
                        minutes,
                        price
                    ])
                    .map_err(sql("adding usage"))?;
            }
            Ok(())
        })();
        self.clear();
        result
    }

    fn after_rollback(&mut self) {
        self.published = None;
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn minutes_round_up_and_answered_calls_bill_at_least_one() {
        assert_eq!(billable_minutes(false, 0), 0);
        assert_eq!(billable_minutes(false, 90_000), 0);
        assert_eq!(billable_minutes(true, 0), 1);
        assert_eq!(billable_minutes(true, 400), 1);
        assert_eq!(billable_minutes(true, 60_000), 1);
        assert_eq!(billable_minutes(true, 60_001), 2);
        assert_eq!(billable_minutes(true, 61_000), 2);
        assert_eq!(billable_minutes(true, 80_000), 2);
    }

    #[test]
    fn prices_format_like_twilio() {
        assert_eq!(format_call_price(17_000), "-0.01700");
        assert_eq!(format_call_price(0), "0.00000");
        assert_eq!(format_call_price(1_234_567), "-1.23457");
        assert_eq!(format_call_price(4), "0.00000");
        assert_eq!(format_call_price(5), "-0.00001");
        assert_eq!(format_usage_price(28_000), "0.02800");
        assert_eq!(format_micros(-1_500_000, 2), "-1.50");
        assert_eq!(format_micros(i64::MIN, 6), "-9223372036854.775808");
    }

    fn published(sid: &str, effective: OffsetDateTime, inbound: i64) -> PublishedRates {
        PublishedRates {
            rate_sid: sid.into(),
            sequence: 1,
            effective_from: effective,
            published_at: effective,
            table: RateTable {
                currency: "EUR".into(),
                per_minute_micros: BTreeMap::from([(CALLS_INBOUND.to_owned(), inbound)]),
            },
        }
    }

    #[test]
    fn the_rate_in_force_at_answer_time_applies() {
        let config = RateTable::default();
        let tables = [
            published("RTb", datetime!(2025-02-01 0:00 UTC), 20_000),
            published("RTa", datetime!(2025-01-01 0:00 UTC), 10_000),
        ];
        let at = |t| price_per_minute(&config, &tables, CALLS_INBOUND, t);
        assert_eq!(at(datetime!(2024-12-31 23:59 UTC)).per_minute_micros, 8_500);
        assert_eq!(at(datetime!(2024-12-31 23:59 UTC)).currency, "USD");
        assert_eq!(at(datetime!(2025-01-15 0:00 UTC)).per_minute_micros, 10_000);
        assert_eq!(at(datetime!(2025-01-15 0:00 UTC)).currency, "EUR");
        assert_eq!(at(datetime!(2025-02-01 0:00 UTC)).per_minute_micros, 20_000);
        assert_eq!(at(datetime!(2025-02-01 0:00 UTC)).rated_by, "RTb/1");
        // A category missing from the table in force falls back to the configured one.
        let outbound = price_per_minute(
            &config,
            &tables,
            CALLS_OUTBOUND,
            datetime!(2025-03-01 0:00 UTC),
        );
        assert_eq!(
            (outbound.per_minute_micros, outbound.rated_by.as_str()),
            (14_000, "config")
        );
    }

    #[test]
    fn legs_are_charged_per_started_minute() {
        let config = RateTable::default();
        let t = datetime!(2025-01-01 12:00 UTC);
        let charge = charge_leg(Direction::OutboundDial, 61_000, t, &config, &[]);
        assert_eq!(charge.category, CALLS_OUTBOUND);
        assert_eq!((charge.minutes, charge.price_micros), (2, 28_000));
        let charge = charge_leg(Direction::Inbound, 300, t, &config, &[]);
        assert_eq!(
            (
                charge.category.as_str(),
                charge.minutes,
                charge.price_micros
            ),
            (CALLS_INBOUND, 1, 8_500)
        );
    }

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

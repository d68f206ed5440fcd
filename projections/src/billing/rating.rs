//! Rating (pure): what an answered leg costs under the rate tables in force.
//!
//! - billable minutes = ceil(answered ms / 60 000), at least one once answered;
//! - category by direction: `calls-inbound` for inbound legs, `calls-outbound` for
//!   outbound-api and outbound-dial legs (`calls` is their rollup, summed at query time);
//! - the price of a minute comes from the first of these that has one: the account's own
//!   published table in force at answer time, the operator-wide table in force then, the
//!   configured [`RateTable`]. "In force" is the table with the latest `effective_from` not
//!   after the answer (equal dates: the later published), among the tables published before
//!   the leg ended: a table published later never re-prices a finished leg. Because this
//!   depends only on the events' times, not on the order a projection sees them in, a rebuild
//!   from Kafka (which orders only within a partition) prices every leg as it was priced live.
//!   Within a table, the longest destination prefix listed for the category wins, else the
//!   category's own price;
//! - money is integer micro-units, never floats; the API formats Twilio's strings.

use std::collections::BTreeMap;

use dialtone_events::payload::{Direction, RatePrice};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The rollup category of all call legs.
pub const CALLS: &str = "calls";
pub const CALLS_INBOUND: &str = "calls-inbound";
pub const CALLS_OUTBOUND: &str = "calls-outbound";

/// Per-minute prices by usage category, and by destination prefix within a category, in
/// micro-units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateTable {
    /// ISO 4217, uppercase.
    pub currency: String,
    /// The category's price for every destination no prefix below matches.
    pub per_minute_micros: BTreeMap<String, i64>,
    /// category → (E.164 prefix → price).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_prefix: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Default for RateTable {
    /// Twilio's US list prices: inbound local $0.0085/min, outbound $0.0140/min.
    fn default() -> RateTable {
        RateTable::flat("USD", [(CALLS_INBOUND, 8_500), (CALLS_OUTBOUND, 14_000)])
    }
}

impl RateTable {
    /// A table with one price per category and no prefixes.
    pub fn flat<'a>(currency: &str, prices: impl IntoIterator<Item = (&'a str, i64)>) -> RateTable {
        RateTable {
            currency: currency.to_ascii_uppercase(),
            per_minute_micros: prices
                .into_iter()
                .map(|(category, micros)| (category.to_owned(), micros))
                .collect(),
            by_prefix: BTreeMap::new(),
        }
    }

    /// A table from published prices (entries with a `prefix` go to [`RateTable::by_prefix`]).
    pub fn from_prices(currency: &str, prices: &[RatePrice]) -> RateTable {
        let mut table = RateTable::flat(currency, []);
        for price in prices {
            match &price.prefix {
                Some(prefix) => {
                    table
                        .by_prefix
                        .entry(price.category.clone())
                        .or_default()
                        .insert(prefix.clone(), price.per_minute_micros);
                }
                None => {
                    table
                        .per_minute_micros
                        .insert(price.category.clone(), price.per_minute_micros);
                }
            }
        }
        table
    }

    /// The entries as published.
    pub fn to_prices(&self) -> Vec<RatePrice> {
        let plain = self
            .per_minute_micros
            .iter()
            .map(|(category, micros)| RatePrice {
                category: category.clone(),
                per_minute_micros: *micros,
                prefix: None,
            });
        let prefixed = self.by_prefix.iter().flat_map(|(category, prefixes)| {
            prefixes.iter().map(move |(prefix, micros)| RatePrice {
                category: category.clone(),
                per_minute_micros: *micros,
                prefix: Some(prefix.clone()),
            })
        });
        plain.chain(prefixed).collect()
    }

    /// The price of a minute of `category` to `destination`: the longest listed prefix of the
    /// destination, else the category's price; `None` when the table does not price it.
    pub fn price(&self, category: &str, destination: Option<&str>) -> Option<i64> {
        let by_prefix = destination.and_then(|destination| {
            self.by_prefix.get(category).and_then(|prefixes| {
                prefixes
                    .iter()
                    .filter(|(prefix, _)| destination.starts_with(prefix.as_str()))
                    .max_by_key(|(prefix, _)| prefix.len())
                    .map(|(_, micros)| *micros)
            })
        });
        by_prefix.or_else(|| self.per_minute_micros.get(category).copied())
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
    /// The account it prices, or empty for an operator-wide table.
    pub account_sid: String,
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

    /// The `RT…/<sequence>` this table is cited as.
    pub fn citation(&self) -> String {
        format!("{}/{}", self.rate_sid, self.sequence)
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

/// The table of `account_sid` (empty: operator-wide) in force at `at`, among those
/// published by `known_by`.
pub fn table_in_force<'a>(
    published: &'a [PublishedRates],
    account_sid: &str,
    at: OffsetDateTime,
    known_by: OffsetDateTime,
) -> Option<&'a PublishedRates> {
    published
        .iter()
        .filter(|p| {
            p.account_sid == account_sid && p.effective_from <= at && p.published_at <= known_by
        })
        .max_by(|a, b| a.order_key().cmp(&b.order_key()))
}

/// One leg as rating sees it.
#[derive(Debug, Clone, Copy)]
pub struct Leg<'a> {
    pub account_sid: &'a str,
    pub direction: Direction,
    /// The dialed number (the called number for inbound legs), for prefix prices.
    pub destination: Option<&'a str>,
    pub answered_ms: u64,
    pub answered_at: OffsetDateTime,
    /// When the leg ended: tables published after it do not price it.
    pub ended_at: OffsetDateTime,
}

/// The price of one minute of `category` for `leg`. `published` may be in any order.
pub fn price_per_minute(
    config: &RateTable,
    published: &[PublishedRates],
    leg: &Leg<'_>,
    category: &str,
) -> MinutePrice {
    let account = (!leg.account_sid.is_empty())
        .then(|| table_in_force(published, leg.account_sid, leg.answered_at, leg.ended_at))
        .flatten();
    let operator = table_in_force(published, "", leg.answered_at, leg.ended_at);
    for rates in [account, operator].into_iter().flatten() {
        if let Some(price) = rates.table.price(category, leg.destination) {
            return MinutePrice {
                per_minute_micros: price,
                currency: rates.table.currency.clone(),
                rated_by: rates.citation(),
            };
        }
    }
    let price = config.price(category, leg.destination);
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

fn times(minutes: u64, per_minute_micros: i64) -> i64 {
    i64::try_from(minutes)
        .unwrap_or(i64::MAX)
        .saturating_mul(per_minute_micros)
}

/// Rates an answered leg.
pub fn charge_leg(leg: &Leg<'_>, config: &RateTable, published: &[PublishedRates]) -> LegCharge {
    let category = category_for(leg.direction);
    let minutes = billable_minutes(true, leg.answered_ms);
    let price = price_per_minute(config, published, leg, category);
    LegCharge {
        category: category.to_owned(),
        minutes,
        per_minute_micros: price.per_minute_micros,
        price_micros: times(minutes, price.per_minute_micros),
        currency: price.currency,
        rated_by: price.rated_by,
    }
}

/// What a charged leg would cost under `alternative` (re-rating): the same minutes at the
/// alternative's price for the leg's category and destination, or at the charged price when
/// the alternative does not price the category.
pub fn rerate_leg(
    charged: &LegCharge,
    destination: Option<&str>,
    alternative: &RateTable,
) -> LegCharge {
    match alternative.price(&charged.category, destination) {
        Some(per_minute_micros) => LegCharge {
            category: charged.category.clone(),
            minutes: charged.minutes,
            per_minute_micros,
            price_micros: times(charged.minutes, per_minute_micros),
            currency: alternative.currency.clone(),
            rated_by: "rerate".to_owned(),
        },
        None => charged.clone(),
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

/// Parses a non-negative decimal amount into micro-units, exactly: `"0.0085"` → 8500; more
/// than 6 decimals, signs, exponents or anything else is refused.
pub fn parse_micros(value: &str) -> Option<i64> {
    let value = value.trim();
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 6 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_micros: i64 = format!("{frac:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(frac_micros)
}

/// One price entry as operators and the API write it: a usage category (`calls-outbound`),
/// an optional E.164 destination prefix (`+44`), and an exact decimal per minute (`0.0140`).
pub fn rate_price(
    category: &str,
    prefix: Option<&str>,
    per_minute: &str,
) -> Result<RatePrice, String> {
    let category_ok = !category.is_empty()
        && category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !category_ok {
        return Err(format!(
            "{category:?} is not a usage category such as calls-outbound"
        ));
    }
    if let Some(prefix) = prefix {
        let digits = prefix.strip_prefix('+').unwrap_or("");
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{prefix:?} is not an E.164 prefix such as +44"));
        }
    }
    let per_minute_micros = parse_micros(per_minute).ok_or_else(|| {
        format!("{per_minute:?} is not an exact decimal with at most 6 decimals, such as 0.0140")
    })?;
    Ok(RatePrice {
        category: category.to_owned(),
        per_minute_micros,
        prefix: prefix.map(str::to_owned),
    })
}

/// An ISO 4217 code: three letters, returned uppercase.
pub fn parse_currency(value: &str) -> Result<String, String> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(value.to_ascii_uppercase())
    } else {
        Err(format!(
            "{value:?} is not an ISO 4217 currency code such as USD"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

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
    fn prices_format_like_twilio_and_parse_exactly() {
        assert_eq!(format_call_price(17_000), "-0.01700");
        assert_eq!(format_call_price(0), "0.00000");
        assert_eq!(format_call_price(1_234_567), "-1.23457");
        assert_eq!(format_call_price(4), "0.00000");
        assert_eq!(format_call_price(5), "-0.00001");
        assert_eq!(format_usage_price(28_000), "0.02800");
        assert_eq!(format_micros(-1_500_000, 2), "-1.50");
        assert_eq!(format_micros(i64::MIN, 6), "-9223372036854.775808");
        assert_eq!(parse_micros("0.0085"), Some(8_500));
        assert_eq!(parse_micros("12.5"), Some(12_500_000));
        assert_eq!(parse_micros(".25"), Some(250_000));
        for bad in ["0.0000001", "-1", "abc", "", "1e3", "0x10"] {
            assert_eq!(parse_micros(bad), None, "{bad}");
        }
    }

    fn published(
        sid: &str,
        account: &str,
        effective: OffsetDateTime,
        inbound: i64,
    ) -> PublishedRates {
        PublishedRates {
            rate_sid: sid.into(),
            sequence: 1,
            account_sid: account.into(),
            effective_from: effective,
            published_at: effective,
            table: RateTable::flat("EUR", [(CALLS_INBOUND, inbound)]),
        }
    }

    fn leg(
        account: &'static str,
        direction: Direction,
        to: &'static str,
        at: OffsetDateTime,
    ) -> Leg<'static> {
        Leg {
            account_sid: account,
            direction,
            destination: Some(to),
            answered_ms: 30_000,
            answered_at: at,
            ended_at: at + time::Duration::seconds(30),
        }
    }

    #[test]
    fn the_rate_in_force_at_answer_time_applies() {
        let config = RateTable::default();
        let tables = [
            published("RTb", "", datetime!(2025-02-01 0:00 UTC), 20_000),
            published("RTa", "", datetime!(2025-01-01 0:00 UTC), 10_000),
        ];
        let at = |t| {
            price_per_minute(
                &config,
                &tables,
                &leg("AC1", Direction::Inbound, "+1", t),
                CALLS_INBOUND,
            )
        };
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
            &leg(
                "AC1",
                Direction::OutboundApi,
                "+1",
                datetime!(2025-03-01 0:00 UTC),
            ),
            CALLS_OUTBOUND,
        );
        assert_eq!(
            (outbound.per_minute_micros, outbound.rated_by.as_str()),
            (14_000, "config")
        );
    }

    #[test]
    fn a_table_published_after_the_leg_ended_does_not_price_it() {
        let config = RateTable::default();
        let mut late = published("RTl", "", datetime!(2025-01-01 0:00 UTC), 30_000);
        late.published_at = datetime!(2025-03-01 0:00 UTC);
        let tables = [late];
        let before = leg(
            "AC1",
            Direction::Inbound,
            "+1",
            datetime!(2025-02-01 0:00 UTC),
        );
        assert_eq!(
            price_per_minute(&config, &tables, &before, CALLS_INBOUND).per_minute_micros,
            8_500
        );
        let after = leg(
            "AC1",
            Direction::Inbound,
            "+1",
            datetime!(2025-03-02 0:00 UTC),
        );
        assert_eq!(
            price_per_minute(&config, &tables, &after, CALLS_INBOUND).per_minute_micros,
            30_000
        );
    }

    #[test]
    fn an_account_table_beats_the_operator_table_and_the_longest_prefix_wins() {
        let config = RateTable::default();
        let mut operator = published("RTo", "", datetime!(2025-01-01 0:00 UTC), 10_000);
        operator
            .table
            .per_minute_micros
            .insert(CALLS_OUTBOUND.into(), 20_000);
        operator.table.by_prefix.insert(
            CALLS_OUTBOUND.into(),
            BTreeMap::from([("+44".to_owned(), 50_000), ("+447".to_owned(), 90_000)]),
        );
        let account = published("RTc", "AC1", datetime!(2025-01-01 0:00 UTC), 5_000);
        let tables = [operator, account];
        let t = datetime!(2025-06-01 0:00 UTC);
        let price = |account, direction, to| {
            let category = category_for(direction);
            price_per_minute(&config, &tables, &leg(account, direction, to, t), category)
        };
        assert_eq!(
            price("AC1", Direction::Inbound, "+1415").per_minute_micros,
            5_000
        );
        assert_eq!(price("AC1", Direction::Inbound, "+1415").rated_by, "RTc/1");
        assert_eq!(
            price("AC2", Direction::Inbound, "+1415").per_minute_micros,
            10_000
        );
        // The account's table has no outbound price: the operator's applies, by prefix.
        assert_eq!(
            price("AC1", Direction::OutboundDial, "+14155550100").per_minute_micros,
            20_000
        );
        assert_eq!(
            price("AC1", Direction::OutboundDial, "+442071234567").per_minute_micros,
            50_000
        );
        assert_eq!(
            price("AC1", Direction::OutboundDial, "+447700900123").per_minute_micros,
            90_000
        );
    }

    #[test]
    fn legs_are_charged_per_started_minute_and_rerated_at_the_same_minutes() {
        let config = RateTable::default();
        let t = datetime!(2025-01-01 12:00 UTC);
        let mut outbound = leg("AC1", Direction::OutboundDial, "+442071234567", t);
        outbound.answered_ms = 61_000;
        let charge = charge_leg(&outbound, &config, &[]);
        assert_eq!(charge.category, CALLS_OUTBOUND);
        assert_eq!((charge.minutes, charge.price_micros), (2, 28_000));
        let mut inbound = leg("AC1", Direction::Inbound, "+1415", t);
        inbound.answered_ms = 300;
        let charge_in = charge_leg(&inbound, &config, &[]);
        assert_eq!(
            (
                charge_in.category.as_str(),
                charge_in.minutes,
                charge_in.price_micros
            ),
            (CALLS_INBOUND, 1, 8_500)
        );
        let mut alternative = RateTable::flat("USD", [(CALLS_OUTBOUND, 10_000)]);
        alternative.by_prefix.insert(
            CALLS_OUTBOUND.into(),
            BTreeMap::from([("+44".to_owned(), 30_000)]),
        );
        let rerated = rerate_leg(&charge, outbound.destination, &alternative);
        assert_eq!((rerated.minutes, rerated.price_micros), (2, 60_000));
        // Not priced by the alternative: unchanged.
        assert_eq!(
            rerate_leg(&charge_in, inbound.destination, &alternative),
            charge_in
        );
    }
}

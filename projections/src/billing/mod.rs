//! Billing: per-leg rating and daily usage, projected from call and rate events.
//!
//! - [`rating`]: the rules (pure): billable minutes, categories, which rate table prices a
//!   leg, money as integer micro-units and its display strings;
//! - [`usage`]: usage rows and their summaries into Twilio's Usage Records;
//! - [`store`]: the `billing_rates`, `billing_legs` and `usage_daily` tables;
//! - here: [`BillingProjection`], which applies the events.
//!
//! Determinism: prices depend on the events and on the configured rate table. Changing the
//! configured table changes what a rebuild produces for calls rated with it; publish rates
//! as `dialtone.rate.published` events to keep history reproducible.

pub mod balance;
pub mod rating;
pub mod store;
pub mod usage;

use std::collections::{BTreeMap, HashMap};

use dialtone_events::payload::RatePublished;
use dialtone_events::{Payload, RecordedEvent};
use rusqlite::{params, Connection, Transaction};
use time::{Date, Duration, OffsetDateTime};

use crate::projection::{decode, sql, Projection, ProjectionError};
pub use rating::{
    billable_minutes, category_for, charge_leg, format_call_price, format_micros,
    format_usage_price, parse_currency, parse_micros, price_per_minute, rate_price, rerate_leg,
    table_in_force, Leg, LegCharge, MinutePrice, PublishedRates, RateTable, CALLS, CALLS_INBOUND,
    CALLS_OUTBOUND,
};
pub use store::{
    get_leg, list_legs, load_published, BillingLeg, LEG_BILLED, LEG_OPEN, LEG_UNBILLED,
};
use store::{store_leg, store_published, SCHEMA};
pub use usage::{
    first_usage_day, format_day, parse_day, periods, summarize_usage, usage_rows, Granularity,
    UsageRecord, UsageRow,
};

/// A `rate.published` event as a table: for the event's account (empty: operator-wide).
pub fn published_rates(recorded: &RecordedEvent, rates: &RatePublished) -> PublishedRates {
    let event = &recorded.event;
    PublishedRates {
        rate_sid: event.subject.clone(),
        sequence: event.sequence,
        account_sid: event.accountsid.clone(),
        effective_from: rates.effective_from,
        published_at: event.time,
        table: RateTable::from_prices(&rates.currency, &rates.prices),
    }
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
    /// Usage of this batch: (count, minutes, price micros) per key; a re-priced leg adds a
    /// negative increment to its old row.
    usage: BTreeMap<UsageKey, (i64, i64, i64)>,
    /// When the next number rental falls due: `None` until read, `Some(None)` when nothing
    /// is rented.
    next_rental: Option<Option<OffsetDateTime>>,
}

impl BillingProjection {
    pub fn new(config: RateTable) -> BillingProjection {
        BillingProjection {
            config,
            published: None,
            legs: Vec::new(),
            index: HashMap::new(),
            usage: BTreeMap::new(),
            next_rental: None,
        }
    }

    /// Adds `price` to the batch's usage of `category` (one item, no minutes).
    fn add_item(&mut self, account: &str, category: &str, at: OffsetDateTime, price: i64) {
        let usage = self
            .usage
            .entry((
                account.to_owned(),
                category.to_owned(),
                at.date(),
                self.config.currency.clone(),
            ))
            .or_default();
        usage.0 += 1;
        usage.2 = usage.2.saturating_add(price);
    }

    /// Charges the rental months due by the log's clock `now`.
    fn charge_rentals(
        &mut self,
        now: OffsetDateTime,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        if self.next_rental.is_none() {
            self.next_rental = Some(balance::next_due(tx)?);
        }
        if self.next_rental.flatten().is_none_or(|due| due > now) {
            return Ok(());
        }
        for mut rental in balance::due_rentals(tx, now)? {
            while rental.next_charge_at <= now {
                self.add_item(
                    &rental.account_sid,
                    balance::PHONE_NUMBERS,
                    rental.next_charge_at,
                    rental.monthly_price_micros,
                );
                rental.next_charge_at = balance::next_month(rental.next_charge_at);
            }
            balance::rent(tx, &rental)?;
        }
        self.next_rental = Some(balance::next_due(tx)?);
        Ok(())
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
        let table = published_rates(recorded, rates);
        store_published(tx, &table)?;
        self.published = None;
        self.reprice_after(&table, tx)
    }

    /// A table can arrive after legs it prices when the log orders only per partition (a
    /// rebuild from Kafka reads the rate topic after the calls topic): re-prices the billed
    /// legs it may apply to (answered from its `effective_from` on, ended after it was
    /// published), moving their usage. In log order (live, SQLite) there are none.
    fn reprice_after(
        &mut self,
        table: &PublishedRates,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        // The query below reads the table: legs staged in this batch must be in it.
        for (leg, _) in self.legs.iter().filter(|(_, dirty)| *dirty) {
            store_leg(tx, leg)?;
        }
        let sids: Vec<String> = tx
            .prepare_cached(
                "SELECT call_sid FROM billing_legs WHERE state = 'billed' AND answered_at >= ?1
                 AND closed_at >= ?2 AND (?3 = '' OR account_sid = ?3) ORDER BY call_sid",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![
                        crate::projection::store_time(table.effective_from),
                        crate::projection::store_time(table.published_at),
                        table.account_sid
                    ],
                    |r| r.get(0),
                )?
                .collect()
            })
            .map_err(sql("finding legs to re-price"))?;
        let config = self.config.clone();
        for sid in sids {
            let Some(i) = self.leg(tx, &sid)? else {
                continue;
            };
            let leg = self.legs[i].0.clone();
            let (Some(old), Some(answered_at), Some(ended_at), Some(answered_ms)) = (
                leg.charge.clone(),
                leg.answered_at,
                leg.closed_at,
                leg.answered_ms,
            ) else {
                continue;
            };
            let rating = Leg {
                account_sid: &leg.account_sid,
                direction: leg.direction,
                destination: leg.destination.as_deref(),
                answered_ms,
                answered_at,
                ended_at,
            };
            let new = charge_leg(&rating, &config, self.published(tx)?);
            if new == old {
                continue;
            }
            let day = answered_at.date();
            let minutes = |c: &LegCharge| i64::try_from(c.minutes).unwrap_or(i64::MAX);
            let was = self
                .usage
                .entry((
                    leg.account_sid.clone(),
                    old.category.clone(),
                    day,
                    old.currency.clone(),
                ))
                .or_default();
            was.0 -= 1;
            was.1 -= minutes(&old);
            was.2 = was.2.saturating_sub(old.price_micros);
            let now = self
                .usage
                .entry((
                    leg.account_sid.clone(),
                    new.category.clone(),
                    day,
                    new.currency.clone(),
                ))
                .or_default();
            now.0 += 1;
            now.1 += minutes(&new);
            now.2 = now.2.saturating_add(new.price_micros);
            let (staged, dirty) = &mut self.legs[i];
            staged.currency = Some(new.currency.clone());
            staged.charge = Some(new);
            *dirty = true;
        }
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
        let (account, direction, destination) = {
            let leg = &self.legs[i].0;
            (
                leg.account_sid.clone(),
                leg.direction,
                leg.destination.clone(),
            )
        };
        let leg = Leg {
            account_sid: &account,
            direction,
            destination: destination.as_deref(),
            answered_ms,
            answered_at,
            ended_at: time,
        };
        let charge = charge_leg(&leg, &config, self.published(tx)?);
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
        usage.1 += i64::try_from(charge.minutes).unwrap_or(i64::MAX);
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

    /// The account and money events (no call involved).
    fn apply_money(
        &mut self,
        recorded: &RecordedEvent,
        payload: Payload,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let currency = self.config.currency.clone();
        match payload {
            Payload::NumberProvisioned(provisioned) => {
                let Some(price) = provisioned.monthly_price_micros.filter(|p| *p > 0) else {
                    return Ok(());
                };
                // The first month now, the next ones by the log's clock.
                self.add_item(&event.accountsid, balance::PHONE_NUMBERS, event.time, price);
                balance::rent(
                    tx,
                    &balance::Rental {
                        number_sid: event.subject.clone(),
                        account_sid: event.accountsid.clone(),
                        phone_number: provisioned.config.phone_number,
                        monthly_price_micros: price,
                        next_charge_at: balance::next_month(event.time),
                    },
                )?;
                self.next_rental = None;
            }
            Payload::NumberReleased(_) => {
                balance::end_rental(tx, &event.subject)?;
                self.next_rental = None;
            }
            Payload::AccountCredited(credited) => {
                balance::add(
                    tx,
                    &event.subject,
                    balance::Total::Credits,
                    credited.amount_micros,
                    &credited.currency,
                )?;
            }
            Payload::AccountBillingPlanSet(plan) => {
                balance::set_plan(
                    tx,
                    &event.subject,
                    &plan.plan,
                    plan.credit_limit_micros,
                    &currency,
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

const BILLING_TYPES: &[&str] = &[
    "dialtone.call.initiated",
    "dialtone.call.answered",
    "dialtone.call.rejected",
    "dialtone.call.completed",
    "dialtone.rate.published",
    "dialtone.number.provisioned",
    "dialtone.number.released",
    "dialtone.account.credited",
    "dialtone.account.billing_plan.set",
    // The log's clock, for rentals falling due while nothing else happens.
    "dialtone.node.heartbeat",
];

impl Projection for BillingProjection {
    fn name(&self) -> &'static str {
        "billing"
    }

    fn version(&self) -> u32 {
        // 2: destinations on legs, account and prefix prices on rate tables; 3: tables
        // published after a leg ended do not price it; 4: balances and number rentals.
        4
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "billing_rates",
            "billing_legs",
            "usage_daily",
            "account_balances",
            "number_rentals",
        ]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating billing"))?;
        tx.execute_batch(balance::SCHEMA)
            .map_err(sql("creating balances"))
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
        self.charge_rentals(event.time, tx)?;
        if event.event_type == "dialtone.node.heartbeat" {
            return Ok(());
        }
        match decode(recorded) {
            Some(
                payload @ (Payload::NumberProvisioned(_)
                | Payload::NumberReleased(_)
                | Payload::AccountCredited(_)
                | Payload::AccountBillingPlanSet(_)),
            ) => self.apply_money(recorded, payload, tx)?,
            Some(Payload::CallInitiated(initiated)) => {
                let known = self.leg(tx, &event.subject)?.is_some();
                if !known {
                    self.stage(
                        BillingLeg {
                            call_sid: event.subject.clone(),
                            account_sid: event.accountsid.clone(),
                            direction: initiated.direction,
                            destination: Some(initiated.to.clone()),
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
            let mut charges: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
            for ((account, _, _, currency), (_, _, price)) in &self.usage {
                let charged = charges.entry(account).or_insert((0, currency));
                charged.0 = charged.0.saturating_add(*price);
            }
            for (account, (price, currency)) in charges.into_iter().filter(|(_, (p, _))| *p != 0) {
                balance::add(tx, account, balance::Total::Charges, price, currency)?;
            }
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
            // A re-priced leg may have emptied its old row.
            if self.usage.values().any(|(count, _, _)| *count < 0) {
                tx.execute("DELETE FROM usage_daily WHERE count <= 0", [])
                    .map_err(sql("dropping emptied usage"))?;
            }
            Ok(())
        })();
        self.clear();
        result
    }

    fn after_rollback(&mut self) {
        self.published = None;
        self.next_rental = None;
        self.clear();
    }
}

//! What an account has to spend: its balance (the operator's credits less its charges:
//! rated calls and number rentals), how it pays (prepaid, or postpaid with an optional
//! credit limit), and the monthly rentals of the numbers it bought from the inventory,
//! charged on purchase and then each month by the log's clock (the time of the events the
//! projection sees), until the number is released.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::OffsetDateTime;

use crate::projection::{load_time, sql, store_time, ProjectionError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS account_balances (
    account_sid         TEXT PRIMARY KEY,
    currency            TEXT    NOT NULL,
    credits_micros      INTEGER NOT NULL,
    charges_micros      INTEGER NOT NULL,
    plan                TEXT    NOT NULL,
    credit_limit_micros INTEGER
);
CREATE TABLE IF NOT EXISTS number_rentals (
    number_sid           TEXT PRIMARY KEY,
    account_sid          TEXT    NOT NULL,
    phone_number         TEXT    NOT NULL,
    monthly_price_micros INTEGER NOT NULL,
    next_charge_at       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS number_rentals_due ON number_rentals (next_charge_at);
";

/// The usage category of number rentals (Twilio's `phonenumbers`).
pub const PHONE_NUMBERS: &str = "phonenumbers";
pub const PREPAID: &str = "prepaid";
pub const POSTPAID: &str = "postpaid";

/// An account's money, as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBalance {
    pub account_sid: String,
    pub currency: String,
    pub credits_micros: i64,
    pub charges_micros: i64,
    /// [`PREPAID`] or [`POSTPAID`].
    pub plan: String,
    pub credit_limit_micros: Option<i64>,
}

impl AccountBalance {
    /// An account nothing was recorded for: postpaid, no limit, nothing spent.
    pub fn new(account_sid: &str, currency: &str) -> AccountBalance {
        AccountBalance {
            account_sid: account_sid.to_owned(),
            currency: currency.to_owned(),
            credits_micros: 0,
            charges_micros: 0,
            plan: POSTPAID.to_owned(),
            credit_limit_micros: None,
        }
    }

    pub fn balance_micros(&self) -> i64 {
        self.credits_micros.saturating_sub(self.charges_micros)
    }

    /// What the account may still spend: its balance when prepaid, the balance plus the
    /// credit limit when postpaid with one, `None` (no bound) otherwise.
    pub fn spendable_micros(&self) -> Option<i64> {
        match (self.plan.as_str(), self.credit_limit_micros) {
            (PREPAID, _) => Some(self.balance_micros()),
            (_, Some(limit)) => Some(self.balance_micros().saturating_add(limit)),
            _ => None,
        }
    }
}

/// How long a call priced `per_minute_micros` may last on `spendable_micros` (the rated
/// limit, prorated to the millisecond); `None` when it costs nothing. Pure.
pub fn call_allowance_ms(spendable_micros: i64, per_minute_micros: i64) -> Option<u64> {
    if per_minute_micros <= 0 {
        return None;
    }
    let spendable = i128::from(spendable_micros.max(0));
    let ms = spendable * 60_000 / i128::from(per_minute_micros);
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The same day of the next month (the last day when the next month is shorter), same time.
pub fn next_month(at: OffsetDateTime) -> OffsetDateTime {
    let date = at.date();
    let (year, month) = match date.month() {
        time::Month::December => (date.year() + 1, time::Month::January),
        m => (date.year(), m.next()),
    };
    let last = time::util::days_in_month(month, year);
    let day = date.day().min(last);
    match time::Date::from_calendar_date(year, month, day) {
        Ok(next) => at.replace_date(next),
        Err(_) => at + time::Duration::days(30),
    }
}

fn read_balance(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountBalance> {
    Ok(AccountBalance {
        account_sid: r.get(0)?,
        currency: r.get(1)?,
        credits_micros: r.get(2)?,
        charges_micros: r.get(3)?,
        plan: r.get(4)?,
        credit_limit_micros: r.get(5)?,
    })
}

/// The account's money (`None`: nothing recorded for it yet).
pub fn balance_of(
    conn: &Connection,
    account_sid: &str,
) -> Result<Option<AccountBalance>, ProjectionError> {
    conn.prepare_cached(
        "SELECT account_sid, currency, credits_micros, charges_micros, plan, credit_limit_micros
         FROM account_balances WHERE account_sid = ?1",
    )
    .and_then(|mut s| s.query_row([account_sid], read_balance).optional())
    .map_err(sql("reading a balance"))
}

/// Makes sure the account has a row (in `currency` when new).
fn ensure(tx: &Transaction<'_>, account_sid: &str, currency: &str) -> Result<(), ProjectionError> {
    tx.prepare_cached(
        "INSERT INTO account_balances (account_sid, currency, credits_micros, charges_micros, plan)
         VALUES (?1, ?2, 0, 0, 'postpaid') ON CONFLICT (account_sid) DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![account_sid, currency]))
    .map(|_| ())
    .map_err(sql("opening a balance"))
}

/// Which running total a money event moves.
#[derive(Debug, Clone, Copy)]
pub(super) enum Total {
    Credits,
    Charges,
}

/// Adds `amount_micros` to the account's credits or charges.
pub(super) fn add(
    tx: &Transaction<'_>,
    account_sid: &str,
    total: Total,
    amount_micros: i64,
    currency: &str,
) -> Result<(), ProjectionError> {
    ensure(tx, account_sid, currency)?;
    let query = match total {
        Total::Credits => {
            "UPDATE account_balances SET credits_micros = credits_micros + ?2 WHERE account_sid = ?1"
        }
        Total::Charges => {
            "UPDATE account_balances SET charges_micros = charges_micros + ?2 WHERE account_sid = ?1"
        }
    };
    tx.prepare_cached(query)
        .and_then(|mut s| s.execute(params![account_sid, amount_micros]))
        .map(|_| ())
        .map_err(sql("adding to a balance"))
}

pub(super) fn set_plan(
    tx: &Transaction<'_>,
    account_sid: &str,
    plan: &str,
    credit_limit_micros: Option<i64>,
    currency: &str,
) -> Result<(), ProjectionError> {
    ensure(tx, account_sid, currency)?;
    tx.prepare_cached(
        "UPDATE account_balances SET plan = ?2, credit_limit_micros = ?3 WHERE account_sid = ?1",
    )
    .and_then(|mut s| s.execute(params![account_sid, plan, credit_limit_micros]))
    .map(|_| ())
    .map_err(sql("setting a billing plan"))
}

/// A number rental: its next month is charged at `next_charge_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rental {
    pub number_sid: String,
    pub account_sid: String,
    pub phone_number: String,
    pub monthly_price_micros: i64,
    pub next_charge_at: OffsetDateTime,
}

pub(super) fn rent(tx: &Transaction<'_>, rental: &Rental) -> Result<(), ProjectionError> {
    tx.prepare_cached(
        "INSERT INTO number_rentals (number_sid, account_sid, phone_number, monthly_price_micros,
            next_charge_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (number_sid) DO UPDATE SET next_charge_at = excluded.next_charge_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            rental.number_sid,
            rental.account_sid,
            rental.phone_number,
            rental.monthly_price_micros,
            store_time(rental.next_charge_at)
        ])
    })
    .map(|_| ())
    .map_err(sql("renting a number"))
}

pub(super) fn end_rental(tx: &Transaction<'_>, number_sid: &str) -> Result<(), ProjectionError> {
    tx.prepare_cached("DELETE FROM number_rentals WHERE number_sid = ?1")
        .and_then(|mut s| s.execute([number_sid]))
        .map(|_| ())
        .map_err(sql("ending a rental"))
}

/// When the next rental month falls due (`None`: no rentals).
pub(super) fn next_due(conn: &Connection) -> Result<Option<OffsetDateTime>, ProjectionError> {
    let next: Option<String> = conn
        .prepare_cached("SELECT MIN(next_charge_at) FROM number_rentals")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql("reading rentals"))?;
    next.map(|t| load_time("number_rentals", &t)).transpose()
}

/// The rentals with a month due by `now`.
pub(super) fn due_rentals(
    conn: &Connection,
    now: OffsetDateTime,
) -> Result<Vec<Rental>, ProjectionError> {
    let raw: Vec<(String, String, String, i64, String)> = conn
        .prepare_cached(
            "SELECT number_sid, account_sid, phone_number, monthly_price_micros, next_charge_at
             FROM number_rentals WHERE next_charge_at <= ?1 ORDER BY next_charge_at, number_sid",
        )
        .and_then(|mut s| {
            s.query_map([store_time(now)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(sql("reading due rentals"))?;
    raw.into_iter()
        .map(|(number_sid, account_sid, phone_number, price, next)| {
            Ok(Rental {
                number_sid,
                account_sid,
                phone_number,
                monthly_price_micros: price,
                next_charge_at: load_time("number_rentals", &next)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn months_follow_the_calendar() {
        assert_eq!(
            next_month(datetime!(2026-01-31 10:00 UTC)),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            next_month(datetime!(2026-12-07 23:00 UTC)),
            datetime!(2027-01-07 23:00 UTC)
        );
        assert_eq!(
            next_month(datetime!(2028-01-30 00:00 UTC)),
            datetime!(2028-02-29 00:00 UTC)
        );
    }

    #[test]
    fn the_allowance_is_the_spendable_money_at_the_calls_price() {
        // 0.01 at 0.06 a minute: ten seconds.
        assert_eq!(call_allowance_ms(10_000, 60_000), Some(10_000));
        assert_eq!(call_allowance_ms(0, 60_000), Some(0));
        assert_eq!(call_allowance_ms(-5, 60_000), Some(0));
        assert_eq!(call_allowance_ms(10_000, 0), None);
        let mut account = AccountBalance::new("AC1", "USD");
        assert_eq!(account.spendable_micros(), None);
        account.credits_micros = 2_000_000;
        account.charges_micros = 2_500_000;
        account.credit_limit_micros = Some(1_000_000);
        assert_eq!(account.balance_micros(), -500_000);
        assert_eq!(account.spendable_micros(), Some(500_000));
        account.plan = PREPAID.into();
        assert_eq!(account.spendable_micros(), Some(-500_000));
    }
}

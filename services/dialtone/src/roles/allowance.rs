//! Paying per minute, at the call: how long an account's new call may last. A prepaid
//! account spends its balance, a postpaid one with a credit limit its balance plus the
//! limit; others are unbounded. A call with nothing to spend is refused; one with something
//! is ended when it has used it up (the rated limit, fixed when the call starts, from the
//! price per minute of its category and destination).

use std::time::Duration;

use dialtone_events::payload::Direction;
use dialtone_projections::billing::balance::{balance_of, call_allowance_ms};
use dialtone_projections::billing::{category_for, load_published, price_per_minute, Leg};
use time::OffsetDateTime;

use crate::roles::node::Node;

/// What a new call may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// No bound (postpaid without a limit, or the call costs nothing).
    Unbounded,
    /// At most this long once answered.
    Until(Duration),
    /// Nothing left: the call is refused.
    Exhausted,
}

/// The allowance of `account`'s new call of `direction` to `destination`. When the read
/// models cannot be read the call goes on unbounded (the balance is settled later anyway).
pub async fn of_call(
    node: &Node,
    account: &str,
    direction: Direction,
    destination: &str,
) -> Allowance {
    let (owned, config) = (account.to_owned(), node.rates.clone());
    let destination = destination.to_owned();
    let read = node
        .read_models
        .read(move |c| {
            let Some(balance) = balance_of(c, &owned)? else {
                return Ok(None);
            };
            let Some(spendable) = balance.spendable_micros() else {
                return Ok(None);
            };
            let published = load_published(c)?;
            let now = OffsetDateTime::now_utc();
            let leg = Leg {
                account_sid: &owned,
                direction,
                destination: Some(&destination),
                answered_ms: 0,
                answered_at: now,
                ended_at: now,
            };
            let price = price_per_minute(&config, &published, &leg, category_for(direction));
            Ok(Some(call_allowance_ms(spendable, price.per_minute_micros)))
        })
        .await;
    match read {
        Ok(None) | Ok(Some(None)) => Allowance::Unbounded,
        Ok(Some(Some(0))) => Allowance::Exhausted,
        Ok(Some(Some(ms))) => Allowance::Until(Duration::from_millis(ms)),
        Err(error) => {
            tracing::warn!(%account, %error, "cannot read the balance; the call goes on unbounded");
            Allowance::Unbounded
        }
    }
}

impl Allowance {
    /// The longest the answered call may last, if bounded.
    pub fn limit(self) -> Option<Duration> {
        match self {
            Allowance::Until(limit) => Some(limit),
            Allowance::Exhausted => Some(Duration::ZERO),
            Allowance::Unbounded => None,
        }
    }
}

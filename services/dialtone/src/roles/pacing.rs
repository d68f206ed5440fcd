//! Per-account calls-per-second pacing of REST-originated calls (Twilio's account CPS):
//! calls over the rate wait in `queued`; none is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Hands out start times no closer than `1 / cps` per account.
pub struct Pacer {
    interval: Duration,
    next_free: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    pub fn new(calls_per_second: f64) -> Pacer {
        let cps = if calls_per_second.is_finite() && calls_per_second > 0.0 {
            calls_per_second
        } else {
            1.0
        };
        Pacer {
            interval: Duration::from_secs_f64(1.0 / cps),
            next_free: Mutex::new(HashMap::new()),
        }
    }

    /// When a call of `account` asked for at `now` may start; reserves that slot.
    pub fn reserve(&self, account: &str, now: Instant) -> Instant {
        let Ok(mut next) = self.next_free.lock() else {
            return now;
        };
        let slot = next
            .get(account)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        next.insert(account.to_owned(), slot + self.interval);
        if next.len() > 100_000 {
            next.retain(|_, t| *t > now);
        }
        slot
    }

    /// Waits for this call's slot; returns how long it waited.
    pub async fn wait(&self, account: &str) -> Duration {
        let now = Instant::now();
        let slot = self.reserve(account, now);
        tokio::time::sleep_until(slot).await;
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_spaced_per_account() {
        let pacer = Pacer::new(2.0);
        let now = Instant::now();
        assert_eq!(pacer.reserve("AC1", now), now);
        assert_eq!(pacer.reserve("AC1", now), now + Duration::from_millis(500));
        assert_eq!(pacer.reserve("AC1", now), now + Duration::from_millis(1000));
        // Another account has its own budget.
        assert_eq!(pacer.reserve("AC2", now), now);
        // After a quiet period the next call goes at once.
        let later = now + Duration::from_secs(10);
        assert_eq!(pacer.reserve("AC1", later), later);
    }
}

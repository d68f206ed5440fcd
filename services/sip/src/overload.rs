//! Overload control for new calls, sans-IO: decides whether a new INVITE is admitted or
//! answered `503 Service Unavailable` with `Retry-After`, from the live call and server
//! transaction counts and a per-source-IP token bucket (calls per second with a burst).
//!
//! Memory stays bounded under a flood of spoofed sources: at most `max_tracked_sources`
//! buckets are kept; beyond that the least recently used one is evicted (CLOCK
//! second-chance approximation of LRU, O(1) amortised). An evicted source starts again with
//! a full bucket, so the cap only ever makes the limiter more lenient for that source, never
//! stricter.
//!
//! The policy never looks at the clock itself: every call takes `now`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Limits beyond which new INVITEs get 503. OPTIONS and in-dialog requests are never
/// refused by these limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// Live calls (inbound and outbound).
    pub max_calls: usize,
    /// Live server transactions (INVITE and non-INVITE). Beyond this, OPTIONS are answered
    /// statelessly and out-of-dialog requests other than OPTIONS get 503.
    pub max_server_transactions: usize,
    /// New INVITEs per second from one source IP; 0 turns the per-source limit off.
    pub per_source_cps: f64,
    /// Bucket size: how many INVITEs a source may send at once after being quiet.
    pub per_source_burst: u32,
    /// Source IPs whose buckets are kept (the cap on the limiter's memory).
    pub max_tracked_sources: usize,
    /// `Retry-After` (seconds) when a global limit (calls, transactions) is hit.
    pub retry_after_secs: u32,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_calls: 10_000,
            max_server_transactions: 50_000,
            per_source_cps: 0.0,
            per_source_burst: 100,
            max_tracked_sources: 10_000,
            retry_after_secs: 5,
        }
    }
}

/// Why a request was refused; also the `reason` label of `dialtone_sip_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The endpoint is draining (`shutdown`).
    ShuttingDown,
    /// `max_calls` live calls.
    CallLimit,
    /// `max_server_transactions` live server transactions.
    TransactionLimit,
    /// The source IP is over its calls-per-second budget.
    SourceRate,
    /// The app is not taking new calls fast enough (the incoming-call queue is full).
    QueueFull,
}

impl RejectReason {
    pub const ALL: [RejectReason; 5] = [
        RejectReason::ShuttingDown,
        RejectReason::CallLimit,
        RejectReason::TransactionLimit,
        RejectReason::SourceRate,
        RejectReason::QueueFull,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::ShuttingDown => "shutting_down",
            RejectReason::CallLimit => "calls",
            RejectReason::TransactionLimit => "transactions",
            RejectReason::SourceRate => "source_rate",
            RejectReason::QueueFull => "queue_full",
        }
    }
}

/// A refusal: answer 503 with this `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub retry_after_secs: u32,
}

/// What the guard needs to know about the endpoint right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub accepting: bool,
    pub live_calls: usize,
    pub server_transactions: usize,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Touched since the clock hand last passed (second chance).
    referenced: bool,
}

/// The admission policy and its per-source state.
#[derive(Debug)]
pub struct OverloadGuard {
    cfg: OverloadConfig,
    buckets: HashMap<IpAddr, Bucket>,
    /// Every tracked source once, in CLOCK order.
    clock: VecDeque<IpAddr>,
}

impl OverloadGuard {
    pub fn new(cfg: OverloadConfig) -> Self {
        OverloadGuard {
            cfg,
            buckets: HashMap::new(),
            clock: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &OverloadConfig {
        &self.cfg
    }

    /// Sources with a bucket (never more than `max_tracked_sources`).
    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }

    /// Whether the server-transaction limit is reached (for requests other than new
    /// INVITEs, which [`OverloadGuard::admit_invite`] judges).
    pub fn transactions_full(&self, server_transactions: usize) -> bool {
        server_transactions >= self.cfg.max_server_transactions
    }

    /// Judges a new INVITE (not a retransmission) from `source`. A token is taken from the
    /// source's bucket only when every global limit lets the INVITE through.
    pub fn admit_invite(
        &mut self,
        now: Instant,
        source: IpAddr,
        load: Load,
    ) -> Result<(), Rejection> {
        let global = |reason| Rejection {
            reason,
            retry_after_secs: self.cfg.retry_after_secs.max(1),
        };
        if !load.accepting {
            return Err(Rejection {
                reason: RejectReason::ShuttingDown,
                retry_after_secs: 30,
            });
        }
        if load.live_calls >= self.cfg.max_calls {
            return Err(global(RejectReason::CallLimit));
        }
        if self.transactions_full(load.server_transactions) {
            return Err(global(RejectReason::TransactionLimit));
        }
        self.take_token(now, source.to_canonical())
    }

    fn take_token(&mut self, now: Instant, source: IpAddr) -> Result<(), Rejection> {
        let rate = self.cfg.per_source_cps;
        if !(rate > 0.0 && rate.is_finite()) {
            return Ok(());
        }
        let burst = f64::from(self.cfg.per_source_burst.max(1));
        let known = self.buckets.contains_key(&source);
        if !known {
            self.make_room();
            self.buckets.insert(
                source,
                Bucket {
                    tokens: burst,
                    refilled: now,
                    referenced: false,
                },
            );
            self.clock.push_back(source);
        }
        let Some(bucket) = self.buckets.get_mut(&source) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        // Only a source seen again earns a second chance: a flood of one-off (spoofed)
        // sources is evicted before the sources that keep calling.
        bucket.referenced |= known;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
            Err(Rejection {
                reason: RejectReason::SourceRate,
                retry_after_secs: u32::try_from(wait.as_secs() + 1).unwrap_or(u32::MAX),
            })
        }
    }

    /// Evicts one bucket when the cap is reached: the hand skips (and clears) recently
    /// referenced entries at most once each, so this ends within two passes.
    fn make_room(&mut self) {
        let cap = self.cfg.max_tracked_sources.max(1);
        while self.buckets.len() >= cap {
            let Some(ip) = self.clock.pop_front() else {
                // Cannot happen (every bucket is on the clock); never loop forever.
                self.buckets.clear();
                return;
            };
            match self.buckets.get_mut(&ip) {
                Some(b) if b.referenced => {
                    b.referenced = false;
                    self.clock.push_back(ip);
                }
                Some(_) => {
                    self.buckets.remove(&ip);
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn idle() -> Load {
        Load {
            accepting: true,
            live_calls: 0,
            server_transactions: 0,
        }
    }

    #[test]
    fn global_limits_come_first_and_take_no_token() {
        let mut g = OverloadGuard::new(OverloadConfig {
            max_calls: 2,
            max_server_transactions: 10,
            per_source_cps: 1.0,
            per_source_burst: 1,
            ..OverloadConfig::default()
        });
        let t0 = Instant::now();
        let src = ip("192.0.2.1");
        let full = Load {
            live_calls: 2,
            ..idle()
        };
        assert_eq!(
            g.admit_invite(t0, src, full),
            Err(Rejection {
                reason: RejectReason::CallLimit,
                retry_after_secs: 5
            })
        );
        let busy = Load {
            server_transactions: 10,
            ..idle()
        };
        assert_eq!(
            g.admit_invite(t0, src, busy).unwrap_err().reason,
            RejectReason::TransactionLimit
        );
        let draining = Load {
            accepting: false,
            ..idle()
        };
        assert_eq!(
            g.admit_invite(t0, src, draining),
            Err(Rejection {
                reason: RejectReason::ShuttingDown,
                retry_after_secs: 30
            })
        );
        // None of those took the single token.
        assert_eq!(g.admit_invite(t0, src, idle()), Ok(()));
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let mut g = OverloadGuard::new(OverloadConfig {
            per_source_cps: 10.0,
            per_source_burst: 5,
            ..OverloadConfig::default()
        });
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert_eq!(g.admit_invite(t0, a, idle()), Ok(()));
        }
        let rej = g.admit_invite(t0, a, idle()).unwrap_err();
        assert_eq!(rej.reason, RejectReason::SourceRate);
        assert_eq!(rej.retry_after_secs, 1);
        // Another source has its own bucket.
        assert_eq!(g.admit_invite(t0, ip("192.0.2.2"), idle()), Ok(()));
        // 10/s: one token every 100 ms.
        let t = t0 + Duration::from_millis(99);
        assert!(g.admit_invite(t, a, idle()).is_err());
        // The refused attempt took nothing: by 201 ms two tokens have come back.
        let t = t0 + Duration::from_millis(201);
        assert_eq!(g.admit_invite(t, a, idle()), Ok(()));
        assert_eq!(g.admit_invite(t, a, idle()), Ok(()));
        assert!(g.admit_invite(t, a, idle()).is_err());
        // Over one second, exactly the rate gets through.
        let mut admitted = 0;
        for i in 1..=100 {
            let t = t + Duration::from_millis(10 * i);
            if g.admit_invite(t, a, idle()).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10);
        // Quiet for long: back to a full burst, not more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert_eq!(g.admit_invite(later, a, idle()), Ok(()));
        }
        assert!(g.admit_invite(later, a, idle()).is_err());
    }

    #[test]
    fn ipv4_mapped_sources_share_the_ipv4_bucket() {
        let mut g = OverloadGuard::new(OverloadConfig {
            per_source_cps: 1.0,
            per_source_burst: 1,
            ..OverloadConfig::default()
        });
        let t0 = Instant::now();
        assert!(g.admit_invite(t0, ip("192.0.2.7"), idle()).is_ok());
        assert!(g.admit_invite(t0, ip("::ffff:192.0.2.7"), idle()).is_err());
    }

    #[test]
    fn per_source_limit_off_tracks_nothing() {
        let mut g = OverloadGuard::new(OverloadConfig::default());
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let src = IpAddr::from(i.to_be_bytes());
            assert!(g.admit_invite(t0, src, idle()).is_ok());
        }
        assert_eq!(g.tracked_sources(), 0);
    }

    #[test]
    fn a_flood_of_sources_stays_under_the_cap_and_keeps_busy_sources() {
        let mut g = OverloadGuard::new(OverloadConfig {
            per_source_cps: 1.0,
            per_source_burst: 2,
            max_tracked_sources: 100,
            ..OverloadConfig::default()
        });
        let t0 = Instant::now();
        let heavy = ip("198.51.100.1");
        assert!(g.admit_invite(t0, heavy, idle()).is_ok());
        assert!(g.admit_invite(t0, heavy, idle()).is_ok());
        assert!(g.admit_invite(t0, heavy, idle()).is_err());
        for i in 0..100_000u32 {
            let src = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            let _ = g.admit_invite(t0, src, idle());
            assert!(g.tracked_sources() <= 100);
            assert!(g.clock.len() <= 100);
            if i % 50 == 0 {
                // The heavy source keeps coming back: its bucket survives (still empty).
                assert!(g.admit_invite(t0, heavy, idle()).is_err(), "at {i}");
            }
        }
        assert_eq!(g.tracked_sources(), 100);
    }
}

//! Twilio's per-URL connection overrides: `https://app/voice#ct=1000&rt=2000&tt=5000&rc=2&rp=5xx,ct`.

use std::time::Duration;

/// Which failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    /// `ct`: the connection failed (refused, reset, or connect timeout).
    pub connect_failure: bool,
    /// `rt`: the response did not arrive in time.
    pub read_timeout: bool,
    /// `4xx`.
    pub status_4xx: bool,
    /// `5xx`.
    pub status_5xx: bool,
}

impl Default for RetryOn {
    /// Twilio's default policy: retry connection failures only.
    fn default() -> Self {
        RetryOn {
            connect_failure: true,
            read_timeout: false,
            status_4xx: false,
            status_5xx: false,
        }
    }
}

impl RetryOn {
    /// Parses `rp` (`4xx,5xx,ct,rt,all`); `None` when nothing in it is known.
    pub fn parse(value: &str) -> Option<RetryOn> {
        let mut policy = RetryOn {
            connect_failure: false,
            read_timeout: false,
            status_4xx: false,
            status_5xx: false,
        };
        let mut any = false;
        for item in value.split(',').map(str::trim) {
            any |= match item {
                "ct" => {
                    policy.connect_failure = true;
                    true
                }
                "rt" => {
                    policy.read_timeout = true;
                    true
                }
                "4xx" => {
                    policy.status_4xx = true;
                    true
                }
                "5xx" => {
                    policy.status_5xx = true;
                    true
                }
                "all" => {
                    policy = RetryOn {
                        connect_failure: true,
                        read_timeout: true,
                        status_4xx: true,
                        status_5xx: true,
                    };
                    true
                }
                _ => false,
            };
        }
        any.then_some(policy)
    }
}

/// Timeouts and retries of one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to establish the TCP (and TLS) connection. Twilio: 5 s.
    pub connect: Duration,
    /// Longest wait for the first response byte and between packets. Twilio: 15 s.
    pub read: Duration,
    /// Whole webhook including retries. Twilio: 15 s.
    pub total: Duration,
    /// Retries after the first attempt. Twilio: 1.
    pub retries: u8,
    pub retry_on: RetryOn,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(15),
            total: Duration::from_secs(15),
            retries: 1,
            retry_on: RetryOn::default(),
        }
    }
}

impl Timeouts {
    /// These timeouts with a URL's overrides applied.
    pub fn with(&self, overrides: &ConnectionOverrides) -> Timeouts {
        Timeouts {
            connect: overrides.connect_timeout.unwrap_or(self.connect),
            read: overrides.read_timeout.unwrap_or(self.read),
            total: overrides.total_timeout.unwrap_or(self.total),
            retries: overrides.retry_count.unwrap_or(self.retries),
            retry_on: overrides.retry_on.unwrap_or(self.retry_on),
        }
    }
}

/// The overrides found in a URL fragment. Out-of-range values are clamped to Twilio's
/// limits (ct 100–10000 ms, rt and tt 100–15000 ms, rc 0–5); unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOverrides {
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub total_timeout: Option<Duration>,
    pub retry_count: Option<u8>,
    pub retry_on: Option<RetryOn>,
    /// `e`: Twilio edge location; recorded, meaningless for a single-site deployment.
    pub edge: Option<String>,
    /// `sni=y|n`.
    pub sni: Option<bool>,
}

fn millis(value: &str, min: u64, max: u64) -> Option<Duration> {
    let n: u64 = value.trim().parse().ok()?;
    Some(Duration::from_millis(n.clamp(min, max)))
}

/// Splits a webhook URL into the URL to request (no fragment: fragments are never sent)
/// and the connection overrides its fragment holds.
pub fn split_overrides(url: &str) -> (&str, ConnectionOverrides) {
    let Some((base, fragment)) = url.split_once('#') else {
        return (url, ConnectionOverrides::default());
    };
    let mut overrides = ConnectionOverrides::default();
    for pair in fragment.split('&') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        match key.trim() {
            "ct" => overrides.connect_timeout = millis(value, 100, 10_000),
            "rt" => overrides.read_timeout = millis(value, 100, 15_000),
            "tt" => overrides.total_timeout = millis(value, 100, 15_000),
            "rc" => {
                overrides.retry_count = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .map(|n| u8::try_from(n.min(5)).unwrap_or(5))
            }
            "rp" => overrides.retry_on = RetryOn::parse(value),
            "e" => overrides.edge = Some(value.to_owned()),
            "sni" => overrides.sni = Some(matches!(value.trim(), "y" | "yes" | "true")),
            _ => {}
        }
    }
    (base, overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_override_and_are_stripped() {
        let (url, o) = split_overrides(
            "https://a.example/voice?x=1#ct=1000&rt=2500&tt=9000&rc=3&rp=5xx,ct&e=dublin&sni=y",
        );
        assert_eq!(url, "https://a.example/voice?x=1");
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(1000)));
        assert_eq!(o.read_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(o.total_timeout, Some(Duration::from_millis(9000)));
        assert_eq!(o.retry_count, Some(3));
        assert_eq!(
            o.retry_on,
            Some(RetryOn {
                connect_failure: true,
                read_timeout: false,
                status_4xx: false,
                status_5xx: true
            })
        );
        assert_eq!(o.edge.as_deref(), Some("dublin"));
        assert_eq!(o.sni, Some(true));
        let t = Timeouts::default().with(&o);
        assert_eq!(t.retries, 3);
        assert_eq!(t.connect, Duration::from_millis(1000));
    }

    #[test]
    fn limits_are_clamped_and_junk_ignored() {
        let (_, o) = split_overrides("http://h/#ct=5&rt=99999&tt=x&rc=9&rp=bogus&zz=1&novalue");
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(100)));
        assert_eq!(o.read_timeout, Some(Duration::from_millis(15_000)));
        assert_eq!(o.total_timeout, None);
        assert_eq!(o.retry_count, Some(5));
        assert_eq!(o.retry_on, None);
        let (url, o) = split_overrides("http://h/a");
        assert_eq!((url, &o), ("http://h/a", &ConnectionOverrides::default()));
        assert_eq!(Timeouts::default().with(&o), Timeouts::default());
        assert_eq!(Timeouts::default().connect, Duration::from_secs(5));
        assert_eq!(Timeouts::default().read, Duration::from_secs(15));
        assert_eq!(Timeouts::default().total, Duration::from_secs(15));
        assert_eq!(Timeouts::default().retries, 1);
        assert_eq!(RetryOn::parse("all").map(|r| r.status_4xx), Some(true));
    }
}

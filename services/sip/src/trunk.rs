//! SIP trunks: who may send us calls, and how calls go out. Pure, except for [`resolve`].
//!
//! In the TOML configuration (`[trunks]` of `dialtone serve`):
//!
//! ```toml
//! [[trunks.inbound]]
//! name = "carrier-a"
//! allowed_sources = ["203.0.113.0/24", "198.51.100.7"]
//!
//! [[trunks.outbound]]
//! name = "carrier-a"
//! host = "sip.carrier-a.example"   # or an IP literal
//! port = 5060
//! transport = "udp"                # or "tcp"
//! username = "acct"                # digest credentials for 401/407 (optional)
//! password = "secret"
//! default = true                   # <Number> dials go out here
//! caller_id = { strip_plus = true }  # or from_number = "+15550001111", add_prefix, strip_prefix
//! dialed_number = { strip_plus = false }
//! ```
//!
//! Inbound: [`TrunksConfig::check_inbound`] allows an INVITE whose source IP is in any
//! inbound trunk's `allowed_sources`, or whose number is open to any source; everything
//! else is answered 403. Outbound: [`OutboundTrunk::number_invite`] builds the INVITE of a
//! `<Number>` dial through a trunk, [`SipTarget::parse`] + [`SipTarget::invite`] the one of
//! a `<Sip>` dial straight to its URI. Host names are resolved by the shell with
//! [`resolve`] (tokio's `lookup_host`, first address).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::message::{NameAddr, Params, SipUri, Uri};
use crate::transaction::Transport;
use crate::ua::{Credentials, OutgoingInvite};

/// Why a trunk setting or a dial target is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrunkError {
    #[error("invalid CIDR {value:?}: {problem}")]
    InvalidCidr {
        value: String,
        problem: &'static str,
    },
    #[error("trunk {trunk:?}: {problem}")]
    InvalidTrunk { trunk: String, problem: String },
    #[error("more than one default outbound trunk ({first:?} and {second:?})")]
    SeveralDefaults { first: String, second: String },
    #[error("no default outbound trunk is configured")]
    NoDefaultTrunk,
    #[error("invalid phone number {0:?}")]
    InvalidNumber(String),
    #[error("invalid SIP URI {uri:?}: {problem}")]
    InvalidSipUri { uri: String, problem: String },
    #[error("cannot resolve {host}: {problem}")]
    Resolve { host: String, problem: String },
}

/// An IP network: `203.0.113.0/24`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, TrunkError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(TrunkError::InvalidCidr {
                value: format!("{addr}/{prefix}"),
                problem: "prefix length too long",
            });
        }
        Ok(Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((bits & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((bits & m).to_be_bytes())
        }
    }
}

impl FromStr for Cidr {
    type Err = TrunkError;

    fn from_str(s: &str) -> Result<Cidr, TrunkError> {
        let bad = |problem| TrunkError::InvalidCidr {
            value: s.to_owned(),
            problem,
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let addr = addr.to_canonical();
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad("bad prefix length"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(addr, prefix).map_err(|_| bad("prefix length too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A carrier allowed to send us calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundTrunk {
    pub name: String,
    pub allowed_sources: Vec<Cidr>,
}

/// Rewriting of a phone number, applied in this order: strip a leading `+`, strip a
/// prefix, add a prefix. Visual separators (spaces, `-`, `.`, `(`, `)`) are always removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumberRewrite {
    pub strip_plus: bool,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
}

impl NumberRewrite {
    /// The rewritten number; an error when it is not a dialable number
    /// (`+`? then digits, `*`, `#` or letters).
    pub fn apply(&self, number: &str) -> Result<String, TrunkError> {
        let mut n: String = number
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        if !valid_number(&n) {
            return Err(TrunkError::InvalidNumber(number.to_owned()));
        }
        if self.strip_plus {
            if let Some(rest) = n.strip_prefix('+') {
                n = rest.to_owned();
            }
        }
        if let Some(p) = self.strip_prefix.as_deref().filter(|p| !p.is_empty()) {
            if let Some(rest) = n.strip_prefix(p) {
                n = rest.to_owned();
            }
        }
        if let Some(p) = &self.add_prefix {
            n = format!("{p}{n}");
        }
        valid_number(&n)
            .then_some(n)
            .ok_or_else(|| TrunkError::InvalidNumber(number.to_owned()))
    }
}

fn valid_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'#')
}

/// How the caller id (the From user) of calls through a trunk is made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallerIdRules {
    /// Always use this number (the trunk's billing number), whatever the app asked for.
    pub from_number: Option<String>,
    pub strip_plus: bool,
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
}

impl CallerIdRules {
    /// The caller id to send for `requested` (the app's `callerId` or the caller).
    pub fn apply(&self, requested: &str) -> Result<String, TrunkError> {
        let number = self.from_number.as_deref().unwrap_or(requested);
        NumberRewrite {
            strip_plus: self.strip_plus,
            strip_prefix: self.strip_prefix.clone(),
            add_prefix: self.add_prefix.clone(),
        }
        .apply(number)
    }
}

fn default_sip_port() -> u16 {
    5060
}

/// A carrier we send calls to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundTrunk {
    pub name: String,
    /// Host name or IP literal of the carrier's SIP server.
    pub host: String,
    #[serde(default = "default_sip_port")]
    pub port: u16,
    #[serde(default)]
    pub transport: Transport,
    /// Digest credentials, used when the carrier challenges (401/407).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Host part of the From URI (default: `host`).
    #[serde(default)]
    pub from_domain: Option<String>,
    #[serde(default)]
    pub caller_id: CallerIdRules,
    #[serde(default)]
    pub dialed_number: NumberRewrite,
    /// `<Number>` dials go out through the default trunk.
    #[serde(default)]
    pub default: bool,
}

/// Every trunk, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrunksConfig {
    pub inbound: Vec<InboundTrunk>,
    pub outbound: Vec<OutboundTrunk>,
}

/// The decision on an inbound INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundVerdict {
    /// The source belongs to this inbound trunk.
    Trunk(String),
    /// No trunk matched, but the number is open to any source.
    OpenNumber,
    /// Answer 403 Forbidden.
    Forbidden,
}

impl InboundVerdict {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, InboundVerdict::Forbidden)
    }
}

impl TrunksConfig {
    /// Checks what deserialisation cannot: one default outbound trunk at most, unique
    /// names, a usable host and port, no password without a username, and caller-id
    /// overrides that are numbers.
    pub fn validate(&self) -> Result<(), TrunkError> {
        let mut default: Option<&str> = None;
        for t in &self.outbound {
            let bad = |problem: &str| TrunkError::InvalidTrunk {
                trunk: t.name.clone(),
                problem: problem.to_owned(),
            };
            if t.name.is_empty() {
                return Err(bad("empty name"));
            }
            if self.outbound.iter().filter(|o| o.name == t.name).count() > 1 {
                return Err(bad("name used twice"));
            }
            if t.host.is_empty() || t.host.contains(['@', ';', '?', ' ', '/']) {
                return Err(bad("host must be a host name or an IP literal"));
            }
            if t.port == 0 {
                return Err(bad("port 0"));
            }
            if t.password.is_some() && t.username.is_none() {
                return Err(bad("password without username"));
            }
            if let Some(n) = &t.caller_id.from_number {
                t.caller_id
                    .apply(n)
                    .map_err(|_| bad("caller_id.from_number is not a phone number"))?;
            }
            if t.default {
                if let Some(first) = default {
                    return Err(TrunkError::SeveralDefaults {
                        first: first.to_owned(),
                        second: t.name.clone(),
                    });
                }
                default = Some(&t.name);
            }
        }
        for t in &self.inbound {
            if t.allowed_sources.is_empty() {
                return Err(TrunkError::InvalidTrunk {
                    trunk: t.name.clone(),
                    problem: "no allowed_sources".into(),
                });
            }
        }
        Ok(())
    }

    /// Whether an INVITE from `source` may come in. `number_open_to_any_source` is the
    /// dialed number's own setting.
    pub fn check_inbound(&self, source: IpAddr, number_open_to_any_source: bool) -> InboundVerdict {
        if let Some(t) = self
            .inbound
            .iter()
            .find(|t| t.allowed_sources.iter().any(|c| c.contains(source)))
        {
            return InboundVerdict::Trunk(t.name.clone());
        }
        if number_open_to_any_source {
            InboundVerdict::OpenNumber
        } else {
            InboundVerdict::Forbidden
        }
    }

    /// The trunk `<Number>` dials go out through.
    pub fn default_outbound(&self) -> Result<&OutboundTrunk, TrunkError> {
        self.outbound
            .iter()
            .find(|t| t.default)
            .ok_or(TrunkError::NoDefaultTrunk)
    }

    pub fn outbound_named(&self, name: &str) -> Option<&OutboundTrunk> {
        self.outbound.iter().find(|t| t.name == name)
    }
}

/// What every outbound INVITE needs besides its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOptions {
    /// Our SDP offer.
    pub sdp: String,
    /// Extra headers (`X-...`).
    pub headers: Vec<(String, String)>,
    /// Twilio's `timeout`: CANCEL when not answered within this.
    pub ring_timeout: Option<Duration>,
}

fn sip_uri(user: &str, host: &str, port: u16, transport: Transport) -> SipUri {
    let mut uri = SipUri::new(Some(user), &crate::ua::host_for_uri(host), Some(port));
    if let Some(t) = transport.uri_param() {
        uri.params.set("transport", Some(t));
    }
    uri
}

impl OutboundTrunk {
    /// The INVITE of a `<Number>` dial to `number` through this trunk, sent to
    /// `destination` (the trunk's host resolved, see [`resolve`]). The Request-URI is
    /// `sip:<number>@host:port[;transport=tcp]`, the From `sip:<caller id>@from_domain`.
    pub fn number_invite(
        &self,
        destination: SocketAddr,
        number: &str,
        caller_id: &str,
        options: DialOptions,
    ) -> Result<OutgoingInvite, TrunkError> {
        let dialed = self.dialed_number.apply(number)?;
        let caller = self.caller_id.apply(caller_id)?;
        let target = sip_uri(&dialed, &self.host, self.port, self.transport);
        let to = SipUri::new(Some(&dialed), &crate::ua::host_for_uri(&self.host), None);
        let from_host = self.from_domain.as_deref().unwrap_or(&self.host);
        let from = SipUri::new(Some(&caller), &crate::ua::host_for_uri(from_host), None);
        let credentials = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        };
        Ok(OutgoingInvite {
            target: Uri::Sip(target),
            destination,
            transport: self.transport,
            from: NameAddr::new(Uri::Sip(from)),
            to: Some(NameAddr::new(Uri::Sip(to))),
            sdp: options.sdp,
            headers: options.headers,
            credentials,
            ring_timeout: options.ring_timeout,
        })
    }
}

/// The target of a `<Sip>` dial: `sip:user@host[:port][;transport=tcp][?X-Header=value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTarget {
    /// The Request-URI (without the `?` headers).
    pub uri: Uri,
    /// Host to resolve and port to send to.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// Headers from the URI's `?` part (percent-decoded), to add to the INVITE.
    pub headers: Vec<(String, String)>,
}

impl SipTarget {
    /// Parses a `<Sip>` noun's URI. `sips:` and transports other than UDP and TCP are
    /// refused (no TLS here).
    pub fn parse(uri: &str) -> Result<SipTarget, TrunkError> {
        let bad = |problem: &str| TrunkError::InvalidSipUri {
            uri: uri.to_owned(),
            problem: problem.to_owned(),
        };
        let parsed = Uri::parse(uri.trim()).map_err(|e| bad(&e.to_string()))?;
        let Uri::Sip(mut sip) = parsed else {
            return Err(bad("not a sip: URI"));
        };
        if sip.secure {
            return Err(bad("sips: (TLS) is not supported"));
        }
        let transport = match sip.params.value("transport") {
            None => Transport::Udp,
            Some(t) => Transport::parse(t).ok_or_else(|| bad("transport must be udp or tcp"))?,
        };
        let headers = std::mem::take(&mut sip.headers)
            .into_iter()
            .map(|(n, v)| {
                (
                    crate::message::percent_decode_str(&n),
                    crate::message::percent_decode_str(&v),
                )
            })
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(crate::message::syntax::is_token_char))
            .collect();
        let host = sip
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(SipTarget {
            host,
            port: sip.port_or_default(),
            transport,
            headers,
            uri: Uri::Sip(sip),
        })
    }

    /// The INVITE, sent to `destination` (the URI's host resolved). `caller_id` is the From
    /// user, `from_host` the From host (our public address); `username`/`password` are the
    /// `<Sip>` noun's digest credentials.
    pub fn invite(
        &self,
        destination: SocketAddr,
        caller_id: &str,
        from_host: &str,
        username: Option<&str>,
        password: Option<&str>,
        mut options: DialOptions,
    ) -> Result<OutgoingInvite, TrunkError> {
        let from = Uri::parse(&format!(
            "sip:{}@{}",
            caller_id.trim(),
            crate::ua::host_for_uri(from_host)
        ))
        .map_err(|_| TrunkError::InvalidNumber(caller_id.to_owned()))?;
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
            }),
            _ => None,
        };
        let mut headers = self.headers.clone();
        headers.append(&mut options.headers);
        let mut to = match &self.uri {
            Uri::Sip(s) => s.clone(),
            _ => SipUri::new(None, &self.host, Some(self.port)),
        };
        to.params = Params::new();
        Ok(OutgoingInvite {
            target: self.uri.clone(),
            destination,
            transport: self.transport,
            from: NameAddr::new(from),
            to: Some(NameAddr::new(Uri::Sip(to))),
            sdp: options.sdp,
            headers,
            credentials,
            ring_timeout: options.ring_timeout,
        })
    }
}

/// Resolves `host` (name or IP literal) to its first address, with `port`.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, TrunkError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs =
        tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| TrunkError::Resolve {
                host: host.to_owned(),
                problem: e.to_string(),
            })?;
    addrs.next().ok_or_else(|| TrunkError::Resolve {
        host: host.to_owned(),
        problem: "no address".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const CONFIG: &str = r#"
[[inbound]]
name = "carrier-a"
allowed_sources = ["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"]

[[inbound]]
name = "carrier-b"
allowed_sources = ["192.0.2.128/25"]

[[outbound]]
name = "carrier-a"
host = "203.0.113.10"
transport = "tcp"
username = "acct"
password = "s3cret"
default = true
caller_id = { strip_plus = true }
dialed_number = { strip_plus = true, add_prefix = "00" }

[[outbound]]
name = "backup"
host = "sip.backup.example"
port = 5080
caller_id = { from_number = "+15550001111" }
"#;

    fn config() -> TrunksConfig {
        let c: TrunksConfig = toml::from_str(CONFIG).expect("config parses");
        c.validate().expect("valid");
        c
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "203.0.113.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "203.0.113.0/24");
        assert!(c.contains(ip("203.0.113.1")));
        assert!(c.contains(ip("::ffff:203.0.113.200")));
        assert!(!c.contains(ip("203.0.114.1")));
        assert!(!c.contains(ip("2001:db8::1")));
        let host: Cidr = "198.51.100.7".parse().unwrap();
        assert!(host.contains(ip("198.51.100.7")));
        assert!(!host.contains(ip("198.51.100.8")));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("8.8.8.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        for bad in ["", "1.2.3.4/33", "1.2.3/24", "::/129", "x/8", "1.2.3.4/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn inbound_sources_are_checked_and_open_numbers_let_anyone_in() {
        let c = config();
        assert_eq!(
            c.check_inbound(ip("203.0.113.9"), false),
            InboundVerdict::Trunk("carrier-a".into())
        );
        assert_eq!(
            c.check_inbound(ip("192.0.2.200"), false),
            InboundVerdict::Trunk("carrier-b".into())
        );
        assert_eq!(
            c.check_inbound(ip("192.0.2.1"), false),
            InboundVerdict::Forbidden
        );
        assert!(!c.check_inbound(ip("192.0.2.1"), false).is_allowed());
        assert_eq!(
            c.check_inbound(ip("192.0.2.1"), true),
            InboundVerdict::OpenNumber
        );
        // No trunks at all: only open numbers.
        let none = TrunksConfig::default();
        assert_eq!(
            none.check_inbound(ip("203.0.113.9"), false),
            InboundVerdict::Forbidden
        );
    }

    #[test]
    fn number_dial_goes_through_the_default_trunk_with_rewrites() {
        let c = config();
        let trunk = c.default_outbound().unwrap();
        assert_eq!(trunk.name, "carrier-a");
        let dest: SocketAddr = "203.0.113.10:5060".parse().unwrap();
        let inv = trunk
            .number_invite(
                dest,
                "+44 20 7946-0000",
                "+15557654321",
                DialOptions {
                    sdp: "v=0\r\n".into(),
                    headers: vec![("X-Call".into(), "1".into())],
                    ring_timeout: Some(Duration::from_secs(30)),
                },
            )
            .unwrap();
        assert_eq!(
            inv.target.to_string(),
            "sip:00442079460000@203.0.113.10:5060;transport=tcp"
        );
        assert_eq!(inv.transport, Transport::Tcp);
        assert_eq!(inv.destination, dest);
        assert_eq!(inv.from.to_string(), "<sip:15557654321@203.0.113.10>");
        assert_eq!(
            inv.to.as_ref().unwrap().to_string(),
            "<sip:00442079460000@203.0.113.10>"
        );
        assert_eq!(
            inv.credentials,
            Some(Credentials {
                username: "acct".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(inv.ring_timeout, Some(Duration::from_secs(30)));
        assert_eq!(inv.headers, vec![("X-Call".to_owned(), "1".to_owned())]);
        // Caller id override, UDP default port, no credentials.
        let backup = c.outbound_named("backup").unwrap();
        let inv = backup
            .number_invite(
                "192.0.2.50:5080".parse().unwrap(),
                "+15551230000",
                "+19998887777",
                DialOptions {
                    sdp: String::new(),
                    headers: Vec::new(),
                    ring_timeout: None,
                },
            )
            .unwrap();
        assert_eq!(
            inv.target.to_string(),
            "sip:+15551230000@sip.backup.example:5080"
        );
        assert_eq!(inv.transport, Transport::Udp);
        assert_eq!(inv.from.uri.user().as_deref(), Some("+15550001111"));
        assert!(inv.credentials.is_none());
        // Garbage numbers cannot reach the Request-URI.
        for bad in ["", "+", "1555@evil.example", "1;lr", "+1 555 <x>"] {
            assert!(
                trunk
                    .number_invite(
                        dest,
                        bad,
                        "+1",
                        DialOptions {
                            sdp: String::new(),
                            headers: Vec::new(),
                            ring_timeout: None
                        }
                    )
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn validation_catches_what_serde_cannot() {
        let mut c = config();
        c.outbound[1].default = true;
        assert!(matches!(
            c.validate(),
            Err(TrunkError::SeveralDefaults { .. })
        ));
        let mut c = config();
        c.outbound[1].username = None;
        c.outbound[1].password = Some("x".into());
        assert!(c.validate().is_err());
        let mut c = config();
        c.outbound[0].host = "a@b".into();
        assert!(c.validate().is_err());
        let mut c = config();
        c.outbound[0].default = false;
        assert!(c.validate().is_ok());
        assert_eq!(c.default_outbound(), Err(TrunkError::NoDefaultTrunk));
        assert!(toml::from_str::<TrunksConfig>(
            "[[inbound]]\nname='x'\nallowed_sources=['nope']\n"
        )
        .is_err());
        assert!(toml::from_str::<TrunksConfig>(
            "[[outbound]]\nname='x'\nhost='h'\ntransport='tls'\n"
        )
        .is_err());
        assert!(
            toml::from_str::<TrunksConfig>("[[outbound]]\nname='x'\nhost='h'\ntypo=1\n").is_err()
        );
    }

    #[test]
    fn sip_dial_goes_straight_to_the_uri() {
        let t =
            SipTarget::parse("sip:alice@192.0.2.33:5070;transport=tcp?X-Custom=a%20b&X-Other=2")
                .unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("192.0.2.33", 5070, Transport::Tcp)
        );
        assert_eq!(
            t.headers,
            vec![
                ("X-Custom".to_owned(), "a b".to_owned()),
                ("X-Other".to_owned(), "2".to_owned())
            ]
        );
        let inv = t
            .invite(
                "192.0.2.33:5070".parse().unwrap(),
                "+15550001111",
                "198.51.100.1",
                Some("alice"),
                Some("pw"),
                DialOptions {
                    sdp: "v=0\r\n".into(),
                    headers: vec![("X-App".into(), "3".into())],
                    ring_timeout: None,
                },
            )
            .unwrap();
        assert_eq!(
            inv.target.to_string(),
            "sip:alice@192.0.2.33:5070;transport=tcp"
        );
        assert_eq!(inv.transport, Transport::Tcp);
        assert_eq!(inv.from.to_string(), "<sip:+15550001111@198.51.100.1>");
        assert_eq!(inv.to.unwrap().to_string(), "<sip:alice@192.0.2.33:5070>");
        assert_eq!(inv.credentials.unwrap().username, "alice");
        assert_eq!(inv.headers.len(), 3);
        let plain = SipTarget::parse("sip:bob@example.com").unwrap();
        assert_eq!((plain.port, plain.transport), (5060, Transport::Udp));
        let v6 = SipTarget::parse("sip:bob@[2001:db8::1]:5062").unwrap();
        assert_eq!(v6.host, "2001:db8::1");
        for bad in [
            "sips:bob@example.com",
            "sip:bob@example.com;transport=tls",
            "tel:+1555",
            "bob",
        ] {
            assert!(SipTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn resolve_literals_and_names() {
        assert_eq!(
            resolve("192.0.2.1", 5060).await.unwrap(),
            "192.0.2.1:5060".parse().unwrap()
        );
        assert_eq!(
            resolve("[2001:db8::1]", 5061).await.unwrap(),
            "[2001:db8::1]:5061".parse().unwrap()
        );
        let local = resolve("localhost", 5060).await.unwrap();
        assert!(local.ip().is_loopback());
        assert!(resolve("no-such-host.invalid", 5060).await.is_err());
    }
}

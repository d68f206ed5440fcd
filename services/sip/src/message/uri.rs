//! URIs: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), and any other absolute URI kept
//! opaque (so that a request for an unknown scheme parses and can be answered 416).
//!
//! Components are stored as they appeared on the wire (still %-escaped) so a URI is written
//! back unchanged; the `*_decoded` accessors give the unescaped values.

use std::fmt;
use std::net::IpAddr;

use super::syntax::{
    is_hostname_char, is_ipv6_char, is_token_char, is_visible, percent_decode_str,
};

/// Why a URI did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("URI has no scheme")]
    NoScheme,
    #[error("URI scheme {0:?} is not valid")]
    BadScheme(String),
    #[error("URI is empty after the scheme")]
    Empty,
    #[error("invalid character {0:?} in URI")]
    BadChar(char),
    #[error("URI host is missing or invalid")]
    BadHost,
    #[error("URI port is invalid")]
    BadPort,
    #[error("URI parameter with an empty name")]
    EmptyParam,
    #[error("URI header with an empty name")]
    EmptyHeader,
}

/// One `;name[=value]` parameter. Values keep their wire form (escapes, quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// An ordered parameter list with case-insensitive name lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// `Some(Some(v))` for `name=v`, `Some(None)` for a bare `name`, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The value of `name=value`, ignoring valueless occurrences.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Replaces the first parameter called `name` or appends it.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        if let Some(p) = self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            p.value = value;
        } else {
            self.0.push(Param {
                name: name.to_owned(),
                value,
            });
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            match &p.value {
                Some(v) => write!(f, ";{}={}", p.name, v)?,
                None => write!(f, ";{}", p.name)?,
            }
        }
        Ok(())
    }
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// User part as on the wire (may contain `%` escapes and even `;`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host as on the wire; IPv6 references keep their brackets.
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
    /// `?name=value&...` headers, escaped form.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// A plain `sip:[user@]host[:port]` URI.
    pub fn new(user: Option<&str>, host: &str, port: Option<u16>) -> Self {
        SipUri {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host: host.to_owned(),
            port,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// The user part with `%HH` escapes decoded.
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().map(percent_decode_str)
    }

    /// The host as an IP address, when it is a literal.
    pub fn host_ip(&self) -> Option<IpAddr> {
        parse_host_ip(&self.host)
    }

    /// Port, or the scheme default (5060, 5061 for sips).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 5061 } else { 5060 })
    }

    fn parse(secure: bool, rest: &str) -> Result<SipUri, UriError> {
        if rest.is_empty() {
            return Err(UriError::Empty);
        }
        // The grammar allows no `@` outside the userinfo (unescaped), so the first one ends
        // it. Users may contain `;`, `?` and `/` (RFC 4475 §3.1.1.2 and §3.1.1.9).
        let (userinfo, hostpart) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(ui) => {
                let (u, p) = match ui.find(':') {
                    Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                    None => (ui, None),
                };
                check_chars(u, is_user_char)?;
                if let Some(p) = p {
                    check_chars(p, is_user_char)?;
                }
                (Some(u.to_owned()), p.map(str::to_owned))
            }
            None => (None, None),
        };
        let host_end = hostpart.find([';', '?']).unwrap_or(hostpart.len());
        let (host, port) = parse_hostport(&hostpart[..host_end])?;
        let mut rest = &hostpart[host_end..];
        let mut params = Params::new();
        while let Some(r) = rest.strip_prefix(';') {
            let end = r.find([';', '?']).unwrap_or(r.len());
            let p = &r[..end];
            let (name, value) = match p.find('=') {
                Some(i) => (&p[..i], Some(&p[i + 1..])),
                None => (p, None),
            };
            if name.is_empty() {
                return Err(UriError::EmptyParam);
            }
            check_chars(name, is_param_char)?;
            if let Some(v) = value {
                check_chars(v, is_param_char)?;
            }
            params.0.push(Param {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            });
            rest = &r[end..];
        }
        let mut headers = Vec::new();
        if let Some(h) = rest.strip_prefix('?') {
            for item in h.split('&') {
                let (name, value) = match item.find('=') {
                    Some(i) => (&item[..i], &item[i + 1..]),
                    None => (item, ""),
                };
                if name.is_empty() {
                    return Err(UriError::EmptyHeader);
                }
                check_chars(name, is_header_char)?;
                check_chars(value, is_header_char)?;
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{}={}", if i == 0 { '?' } else { '&' }, n, v)?;
        }
        Ok(())
    }
}

/// A `tel:` URI (RFC 3966): the number and its parameters, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: String,
    pub params: Params,
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}{}", self.number, self.params)
    }
}

/// Any URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Another scheme, kept opaque: `scheme` and everything after the colon.
    Other {
        scheme: String,
        rest: String,
    },
}

impl Uri {
    /// Parses an absolute URI. Whitespace and `<>"` are never part of a URI.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        let colon = s.find(':').ok_or(UriError::NoScheme)?;
        let scheme = &s[..colon];
        let rest = &s[colon + 1..];
        let valid_scheme = scheme
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(UriError::BadScheme(scheme.chars().take(32).collect()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii() || !is_visible(*c as u8) || matches!(c, '<' | '>' | '"'))
        {
            return Err(UriError::BadChar(c));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse(false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(true, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            let end = rest.find(';').unwrap_or(rest.len());
            let number = &rest[..end];
            if number.is_empty() {
                return Err(UriError::Empty);
            }
            let mut params = Params::new();
            for p in rest[end..].split(';').skip(1) {
                let (name, value) = match p.find('=') {
                    Some(i) => (&p[..i], Some(&p[i + 1..])),
                    None => (p, None),
                };
                if name.is_empty() {
                    return Err(UriError::EmptyParam);
                }
                params.0.push(Param {
                    name: name.to_owned(),
                    value: value.map(str::to_owned),
                });
            }
            Ok(Uri::Tel(TelUri {
                number: number.to_owned(),
                params,
            }))
        } else {
            if rest.is_empty() {
                return Err(UriError::Empty);
            }
            Ok(Uri::Other {
                scheme: scheme.to_owned(),
                rest: rest.to_owned(),
            })
        }
    }

    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The "user" of the URI: the decoded user part of a SIP URI, or a tel number.
    pub fn user(&self) -> Option<String> {
        match self {
            Uri::Sip(u) => u.user_decoded(),
            Uri::Tel(t) => Some(t.number.clone()),
            Uri::Other { .. } => None,
        }
    }

    /// URI parameters (SIP and tel URIs).
    pub fn params(&self) -> Option<&Params> {
        match self {
            Uri::Sip(u) => Some(&u.params),
            Uri::Tel(t) => Some(&t.params),
            Uri::Other { .. } => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(t) => t.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

/// Parses `host[:port]`; host is a name, an IPv4 literal or a bracketed IPv6 reference.
pub(crate) fn parse_hostport(s: &str) -> Result<(String, Option<u16>), UriError> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let close = r.find(']').ok_or(UriError::BadHost)?;
        let inner = &r[..close];
        if inner.is_empty() || !inner.bytes().all(is_ipv6_char) {
            return Err(UriError::BadHost);
        }
        let after = &r[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UriError::BadHost),
        };
        (&s[..close + 2], port)
    } else {
        match s.find(':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && !host.bytes().all(is_hostname_char)) {
        return Err(UriError::BadHost);
    }
    let port = match port {
        Some(p) => Some(parse_port(p).ok_or(UriError::BadPort)?),
        None => None,
    };
    Ok((host.to_owned(), port))
}

pub(crate) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok()
}

/// A host string (possibly bracketed IPv6) as an IP address.
pub fn parse_host_ip(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

fn check_chars(s: &str, ok: impl Fn(u8) -> bool) -> Result<(), UriError> {
    match s.bytes().find(|c| !ok(*c)) {
        Some(c) => Err(UriError::BadChar(c as char)),
        None => Ok(()),
    }
}

/// Userinfo characters: unreserved, escaped and user-unreserved (`&=+$,;?/`). Checked
/// loosely: any visible character that cannot end or confuse the URI.
fn is_user_char(c: u8) -> bool {
    is_visible(c) && !matches!(c, b'@' | b'<' | b'>' | b'"' | b':')
}

fn is_param_char(c: u8) -> bool {
    is_visible(c) && !matches!(c, b';' | b'?' | b'<' | b'>' | b'"' | b'@' | b',')
        || is_token_char(c)
}

fn is_header_char(c: u8) -> bool {
    is_visible(c) && !matches!(c, b'&' | b'<' | b'>' | b'"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_sip_uri() {
        let u =
            Uri::parse("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&X=1").unwrap();
        let s = u.as_sip().unwrap();
        assert!(s.secure);
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.host, "[2001:db8::1]");
        assert_eq!(s.port, Some(5061));
        assert_eq!(s.params.value("transport"), Some("tcp"));
        assert_eq!(s.params.get("lr"), Some(None));
        assert_eq!(s.headers.len(), 2);
        assert_eq!(
            u.to_string(),
            "sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi&X=1"
        );
        assert!(s.host_ip().is_some());
    }

    #[test]
    fn user_may_contain_semicolon_and_escapes() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user().as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.as_sip().unwrap().host, "example.com");
    }

    #[test]
    fn tel_and_other_schemes() {
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.user().as_deref(), Some("+1-201-555-0123"));
        assert_eq!(
            t.params().unwrap().value("phone-context"),
            Some("example.com")
        );
        let o = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(o.scheme(), "soap.beep");
        assert_eq!(o.to_string(), "soap.beep://192.0.2.103:3002");
    }

    #[test]
    fn rejects_bad_uris() {
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:").is_err());
        assert!(Uri::parse("sip:host:99999").is_err());
        assert!(Uri::parse("sip:host;;x").is_err());
        assert!(Uri::parse("sip:a b@host").is_err());
        assert!(Uri::parse("nocolon").is_err());
        assert!(Uri::parse("1abc:x").is_err());
    }
}

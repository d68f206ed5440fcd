//! Header names (with compact forms), the ordered header list of a message, and typed views
//! of the headers the stack itself needs: `Via`, `CSeq`, name-addr headers (`From`, `To`,
//! `Contact`, `Route`, `Record-Route`, ...).
//!
//! Header values are stored as unfolded text exactly as received; typed views are parsed on
//! demand, so an unusual header the stack never looks at can never make a message fail.

use std::fmt;

use super::syntax::{is_token, is_token_char, is_ws, split_list, unquote, Cursor};
use super::uri::{parse_port, Param, Params, Uri, UriError};
use super::Method;

/// A header field name. Known names (including compact forms, matched case-insensitively)
/// map to variants; anything else is kept as written in `Other`.
#[derive(Debug, Clone)]
pub enum HeaderName {
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    Allow,
    AllowEvents,
    Authorization,
    CallId,
    CallInfo,
    Contact,
    ContentDisposition,
    ContentEncoding,
    ContentLength,
    ContentType,
    CSeq,
    Date,
    Diversion,
    Event,
    Expires,
    From,
    HistoryInfo,
    Identity,
    MaxForwards,
    MinSe,
    PAssertedIdentity,
    PPreferredIdentity,
    Privacy,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyRequire,
    RAck,
    Reason,
    RecordRoute,
    ReferTo,
    ReferredBy,
    RemotePartyId,
    Require,
    RetryAfter,
    Route,
    RSeq,
    Server,
    SessionExpires,
    Subject,
    Supported,
    Timestamp,
    To,
    Unsupported,
    UserAgent,
    Via,
    Warning,
    WwwAuthenticate,
    Other(String),
}

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ;)*) => {
        impl HeaderName {
            /// Canonical spelling (full form) used when writing messages.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s,
                }
            }

            /// Maps a received name (any case, compact or full form) to a `HeaderName`.
            pub fn parse(name: &str) -> HeaderName {
                $(
                    if name.eq_ignore_ascii_case($canon) $( || name.eq_ignore_ascii_case($compact) )? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(name.to_owned())
            }
        }
    };
}

header_names! {
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    Allow => "Allow";
    AllowEvents => "Allow-Events", "u";
    Authorization => "Authorization";
    CallId => "Call-ID", "i";
    CallInfo => "Call-Info";
    Contact => "Contact", "m";
    ContentDisposition => "Content-Disposition";
    ContentEncoding => "Content-Encoding", "e";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    CSeq => "CSeq";
    Date => "Date";
    Diversion => "Diversion";
    Event => "Event", "o";
    Expires => "Expires";
    From => "From", "f";
    HistoryInfo => "History-Info";
    Identity => "Identity", "y";
    MaxForwards => "Max-Forwards";
    MinSe => "Min-SE";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    Privacy => "Privacy";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyRequire => "Proxy-Require";
    RAck => "RAck";
    Reason => "Reason";
    RecordRoute => "Record-Route";
    ReferTo => "Refer-To", "r";
    ReferredBy => "Referred-By", "b";
    RemotePartyId => "Remote-Party-ID";
    Require => "Require";
    RetryAfter => "Retry-After";
    Route => "Route";
    RSeq => "RSeq";
    Server => "Server";
    SessionExpires => "Session-Expires", "x";
    Subject => "Subject", "s";
    Supported => "Supported", "k";
    Timestamp => "Timestamp";
    To => "To", "t";
    Unsupported => "Unsupported";
    UserAgent => "User-Agent";
    Via => "Via", "v";
    Warning => "Warning";
    WwwAuthenticate => "WWW-Authenticate";
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}
impl Eq for HeaderName {}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::parse(s)
    }
}

/// One header line (after unfolding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: String,
}

/// The headers of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

/// A header that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("multiple {0} headers")]
    Multiple(&'static str),
    #[error("invalid {header} header: {detail}")]
    Invalid {
        header: &'static str,
        detail: String,
    },
}

impl HeaderError {
    fn invalid(header: &'static str, detail: impl fmt::Display) -> Self {
        HeaderError::Invalid {
            header,
            detail: detail.to_string(),
        }
    }

    /// The header this error is about.
    pub fn header(&self) -> &'static str {
        match self {
            HeaderError::Missing(h) | HeaderError::Multiple(h) => h,
            HeaderError::Invalid { header, .. } => header,
        }
    }
}

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Replaces every occurrence of `name` with one header (at the first one's position).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut seen = false;
                self.0.retain(|h| {
                    if h.name == name {
                        let keep = !seen;
                        seen = true;
                        keep
                    } else {
                        true
                    }
                });
            }
            None => self.push(name, value),
        }
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| h.name != *name);
    }

    /// First value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name == *name)
            .map(|h| h.value.as_str())
    }

    /// Every header line called `name`.
    pub fn get_all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.clone();
        self.0
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_str())
    }

    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| h.name == *name).count()
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| h.name == *name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// All comma-separated elements of every `name` header, in order.
    pub fn list<'a>(&'a self, name: &HeaderName) -> Vec<&'a str> {
        self.get_all(name).flat_map(split_list).collect()
    }

    /// Whether a list header (Supported, Require, Allow, ...) contains `option`
    /// (case-insensitive).
    pub fn list_contains(&self, name: &HeaderName, option: &str) -> bool {
        self.list(name)
            .iter()
            .any(|o| o.eq_ignore_ascii_case(option))
    }

    fn single(&self, name: HeaderName, label: &'static str) -> Result<&str, HeaderError> {
        let mut it = self.get_all(&name);
        let first = it.next().ok_or(HeaderError::Missing(label))?;
        if it.next().is_some() {
            return Err(HeaderError::Multiple(label));
        }
        Ok(first)
    }

    /// `Call-ID` (exactly one, non-empty).
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        let v = self.single(HeaderName::CallId, "Call-ID")?;
        if v.is_empty() || v.bytes().any(is_ws) {
            return Err(HeaderError::invalid(
                "Call-ID",
                "empty or contains whitespace",
            ));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.single(HeaderName::CSeq, "CSeq")?)
    }

    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.single(HeaderName::From, "From")?)
            .map_err(|e| HeaderError::invalid("From", e))
    }

    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.single(HeaderName::To, "To")?)
            .map_err(|e| HeaderError::invalid("To", e))
    }

    /// Every Via, top first.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let list = self.list(&HeaderName::Via);
        if list.is_empty() {
            return Err(HeaderError::Missing("Via"));
        }
        list.into_iter()
            .map(|v| Via::parse(v).map_err(|e| HeaderError::invalid("Via", e)))
            .collect()
    }

    pub fn top_via(&self) -> Result<Via, HeaderError> {
        let first = self
            .get(&HeaderName::Via)
            .ok_or(HeaderError::Missing("Via"))?;
        let top = split_list(first).into_iter().next().unwrap_or("");
        Via::parse(top).map_err(|e| HeaderError::invalid("Via", e))
    }

    /// Replaces the top Via (the first element of the first Via header) with `via`.
    pub fn replace_top_via(&mut self, via: &Via) {
        if let Some(h) = self.0.iter_mut().find(|h| h.name == HeaderName::Via) {
            let elems = split_list(&h.value);
            let mut out = via.to_string();
            for e in elems.iter().skip(1) {
                out.push_str(", ");
                out.push_str(e);
            }
            h.value = out;
        }
    }

    /// Every Contact element (`*` or a name-addr).
    pub fn contacts(&self) -> Result<Vec<Contact>, HeaderError> {
        let mut out = Vec::new();
        for v in self.list(&HeaderName::Contact) {
            if v == "*" {
                out.push(Contact::Wildcard);
            } else {
                out.push(Contact::Addr(
                    NameAddr::parse(v).map_err(|e| HeaderError::invalid("Contact", e))?,
                ));
            }
        }
        Ok(out)
    }

    /// The URI of the single Contact, if there is one.
    pub fn contact_uri(&self) -> Result<Option<Uri>, HeaderError> {
        Ok(self.contacts()?.into_iter().find_map(|c| match c {
            Contact::Addr(a) => Some(a.uri),
            Contact::Wildcard => None,
        }))
    }

    /// `Record-Route` entries in order (raw elements, for copying into a route set).
    pub fn record_route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.name_addr_list(HeaderName::RecordRoute, "Record-Route")
    }

    pub fn route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.name_addr_list(HeaderName::Route, "Route")
    }

    fn name_addr_list(
        &self,
        name: HeaderName,
        label: &'static str,
    ) -> Result<Vec<NameAddr>, HeaderError> {
        self.list(&name)
            .into_iter()
            .map(|v| NameAddr::parse(v).map_err(|e| HeaderError::invalid(label, e)))
            .collect()
    }

    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        match self.get(&HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => {
                if self.count(&HeaderName::MaxForwards) > 1 {
                    return Err(HeaderError::Multiple("Max-Forwards"));
                }
                parse_small_number(v, 255)
                    .map(|n| Some(n as u8))
                    .ok_or_else(|| HeaderError::invalid("Max-Forwards", "not a number 0-255"))
            }
        }
    }

    /// Content-Type media type without parameters, lowercased (`application/sdp`).
    pub fn content_type(&self) -> Option<String> {
        self.get(&HeaderName::ContentType).map(media_type_of)
    }

    /// `Session-Expires` delta seconds and `refresher` parameter.
    pub fn session_expires(&self) -> Result<Option<SessionExpires>, HeaderError> {
        match self.get(&HeaderName::SessionExpires) {
            None => Ok(None),
            Some(v) => SessionExpires::parse(v)
                .map(Some)
                .ok_or_else(|| HeaderError::invalid("Session-Expires", "bad delta-seconds")),
        }
    }

    /// `Min-SE` delta seconds.
    pub fn min_se(&self) -> Result<Option<u32>, HeaderError> {
        match self.get(&HeaderName::MinSe) {
            None => Ok(None),
            Some(v) => {
                let n = v.split(';').next().unwrap_or("").trim();
                parse_small_number(n, u32::MAX as u64)
                    .map(|n| Some(n as u32))
                    .ok_or_else(|| HeaderError::invalid("Min-SE", "bad delta-seconds"))
            }
        }
    }
}

/// The media type of a Content-Type value without parameters, lowercased.
pub fn media_type_of(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
        .replace([' ', '\t'], "")
}

fn parse_small_number(v: &str, max: u64) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = v.trim_start_matches('0');
    if digits.len() > 20 {
        return None;
    }
    let n: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    (n <= max).then_some(n)
}

/// `CSeq: <number> <method>`; the number must fit in 32 bits (RFC 3261 §8.1.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(v: &str) -> Result<CSeq, HeaderError> {
        let mut c = Cursor::new(v.trim());
        let digits = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_small_number(digits, u32::MAX as u64)
            .ok_or_else(|| HeaderError::invalid("CSeq", "sequence number not in 0..2^32-1"))?
            as u32;
        if !c.skip_ws() {
            return Err(HeaderError::invalid("CSeq", "missing method"));
        }
        let m = c.rest().trim();
        let method = Method::parse(m).map_err(|_| HeaderError::invalid("CSeq", "bad method"))?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// `Session-Expires` (RFC 4028).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta_seconds: u32,
    /// `uac`, `uas` or absent.
    pub refresher: Option<String>,
}

impl SessionExpires {
    fn parse(v: &str) -> Option<SessionExpires> {
        let mut parts = v.split(';');
        let n = parse_small_number(parts.next()?.trim(), u32::MAX as u64)? as u32;
        let mut refresher = None;
        for p in parts {
            let mut kv = p.splitn(2, '=');
            let k = kv.next().unwrap_or("").trim();
            if k.eq_ignore_ascii_case("refresher") {
                refresher = kv.next().map(|r| r.trim().to_ascii_lowercase());
            }
        }
        Some(SessionExpires {
            delta_seconds: n,
            refresher,
        })
    }
}

/// A name-addr or addr-spec with header parameters: the value of `From`, `To`, `Contact`,
/// `Route`, `Record-Route`, `Diversion`, `P-Asserted-Identity`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display_name: Option<String>,
    pub uri: Uri,
    /// Header parameters (after the URI): `tag`, `expires`, `q`, `lr`...
    pub params: Params,
}

/// Why a name-addr did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameAddrError {
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("display name must be tokens or a quoted string")]
    BadDisplayName,
    #[error("missing '>'")]
    MissingAngle,
    #[error("whitespace inside <>")]
    SpaceInAngle,
    #[error("addr-spec must not contain ',', '?' or ';' in the URI; use <>")]
    AmbiguousAddrSpec,
    #[error("bad URI: {0}")]
    Uri(#[from] UriError),
    #[error("bad parameter syntax")]
    BadParam,
    #[error("empty value")]
    Empty,
}

impl NameAddr {
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display_name: None,
            uri,
            params: Params::new(),
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    pub fn parse(v: &str) -> Result<NameAddr, NameAddrError> {
        let v = v.trim_matches(|c: char| c == ' ' || c == '\t');
        if v.is_empty() {
            return Err(NameAddrError::Empty);
        }
        let mut c = Cursor::new(v);
        let mut display_name = None;
        let uri;
        if c.peek() == Some(b'"') {
            let raw = c.quoted_raw().ok_or(NameAddrError::UnterminatedQuote)?;
            display_name = Some(unquote(raw));
            c.skip_ws();
            uri = parse_angle_uri(&mut c)?;
        } else if let Some(lt) = find_unquoted_angle(v) {
            let dn = v[..lt].trim_matches(|c: char| c == ' ' || c == '\t');
            if !dn.is_empty() {
                if !dn
                    .split([' ', '\t'])
                    .filter(|w| !w.is_empty())
                    .all(is_token)
                {
                    return Err(NameAddrError::BadDisplayName);
                }
                display_name = Some(dn.to_owned());
            }
            c.pos = lt;
            uri = parse_angle_uri(&mut c)?;
        } else {
            // addr-spec: the URI ends at the first ';' (the rest are header params) or at
            // whitespace. A '?' or ',' would be ambiguous (RFC 3261 §20.10).
            let end = v.find([';', ' ', '\t']).unwrap_or(v.len());
            let spec = &v[..end];
            if spec.contains(['?', ',']) {
                return Err(NameAddrError::AmbiguousAddrSpec);
            }
            uri = Uri::parse(spec)?;
            c.pos = end;
        }
        let params = parse_header_params(&mut c)?;
        Ok(NameAddr {
            display_name,
            uri,
            params,
        })
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display_name {
            write!(f, "{} ", super::syntax::quote(d))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

fn find_unquoted_angle(v: &str) -> Option<usize> {
    let mut in_q = false;
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_q => i += 1,
            b'"' => in_q = !in_q,
            b'<' if !in_q => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_angle_uri(c: &mut Cursor<'_>) -> Result<Uri, NameAddrError> {
    if !c.eat(b'<') {
        return Err(NameAddrError::BadDisplayName);
    }
    let rest = c.rest();
    let close = rest.find('>').ok_or(NameAddrError::MissingAngle)?;
    let inner = &rest[..close];
    if inner.starts_with([' ', '\t']) || inner.ends_with([' ', '\t']) {
        return Err(NameAddrError::SpaceInAngle);
    }
    let uri = Uri::parse(inner)?;
    c.pos += close + 1;
    Ok(uri)
}

/// `*( SEMI generic-param )` with LWS allowed around `;` and `=`.
pub(crate) fn parse_header_params(c: &mut Cursor<'_>) -> Result<Params, NameAddrError> {
    let mut params = Params::new();
    loop {
        c.skip_ws();
        if c.at_end() {
            return Ok(params);
        }
        if !c.eat(b';') {
            return Err(NameAddrError::BadParam);
        }
        c.skip_ws();
        let name = c.token().ok_or(NameAddrError::BadParam)?;
        c.skip_ws();
        let value = if c.eat(b'=') {
            c.skip_ws();
            if c.peek() == Some(b'"') {
                Some(
                    c.quoted_raw()
                        .ok_or(NameAddrError::UnterminatedQuote)?
                        .to_owned(),
                )
            } else {
                let v = c.take_while(|b| is_token_char(b) || matches!(b, b':' | b'[' | b']'));
                if v.is_empty() {
                    return Err(NameAddrError::BadParam);
                }
                Some(v.to_owned())
            }
        } else {
            None
        };
        params.0.push(Param {
            name: name.to_owned(),
            value,
        });
    }
}

/// A Contact header element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Wildcard,
    Addr(NameAddr),
}

/// One Via element: `SIP/2.0/UDP host:port;branch=...;received=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub protocol: String,
    pub version: String,
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    pub fn parse(v: &str) -> Result<Via, NameAddrError> {
        let mut c = Cursor::new(v);
        c.skip_ws();
        let protocol = c.token().ok_or(NameAddrError::BadParam)?;
        c.skip_ws();
        if !c.eat(b'/') {
            return Err(NameAddrError::BadParam);
        }
        c.skip_ws();
        let version = c.token().ok_or(NameAddrError::BadParam)?;
        c.skip_ws();
        if !c.eat(b'/') {
            return Err(NameAddrError::BadParam);
        }
        c.skip_ws();
        let transport = c.token().ok_or(NameAddrError::BadParam)?;
        if !c.skip_ws() {
            return Err(NameAddrError::BadParam);
        }
        let (host, port) = if c.peek() == Some(b'[') {
            let h = c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return Err(NameAddrError::Uri(UriError::BadHost));
            }
            let h = format!("{h}]");
            if h.len() < 3 || !h[1..h.len() - 1].bytes().all(super::syntax::is_ipv6_char) {
                return Err(NameAddrError::Uri(UriError::BadHost));
            }
            (h, parse_via_port(&mut c)?)
        } else {
            let h = c.take_while(super::syntax::is_hostname_char);
            if h.is_empty() {
                return Err(NameAddrError::Uri(UriError::BadHost));
            }
            (h.to_owned(), parse_via_port(&mut c)?)
        };
        let params = parse_header_params(&mut c)?;
        Ok(Via {
            protocol: protocol.to_owned(),
            version: version.to_owned(),
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// Whether the branch carries the RFC 3261 magic cookie (and something after it: a bare
    /// cookie, RFC 4475 §3.2.1, is treated as an RFC 2543 branch).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// `host:port` as written, used for transaction matching.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host.to_ascii_lowercase(), p),
            None => self.host.to_ascii_lowercase(),
        }
    }

    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// `Some(None)` for a bare `rport`, `Some(Some(p))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(parse_port))
    }
}

fn parse_via_port(c: &mut Cursor<'_>) -> Result<Option<u16>, NameAddrError> {
    let save = c.pos;
    c.skip_ws();
    if c.eat(b':') {
        c.skip_ws();
        let p = c.take_while(|b| b.is_ascii_digit());
        parse_port(p)
            .map(Some)
            .ok_or(NameAddrError::Uri(UriError::BadPort))
    } else {
        c.pos = save;
        Ok(None)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} {}",
            self.protocol, self.version, self.transport, self.host
        )?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("vIa"), HeaderName::Via);
        assert_eq!(HeaderName::parse("I"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("k"), HeaderName::Supported);
        assert_eq!(HeaderName::parse("x"), HeaderName::SessionExpires);
        assert_eq!(HeaderName::parse("X-Foo"), HeaderName::parse("x-foo"));
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
    }

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse(r#""Alice \"A\"" <sip:alice@example.com>;tag=abc"#).unwrap();
        assert_eq!(a.display_name.as_deref(), Some(r#"Alice "A""#));
        assert_eq!(a.tag(), Some("abc"));
        let b = NameAddr::parse("sip:bob@example.com ;  tag  = 99").unwrap();
        assert_eq!(b.tag(), Some("99"));
        let c = NameAddr::parse("Bob Smith<sip:bob@x>").unwrap();
        assert_eq!(c.display_name.as_deref(), Some("Bob Smith"));
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
        assert!(NameAddr::parse("< sip:a@b >").is_err());
        assert!(NameAddr::parse(r#""unterminated <sip:a@b>"#).is_err());
        assert!(NameAddr::parse("sip:a@b?Route=x").is_err());
        assert!(NameAddr::parse("<sip:a@b>;;").is_err());
        let t = NameAddr::parse("<tel:+15551234567>").unwrap();
        assert_eq!(t.uri.user().as_deref(), Some("+15551234567"));
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert!(!v.is_rfc3261_branch());
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKx;rport").unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert!(v.is_rfc3261_branch());
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKx;rport"
        );
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("").is_err());
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert_eq!(CSeq::parse("4294967295 BYE").unwrap().seq, u32::MAX);
        assert!(CSeq::parse("4294967296 BYE").is_err());
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1INVITE").is_err());
        assert!(CSeq::parse("INVITE").is_err());
    }
}

//! Framing and lexing: start line, header lines (with LWS folding undone and compact names
//! understood), and the body framed by `Content-Length`.
//!
//! Datagram rules (RFC 3261 §18.3): a body longer than `Content-Length` is truncated (the
//! rest of the datagram is ignored, RFC 4475 §3.1.1.8); a shorter one is an error; with no
//! `Content-Length` the body runs to the end of the datagram. Stream rules: the header block
//! must be complete and `Content-Length` (0 when absent) bytes of body must have arrived.
//!
//! When a message is malformed but its header block could be read, the failure carries those
//! headers ([`PartialMessage`]) so that the caller can still answer 400 to a request.

use super::headers::{Header, HeaderName, Headers};
use super::syntax::{is_token, is_ws};
use super::uri::{Uri, UriError};
use super::{Method, Request, Response, SipMessage};

/// Largest header block accepted from a stream before the connection is considered broken.
const MAX_STREAM_HEAD: usize = 64 * 1024;
/// Largest body accepted from a stream.
const MAX_STREAM_BODY: usize = 4 * 1024 * 1024;

/// A successfully framed datagram or stream chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Message(SipMessage),
    /// Only CR/LF (RFC 5626 keep-alive) or nothing at all.
    KeepAlive,
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    #[error("unsupported SIP version {0}")]
    UnsupportedVersion(String),
    #[error("method is not a token")]
    BadMethod,
    #[error("invalid Request-URI: {0}")]
    BadRequestUri(UriError),
    #[error("invalid status code")]
    BadStatusCode,
    #[error("malformed header line {0}")]
    BadHeaderLine(usize),
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("multiple Content-Length headers")]
    MultipleContentLength,
    #[error("Content-Length {declared} exceeds the {available}-byte body")]
    BodyTooShort { declared: usize, available: usize },
    #[error("message too large")]
    TooLarge,
}

impl ParseError {
    /// The status a UAS answers with (400, or 505 for an unsupported version).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion(_) => 505,
            _ => 400,
        }
    }

    /// A reason phrase naming the problem.
    pub fn reason(&self) -> String {
        match self {
            ParseError::UnsupportedVersion(_) => "Version Not Supported".to_owned(),
            other => format!("Bad Request ({other})"),
        }
    }
}

/// What could be read of a malformed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialMessage {
    /// The start line did not begin with `SIP/`.
    pub is_request: bool,
    /// The method, when the start line had a valid one.
    pub method: Option<Method>,
    pub headers: Headers,
}

/// A parse error plus whatever could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ParseFailure {
    pub error: ParseError,
    pub partial: Option<PartialMessage>,
}

impl ParseFailure {
    fn bare(error: ParseError) -> Self {
        ParseFailure {
            error,
            partial: None,
        }
    }
}

/// Parses one UDP datagram.
pub fn parse_datagram(buf: &[u8]) -> Result<Parsed, ParseFailure> {
    let start = skip_leading_crlf(buf);
    if start == buf.len() {
        return Ok(Parsed::KeepAlive);
    }
    let (head_end, body_start) = split_head(buf, start);
    let body_region = match body_start {
        Some(b) => &buf[b..],
        None => &[][..],
    };
    let lexed = lex(&buf[start..head_end]);
    finish(lexed, |content_length| match content_length {
        None => Ok(body_region.to_vec()),
        Some(n) if n <= body_region.len() => Ok(body_region[..n].to_vec()),
        Some(n) => Err(ParseError::BodyTooShort {
            declared: n,
            available: body_region.len(),
        }),
    })
}

/// Parses the front of a stream buffer. `Ok(None)`: more bytes are needed. `Ok(Some((p, n)))`:
/// `p` was read from the first `n` bytes. An error means the stream cannot be resynchronised
/// (the connection should be closed after answering, if possible).
pub fn parse_stream(buf: &[u8]) -> Result<Option<(Parsed, usize)>, ParseFailure> {
    let start = skip_leading_crlf(buf);
    if start == buf.len() {
        if start >= 2 {
            return Ok(Some((Parsed::KeepAlive, start)));
        }
        return Ok(None);
    }
    let (head_end, body_start) = split_head(buf, start);
    let Some(body_start) = body_start else {
        if buf.len() - start > MAX_STREAM_HEAD {
            return Err(ParseFailure::bare(ParseError::TooLarge));
        }
        return Ok(None);
    };
    let lexed = lex(&buf[start..head_end]);
    let mut needed = None;
    let result = finish(lexed, |content_length| {
        let n = content_length.unwrap_or(0);
        if n > MAX_STREAM_BODY {
            return Err(ParseError::TooLarge);
        }
        let available = buf.len() - body_start;
        if available < n {
            needed = Some(n);
            return Ok(Vec::new());
        }
        Ok(buf[body_start..body_start + n].to_vec())
    });
    match (result, needed) {
        (_, Some(_)) => Ok(None),
        (Ok(p), None) => {
            let consumed = match &p {
                Parsed::Message(m) => body_start + body_len(m),
                Parsed::KeepAlive => start,
            };
            Ok(Some((p, consumed)))
        }
        (Err(e), None) => Err(e),
    }
}

fn body_len(m: &SipMessage) -> usize {
    match m {
        SipMessage::Request(r) => r.body.len(),
        SipMessage::Response(r) => r.body.len(),
    }
}

fn skip_leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// Finds the empty line ending the header block. Returns (end of header text, start of
/// body); `None` for the body when there is no empty line (the header block then runs to
/// the end of the buffer). Accepts CRLF and bare LF line ends.
fn split_head(buf: &[u8], start: usize) -> (usize, Option<usize>) {
    let mut pos = start;
    while pos < buf.len() {
        let Some(i) = buf[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let nl = pos + i;
        let line = &buf[pos..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && pos != start {
            return (pos, Some(nl + 1));
        }
        pos = nl + 1;
    }
    (buf.len(), None)
}

struct Lexed {
    start_line: String,
    headers: Headers,
    first_error: Option<ParseError>,
}

fn lex(head: &[u8]) -> Lexed {
    // Header text is UTF-8 by the grammar, but carriers do send Latin-1 display names:
    // replace the odd byte rather than refuse the call.
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or("").to_owned();
    let mut headers: Vec<Header> = Vec::new();
    let mut first_error = None;
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        if line.as_bytes().first().copied().is_some_and(is_ws) {
            // Folded continuation: LWS becomes one space.
            match headers.last_mut() {
                Some(h) => {
                    let cont = line.trim_matches(|c: char| c == ' ' || c == '\t');
                    let trimmed_len = h.value.trim_end_matches([' ', '\t']).len();
                    h.value.truncate(trimmed_len);
                    if !cont.is_empty() {
                        if !h.value.is_empty() {
                            h.value.push(' ');
                        }
                        h.value.push_str(cont);
                    }
                }
                None => {
                    first_error.get_or_insert(ParseError::BadHeaderLine(n + 2));
                }
            }
            continue;
        }
        let Some(colon) = line.find(':') else {
            first_error.get_or_insert(ParseError::BadHeaderLine(n + 2));
            continue;
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !is_token(name) {
            first_error.get_or_insert(ParseError::BadHeaderLine(n + 2));
            continue;
        }
        let value = line[colon + 1..].trim_matches(|c: char| c == ' ' || c == '\t');
        headers.push(Header {
            name: HeaderName::parse(name),
            value: value.to_owned(),
        });
    }
    Lexed {
        start_line,
        headers: Headers(headers),
        first_error,
    }
}

enum StartLine {
    Request { method: Method, uri: Uri },
    Response { status: u16, reason: String },
}

/// Interprets the start line and frames the body. `body` receives the Content-Length.
fn finish(
    lexed: Lexed,
    body: impl FnOnce(Option<usize>) -> Result<Vec<u8>, ParseError>,
) -> Result<Parsed, ParseFailure> {
    let Lexed {
        start_line,
        headers,
        first_error,
    } = lexed;
    let is_request = !starts_with_ignore_case(&start_line, "SIP/");
    let mut method_seen = None;
    let start = if is_request {
        parse_request_line(&start_line, &mut method_seen)
    } else {
        parse_status_line(&start_line)
    };
    let fail = |error: ParseError, headers: Headers, method: Option<Method>| ParseFailure {
        error,
        partial: Some(PartialMessage {
            is_request,
            method,
            headers,
        }),
    };
    let start = match start {
        Ok(s) => s,
        Err(e) => return Err(fail(e, headers, method_seen)),
    };
    if let Some(e) = first_error {
        return Err(fail(e, headers, method_seen));
    }
    let content_length = match content_length(&headers) {
        Ok(cl) => cl,
        Err(e) => return Err(fail(e, headers, method_seen)),
    };
    let body = match body(content_length) {
        Ok(b) => b,
        Err(e) => return Err(fail(e, headers, method_seen)),
    };
    Ok(Parsed::Message(match start {
        StartLine::Request { method, uri } => SipMessage::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response { status, reason } => SipMessage::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    }))
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let looks_like_version = starts_with_ignore_case(v, "SIP/")
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if looks_like_version {
        Err(ParseError::UnsupportedVersion(v.to_owned()))
    } else {
        Err(ParseError::BadStartLine("bad SIP-Version"))
    }
}

/// `Method SP Request-URI SP SIP-Version`, single spaces, nothing else (RFC 4475 §3.1.2.8-10
/// are answered 400 rather than guessed at).
fn parse_request_line(
    line: &str,
    method_seen: &mut Option<Method>,
) -> Result<StartLine, ParseError> {
    let parts: Vec<&str> = line.split(' ').collect();
    if let Some(m) = parts.first().and_then(|m| Method::parse(m).ok()) {
        *method_seen = Some(m);
    }
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(ParseError::BadStartLine(
            "request line must be Method SP Request-URI SP SIP-Version",
        ));
    }
    if parts.iter().any(|p| p.contains('\t')) {
        return Err(ParseError::BadStartLine("tab in request line"));
    }
    let method = Method::parse(parts[0]).map_err(|_| ParseError::BadMethod)?;
    check_version(parts[2])?;
    let uri = Uri::parse(parts[1]).map_err(ParseError::BadRequestUri)?;
    Ok(StartLine::Request { method, uri })
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`; an empty reason phrase is fine.
fn parse_status_line(line: &str) -> Result<StartLine, ParseError> {
    let (version, rest) = line
        .split_once(' ')
        .ok_or(ParseError::BadStartLine("status line has no status code"))?;
    check_version(version)?;
    let (code, reason) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::BadStatusCode);
    }
    let status: u16 = code.parse().map_err(|_| ParseError::BadStatusCode)?;
    if !(100..=699).contains(&status) {
        return Err(ParseError::BadStatusCode);
    }
    Ok(StartLine::Response {
        status,
        reason: reason.to_owned(),
    })
}

fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut values = headers.get_all(&HeaderName::ContentLength);
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ParseError::MultipleContentLength);
    }
    let v = v.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::BadContentLength);
    }
    v.parse::<u32>()
        .map(|n| Some(n as usize))
        .map_err(|_| ParseError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bytes: &[u8]) -> Request {
        match parse_datagram(bytes) {
            Ok(Parsed::Message(SipMessage::Request(r))) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn folding_and_compact_forms() {
        let r = req(b"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\ni: x\r\nl: 3\r\n\r\nabcdef");
        assert_eq!(
            r.headers.get(&HeaderName::Via),
            Some("SIP/2.0/UDP h ;branch=z9hG4bK1")
        );
        assert_eq!(r.headers.get(&HeaderName::CallId), Some("x"));
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn bare_lf_and_no_content_length() {
        let r = req(b"OPTIONS sip:a@b SIP/2.0\nCall-ID: x\n\nhello");
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn keepalives() {
        assert_eq!(parse_datagram(b"\r\n\r\n"), Ok(Parsed::KeepAlive));
        assert_eq!(parse_datagram(b""), Ok(Parsed::KeepAlive));
    }

    #[test]
    fn short_body_is_an_error_with_headers() {
        let e = parse_datagram(
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 10\r\n\r\nabc",
        )
        .unwrap_err();
        assert!(matches!(
            e.error,
            ParseError::BodyTooShort {
                declared: 10,
                available: 3
            }
        ));
        assert_eq!(e.partial.unwrap().headers.count(&HeaderName::Via), 1);
    }

    #[test]
    fn status_lines() {
        match parse_datagram(b"SIP/2.0 100 \r\n\r\n") {
            Ok(Parsed::Message(SipMessage::Response(r))) => {
                assert_eq!(r.status, 100);
                assert_eq!(r.reason, "");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_datagram(b"SIP/2.0 4294967301 x\r\n\r\n").is_err());
        assert!(parse_datagram(b"SIP/2.0 099 x\r\n\r\n").is_err());
    }

    #[test]
    fn stream_framing() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nhiINVITE";
        let (p, n) = parse_stream(msg).unwrap().unwrap();
        assert!(matches!(p, Parsed::Message(_)));
        assert_eq!(n, msg.len() - 6);
        assert_eq!(
            parse_stream(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhi"),
            Ok(None)
        );
        assert_eq!(parse_stream(b"OPTIONS sip:a@b SIP/2.0\r\nCon"), Ok(None));
        assert_eq!(parse_stream(b"\r\n\r\n"), Ok(Some((Parsed::KeepAlive, 4))));
    }
}

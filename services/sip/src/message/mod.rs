//! The SIP message layer: our own tolerant parser and a serializer for requests and
//! responses (RFC 3261 §7, §20, §25), URIs, typed views of the headers the stack needs,
//! request validation (what a UAS answers 400/505 to), and building responses from requests
//! (§8.2.6).
//!
//! This module owns *syntax*: it never keeps state and never does I/O. It accepts every
//! valid message of RFC 4475 §3.1.1 and rejects the invalid ones of §3.1.2 with a
//! [`ParseError`] or a [`Rejection`] whose reason phrase names the problem.
//!
//! Typical use:
//! ```
//! use dialtone_sip::message::{parse_datagram, Parsed, SipMessage, validate_request};
//! let bytes = b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
//! From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc\r\n\
//! CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
//! let Ok(Parsed::Message(SipMessage::Request(req))) = parse_datagram(bytes) else { panic!() };
//! assert!(validate_request(&req).is_ok());
//! let resp = dialtone_sip::message::response_from_request(&req, 200, None, Some("totag"));
//! assert!(String::from_utf8_lossy(&resp.to_bytes()).starts_with("SIP/2.0 200 OK\r\n"));
//! ```

mod build;
mod headers;
mod multipart;
mod parser;
pub(crate) mod syntax;
mod uri;
mod validate;

use std::fmt;

pub use build::{error_response_from_headers, reason_phrase, response_from_request};
pub use headers::{
    media_type_of, CSeq, Contact, Header, HeaderError, HeaderName, Headers, NameAddr,
    NameAddrError, SessionExpires, Via, MAGIC_COOKIE,
};
pub use multipart::find_body_part;
pub use parser::{parse_datagram, parse_stream, ParseError, ParseFailure, Parsed, PartialMessage};
pub use syntax::{percent_decode, percent_decode_str, quote, split_list};
pub use uri::{parse_host_ip, Param, Params, SipUri, TelUri, Uri, UriError};
pub use validate::{validate_request, validate_response, Rejection};

/// A request method. Methods are case-sensitive tokens; unknown ones are `Extension`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Extension(String),
}

/// A method that is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("method is not a token")]
pub struct BadMethod;

impl Method {
    pub fn parse(s: &str) -> Result<Method, BadMethod> {
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other if syntax::is_token(other) => Method::Extension(other.to_owned()),
            _ => return Err(BadMethod),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// Either kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    Request(Request),
    Response(Response),
}

impl SipMessage {
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for h in headers.iter() {
        // Content-Length is always computed from the body so it can never lie.
        if h.name == HeaderName::ContentLength {
            continue;
        }
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        // A value can never contain CR/LF once parsed; values set by the application are
        // sanitised here so that they cannot inject header lines.
        for &b in h.value.as_bytes() {
            out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

impl Request {
    /// A request with no headers; callers add them.
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Wire form. `Content-Length` is always written and always equals the body length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }

    /// The body as text, when it is UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

impl Response {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Response {
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        let reason: String = self
            .reason
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.status, reason).as_bytes());
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }

    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

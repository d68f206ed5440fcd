//! Webhooks: fetching TwiML and delivering status callbacks the way Twilio does.
//!
//! This module holds the pure part (what a response or failure is, Twilio's error codes,
//! the `#ct=…` connection overrides); [`client`] is the HTTP shell around `reqwest`.

mod client;
mod overrides;

pub use client::{
    CallSession, WebhookClient, WebhookConfig, WebhookError, WebhookRequest, IDEMPOTENCY_HEADER,
    USER_AGENT,
};
pub use overrides::{split_overrides, ConnectionOverrides, RetryOn, Timeouts};

use std::time::Duration;

use dialtone_events::payload::{WebhookRequested, WebhookResponded};

/// Twilio error codes for webhook failures.
pub mod codes {
    /// The URL is not a valid absolute http(s) URL.
    pub const INVALID_URL: u32 = 11100;
    /// Generic retrieval failure: a non-2xx status, a read timeout.
    pub const HTTP_RETRIEVAL_FAILURE: u32 = 11200;
    /// The TCP connection failed or timed out.
    pub const HTTP_CONNECTION_FAILURE: u32 = 11205;
    /// The server broke HTTP (bad response framing).
    pub const HTTP_PROTOCOL_VIOLATION: u32 = 11206;
    /// The host name does not resolve.
    pub const HTTP_BAD_HOST_NAME: u32 = 11210;
    /// More redirects than allowed.
    pub const HTTP_TOO_MANY_REDIRECTS: u32 = 11215;
    /// The TLS handshake failed.
    pub const TLS_HANDSHAKE_ERROR: u32 = 11220;
    /// The server certificate could not be verified.
    pub const CERTIFICATE_INVALID: u32 = 11237;
    /// The TwiML response is larger than Twilio accepts (64 kB).
    pub const RESPONSE_BODY_TOO_LARGE: u32 = 11750;
    /// The document is not well-formed TwiML.
    pub const DOCUMENT_PARSE_FAILURE: u32 = 12100;
    /// The response's Content-Type is not XML.
    pub const INVALID_CONTENT_TYPE: u32 = 12300;
    /// Dialtone extension (Twilio has no code for it): the call kept fetching the same
    /// document without caller input and was ended.
    pub const LOOP_DETECTED: u32 = 90100;
}

/// The concrete reason a webhook failed (Twilio only says 11200; Dialtone says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Not a valid absolute http(s) URL.
    Url,
    Dns,
    Connect,
    Tls,
    Timeout,
    /// A non-2xx response.
    HttpStatus,
    TooManyRedirects,
    BodyTooLarge,
    /// The server broke HTTP.
    Protocol,
    ContentType,
    Parse,
    /// Identical fetches repeated without caller input.
    Loop,
}

impl FailureClass {
    /// The `class` of `twiml.failed` events.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Url => "url",
            FailureClass::Dns => "dns",
            FailureClass::Connect => "connect",
            FailureClass::Tls => "tls",
            FailureClass::Timeout => "timeout",
            FailureClass::HttpStatus => "http-status",
            FailureClass::TooManyRedirects => "redirects",
            FailureClass::BodyTooLarge => "body-too-large",
            FailureClass::Protocol => "protocol",
            FailureClass::ContentType => "content-type",
            FailureClass::Parse => "parse",
            FailureClass::Loop => "loop",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a webhook gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({class}): {message}")]
pub struct WebhookFailure {
    /// Twilio error code (see [`codes`]).
    pub code: u32,
    pub class: FailureClass,
    pub message: String,
}

impl WebhookFailure {
    pub fn new(code: u32, class: FailureClass, message: impl Into<String>) -> Self {
        WebhookFailure {
            code,
            class,
            message: message.into(),
        }
    }
}

/// An HTTP response to a webhook (any status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub content_type: Option<String>,
    /// The body, decoded as UTF-8 (invalid sequences replaced).
    pub body: String,
    /// The URL that answered, after redirects, without the fragment.
    pub final_url: String,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// From the first attempt to the end of the body.
    pub latency: Duration,
}

/// What the interpreter gets back for a `Fetch`: a response (any status) or a failure
/// with no usable response.
pub type FetchResult = Result<WebhookResponse, WebhookFailure>;

/// Whether a Content-Type is one Twilio accepts for TwiML (`text/xml`, `application/xml`,
/// parameters such as `charset` allowed).
pub fn is_twiml_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "text/xml" || essence == "application/xml"
}

/// Checks a response to a TwiML request: a 2xx status (else 11200) and an XML Content-Type
/// (else 12300). Returns the body to parse.
pub fn check_twiml_response(response: &WebhookResponse) -> Result<&str, WebhookFailure> {
    if !(200..300).contains(&response.status) {
        return Err(WebhookFailure::new(
            codes::HTTP_RETRIEVAL_FAILURE,
            FailureClass::HttpStatus,
            format!("HTTP {} from {}", response.status, response.final_url),
        ));
    }
    match response.content_type.as_deref() {
        Some(ct) if is_twiml_content_type(ct) => Ok(&response.body),
        other => Err(WebhookFailure::new(
            codes::INVALID_CONTENT_TYPE,
            FailureClass::ContentType,
            format!(
                "Content-Type {} is not text/xml or application/xml",
                other
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|| "(none)".to_owned())
            ),
        )),
    }
}

/// Largest body kept in a `webhook.responded` event.
pub const EVENT_BODY_LIMIT: usize = 64 * 1024;

/// The `webhook.requested` payload for a request.
pub fn requested_payload(
    request: &WebhookRequest,
    request_id: u32,
    attempt: u32,
) -> WebhookRequested {
    WebhookRequested {
        request_id,
        purpose: request.purpose,
        method: request.method,
        url: request.url.clone(),
        params: request.params.clone(),
        attempt,
    }
}

/// The `webhook.responded` payload for a result (the body truncated to 64 KiB).
pub fn responded_payload(request_id: u32, result: &FetchResult) -> WebhookResponded {
    match result {
        Ok(response) => {
            let mut body = response.body.clone();
            if body.len() > EVENT_BODY_LIMIT {
                let mut cut = EVENT_BODY_LIMIT;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            WebhookResponded {
                request_id,
                status: Some(response.status),
                latency_ms: u64::try_from(response.latency.as_millis()).unwrap_or(u64::MAX),
                content_type: response.content_type.clone(),
                body: Some(body),
                error: None,
            }
        }
        Err(failure) => WebhookResponded {
            request_id,
            status: None,
            latency_ms: 0,
            content_type: None,
            body: None,
            error: Some(failure.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, content_type: Option<&str>) -> WebhookResponse {
        WebhookResponse {
            status,
            content_type: content_type.map(str::to_owned),
            body: "<Response/>".into(),
            final_url: "https://x/".into(),
            attempts: 1,
            latency: Duration::from_millis(3),
        }
    }

    #[test]
    fn twiml_responses_need_2xx_and_xml() {
        assert_eq!(
            check_twiml_response(&response(200, Some("text/xml"))),
            Ok("<Response/>")
        );
        assert!(
            check_twiml_response(&response(201, Some("application/xml; charset=utf-8"))).is_ok()
        );
        assert!(check_twiml_response(&response(200, Some("Text/XML;charset=UTF-8"))).is_ok());
        for (status, ct, code, class) in [
            (500, Some("text/xml"), 11200, FailureClass::HttpStatus),
            (404, Some("text/html"), 11200, FailureClass::HttpStatus),
            (200, Some("text/html"), 12300, FailureClass::ContentType),
            (200, Some("text/plain"), 12300, FailureClass::ContentType),
            (
                200,
                Some("application/json"),
                12300,
                FailureClass::ContentType,
            ),
            (200, None, 12300, FailureClass::ContentType),
        ] {
            let failure = check_twiml_response(&response(status, ct)).unwrap_err();
            assert_eq!(
                (failure.code, failure.class),
                (code, class),
                "{status} {ct:?}"
            );
        }
    }
}

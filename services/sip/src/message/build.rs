//! Building responses from requests (RFC 3261 §8.2.6): copy `Via` (all, in order), `From`,
//! `To` (adding our tag), `Call-ID` and `CSeq`; `Timestamp` on 100 (§8.2.6.1).

use super::headers::{HeaderName, Headers, NameAddr};
use super::{Request, Response};

/// The standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

/// A response to `req` per RFC 3261 §8.2.6. `to_tag` is added to `To` unless the request
/// already carries a To tag or the status is 100 (a 100 never carries our tag).
pub fn response_from_request(
    req: &Request,
    status: u16,
    reason: Option<&str>,
    to_tag: Option<&str>,
) -> Response {
    // A well-formed request always yields a response; the Option is for partial messages.
    error_response_from_headers(&req.headers, status, reason, to_tag)
        .unwrap_or_else(|| Response::new(status, reason.unwrap_or(reason_phrase(status))))
}

/// Builds a response from the headers of a (possibly malformed) request. `None` when there
/// is no `Via` to send it along.
pub fn error_response_from_headers(
    headers: &Headers,
    status: u16,
    reason: Option<&str>,
    to_tag: Option<&str>,
) -> Option<Response> {
    if !headers.contains(&HeaderName::Via) {
        return None;
    }
    let mut resp = Response::new(status, reason.unwrap_or(reason_phrase(status)));
    for h in headers.iter() {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                resp.headers.push(h.name.clone(), h.value.clone())
            }
            HeaderName::To => {
                let mut value = h.value.clone();
                if let Some(tag) = to_tag {
                    let has_tag = NameAddr::parse(&value).map(|a| a.tag().is_some());
                    if status != 100 && matches!(has_tag, Ok(false)) {
                        value.push_str(";tag=");
                        value.push_str(tag);
                    }
                }
                resp.headers.push(HeaderName::To, value);
            }
            HeaderName::Timestamp if status == 100 => {
                resp.headers.push(HeaderName::Timestamp, h.value.clone())
            }
            _ => {}
        }
    }
    Some(resp)
}

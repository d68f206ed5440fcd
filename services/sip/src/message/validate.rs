//! Syntactic validation of a parsed request: everything a UAS must check before it can even
//! build a transaction (mandatory headers present once, Via/CSeq/From/To/Contact parse,
//! CSeq method matches). A failure is a [`Rejection`]: status 400 and a reason phrase that
//! names the problem. Policy checks (unknown scheme → 416, Require → 420, ...) belong to the
//! UA core, not here.

use super::headers::{HeaderError, HeaderName};
use super::uri::Uri;
use super::{Request, Response};

/// A request that must be answered with an error instead of being processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
}

impl Rejection {
    pub fn bad_request(detail: impl std::fmt::Display) -> Self {
        Rejection {
            status: 400,
            reason: format!("Bad Request ({detail})"),
        }
    }
}

impl From<HeaderError> for Rejection {
    fn from(e: HeaderError) -> Self {
        Rejection::bad_request(e)
    }
}

const SINGLE_VALUED: &[(HeaderName, &str)] = &[
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
    (HeaderName::MaxForwards, "Max-Forwards"),
    (HeaderName::ContentType, "Content-Type"),
];

/// Checks a request's mandatory headers and their syntax (RFC 3261 §8.1.1, §8.2).
pub fn validate_request(req: &Request) -> Result<(), Rejection> {
    let h = &req.headers;
    for (name, label) in [
        (HeaderName::Via, "Via"),
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
    ] {
        if !h.contains(&name) {
            return Err(HeaderError::Missing(label).into());
        }
    }
    for (name, label) in SINGLE_VALUED {
        if h.count(name) > 1 {
            return Err(HeaderError::Multiple(label).into());
        }
    }
    h.vias()?;
    let cseq = h.cseq()?;
    if cseq.method != req.method {
        return Err(Rejection::bad_request(format!(
            "CSeq method {} does not match request method {}",
            cseq.method, req.method
        )));
    }
    h.from()?;
    h.to()?;
    h.call_id()?;
    h.max_forwards()?;
    h.contacts()?;
    h.record_route()?;
    if let Some(date) = h.get(&HeaderName::Date) {
        if !is_rfc1123_gmt(date) {
            return Err(Rejection::bad_request(
                "invalid Date header: not an RFC 1123 GMT date",
            ));
        }
    }
    if let Uri::Sip(u) = &req.uri {
        if !u.headers.is_empty() {
            return Err(Rejection::bad_request(
                "Request-URI must not contain headers",
            ));
        }
    }
    Ok(())
}

/// Checks the headers a response needs to be matched to a transaction. Responses are never
/// answered: a failure means the response is dropped.
pub fn validate_response(resp: &Response) -> Result<(), HeaderError> {
    let h = &resp.headers;
    h.top_via()?;
    h.cseq()?;
    h.call_id()?;
    h.from()?;
    h.to()?;
    Ok(())
}

/// `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
fn is_rfc1123_gmt(v: &str) -> bool {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [wkday, day, month, year, time, zone] = parts.as_slice() else {
        return false;
    };
    const DAYS: [&str; 7] = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_digit());
    let time_ok = {
        let t: Vec<&str> = time.split(':').collect();
        t.len() == 3 && t.iter().all(|p| digits(p, 2))
    };
    DAYS.contains(wkday)
        && digits(day, 2)
        && MONTHS.contains(month)
        && digits(year, 4)
        && time_ok
        && *zone == "GMT"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(is_rfc1123_gmt("Sat, 15 Oct 2005 04:44:56 GMT"));
        assert!(!is_rfc1123_gmt("Fri, 01 Jan 2010 16:00:00 EST"));
        assert!(!is_rfc1123_gmt("yesterday"));
    }
}

//! Twilio's representations of dates and resource paths.

use time::format_description::well_known::Rfc2822;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::error::ApiError;

/// RFC 2822 in UTC, as Twilio writes dates: `Tue, 31 Aug 2010 20:36:28 +0000`.
pub fn rfc2822(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc2822)
        .unwrap_or_default()
}

pub fn rfc2822_opt(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(rfc2822)
}

/// Usage records' `as_of`: `2025-03-10T12:00:00+00:00`.
pub fn as_of(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+00:00"
        ))
        .unwrap_or_default()
}

/// The SID in a `{Sid}.json` path segment (a bare SID is accepted too). Anything else is
/// a resource we do not have.
pub fn sid_segment<'a>(segment: &'a str, prefix: &str, path: &str) -> Result<&'a str, ApiError> {
    let sid = segment.strip_suffix(".json").unwrap_or(segment);
    let valid = sid.len() == 34
        && sid.starts_with(prefix)
        && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(sid)
    } else {
        Err(ApiError::not_found(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn dates_look_like_twilio() {
        assert_eq!(
            rfc2822(datetime!(2010-08-31 20:36:28.123 UTC)),
            "Tue, 31 Aug 2010 20:36:28 +0000"
        );
        assert_eq!(
            as_of(datetime!(2025-03-10 12:00:05 UTC)),
            "2025-03-10T12:00:05+00:00"
        );
    }

    #[test]
    fn sid_segments() {
        let sid = "CA0123456789abcdef0123456789abcdef";
        assert_eq!(
            sid_segment(&format!("{sid}.json"), "CA", "/p").unwrap(),
            sid
        );
        assert_eq!(sid_segment(sid, "CA", "/p").unwrap(), sid);
        assert!(sid_segment("CA1.json", "CA", "/p").is_err());
        assert!(sid_segment(&format!("{sid}.xml"), "CA", "/p").is_err());
        assert!(sid_segment(&sid.replace("CA", "PN"), "CA", "/p").is_err());
    }
}

//! Which of an account's events a subscriber receives: by type (exact, or a family prefix
//! such as `dialtone.call.*`) and by subject (one stream: `CA…`, `PN…`, `CF…`, …).

use dialtone_events::log::family_of;
use dialtone_events::{Event, Payload};

/// One `Types` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    /// A whole type: `dialtone.call.completed`.
    Exact(String),
    /// Every type starting with this, written `dialtone.call.*` (stored without the `*`).
    Prefix(String),
}

impl TypePattern {
    /// Parses `dialtone.call.completed` or `dialtone.call.*` (also `dialtone.*`). Exact types
    /// must be known, and a prefix must cover at least one known type, so that a typo is an
    /// error rather than a silent, empty stream.
    pub fn parse(value: &str) -> Result<TypePattern, FilterError> {
        let value = value.trim();
        let unknown = || FilterError::UnknownType(value.to_owned());
        if let Some(prefix) = value.strip_suffix('*') {
            if !prefix.starts_with("dialtone.") || !prefix.ends_with('.') {
                return Err(unknown());
            }
            if !Payload::TYPES.iter().any(|t| t.starts_with(prefix)) {
                return Err(unknown());
            }
            return Ok(TypePattern::Prefix(prefix.to_owned()));
        }
        if Payload::TYPES.contains(&value) {
            Ok(TypePattern::Exact(value.to_owned()))
        } else {
            Err(unknown())
        }
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            TypePattern::Exact(t) => t == event_type,
            TypePattern::Prefix(p) => event_type.starts_with(p.as_str()),
        }
    }

    /// As written by clients (`dialtone.call.*`).
    pub fn as_written(&self) -> String {
        match self {
            TypePattern::Exact(t) => t.clone(),
            TypePattern::Prefix(p) => format!("{p}*"),
        }
    }
}

/// Why a filter is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{0:?} is not an event type: expected a type such as dialtone.call.completed or a family prefix such as dialtone.call.*")]
    UnknownType(String),
    #[error("{0:?} is not a stream: expected a SID such as CA…, PN… or CF…")]
    BadSubject(String),
}

/// A subscriber's filter within its account. Empty `types` means every type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFilter {
    pub types: Vec<TypePattern>,
    pub subject: Option<String>,
    /// Leave out sinks' delivery records (`dialtone.sink.delivered`/`failed`): a sink must
    /// never receive its own deliveries, or every delivery would cause another.
    pub exclude_deliveries: bool,
}

/// The types of delivery records.
const DELIVERY_TYPES: &[&str] = &["dialtone.sink.delivered", "dialtone.sink.failed"];

impl StreamFilter {
    /// `Types` values (each may be comma-separated) and an optional `Subject`.
    pub fn parse<'a>(
        types: impl IntoIterator<Item = &'a str>,
        subject: Option<&str>,
    ) -> Result<StreamFilter, FilterError> {
        let mut patterns = Vec::new();
        for value in types {
            for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                patterns.push(TypePattern::parse(part)?);
            }
        }
        let subject = subject
            .map(|s| {
                let valid = s.len() == 34
                    && family_of(s).is_ok()
                    && s[2..].bytes().all(|b| b.is_ascii_hexdigit());
                if valid {
                    Ok(s.to_owned())
                } else {
                    Err(FilterError::BadSubject(s.to_owned()))
                }
            })
            .transpose()?;
        Ok(StreamFilter {
            types: patterns,
            subject,
            exclude_deliveries: false,
        })
    }

    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t.matches(&event.event_type)))
            && self.subject.as_deref().is_none_or(|s| s == event.subject)
            && !(self.exclude_deliveries && DELIVERY_TYPES.contains(&event.event_type.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_exact_or_family_prefixes_and_typos_are_errors() {
        assert_eq!(
            TypePattern::parse("dialtone.call.*").unwrap(),
            TypePattern::Prefix("dialtone.call.".into())
        );
        assert!(TypePattern::parse("dialtone.*").is_ok());
        assert_eq!(
            TypePattern::parse("dialtone.call.completed").unwrap(),
            TypePattern::Exact("dialtone.call.completed".into())
        );
        for bad in [
            "dialtone.call.complete",
            "dialtone.nothing.*",
            "com.twilio.*",
            "dialtone.ca*",
            "*",
            "",
        ] {
            assert!(TypePattern::parse(bad).is_err(), "{bad}");
        }
        let exact = TypePattern::parse("dialtone.call.completed").unwrap();
        assert!(!exact.matches("dialtone.call.completed.more"));
    }

    #[test]
    fn filters_parse_lists_and_subjects() {
        let filter = StreamFilter::parse(
            ["dialtone.call.answered,dialtone.number.*"],
            Some("CA0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(filter.types.len(), 2);
        assert!(StreamFilter::parse([], Some("CA12")).is_err());
        assert!(StreamFilter::parse([], Some("XX0123456789abcdef0123456789abcdef")).is_err());
    }
}

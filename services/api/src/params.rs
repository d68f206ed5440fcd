//! Twilio parameters: form-encoded bodies and query strings, in order, names as sent
//! (`StartTime<` is a name of its own).

use dialtone_events::payload::HttpMethod;

use crate::error::{codes, ApiError};

/// Decoded `name=value` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(encoded: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(encoded)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn from_query(query: Option<&str>) -> Params {
        Params::parse(query.unwrap_or_default().as_bytes())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of `name`.
    /// `FriendlyName`, if sent: at most 64 characters (Twilio's limit), else 400/20001.
    pub fn friendly_name(&self) -> Result<Option<&str>, ApiError> {
        match self.get("FriendlyName") {
            Some(name) if name.chars().count() > 64 => Err(ApiError::invalid(
                "FriendlyName must be at most 64 characters",
            )),
            name => Ok(name),
        }
    }

    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A method parameter (`GET`/`POST`), if given.
    pub fn method(&self, name: &str) -> Result<Option<HttpMethod>, ApiError> {
        match self.non_empty(name) {
            None => Ok(None),
            Some(value) => HttpMethod::parse(value).map(Some).ok_or_else(|| {
                ApiError::invalid(format!("{name} must be GET or POST, not {value:?}"))
            }),
        }
    }

    /// An absolute http(s) URL parameter: `None` when absent, `Some(None)` when sent empty
    /// (clears it), `Some(Some(url))` otherwise.
    pub fn url(&self, name: &str) -> Result<Option<Option<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("") => Ok(Some(None)),
            Some(value) => {
                if is_http_url(value) {
                    Ok(Some(Some(value.to_owned())))
                } else {
                    Err(ApiError::bad_request(
                        codes::INVALID_URL,
                        format!("{name} is not a valid URL: {value}"),
                    ))
                }
            }
        }
    }

    /// These pairs minus the named ones, encoded as a query string (for page URIs).
    pub fn encode_without(&self, skip: &[&str]) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

/// `http://host…` or `https://host…` with a non-empty host and no whitespace.
pub fn is_http_url(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !value.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Encodes pairs as a query string.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_keep_operators_in_names() {
        let p = Params::parse(b"StartTime%3E=2025-01-01&To=%2B14155550100&To=x&Empty=");
        assert_eq!(p.get("StartTime>"), Some("2025-01-01"));
        assert_eq!(p.get("To"), Some("+14155550100"));
        assert_eq!(p.non_empty("Empty"), None);
        assert_eq!(p.get("Empty"), Some(""));
    }

    #[test]
    fn urls_are_validated() {
        assert!(is_http_url("https://example.com/voice?x=1"));
        assert!(is_http_url("http://127.0.0.1:8080"));
        for bad in [
            "ftp://x",
            "https://",
            "example.com",
            "https:// x",
            "https:///path",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
        let p = Params::parse(b"VoiceUrl=&StatusCallback=nope");
        assert_eq!(p.url("VoiceUrl").unwrap(), Some(None));
        assert_eq!(p.url("Missing").unwrap(), None);
        assert_eq!(
            p.url("StatusCallback").unwrap_err().code,
            codes::INVALID_URL
        );
    }
}

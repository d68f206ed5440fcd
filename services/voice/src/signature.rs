//! `X-Twilio-Signature`: how Twilio signs webhooks, so applications can keep using Twilio's
//! request validators unchanged.
//!
//! The signed string is the full URL Twilio requested (scheme, host, optional port, path,
//! query) followed, for form-encoded POSTs, by every parameter as `name` + `value` sorted by
//! name then value (byte order), identical pairs once, no separators, decoded values. The
//! signature is the standard-alphabet base64 of HMAC-SHA1 over it, keyed with the account's
//! auth token (HMAC-SHA256 with a shared key for Webhook Rules). For JSON bodies Twilio adds
//! `bodySHA256=<hex SHA-256 of the body>` to the query and signs the URL alone.
//!
//! Validation tries the URL as given with its port removed and with the scheme's default
//! port added, like twilio-python 9.13's `RequestValidator`, because signers disagree on
//! whether `:443` is part of the URL. Unlike twilio-python (which cuts the authority at the
//! first `:` and so mangles `user:pass@host:port`), user info is kept.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The HTTP header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
/// Header naming the key and algorithm of Webhook-Rule signatures
/// (`key=<id>,algorithm=HMAC_SHA256`). Absent means HMAC-SHA1 with the auth token.
pub const SIGNATURE_SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";
/// The query parameter that carries the body hash of JSON webhooks.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// The MAC behind a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Twilio's default: keyed with the account auth token.
    #[default]
    HmacSha1,
    /// Webhook Rules with a shared key.
    HmacSha256,
}

impl Algorithm {
    /// Reads the `algorithm=` of an `X-Twilio-Webhooks-Signature-Settings` header. A missing
    /// header or one without `algorithm=` means HMAC-SHA1; an unknown algorithm is `None`
    /// (fail closed).
    pub fn from_settings_header(header: Option<&str>) -> Option<Algorithm> {
        for part in header.unwrap_or("").split(',') {
            if let Some((name, value)) = part.split_once('=') {
                let value = value.trim();
                if name.trim() == "algorithm" && !value.is_empty() {
                    return match value.to_ascii_uppercase().as_str() {
                        "HMAC_SHA1" => Some(Algorithm::HmacSha1),
                        "HMAC_SHA256" => Some(Algorithm::HmacSha256),
                        _ => None,
                    };
                }
            }
        }
        Some(Algorithm::HmacSha1)
    }
}

/// The string that is signed: `url` followed by the sorted, de-duplicated `name` + `value`
/// pairs. Useful for debugging signature mismatches.
pub fn signing_string<K: AsRef<str>, V: AsRef<str>>(url: &str, params: &[(K, V)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = String::with_capacity(
        url.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
    );
    out.push_str(url);
    for (name, value) in pairs {
        out.push_str(name);
        out.push_str(value);
    }
    out
}

enum AnyMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
}

impl AnyMac {
    fn new(algorithm: Algorithm, key: &[u8], message: &[u8]) -> AnyMac {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the fallback
        // keeps this path free of panics anyway.
        match algorithm {
            Algorithm::HmacSha1 => {
                let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&Default::default()));
                mac.update(message);
                AnyMac::Sha1(mac)
            }
            Algorithm::HmacSha256 => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
                mac.update(message);
                AnyMac::Sha256(mac)
            }
        }
    }

    fn base64(self) -> String {
        let bytes = match self {
            AnyMac::Sha1(mac) => mac.finalize().into_bytes().to_vec(),
            AnyMac::Sha256(mac) => mac.finalize().into_bytes().to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Constant-time comparison with an expected MAC.
    fn verify(self, expected: &[u8]) -> bool {
        match self {
            AnyMac::Sha1(mac) => mac.verify_slice(expected).is_ok(),
            AnyMac::Sha256(mac) => mac.verify_slice(expected).is_ok(),
        }
    }
}

/// The `X-Twilio-Signature` of a request to `url` with form `params` (empty for GET and
/// JSON requests), signed with the account auth token.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    sign_with(Algorithm::HmacSha1, auth_token.as_bytes(), url, params)
}

/// [`sign`] with an explicit algorithm and key.
pub fn sign_with<K: AsRef<str>, V: AsRef<str>>(
    algorithm: Algorithm,
    key: &[u8],
    url: &str,
    params: &[(K, V)],
) -> String {
    AnyMac::new(algorithm, key, signing_string(url, params).as_bytes()).base64()
}

/// Whether `signature` is valid for a request to `url` with form `params`, trying the URL
/// without its port and with the default port added. Compares in constant time.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    validate_with(
        Algorithm::HmacSha1,
        auth_token.as_bytes(),
        url,
        params,
        signature,
    )
}

/// [`validate`] with an explicit algorithm and key.
pub fn validate_with<K: AsRef<str>, V: AsRef<str>>(
    algorithm: Algorithm,
    key: &[u8],
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut valid = false;
    // Both forms are always computed, so timing does not reveal which one matched.
    for candidate in [url_without_port(url), url_with_default_port(url)] {
        let mac = AnyMac::new(
            algorithm,
            key,
            signing_string(&candidate, params).as_bytes(),
        );
        valid |= mac.verify(&expected);
    }
    valid
}

/// Lowercase hex SHA-256 of a request body, the value of `bodySHA256`.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `url` with `bodySHA256=<hash of body>` appended to its query (before any fragment).
pub fn url_with_body_sha256(url: &str, body: &[u8]) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{separator}{BODY_SHA256_PARAM}={}", body_sha256(body));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Validates a JSON-body webhook: the signature over the URL alone, and the body against
/// the URL's `bodySHA256`. Fails closed: a URL without `bodySHA256` is invalid (a validator
/// that skips the body check lets forged bodies through).
pub fn validate_json_body(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let query = url
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(""))
        .unwrap_or("");
    let claimed: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == BODY_SHA256_PARAM)
        .map(|(_, value)| value.into_owned())
        .collect();
    // Exactly one hash: two could be chosen between by different readers.
    let [claimed] = claimed.as_slice() else {
        return false;
    };
    let hash_ok = constant_time_eq(claimed.as_bytes(), body_sha256(body).as_bytes());
    let signature_ok = validate::<&str, &str>(auth_token, url, &[], signature);
    hash_ok & signature_ok
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits `scheme://authority/rest` into its three parts, without any normalisation (the
/// signed string must stay byte-identical).
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// Splits an authority into `(userinfo@ prefix, host, port)`.
fn split_authority(authority: &str) -> (&str, &str, Option<&str>) {
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    // An IPv6 literal keeps its colons inside brackets.
    let port_colon = match hostport.rfind(']') {
        Some(bracket) => hostport[bracket..].find(':').map(|i| i + bracket),
        None => hostport.rfind(':'),
    };
    match port_colon {
        Some(colon) => (userinfo, &hostport[..colon], Some(&hostport[colon + 1..])),
        None => (userinfo, hostport, None),
    }
}

/// `url` without an explicit port (unchanged when it has none).
pub fn url_without_port(url: &str) -> String {
    let Some((scheme, authority, rest)) = split_url(url) else {
        return url.to_owned();
    };
    match split_authority(authority) {
        (userinfo, host, Some(_)) => format!("{scheme}://{userinfo}{host}{rest}"),
        _ => url.to_owned(),
    }
}

/// `url` with the scheme's default port (`:443` for https, `:80` otherwise) when it has no
/// port (unchanged when it has one).
pub fn url_with_default_port(url: &str) -> String {
    let Some((scheme, authority, rest)) = split_url(url) else {
        return url.to_owned();
    };
    match split_authority(authority) {
        (userinfo, host, None) => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{userinfo}{host}:{port}{rest}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected signature below was computed with Twilio's own validator,
    // twilio-python 9.13.0 (`pip install twilio==9.13.0`):
    //   RequestValidator("12345").compute_signature(url, params)
    // The script is testdata/twilio_signature_vectors.py; for HMAC-SHA256:
    //   RequestValidator("shared-secret").compute_signature(url, params, "HMAC_SHA256").

    const TOKEN: &str = "12345";

    fn doc_params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
    }

    #[test]
    fn twilio_documentation_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            sign(TOKEN, url, &doc_params()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(validate(
            TOKEN,
            url,
            &doc_params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        // Order of the given params does not matter.
        let mut reversed = doc_params();
        reversed.reverse();
        assert_eq!(sign(TOKEN, url, &reversed), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn unicode_empty_values_and_case_sensitive_sorting() {
        let params = [
            ("Body", "héllo wörld €"),
            ("Empty", ""),
            ("a", "1"),
            ("B", "2"),
            ("_x", "y z&="),
        ];
        assert_eq!(
            sign(TOKEN, "https://example.com/voice", &params),
            "i0s2CJKC2i69xCuJmPbQGXbPB2k="
        );
    }

    #[test]
    fn get_requests_sign_the_url_only() {
        let url = "https://example.com/voice?CallSid=CA1&From=%2B1555";
        assert_eq!(
            sign::<&str, &str>(TOKEN, url, &[]),
            "a6F42W8qpzb+yRWLUbz8sEiVfNk="
        );
    }

    #[test]
    fn ports_are_part_of_the_signed_url() {
        let p = doc_params();
        assert_eq!(
            sign(TOKEN, "https://example.com:443/voice", &p),
            "GtXNQrO52u6KRVN5Dm7UJac8toI="
        );
        assert_eq!(
            sign(TOKEN, "https://example.com/voice", &p),
            "vjO4hd0yWOy8eJqk3paWGJuil5c="
        );
        assert_eq!(
            sign(TOKEN, "https://example.com:8443/voice", &p),
            "0szb5wf7leLQ6YzouCfoU/p3hwo="
        );
        assert_eq!(
            sign(TOKEN, "http://example.com:80/voice", &p),
            "vo1y4J9TkDnxuArrEVzMRIdc9gs="
        );
    }

    #[test]
    fn validation_tries_with_and_without_the_port_like_twilio_python() {
        let p = doc_params();
        let no_port = "vjO4hd0yWOy8eJqk3paWGJuil5c=";
        let with_443 = "GtXNQrO52u6KRVN5Dm7UJac8toI=";
        let with_8443 = "0szb5wf7leLQ6YzouCfoU/p3hwo=";
        // Signed without the port, received on :443 → valid (python: True).
        assert!(validate(
            TOKEN,
            "https://example.com:443/voice",
            &p,
            no_port
        ));
        // Signed with :443, received without a port → valid.
        assert!(validate(TOKEN, "https://example.com/voice", &p, with_443));
        // A non-standard port: the stripped form is tried too (python: True).
        assert!(validate(
            TOKEN,
            "https://example.com:8443/voice",
            &p,
            no_port
        ));
        // ...but a :8443 signature does not validate against the port-less URL (python: False).
        assert!(!validate(TOKEN, "https://example.com/voice", &p, with_8443));
        // Tampering fails.
        assert!(!validate(TOKEN, "https://example.com/voice2", &p, no_port));
        assert!(!validate(
            TOKEN,
            "https://example.com/voice",
            &p[1..],
            no_port
        ));
        assert!(!validate("other", "https://example.com/voice", &p, no_port));
        assert!(!validate(
            TOKEN,
            "https://example.com/voice",
            &p,
            "not base64!"
        ));
        assert!(!validate(TOKEN, "https://example.com/voice", &p, ""));
    }

    #[test]
    fn repeated_names_sort_their_values_and_collapse_duplicates() {
        // python: MultiDict {"Tag": ["b", "a", "b"], "X": ["1"]}
        let params = [("Tag", "b"), ("X", "1"), ("Tag", "a"), ("Tag", "b")];
        assert_eq!(
            sign(TOKEN, "https://example.com/voice", &params),
            "w/4KjSiFt2108gILdgwtsu1tMag="
        );
        assert_eq!(
            signing_string("u", &params),
            "uTagaTagbX1",
            "sorted by name then value, identical pairs once"
        );
    }

    #[test]
    fn user_info_is_signed_and_kept_when_the_port_changes() {
        let p = doc_params();
        let signed = "ZvS4cbTududW826GBU6hmbDkoj8=";
        assert_eq!(
            sign(TOKEN, "https://user:pass@example.com/voice", &p),
            signed
        );
        // twilio-python returns False here (it cuts `user:pass@host:443` at the first ':');
        // keeping the user info is the correct reading.
        assert!(validate(
            TOKEN,
            "https://user:pass@example.com:443/voice",
            &p,
            signed
        ));
        assert_eq!(
            url_without_port("https://user:pass@example.com:443/voice?a=b"),
            "https://user:pass@example.com/voice?a=b"
        );
    }

    #[test]
    fn url_port_forms() {
        assert_eq!(
            url_with_default_port("https://h/x?y#z"),
            "https://h:443/x?y#z"
        );
        assert_eq!(url_with_default_port("http://h"), "http://h:80");
        assert_eq!(url_with_default_port("http://h:81/"), "http://h:81/");
        assert_eq!(url_without_port("https://h:443/x"), "https://h/x");
        assert_eq!(url_without_port("https://[::1]:8443/x"), "https://[::1]/x");
        assert_eq!(
            url_with_default_port("https://[::1]/x"),
            "https://[::1]:443/x"
        );
        assert_eq!(url_without_port("https://[::1]/x"), "https://[::1]/x");
        assert_eq!(url_without_port("not a url"), "not a url");
        // The host's case is kept (the signed string must be byte-identical).
        assert_eq!(
            url_with_default_port("https://EXAMPLE.com/a"),
            "https://EXAMPLE.com:443/a"
        );
    }

    #[test]
    fn json_bodies_use_body_sha256() {
        let body = br#"{"property": "value", "boolean": true}"#;
        assert_eq!(
            body_sha256(body),
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let url = url_with_body_sha256("https://example.com/json", body);
        assert_eq!(
            url,
            "https://example.com/json?bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let signature = sign::<&str, &str>(TOKEN, &url, &[]);
        assert_eq!(signature, "8zmGxG9nKgURVEp0M4c3BWEsdIU=");
        assert!(validate_json_body(TOKEN, &url, body, &signature));
        // A forged body fails even with a valid signature.
        assert!(!validate_json_body(
            TOKEN,
            &url,
            b"{\"property\": \"evil\"}",
            &signature
        ));
        // No bodySHA256 at all: fail closed.
        let bare = "https://example.com/json";
        let bare_signature = sign::<&str, &str>(TOKEN, bare, &[]);
        assert!(!validate_json_body(TOKEN, bare, body, &bare_signature));
        assert_eq!(
            url_with_body_sha256("https://e.com/j?a=1#rc=2", b""),
            "https://e.com/j?a=1&bodySHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855#rc=2"
        );
    }

    #[test]
    fn hmac_sha256_webhook_rules() {
        let params = [("CallSid", "CA1"), ("From", "+1555")];
        let signature = sign_with(
            Algorithm::HmacSha256,
            b"shared-secret",
            "https://example.com/voice",
            &params,
        );
        assert_eq!(signature, "ug3wneEJRVXYxKDqTAEj07wTEdAwZ4zCUnMgNfDQyF0=");
        assert!(validate_with(
            Algorithm::HmacSha256,
            b"shared-secret",
            "https://example.com:443/voice",
            &params,
            &signature
        ));
        assert!(!validate_with(
            Algorithm::HmacSha1,
            b"shared-secret",
            "https://example.com/voice",
            &params,
            &signature
        ));
        assert_eq!(
            Algorithm::from_settings_header(None),
            Some(Algorithm::HmacSha1)
        );
        assert_eq!(
            Algorithm::from_settings_header(Some("key=abc,algorithm=HMAC_SHA256")),
            Some(Algorithm::HmacSha256)
        );
        assert_eq!(
            Algorithm::from_settings_header(Some("key=abc")),
            Some(Algorithm::HmacSha1)
        );
        assert_eq!(Algorithm::from_settings_header(Some("algorithm=MD5")), None);
    }
}

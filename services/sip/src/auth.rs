//! HTTP Digest authentication for SIP requests (RFC 2617 as used by RFC 3261 §22, with
//! the SHA-256 algorithm of RFC 8760): parsing `WWW-Authenticate`/`Proxy-Authenticate`
//! challenges and computing `Authorization`/`Proxy-Authorization` values. Pure functions.

use md5::Md5;
use sha2::{Digest, Sha256};

/// Digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A parsed Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `auth` was offered in `qop`.
    pub qop_auth: bool,
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("not a Digest challenge")]
    NotDigest,
    #[error("challenge lacks {0}")]
    Missing(&'static str),
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("only qop=auth-int is offered, which we do not support")]
    Qop,
}

/// Splits `k=v, k="v, with comma"` into pairs.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            if !key.is_empty() {
                out.push((key, String::new()));
            }
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch_end = (i + 1..=b.len())
                    .find(|&e| s.is_char_boundary(e))
                    .unwrap_or(b.len());
                v.push_str(&s[i..ch_end]);
                i = ch_end;
            }
            i += 1;
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[vs..i].trim().to_owned()
        };
        out.push((key, value));
    }
    out
}

impl Challenge {
    /// Parses one `WWW-Authenticate`/`Proxy-Authenticate` value.
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let v = value.trim();
        let (scheme, rest) = v.split_once([' ', '\t']).ok_or(AuthError::NotDigest)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::NotDigest);
        }
        let params = auth_params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            Some(a) => return Err(AuthError::Algorithm(a)),
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(q) => {
                let auth = q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth"));
                if !auth {
                    return Err(AuthError::Qop);
                }
                true
            }
        };
        Ok(Challenge {
            realm: get("realm").ok_or(AuthError::Missing("realm"))?,
            nonce: get("nonce").ok_or(AuthError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// Picks the best challenge among several (SHA-256 before MD5, RFC 8760 §2.4).
    pub fn best<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        let mut all: Vec<Challenge> = values
            .into_iter()
            .filter_map(|v| Challenge::parse(v).ok())
            .collect();
        all.sort_by_key(|c| match c.algorithm {
            Algorithm::Sha256 => 0,
            Algorithm::Md5 => 1,
        });
        all.into_iter().next()
    }

    /// The credentials value for `method` and `uri`. `cnonce` and `nc` matter only with
    /// qop=auth.
    pub fn respond(
        &self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let alg = self.algorithm;
        let ha1 = alg.hash(&format!("{username}:{}:{password}", self.realm));
        let ha2 = alg.hash(&format!("{method}:{uri}"));
        let nc_s = format!("{nc:08x}");
        let response = if self.qop_auth {
            alg.hash(&format!("{ha1}:{}:{nc_s}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut out = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
            self.realm,
            self.nonce,
            alg.name()
        );
        if self.qop_auth {
            out.push_str(&format!(", qop=auth, nc={nc_s}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = &self.opaque {
            out.push_str(&format!(", opaque=\"{o}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_md5_with_qop() {
        // RFC 2617 §3.5 (HTTP example; the arithmetic is the same for SIP).
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(c.qop_auth);
        let v = c.respond(
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "0a4f113b",
            1,
        );
        assert!(
            v.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{v}"
        );
        assert!(v.contains("nc=00000001"));
        assert!(v.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#));
    }

    #[test]
    fn md5_without_qop_and_sha256_preference() {
        let c = Challenge::parse(r#"Digest realm="sip.example", nonce="abc""#).unwrap();
        let v = c.respond("INVITE", "sip:bob@sip.example", "alice", "secret", "", 1);
        let ha1 = Algorithm::Md5.hash("alice:sip.example:secret");
        let ha2 = Algorithm::Md5.hash("INVITE:sip:bob@sip.example");
        let expect = Algorithm::Md5.hash(&format!("{ha1}:abc:{ha2}"));
        assert!(v.contains(&format!("response=\"{expect}\"")));
        assert!(!v.contains("qop"));
        let best = Challenge::best([
            r#"Digest realm="r", nonce="n", algorithm=MD5"#,
            r#"Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth""#,
        ])
        .unwrap();
        assert_eq!(best.algorithm, Algorithm::Sha256);
        let v = best.respond("INVITE", "sip:x", "u", "p", "c", 1);
        assert!(v.contains("algorithm=SHA-256"));
        // Known SHA-256 of "abc" to pin the hash implementation.
        assert_eq!(
            Algorithm::Sha256.hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rfc7616_example_sha256_with_qop() {
        // RFC 7616 §3.9.1 (HTTP example; the arithmetic is the same for SIP, RFC 8760).
        let c = Challenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let v = c.respond(
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert!(
            v.contains(
                r#"response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#
            ),
            "{v}"
        );
    }

    #[test]
    fn rejects_unusable_challenges() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(AuthError::NotDigest)
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#),
            Err(AuthError::Algorithm("SHA-512-256".into()))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#),
            Err(AuthError::Qop)
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r""#),
            Err(AuthError::Missing("nonce"))
        );
    }
}

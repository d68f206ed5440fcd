//! The registrar's rules (RFC 3261 §10.3), sans-IO: what a REGISTER asks for, and how it
//! changes an address-of-record's bindings. Fed with the bindings the location service
//! holds and the time; the caller (the registrar role) turns the changes into events and
//! answers `200 OK` with the bindings that remain, or the error's status.
//!
//! Digest authentication happens before these rules (see [`crate::auth`]).

use crate::message::{Contact, HeaderName, Method, Request};

/// Expiry limits, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shorter requested expiries are refused with `423 Interval Too Brief`.
    pub min_expires: u32,
    /// Longer ones are shortened to this.
    pub max_expires: u32,
    /// When the request names none.
    pub default_expires: u32,
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
        }
    }
}

/// One contact of an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI, as sent.
    pub contact: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub call_id: String,
    pub cseq: u32,
    /// The `q` preference, as sent.
    pub q: Option<String>,
}

/// What a REGISTER asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// No Contact: which bindings there are.
    Query,
    /// `Contact: *` with `Expires: 0`: remove them all.
    RemoveAll,
    /// These contacts, each with the expiry it asks for (`None`: the request's default).
    Contacts(Vec<(String, Option<u32>, Option<String>)>),
}

/// A REGISTER, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The address-of-record: the To URI.
    pub aor: String,
    pub call_id: String,
    pub cseq: u32,
    /// The `Expires` header.
    pub expires: Option<u32>,
    pub wanted: Wanted,
}

/// Why a REGISTER fails, with the status it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("bad REGISTER: {0}")]
    BadRequest(String),
    #[error("interval too brief (at least {min_expires} s)")]
    IntervalTooBrief { min_expires: u32 },
    #[error("out of order: CSeq {cseq} is not above the binding's {existing}")]
    OutOfOrder { cseq: u32, existing: u32 },
}

impl RegisterError {
    /// `400`, `423` (with a `Min-Expires` header to send), `500`.
    pub fn status(&self) -> u16 {
        match self {
            RegisterError::BadRequest(_) => 400,
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::OutOfOrder { .. } => 500,
        }
    }
}

fn bad(why: impl Into<String>) -> RegisterError {
    RegisterError::BadRequest(why.into())
}

fn seconds(value: &str, what: &str) -> Result<u32, RegisterError> {
    value
        .trim()
        .parse::<u64>()
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
        .map_err(|_| bad(format!("{what} {value:?} is not a number of seconds")))
}

/// Reads a REGISTER. Pure.
pub fn read_register(request: &Request) -> Result<Register, RegisterError> {
    if request.method != Method::Register {
        return Err(bad("not a REGISTER"));
    }
    let headers = &request.headers;
    let to = headers.to().map_err(|e| bad(e.to_string()))?;
    let call_id = headers
        .call_id()
        .map_err(|e| bad(e.to_string()))?
        .to_owned();
    let cseq = headers.cseq().map_err(|e| bad(e.to_string()))?.seq;
    let expires = headers
        .get(&HeaderName::Expires)
        .map(|v| seconds(v, "Expires"))
        .transpose()?;
    let contacts = headers.contacts().map_err(|e| bad(e.to_string()))?;
    let wanted = if contacts.is_empty() {
        Wanted::Query
    } else if contacts.iter().any(|c| matches!(c, Contact::Wildcard)) {
        if contacts.len() != 1 || expires != Some(0) {
            return Err(bad("Contact: * needs Expires: 0 and no other contact"));
        }
        Wanted::RemoveAll
    } else {
        let mut wanted = Vec::with_capacity(contacts.len());
        for contact in contacts {
            let Contact::Addr(addr) = contact else {
                continue;
            };
            let expiry = addr
                .params
                .value("expires")
                .map(|v| seconds(v, "the expires parameter"))
                .transpose()?;
            wanted.push((
                addr.uri.to_string(),
                expiry,
                addr.params.value("q").map(str::to_owned),
            ));
        }
        Wanted::Contacts(wanted)
    };
    Ok(Register {
        aor: to.uri.to_string(),
        call_id,
        cseq,
        expires,
        wanted,
    })
}

/// The bindings of an address-of-record after `register` (RFC 3261 §10.3 steps 6–8), from
/// `existing` at `now` (Unix seconds). Expired bindings are dropped first. Pure.
pub fn apply(
    existing: &[Binding],
    register: &Register,
    config: &RegistrarConfig,
    now: u64,
) -> Result<Vec<Binding>, RegisterError> {
    let mut bindings: Vec<Binding> = existing
        .iter()
        .filter(|b| b.expires_at > now)
        .cloned()
        .collect();
    let in_order = |binding: &Binding| {
        if binding.call_id == register.call_id && register.cseq <= binding.cseq {
            Err(RegisterError::OutOfOrder {
                cseq: register.cseq,
                existing: binding.cseq,
            })
        } else {
            Ok(())
        }
    };
    match &register.wanted {
        Wanted::Query => Ok(bindings),
        Wanted::RemoveAll => {
            bindings.iter().try_for_each(in_order)?;
            Ok(Vec::new())
        }
        Wanted::Contacts(wanted) => {
            for (contact, expiry, q) in wanted {
                let expiry = expiry
                    .or(register.expires)
                    .unwrap_or(config.default_expires);
                if expiry != 0 && expiry < config.min_expires {
                    return Err(RegisterError::IntervalTooBrief {
                        min_expires: config.min_expires,
                    });
                }
                let expiry = expiry.min(config.max_expires);
                let found = bindings.iter().position(|b| &b.contact == contact);
                if let Some(i) = found {
                    in_order(&bindings[i])?;
                    bindings.remove(i);
                }
                if expiry > 0 {
                    bindings.push(Binding {
                        contact: contact.clone(),
                        expires_at: now + u64::from(expiry),
                        call_id: register.call_id.clone(),
                        cseq: register.cseq,
                        q: q.clone(),
                    });
                }
            }
            Ok(bindings)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_datagram, Parsed, SipMessage};

    fn request_of(text: &str) -> Request {
        match parse_datagram(text.as_bytes()) {
            Ok(Parsed::Message(SipMessage::Request(request))) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn register(extra: &str, cseq: u32) -> Register {
        let text = format!(
            "REGISTER sip:company.sip.localhost SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-{cseq}\r\n\
             From: <sip:alice@company.sip.localhost>;tag=a1\r\n\
             To: <sip:alice@company.sip.localhost>\r\n\
             Call-ID: reg-1@10.0.0.5\r\n\
             CSeq: {cseq} REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        let request = request_of(&text);
        read_register(&request).unwrap()
    }

    #[test]
    fn a_phone_registers_refreshes_and_unregisters() {
        let config = RegistrarConfig::default();
        let first = register("Contact: <sip:alice@10.0.0.5:5060>\r\nExpires: 600\r\n", 1);
        assert_eq!(first.aor, "sip:alice@company.sip.localhost");
        let bindings = apply(&[], &first, &config, 1_000).unwrap();
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].expires_at, 1_600);
        // A second phone of the same user: both are bound (calls fork to both).
        let other = Register {
            call_id: "reg-2@10.0.0.6".into(),
            ..register("Contact: <sip:alice@10.0.0.6:5060>;expires=300\r\n", 1)
        };
        let both = apply(&bindings, &other, &config, 1_010).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].expires_at, 1_310);
        // A refresh moves the expiry; a replayed (not higher) CSeq is refused.
        let refresh = register("Contact: <sip:alice@10.0.0.5:5060>\r\nExpires: 600\r\n", 2);
        let refreshed = apply(&both, &refresh, &config, 1_100).unwrap();
        assert!(refreshed.iter().any(|b| b.expires_at == 1_700));
        assert_eq!(
            apply(&refreshed, &refresh, &config, 1_101),
            Err(RegisterError::OutOfOrder {
                cseq: 2,
                existing: 2
            })
        );
        // Expiry removes the second phone; expires=0 unregisters the first.
        let bye = register("Contact: <sip:alice@10.0.0.5:5060>;expires=0\r\n", 3);
        assert!(apply(&refreshed, &bye, &config, 1_400).unwrap().is_empty());
        // A query lists what is bound.
        let query = register("", 4);
        assert_eq!(apply(&refreshed, &query, &config, 1_200).unwrap().len(), 2);
    }

    #[test]
    fn bad_expiries_and_wildcards_get_the_right_status() {
        let config = RegistrarConfig::default();
        let brief = register("Contact: <sip:alice@10.0.0.5>\r\nExpires: 30\r\n", 1);
        let error = apply(&[], &brief, &config, 0).unwrap_err();
        assert_eq!(error.status(), 423);
        let long = register("Contact: <sip:alice@10.0.0.5>\r\nExpires: 86400\r\n", 1);
        assert_eq!(apply(&[], &long, &config, 0).unwrap()[0].expires_at, 7_200);
        let all = register("Contact: *\r\nExpires: 0\r\n", 9);
        assert_eq!(all.wanted, Wanted::RemoveAll);
        let bound = apply(&[], &long, &config, 0).unwrap();
        assert!(apply(&bound, &all, &config, 10).unwrap().is_empty());
        let text = "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
            Contact: *\r\nContent-Length: 0\r\n\r\n";
        let request = request_of(text);
        assert_eq!(read_register(&request).unwrap_err().status(), 400);
    }
}

//! Twilio-style resource identifiers: a two-letter prefix and 32 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid SID of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    #[error("SID {value:?} should start with {expected:?}")]
    WrongPrefix {
        value: String,
        expected: &'static str,
    },
    #[error(
        "SID {value:?} should be 34 characters: a 2-letter prefix and 32 lowercase hex digits"
    )]
    WrongLength { value: String },
    #[error("SID {value:?} should end in 32 lowercase hex digits")]
    NotHex { value: String },
}

fn validate(value: &str, prefix: &'static str) -> Result<(), SidError> {
    if !value.starts_with(prefix) {
        return Err(SidError::WrongPrefix {
            value: value.to_owned(),
            expected: prefix,
        });
    }
    if value.len() != 34 {
        return Err(SidError::WrongLength {
            value: value.to_owned(),
        });
    }
    if !value[2..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(SidError::NotHex {
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// 32 random lowercase hex digits. UUIDv7 bits keep SIDs created close together sortable by
/// creation time, which keeps SQLite indexes on them append-mostly.
fn random_hex() -> String {
    hex::encode(uuid::Uuid::now_v7().as_bytes())
}

macro_rules! sid_types {
    ($($(#[$doc:meta])* $name:ident = $prefix:literal;)*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
            pub struct $name(String);

            impl $name {
                /// The two-letter prefix of this kind of SID.
                pub const PREFIX: &'static str = $prefix;

                /// A new random SID.
                pub fn generate() -> Self {
                    Self(format!("{}{}", $prefix, random_hex()))
                }

                /// Validates `value` as a SID of this kind.
                pub fn parse(value: &str) -> Result<Self, SidError> {
                    validate(value, $prefix)?;
                    Ok(Self(value.to_owned()))
                }

                pub fn as_str(&self) -> &str {
                    &self.0
                }
            }

            impl fmt::Display for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(&self.0)
                }
            }

            impl fmt::Debug for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(&self.0)
                }
            }

            impl FromStr for $name {
                type Err = SidError;
                fn from_str(s: &str) -> Result<Self, SidError> {
                    Self::parse(s)
                }
            }

            impl AsRef<str> for $name {
                fn as_ref(&self) -> &str {
                    &self.0
                }
            }

            impl From<$name> for String {
                fn from(sid: $name) -> String {
                    sid.0
                }
            }

            impl Serialize for $name {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_str(&self.0)
                }
            }

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let value = String::deserialize(d)?;
                    Self::parse(&value).map_err(serde::de::Error::custom)
                }
            }
        )*
    };
}

sid_types! {
    /// `AC…`: an account.
    AccountSid = "AC";
    /// `CA…`: a call leg.
    CallSid = "CA";
    /// `PN…`: an incoming phone number.
    PhoneNumberSid = "PN";
    /// `RE…`: a recording.
    RecordingSid = "RE";
    /// `CF…`: a conference.
    ConferenceSid = "CF";
    /// `RT…`: a rate table.
    RateSid = "RT";
    /// `DG…`: an event sink.
    SinkSid = "DG";
    /// `DF…`: a subscription of event types to a sink.
    SubscriptionSid = "DF";
    /// `ND…`: a node's liveness (see [`NodeSid::of`]).
    NodeSid = "ND";
    /// `DD…`: a sink's delivery record (the sink's hex digits; see [`SinkDeliveriesSid::of`]).
    SinkDeliveriesSid = "DD";
    /// `CM…`: a command to the node that owns a call (one stream per command).
    CommandSid = "CM";
    /// `SK…`: an API key of an account (its events are on the account's stream).
    KeySid = "SK";
    /// `AP…`: a TwiML Application of an account (its events are on the account's stream).
    ApplicationSid = "AP";
}

impl NodeSid {
    /// The stream of node `id`: `ND` and the first 32 hex digits of SHA-256(id), so any
    /// process finds a node's stream from its id alone.
    pub fn of(node_id: &str) -> NodeSid {
        use sha2::{Digest, Sha256};
        NodeSid(format!(
            "ND{}",
            &hex::encode(Sha256::digest(node_id.as_bytes()))[..32]
        ))
    }
}

impl PhoneNumberSid {
    /// The inventory stream of the number `e164` (what the operator says of it):
    /// `PN` and the first 32 hex digits of SHA-256(`inventory:` + number), so any process
    /// finds it from the number alone. Purchases are streams of their own.
    pub fn of_inventory(e164: &str) -> PhoneNumberSid {
        use sha2::{Digest, Sha256};
        PhoneNumberSid(format!(
            "PN{}",
            &hex::encode(Sha256::digest(format!("inventory:{e164}").as_bytes()))[..32]
        ))
    }
}

impl SinkDeliveriesSid {
    /// The stream of `sink`'s deliveries: `DD` and the sink's 32 hex digits.
    pub fn of(sink: &SinkSid) -> SinkDeliveriesSid {
        SinkDeliveriesSid(format!("DD{}", &sink.as_str()[2..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sids_validate() {
        let sid = CallSid::generate();
        assert_eq!(sid.as_str().len(), 34);
        assert!(sid.as_str().starts_with("CA"));
        assert_eq!(CallSid::parse(sid.as_str()).unwrap(), sid);
        assert_ne!(CallSid::generate(), sid);
    }

    #[test]
    fn invalid_sids_are_rejected_with_the_reason() {
        let good_hex = "0123456789abcdef0123456789abcdef";
        assert!(matches!(
            CallSid::parse(&format!("AC{good_hex}")),
            Err(SidError::WrongPrefix { expected: "CA", .. })
        ));
        assert!(matches!(
            CallSid::parse("CA1234"),
            Err(SidError::WrongLength { .. })
        ));
        assert!(matches!(
            CallSid::parse("CA0123456789ABCDEF0123456789abcdef"),
            Err(SidError::NotHex { .. })
        ));
        assert!(AccountSid::parse(&format!("AC{good_hex}")).is_ok());
    }

    #[test]
    fn serde_validates_sids() {
        let sid = AccountSid::generate();
        let json = serde_json::to_string(&sid).unwrap();
        assert_eq!(serde_json::from_str::<AccountSid>(&json).unwrap(), sid);
        assert!(serde_json::from_str::<AccountSid>("\"CAnothex\"").is_err());
    }
}

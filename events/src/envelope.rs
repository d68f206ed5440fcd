//! The CloudEvents 1.0 envelope (structured JSON mode) and the per-stream hash chain.
//!
//! The JSON an event is stored and sent as is its structured-mode form: members in the fixed
//! order below, compact, `data` verbatim as written at append time. Its hash has two levels:
//!
//! - `content = SHA-256(the JSON without "sequence" and "prevhash")` — everything the writer
//!   of the event decides, so it is computed before the event is ordered (in parallel, off
//!   the log's single writer thread);
//! - `hash = SHA-256(prevhash "\n" sequence "\n" content)` (hex strings, decimal sequence) —
//!   the chain link, one SHA-256 block.
//!
//! Each event's `prevhash` is the `hash` of the previous event of its stream (64 zeros for the
//! first), so editing any stored byte, or reordering, breaks the chain.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::payload::{DecodeError, Payload};

/// `prevhash` of the first event of a stream.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Formats a time as RFC 3339 UTC with microseconds, the form used in envelopes.
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(TIME_FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned())
}

/// Parses an envelope time.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
}

/// Truncates to whole microseconds, the precision of the envelope.
pub fn micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1000).unwrap_or(t)
}

/// A stored event: envelope plus raw `data`. Decode the payload with [`Event::payload`];
/// readers that skip most types never pay for decoding them.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub event_type: String,
    /// `dialtone://<node-id>`.
    pub source: String,
    /// The stream: `CA…`, `PN…`, `AC…`, `RT…`, `CF…`.
    pub subject: String,
    pub time: OffsetDateTime,
    pub accountsid: String,
    /// 1-based, gap-free position within the stream.
    pub sequence: u64,
    /// Hex SHA-256 of the previous event of the stream.
    pub prevhash: String,
    /// The payload JSON, exactly as written.
    pub data: Box<RawValue>,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.to_json() == other.to_json()
    }
}

/// Structured-mode wire form. Field order here is the canonical order.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    specversion: &'a str,
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    source: &'a str,
    subject: &'a str,
    time: &'a str,
    datacontenttype: &'a str,
    accountsid: &'a str,
    sequence: u64,
    prevhash: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Owned variant for deserializing from readers that do not allow borrowing.
#[derive(Deserialize)]
struct WireOwned {
    specversion: String,
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    source: String,
    subject: String,
    time: String,
    accountsid: String,
    sequence: u64,
    prevhash: String,
    data: Box<RawValue>,
}

/// Why bytes are not a valid event envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a CloudEvents JSON envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported specversion {0:?}")]
    SpecVersion(String),
    #[error("bad time {value:?}: {source}")]
    Time {
        value: String,
        source: time::error::Parse,
    },
}

impl Event {
    /// The decoded payload; unknown types come back as [`Payload::Unknown`].
    pub fn payload(&self) -> Result<Payload, DecodeError> {
        Payload::decode(&self.event_type, &self.data)
    }

    /// The canonical structured-mode JSON.
    pub fn to_json(&self) -> String {
        let time = format_time(self.time);
        let wire = Wire {
            specversion: "1.0",
            id: self.id,
            event_type: &self.event_type,
            source: &self.source,
            subject: &self.subject,
            time: &time,
            datacontenttype: "application/json",
            accountsid: &self.accountsid,
            sequence: self.sequence,
            prevhash: &self.prevhash,
            data: &self.data,
        };
        // Only strings, integers and a raw value: serialization cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses structured-mode JSON.
    pub fn from_json(json: &[u8]) -> Result<Event, EnvelopeError> {
        let wire: WireOwned = serde_json::from_slice(json)?;
        if wire.specversion != "1.0" {
            return Err(EnvelopeError::SpecVersion(wire.specversion));
        }
        let time = parse_time(&wire.time).map_err(|source| EnvelopeError::Time {
            value: wire.time.clone(),
            source,
        })?;
        Ok(Event {
            id: wire.id,
            event_type: wire.event_type,
            source: wire.source,
            subject: wire.subject,
            time,
            accountsid: wire.accountsid,
            sequence: wire.sequence,
            prevhash: wire.prevhash,
            data: wire.data,
        })
    }

    /// The JSON without `sequence` and `prevhash`: what [`content_hash`] covers.
    pub fn content_json(&self) -> String {
        content_json(
            self.id,
            &self.event_type,
            &self.source,
            &self.subject,
            &format_time(self.time),
            &self.accountsid,
            &self.data,
        )
    }

    /// The event's hash: the next event's `prevhash`.
    pub fn hash(&self) -> String {
        chain_hash(
            &self.prevhash,
            self.sequence,
            &content_hash(self.content_json().as_bytes()),
        )
    }
}

/// The JSON of an event's content (its structured-mode JSON without `sequence` and
/// `prevhash`), in canonical member order.
pub fn content_json(
    id: Uuid,
    event_type: &str,
    source: &str,
    subject: &str,
    time: &str,
    accountsid: &str,
    data: &RawValue,
) -> String {
    #[derive(Serialize)]
    struct Content<'a> {
        specversion: &'a str,
        id: Uuid,
        #[serde(rename = "type")]
        event_type: &'a str,
        source: &'a str,
        subject: &'a str,
        time: &'a str,
        datacontenttype: &'a str,
        accountsid: &'a str,
        data: &'a RawValue,
    }
    let content = Content {
        specversion: "1.0",
        id,
        event_type,
        source,
        subject,
        time,
        datacontenttype: "application/json",
        accountsid,
        data,
    };
    // Only strings, a UUID and a raw value: serialization cannot fail.
    serde_json::to_string(&content).unwrap_or_default()
}

/// Hex SHA-256 of an event's content JSON.
pub fn content_hash(content_json: &[u8]) -> String {
    hex::encode(Sha256::digest(content_json))
}

/// The chain link: hex SHA-256 of `prevhash "\n" sequence "\n" content_hash`.
pub fn chain_hash(prevhash: &str, sequence: u64, content_hash: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prevhash.as_bytes());
    hasher.update(b"\n");
    hasher.update(sequence.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(content_hash.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            id: Uuid::now_v7(),
            event_type: "dialtone.call.ringing".into(),
            source: "dialtone://node-1".into(),
            subject: "CA0123456789abcdef0123456789abcdef".into(),
            time: micros(OffsetDateTime::now_utc()),
            accountsid: "AC0123456789abcdef0123456789abcdef".into(),
            sequence: 2,
            prevhash: GENESIS_HASH.into(),
            data: RawValue::from_string("{\"sip_code\":180}".into()).unwrap(),
        }
    }

    #[test]
    fn json_round_trip_is_byte_identical() {
        let event = sample();
        let json = event.to_json();
        let back = Event::from_json(json.as_bytes()).unwrap();
        assert_eq!(back.to_json(), json);
        assert_eq!(back.hash(), event.hash());
        assert!(json.starts_with("{\"specversion\":\"1.0\",\"id\":"));
        assert!(json.contains("\"type\":\"dialtone.call.ringing\""));
    }

    #[test]
    fn any_change_changes_the_hash() {
        let event = sample();
        let mut edited = event.clone();
        edited.data = RawValue::from_string("{\"sip_code\":183}".into()).unwrap();
        assert_ne!(event.hash(), edited.hash());
        let mut resequenced = event.clone();
        resequenced.sequence = 3;
        assert_ne!(event.hash(), resequenced.hash());
        let mut relinked = event.clone();
        relinked.prevhash = "1".repeat(64);
        assert_ne!(event.hash(), relinked.hash());
    }

    #[test]
    fn the_hash_is_the_documented_two_level_sha256() {
        let event = sample();
        let json = event.to_json();
        let content = json
            .replace(&format!(",\"sequence\":{}", event.sequence), "")
            .replace(&format!(",\"prevhash\":\"{}\"", event.prevhash), "");
        assert_eq!(event.content_json(), content);
        let content_hex = hex::encode(Sha256::digest(content.as_bytes()));
        let link = format!("{}\n{}\n{}", event.prevhash, event.sequence, content_hex);
        assert_eq!(event.hash(), hex::encode(Sha256::digest(link.as_bytes())));
    }

    #[test]
    fn time_has_microseconds_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(format_time(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(
            micros(parse_time("2023-11-14T22:13:20.123456Z").unwrap()),
            micros(t)
        );
    }

    #[test]
    fn wrong_specversion_is_an_error() {
        let json = sample().to_json().replace("\"1.0\"", "\"0.3\"");
        assert!(matches!(
            Event::from_json(json.as_bytes()),
            Err(EnvelopeError::SpecVersion(_))
        ));
    }
}

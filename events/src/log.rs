//! The event log interface shared by the SQLite and Kafka backends.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::envelope::Event;
use crate::payload::Payload;
use crate::position::PositionError;

/// What the writer believes the stream's current version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this sequence.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

impl ExpectedVersion {
    /// Whether a stream whose last sequence is `actual` (0 = absent) satisfies this.
    pub fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

/// An event to append; the log fills in id (unless given), time, sequence and prevhash.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub accountsid: String,
    pub payload: Payload,
    pub id: Option<Uuid>,
    pub time: Option<OffsetDateTime>,
}

impl NewEvent {
    pub fn new(accountsid: impl Into<String>, payload: impl Into<Payload>) -> NewEvent {
        NewEvent {
            accountsid: accountsid.into(),
            payload: payload.into(),
            id: None,
            time: None,
        }
    }

    pub fn at(mut self, time: OffsetDateTime) -> NewEvent {
        self.time = Some(time);
        self
    }
}

/// Where an event sits in the log: a partition (`log` for SQLite, `<topic>/<n>` for Kafka)
/// and an offset within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub partition: String,
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.partition, self.offset)
    }
}

/// A resume point: for each partition, the next offset to read. Partitions not named start
/// at their beginning. Stored by projections beside their read models.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub BTreeMap<String, u64>);

impl Cursor {
    /// The beginning of the log.
    pub fn start() -> Cursor {
        Cursor::default()
    }

    /// The next offset to read in `partition`.
    pub fn next_offset(&self, partition: &str) -> u64 {
        self.0.get(partition).copied().unwrap_or(0)
    }

    /// Moves past `position`.
    pub fn advance(&mut self, position: &Position) {
        let next = position.offset + 1;
        match self.0.get_mut(&position.partition) {
            Some(offset) if *offset >= next => {}
            Some(offset) => *offset = next,
            None => {
                self.0.insert(position.partition.clone(), next);
            }
        }
    }

    /// Whether `position` was already read.
    pub fn has_passed(&self, position: &Position) -> bool {
        position.offset < self.next_offset(&position.partition)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    pub fn from_json(s: &str) -> Result<Cursor, serde_json::Error> {
        Ok(Cursor(serde_json::from_str(s)?))
    }
}

/// An event with its place in the log.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub position: Position,
    pub event: Event,
}

/// The result of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Sequence of the first appended event.
    pub first_sequence: u64,
    /// Sequence of the last appended event: the stream's new version.
    pub last_sequence: u64,
    pub positions: Vec<Position>,
}

/// Which events a subscription delivers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Type prefixes (`dialtone.call.` or a full type); empty means all.
    pub type_prefixes: Vec<String>,
    /// Only this stream.
    pub stream: Option<String>,
    /// Only this account.
    pub account: Option<String>,
}

impl Filter {
    pub fn all() -> Filter {
        Filter::default()
    }

    pub fn matches(&self, event: &Event) -> bool {
        (self.type_prefixes.is_empty()
            || self
                .type_prefixes
                .iter()
                .any(|p| event.event_type.starts_with(p.as_str())))
            && self.stream.as_deref().is_none_or(|s| s == event.subject)
            && self
                .account
                .as_deref()
                .is_none_or(|a| a == event.accountsid)
    }
}

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("version conflict on stream {stream}: expected {expected}, actual version {actual}")]
    VersionConflict {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("invalid stream id {0:?}: a stream is a SID such as CA…, PN…, AC…, RT…, DG…")]
    InvalidStream(String),
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("storage error in {context}: {source}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("kafka error in {context}: {message}")]
    Kafka {
        context: &'static str,
        message: String,
    },
    #[error("stored event at {position} is corrupt: {message}")]
    Corrupt { position: String, message: String },
    #[error("the event log is closed")]
    Closed,
    #[error("I/O error in {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A live subscription: catch-up from its start, then new events as they are appended.
pub struct Subscription {
    pub(crate) rx: mpsc::Receiver<Result<RecordedEvent, LogError>>,
}

impl Subscription {
    pub(crate) fn channel(
        capacity: usize,
    ) -> (mpsc::Sender<Result<RecordedEvent, LogError>>, Subscription) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Subscription { rx })
    }

    /// The next event; `None` when the log closed.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent, LogError>> {
        self.rx.recv().await
    }
}

/// The event log: Kafka in a cluster, SQLite on one machine.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if its version matches `expected`. Returns
    /// only once the events are durable.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, LogError>;

    /// The events of one stream from `from_sequence` (1-based) on, in order.
    async fn read_stream(
        &self,
        stream: &str,
        from_sequence: u64,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// Up to `limit` events after `from`, in log order (per partition).
    async fn read_all(&self, from: &Cursor, limit: usize) -> Result<Vec<RecordedEvent>, LogError>;

    /// Catch-up from `from`, then live: every matching event exactly once, per-stream order.
    async fn subscribe(&self, from: Cursor, filter: Filter) -> Result<Subscription, LogError>;

    /// The cursor just past the last event now in the log.
    async fn head(&self) -> Result<Cursor, LogError>;

    /// The opaque token of `cursor`, as the event stream API sends it ([`crate::position`]).
    fn position_token(&self, cursor: &Cursor) -> String;

    /// The cursor a token of this log names; tokens of the other backend, or of a log with
    /// other partitions, are refused.
    fn parse_position(&self, token: &str) -> Result<Cursor, PositionError>;

    /// `sqlite` or `kafka`.
    fn backend(&self) -> &'static str;
}

/// The Kafka topic suffix (family) of a stream, from its SID prefix.
pub fn family_of(stream: &str) -> Result<&'static str, LogError> {
    let family = match stream.get(..2) {
        Some("CA") => "calls",
        Some("PN") => "numbers",
        Some("AC") => "accounts",
        Some("RT") => "rates",
        Some("CF") => "conferences",
        Some("CM") => "commands",
        Some("DG" | "DF" | "DD") => "sinks",
        Some("ND") => "nodes",
        _ => return Err(LogError::InvalidStream(stream.to_owned())),
    };
    if stream.len() < 3 || !stream.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(LogError::InvalidStream(stream.to_owned()));
    }
    Ok(family)
}

/// All families, in topic order.
pub const FAMILIES: &[&str] = &[
    "calls",
    "numbers",
    "accounts",
    "rates",
    "conferences",
    "commands",
    "sinks",
    "nodes",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_advances_monotonically() {
        let mut c = Cursor::start();
        let p = |o| Position {
            partition: "log".into(),
            offset: o,
        };
        c.advance(&p(5));
        c.advance(&p(3));
        assert_eq!(c.next_offset("log"), 6);
        assert!(c.has_passed(&p(5)));
        assert!(!c.has_passed(&p(6)));
        assert_eq!(Cursor::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn expected_versions() {
        assert!(ExpectedVersion::Any.admits(7));
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
        assert!(ExpectedVersion::Exact(3).admits(3));
        assert!(!ExpectedVersion::Exact(3).admits(4));
    }

    #[test]
    fn streams_map_to_families() {
        assert_eq!(family_of("CA0123").unwrap(), "calls");
        assert_eq!(family_of("PN0123").unwrap(), "numbers");
        assert!(family_of("XX0123").is_err());
        assert!(family_of("CA01 23").is_err());
    }
}

//! The outbox table: its rows, their states and the deliverer's queries.

use dialtone_events::payload::HttpMethod;
use rusqlite::{params, Connection};
use time::OffsetDateTime;

use super::*;
use crate::projection::{load_time, sql, ProjectionError};

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not delivered or given up yet: the deliverer owes it.
    Pending,
    Delivered,
    /// Given up after the deliverer's last attempt.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<DeliveryState> {
        match value {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One status callback to deliver, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Insertion order of the outbox (monotonic while the projection is not rebuilt).
    pub id: i64,
    pub call_sid: String,
    pub sequence_number: u32,
    pub account_sid: String,
    /// The node that owns the call and so delivers its callbacks.
    pub owner_node: String,
    pub event: CallbackEvent,
    pub for_sequence: u64,
    pub url: String,
    pub method: HttpMethod,
    pub params: Vec<(String, String)>,
    pub idempotency_token: String,
    /// Envelope time of the call event.
    pub event_time: OffsetDateTime,
    pub state: DeliveryState,
    /// From the outcome event, once there is one.
    pub attempts: Option<u32>,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS callback_outbox (
    id                INTEGER PRIMARY KEY,
    call_sid          TEXT    NOT NULL,
    sequence_number   INTEGER NOT NULL,
    account_sid       TEXT    NOT NULL,
    owner_node        TEXT    NOT NULL,
    event             TEXT    NOT NULL,
    for_sequence      INTEGER NOT NULL,
    url               TEXT    NOT NULL,
    method            TEXT    NOT NULL,
    params            TEXT    NOT NULL,
    idempotency_token TEXT    NOT NULL,
    event_time        TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    attempts          INTEGER,
    http_status       INTEGER,
    error             TEXT,
    date_updated      TEXT    NOT NULL,
    UNIQUE (call_sid, sequence_number),
    UNIQUE (call_sid, for_sequence, event)
);
CREATE INDEX IF NOT EXISTS callback_outbox_pending
    ON callback_outbox (owner_node, id) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS callback_calls (
    call_sid TEXT PRIMARY KEY,
    tracker  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS callback_recordings (
    recording_sid TEXT PRIMARY KEY,
    call_sid      TEXT NOT NULL,
    state         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS callback_conferences (
    conference_sid TEXT PRIMARY KEY,
    state          TEXT NOT NULL
);
";

const COLUMNS: &str = "id, call_sid, sequence_number, account_sid, owner_node, event, for_sequence,
    url, method, params, idempotency_token, event_time, state, attempts, http_status, error";

pub(super) fn corrupt(message: String) -> ProjectionError {
    ProjectionError::CorruptRow {
        table: "callback_outbox",
        message,
    }
}

type RawRow = (
    (i64, String, u32, String, String, String, u64),
    (String, String, String, String, String, String),
    (Option<u32>, Option<u16>, Option<String>),
);

fn read_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ),
        (
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
        ),
        (r.get(13)?, r.get(14)?, r.get(15)?),
    ))
}

fn to_row(raw: RawRow) -> Result<OutboxRow, ProjectionError> {
    let (
        (id, call_sid, sequence_number, account_sid, owner_node, event, for_sequence),
        (url, method, params, token, event_time, state),
        (attempts, http_status, error),
    ) = raw;
    Ok(OutboxRow {
        id,
        event: CallbackEvent::parse(&event)
            .ok_or_else(|| corrupt(format!("unknown event {event:?}")))?,
        method: HttpMethod::parse(&method)
            .ok_or_else(|| corrupt(format!("unknown method {method:?}")))?,
        params: serde_json::from_str(&params)
            .map_err(|e| corrupt(format!("params of {call_sid}/{sequence_number}: {e}")))?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| corrupt(format!("unknown state {state:?}")))?,
        event_time: load_time("callback_outbox", &event_time)?,
        call_sid,
        sequence_number,
        account_sid,
        owner_node,
        for_sequence,
        url,
        idempotency_token: token,
        attempts,
        http_status,
        error,
    })
}

fn query_rows(
    conn: &Connection,
    query: &str,
    values: impl rusqlite::Params,
    context: &'static str,
) -> Result<Vec<OutboxRow>, ProjectionError> {
    let raws = conn
        .prepare_cached(query)
        .and_then(|mut s| {
            s.query_map(values, read_raw)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql(context))?;
    raws.into_iter().map(to_row).collect()
}

/// Pending callbacks of calls owned by `owner_node` inserted after outbox id `after_id`,
/// in outbox order (which is each call's sequence order), at most `limit`.
pub fn pending_for_node(
    conn: &Connection,
    owner_node: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<OutboxRow>, ProjectionError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    query_rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM callback_outbox
             WHERE owner_node = ?1 AND state = 'pending' AND id > ?2
             ORDER BY id LIMIT ?3"
        ),
        params![owner_node, after_id, limit],
        "reading pending callbacks",
    )
}

/// Recording subscriptions whose `recording.completed` has not arrived yet (for a gauge, or
/// to spot recordings that never completed).
pub fn open_recording_subscriptions(conn: &Connection) -> Result<u64, ProjectionError> {
    conn.query_row("SELECT COUNT(*) FROM callback_recordings", [], |r| r.get(0))
        .map_err(sql("counting recording subscriptions"))
}

/// Every callback of a call, in sequence order.
pub fn outbox_of_call(
    conn: &Connection,
    call_sid: &str,
) -> Result<Vec<OutboxRow>, ProjectionError> {
    query_rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM callback_outbox WHERE call_sid = ?1 ORDER BY sequence_number"
        ),
        params![call_sid],
        "reading a call's callbacks",
    )
}

/// The highest outbox id (0 when empty). Lower than a reader's last seen id only after the
/// projection was rebuilt.
pub fn max_outbox_id(conn: &Connection) -> Result<i64, ProjectionError> {
    conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM callback_outbox",
        [],
        |r| r.get(0),
    )
    .map_err(sql("reading the outbox head"))
}

/// Pending callbacks of `owner_node` (for a gauge or a health check).
pub fn count_pending(conn: &Connection, owner_node: &str) -> Result<u64, ProjectionError> {
    conn.query_row(
        "SELECT COUNT(*) FROM callback_outbox WHERE owner_node = ?1 AND state = 'pending'",
        [owner_node],
        |r| r.get(0),
    )
    .map_err(sql("counting pending callbacks"))
}

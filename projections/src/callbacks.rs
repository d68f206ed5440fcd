//! Status callbacks: the durable outbox of HTTP deliveries derived from call events.
//!
//! Twilio's status callbacks arrive out of order, are not retried and get lost (pain point 3
//! of the reference). Dialtone derives them from the log instead: when a call's
//! `call.initiated` names an `application.status_callback`, every selected progress event
//! (`initiated`, `ringing`, `answered`, `completed`; none selected means `completed` only)
//! becomes one row of `callback_outbox` holding everything needed to send it: URL, method,
//! account, call, the per-call `SequenceNumber` (0, 1, 2… in the order of that call's
//! callbacks), the form parameters and an idempotency token derived from call SID and
//! sequence number. A row stays `pending` until a `callback.delivered` or `callback.failed`
//! event for it (same call, `for_sequence` and event) arrives. Because the outbox is a
//! projection, a restarted deliverer resumes exactly: every row without an outcome event is
//! sent again (at least once, with the same `I-Twilio-Idempotency-Token`, so receivers can
//! drop duplicates).
//!
//! Parameters of each callback: Twilio's standard set (`AccountSid`, `ApiVersion`,
//! `CallSid`, `CallStatus`, `Called`, `Caller`, `Direction`, `From`, `To`, and
//! `ForwardedFrom` / `ParentCallSid` when known), then `CallbackSource=call-progress-events`,
//! `SequenceNumber`, `Timestamp` (RFC 2822 time of the event), on `completed`
//! `CallDuration` (seconds) and `Duration` (billed minutes), and `SipResponseCode` when
//! known. `CallStatus` keeps Twilio's quirks (`initiated` for the initiated event,
//! `in-progress` for answered). Dialtone adds **`StatusCallbackEvent`** naming the event
//! (`initiated`, `ringing`, `answered`, `completed`), because the status alone does not say
//! which event a callback reports (pain point 4). It is signed like every other parameter.
//!
//! The state machine ([`CallbackTracker`]) is pure; [`CallbacksProjection`] stores it in
//! `callback_calls` while a call lives (deleted when it ends) and writes outbox rows.

use std::collections::HashMap;

use dialtone_events::payload::{CallInitiated, CallStatus, Direction, HttpMethod};
use dialtone_events::{Payload, RecordedEvent};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use crate::billing::billable_minutes;
use crate::projection::{decode, load_time, sql, store_time, Projection, ProjectionError};

/// `CallbackSource` of call progress callbacks.
pub const CALLBACK_SOURCE: &str = "call-progress-events";
/// Dialtone's extension parameter naming the event of a callback.
pub const EVENT_PARAM: &str = "StatusCallbackEvent";
/// Twilio's `ApiVersion` parameter.
pub const API_VERSION: &str = "2010-04-01";

/// A call progress event a status callback can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallbackEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl CallbackEvent {
    pub const ALL: [CallbackEvent; 4] = [
        CallbackEvent::Initiated,
        CallbackEvent::Ringing,
        CallbackEvent::Answered,
        CallbackEvent::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallbackEvent::Initiated => "initiated",
            CallbackEvent::Ringing => "ringing",
            CallbackEvent::Answered => "answered",
            CallbackEvent::Completed => "completed",
        }
    }

    /// Parses Twilio's event name (case-insensitive).
    pub fn parse(value: &str) -> Option<CallbackEvent> {
        CallbackEvent::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(value.trim()))
    }

    fn bit(self) -> u8 {
        match self {
            CallbackEvent::Initiated => 1,
            CallbackEvent::Ringing => 2,
            CallbackEvent::Answered => 4,
            CallbackEvent::Completed => 8,
        }
    }
}

/// A set of [`CallbackEvent`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventSet(u8);

impl EventSet {
    pub const EMPTY: EventSet = EventSet(0);

    /// The events a call subscribed to: names as REST sends them (one per item) or as TwiML
    /// does (space-separated in one string); commas are tolerated, unknown names ignored.
    /// Nothing selected means `completed` only, as on Twilio.
    pub fn subscribed<S: AsRef<str>>(names: &[S]) -> EventSet {
        let mut set = EventSet::EMPTY;
        for name in names {
            for part in name.as_ref().split([' ', ',', '\t']) {
                if let Some(event) = CallbackEvent::parse(part) {
                    set.insert(event);
                }
            }
        }
        if set == EventSet::EMPTY {
            set.insert(CallbackEvent::Completed);
        }
        set
    }

    pub fn contains(self, event: CallbackEvent) -> bool {
        self.0 & event.bit() != 0
    }

    pub fn insert(&mut self, event: CallbackEvent) {
        self.0 |= event.bit();
    }
}

/// The idempotency token of callback `sequence_number` of `call_sid`: the same on every
/// attempt and after restarts, different for every callback. UUID-shaped hex of
/// `SHA-256("dialtone-status-callback:{call_sid}:{sequence_number}")`.
pub fn idempotency_token(call_sid: &str, sequence_number: u32) -> String {
    let digest = Sha256::digest(format!(
        "dialtone-status-callback:{call_sid}:{sequence_number}"
    ));
    let hex = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// RFC 2822 in UTC, Twilio's `Timestamp` form: `Tue, 31 Aug 2010 20:36:28 +0000`.
pub fn rfc2822(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc2822)
        .unwrap_or_default()
}

/// One callback the tracker decided to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCallback {
    pub sequence_number: u32,
    pub event: CallbackEvent,
    /// Stream sequence of the call event that caused it.
    pub for_sequence: u64,
    /// Form parameters in send order.
    pub params: Vec<(String, String)>,
    pub idempotency_token: String,
}

/// The status-callback state of one call: what it subscribed to and what was sent so far.
/// Pure: fed call events, it returns the callbacks to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackTracker {
    pub call_sid: String,
    pub account_sid: String,
    pub owner_node: String,
    pub url: String,
    pub method: HttpMethod,
    pub events: EventSet,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_call_sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<String>,
    /// `SequenceNumber` of the next callback.
    pub next_sequence_number: u32,
    /// Events already reported (each at most once per call).
    pub sent: EventSet,
    pub answered: bool,
    /// SIP code of a `call.rejected`, reported on `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_code: Option<u16>,
    /// `call.completed` was seen: nothing more will be sent.
    pub ended: bool,
}

impl CallbackTracker {
    /// Starts tracking a call from its `call.initiated` (stream sequence `sequence`, envelope
    /// time `time`). `None` when the call has no status callback URL. Returns the
    /// `initiated` callback too when it is selected.
    pub fn start(
        call_sid: &str,
        account_sid: &str,
        initiated: &CallInitiated,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Option<(CallbackTracker, Option<PlannedCallback>)> {
        let app = &initiated.application;
        let url = app
            .status_callback
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())?;
        let mut tracker = CallbackTracker {
            call_sid: call_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            owner_node: initiated.owner_node.clone(),
            url: url.to_owned(),
            method: app.status_callback_method,
            events: EventSet::subscribed(&app.status_callback_events),
            from: initiated.from.clone(),
            to: initiated.to.clone(),
            direction: initiated.direction,
            parent_call_sid: initiated.parent_call_sid.as_ref().map(|s| s.to_string()),
            forwarded_from: initiated.forwarded_from.clone(),
            next_sequence_number: 0,
            sent: EventSet::EMPTY,
            answered: false,
            reject_code: None,
            ended: false,
        };
        let planned = tracker.plan(
            CallbackEvent::Initiated,
            "initiated",
            sequence,
            time,
            Vec::new(),
        );
        Some((tracker, planned))
    }

    /// Applies a later call event; returns the callback it causes, if any. Each event is
    /// reported at most once, in lifecycle order: a `ringing` after the answer, or anything
    /// after `completed`, is not reported.
    pub fn apply(
        &mut self,
        payload: &Payload,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Option<PlannedCallback> {
        if self.ended {
            return None;
        }
        match payload {
            Payload::CallRinging(_) => {
                if self.answered {
                    return None;
                }
                self.plan(
                    CallbackEvent::Ringing,
                    "ringing",
                    sequence,
                    time,
                    Vec::new(),
                )
            }
            Payload::CallAnswered(_) => {
                if self.answered {
                    return None;
                }
                self.answered = true;
                let extra = vec![("SipResponseCode".to_owned(), "200".to_owned())];
                self.plan(
                    CallbackEvent::Answered,
                    "in-progress",
                    sequence,
                    time,
                    extra,
                )
            }
            Payload::CallRejected(rejected) => {
                self.reject_code = Some(rejected.sip_code);
                None
            }
            Payload::CallCompleted(completed) => {
                self.ended = true;
                let answered =
                    self.answered || completed.answered_at.is_some() || completed.answered_ms > 0;
                let duration_s = if answered { completed.duration_s } else { 0 };
                let minutes = billable_minutes(answered, completed.answered_ms);
                let mut extra = vec![
                    ("CallDuration".to_owned(), duration_s.to_string()),
                    ("Duration".to_owned(), minutes.to_string()),
                ];
                let sip_code = completed
                    .sip_code
                    .or(self.reject_code)
                    .or_else(|| default_sip_code(completed.status, answered));
                if let Some(code) = sip_code {
                    extra.push(("SipResponseCode".to_owned(), code.to_string()));
                }
                self.plan(
                    CallbackEvent::Completed,
                    completed.status.as_str(),
                    sequence,
                    time,
                    extra,
                )
            }
            _ => None,
        }
    }

    /// The callback for `event` if it is selected and not sent yet.
    fn plan(
        &mut self,
        event: CallbackEvent,
        call_status: &str,
        sequence: u64,
        time: OffsetDateTime,
        extra: Vec<(String, String)>,
    ) -> Option<PlannedCallback> {
        if !self.events.contains(event) || self.sent.contains(event) {
            return None;
        }
        self.sent.insert(event);
        let sequence_number = self.next_sequence_number;
        self.next_sequence_number += 1;
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.account_sid.clone()),
            ("ApiVersion".into(), API_VERSION.into()),
            ("CallSid".into(), self.call_sid.clone()),
            ("CallStatus".into(), call_status.into()),
            ("Called".into(), self.to.clone()),
            ("Caller".into(), self.from.clone()),
            ("Direction".into(), self.direction.as_str().into()),
            ("From".into(), self.from.clone()),
            ("To".into(), self.to.clone()),
        ];
        if let Some(forwarded) = &self.forwarded_from {
            params.push(("ForwardedFrom".into(), forwarded.clone()));
        }
        if let Some(parent) = &self.parent_call_sid {
            params.push(("ParentCallSid".into(), parent.clone()));
        }
        params.push(("CallbackSource".into(), CALLBACK_SOURCE.into()));
        params.push(("SequenceNumber".into(), sequence_number.to_string()));
        params.push((EVENT_PARAM.into(), event.as_str().into()));
        params.push(("Timestamp".into(), rfc2822(time)));
        params.extend(extra);
        Some(PlannedCallback {
            sequence_number,
            event,
            for_sequence: sequence,
            params,
            idempotency_token: idempotency_token(&self.call_sid, sequence_number),
        })
    }
}

/// The SIP code a final status implies when no event carried one.
fn default_sip_code(status: CallStatus, answered: bool) -> Option<u16> {
    match status {
        CallStatus::Completed if answered => Some(200),
        CallStatus::Busy => Some(486),
        CallStatus::Canceled | CallStatus::NoAnswer => Some(487),
        _ => None,
    }
}

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

const SCHEMA: &str = "
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
";

const COLUMNS: &str = "id, call_sid, sequence_number, account_sid, owner_node, event, for_sequence,
    url, method, params, idempotency_token, event_time, state, attempts, http_status, error";

fn corrupt(message: String) -> ProjectionError {
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

/// A tracker touched in the current batch.
struct StagedTracker {
    tracker: Option<CallbackTracker>,
    dirty: bool,
}

/// Projects call events into the status-callback outbox.
#[derive(Default)]
pub struct CallbacksProjection {
    /// Trackers of this batch by call SID (`None`: the call has no status callback).
    staged: HashMap<String, StagedTracker>,
}

impl CallbacksProjection {
    pub fn new() -> CallbacksProjection {
        CallbacksProjection::default()
    }

    fn staged(
        &mut self,
        tx: &Connection,
        call_sid: &str,
    ) -> Result<&mut StagedTracker, ProjectionError> {
        if !self.staged.contains_key(call_sid) {
            let stored: Option<String> = tx
                .prepare_cached("SELECT tracker FROM callback_calls WHERE call_sid = ?1")
                .and_then(|mut s| s.query_row([call_sid], |r| r.get(0)).optional())
                .map_err(sql("reading a callback tracker"))?;
            let tracker = stored
                .map(|json| {
                    serde_json::from_str::<CallbackTracker>(&json).map_err(|e| {
                        ProjectionError::CorruptRow {
                            table: "callback_calls",
                            message: format!("tracker of {call_sid}: {e}"),
                        }
                    })
                })
                .transpose()?;
            self.staged.insert(
                call_sid.to_owned(),
                StagedTracker {
                    tracker,
                    dirty: false,
                },
            );
        }
        self.staged
            .get_mut(call_sid)
            .ok_or_else(|| ProjectionError::Task("staged tracker vanished".to_owned()))
    }
}

fn insert_planned(
    tx: &Transaction<'_>,
    tracker: &CallbackTracker,
    planned: &PlannedCallback,
    time: OffsetDateTime,
) -> Result<(), ProjectionError> {
    let params_json = serde_json::to_string(&planned.params)
        .map_err(|e| corrupt(format!("cannot encode params: {e}")))?;
    let time = store_time(time);
    tx.prepare_cached(
        "INSERT INTO callback_outbox (call_sid, sequence_number, account_sid, owner_node, event,
            for_sequence, url, method, params, idempotency_token, event_time, state, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?11)
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            tracker.call_sid,
            planned.sequence_number,
            tracker.account_sid,
            tracker.owner_node,
            planned.event.as_str(),
            planned.for_sequence,
            tracker.url,
            tracker.method.as_str(),
            params_json,
            planned.idempotency_token,
            time,
        ])
    })
    .map_err(sql("inserting a callback"))?;
    Ok(())
}

const WANTED: &[&str] = &[
    "dialtone.call.initiated",
    "dialtone.call.ringing",
    "dialtone.call.answered",
    "dialtone.call.rejected",
    "dialtone.call.completed",
    "dialtone.call.callback.delivered",
    "dialtone.call.callback.failed",
];

impl Projection for CallbacksProjection {
    fn name(&self) -> &'static str {
        "callbacks"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["callback_outbox", "callback_calls"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA)
            .map_err(sql("creating the callback outbox"))
    }

    fn wants(&self, event_type: &str) -> bool {
        WANTED.contains(&event_type)
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let call_sid = event.subject.as_str();
        match event.event_type.as_str() {
            "dialtone.call.callback.delivered" | "dialtone.call.callback.failed" => {
                let (event_name, for_sequence, state, attempts, status, error) =
                    match decode(recorded) {
                        Some(Payload::CallbackDelivered(d)) => (
                            d.event,
                            d.for_sequence,
                            DeliveryState::Delivered,
                            d.attempts,
                            Some(d.status),
                            None,
                        ),
                        Some(Payload::CallbackFailed(f)) => (
                            f.event,
                            f.for_sequence,
                            DeliveryState::Failed,
                            f.attempts,
                            None,
                            Some(f.error),
                        ),
                        _ => return Ok(()),
                    };
                tx.prepare_cached(
                    "UPDATE callback_outbox
                     SET state = ?4, attempts = ?5, http_status = ?6, error = ?7, date_updated = ?8
                     WHERE call_sid = ?1 AND for_sequence = ?2 AND event = ?3",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        call_sid,
                        for_sequence,
                        event_name,
                        state.as_str(),
                        attempts,
                        status,
                        error,
                        store_time(event.time),
                    ])
                })
                .map_err(sql("recording a callback outcome"))?;
                Ok(())
            }
            _ => {
                let is_initiated = event.event_type == "dialtone.call.initiated";
                if is_initiated && event.sequence == 1 {
                    // The first event of a stream: no tracker can exist yet, skip the lookup.
                    self.staged
                        .entry(call_sid.to_owned())
                        .or_insert(StagedTracker {
                            tracker: None,
                            dirty: false,
                        });
                }
                let staged = self.staged(tx, call_sid)?;
                // Most calls have no status callback: skip decoding their events.
                if staged.tracker.is_none() && !is_initiated {
                    return Ok(());
                }
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let planned = match (&payload, staged.tracker.as_mut()) {
                    (Payload::CallInitiated(initiated), None) => {
                        match CallbackTracker::start(
                            call_sid,
                            &event.accountsid,
                            initiated,
                            event.sequence,
                            event.time,
                        ) {
                            Some((tracker, planned)) => {
                                staged.tracker = Some(tracker);
                                staged.dirty = true;
                                planned
                            }
                            None => None,
                        }
                    }
                    (Payload::CallInitiated(_), Some(_)) => None,
                    (_, Some(tracker)) => {
                        let before = tracker.clone();
                        let planned = tracker.apply(&payload, event.sequence, event.time);
                        if *tracker != before {
                            staged.dirty = true;
                        }
                        planned
                    }
                    (_, None) => None,
                };
                if let (Some(planned), Some(tracker)) = (planned, staged.tracker.as_ref()) {
                    insert_planned(tx, tracker, &planned, event.time)?;
                }
                Ok(())
            }
        }
    }

    fn before_commit(&mut self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        let staged = std::mem::take(&mut self.staged);
        for (call_sid, entry) in staged {
            if !entry.dirty {
                continue;
            }
            match entry.tracker {
                // A call that ended needs no state any more: its outbox rows carry everything.
                Some(tracker) if tracker.ended => {
                    tx.prepare_cached("DELETE FROM callback_calls WHERE call_sid = ?1")
                        .and_then(|mut s| s.execute([&call_sid]))
                        .map_err(sql("deleting a callback tracker"))?;
                }
                Some(tracker) => {
                    let json = serde_json::to_string(&tracker)
                        .map_err(|e| corrupt(format!("cannot encode tracker: {e}")))?;
                    tx.prepare_cached(
                        "INSERT INTO callback_calls (call_sid, tracker) VALUES (?1, ?2)
                         ON CONFLICT (call_sid) DO UPDATE SET tracker = excluded.tracker",
                    )
                    .and_then(|mut s| s.execute(params![call_sid, json]))
                    .map_err(sql("writing a callback tracker"))?;
                }
                None => {}
            }
        }
        Ok(())
    }

    fn after_rollback(&mut self) {
        self.staged.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_events::payload::{
        CallAnswered, CallApplication, CallCompleted, CallRejected, CallRinging,
    };
    use time::macros::datetime;

    const CALL: &str = "CA0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

    fn initiated(events: &[&str], url: Option<&str>) -> CallInitiated {
        CallInitiated {
            direction: Direction::OutboundApi,
            from: "+15551230000".into(),
            to: "+15559870000".into(),
            owner_node: "node-1".into(),
            sip_call_id: None,
            source_addr: None,
            phone_number_sid: None,
            parent_call_sid: None,
            forwarded_from: None,
            application: CallApplication {
                status_callback: url.map(str::to_owned),
                status_callback_method: HttpMethod::Post,
                status_callback_events: events.iter().map(|s| s.to_string()).collect(),
                ..CallApplication::default()
            },
        }
    }

    fn completed(status: CallStatus, answered_ms: u64, sip_code: Option<u16>) -> Payload {
        Payload::CallCompleted(CallCompleted {
            status,
            duration_s: answered_ms / 1000,
            answered_ms,
            answered_at: None,
            hangup_by: "caller".into(),
            sip_code,
        })
    }

    fn param<'a>(planned: &'a PlannedCallback, name: &str) -> Option<&'a str> {
        planned
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    const T0: OffsetDateTime = datetime!(2025-03-10 12:00:00 UTC);

    #[test]
    fn all_four_events_in_order_with_twilio_parameters() {
        let (mut tracker, first) = CallbackTracker::start(
            CALL,
            ACCOUNT,
            &initiated(
                &["initiated ringing", "answered", "completed"],
                Some("https://a/s"),
            ),
            1,
            T0,
        )
        .unwrap();
        let first = first.unwrap();
        assert_eq!(first.sequence_number, 0);
        assert_eq!(first.event, CallbackEvent::Initiated);
        assert_eq!(
            first.params,
            vec![
                ("AccountSid".to_owned(), ACCOUNT.to_owned()),
                ("ApiVersion".into(), "2010-04-01".into()),
                ("CallSid".into(), CALL.into()),
                ("CallStatus".into(), "initiated".into()),
                ("Called".into(), "+15559870000".into()),
                ("Caller".into(), "+15551230000".into()),
                ("Direction".into(), "outbound-api".into()),
                ("From".into(), "+15551230000".into()),
                ("To".into(), "+15559870000".into()),
                ("CallbackSource".into(), "call-progress-events".into()),
                ("SequenceNumber".into(), "0".into()),
                ("StatusCallbackEvent".into(), "initiated".into()),
                ("Timestamp".into(), "Mon, 10 Mar 2025 12:00:00 +0000".into()),
            ]
        );
        let ringing = tracker
            .apply(&Payload::CallRinging(CallRinging::default()), 2, T0)
            .unwrap();
        assert_eq!((ringing.sequence_number, ringing.for_sequence), (1, 2));
        assert_eq!(param(&ringing, "CallStatus"), Some("ringing"));
        // A second 180/183 is not a second ringing callback.
        assert!(tracker
            .apply(&Payload::CallRinging(CallRinging::default()), 3, T0)
            .is_none());
        let answered = tracker
            .apply(&Payload::CallAnswered(CallAnswered::default()), 4, T0)
            .unwrap();
        assert_eq!(answered.sequence_number, 2);
        assert_eq!(param(&answered, "CallStatus"), Some("in-progress"));
        assert_eq!(param(&answered, "StatusCallbackEvent"), Some("answered"));
        assert_eq!(param(&answered, "SipResponseCode"), Some("200"));
        let done = tracker
            .apply(&completed(CallStatus::Completed, 61_500, None), 9, T0)
            .unwrap();
        assert_eq!(done.sequence_number, 3);
        assert_eq!(param(&done, "CallStatus"), Some("completed"));
        assert_eq!(param(&done, "CallDuration"), Some("61"));
        assert_eq!(param(&done, "Duration"), Some("2"));
        assert_eq!(param(&done, "SipResponseCode"), Some("200"));
        assert!(tracker.ended);
        assert!(tracker
            .apply(&Payload::CallAnswered(CallAnswered::default()), 10, T0)
            .is_none());
        assert_ne!(first.idempotency_token, done.idempotency_token);
        assert_eq!(first.idempotency_token, idempotency_token(CALL, 0));
    }

    #[test]
    fn no_events_means_completed_only_and_no_url_means_nothing() {
        assert!(CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], None), 1, T0).is_none());
        assert!(
            CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("  ")), 1, T0).is_none()
        );
        let (mut tracker, first) =
            CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("https://a/s")), 1, T0)
                .unwrap();
        assert!(first.is_none());
        assert!(tracker
            .apply(&Payload::CallRinging(CallRinging::default()), 2, T0)
            .is_none());
        assert!(tracker
            .apply(&Payload::CallAnswered(CallAnswered::default()), 3, T0)
            .is_none());
        let done = tracker
            .apply(&completed(CallStatus::Completed, 3_000, None), 4, T0)
            .unwrap();
        assert_eq!(done.sequence_number, 0);
        assert_eq!(param(&done, "SequenceNumber"), Some("0"));
    }

    #[test]
    fn unanswered_endings_carry_their_sip_codes() {
        let cases = [
            (CallStatus::Busy, None, None, "486"),
            (CallStatus::Canceled, None, None, "487"),
            (CallStatus::NoAnswer, None, None, "487"),
            (CallStatus::Failed, Some(603), None, "603"),
            (CallStatus::Busy, Some(486), Some(600), "600"),
        ];
        for (status, rejected, completed_code, expected) in cases {
            let (mut tracker, _) =
                CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("https://a/s")), 1, T0)
                    .unwrap();
            if let Some(code) = rejected {
                assert!(tracker
                    .apply(
                        &Payload::CallRejected(CallRejected {
                            reason: "rejected".into(),
                            sip_code: code
                        }),
                        2,
                        T0
                    )
                    .is_none());
            }
            let done = tracker
                .apply(&completed(status, 0, completed_code), 3, T0)
                .unwrap();
            assert_eq!(param(&done, "CallStatus"), Some(status.as_str()));
            assert_eq!(
                param(&done, "SipResponseCode"),
                Some(expected),
                "{status:?}"
            );
            assert_eq!(param(&done, "CallDuration"), Some("0"));
            assert_eq!(param(&done, "Duration"), Some("0"));
        }
    }

    #[test]
    fn failed_without_any_code_sends_no_sip_response_code() {
        let (mut tracker, _) =
            CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("https://a/s")), 1, T0)
                .unwrap();
        let done = tracker
            .apply(&completed(CallStatus::Failed, 0, None), 2, T0)
            .unwrap();
        assert_eq!(param(&done, "SipResponseCode"), None);
    }

    #[test]
    fn event_sets_parse_twilio_spellings() {
        let set = EventSet::subscribed(&["Initiated,ringing", "bogus"]);
        assert!(set.contains(CallbackEvent::Initiated));
        assert!(set.contains(CallbackEvent::Ringing));
        assert!(!set.contains(CallbackEvent::Completed));
        let only_unknown = EventSet::subscribed(&["bogus"]);
        assert!(only_unknown.contains(CallbackEvent::Completed));
        assert!(!only_unknown.contains(CallbackEvent::Ringing));
    }

    #[test]
    fn idempotency_tokens_are_stable_and_uuid_shaped() {
        let token = idempotency_token(CALL, 3);
        assert_eq!(token, idempotency_token(CALL, 3));
        assert_ne!(token, idempotency_token(CALL, 4));
        assert_eq!(token.len(), 36);
        assert_eq!(token.matches('-').count(), 4);
    }

    #[test]
    fn tracker_round_trips_through_json() {
        let (tracker, _) = CallbackTracker::start(
            CALL,
            ACCOUNT,
            &initiated(&["ringing"], Some("https://a/s")),
            1,
            T0,
        )
        .unwrap();
        let json = serde_json::to_string(&tracker).unwrap();
        assert_eq!(
            serde_json::from_str::<CallbackTracker>(&json).unwrap(),
            tracker
        );
    }
}

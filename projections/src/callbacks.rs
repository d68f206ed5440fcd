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
//! `CallDuration` (seconds) and `Duration` (billed minutes), `SipResponseCode` when known,
//! and for a call made with REST `Record=true` (a `recording.started` of source
//! `OutboundAPI`) `RecordingUrl`, `RecordingSid` and, when its `recording.completed` came
//! before the call's, `RecordingDuration`. `CallStatus` keeps Twilio's quirks (`initiated` for the initiated event,
//! `in-progress` for answered). Dialtone adds **`StatusCallbackEvent`** naming the event
//! (`initiated`, `ringing`, `answered`, `completed`), because the status alone does not say
//! which event a callback reports (pain point 4). It is signed like every other parameter.
//!
//! ## Recording status callbacks
//!
//! A `recording.started` that names a `status_callback` (Twilio's `recordingStatusCallback`
//! of `<Record>`, `<Dial record>` or REST `Record=true`) subscribes that recording, whether
//! or not the call has status callbacks of its own. Its selected events (`in-progress` on
//! `recording.started`; `completed` or `absent` on the matching `recording.completed`; none
//! selected means `completed` only) become outbox rows of the same call, so they are
//! delivered in order with the call's other callbacks, signed and retried the same way. The
//! outbox names their events `recording-in-progress`, `recording-completed` and
//! `recording-absent`, which keeps a recording row apart from a call progress row of the
//! same call event. Parameters, as Twilio sends them: `AccountSid`, `CallSid`,
//! `RecordingSid`, `RecordingUrl` (carried by the event: only the recording node knows its
//! public base URL), `RecordingStatus` (`in-progress`, `completed`, `absent`),
//! `RecordingDuration` (whole seconds, rounded up as for `<Record>`'s action; on `completed`),
//! `RecordingChannels`, `RecordingStartTime` (RFC 2822), `RecordingSource`, `RecordingTrack`
//! (when the event names one), `ErrorCode` (0, or on `absent` 16101 too short / 16102
//! silent), and Dialtone's `StatusCallbackEvent` naming the outbox event
//! (`recording-completed`…, so that an endpoint shared with call progress callbacks can
//! never mistake a recording's `completed` for the call's). There is no `SequenceNumber`,
//! `CallbackSource` or `Timestamp`: Twilio sends those with call progress callbacks only.
//!
//! ## Conference status callbacks
//!
//! `<Conference statusCallback>`: see [`conference`]. A room's callbacks are outbox rows
//! whose `call_sid` column holds the conference SID, so they are ordered, delivered and
//! recorded (on the `CF…` stream) exactly like a call's.
//!
//! ## Ordering
//!
//! Each outbox row has a per-call `sequence_number` (0, 1, 2… over all callbacks of the call,
//! recording ones included) that orders delivery and derives the idempotency token. The
//! `SequenceNumber` parameter of call progress callbacks counts only those, as on Twilio, so
//! the two differ once a recording callback came between.
//!
//! The state machines ([`CallbackTracker`], [`RecordingCallbacks`]) are pure;
//! [`CallbacksProjection`] stores a call's tracker in `callback_calls` while the call lives
//! (deleted when it ends), a recording's subscription in `callback_recordings` until the
//! recording completes, and writes outbox rows.

use std::collections::HashMap;

pub mod conference;
pub use conference::ConferenceCallbacks;

use dialtone_events::payload::{
    CallInitiated, CallStatus, Direction, HttpMethod, RecordingCompleted, RecordingStarted,
};
use dialtone_events::sid::ConferenceSid;
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

/// What a status callback reports: a call progress event, or a recording's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallbackEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
    /// A recording started (Twilio's recording event `in-progress`).
    RecordingInProgress,
    /// A recording is complete and available (`completed`).
    RecordingCompleted,
    /// A recording ended empty or silent (`absent`).
    RecordingAbsent,
    /// A conference began mixing audio (`start` of a `<Conference statusCallbackEvent>`).
    ConferenceStart,
    /// A conference ended (`end`).
    ConferenceEnd,
    /// A participant joined a conference (`join`).
    ParticipantJoin,
    /// A participant left a conference (`leave`).
    ParticipantLeave,
    /// A participant was muted (`mute`).
    ParticipantMute,
    /// A participant was unmuted (`mute` too).
    ParticipantUnmute,
    /// A participant was put on hold (`hold`).
    ParticipantHold,
    /// A participant was taken off hold (`hold` too).
    ParticipantUnhold,
}

impl CallbackEvent {
    pub const ALL: [CallbackEvent; 15] = [
        CallbackEvent::Initiated,
        CallbackEvent::Ringing,
        CallbackEvent::Answered,
        CallbackEvent::Completed,
        CallbackEvent::RecordingInProgress,
        CallbackEvent::RecordingCompleted,
        CallbackEvent::RecordingAbsent,
        CallbackEvent::ConferenceStart,
        CallbackEvent::ConferenceEnd,
        CallbackEvent::ParticipantJoin,
        CallbackEvent::ParticipantLeave,
        CallbackEvent::ParticipantMute,
        CallbackEvent::ParticipantUnmute,
        CallbackEvent::ParticipantHold,
        CallbackEvent::ParticipantUnhold,
    ];

    /// The conference events (`<Conference statusCallbackEvent>`).
    pub const CONFERENCE: [CallbackEvent; 8] = [
        CallbackEvent::ConferenceStart,
        CallbackEvent::ConferenceEnd,
        CallbackEvent::ParticipantJoin,
        CallbackEvent::ParticipantLeave,
        CallbackEvent::ParticipantMute,
        CallbackEvent::ParticipantUnmute,
        CallbackEvent::ParticipantHold,
        CallbackEvent::ParticipantUnhold,
    ];

    /// The call progress events (`StatusCallbackEvent` of a call).
    pub const PROGRESS: [CallbackEvent; 4] = [
        CallbackEvent::Initiated,
        CallbackEvent::Ringing,
        CallbackEvent::Answered,
        CallbackEvent::Completed,
    ];

    /// The recording events (`recordingStatusCallbackEvent`).
    pub const RECORDING: [CallbackEvent; 3] = [
        CallbackEvent::RecordingInProgress,
        CallbackEvent::RecordingCompleted,
        CallbackEvent::RecordingAbsent,
    ];

    /// The outbox's name of the event (and the value of `StatusCallbackEvent`).
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackEvent::Initiated => "initiated",
            CallbackEvent::Ringing => "ringing",
            CallbackEvent::Answered => "answered",
            CallbackEvent::Completed => "completed",
            CallbackEvent::RecordingInProgress => "recording-in-progress",
            CallbackEvent::RecordingCompleted => "recording-completed",
            CallbackEvent::RecordingAbsent => "recording-absent",
            CallbackEvent::ConferenceStart => "conference-start",
            CallbackEvent::ConferenceEnd => "conference-end",
            CallbackEvent::ParticipantJoin => "participant-join",
            CallbackEvent::ParticipantLeave => "participant-leave",
            CallbackEvent::ParticipantMute => "participant-mute",
            CallbackEvent::ParticipantUnmute => "participant-unmute",
            CallbackEvent::ParticipantHold => "participant-hold",
            CallbackEvent::ParticipantUnhold => "participant-unhold",
        }
    }

    /// The name a `<Conference statusCallbackEvent>` selects it by (`start`, `end`, `join`,
    /// `leave`); `None` for call and recording events.
    pub fn conference_name(self) -> Option<&'static str> {
        match self {
            CallbackEvent::ConferenceStart => Some("start"),
            CallbackEvent::ConferenceEnd => Some("end"),
            CallbackEvent::ParticipantJoin => Some("join"),
            CallbackEvent::ParticipantLeave => Some("leave"),
            CallbackEvent::ParticipantMute | CallbackEvent::ParticipantUnmute => Some("mute"),
            CallbackEvent::ParticipantHold | CallbackEvent::ParticipantUnhold => Some("hold"),
            _ => None,
        }
    }

    /// Twilio's name of a recording event (`in-progress`, `completed`, `absent`), which is
    /// also its `RecordingStatus`; `None` for call progress events.
    pub fn recording_status(self) -> Option<&'static str> {
        match self {
            CallbackEvent::RecordingInProgress => Some("in-progress"),
            CallbackEvent::RecordingCompleted => Some("completed"),
            CallbackEvent::RecordingAbsent => Some("absent"),
            _ => None,
        }
    }

    /// Parses an outbox event name (case-insensitive).
    pub fn parse(value: &str) -> Option<CallbackEvent> {
        CallbackEvent::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(value.trim()))
    }

    /// Parses Twilio's name of a call progress event (case-insensitive).
    pub fn parse_progress(value: &str) -> Option<CallbackEvent> {
        CallbackEvent::PROGRESS
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(value.trim()))
    }

    /// Parses Twilio's name of a recording event (case-insensitive).
    pub fn parse_recording(value: &str) -> Option<CallbackEvent> {
        CallbackEvent::RECORDING.into_iter().find(|e| {
            e.recording_status()
                .is_some_and(|name| name.eq_ignore_ascii_case(value.trim()))
        })
    }

    /// Parses a `<Conference statusCallbackEvent>` name (case-insensitive).
    pub fn parse_conference(value: &str) -> Option<CallbackEvent> {
        CallbackEvent::CONFERENCE.into_iter().find(|e| {
            e.conference_name()
                .is_some_and(|name| name.eq_ignore_ascii_case(value.trim()))
        })
    }

    fn bit(self) -> u16 {
        match self {
            CallbackEvent::Initiated => 1,
            CallbackEvent::Ringing => 2,
            CallbackEvent::Answered => 4,
            CallbackEvent::Completed => 8,
            CallbackEvent::RecordingInProgress => 16,
            CallbackEvent::RecordingCompleted => 32,
            CallbackEvent::RecordingAbsent => 64,
            CallbackEvent::ConferenceStart => 128,
            CallbackEvent::ConferenceEnd => 256,
            CallbackEvent::ParticipantJoin => 512,
            CallbackEvent::ParticipantLeave => 1024,
            CallbackEvent::ParticipantMute => 2048,
            CallbackEvent::ParticipantUnmute => 4096,
            CallbackEvent::ParticipantHold => 8192,
            CallbackEvent::ParticipantUnhold => 16384,
        }
    }
}

/// A set of [`CallbackEvent`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventSet(u16);

impl EventSet {
    pub const EMPTY: EventSet = EventSet(0);

    /// The events a call subscribed to: names as REST sends them (one per item) or as TwiML
    /// does (space-separated in one string); commas are tolerated, unknown names ignored.
    /// Nothing selected means `completed` only, as on Twilio.
    pub fn subscribed<S: AsRef<str>>(names: &[S]) -> EventSet {
        EventSet::parse(
            names,
            CallbackEvent::parse_progress,
            CallbackEvent::Completed,
        )
    }

    /// The events a recording subscribed to (`in-progress`, `completed`, `absent`, spelled
    /// and separated as for [`EventSet::subscribed`]); nothing selected means `completed`.
    pub fn recording_subscribed<S: AsRef<str>>(names: &[S]) -> EventSet {
        EventSet::parse(
            names,
            CallbackEvent::parse_recording,
            CallbackEvent::RecordingCompleted,
        )
    }

    /// The events a conference subscribed to (`start`, `end`, `join`, `leave`, `mute` for
    /// both mute and unmute, `hold` for both hold and unhold; Twilio's `modify`, `speaker`
    /// and `announcement` are not reported); nothing selected means `end` only.
    pub fn conference_subscribed<S: AsRef<str>>(names: &[S]) -> EventSet {
        let mut set = EventSet::parse(
            names,
            CallbackEvent::parse_conference,
            CallbackEvent::ConferenceEnd,
        );
        if set.contains(CallbackEvent::ParticipantMute) {
            set.insert(CallbackEvent::ParticipantUnmute);
        }
        if set.contains(CallbackEvent::ParticipantHold) {
            set.insert(CallbackEvent::ParticipantUnhold);
        }
        set
    }

    fn parse<S: AsRef<str>>(
        names: &[S],
        parse: fn(&str) -> Option<CallbackEvent>,
        default: CallbackEvent,
    ) -> EventSet {
        let mut set = EventSet::EMPTY;
        for name in names {
            for part in name.as_ref().split([' ', ',', '\t']) {
                if let Some(event) = parse(part) {
                    set.insert(event);
                }
            }
        }
        if set == EventSet::EMPTY {
            set.insert(default);
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

/// The idempotency token of callback `sequence_number` (the outbox row's) of `call_sid`: the
/// same on every attempt and after restarts, different for every callback. UUID-shaped hex of
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

/// One callback a tracker decided to send. The outbox gives it its place among the call's
/// callbacks (`sequence_number`) and its idempotency token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCallback {
    pub event: CallbackEvent,
    /// Stream sequence of the call event that caused it.
    pub for_sequence: u64,
    pub url: String,
    pub method: HttpMethod,
    /// Form parameters in send order.
    pub params: Vec<(String, String)>,
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
    /// `SequenceNumber` of the next call progress callback.
    pub next_sequence_number: u32,
    /// Events already reported (each at most once per call).
    pub sent: EventSet,
    pub answered: bool,
    /// SIP code of a `call.rejected`, reported on `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_code: Option<u16>,
    /// `call.completed` was seen: nothing more will be sent.
    pub ended: bool,
    /// The call's own recording (REST `Record=true`, source `OutboundAPI`), which Twilio
    /// reports on the `completed` callback too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_recording: Option<CallRecordingSummary>,
}

/// What the `completed` call callback says about the call's `Record=true` recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecordingSummary {
    pub recording_sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whole seconds, once `recording.completed` said so (before `call.completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
}

/// `source` of the recording made for REST `Record=true`.
pub const OUTBOUND_API_SOURCE: &str = "OutboundAPI";

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
            call_recording: None,
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
            Payload::RecordingStarted(started) if started.source == OUTBOUND_API_SOURCE => {
                self.call_recording = Some(CallRecordingSummary {
                    recording_sid: started.recording_sid.to_string(),
                    url: started.url.clone().filter(|u| !u.trim().is_empty()),
                    duration_s: None,
                });
                None
            }
            Payload::RecordingCompleted(done) => {
                if let Some(summary) = self
                    .call_recording
                    .as_mut()
                    .filter(|s| s.recording_sid == done.recording_sid.as_str())
                {
                    summary.duration_s = Some(done.duration_ms.div_ceil(1000));
                }
                None
            }
            Payload::CallAdopted(adopted) => {
                // The adopter delivers from now on (the owner is gone).
                self.owner_node = adopted.by_node.clone();
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
                // Twilio adds the Record=true recording of the call (reference §3.3).
                if let Some(recording) = &self.call_recording {
                    if let Some(url) = &recording.url {
                        extra.push(("RecordingUrl".to_owned(), url.clone()));
                    }
                    extra.push(("RecordingSid".to_owned(), recording.recording_sid.clone()));
                    if let Some(duration) = recording.duration_s {
                        extra.push(("RecordingDuration".to_owned(), duration.to_string()));
                    }
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
            event,
            for_sequence: sequence,
            url: self.url.clone(),
            method: self.method,
            params,
        })
    }
}

/// The recording status callbacks of one recording: where they go, what was subscribed, and
/// what the callbacks repeat about the recording. Pure: made from `recording.started`, fed
/// the matching `recording.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingCallbacks {
    pub recording_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    /// The node that owns the call (and so delivers its callbacks).
    pub owner_node: String,
    pub url: String,
    pub method: HttpMethod,
    pub events: EventSet,
    /// `RecordingUrl`, when the event carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    pub source: String,
    pub channels: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// Envelope time of `recording.started` (`RecordingStartTime`).
    #[serde(with = "time::serde::rfc3339")]
    pub start_time: OffsetDateTime,
}

impl RecordingCallbacks {
    /// Subscribes a recording from its `recording.started` (stream sequence `sequence`,
    /// envelope time `time`). `None` when it names no status callback URL. Returns the
    /// `in-progress` callback too when it is selected.
    pub fn start(
        call_sid: &str,
        account_sid: &str,
        owner_node: &str,
        started: &RecordingStarted,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Option<(RecordingCallbacks, Option<PlannedCallback>)> {
        let url = started
            .status_callback
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())?;
        let callbacks = RecordingCallbacks {
            recording_sid: started.recording_sid.to_string(),
            call_sid: call_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            owner_node: owner_node.to_owned(),
            url: url.to_owned(),
            method: started.status_callback_method,
            events: EventSet::recording_subscribed(&started.status_callback_events),
            recording_url: started
                .url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            source: started.source.clone(),
            channels: started.channels,
            track: started
                .track
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            start_time: time,
        };
        let planned = callbacks.plan(
            CallbackEvent::RecordingInProgress,
            sequence,
            callbacks.channels,
            None,
            0,
        );
        Some((callbacks, planned))
    }

    /// The callback of the recording's end (`completed` or `absent`, if selected). A status
    /// other than those two is not reported.
    pub fn complete(
        &self,
        completed: &RecordingCompleted,
        sequence: u64,
    ) -> Option<PlannedCallback> {
        let status = completed.status.trim();
        if status.eq_ignore_ascii_case("completed") {
            self.plan(
                CallbackEvent::RecordingCompleted,
                sequence,
                completed.channels,
                Some(completed.duration_ms.div_ceil(1000)),
                0,
            )
        } else if status.eq_ignore_ascii_case("absent") {
            // An absent recording without a code was too short or empty.
            let code = completed.error_code.unwrap_or(ABSENT_TOO_SHORT);
            self.plan(
                CallbackEvent::RecordingAbsent,
                sequence,
                completed.channels,
                None,
                code,
            )
        } else {
            None
        }
    }

    fn plan(
        &self,
        event: CallbackEvent,
        sequence: u64,
        channels: u8,
        duration_s: Option<u64>,
        error_code: u32,
    ) -> Option<PlannedCallback> {
        let status = event.recording_status()?;
        if !self.events.contains(event) {
            return None;
        }
        // A conference's recording belongs to the room (its stream is `CF…`).
        let owner = if self.call_sid.starts_with(ConferenceSid::PREFIX) {
            "ConferenceSid"
        } else {
            "CallSid"
        };
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.account_sid.clone()),
            (owner.into(), self.call_sid.clone()),
            ("RecordingSid".into(), self.recording_sid.clone()),
        ];
        if let Some(url) = &self.recording_url {
            params.push(("RecordingUrl".into(), url.clone()));
        }
        params.push(("RecordingStatus".into(), status.into()));
        if let Some(duration) = duration_s {
            params.push(("RecordingDuration".into(), duration.to_string()));
        }
        params.push(("RecordingChannels".into(), channels.max(1).to_string()));
        params.push(("RecordingStartTime".into(), rfc2822(self.start_time)));
        params.push(("RecordingSource".into(), self.source.clone()));
        if let Some(track) = &self.track {
            params.push(("RecordingTrack".into(), track.clone()));
        }
        params.push(("ErrorCode".into(), error_code.to_string()));
        params.push((EVENT_PARAM.into(), event.as_str().into()));
        Some(PlannedCallback {
            event,
            for_sequence: sequence,
            url: self.url.clone(),
            method: self.method,
            params,
        })
    }
}

/// Twilio's `ErrorCode` of an absent recording that was too short or empty.
pub const ABSENT_TOO_SHORT: u32 = 16101;
/// Twilio's `ErrorCode` of an absent recording that was silent.
pub const ABSENT_SILENT: u32 = 16102;

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

/// A tracker touched in the current batch.
struct StagedTracker {
    tracker: Option<CallbackTracker>,
    dirty: bool,
}

impl StagedTracker {
    /// Shows a later call event to the call's tracker, if it has one; marks it to be written
    /// when it changed. The callback the event causes, if any.
    fn apply(
        &mut self,
        payload: &Payload,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Option<PlannedCallback> {
        let tracker = self.tracker.as_mut()?;
        let before = tracker.clone();
        let planned = tracker.apply(payload, sequence, time);
        self.dirty |= *tracker != before;
        planned
    }
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

/// Where an outbox row goes: the call and its owner.
struct RowTarget<'a> {
    call_sid: &'a str,
    account_sid: &'a str,
    owner_node: &'a str,
}

/// Inserts a planned callback as the call's next outbox row: its `sequence_number` follows
/// every row the call has (call progress and recording callbacks share one order), and its
/// idempotency token derives from it. A second insert for the same call event and outbox
/// event is ignored.
fn insert_planned(
    tx: &Transaction<'_>,
    target: &RowTarget<'_>,
    planned: &PlannedCallback,
    time: OffsetDateTime,
) -> Result<(), ProjectionError> {
    let params_json = serde_json::to_string(&planned.params)
        .map_err(|e| corrupt(format!("cannot encode params: {e}")))?;
    let sequence_number: u32 = tx
        .prepare_cached(
            "SELECT COALESCE(MAX(sequence_number) + 1, 0) FROM callback_outbox WHERE call_sid = ?1",
        )
        .and_then(|mut s| s.query_row([target.call_sid], |r| r.get(0)))
        .map_err(sql("numbering a callback"))?;
    let token = idempotency_token(target.call_sid, sequence_number);
    let time = store_time(time);
    tx.prepare_cached(
        "INSERT INTO callback_outbox (call_sid, sequence_number, account_sid, owner_node, event,
            for_sequence, url, method, params, idempotency_token, event_time, state, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?11)
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            target.call_sid,
            sequence_number,
            target.account_sid,
            target.owner_node,
            planned.event.as_str(),
            planned.for_sequence,
            planned.url,
            planned.method.as_str(),
            params_json,
            token,
            time,
        ])
    })
    .map_err(sql("inserting a callback"))?;
    Ok(())
}

/// A conference room's event: keeps the room's [`ConferenceCallbacks`] in
/// `callback_conferences` (until the room ends) and writes the callbacks it plans as outbox
/// rows of the room.
fn apply_conference(recorded: &RecordedEvent, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
    let event = &recorded.event;
    let conference_sid = event.subject.as_str();
    let Some(payload) = decode(recorded) else {
        return Ok(());
    };
    let corrupt_state = |e: serde_json::Error| ProjectionError::CorruptRow {
        table: "callback_conferences",
        message: format!("state of {conference_sid}: {e}"),
    };
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM callback_conferences WHERE conference_sid = ?1")
        .and_then(|mut s| s.query_row([conference_sid], |r| r.get(0)).optional())
        .map_err(sql("reading a conference's callbacks"))?;
    let mut room = match (stored, &payload) {
        (_, Payload::ConferenceStarted(started)) => ConferenceCallbacks::opened(
            conference_sid,
            &event.accountsid,
            writer_node(&event.source),
            &started.friendly_name,
        ),
        (Some(json), _) => serde_json::from_str(&json).map_err(corrupt_state)?,
        (None, _) => return Ok(()), // the room ended, or opened before this projection
    };
    let (planned, ended) = match &payload {
        Payload::ParticipantJoined(joined) => {
            (room.joined(joined, event.sequence, event.time), false)
        }
        Payload::ParticipantLeft(left) => (
            room.left(left, event.sequence, event.time)
                .into_iter()
                .collect(),
            false,
        ),
        Payload::ParticipantUpdated(updated) => {
            (room.updated(updated, event.sequence, event.time), false)
        }
        Payload::ConferenceEnded(end) => (
            room.ended(end, event.sequence, event.time)
                .into_iter()
                .collect(),
            true,
        ),
        _ => (Vec::new(), false),
    };
    let target = RowTarget {
        call_sid: conference_sid,
        account_sid: &room.account_sid,
        owner_node: &room.owner_node,
    };
    for planned in &planned {
        insert_planned(tx, &target, planned, event.time)?;
    }
    if ended {
        tx.prepare_cached("DELETE FROM callback_conferences WHERE conference_sid = ?1")
            .and_then(|mut s| s.execute([conference_sid]))
            .map_err(sql("deleting a conference's callbacks"))?;
    } else {
        let json = serde_json::to_string(&room).map_err(corrupt_state)?;
        tx.prepare_cached(
            "INSERT INTO callback_conferences (conference_sid, state) VALUES (?1, ?2)
             ON CONFLICT (conference_sid) DO UPDATE SET state = excluded.state",
        )
        .and_then(|mut s| s.execute(params![conference_sid, json]))
        .map_err(sql("writing a conference's callbacks"))?;
    }
    Ok(())
}

/// The node an event's envelope names as its writer (`dialtone://<node>`).
fn writer_node(source: &str) -> &str {
    source.strip_prefix("dialtone://").unwrap_or(source)
}

const WANTED: &[&str] = &[
    "dialtone.call.initiated",
    "dialtone.call.ringing",
    "dialtone.call.answered",
    "dialtone.call.rejected",
    "dialtone.call.completed",
    "dialtone.call.recording.started",
    "dialtone.call.recording.completed",
    "dialtone.call.callback.delivered",
    "dialtone.call.callback.failed",
    "dialtone.call.adopted",
    "dialtone.conference.started",
    "dialtone.conference.participant.joined",
    "dialtone.conference.participant.left",
    "dialtone.conference.participant.updated",
    "dialtone.conference.ended",
];

impl Projection for CallbacksProjection {
    fn name(&self) -> &'static str {
        "callbacks"
    }

    fn version(&self) -> u32 {
        // 2: recording status callbacks; outbox rows numbered over all of a call's callbacks.
        // 3: conference status callbacks.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "callback_outbox",
            "callback_calls",
            "callback_recordings",
            "callback_conferences",
        ]
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
            "dialtone.call.recording.started" => {
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let staged = self.staged(tx, call_sid)?;
                // The call's tracker notes a Record=true recording for its `completed`.
                staged.apply(&payload, event.sequence, event.time);
                let Payload::RecordingStarted(started) = payload else {
                    return Ok(());
                };
                if started.status_callback.is_none() {
                    return Ok(());
                }
                // The call's owner delivers; a call without status callbacks of its own has
                // no tracker, and then the writer of this event (the recording node, which
                // owns the call) says who it is.
                let owner_node = match &staged.tracker {
                    Some(tracker) => tracker.owner_node.clone(),
                    None => writer_node(&event.source).to_owned(),
                };
                let Some((subscription, planned)) = RecordingCallbacks::start(
                    call_sid,
                    &event.accountsid,
                    &owner_node,
                    &started,
                    event.sequence,
                    event.time,
                ) else {
                    return Ok(());
                };
                let json = serde_json::to_string(&subscription)
                    .map_err(|e| corrupt(format!("cannot encode a recording subscription: {e}")))?;
                tx.prepare_cached(
                    "INSERT INTO callback_recordings (recording_sid, call_sid, state)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (recording_sid) DO UPDATE SET call_sid = excluded.call_sid,
                        state = excluded.state",
                )
                .and_then(|mut s| s.execute(params![subscription.recording_sid, call_sid, json]))
                .map_err(sql("writing a recording subscription"))?;
                if let Some(planned) = planned {
                    let target = RowTarget {
                        call_sid,
                        account_sid: &subscription.account_sid,
                        owner_node: &subscription.owner_node,
                    };
                    insert_planned(tx, &target, &planned, event.time)?;
                }
                Ok(())
            }
            "dialtone.call.adopted" => {
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let Payload::CallAdopted(adopted) = &payload else {
                    return Ok(());
                };
                self.staged(tx, call_sid)?
                    .apply(&payload, event.sequence, event.time);
                // Callbacks the lost owner had not delivered go out from the adopter.
                tx.prepare_cached(
                    "UPDATE callback_outbox SET owner_node = ?2
                     WHERE call_sid = ?1 AND state = 'pending'",
                )
                .and_then(|mut s| s.execute(params![call_sid, adopted.by_node]))
                .map_err(sql("handing callbacks to the adopting node"))?;
                Ok(())
            }
            "dialtone.conference.started"
            | "dialtone.conference.participant.joined"
            | "dialtone.conference.participant.left"
            | "dialtone.conference.participant.updated"
            | "dialtone.conference.ended" => apply_conference(recorded, tx),
            "dialtone.call.recording.completed" => {
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let staged = self.staged(tx, call_sid)?;
                staged.apply(&payload, event.sequence, event.time);
                let Payload::RecordingCompleted(completed) = payload else {
                    return Ok(());
                };
                let recording_sid = completed.recording_sid.as_str();
                let stored: Option<String> = tx
                    .prepare_cached(
                        "SELECT state FROM callback_recordings
                         WHERE recording_sid = ?1 AND call_sid = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![recording_sid, call_sid], |r| r.get(0))
                            .optional()
                    })
                    .map_err(sql("reading a recording subscription"))?;
                let Some(json) = stored else {
                    return Ok(()); // nobody subscribed
                };
                let subscription: RecordingCallbacks =
                    serde_json::from_str(&json).map_err(|e| ProjectionError::CorruptRow {
                        table: "callback_recordings",
                        message: format!("subscription of {recording_sid}: {e}"),
                    })?;
                tx.prepare_cached("DELETE FROM callback_recordings WHERE recording_sid = ?1")
                    .and_then(|mut s| s.execute([recording_sid]))
                    .map_err(sql("deleting a recording subscription"))?;
                if let Some(planned) = subscription.complete(&completed, event.sequence) {
                    let target = RowTarget {
                        call_sid,
                        account_sid: &subscription.account_sid,
                        owner_node: &subscription.owner_node,
                    };
                    insert_planned(tx, &target, &planned, event.time)?;
                }
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
                let planned = match (&payload, staged.tracker.is_some()) {
                    (Payload::CallInitiated(initiated), false) => {
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
                    (Payload::CallInitiated(_), true) => None,
                    (_, _) => staged.apply(&payload, event.sequence, event.time),
                };
                if let (Some(planned), Some(tracker)) = (planned, staged.tracker.as_ref()) {
                    let target = RowTarget {
                        call_sid: &tracker.call_sid,
                        account_sid: &tracker.account_sid,
                        owner_node: &tracker.owner_node,
                    };
                    insert_planned(tx, &target, &planned, event.time)?;
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
        assert_eq!(param(&first, "SequenceNumber"), Some("0"));
        assert_eq!(
            (first.url.as_str(), first.method),
            ("https://a/s", HttpMethod::Post)
        );
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
        assert_eq!(param(&ringing, "SequenceNumber"), Some("1"));
        assert_eq!(ringing.for_sequence, 2);
        assert_eq!(param(&ringing, "CallStatus"), Some("ringing"));
        // A second 180/183 is not a second ringing callback.
        assert!(tracker
            .apply(&Payload::CallRinging(CallRinging::default()), 3, T0)
            .is_none());
        let answered = tracker
            .apply(&Payload::CallAnswered(CallAnswered::default()), 4, T0)
            .unwrap();
        assert_eq!(param(&answered, "SequenceNumber"), Some("2"));
        assert_eq!(param(&answered, "CallStatus"), Some("in-progress"));
        assert_eq!(param(&answered, "StatusCallbackEvent"), Some("answered"));
        assert_eq!(param(&answered, "SipResponseCode"), Some("200"));
        let done = tracker
            .apply(&completed(CallStatus::Completed, 61_500, None), 9, T0)
            .unwrap();
        assert_eq!(param(&done, "SequenceNumber"), Some("3"));
        assert_eq!(param(&done, "CallStatus"), Some("completed"));
        assert_eq!(param(&done, "CallDuration"), Some("61"));
        assert_eq!(param(&done, "Duration"), Some("2"));
        assert_eq!(param(&done, "SipResponseCode"), Some("200"));
        assert!(tracker.ended);
        assert!(tracker
            .apply(&Payload::CallAnswered(CallAnswered::default()), 10, T0)
            .is_none());
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

    const RECORDING: &str = "RE0123456789abcdef0123456789abcdef";
    const RECORDING_URL: &str =
        "https://dialtone.example/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE0123456789abcdef0123456789abcdef";

    fn recording_started(events: &[&str], url: Option<&str>) -> RecordingStarted {
        RecordingStarted {
            url: Some(RECORDING_URL.into()),
            track: Some("both".into()),
            status_callback: url.map(str::to_owned),
            status_callback_method: HttpMethod::Get,
            status_callback_events: events.iter().map(|s| s.to_string()).collect(),
            ..RecordingStarted::new(
                dialtone_events::sid::RecordingSid::parse(RECORDING).unwrap(),
                "OutboundAPI",
                2,
            )
        }
    }

    fn recording_completed(
        status: &str,
        duration_ms: u64,
        error: Option<u32>,
    ) -> RecordingCompleted {
        RecordingCompleted {
            recording_sid: dialtone_events::sid::RecordingSid::parse(RECORDING).unwrap(),
            status: status.into(),
            duration_ms,
            path: "recordings/RE.wav".into(),
            channels: 2,
            source: "OutboundAPI".into(),
            digits: None,
            error_code: error,
        }
    }

    #[test]
    fn recording_in_progress_and_completed_with_twilio_parameters() {
        let (subscription, in_progress) = RecordingCallbacks::start(
            CALL,
            ACCOUNT,
            "node-1",
            &recording_started(&["in-progress completed"], Some("https://a/rec")),
            7,
            T0,
        )
        .unwrap();
        let in_progress = in_progress.unwrap();
        assert_eq!(in_progress.event, CallbackEvent::RecordingInProgress);
        assert_eq!(in_progress.for_sequence, 7);
        assert_eq!(
            (in_progress.url.as_str(), in_progress.method),
            ("https://a/rec", HttpMethod::Get)
        );
        let start_time = "Mon, 10 Mar 2025 12:00:00 +0000";
        let expected = |status: &str, duration: Option<&str>, event: &str| {
            let mut params: Vec<(String, String)> = vec![
                ("AccountSid".into(), ACCOUNT.into()),
                ("CallSid".into(), CALL.into()),
                ("RecordingSid".into(), RECORDING.into()),
                ("RecordingUrl".into(), RECORDING_URL.into()),
                ("RecordingStatus".into(), status.into()),
            ];
            if let Some(d) = duration {
                params.push(("RecordingDuration".into(), d.into()));
            }
            params.extend([
                ("RecordingChannels".to_owned(), "2".to_owned()),
                ("RecordingStartTime".into(), start_time.into()),
                ("RecordingSource".into(), "OutboundAPI".into()),
                ("RecordingTrack".into(), "both".into()),
                ("ErrorCode".into(), "0".into()),
                ("StatusCallbackEvent".into(), event.into()),
            ]);
            params
        };
        assert_eq!(
            in_progress.params,
            expected("in-progress", None, "recording-in-progress")
        );
        let done = subscription
            .complete(&recording_completed("completed", 61_200, None), 12)
            .unwrap();
        assert_eq!(done.event, CallbackEvent::RecordingCompleted);
        assert_eq!(done.for_sequence, 12);
        // Seconds rounded up, as in <Record>'s action request.
        assert_eq!(
            done.params,
            expected("completed", Some("62"), "recording-completed")
        );
        // No call-progress-only parameters.
        for name in [
            "SequenceNumber",
            "CallbackSource",
            "Timestamp",
            "CallStatus",
        ] {
            assert_eq!(param(&done, name), None, "{name}");
        }
    }

    #[test]
    fn recording_events_default_to_completed_and_absent_carries_its_code() {
        let (subscription, in_progress) = RecordingCallbacks::start(
            CALL,
            ACCOUNT,
            "node-1",
            &recording_started(&[], Some("https://a/rec")),
            7,
            T0,
        )
        .unwrap();
        assert!(
            in_progress.is_none(),
            "in-progress is not selected by default"
        );
        assert!(subscription
            .complete(&recording_completed("absent", 300, Some(16102)), 9)
            .is_none());
        assert!(subscription
            .complete(&recording_completed("completed", 3000, None), 9)
            .is_some());

        let (subscription, _) = RecordingCallbacks::start(
            CALL,
            ACCOUNT,
            "node-1",
            &recording_started(&["absent", "bogus"], Some("https://a/rec")),
            7,
            T0,
        )
        .unwrap();
        let silent = subscription
            .complete(&recording_completed("absent", 3000, Some(ABSENT_SILENT)), 9)
            .unwrap();
        assert_eq!(silent.event, CallbackEvent::RecordingAbsent);
        assert_eq!(param(&silent, "RecordingStatus"), Some("absent"));
        assert_eq!(param(&silent, "ErrorCode"), Some("16102"));
        assert_eq!(param(&silent, "RecordingDuration"), None);
        assert_eq!(
            param(&silent, "StatusCallbackEvent"),
            Some("recording-absent")
        );
        let empty = subscription
            .complete(&recording_completed("absent", 0, None), 9)
            .unwrap();
        assert_eq!(param(&empty, "ErrorCode"), Some("16101"));
        assert!(subscription
            .complete(&recording_completed("completed", 3000, None), 9)
            .is_none());
        assert!(subscription
            .complete(&recording_completed("failed", 3000, None), 9)
            .is_none());
    }

    #[test]
    fn recordings_without_a_callback_url_are_not_tracked_and_unknown_fields_are_left_out() {
        assert!(RecordingCallbacks::start(
            CALL,
            ACCOUNT,
            "node-1",
            &recording_started(&["completed"], None),
            1,
            T0
        )
        .is_none());
        assert!(RecordingCallbacks::start(
            CALL,
            ACCOUNT,
            "node-1",
            &recording_started(&["completed"], Some(" ")),
            1,
            T0
        )
        .is_none());
        let bare = RecordingStarted {
            status_callback: Some("https://a/rec".into()),
            ..RecordingStarted::new(
                dialtone_events::sid::RecordingSid::parse(RECORDING).unwrap(),
                "RecordVerb",
                1,
            )
        };
        let (subscription, _) =
            RecordingCallbacks::start(CALL, ACCOUNT, "node-1", &bare, 1, T0).unwrap();
        let done = subscription
            .complete(
                &RecordingCompleted {
                    channels: 1,
                    source: "RecordVerb".into(),
                    ..recording_completed("completed", 999, None)
                },
                2,
            )
            .unwrap();
        assert_eq!(param(&done, "RecordingUrl"), None);
        assert_eq!(param(&done, "RecordingTrack"), None);
        assert_eq!(param(&done, "RecordingDuration"), Some("1"));
        assert_eq!(param(&done, "RecordingChannels"), Some("1"));
        assert_eq!(param(&done, "RecordingSource"), Some("RecordVerb"));
        assert_eq!(subscription.method, HttpMethod::Post);
        let json = serde_json::to_string(&subscription).unwrap();
        assert_eq!(
            serde_json::from_str::<RecordingCallbacks>(&json).unwrap(),
            subscription
        );
    }

    #[test]
    fn event_names_do_not_leak_between_call_and_recording_subscriptions() {
        // A call cannot subscribe to recording events, nor a recording to call events.
        let calls = EventSet::subscribed(&["recording-completed in-progress"]);
        assert_eq!(calls, EventSet::subscribed::<&str>(&[]));
        let recordings = EventSet::recording_subscribed(&["ringing answered"]);
        assert!(recordings.contains(CallbackEvent::RecordingCompleted));
        assert!(!recordings.contains(CallbackEvent::Completed));
        let both = EventSet::recording_subscribed(&["IN-PROGRESS,absent"]);
        assert!(both.contains(CallbackEvent::RecordingInProgress));
        assert!(both.contains(CallbackEvent::RecordingAbsent));
        assert!(!both.contains(CallbackEvent::RecordingCompleted));
        for event in CallbackEvent::ALL {
            assert_eq!(CallbackEvent::parse(event.as_str()), Some(event));
        }
    }

    #[test]
    fn the_completed_callback_reports_the_record_true_recording() {
        let (mut tracker, _) =
            CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("https://a/s")), 1, T0)
                .unwrap();
        // A <Record> recording is not the call's recording.
        let verb = RecordingStarted::new(
            dialtone_events::sid::RecordingSid::generate(),
            "RecordVerb",
            1,
        );
        assert!(tracker
            .apply(&Payload::RecordingStarted(verb), 2, T0)
            .is_none());
        assert!(tracker.call_recording.is_none());
        let started = recording_started(&["completed"], None);
        assert!(tracker
            .apply(&Payload::RecordingStarted(started), 3, T0)
            .is_none());
        let done = recording_completed("completed", 12_100, None);
        assert!(tracker
            .apply(&Payload::RecordingCompleted(done), 4, T0)
            .is_none());
        let completed = tracker
            .apply(&completed(CallStatus::Completed, 13_000, None), 5, T0)
            .unwrap();
        assert_eq!(param(&completed, "RecordingUrl"), Some(RECORDING_URL));
        assert_eq!(param(&completed, "RecordingSid"), Some(RECORDING));
        assert_eq!(param(&completed, "RecordingDuration"), Some("13"));
        let json = serde_json::to_string(&tracker).unwrap();
        assert_eq!(
            serde_json::from_str::<CallbackTracker>(&json).unwrap(),
            tracker
        );
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

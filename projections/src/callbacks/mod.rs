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

pub mod conference;
mod outbox;
mod projection;
mod tracker;

pub use conference::ConferenceCallbacks;
pub use outbox::*;
use outbox::{corrupt, SCHEMA};
pub use projection::CallbacksProjection;
pub use tracker::*;

use dialtone_events::payload::HttpMethod;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

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

#[cfg(test)]
mod tests;

//! The pure state machines: a call's progress callbacks ([`CallbackTracker`]) and a
//! recording's ([`RecordingCallbacks`]).

use dialtone_events::payload::{
    CallInitiated, CallStatus, Direction, HttpMethod, RecordingCompleted, RecordingStarted,
};
use dialtone_events::sid::ConferenceSid;
use dialtone_events::Payload;
use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use super::*;
use crate::billing::billable_minutes;

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

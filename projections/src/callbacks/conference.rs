//! Conference status callbacks (`<Conference statusCallback statusCallbackEvent>`): the pure
//! state of one room's subscription.
//!
//! The room (`CF…` stream) opens with `conference.started`; the first `participant.joined`
//! that names a `status_callback` subscribes the room (later participants' URLs are ignored,
//! as on Twilio where the conference's callback is set once). From then on the selected
//! events become outbox rows of the conference (its SID in the outbox's `call_sid` column),
//! delivered in order by the node that owns the room: `participant-join`, `conference-start`
//! (the join that begins mixing: the second participant, or the first moderator with
//! `startConferenceOnEnter`), `participant-mute`/`participant-unmute` (REST updates),
//! `participant-leave`, `conference-end`.
//!
//! Parameters, as Twilio sends them: `AccountSid`, `ConferenceSid`, `FriendlyName`,
//! `StatusCallbackEvent`, `SequenceNumber` (0, 1, 2… per conference), `Timestamp`
//! (RFC 2822); on participant events `CallSid`, `Muted`, `Hold`, `Coaching`,
//! `EndConferenceOnExit`, `StartConferenceOnEnter`; on `conference-end`
//! `ReasonConferenceEnded` and `CallSidEndingConference`.

use std::collections::BTreeMap;

use dialtone_events::payload::{
    ConferenceEnded, HttpMethod, ParticipantJoined, ParticipantLeft, ParticipantUpdated,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{rfc2822, CallbackEvent, EventSet, PlannedCallback, EVENT_PARAM};

/// Where a room's callbacks go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceSubscription {
    pub url: String,
    pub method: HttpMethod,
    pub events: EventSet,
}

/// What the participant events repeat about a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantFlags {
    pub muted: bool,
    #[serde(default)]
    pub hold: bool,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
}

/// The status-callback state of one conference room. Pure: fed the room's events, it
/// returns the callbacks to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceCallbacks {
    pub conference_sid: String,
    pub account_sid: String,
    /// The node that writes the room's stream (and so delivers its callbacks).
    pub owner_node: String,
    pub friendly_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<ConferenceSubscription>,
    /// `SequenceNumber` of the next callback.
    pub next_sequence_number: u32,
    /// The participants in the room now, by call SID.
    pub participants: BTreeMap<String, ParticipantFlags>,
}

impl ConferenceCallbacks {
    /// The room opened (`conference.started`).
    pub fn opened(
        conference_sid: &str,
        account_sid: &str,
        owner_node: &str,
        friendly_name: &str,
    ) -> ConferenceCallbacks {
        ConferenceCallbacks {
            conference_sid: conference_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            owner_node: owner_node.to_owned(),
            friendly_name: friendly_name.to_owned(),
            subscription: None,
            next_sequence_number: 0,
            participants: BTreeMap::new(),
        }
    }

    /// A participant joined: subscribes the room if it is the first to name a URL; then
    /// `participant-join`, and `conference-start` when this join began the mixing.
    pub fn joined(
        &mut self,
        joined: &ParticipantJoined,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Vec<PlannedCallback> {
        let flags = ParticipantFlags {
            muted: joined.muted,
            hold: false,
            start_conference_on_enter: joined.start_conference_on_enter,
            end_conference_on_exit: joined.end_conference_on_exit,
        };
        let call_sid = joined.call_sid.to_string();
        self.participants.insert(call_sid.clone(), flags);
        if self.subscription.is_none() {
            let url = joined
                .status_callback
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty());
            self.subscription = url.map(|url| ConferenceSubscription {
                url: url.to_owned(),
                method: joined.status_callback_method,
                events: EventSet::conference_subscribed(&joined.status_callback_events),
            });
        }
        let mut planned = Vec::new();
        let params = participant_params(&call_sid, flags);
        planned.extend(self.plan(CallbackEvent::ParticipantJoin, sequence, time, params));
        if joined.conference_started {
            planned.extend(self.plan(CallbackEvent::ConferenceStart, sequence, time, Vec::new()));
        }
        planned
    }

    /// A participant left: `participant-leave`.
    pub fn left(
        &mut self,
        left: &ParticipantLeft,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Option<PlannedCallback> {
        let call_sid = left.call_sid.to_string();
        let flags = self.participants.remove(&call_sid)?;
        let params = participant_params(&call_sid, flags);
        self.plan(CallbackEvent::ParticipantLeave, sequence, time, params)
    }

    /// A participant's update: `participant-mute` / `-unmute` when its mute changed,
    /// `participant-hold` / `-unhold` when its hold did.
    pub fn updated(
        &mut self,
        updated: &ParticipantUpdated,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Vec<PlannedCallback> {
        let call_sid = updated.call_sid.to_string();
        let Some(flags) = self.participants.get_mut(&call_sid) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        if flags.muted != updated.muted {
            changes.push(if updated.muted {
                CallbackEvent::ParticipantMute
            } else {
                CallbackEvent::ParticipantUnmute
            });
        }
        if flags.hold != updated.hold {
            changes.push(if updated.hold {
                CallbackEvent::ParticipantHold
            } else {
                CallbackEvent::ParticipantUnhold
            });
        }
        flags.muted = updated.muted;
        flags.hold = updated.hold;
        let flags = *flags;
        changes
            .into_iter()
            .filter_map(|event| {
                let params = participant_params(&call_sid, flags);
                self.plan(event, sequence, time, params)
            })
            .collect()
    }

    /// The room ended: `conference-end`.
    pub fn ended(
        &mut self,
        ended: &ConferenceEnded,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Option<PlannedCallback> {
        let mut params = vec![("ReasonConferenceEnded".to_owned(), ended.reason.clone())];
        if let Some(call) = &ended.call_sid_ending_conference {
            params.push(("CallSidEndingConference".to_owned(), call.to_string()));
        }
        self.plan(CallbackEvent::ConferenceEnd, sequence, time, params)
    }

    fn plan(
        &mut self,
        event: CallbackEvent,
        sequence: u64,
        time: OffsetDateTime,
        extra: Vec<(String, String)>,
    ) -> Option<PlannedCallback> {
        let subscription = self.subscription.as_ref()?;
        if !subscription.events.contains(event) {
            return None;
        }
        let sequence_number = self.next_sequence_number;
        self.next_sequence_number += 1;
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.account_sid.clone()),
            ("ConferenceSid".into(), self.conference_sid.clone()),
            ("FriendlyName".into(), self.friendly_name.clone()),
            (EVENT_PARAM.into(), event.as_str().into()),
            ("SequenceNumber".into(), sequence_number.to_string()),
            ("Timestamp".into(), rfc2822(time)),
        ];
        params.extend(extra);
        Some(PlannedCallback {
            event,
            for_sequence: sequence,
            url: subscription.url.clone(),
            method: subscription.method,
            params,
        })
    }
}

fn participant_params(call_sid: &str, flags: ParticipantFlags) -> Vec<(String, String)> {
    vec![
        ("CallSid".into(), call_sid.to_owned()),
        ("Muted".into(), flags.muted.to_string()),
        ("Hold".into(), flags.hold.to_string()),
        ("Coaching".into(), "false".into()),
        (
            "EndConferenceOnExit".into(),
            flags.end_conference_on_exit.to_string(),
        ),
        (
            "StartConferenceOnEnter".into(),
            flags.start_conference_on_enter.to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_events::sid::CallSid;

    fn joined(call: &CallSid, url: Option<&str>, events: &str, began: bool) -> ParticipantJoined {
        ParticipantJoined {
            call_sid: call.clone(),
            muted: false,
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            conference_started: began,
            status_callback: url.map(str::to_owned),
            status_callback_method: HttpMethod::Post,
            status_callback_events: vec![events.to_owned()],
        }
    }

    fn param<'a>(planned: &'a PlannedCallback, name: &str) -> Option<&'a str> {
        planned
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_room_reports_joins_start_leaves_and_end_in_order() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let (a, b) = (CallSid::generate(), CallSid::generate());
        let mut room = ConferenceCallbacks::opened("CF1", "AC1", "node-1", "standup");
        let url = Some("https://app.example/conf");
        let mut sent = room.joined(&joined(&a, url, "start end join leave", false), 2, t);
        // A second URL does not move the subscription.
        sent.extend(room.joined(
            &joined(&b, Some("https://other.example/"), "end", true),
            3,
            t,
        ));
        sent.extend(room.left(
            &ParticipantLeft {
                call_sid: b.clone(),
            },
            4,
            t,
        ));
        sent.extend(room.left(
            &ParticipantLeft {
                call_sid: a.clone(),
            },
            5,
            t,
        ));
        let end = ConferenceEnded {
            reason: "last-participant-left".into(),
            call_sid_ending_conference: Some(a.clone()),
        };
        sent.extend(room.ended(&end, 6, t));
        let events: Vec<&str> = sent.iter().map(|p| p.event.as_str()).collect();
        assert_eq!(
            events,
            [
                "participant-join",
                "participant-join",
                "conference-start",
                "participant-leave",
                "participant-leave",
                "conference-end"
            ]
        );
        let numbers: Vec<&str> = sent
            .iter()
            .map(|p| param(p, "SequenceNumber").unwrap())
            .collect();
        assert_eq!(numbers, ["0", "1", "2", "3", "4", "5"]);
        assert!(sent.iter().all(|p| p.url == "https://app.example/conf"));
        assert!(sent.iter().all(|p| param(p, "ConferenceSid") == Some("CF1")
            && param(p, "FriendlyName") == Some("standup")));
        assert_eq!(param(&sent[1], "CallSid"), Some(b.as_str()));
        assert_eq!(param(&sent[2], "CallSid"), None);
        assert_eq!(
            param(&sent[5], "ReasonConferenceEnded"),
            Some("last-participant-left")
        );
        assert_eq!(param(&sent[5], "CallSidEndingConference"), Some(a.as_str()));
        assert_eq!(sent[3].for_sequence, 4);
    }

    #[test]
    fn mute_selects_both_mute_and_unmute() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let a = CallSid::generate();
        let mut room = ConferenceCallbacks::opened("CF1", "AC1", "node-1", "r");
        let url = Some("https://app.example/c");
        assert!(room
            .joined(&joined(&a, url, "mute", false), 2, t)
            .is_empty());
        let update = |muted, hold| ParticipantUpdated {
            call_sid: a.clone(),
            muted,
            hold,
        };
        let muted = room.updated(&update(true, false), 3, t);
        assert_eq!(muted.len(), 1);
        assert_eq!(muted[0].event, CallbackEvent::ParticipantMute);
        assert_eq!(param(&muted[0], "Muted"), Some("true"));
        let unmuted = room.updated(&update(false, false), 4, t);
        assert_eq!(unmuted[0].event, CallbackEvent::ParticipantUnmute);
        assert_eq!(param(&unmuted[0], "Muted"), Some("false"));
        assert_eq!(param(&unmuted[0], "SequenceNumber"), Some("1"));
        // Hold is not selected: nothing.
        assert!(room.updated(&update(false, true), 5, t).is_empty());
    }

    #[test]
    fn unsubscribed_rooms_send_nothing_and_the_default_is_end_only() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let (a, b) = (CallSid::generate(), CallSid::generate());
        let mut room = ConferenceCallbacks::opened("CF1", "AC1", "node-1", "r");
        assert!(room.joined(&joined(&a, None, "", false), 2, t).is_empty());
        // The second participant subscribes with no events named: `end` only.
        assert!(room
            .joined(&joined(&b, Some("https://app.example/c"), "", true), 3, t)
            .is_empty());
        assert!(room.left(&ParticipantLeft { call_sid: a }, 4, t).is_none());
        let end = ConferenceEnded {
            reason: "last-participant-left".into(),
            call_sid_ending_conference: None,
        };
        let planned = room.ended(&end, 5, t).unwrap();
        assert_eq!(planned.event, CallbackEvent::ConferenceEnd);
        assert_eq!(param(&planned, "SequenceNumber"), Some("0"));
    }
}

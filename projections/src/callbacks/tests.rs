use super::*;
use dialtone_events::payload::{
    CallAnswered, CallApplication, CallCompleted, CallInitiated, CallRejected, CallRinging,
    CallStatus, Direction, HttpMethod, RecordingCompleted, RecordingStarted,
};
use dialtone_events::Payload;
use time::OffsetDateTime;

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
    assert!(CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("  ")), 1, T0).is_none());
    let (mut tracker, first) =
        CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("https://a/s")), 1, T0).unwrap();
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
        CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("https://a/s")), 1, T0).unwrap();
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

fn recording_completed(status: &str, duration_ms: u64, error: Option<u32>) -> RecordingCompleted {
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
        CallbackTracker::start(CALL, ACCOUNT, &initiated(&[], Some("https://a/s")), 1, T0).unwrap();
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

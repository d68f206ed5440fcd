use std::collections::BTreeSet;

use super::*;
use crate::sid::{PhoneNumberSid, SinkSid};

fn number_config() -> NumberConfig {
    NumberConfig {
        phone_number: "+14155550100".into(),
        friendly_name: "Support".into(),
        voice_url: Some("https://app.example/voice".into()),
        voice_method: HttpMethod::Post,
        voice_fallback_url: None,
        voice_fallback_method: HttpMethod::Get,
        status_callback: Some("https://app.example/status".into()),
        status_callback_method: HttpMethod::Post,
        voice_application_sid: None,
        sms: NumberSms {
            sms_url: Some("https://app.example/sms".into()),
            sms_method: HttpMethod::Post,
            sms_fallback_url: None,
            sms_fallback_method: HttpMethod::Get,
            sms_application_sid: Some("AP0123".into()),
        },
    }
}

/// One representative payload of every type.
fn samples() -> Vec<Payload> {
    let call = CallSid::generate;
    let rec = RecordingSid::generate;
    vec![
        CallInitiated {
            direction: Direction::Inbound,
            from: "+14155550101".into(),
            to: "+14155550100".into(),
            owner_node: "node-1".into(),
            sip_call_id: Some("abc@host".into()),
            source_addr: Some("10.0.0.1:5060".into()),
            phone_number_sid: Some(PhoneNumberSid::generate()),
            parent_call_sid: None,
            forwarded_from: None,
            application: CallApplication {
                url: Some("https://app.example/voice".into()),
                status_callback_events: vec!["initiated".into(), "completed".into()],
                ..CallApplication::default()
            },
        }
        .into(),
        CallRinging {
            sip_code: Some(180),
        }
        .into(),
        CallAnswered {
            codec: Some("PCMU".into()),
        }
        .into(),
        WebhookRequested {
            request_id: 1,
            purpose: WebhookPurpose::Voice,
            method: HttpMethod::Post,
            url: "https://app.example/voice".into(),
            params: vec![("CallSid".into(), "CA…".into())],
            attempt: 1,
        }
        .into(),
        WebhookResponded {
            request_id: 1,
            status: Some(200),
            latency_ms: 12,
            content_type: Some("text/xml".into()),
            body: Some("<Response><Say>hi</Say></Response>".into()),
            error: None,
        }
        .into(),
        TwimlFailed {
            code: 12100,
            class: "parse".into(),
            url: "https://a/".into(),
            message: "bad".into(),
        }
        .into(),
        TwimlWarning {
            code: 12200,
            message: "Dial is not supported yet".into(),
            verb: Some("Dial".into()),
        }
        .into(),
        VerbStarted {
            index: 0,
            verb: "Say".into(),
        }
        .into(),
        VerbFinished {
            index: 0,
            verb: "Say".into(),
            outcome: "done".into(),
        }
        .into(),
        DtmfReceived {
            digit: "5".into(),
            source: DtmfSource::Rfc4733,
            duration_ms: Some(160),
        }
        .into(),
        GatherCompleted {
            digits: "123".into(),
            finished_on_key: "#".into(),
            reason: "finish-key".into(),
        }
        .into(),
        RecordingStarted {
            url: Some("https://dialtone.example/2010-04-01/Accounts/AC…/Recordings/RE…".into()),
            track: Some("both".into()),
            status_callback: Some("https://app.example/recording".into()),
            status_callback_method: HttpMethod::Get,
            status_callback_events: vec!["in-progress".into(), "completed".into()],
            ..RecordingStarted::new(rec(), "RecordVerb", 1)
        }
        .into(),
        RecordingCompleted {
            recording_sid: rec(),
            status: "completed".into(),
            duration_ms: 4200,
            path: "recordings/RE….wav".into(),
            channels: 1,
            source: "RecordVerb".into(),
            digits: Some("#".into()),
            error_code: None,
        }
        .into(),
        RecordingDeleted {
            recording_sid: rec(),
        }
        .into(),
        DialStarted {
            child_call_sids: vec![call()],
            targets: vec!["+14155550102".into()],
        }
        .into(),
        DialAnswered {
            child_call_sid: call(),
        }
        .into(),
        DialCompleted {
            dial_call_status: "completed".into(),
            child_call_sid: Some(call()),
            duration_s: 30,
            bridged: true,
        }
        .into(),
        CallRedirected {
            url: "https://a/next".into(),
            method: HttpMethod::Post,
            by: "twiml".into(),
        }
        .into(),
        CallRejected {
            reason: "busy".into(),
            sip_code: 486,
        }
        .into(),
        CallCompleted {
            status: CallStatus::Completed,
            duration_s: 61,
            answered_ms: 61_250,
            answered_at: Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()),
            hangup_by: "caller".into(),
            sip_code: Some(200),
        }
        .into(),
        CallbackDelivered {
            event: "completed".into(),
            url: "https://a/status".into(),
            sequence_number: 3,
            status: 200,
            attempts: 2,
            for_sequence: 9,
        }
        .into(),
        CallbackFailed {
            event: "answered".into(),
            url: "https://a/status".into(),
            sequence_number: 1,
            attempts: 5,
            error: "HTTP 500".into(),
            for_sequence: 4,
        }
        .into(),
        MediaSay {
            text: "Hello".into(),
            voice: "alice".into(),
            language: "en-US".into(),
            loops: 1,
            ssml: Some("<speak>Hello <break time=\"500ms\"/></speak>".into()),
        }
        .into(),
        MediaPlay {
            url: Some("https://a/x.wav".into()),
            digits: None,
            loops: 2,
        }
        .into(),
        MediaPause { length_ms: 1000 }.into(),
        MediaGather {
            timeout_ms: 5000,
            finish_on_key: "#".into(),
            num_digits: Some(4),
        }
        .into(),
        MediaRecord {
            recording_sid: rec(),
            max_length_ms: 3_600_000,
            silence_timeout_ms: 5000,
            finish_on_key: "1234567890*#".into(),
            play_beep: true,
            trim: true,
            status_callback: Some("https://app.example/recording".into()),
            status_callback_method: HttpMethod::Post,
            status_callback_events: vec!["completed".into(), "absent".into()],
        }
        .into(),
        MediaBridge {
            other_call_sid: call(),
        }
        .into(),
        MediaHangup {
            reason: Some("end of document".into()),
        }
        .into(),
        MediaStop { reason: None }.into(),
        NumberProvisioned {
            config: number_config(),
            monthly_price_micros: None,
        }
        .into(),
        NumberUpdated {
            config: number_config(),
        }
        .into(),
        NumberReleased {
            phone_number: "+14155550100".into(),
        }
        .into(),
        NumberStocked {
            phone_number: "+14155550100".into(),
            iso_country: "US".into(),
            number_type: "local".into(),
            region: Some("CA".into()),
            locality: Some("San Francisco".into()),
            voice: true,
            sms: false,
            monthly_price_micros: 1_150_000,
        }
        .into(),
        AccountCreated {
            friendly_name: "Acme".into(),
            owner_account_sid: Some("AC0123456789abcdef0123456789abcdef".into()),
            token_sha256: "ab".repeat(32),
            token_salt: "s1".into(),
        }
        .into(),
        AccountTokenRotated {
            token_sha256: "cd".repeat(32),
            token_salt: "s2".into(),
        }
        .into(),
        AccountCredited {
            amount_micros: 10_000_000,
            currency: "USD".into(),
            reference: Some("invoice 7".into()),
        }
        .into(),
        AccountBillingPlanSet {
            plan: "postpaid".into(),
            credit_limit_micros: Some(50_000_000),
        }
        .into(),
        AccountUpdated {
            friendly_name: Some("Acme Inc".into()),
            status: Some("suspended".into()),
        }
        .into(),
        ApiKeyCreated {
            key_sid: "SK0123456789abcdef0123456789abcdef".into(),
            friendly_name: "ci".into(),
            secret_sha256: "ef".repeat(32),
        }
        .into(),
        ApiKeyUpdated {
            key_sid: "SK0123456789abcdef0123456789abcdef".into(),
            friendly_name: "deploys".into(),
        }
        .into(),
        ApiKeyDeleted {
            key_sid: "SK0123456789abcdef0123456789abcdef".into(),
        }
        .into(),
        ApplicationCreated {
            application_sid: "AP0123456789abcdef0123456789abcdef".into(),
            config: ApplicationConfig {
                friendly_name: "IVR".into(),
                voice_url: Some("https://app.example.com/voice".into()),
                ..ApplicationConfig::default()
            },
        }
        .into(),
        ApplicationUpdated {
            application_sid: "AP0123456789abcdef0123456789abcdef".into(),
            config: ApplicationConfig::default(),
        }
        .into(),
        ApplicationDeleted {
            application_sid: "AP0123456789abcdef0123456789abcdef".into(),
        }
        .into(),
        RatePublished {
            effective_from: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            currency: "USD".into(),
            prices: vec![RatePrice {
                category: "calls-inbound".into(),
                per_minute_micros: 8500,
                prefix: Some("+1415".into()),
            }],
        }
        .into(),
        ConferenceStarted {
            friendly_name: "room".into(),
            owner_node: Some("node-1".into()),
        }
        .into(),
        ParticipantJoined {
            call_sid: call(),
            muted: false,
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            conference_started: true,
            status_callback: Some("https://app.example/conference".into()),
            status_callback_method: HttpMethod::Post,
            status_callback_events: vec!["start end join leave".into()],
        }
        .into(),
        ParticipantLeft { call_sid: call() }.into(),
        ParticipantUpdated {
            call_sid: call(),
            muted: true,
            hold: false,
        }
        .into(),
        ConferenceEnded {
            reason: "last-participant-left".into(),
            call_sid_ending_conference: Some(call()),
        }
        .into(),
        CallControlRequested {
            call_sid: call(),
            owner_node: "node-2".into(),
            action: CallControlAction::Redirect {
                url: "https://a/next".into(),
                method: HttpMethod::Post,
            },
        }
        .into(),
        CommandCompleted {
            node: "node-2".into(),
            ok: false,
            error: Some("invalid-state".into()),
        }
        .into(),
        SinkCreated {
            description: "audit feed".into(),
            sink_type: "webhook".into(),
            destination: "https://app.example/events".into(),
            method: HttpMethod::Post,
            batch_events: true,
        }
        .into(),
        SinkUpdated {
            description: "renamed".into(),
        }
        .into(),
        SinkDeleted {}.into(),
        SubscriptionCreated {
            sink_sid: SinkSid::generate(),
            description: "calls".into(),
            types: vec![SubscribedType {
                event_type: "dialtone.call.*".into(),
                schema_version: 1,
            }],
            start: crate::log::Cursor(std::collections::BTreeMap::from([("log".into(), 7)])),
        }
        .into(),
        SubscriptionUpdated {
            description: Some("all calls".into()),
            types: None,
        }
        .into(),
        SubscriptionDeleted {}.into(),
        SinkDelivered {
            sink_sid: SinkSid::generate(),
            events: 3,
            first_event_id: "a".into(),
            last_event_id: "c".into(),
            cursor: crate::log::Cursor::start(),
            status: 200,
            attempts: 1,
            latency_ms: 12,
        }
        .into(),
        CallAdopted {
            owner_node: "node-2".into(),
            by_node: "node-1".into(),
            reason: "node-failure".into(),
            last_heartbeat: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        }
        .into(),
        NodeHeartbeat {
            node: "node-1".into(),
            instance: "0193".into(),
            lease_ms: 10_000,
            roles: vec!["voice".into()],
            sip: Some("10.0.0.7:5060".into()),
        }
        .into(),
        NodeStopped {
            node: "node-1".into(),
            instance: "0193".into(),
        }
        .into(),
        SinkFailed {
            sink_sid: SinkSid::generate(),
            events: 1,
            first_event_id: "a".into(),
            last_event_id: "a".into(),
            cursor: crate::log::Cursor::start(),
            attempts: 6,
            error: "HTTP 503".into(),
        }
        .into(),
    ]
}

#[test]
fn every_type_round_trips_through_json() {
    let samples = samples();
    let covered: BTreeSet<&str> = samples.iter().map(|p| p.event_type()).collect();
    let known: BTreeSet<&str> = Payload::TYPES.iter().copied().collect();
    assert_eq!(covered, known, "every type needs a sample here");
    for payload in samples {
        let raw = payload.to_raw();
        let back = Payload::decode(payload.event_type(), &raw).unwrap();
        assert_eq!(back, payload, "{}", payload.event_type());
    }
}

#[test]
fn recording_fields_added_later_are_optional_both_ways() {
    let sid = RecordingSid::generate();
    let old = format!(r#"{{"recording_sid":"{sid}","source":"DialVerb","channels":2}}"#);
    let raw = RawValue::from_string(old.clone()).unwrap();
    let started = Payload::decode("dialtone.call.recording.started", &raw).unwrap();
    assert_eq!(
        started,
        Payload::RecordingStarted(RecordingStarted::new(sid.clone(), "DialVerb", 2))
    );
    assert_eq!(
        started.to_raw().get(),
        old,
        "nothing new is written when unset"
    );
    let record = format!(
        r#"{{"recording_sid":"{sid}","max_length_ms":1000,"silence_timeout_ms":0,"finish_on_key":"","play_beep":false,"trim":false}}"#
    );
    let raw = RawValue::from_string(record.clone()).unwrap();
    let payload = Payload::decode("dialtone.media.record", &raw).unwrap();
    match &payload {
        Payload::MediaRecord(r) => {
            assert_eq!(r.status_callback, None);
            assert_eq!(r.status_callback_method, HttpMethod::Post);
            assert!(r.status_callback_events.is_empty());
        }
        other => panic!("expected MediaRecord, got {other:?}"),
    }
    assert_eq!(payload.to_raw().get(), record);
}

#[test]
fn unknown_types_are_kept_as_raw_json() {
    let raw = RawValue::from_string(r#"{"future":[1,2,3]}"#.into()).unwrap();
    let payload = Payload::decode("dialtone.call.teleported", &raw).unwrap();
    match &payload {
        Payload::Unknown { event_type, data } => {
            assert_eq!(event_type, "dialtone.call.teleported");
            assert_eq!(data["future"][2], 3);
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(payload.to_raw().get(), r#"{"future":[1,2,3]}"#);
}

#[test]
fn a_known_type_with_bad_data_is_a_typed_error() {
    let raw = RawValue::from_string(r#"{"digit":5}"#.into()).unwrap();
    let error = Payload::decode("dialtone.call.dtmf.received", &raw).unwrap_err();
    assert_eq!(error.event_type, "dialtone.call.dtmf.received");
}

#[test]
fn call_status_strings_match_twilio() {
    assert_eq!(
        serde_json::to_string(&CallStatus::InProgress).unwrap(),
        "\"in-progress\""
    );
    assert_eq!(CallStatus::NoAnswer.as_str(), "no-answer");
    assert_eq!(
        serde_json::to_string(&Direction::OutboundDial).unwrap(),
        "\"outbound-dial\""
    );
}

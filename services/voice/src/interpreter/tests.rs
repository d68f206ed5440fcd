//! Whole calls played against scripted webhook results, with simulated time.

use std::time::{Duration, Instant};

use dialtone_events::payload::{
    CallApplication, CallStatus, Direction, HttpMethod, Payload, WebhookPurpose,
};
use dialtone_events::sid::{AccountSid, CallSid, RecordingSid};

use super::*;
use crate::webhook::{WebhookFailure, WebhookResponse};

pub(super) const CALL: &str = "CA0123456789abcdef0123456789abcdef";
pub(super) const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub(super) const RECORDING: &str = "RE0123456789abcdef0123456789abcdef";
pub(super) const VOICE_URL: &str = "https://app.example/ivr/start";
pub(super) const FALLBACK_URL: &str = "https://backup.example/fallback";

pub(super) fn app(url: Option<&str>, fallback: Option<&str>) -> CallApplication {
    CallApplication {
        url: url.map(str::to_owned),
        method: HttpMethod::Post,
        fallback_url: fallback.map(str::to_owned),
        fallback_method: HttpMethod::Post,
        ..CallApplication::default()
    }
}

pub(super) fn context(application: CallApplication) -> CallContext {
    CallContext {
        call_sid: CallSid::parse(CALL).unwrap(),
        account_sid: AccountSid::parse(ACCOUNT).unwrap(),
        from: "+15551230000".into(),
        to: "+15559870000".into(),
        direction: Direction::Inbound,
        call_status: CallStatus::Ringing,
        parent_call_sid: None,
        forwarded_from: None,
        caller_name: None,
        application,
        extra_params: vec![],
    }
}

/// Drives one interpreter and renders its actions as short strings.
pub(super) struct Call {
    pub(super) interpreter: Interpreter,
    pub(super) now: Instant,
    /// Every action so far.
    pub(super) log: Vec<Action>,
}

impl Call {
    pub(super) fn new(application: CallApplication) -> Call {
        Call::with_context(context(application))
    }

    pub(super) fn with_context(ctx: CallContext) -> Call {
        let mut interpreter = Interpreter::new(ctx, InterpreterConfig::default());
        interpreter.set_recording_sid_source(|| RecordingSid::parse(RECORDING).unwrap());
        Call {
            interpreter,
            now: Instant::now(),
            log: Vec::new(),
        }
    }

    pub(super) fn take(&mut self, actions: Vec<Action>) -> Vec<String> {
        self.log.extend(actions.iter().cloned());
        actions.iter().filter_map(command).collect()
    }

    pub(super) fn take_all(&mut self, actions: Vec<Action>) -> Vec<String> {
        self.log.extend(actions.iter().cloned());
        actions.iter().map(describe).collect()
    }

    pub(super) fn start(&mut self) -> Vec<String> {
        let a = self.interpreter.start(self.now);
        self.take(a)
    }

    pub(super) fn respond(&mut self, result: FetchResult) -> Vec<String> {
        let id = self.last_request_id();
        let a = self.interpreter.on_fetched(id, result, self.now);
        self.take(a)
    }

    pub(super) fn twiml(&mut self, body: &str) -> Vec<String> {
        let url = self.last_request().url;
        self.respond(xml_at(&url, body))
    }

    pub(super) fn done(&mut self) -> Vec<String> {
        let id = self.last_command_id();
        let a = self
            .interpreter
            .on_media_done(id, MediaDone::Finished, self.now);
        self.take(a)
    }

    pub(super) fn media_done(&mut self, done: MediaDone) -> Vec<String> {
        let id = self.last_command_id();
        let a = self.interpreter.on_media_done(id, done, self.now);
        self.take(a)
    }

    pub(super) fn dtmf(&mut self, digits: &str) -> Vec<String> {
        let mut out = Vec::new();
        for d in digits.chars() {
            let a = self.interpreter.on_dtmf(d, self.now);
            out.extend(self.take(a));
        }
        out
    }

    pub(super) fn advance(&mut self, by: Duration) -> Vec<String> {
        self.now += by;
        let a = self.interpreter.on_timer(self.now);
        self.take(a)
    }

    pub(super) fn hangup(&mut self) -> Vec<String> {
        let a = self.interpreter.on_hangup(self.now);
        self.take(a)
    }

    pub(super) fn last_request(&self) -> WebhookRequest {
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Fetch { request, .. } => Some(request.clone()),
                _ => None,
            })
            .expect("a fetch")
    }

    pub(super) fn last_request_id(&self) -> u32 {
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Fetch { request_id, .. } => Some(*request_id),
                _ => None,
            })
            .expect("a fetch")
    }

    pub(super) fn last_command_id(&self) -> CommandId {
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Media { command_id, .. } => Some(*command_id),
                _ => None,
            })
            .expect("a media command")
    }

    pub(super) fn events(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|a| matches!(a, Action::Emit(_)))
            .map(describe)
            .collect()
    }

    pub(super) fn param(&self, name: &str) -> Option<String> {
        self.last_request()
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

pub(super) fn xml_at(url: &str, body: &str) -> FetchResult {
    Ok(WebhookResponse {
        status: 200,
        content_type: Some("text/xml; charset=utf-8".into()),
        body: body.into(),
        final_url: url.into(),
        attempts: 1,
        latency: Duration::from_millis(5),
    })
}

pub(super) fn http(status: u16, content_type: &str, body: &str) -> FetchResult {
    Ok(WebhookResponse {
        status,
        content_type: Some(content_type.into()),
        body: body.into(),
        final_url: VOICE_URL.into(),
        attempts: 1,
        latency: Duration::from_millis(5),
    })
}

fn connect_refused() -> FetchResult {
    Err(WebhookFailure::new(
        11205,
        crate::webhook::FailureClass::Connect,
        "connection refused",
    ))
}

/// Everything but events, compactly.
pub(super) fn command(action: &Action) -> Option<String> {
    match action {
        Action::Emit(_) => None,
        other => Some(describe(other)),
    }
}

fn purpose(p: WebhookPurpose) -> &'static str {
    match p {
        WebhookPurpose::Voice => "voice",
        WebhookPurpose::Fallback => "fallback",
        WebhookPurpose::Action => "action",
        WebhookPurpose::Redirect => "redirect",
        WebhookPurpose::StatusCallback => "status",
        WebhookPurpose::RecordingStatusCallback => "recording-status",
    }
}

pub(super) fn describe(action: &Action) -> String {
    match action {
        Action::Fetch { request, .. } => format!(
            "fetch {} {} {}",
            purpose(request.purpose),
            request.method.as_str(),
            request.url
        ),
        Action::Answer => "answer".into(),
        Action::Reject { reason, sip_code } => format!("reject {} {sip_code}", reason.as_str()),
        Action::Media { command, .. } => match command {
            MediaCommand::Say(s) => {
                format!("say {:?} {} {} x{}", s.text, s.voice, s.language, s.loops)
            }
            MediaCommand::Play(p) => format!(
                "play {} x{}",
                p.url.clone().or(p.digits.clone()).unwrap_or_default(),
                p.loops
            ),
            MediaCommand::Pause(p) => format!("pause {}ms", p.length_ms),
            MediaCommand::Record(r) => format!(
                "record max={}ms silence={}ms keys={} beep={} trim={}",
                r.max_length_ms, r.silence_timeout_ms, r.finish_on_key, r.play_beep, r.trim
            ),
        },
        Action::StopMedia { .. } => "stop".into(),
        Action::Dial { dial_id, plan } => {
            let targets: Vec<String> = match &plan.destination {
                DialDestination::Parties(parties) => parties
                    .iter()
                    .map(|p| format!("{}={}", p.address.to(), p.child_call_sid))
                    .collect(),
                DialDestination::Conference(room) => vec![format!("conference:{}", room.name)],
            };
            format!("dial#{dial_id} {}", targets.join(","))
        }
        Action::Bridge {
            dial_id,
            child_call_sid,
        } => format!("bridge#{dial_id} {child_call_sid}"),
        Action::EndDial { dial_id, reason } => format!("end-dial#{dial_id} {}", reason.as_str()),
        Action::Hangup { reason } => format!("hangup {}", reason.as_str()),
        Action::Completed => "completed".into(),
        Action::Emit(payload) => match payload {
            Payload::TwimlFailed(f) => format!("twiml.failed {} {} {}", f.code, f.class, f.url),
            Payload::TwimlWarning(w) => {
                format!(
                    "twiml.warning {} {}",
                    w.code,
                    w.verb.clone().unwrap_or_default()
                )
            }
            Payload::VerbStarted(v) => format!("verb.started {} {}", v.index, v.verb),
            Payload::VerbFinished(v) => {
                format!("verb.finished {} {} {}", v.index, v.verb, v.outcome)
            }
            Payload::GatherCompleted(g) => format!(
                "gather.completed {:?} {:?} {}",
                g.digits, g.finished_on_key, g.reason
            ),
            Payload::CallRedirected(r) => {
                format!("redirected {} {} {}", r.by, r.method.as_str(), r.url)
            }
            Payload::CallRejected(r) => format!("rejected {} {}", r.reason, r.sip_code),
            Payload::DialCompleted(d) => format!(
                "call.dial.completed {} {} {}s bridged={}",
                d.dial_call_status,
                d.child_call_sid
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                d.duration_s,
                d.bridged
            ),
            other => other
                .event_type()
                .trim_start_matches("dialtone.")
                .to_owned(),
        },
    }
}

pub(super) fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| (*i).to_owned()).collect()
}

pub(super) const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------

#[test]
fn say_then_end_of_document_hangs_up() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    assert_eq!(
        call.start(),
        s(&["fetch voice POST https://app.example/ivr/start"])
    );
    assert_eq!(
        call.last_request().params,
        vec![
            ("AccountSid".to_owned(), ACCOUNT.to_owned()),
            ("ApiVersion".into(), "2010-04-01".into()),
            ("CallSid".into(), CALL.into()),
            ("CallStatus".into(), "ringing".into()),
            ("Called".into(), "+15559870000".into()),
            ("Caller".into(), "+15551230000".into()),
            ("Direction".into(), "inbound".into()),
            ("From".into(), "+15551230000".into()),
            ("To".into(), "+15559870000".into()),
        ]
    );
    assert_eq!(
        call.twiml("<Response><Say>Hello there</Say></Response>"),
        s(&["answer", "say \"Hello there\" man en x1"])
    );
    assert_eq!(call.interpreter.call_status(), CallStatus::InProgress);
    assert_eq!(call.done(), s(&["hangup end-of-document", "completed"]));
    assert!(call.interpreter.is_completed());
    assert_eq!(
        call.events(),
        s(&[
            "verb.started 0 Say",
            "media.say",
            "verb.finished 0 Say done",
            "media.hangup",
        ])
    );
    // Nothing happens after completion.
    assert!(call.dtmf("1").is_empty());
    assert!(call.hangup().is_empty());
}

#[test]
fn reject_never_answers() {
    for (twiml, expected) in [
        (
            "<Response><Reject reason=\"busy\"/><Say>unreachable</Say></Response>",
            "reject busy 486",
        ),
        ("<Response><Reject/></Response>", "reject rejected 603"),
    ] {
        let mut call = Call::new(app(Some(VOICE_URL), None));
        call.start();
        assert_eq!(call.twiml(twiml), s(&[expected, "completed"]));
        assert!(!call.log.contains(&Action::Answer));
        assert!(call.events().iter().any(|e| e.starts_with("rejected ")));
    }
}

#[test]
fn reject_after_answer_hangs_up() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml("<Response><Say>Hi</Say><Reject/></Response>");
    assert_eq!(call.done(), s(&["hangup rejected", "completed"]));
}

#[test]
fn hangup_verb_and_empty_documents_answer_then_hang_up() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(
        call.twiml("<Response><Hangup/><Say>never</Say></Response>"),
        s(&["answer", "hangup hangup-verb", "completed"])
    );
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(
        call.twiml("<Response/>"),
        s(&["answer", "hangup end-of-document", "completed"])
    );
}

#[test]
fn broken_xml_goes_to_the_fallback_with_error_code_and_url() {
    let mut call = Call::new(app(Some(VOICE_URL), Some(FALLBACK_URL)));
    call.start();
    assert_eq!(
        call.twiml("<Response><Say>unclosed</Response>"),
        s(&["fetch fallback POST https://backup.example/fallback"])
    );
    assert_eq!(call.param("ErrorCode").as_deref(), Some("12100"));
    assert_eq!(call.param("ErrorUrl").as_deref(), Some(VOICE_URL));
    assert_eq!(call.param("CallSid").as_deref(), Some(CALL));
    assert!(call
        .events()
        .contains(&"twiml.failed 12100 parse https://app.example/ivr/start".to_owned()));
    assert_eq!(
        call.twiml("<Response><Say>Backup here</Say></Response>"),
        s(&["answer", "say \"Backup here\" man en x1"])
    );
}

#[test]
fn every_kind_of_primary_failure_uses_the_fallback() {
    let cases: Vec<(FetchResult, &str)> = vec![
        (http(500, "text/xml", "<Response/>"), "11200 http-status"),
        (http(404, "text/html", "not found"), "11200 http-status"),
        (http(200, "text/html", "<Response/>"), "12300 content-type"),
        (http(200, "text/xml", "<Responce/>"), "12100 parse"),
        (http(200, "text/xml", ""), "12100 parse"),
        (connect_refused(), "11205 connect"),
    ];
    for (result, failure) in cases {
        let mut call = Call::new(app(Some(VOICE_URL), Some(FALLBACK_URL)));
        call.start();
        assert_eq!(
            call.respond(result),
            s(&["fetch fallback POST https://backup.example/fallback"]),
            "{failure}"
        );
        assert!(
            call.events()
                .contains(&format!("twiml.failed {failure} {VOICE_URL}")),
            "{:?}",
            call.events()
        );
        assert_eq!(
            call.param("ErrorCode").as_deref(),
            failure.split(' ').next()
        );
    }
}

#[test]
fn when_the_fallback_fails_too_the_caller_hears_an_application_error() {
    let mut call = Call::new(app(Some(VOICE_URL), Some(FALLBACK_URL)));
    call.start();
    call.respond(connect_refused());
    assert_eq!(
        call.respond(http(503, "text/xml", "")),
        s(&[
            "answer",
            "say \"We are sorry, an application error has occurred. Goodbye.\" man en x1"
        ])
    );
    assert_eq!(call.done(), s(&["hangup application-error", "completed"]));
    let failures: Vec<String> = call
        .events()
        .into_iter()
        .filter(|e| e.starts_with("twiml.failed"))
        .collect();
    assert_eq!(
        failures,
        s(&[
            "twiml.failed 11205 connect https://app.example/ivr/start",
            "twiml.failed 11200 http-status https://backup.example/fallback",
        ])
    );

    // Without a fallback URL, straight to the prompt.
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(
        call.respond(http(200, "text/plain", "hello")),
        s(&[
            "answer",
            "say \"We are sorry, an application error has occurred. Goodbye.\" man en x1"
        ])
    );
    // The caller hanging up during the prompt ends it.
    assert_eq!(call.hangup(), s(&["completed"]));
}

#[test]
fn an_invalid_or_missing_application_url_is_11100() {
    let mut call = Call::new(app(Some("not a url"), None));
    let commands = call.start();
    assert_eq!(commands[0], "answer");
    assert!(call.events()[0].starts_with("twiml.failed 11100 url"));
    let mut call = Call::new(app(None, Some(FALLBACK_URL)));
    assert_eq!(
        call.start(),
        s(&["fetch fallback POST https://backup.example/fallback"])
    );
}

#[test]
fn gather_num_digits_with_barge_in_and_relative_action() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(
        call.twiml(
            r#"<Response><Gather numDigits="1" action="menu?step=2"><Say>Press 1 for sales</Say><Play>beep.wav</Play></Gather><Say>No input</Say></Response>"#
        ),
        s(&["answer", "say \"Press 1 for sales\" man en x1"])
    );
    // While a prompt plays, no timeout runs.
    assert_eq!(call.interpreter.poll_timeout(), None);
    // The first key stops the prompt, skips the rest, and completes (numDigits=1).
    assert_eq!(
        call.dtmf("1"),
        s(&[
            "stop",
            "fetch action POST https://app.example/ivr/menu?step=2"
        ])
    );
    assert_eq!(call.param("Digits").as_deref(), Some("1"));
    assert_eq!(call.param("FinishedOnKey").as_deref(), Some(""));
    assert_eq!(call.param("CallStatus").as_deref(), Some("in-progress"));
    assert!(call
        .events()
        .contains(&"gather.completed \"1\" \"\" num-digits".to_owned()));
    // The stopped prompt's late outcome is ignored.
    assert!(call.media_done(MediaDone::Interrupted).is_empty());
}

#[test]
fn gather_finish_on_key_is_not_part_of_digits() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Gather action="/pin"><Say>PIN then pound</Say></Gather></Response>"#);
    call.done();
    assert_eq!(call.interpreter.poll_timeout(), Some(call.now + 5 * SECOND));
    assert!(call.dtmf("12").is_empty());
    assert_eq!(
        call.dtmf("#"),
        s(&["fetch action POST https://app.example/pin"])
    );
    assert_eq!(call.param("Digits").as_deref(), Some("12"));
    assert_eq!(call.param("FinishedOnKey").as_deref(), Some("#"));
}

#[test]
fn gather_timeout_submits_partial_digits_and_resets_per_digit() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(
        r#"<Response><Gather timeout="3" finishOnKey=""><Say>Enter</Say></Gather></Response>"#,
    );
    call.done();
    call.now += 2 * SECOND;
    call.dtmf("4");
    assert_eq!(call.interpreter.poll_timeout(), Some(call.now + 3 * SECOND));
    // Not yet.
    assert!(call.advance(2 * SECOND).is_empty());
    assert!(
        call.dtmf("#").is_empty(),
        "finishOnKey=\"\" disables the key"
    );
    // The last digit was 0 s ago; 3 s later the input is submitted.
    assert_eq!(
        call.advance(3 * SECOND),
        s(&["fetch action POST https://app.example/ivr/start"]),
        "action defaults to the current document URL"
    );
    assert_eq!(call.param("Digits").as_deref(), Some("4#"));
    assert!(call
        .events()
        .contains(&"gather.completed \"4#\" \"\" timeout".to_owned()));
}

#[test]
fn gather_without_input_falls_through_after_the_prompts() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(
        r#"<Response><Gather><Say>Menu</Say><Pause length="2"/></Gather><Say>Goodbye</Say></Response>"#,
    );
    assert_eq!(call.done(), s(&["pause 2000ms"]));
    assert_eq!(
        call.interpreter.poll_timeout(),
        None,
        "timeout starts after the prompts"
    );
    assert!(call.done().is_empty());
    assert!(call.advance(4 * SECOND).is_empty());
    assert_eq!(call.advance(SECOND), s(&["say \"Goodbye\" man en x1"]));
    assert!(call
        .events()
        .contains(&"gather.completed \"\" \"\" no-input".to_owned()));
    assert!(call
        .events()
        .contains(&"verb.finished 0 Gather no-input".to_owned()));
}

#[test]
fn gather_action_on_empty_result_requests_the_action() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Gather actionOnEmptyResult="true" method="GET" action="https://other.example/x"/></Response>"#);
    assert_eq!(
        call.advance(5 * SECOND),
        s(&["fetch action GET https://other.example/x"])
    );
    assert_eq!(call.param("Digits").as_deref(), Some(""));
}

#[test]
fn gather_with_only_finish_key_is_empty_input() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Gather/><Say>next</Say></Response>"#);
    assert_eq!(call.dtmf("#"), s(&["say \"next\" man en x1"]));
}

#[test]
fn gather_dialtone_extensions() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(
        r#"<Response><Gather validDigits="123" maxDigits="3" interDigitTimeout="2" timeout="10"/></Response>"#,
    );
    assert!(call.dtmf("9").is_empty(), "not a valid digit: ignored");
    assert!(call.dtmf("1").is_empty());
    assert_eq!(call.interpreter.poll_timeout(), Some(call.now + 2 * SECOND));
    call.dtmf("2");
    assert_eq!(
        call.dtmf("3"),
        s(&["fetch action POST https://app.example/ivr/start"])
    );
    assert_eq!(call.param("Digits").as_deref(), Some("123"));

    // minDigits: too few digits count as no input.
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Gather minDigits="4"/><Say>too short</Say></Response>"#);
    call.dtmf("12");
    assert_eq!(call.dtmf("#"), s(&["say \"too short\" man en x1"]));
}

#[test]
fn speech_only_gather_warns_and_gets_no_input() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Gather input="speech"/><Say>fallthrough</Say></Response>"#);
    assert!(call
        .events()
        .contains(&"twiml.warning 12200 Gather".to_owned()));
    assert!(call.dtmf("1").is_empty());
    assert_eq!(
        call.advance(5 * SECOND),
        s(&["say \"fallthrough\" man en x1"])
    );
}

#[test]
fn redirect_resolves_relative_urls_against_the_document() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(
        call.twiml("<Response><Redirect>next?x=1</Redirect><Say>unreachable</Say></Response>"),
        s(&["fetch redirect POST https://app.example/ivr/next?x=1"])
    );
    assert!(call
        .events()
        .contains(&"redirected twiml POST https://app.example/ivr/next?x=1".to_owned()));
    assert_eq!(
        call.twiml("<Response><Redirect method=\"GET\">/root#rc=3</Redirect></Response>"),
        s(&["fetch redirect GET https://app.example/root#rc=3"])
    );
    assert_eq!(
        call.twiml("<Response><Redirect>../up</Redirect></Response>"),
        s(&["fetch redirect POST https://app.example/up"])
    );
    // A document served after HTTP redirects resolves against the final URL.
    let id = call.last_request_id();
    let a = call.interpreter.on_fetched(
        id,
        xml_at(
            "https://moved.example/a/b",
            "<Response><Play>c.wav</Play></Response>",
        ),
        call.now,
    );
    assert_eq!(
        call.take(a),
        s(&["answer", "play https://moved.example/a/c.wav x1"])
    );
}

#[test]
fn identical_fetches_without_input_are_a_loop() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    // The first fetch plus 9 identical redirects are allowed (10 in a row)...
    call.twiml("<Response><Redirect>/loop</Redirect></Response>");
    for _ in 0..9 {
        assert_eq!(
            call.twiml("<Response><Redirect>/loop</Redirect></Response>"),
            s(&["fetch redirect POST https://app.example/loop"])
        );
    }
    // ...the 11th is not.
    assert_eq!(
        call.twiml("<Response><Redirect>/loop</Redirect></Response>"),
        s(&["answer", "hangup loop-detected", "completed"])
    );
    assert!(call
        .events()
        .contains(&"twiml.failed 90100 loop https://app.example/loop".to_owned()));
}

#[test]
fn caller_input_between_fetches_is_not_a_loop() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    for _ in 0..30 {
        call.twiml(r#"<Response><Gather numDigits="1" action="/menu"/></Response>"#);
        // Same URL and params (Digits=1) every time, but the caller pressed a key.
        assert_eq!(
            call.dtmf("1"),
            s(&["fetch action POST https://app.example/menu"])
        );
    }
}

#[test]
fn a_leading_pause_waits_before_answering() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert!(call
        .twiml("<Response><Pause length=\"2\"/><Say>Hi</Say><Pause/></Response>")
        .is_empty());
    assert_eq!(call.interpreter.poll_timeout(), Some(call.now + 2 * SECOND));
    assert!(call.advance(SECOND).is_empty());
    assert_eq!(call.advance(SECOND), s(&["answer", "say \"Hi\" man en x1"]));
    // Once answered, a pause is a media command.
    assert_eq!(call.done(), s(&["pause 1000ms"]));
}

#[test]
fn record_with_audio_requests_the_action() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(
        call.twiml(r##"<Response><Record maxLength="30" timeout="3" finishOnKey="#" action="/voicemail"/><Say>not reached</Say></Response>"##),
        s(&["answer", "record max=30000ms silence=3000ms keys=# beep=true trim=true"])
    );
    assert_eq!(
        call.media_done(MediaDone::Recorded(RecordingOutcome {
            duration_ms: 4200,
            digits: Some("#".into()),
            absent: false,
        })),
        s(&["fetch action POST https://app.example/voicemail"])
    );
    assert_eq!(call.param("RecordingSid").as_deref(), Some(RECORDING));
    assert_eq!(
        call.param("RecordingUrl").unwrap(),
        format!("http://localhost:8080/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}")
    );
    assert_eq!(call.param("RecordingDuration").as_deref(), Some("5"));
    assert_eq!(call.param("Digits").as_deref(), Some("#"));
}

/// The `MediaRecord` of the last `Record` command.
fn last_record(call: &Call) -> MediaRecord {
    call.log
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Media {
                command: MediaCommand::Record(r),
                ..
            } => Some(r.clone()),
            _ => None,
        })
        .expect("a Record command")
}

#[test]
fn record_carries_its_recording_status_callback_resolved() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(
        r#"<Response><Record recordingStatusCallback="../rec/status?x=1" recordingStatusCallbackMethod="GET" recordingStatusCallbackEvent="in-progress absent completed"/></Response>"#,
    );
    let record = last_record(&call);
    assert_eq!(
        record.status_callback.as_deref(),
        Some("https://app.example/rec/status?x=1")
    );
    assert_eq!(record.status_callback_method, HttpMethod::Get);
    assert_eq!(
        record.status_callback_events,
        vec!["in-progress", "absent", "completed"]
    );
    // The event that records the command carries them too.
    assert!(call.log.iter().any(|a| matches!(
        a,
        Action::Emit(Payload::MediaRecord(r)) if r.status_callback == record.status_callback
    )));
}

#[test]
fn record_without_a_usable_recording_status_callback_has_none() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Record/></Response>"#);
    let record = last_record(&call);
    assert_eq!(record.status_callback, None);
    assert!(record.status_callback_events.is_empty());

    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Record recordingStatusCallback="ftp://files.example/x"/></Response>"#);
    assert_eq!(last_record(&call).status_callback, None);
    assert!(call
        .events()
        .contains(&"twiml.warning 12200 Record".to_owned()));
}

#[test]
fn an_empty_recording_goes_to_the_next_verb() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Record/><Say>Nothing recorded</Say></Response>"#);
    assert_eq!(
        call.media_done(MediaDone::Recorded(RecordingOutcome {
            duration_ms: 600,
            digits: None,
            absent: true,
        })),
        s(&["say \"Nothing recorded\" man en x1"])
    );
}

#[test]
fn hangup_during_record_still_requests_the_action_and_ignores_it() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Record/></Response>"#);
    assert_eq!(call.hangup(), s(&["stop"]));
    assert_eq!(
        call.media_done(MediaDone::Recorded(RecordingOutcome {
            duration_ms: 10_000,
            digits: None,
            absent: false,
        })),
        s(&["fetch action POST https://app.example/ivr/start"])
    );
    assert_eq!(call.param("Digits").as_deref(), Some("hangup"));
    assert_eq!(call.param("CallStatus").as_deref(), Some("completed"));
    // Its TwiML is ignored.
    assert_eq!(
        call.twiml("<Response><Say>ignored</Say></Response>"),
        s(&["completed"])
    );
}

#[test]
fn hangup_during_record_gives_up_when_media_never_reports() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml(r#"<Response><Record/></Response>"#);
    call.hangup();
    assert!(call.advance(9 * SECOND).is_empty());
    assert_eq!(call.advance(SECOND), s(&["completed"]));
}

#[test]
fn caller_hangup_ends_the_program_and_late_outcomes_are_ignored() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml("<Response><Say>Long message</Say><Say>more</Say></Response>");
    assert_eq!(call.hangup(), s(&["completed"]));
    assert!(call
        .events()
        .contains(&"verb.finished 0 Say hangup".to_owned()));
    assert!(call.done().is_empty());
    // Hanging up during a fetch: the response is ignored.
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(call.hangup(), s(&["completed"]));
    assert!(call.twiml("<Response><Say>x</Say></Response>").is_empty());
}

#[test]
fn unsupported_verbs_are_skipped_with_a_warning() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    assert_eq!(
        call.twiml(
            "<Response><Connect><Stream url=\"wss://x.example/s\"/></Connect><Enqueue>q</Enqueue><Say>after</Say></Response>"
        ),
        s(&["answer", "say \"after\" man en x1"])
    );
    let warnings: Vec<String> = call
        .events()
        .into_iter()
        .filter(|e| e.starts_with("twiml.warning"))
        .collect();
    assert_eq!(
        warnings,
        s(&["twiml.warning 12200 Connect", "twiml.warning 12200 Enqueue"])
    );
}

#[test]
fn document_warnings_become_events() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml("<Response><Say colour=\"red\">Tom & Jerry</Say></Response>");
    let warnings: Vec<String> = call
        .events()
        .into_iter()
        .filter(|e| e.starts_with("twiml.warning"))
        .collect();
    assert_eq!(
        warnings,
        s(&["twiml.warning 12200 Say", "twiml.warning 12200 Say"])
    );
}

#[test]
fn rest_redirect_interrupts_the_current_verb() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    call.twiml("<Response><Say>Hold on</Say></Response>");
    let a = call
        .interpreter
        .redirect("https://app.example/new", HttpMethod::Get, call.now)
        .unwrap();
    assert_eq!(
        call.take(a),
        s(&["stop", "fetch redirect GET https://app.example/new"])
    );
    assert!(call
        .events()
        .contains(&"redirected api GET https://app.example/new".to_owned()));
    assert!(call
        .events()
        .contains(&"verb.finished 0 Say redirected".to_owned()));
    assert!(
        call.done().is_empty(),
        "the stopped Say's outcome is ignored"
    );
    assert_eq!(
        call.interpreter
            .redirect("/relative", HttpMethod::Post, call.now),
        Err(InterpreterError::InvalidUrl("/relative".into()))
    );
    let a = call
        .interpreter
        .replace_twiml("<Response><Say>Replaced</Say></Response>", call.now)
        .unwrap();
    assert_eq!(call.take(a), s(&["say \"Replaced\" man en x1"]));
    assert!(call.interpreter.replace_twiml("<oops", call.now).is_err());
    call.hangup();
    assert_eq!(
        call.interpreter
            .redirect("https://x.example/", HttpMethod::Post, call.now),
        Err(InterpreterError::CallEnded)
    );
}

#[test]
fn inline_twiml_runs_without_a_fetch() {
    let mut application = app(None, None);
    application.twiml = Some(
        "<Response><Say voice=\"Polly.Joanna\" loop=\"0\">Inline</Say><Redirect>relative</Redirect></Response>".into(),
    );
    let mut call = Call::new(application);
    assert_eq!(
        call.start(),
        s(&["answer", "say \"Inline\" Polly.Joanna en-US x1000"])
    );
    // A relative URL has nothing to resolve against: skipped, then the document ends.
    assert_eq!(call.done(), s(&["hangup end-of-document", "completed"]));
    assert!(call
        .events()
        .contains(&"twiml.warning 12200 Redirect".to_owned()));
}

#[test]
fn outbound_calls_are_already_answered() {
    let mut ctx = context(app(Some(VOICE_URL), None));
    ctx.direction = Direction::OutboundApi;
    ctx.call_status = CallStatus::InProgress;
    ctx.parent_call_sid = Some(CallSid::parse(CALL).unwrap());
    ctx.forwarded_from = Some("+15550009999".into());
    ctx.caller_name = Some("ALICE".into());
    ctx.extra_params = vec![("SipCallId".into(), "abc@host".into())];
    let mut call = Call::with_context(ctx);
    call.start();
    assert_eq!(call.param("CallStatus").as_deref(), Some("in-progress"));
    assert_eq!(call.param("Direction").as_deref(), Some("outbound-api"));
    assert_eq!(call.param("ParentCallSid").as_deref(), Some(CALL));
    assert_eq!(call.param("ForwardedFrom").as_deref(), Some("+15550009999"));
    assert_eq!(call.param("CallerName").as_deref(), Some("ALICE"));
    assert_eq!(call.param("SipCallId").as_deref(), Some("abc@host"));
    assert_eq!(
        call.twiml("<Response><Pause/><Play digits=\"12#\"/></Response>"),
        s(&["pause 1000ms"])
    );
    assert_eq!(call.done(), s(&["play 12# x1"]));
}

#[test]
fn stale_fetch_results_are_ignored() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    call.start();
    let a = call
        .interpreter
        .on_fetched(99, http(200, "text/xml", "<Response/>"), call.now);
    assert!(a.is_empty());
    assert!(!call.interpreter.is_completed());
}

#[test]
fn full_event_trace_of_a_gather_call() {
    let mut call = Call::new(app(Some(VOICE_URL), None));
    let mut trace = Vec::new();
    let a = call.interpreter.start(call.now);
    trace.extend(call.take_all(a));
    let id = call.last_request_id();
    let a = call.interpreter.on_fetched(
        id,
        xml_at(
            VOICE_URL,
            r#"<Response><Gather numDigits="2"><Say>Code?</Say></Gather></Response>"#,
        ),
        call.now,
    );
    trace.extend(call.take_all(a));
    for d in ['4', '2'] {
        let a = call.interpreter.on_dtmf(d, call.now);
        trace.extend(call.take_all(a));
    }
    let id = call.last_request_id();
    let a = call.interpreter.on_fetched(
        id,
        xml_at(VOICE_URL, "<Response><Hangup/></Response>"),
        call.now,
    );
    trace.extend(call.take_all(a));
    assert_eq!(
        trace,
        s(&[
            "fetch voice POST https://app.example/ivr/start",
            "verb.started 0 Gather",
            "answer",
            "media.gather",
            "media.say",
            "say \"Code?\" man en x1",
            "media.stop",
            "stop",
            "gather.completed \"42\" \"\" num-digits",
            "verb.finished 0 Gather input",
            "fetch action POST https://app.example/ivr/start",
            "verb.started 0 Hangup",
            "verb.finished 0 Hangup done",
            "media.hangup",
            "hangup hangup-verb",
            "completed",
        ])
    );
}

#[test]
fn the_interpreter_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Interpreter>();
    assert_send::<Action>();
}

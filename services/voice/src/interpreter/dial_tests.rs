//! `<Dial>`: scripted shell reports and simulated time.

use dialtone_events::payload::{CallStatus, Direction, HttpMethod};
use dialtone_events::sid::CallSid;

use super::tests::{app, context, s, Call, ACCOUNT, CALL, RECORDING, SECOND, VOICE_URL};
use super::*;

/// Child SIDs handed out in order: `CA…01`, `CA…02`, …
fn child(n: u32) -> CallSid {
    CallSid::parse(&format!("CA{n:032x}")).unwrap()
}

fn dialing_call() -> Call {
    dialing_call_with(context(app(Some(VOICE_URL), None)))
}

fn dialing_call_with(ctx: CallContext) -> Call {
    let mut call = Call::with_context(ctx);
    let mut next = 0;
    call.interpreter.set_call_sid_source(move || {
        next += 1;
        child(next)
    });
    call
}

impl Call {
    fn dial(&self) -> (DialId, DialPlan) {
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Dial { dial_id, plan } => Some((*dial_id, plan.clone())),
                _ => None,
            })
            .expect("a dial")
    }

    fn dial_event(&mut self, event: DialEvent) -> Vec<String> {
        let (dial_id, _) = self.dial();
        let a = self.interpreter.on_dial_event(dial_id, event, self.now);
        self.take(a)
    }

    fn answered(&mut self, n: u32) -> Vec<String> {
        self.dial_event(DialEvent::Answered { child: child(n) })
    }

    fn dial_completed(
        &mut self,
        n: Option<u32>,
        status: DialCallStatus,
        duration_s: u64,
    ) -> Vec<String> {
        self.dial_event(DialEvent::Completed {
            child: n.map(child),
            status,
            duration_s,
            recording_duration_ms: None,
        })
    }

    /// Moves the clock without firing timers.
    fn wait(&mut self, by: Duration) {
        self.now += by;
    }

    fn dial_params(&self) -> Vec<(String, String)> {
        self.last_request()
            .params
            .into_iter()
            .filter(|(name, _)| name.starts_with("Dial") || name.starts_with("Recording"))
            .collect()
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const CHILD1: &str = "CA00000000000000000000000000000001";
const CHILD2: &str = "CA00000000000000000000000000000002";

// ---------------------------------------------------------------------------------------

#[test]
fn a_dialed_number_that_answers_is_bridged_then_action_gets_the_outcome() {
    let mut call = dialing_call();
    call.start();
    assert_eq!(
        call.twiml(
            r#"<Response><Dial action="/after" timeout="20">+15550001111</Dial><Say>never</Say></Response>"#
        ),
        s(&["answer", &format!("dial#1 +15550001111={CHILD1}")])
    );
    let (_, plan) = call.dial();
    assert_eq!(plan.timeout_s, 20);
    assert_eq!(plan.caller_id, "+15551230000", "the caller's own number");
    assert_eq!(plan.time_limit_s, 14400);
    assert!(!plan.hangup_on_star && !plan.answer_on_bridge && !plan.sequential);
    assert_eq!(plan.recording, None);
    assert_eq!(
        plan.parties()[0].address,
        PartyAddress::Number {
            number: "+15550001111".into(),
            send_digits: None,
            byoc: None
        }
    );
    assert_eq!(
        call.interpreter.poll_timeout(),
        None,
        "the shell times ringing"
    );
    assert!(call
        .dial_event(DialEvent::Ringing { child: child(1) })
        .is_empty());
    call.wait(4 * SECOND);
    assert_eq!(call.answered(1), s(&[&format!("bridge#1 {CHILD1}")]));
    call.wait(42 * SECOND);
    assert_eq!(
        call.dial_completed(Some(1), DialCallStatus::Completed, 42),
        s(&["fetch action POST https://app.example/after"])
    );
    assert_eq!(
        call.dial_params(),
        pairs(&[
            ("DialCallStatus", "completed"),
            ("DialCallSid", CHILD1),
            ("DialCallDuration", "42"),
            ("DialBridged", "true"),
        ])
    );
    assert_eq!(call.param("CallStatus").as_deref(), Some("in-progress"));
    assert_eq!(
        call.twiml("<Response><Say>after</Say></Response>"),
        s(&["say \"after\" man en x1"])
    );
    assert_eq!(
        call.events()[..8],
        s(&[
            "verb.started 0 Dial",
            "call.dial.started",
            "call.dial.answered",
            "media.bridge",
            &format!("call.dial.completed completed {CHILD1} 42s bridged=true"),
            "verb.finished 0 Dial completed",
            "verb.started 0 Say",
            "media.say",
        ])
    );
}

#[test]
fn busy_no_answer_and_failed_go_to_action_unbridged() {
    for status in [
        DialCallStatus::Busy,
        DialCallStatus::NoAnswer,
        DialCallStatus::Failed,
    ] {
        let mut call = dialing_call();
        call.start();
        call.twiml(
            r#"<Response><Dial action="next">+15550001111</Dial><Say>never</Say></Response>"#,
        );
        call.wait(30 * SECOND);
        // The shell may leave the child out: a single party is the one reported.
        assert_eq!(
            call.dial_completed(None, status, 0),
            s(&["fetch action POST https://app.example/ivr/next"])
        );
        assert_eq!(
            call.dial_params(),
            pairs(&[
                ("DialCallStatus", status.as_str()),
                ("DialCallSid", CHILD1),
                ("DialCallDuration", "0"),
                ("DialBridged", "false"),
            ])
        );
        assert_eq!(
            call.twiml("<Response><Say>Try later</Say></Response>"),
            s(&["say \"Try later\" man en x1"])
        );
        assert!(call
            .events()
            .contains(&format!("verb.finished 0 Dial {}", status.as_str())));
    }
}

#[test]
fn without_action_the_next_verb_runs_and_the_end_of_document_hangs_up() {
    let mut call = dialing_call();
    call.start();
    call.twiml("<Response><Dial>+15550001111</Dial><Say>after</Say></Response>");
    assert_eq!(
        call.dial_completed(Some(1), DialCallStatus::Busy, 0),
        s(&["say \"after\" man en x1"])
    );
    let mut call = dialing_call();
    call.start();
    call.twiml("<Response><Dial>+15550001111</Dial></Response>");
    call.answered(1);
    assert_eq!(
        call.dial_completed(Some(1), DialCallStatus::Completed, 5),
        s(&["hangup end-of-document", "completed"])
    );
}

#[test]
fn parallel_parties_ring_together_and_the_winner_is_dial_call_sid() {
    let mut call = dialing_call();
    call.start();
    assert_eq!(
        call.twiml(
            r#"<Response><Dial action="/done" callerId="+15550009999">
                 <Number sendDigits="ww12">+15550001111</Number>
                 <Sip username="u" password="p">sip:bob@pbx.example</Sip>
               </Dial></Response>"#
        ),
        s(&[
            "answer",
            &format!("dial#1 +15550001111={CHILD1},sip:bob@pbx.example={CHILD2}")
        ])
    );
    let (_, plan) = call.dial();
    assert_eq!(plan.caller_id, "+15550009999");
    assert_eq!(
        plan.parties()[0].address,
        PartyAddress::Number {
            number: "+15550001111".into(),
            send_digits: Some("ww12".into()),
            byoc: None
        }
    );
    assert!(matches!(
        &plan.parties()[1].address,
        PartyAddress::Sip { uri, username, password, .. }
            if uri == "sip:bob@pbx.example" && username.as_deref() == Some("u") && password.as_deref() == Some("p")
    ));
    // The second answers first; a late answer of the first is ignored.
    assert_eq!(call.answered(2), s(&[&format!("bridge#1 {CHILD2}")]));
    assert!(call.answered(1).is_empty());
    call.wait(7 * SECOND);
    call.dial_completed(Some(2), DialCallStatus::Completed, 7);
    assert_eq!(call.param("DialCallSid").as_deref(), Some(CHILD2));
    assert_eq!(call.param("DialBridged").as_deref(), Some("true"));
}

#[test]
fn hangup_on_star_drops_the_callee_and_the_caller_goes_on() {
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial hangupOnStar="true" action="/a">+15550001111</Dial></Response>"#);
    assert!(call.dtmf("*").is_empty(), "not while ringing");
    call.answered(1);
    assert!(call.dtmf("12#").is_empty());
    assert_eq!(call.dtmf("*"), s(&["end-dial#1 hangup-on-star"]));
    assert!(call.dtmf("*").is_empty(), "once");
    call.wait(SECOND);
    assert_eq!(
        call.dial_completed(Some(1), DialCallStatus::Completed, 12),
        s(&["fetch action POST https://app.example/a"])
    );
    assert_eq!(call.param("DialCallStatus").as_deref(), Some("completed"));
    assert_eq!(
        call.twiml("<Response><Say>Back with you</Say></Response>"),
        s(&["say \"Back with you\" man en x1"])
    );

    // Without hangupOnStar, * is just a digit for the callee.
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial action="/a">+15550001111</Dial></Response>"#);
    call.answered(1);
    assert!(call.dtmf("*").is_empty());
}

#[test]
fn time_limit_ends_the_bridge_and_a_silent_shell_is_assumed_done() {
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial timeLimit="60" action="/a">+15550001111</Dial></Response>"#);
    call.wait(5 * SECOND);
    call.answered(1);
    assert_eq!(
        call.interpreter.poll_timeout(),
        Some(call.now + 60 * SECOND)
    );
    assert!(call.advance(59 * SECOND).is_empty());
    assert_eq!(call.advance(SECOND), s(&["end-dial#1 time-limit"]));
    // The shell never reports: after the grace the dial is assumed completed.
    assert!(call.advance(9 * SECOND).is_empty());
    assert_eq!(
        call.advance(SECOND),
        s(&["fetch action POST https://app.example/a"])
    );
    assert_eq!(
        call.dial_params(),
        pairs(&[
            ("DialCallStatus", "completed"),
            ("DialCallSid", CHILD1),
            ("DialCallDuration", "70"),
            ("DialBridged", "true"),
        ])
    );
    // A late report is ignored.
    assert!(call
        .dial_completed(Some(1), DialCallStatus::Completed, 60)
        .is_empty());
}

#[test]
fn answer_on_bridge_defers_answering_until_the_bridge() {
    let mut call = dialing_call();
    call.start();
    assert_eq!(
        call.twiml(
            r#"<Response><Dial answerOnBridge="true" action="/a">+15550001111</Dial></Response>"#
        ),
        s(&[&format!("dial#1 +15550001111={CHILD1}")])
    );
    assert_eq!(call.interpreter.call_status(), CallStatus::Ringing);
    assert_eq!(
        call.answered(1),
        s(&["answer", &format!("bridge#1 {CHILD1}")])
    );
    assert_eq!(call.interpreter.call_status(), CallStatus::InProgress);

    // Nobody answers: the caller was never answered, and the action says so.
    let mut call = dialing_call();
    call.start();
    call.twiml(
        r#"<Response><Dial answerOnBridge="true" action="/a">+15550001111</Dial></Response>"#,
    );
    call.dial_completed(Some(1), DialCallStatus::NoAnswer, 0);
    assert_eq!(call.param("CallStatus").as_deref(), Some("ringing"));
    assert_eq!(
        call.twiml("<Response><Reject reason=\"busy\"/></Response>"),
        s(&["reject busy 486", "completed"])
    );
    assert!(!call.log.contains(&Action::Answer));

    // An outbound call is already answered either way.
    let mut ctx = context(app(Some(VOICE_URL), None));
    ctx.direction = Direction::OutboundApi;
    ctx.call_status = CallStatus::InProgress;
    let mut call = dialing_call_with(ctx);
    call.start();
    assert_eq!(
        call.twiml("<Response><Dial>+15550001111</Dial></Response>"),
        s(&[&format!("dial#1 +15550001111={CHILD1}")])
    );
}

#[test]
fn caller_hangup_ends_the_dial_and_the_action_is_requested_but_ignored() {
    // While ringing: canceled.
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial action="/a">+15550001111</Dial></Response>"#);
    assert_eq!(call.hangup(), s(&["end-dial#1 caller-hung-up"]));
    assert!(!call.interpreter.is_completed());
    assert!(
        call.answered(1).is_empty(),
        "no bridge after the caller left"
    );
    assert_eq!(
        call.dial_completed(Some(1), DialCallStatus::Canceled, 0),
        s(&["fetch action POST https://app.example/a"])
    );
    assert_eq!(call.param("DialCallStatus").as_deref(), Some("canceled"));
    assert_eq!(call.param("DialBridged").as_deref(), Some("false"));
    assert_eq!(call.param("CallStatus").as_deref(), Some("completed"));
    assert_eq!(
        call.twiml("<Response><Say>ignored</Say></Response>"),
        s(&["completed"])
    );

    // While bridged, without action: the program just ends.
    let mut call = dialing_call();
    call.start();
    call.twiml("<Response><Dial>+15550001111</Dial><Say>never</Say></Response>");
    call.answered(1);
    assert_eq!(call.hangup(), s(&["end-dial#1 caller-hung-up"]));
    assert_eq!(
        call.dial_completed(Some(1), DialCallStatus::Completed, 30),
        s(&["completed"])
    );
    assert!(call.events().contains(&format!(
        "call.dial.completed completed {CHILD1} 30s bridged=true"
    )));

    // The shell never reports: canceled is assumed.
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial action="/a">+15550001111</Dial></Response>"#);
    call.hangup();
    assert_eq!(
        call.advance(10 * SECOND),
        s(&["fetch action POST https://app.example/a"])
    );
    assert_eq!(call.param("DialCallStatus").as_deref(), Some("canceled"));
}

#[test]
fn a_recorded_dial_reports_the_recording_to_action() {
    let mut call = dialing_call();
    call.start();
    call.twiml(
        r#"<Response><Dial record="record-from-ringing-dual" recordingStatusCallback="/rec" action="/a">+15550001111</Dial></Response>"#,
    );
    let (_, plan) = call.dial();
    let recording = plan.recording.clone().expect("a recording");
    assert_eq!(recording.recording_sid.as_str(), RECORDING);
    assert!(recording.from_ringing && recording.dual_channel);
    assert_eq!(recording.trim, Trim::DoNotTrim, "the platform default");
    assert_eq!(
        recording.status_callback.as_deref(),
        Some("https://app.example/rec")
    );
    call.answered(1);
    call.dial_event(DialEvent::Completed {
        child: Some(child(1)),
        status: DialCallStatus::Completed,
        duration_s: 30,
        recording_duration_ms: Some(30_500),
    });
    assert_eq!(
        call.dial_params(),
        pairs(&[
            ("DialCallStatus", "completed"),
            ("DialCallSid", CHILD1),
            ("DialCallDuration", "30"),
            ("DialBridged", "true"),
            (
                "RecordingUrl",
                &format!(
                    "http://localhost:8080/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}"
                )
            ),
            ("RecordingSid", RECORDING),
            ("RecordingDuration", "31"),
        ])
    );

    // record="true" is record-from-answer; no audio means no recording parameters.
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial record="true" trim="trim-silence" action="/a">+15550001111</Dial></Response>"#);
    let recording = call.dial().1.recording.expect("a recording");
    assert!(!recording.from_ringing && !recording.dual_channel);
    assert_eq!(recording.trim, Trim::TrimSilence);
    call.dial_completed(Some(1), DialCallStatus::NoAnswer, 0);
    assert_eq!(call.param("RecordingUrl"), None);
}

#[test]
fn a_conference_joins_the_room_and_reports_answered() {
    let mut call = dialing_call();
    call.start();
    assert_eq!(
        call.twiml(
            r#"<Response><Dial action="/a" hangupOnStar="true" answerOnBridge="true">
                 <Conference startConferenceOnEnter="false" beep="onEnter" waitUrl="/hold" statusCallback="/conf">Room 1</Conference>
               </Dial></Response>"#
        ),
        s(&["answer", "dial#1 conference:Room 1"]),
        "joining a room answers the caller"
    );
    let (_, plan) = call.dial();
    let DialDestination::Conference(room) = &plan.destination else {
        panic!("a conference");
    };
    assert_eq!(room.name, "Room 1");
    assert!(!room.start_conference_on_enter);
    assert_eq!(room.beep, "onEnter");
    assert_eq!(room.wait_url.as_deref(), Some("https://app.example/hold"));
    assert_eq!(
        room.status_callback.as_deref(),
        Some("https://app.example/conf")
    );
    assert!(plan.parties().is_empty());
    // The caller is in the room: * leaves it.
    assert_eq!(call.dtmf("*"), s(&["end-dial#1 hangup-on-star"]));
    call.dial_completed(None, DialCallStatus::Completed, 100);
    assert_eq!(
        call.dial_params(),
        pairs(&[
            ("DialCallStatus", "answered"),
            ("DialCallDuration", "100"),
            ("DialBridged", "true"),
        ])
    );

    // An empty waitUrl means silence.
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial><Conference waitUrl="">r</Conference></Dial></Response>"#);
    let DialDestination::Conference(room) = call.dial().1.destination else {
        panic!("a conference");
    };
    assert_eq!(room.wait_url.as_deref(), Some(""));
}

/// Runs a whisper program for the dial's party `n` against scripted TwiML.
fn whisper_call(parent: &Call, n: usize) -> Call {
    let (_, plan) = parent.dial();
    let party = &plan.parties()[n];
    let ctx = party.child_context(parent.interpreter.context(), &plan.caller_id);
    let mut interpreter = Interpreter::whisper(ctx, InterpreterConfig::default());
    interpreter.set_recording_sid_source(|| RecordingSid::parse(RECORDING).unwrap());
    Call {
        interpreter,
        now: parent.now,
        log: Vec::new(),
    }
}

#[test]
fn a_whisper_that_hangs_up_refuses_the_bridge() {
    let mut call = dialing_call();
    call.start();
    call.twiml(
        r#"<Response><Dial action="/a" callerId="+15550009999">
             <Number url="/whisper" method="GET" statusCallback="/status" statusCallbackEvent="ringing answered">+15550001111</Number>
           </Dial></Response>"#,
    );
    assert!(call.answered(1).is_empty(), "no bridge before the whisper");

    let (_, plan) = call.dial();
    let ctx = plan.parties()[0].child_context(call.interpreter.context(), &plan.caller_id);
    assert_eq!(ctx.call_sid, child(1));
    assert_eq!(ctx.direction, Direction::OutboundDial);
    assert_eq!(ctx.parent_call_sid.as_ref().map(|p| p.as_str()), Some(CALL));
    assert_eq!(
        (ctx.from.as_str(), ctx.to.as_str()),
        ("+15550009999", "+15550001111")
    );
    assert_eq!(ctx.call_status, CallStatus::InProgress);
    assert_eq!(
        ctx.application.url.as_deref(),
        Some("https://app.example/whisper")
    );
    assert_eq!(ctx.application.method, HttpMethod::Get);
    assert_eq!(
        ctx.application.status_callback.as_deref(),
        Some("https://app.example/status")
    );
    assert_eq!(
        ctx.application.status_callback_events,
        s(&["ringing", "answered"])
    );

    let mut whisper = whisper_call(&call, 0);
    assert_eq!(
        whisper.start(),
        s(&["fetch voice GET https://app.example/whisper"])
    );
    assert_eq!(whisper.param("Direction").as_deref(), Some("outbound-dial"));
    assert_eq!(whisper.param("ParentCallSid").as_deref(), Some(CALL));
    assert_eq!(whisper.param("CallStatus").as_deref(), Some("in-progress"));
    assert_eq!(
        whisper.twiml(
            r#"<Response><Gather numDigits="1" action="/accept"><Say>Press 1 to accept</Say></Gather><Hangup/></Response>"#
        ),
        s(&["say \"Press 1 to accept\" man en x1"]),
        "already answered"
    );
    whisper.done();
    assert_eq!(
        whisper.advance(5 * SECOND),
        s(&["hangup hangup-verb", "completed"])
    );
    assert_eq!(
        whisper.interpreter.whisper_result(),
        Some(WhisperResult::Refused)
    );

    // The shell hangs the child up and reports it.
    call.wait(8 * SECOND);
    call.dial_completed(Some(1), DialCallStatus::Completed, 8);
    assert_eq!(
        call.dial_params(),
        pairs(&[
            ("DialCallStatus", "completed"),
            ("DialCallSid", CHILD1),
            ("DialCallDuration", "8"),
            ("DialBridged", "false"),
        ])
    );
}

#[test]
fn a_whisper_that_ends_connects_the_callee() {
    let mut call = dialing_call();
    call.start();
    assert_eq!(
        call.twiml(
            r#"<Response><Dial answerOnBridge="true" action="/a"><Number url="https://screen.example/w">+15550001111</Number></Dial></Response>"#,
        ),
        s(&[&format!("dial#1 +15550001111={CHILD1}")])
    );
    assert!(call.answered(1).is_empty(), "the caller keeps ringing");

    let mut whisper = whisper_call(&call, 0);
    whisper.start();
    assert_eq!(
        whisper.twiml("<Response><Say>Call for you</Say><Dial>+15550002222</Dial></Response>"),
        s(&["say \"Call for you\" man en x1"])
    );
    assert_eq!(whisper.interpreter.whisper_result(), None, "still running");
    // The end of the whisper does not hang up; <Dial> is not allowed there.
    assert_eq!(whisper.done(), s(&["completed"]));
    assert!(whisper
        .events()
        .contains(&"twiml.warning 12200 Dial".to_owned()));
    assert_eq!(
        whisper.interpreter.whisper_result(),
        Some(WhisperResult::Connect)
    );

    assert_eq!(
        call.dial_event(DialEvent::WhisperFinished { child: child(1) }),
        s(&["answer", &format!("bridge#1 {CHILD1}")])
    );

    // A callee hanging up during the whisper refuses it too.
    let mut whisper = whisper_call(&call, 0);
    whisper.start();
    whisper.twiml("<Response><Say>Call for you</Say></Response>");
    whisper.hangup();
    assert_eq!(
        whisper.interpreter.whisper_result(),
        Some(WhisperResult::Refused)
    );
    // An ordinary interpreter has no whisper result.
    assert_eq!(call.interpreter.whisper_result(), None);
}

#[test]
fn a_rest_update_during_a_dial_ends_it_first() {
    // During the bridge: the dial is recorded as completed, its action is not requested.
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial action="/a">+15550001111</Dial></Response>"#);
    call.answered(1);
    call.wait(15 * SECOND);
    let a = call
        .interpreter
        .redirect("https://app.example/new", HttpMethod::Post, call.now)
        .unwrap();
    assert_eq!(
        call.take(a),
        s(&[
            "end-dial#1 redirected",
            "fetch redirect POST https://app.example/new"
        ])
    );
    let events = call.events();
    let tail = &events[events.len() - 3..];
    assert_eq!(
        tail,
        s(&[
            &format!("call.dial.completed completed {CHILD1} 15s bridged=true"),
            "verb.finished 0 Dial redirected",
            "redirected api POST https://app.example/new",
        ])
    );
    assert!(
        call.dial_completed(Some(1), DialCallStatus::Completed, 15)
            .is_empty(),
        "the shell's late report is ignored"
    );
    assert_eq!(
        call.twiml("<Response><Say>New</Say></Response>"),
        s(&["say \"New\" man en x1"])
    );

    // While ringing, with inline TwiML: canceled.
    let mut call = dialing_call();
    call.start();
    call.twiml(r#"<Response><Dial action="/a">+15550001111</Dial></Response>"#);
    let a = call
        .interpreter
        .replace_twiml("<Response><Say>Replaced</Say></Response>", call.now)
        .unwrap();
    assert_eq!(
        call.take(a),
        s(&["end-dial#1 redirected", "say \"Replaced\" man en x1"])
    );
    assert!(call.events().contains(&format!(
        "call.dial.completed canceled {CHILD1} 0s bridged=false"
    )));
}

#[test]
fn nothing_dialable_fails_the_dial_at_once() {
    let mut call = dialing_call();
    call.start();
    assert_eq!(
        call.twiml(r#"<Response><Dial action="/a"><Client>alice</Client><Queue>support</Queue></Dial></Response>"#),
        s(&["answer", "fetch action POST https://app.example/a"])
    );
    assert_eq!(
        call.dial_params(),
        pairs(&[
            ("DialCallStatus", "failed"),
            ("DialCallDuration", "0"),
            ("DialBridged", "false"),
        ])
    );
    let warnings = call
        .events()
        .into_iter()
        .filter(|e| e == "twiml.warning 12200 Dial")
        .count();
    assert_eq!(warnings, 3, "Client, Queue, and nothing left");
}

#[test]
fn reports_about_other_dials_are_ignored() {
    let mut call = dialing_call();
    call.start();
    call.twiml("<Response><Dial>+15550001111</Dial></Response>");
    let a = call
        .interpreter
        .on_dial_event(7, DialEvent::Answered { child: child(1) }, call.now);
    assert!(a.is_empty());
    // An unknown child is no answer either.
    assert!(call.answered(9).is_empty());
    assert!(call
        .dial_event(DialEvent::WhisperFinished { child: child(1) })
        .is_empty());
    // Dial ids grow per call.
    call.dial_completed(Some(1), DialCallStatus::Busy, 0);
    let mut call = dialing_call();
    call.start();
    call.twiml("<Response><Dial>+15550001111</Dial><Dial>+15550002222</Dial></Response>");
    call.dial_completed(Some(1), DialCallStatus::Busy, 0);
    assert_eq!(call.dial().0, 2);
    assert_eq!(call.dial().1.parties()[0].child_call_sid, child(2));
}

#[test]
fn plan_attributes_pass_through_and_parties_are_capped() {
    let mut call = dialing_call();
    call.start();
    let numbers: String = (0..11)
        .map(|i| format!("<Number>+1555000{i:04}</Number>"))
        .collect();
    call.twiml(&format!(
        r#"<Response><Dial sequential="true" ringTone="uk" callReason="Delivery" timeout="3" timeLimit="600">{numbers}</Dial></Response>"#
    ));
    let (_, plan) = call.dial();
    assert!(plan.sequential);
    assert_eq!(plan.ring_tone.as_deref(), Some("uk"));
    assert_eq!(plan.call_reason.as_deref(), Some("Delivery"));
    assert_eq!(
        plan.timeout_s, 30,
        "out of range: the default, with a warning"
    );
    assert_eq!(plan.time_limit_s, 600);
    assert_eq!(plan.parties().len(), MAX_PARTIES);
    assert_eq!(plan.parties()[9].address.to(), "+15550000009");
    // No whisper, no callbacks: the child's application is empty.
    let application = plan.parties()[0].child_application();
    assert_eq!(application.url, None);
    assert_eq!(application.fallback_url, None);
    assert_eq!(application.status_callback_events, s(&["completed"]));
}

//! A whole call: the interpreter driven by a small shell that sends its webhooks with the
//! real client to a real application (axum) that checks every signature, the way the
//! `dialtone` binary wires them. Media is simulated: every command finishes at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use dialtone_events::payload::{CallApplication, CallStatus, Direction, Payload};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_voice::interpreter::{
    Action, CallContext, DialCallStatus, DialEvent, Interpreter, InterpreterConfig, MediaCommand,
    MediaDone, WhisperResult,
};
use dialtone_voice::signature;
use dialtone_voice::webhook::{
    requested_payload, responded_payload, CallSession, WebhookClient, WebhookConfig,
};

const TOKEN: &str = "secret-token";

type Request = (String, Vec<(String, String)>);

struct App {
    base: Mutex<String>,
    /// Path and form parameters of every request with a valid signature.
    requests: Mutex<Vec<Request>>,
}

async fn app(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let url = format!("{}{}", app.base.lock().unwrap(), uri);
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !signature::validate(TOKEN, &url, &params, signature) {
        return (StatusCode::FORBIDDEN, "bad signature").into_response();
    }
    app.requests
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), params.clone()));
    let twiml = match uri.path() {
        "/voice" => {
            r#"<Response><Gather numDigits="1" action="/menu"><Say>Press 1</Say></Gather><Say>Bye</Say></Response>"#
        }
        "/menu" => {
            let digits = params
                .iter()
                .find(|(k, _)| k == "Digits")
                .map(|(_, v)| v.as_str());
            if digits == Some("1") {
                "<Response><Say>Sales</Say><Redirect>/goodbye</Redirect></Response>"
            } else {
                "<Response><Redirect>/voice</Redirect></Response>"
            }
        }
        "/goodbye" => "<Response><Say>Goodbye</Say><Hangup/></Response>",
        "/dial" => {
            r#"<Response><Dial action="/dial-done" answerOnBridge="true"><Number url="/whisper">+15550001111</Number></Dial><Say>never</Say></Response>"#
        }
        "/whisper" => "<Response><Say>Call for you</Say></Response>",
        "/dial-done" => "<Response><Say>Goodbye</Say></Response>",
        _ => return (StatusCode::NOT_FOUND, "").into_response(),
    };
    ([("content-type", "text/xml")], twiml.to_owned()).into_response()
}

async fn serve() -> (SocketAddr, Arc<App>) {
    let state = Arc::new(App {
        base: Mutex::new(String::new()),
        requests: Mutex::new(Vec::new()),
    });
    let router = Router::new().fallback(app).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *state.base.lock().unwrap() = format!("http://{addr}");
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, state)
}

#[tokio::test]
async fn an_ivr_call_end_to_end() {
    let (addr, state) = serve().await;
    let ctx = CallContext {
        call_sid: CallSid::generate(),
        account_sid: AccountSid::generate(),
        from: "+15551230000".into(),
        to: "+15559870000".into(),
        direction: Direction::Inbound,
        call_status: CallStatus::Ringing,
        parent_call_sid: None,
        forwarded_from: None,
        caller_name: None,
        application: CallApplication {
            url: Some(format!("http://{addr}/voice")),
            ..CallApplication::default()
        },
        extra_params: vec![],
    };
    let mut interpreter = Interpreter::new(ctx, InterpreterConfig::default());
    let session = WebhookClient::new(WebhookConfig::default())
        .unwrap()
        .session(TOKEN);

    // The shell: execute actions in order, feed outcomes back. Media finishes at once; the
    // caller presses 1 when the first Gather prompt plays.
    let mut queue: std::collections::VecDeque<Action> = interpreter.start(Instant::now()).into();
    let mut events: Vec<Payload> = Vec::new();
    let mut spoken: Vec<String> = Vec::new();
    let mut answered = false;
    let mut pressed = false;
    let mut completed = false;
    while let Some(action) = queue.pop_front() {
        let now = Instant::now();
        let more = match action {
            Action::Fetch {
                request_id,
                request,
            } => {
                events.push(requested_payload(&request, request_id, 1).into());
                let result = session.fetch(&request).await;
                events.push(responded_payload(request_id, &result).into());
                interpreter.on_fetched(request_id, result, now)
            }
            Action::Answer => {
                answered = true;
                interpreter.on_answered(now)
            }
            Action::Media {
                command_id,
                command,
            } => {
                if let MediaCommand::Say(say) = &command {
                    spoken.push(say.text.clone());
                    if say.text == "Press 1" && !pressed {
                        pressed = true;
                        let mut out = interpreter.on_dtmf('1', now);
                        out.extend(interpreter.on_media_done(
                            command_id,
                            MediaDone::Interrupted,
                            now,
                        ));
                        queue.extend(out);
                        continue;
                    }
                }
                interpreter.on_media_done(command_id, MediaDone::Finished, now)
            }
            Action::Emit(payload) => {
                events.push(payload);
                Vec::new()
            }
            Action::Completed => {
                completed = true;
                Vec::new()
            }
            Action::StopMedia { .. }
            | Action::Hangup { .. }
            | Action::Reject { .. }
            | Action::Dial { .. }
            | Action::Bridge { .. }
            | Action::EndDial { .. } => Vec::new(),
        };
        queue.extend(more);
    }
    assert!(answered && completed);
    assert_eq!(spoken, ["Press 1", "Sales", "Goodbye"]);
    let requests = state.requests.lock().unwrap().clone();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/voice", "/menu", "/goodbye"],
        "every signature validated"
    );
    let status = |i: usize| {
        requests[i]
            .1
            .iter()
            .find(|(k, _)| k == "CallStatus")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(status(0).as_deref(), Some("ringing"));
    assert_eq!(status(1).as_deref(), Some("in-progress"));
    let types: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "dialtone.call.webhook.responded")
            .count(),
        3
    );
    assert!(types.contains(&"dialtone.call.gather.completed"));
    assert!(types.contains(&"dialtone.call.redirected"));
    assert_eq!(types.last(), Some(&"dialtone.media.hangup"));
}

/// Executes one interpreter's actions until none are left (media finishes at once) and
/// returns the `<Dial>` actions met on the way, for the test to play the shell's part.
async fn run_actions(
    interpreter: &mut Interpreter,
    session: &CallSession,
    actions: Vec<Action>,
    trace: &mut Vec<String>,
) -> Vec<Action> {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    let mut dial_actions = Vec::new();
    while let Some(action) = queue.pop_front() {
        let now = Instant::now();
        let more = match action {
            Action::Fetch {
                request_id,
                request,
            } => {
                let result = session.fetch(&request).await;
                interpreter.on_fetched(request_id, result, now)
            }
            Action::Answer => {
                trace.push("answer".into());
                interpreter.on_answered(now)
            }
            Action::Media {
                command_id,
                command,
            } => {
                if let MediaCommand::Say(say) = &command {
                    trace.push(format!("say {}", say.text));
                }
                interpreter.on_media_done(command_id, MediaDone::Finished, now)
            }
            Action::Hangup { .. } => {
                trace.push("hangup".into());
                Vec::new()
            }
            Action::Completed => {
                trace.push("completed".into());
                Vec::new()
            }
            action @ (Action::Dial { .. } | Action::Bridge { .. } | Action::EndDial { .. }) => {
                dial_actions.push(action);
                Vec::new()
            }
            Action::Emit(_) | Action::StopMedia { .. } | Action::Reject { .. } => Vec::new(),
        };
        queue.extend(more);
    }
    dial_actions
}

#[tokio::test]
async fn a_dial_with_a_whisper_end_to_end() {
    let (addr, state) = serve().await;
    let parent_ctx = CallContext {
        call_sid: CallSid::generate(),
        account_sid: AccountSid::generate(),
        from: "+15551230000".into(),
        to: "+15559870000".into(),
        direction: Direction::Inbound,
        call_status: CallStatus::Ringing,
        parent_call_sid: None,
        forwarded_from: None,
        caller_name: None,
        application: CallApplication {
            url: Some(format!("http://{addr}/dial")),
            ..CallApplication::default()
        },
        extra_params: vec![],
    };
    let mut parent = Interpreter::new(parent_ctx.clone(), InterpreterConfig::default());
    let session = WebhookClient::new(WebhookConfig::default())
        .unwrap()
        .session(TOKEN);
    let mut trace = Vec::new();

    let start = parent.start(Instant::now());
    let actions = run_actions(&mut parent, &session, start, &mut trace).await;
    let [Action::Dial { dial_id, plan }] = actions.as_slice() else {
        panic!("one dial, got {actions:?}");
    };
    let dial_id = *dial_id;
    let party = plan.parties()[0].clone();
    assert_eq!(
        party.whisper.as_ref().map(|w| w.url.clone()),
        Some(format!("http://{addr}/whisper"))
    );

    // The shell: the party rings and answers, then its whisper runs on the child leg.
    let child = party.child_call_sid.clone();
    let now = Instant::now();
    assert!(parent
        .on_dial_event(
            dial_id,
            DialEvent::Ringing {
                child: child.clone()
            },
            now
        )
        .is_empty());
    let answered = parent.on_dial_event(
        dial_id,
        DialEvent::Answered {
            child: child.clone(),
        },
        now,
    );
    assert!(run_actions(&mut parent, &session, answered, &mut trace)
        .await
        .is_empty());
    trace.push("-- whisper".into());
    let mut whisper = Interpreter::whisper(
        party.child_context(parent.context(), &plan.caller_id),
        InterpreterConfig::default(),
    );
    let start = whisper.start(Instant::now());
    run_actions(&mut whisper, &session, start, &mut trace).await;
    assert_eq!(whisper.whisper_result(), Some(WhisperResult::Connect));
    trace.push("-- parent".into());
    let finished = parent.on_dial_event(
        dial_id,
        DialEvent::WhisperFinished {
            child: child.clone(),
        },
        Instant::now(),
    );
    let bridge = run_actions(&mut parent, &session, finished, &mut trace).await;
    assert!(
        matches!(bridge.as_slice(), [Action::Bridge { child_call_sid, .. }] if *child_call_sid == child)
    );
    // The callee hangs up after a while.
    let completed = parent.on_dial_event(
        dial_id,
        DialEvent::Completed {
            child: Some(child.clone()),
            status: DialCallStatus::Completed,
            duration_s: 3,
            recording_duration_ms: None,
        },
        Instant::now(),
    );
    run_actions(&mut parent, &session, completed, &mut trace).await;

    assert_eq!(
        trace,
        [
            "-- whisper",
            "say Call for you",
            "completed",
            "-- parent",
            "answer",
            "say Goodbye",
            "hangup",
            "completed"
        ]
    );
    let requests = state.requests.lock().unwrap().clone();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/dial", "/whisper", "/dial-done"],
        "every signature validated"
    );
    let param = |i: usize, name: &str| {
        requests[i]
            .1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(param(1, "CallSid"), Some(child.to_string()));
    assert_eq!(
        param(1, "ParentCallSid"),
        Some(parent_ctx.call_sid.to_string())
    );
    assert_eq!(param(1, "Direction").as_deref(), Some("outbound-dial"));
    assert_eq!(param(1, "From").as_deref(), Some("+15551230000"));
    assert_eq!(param(1, "To").as_deref(), Some("+15550001111"));
    assert_eq!(param(2, "DialCallStatus").as_deref(), Some("completed"));
    assert_eq!(param(2, "DialCallSid"), Some(child.to_string()));
    assert_eq!(param(2, "DialCallDuration").as_deref(), Some("3"));
    assert_eq!(param(2, "DialBridged").as_deref(), Some("true"));
    assert_eq!(param(2, "CallStatus").as_deref(), Some("in-progress"));
}

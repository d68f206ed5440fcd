//! `<Dial>`, conferences, REST-originated calls and live call control, end to end: sipp plays
//! both the callers and the callees, a real app serves TwiML and takes status callbacks.

use std::time::{Duration, SystemTime};

use dialtone_media::codec::Codec;
use dialtone_tests::rtp::{loudest_second, rms};
use dialtone_tests::{eventually, Backend, Dialtone, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

const NUMBER: &str = "+14155550100";

async fn setup(extra_toml: &str) -> (Dialtone, TwimlApp) {
    let app = TwimlApp::start().await;
    let extra = format!("[outbound]\ncalls_per_second = 50.0\n{extra_toml}");
    let dialtone = Dialtone::start_with(Backend::Sqlite, &extra).await;
    app.set_auth_token(&dialtone.auth_token);
    (dialtone, app)
}

fn callee_uri(sipp: &Sipp) -> String {
    format!("sip:callee@127.0.0.1:{}", sipp.port())
}

/// The time of the first event of `event_type`.
fn event_time(events: &[Value], event_type: &str) -> SystemTime {
    let event = events
        .iter()
        .find(|e| e["type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type}"));
    let time = dialtone_events::envelope::parse_time(event["time"].as_str().unwrap()).unwrap();
    SystemTime::from(time)
}

async fn parent_call(dialtone: &Dialtone) -> Value {
    eventually(30, "the inbound call to finish", || async {
        dialtone
            .calls()
            .await
            .into_iter()
            .find(|c| c["direction"] == "inbound" && c["status"] == "completed")
    })
    .await
}

async fn children(dialtone: &Dialtone, parent: &str) -> Vec<Value> {
    let (_, body) = dialtone
        .get(&format!("Calls.json?ParentCallSid={parent}"))
        .await;
    body["calls"].as_array().cloned().unwrap_or_default()
}

/// Calls `NUMBER` (the caller's RTP to `caller_rtp`, hanging up after `pause_ms`) while
/// `callee` waits as the UAS the TwiML dials; both sipp runs must succeed.
async fn call_a_callee(dialtone: &Dialtone, callee: Sipp, caller_rtp: &RtpSink, pause_ms: u64) {
    let callee = callee.spawn_uas();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let caller = Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", caller_rtp.port)
        .pause_ms(pause_ms)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("caller", dialtone);
    callee.await.unwrap().assert_success("callee", dialtone);
}

/// Calls `NUMBER` with a caller who stays until Dialtone hangs up (its RTP to `rtp`); returns
/// the running caller and the call once it is in progress.
async fn answered_caller(
    dialtone: &Dialtone,
    rtp: &RtpSink,
) -> (tokio::task::JoinHandle<dialtone_tests::SippRun>, Value) {
    let caller = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr());
    let caller = tokio::spawn(caller);
    let call = eventually(30, "the call to be answered", || async {
        dialtone
            .calls()
            .await
            .into_iter()
            .find(|c| c["status"] == "in-progress")
    })
    .await;
    (caller, call)
}

/// The caller dials a sipp callee: both hear each other through the bridge; the action gets
/// Twilio's Dial parameters; the parent and the child are billed as separate legs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_bridges_audio_both_ways_and_bills_each_leg() {
    let (dialtone, app) = setup("").await;
    let callee_rtp = RtpSink::start();
    let callee = Sipp::scenario("callee_answer.xml").key("rtp_port", callee_rtp.port);
    app.twiml(
        "/voice",
        &format!(
            r#"<Response><Dial action="/dialed" timeout="10" record="record-from-answer-dual"><Sip url="/whisper" statusCallback="/child-status" statusCallbackEvent="initiated ringing answered completed">{}</Sip></Dial></Response>"#,
            callee_uri(&callee)
        ),
    );
    app.twiml(
        "/whisper",
        "<Response><Say>Call from the support line.</Say></Response>",
    );
    app.twiml("/child-status", "");
    app.twiml("/dialed", "<Response><Hangup/></Response>");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let caller_rtp = RtpSink::start();
    call_a_callee(&dialtone, callee, &caller_rtp, 6_000).await;

    let parent = parent_call(&dialtone).await;
    let parent_sid = parent["sid"].as_str().unwrap().to_owned();
    let kids = eventually(20, "the child leg to finish", || async {
        let kids = children(&dialtone, &parent_sid).await;
        (kids.len() == 1 && kids[0]["status"] == "completed").then_some(kids)
    })
    .await;
    let child = &kids[0];
    assert_eq!(child["direction"], "outbound-dial");
    assert_eq!(child["parent_call_sid"], parent_sid.as_str());
    assert_eq!(child["to"], callee_uri_from(child));

    let dialed = eventually(10, "the Dial action", || async {
        app.requests_to("/dialed").into_iter().next()
    })
    .await;
    assert!(dialed.signature_valid);
    assert_eq!(dialed.param("DialCallStatus"), Some("completed"));
    assert_eq!(dialed.param("DialBridged"), Some("true"));
    assert_eq!(dialed.param("DialCallSid"), child["sid"].as_str());

    // The whisper ran on the callee's leg before the bridge.
    let whisper = app.requests_to("/whisper");
    assert_eq!(whisper.len(), 1, "{:?}", app.requests());
    assert_eq!(whisper[0].param("CallSid"), child["sid"].as_str());
    assert_eq!(whisper[0].param("ParentCallSid"), Some(parent_sid.as_str()));
    assert_eq!(whisper[0].param("Direction"), Some("outbound-dial"));

    // The child leg's own status callbacks, in order.
    let child_status = eventually(20, "the child leg's four callbacks", || async {
        let requests = app.requests_to("/child-status");
        (requests.len() >= 4).then_some(requests)
    })
    .await;
    let statuses: Vec<_> = child_status
        .iter()
        .map(|r| r.param("CallStatus").unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert!(child_status
        .iter()
        .all(|r| r.param("CallSid") == child["sid"].as_str() && r.signature_valid));

    // The dual-channel recording of the bridge belongs to the parent call.
    let recording_sid = dialed
        .param("RecordingSid")
        .expect("RecordingSid in the Dial action")
        .to_owned();
    assert!(dialed
        .param("RecordingUrl")
        .unwrap()
        .ends_with(&recording_sid));
    let (status, recording) = dialtone
        .get(&format!("Recordings/{recording_sid}.json"))
        .await;
    assert_eq!(status, 200, "{recording}");
    assert_eq!(recording["call_sid"], parent_sid.as_str());
    assert_eq!(recording["channels"], 2);
    assert_eq!(recording["source"], "DialVerb");

    // Audio both ways: the callee heard the caller's pcap, and the caller heard the callee's
    // pcap after the bridge (before it, only ringback).
    let events = dialtone.call_events(&parent_sid).await;
    let bridged_at = event_time(&events, "dialtone.media.bridge");
    let to_callee = loudest_second(&callee_rtp.audio(Codec::Pcma, 8));
    assert!(
        to_callee > 500.0,
        "the callee heard silence (RMS {to_callee:.0})"
    );
    let to_caller = loudest_second(&caller_rtp.audio_since(
        Codec::Pcma,
        8,
        bridged_at + Duration::from_millis(200),
    ));
    assert!(
        to_caller > 500.0,
        "the caller heard silence after the bridge (RMS {to_caller:.0})"
    );

    // Each leg billed for its own minutes, in its own category.
    assert_eq!(parent["price"], "-0.00850", "{parent}");
    let child = eventually(10, "the child's price", || async {
        children(&dialtone, &parent_sid)
            .await
            .into_iter()
            .find(|c| c["price"].is_string())
    })
    .await;
    assert_eq!(child["price"], "-0.01400", "{child}");
    for (category, price) in [("calls-inbound", "0.00850"), ("calls-outbound", "0.01400")] {
        let (_, usage) = dialtone
            .get(&format!("Usage/Records.json?Category={category}"))
            .await;
        let record = &usage["usage_records"][0];
        assert_eq!(
            (record["count"].as_str(), record["usage"].as_str()),
            (Some("1"), Some("1")),
            "{category}: {usage}"
        );
        assert_eq!(record["price"], price);
    }
}

fn callee_uri_from(child: &Value) -> String {
    child["to"].as_str().unwrap_or("").to_owned()
}

/// Busy and unanswered callees: the right DialCallStatus, and the TwiML goes on at the
/// action (a `<Number>` dial through the outbound trunk for the busy one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_unanswered_callees_continue_at_the_action() {
    for (scenario, expected) in [
        ("callee_busy.xml", "busy"),
        ("callee_no_answer.xml", "no-answer"),
    ] {
        let callee = Sipp::scenario(scenario);
        let trunk = format!(
            "[[trunks.outbound]]\nname = \"sipp\"\nhost = \"127.0.0.1\"\nport = {}\ndefault = true\n",
            callee.port()
        );
        let (dialtone, app) = setup(&trunk).await;
        app.twiml(
            "/voice",
            r#"<Response><Dial action="/dialed" timeout="5"><Number>+14155550111</Number></Dial><Say>Not reached.</Say></Response>"#,
        );
        app.twiml(
            "/dialed",
            "<Response><Say>Sorry, nobody is available.</Say><Hangup/></Response>",
        );
        dialtone.provision(NUMBER, &app.url("/voice"), None).await;
        let callee = callee.spawn_uas();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rtp = RtpSink::start();
        let caller = Sipp::scenario("inbound_dialtone_hangs_up.xml")
            .key("dialed", NUMBER)
            .key("rtp_port", rtp.port)
            .run(dialtone.sip_addr())
            .await;
        caller.assert_success(&format!("{scenario} caller"), &dialtone);
        let callee = callee.await.unwrap();
        callee.assert_success(scenario, &dialtone);
        let dialed = app.requests_to("/dialed");
        assert_eq!(dialed.len(), 1, "{scenario}: {:?}", app.requests());
        assert_eq!(
            dialed[0].param("DialCallStatus"),
            Some(expected),
            "{scenario}"
        );
        assert_eq!(dialed[0].param("DialBridged"), Some("false"));
        let parent = parent_call(&dialtone).await;
        let events = dialtone.call_events(parent["sid"].as_str().unwrap()).await;
        assert!(
            events.iter().any(|e| e["type"] == "dialtone.media.say"
                && e["data"]["text"] == "Sorry, nobody is available."),
            "{scenario}: the action's TwiML did not run"
        );
        assert!(!events.iter().any(|e| e["data"]["text"] == "Not reached."));
        let kids = children(&dialtone, parent["sid"].as_str().unwrap()).await;
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0]["status"], expected, "{scenario}: {}", kids[0]);
        assert_eq!(kids[0]["to"], "+14155550111");
        assert!(
            kids[0]["price"].is_null(),
            "an unanswered leg is not billed: {}",
            kids[0]
        );
    }
}

/// Two parties ring at once; the second answers first and wins; the first is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_dial_bridges_the_first_to_answer() {
    let (dialtone, app) = setup("").await;
    let slow = Sipp::scenario("callee_no_answer.xml");
    let fast_rtp = RtpSink::start();
    let fast = Sipp::scenario("callee_answer.xml").key("rtp_port", fast_rtp.port);
    app.twiml(
        "/voice",
        &format!(
            r#"<Response><Dial action="/dialed" timeout="20"><Sip>{}</Sip><Sip>{}</Sip></Dial></Response>"#,
            callee_uri(&slow),
            callee_uri(&fast)
        ),
    );
    app.twiml("/dialed", "<Response><Hangup/></Response>");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let fast_uri = callee_uri(&fast);
    let (slow, fast) = (slow.spawn_uas(), fast.spawn_uas());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rtp = RtpSink::start();
    let caller = Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .pause_ms(3_000)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("caller", &dialtone);
    for (name, run) in [("slow", slow.await.unwrap()), ("fast", fast.await.unwrap())] {
        run.assert_success(&format!("{name} callee"), &dialtone);
    }
    let parent = parent_call(&dialtone).await;
    let kids = eventually(20, "both children to finish", || async {
        let kids = children(&dialtone, parent["sid"].as_str().unwrap()).await;
        (kids.len() == 2
            && kids
                .iter()
                .all(|k| k["status"] != "ringing" && k["status"] != "queued"))
        .then_some(kids)
    })
    .await;
    let winner = kids
        .iter()
        .find(|k| k["to"] == fast_uri.as_str())
        .expect("the fast callee's leg");
    let loser = kids
        .iter()
        .find(|k| k["to"] != fast_uri.as_str())
        .expect("the slow callee's leg");
    assert_eq!(winner["status"], "completed");
    assert_eq!(loser["status"], "canceled", "{loser}");
    let dialed = eventually(10, "the Dial action", || async {
        app.requests_to("/dialed").into_iter().next()
    })
    .await;
    assert_eq!(dialed.param("DialCallSid"), winner["sid"].as_str());
    assert_eq!(dialed.param("DialCallStatus"), Some("completed"));
}

/// `hangupOnStar`: the caller's `*` drops the callee; the caller goes on at the action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_on_star_drops_the_callee_and_keeps_the_caller() {
    let (dialtone, app) = setup("").await;
    let callee_rtp = RtpSink::start();
    let callee = Sipp::scenario("callee_answer.xml").key("rtp_port", callee_rtp.port);
    app.twiml(
        "/voice",
        &format!(r#"<Response><Dial hangupOnStar="true" action="/dialed"><Sip>{}</Sip></Dial></Response>"#, callee_uri(&callee)),
    );
    app.twiml(
        "/dialed",
        "<Response><Say>You are back.</Say><Hangup/></Response>",
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let callee = callee.spawn_uas();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rtp = RtpSink::start();
    let caller = Sipp::scenario("inbound_star.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("caller", &dialtone);
    let callee = callee.await.unwrap();
    callee.assert_success("callee", &dialtone);
    let dialed = app.requests_to("/dialed");
    assert_eq!(dialed.len(), 1, "{:?}", app.requests());
    assert_eq!(dialed[0].param("DialCallStatus"), Some("completed"));
    assert_eq!(dialed[0].param("DialBridged"), Some("true"));
    let parent = parent_call(&dialtone).await;
    let events = dialtone.call_events(parent["sid"].as_str().unwrap()).await;
    assert!(events
        .iter()
        .any(|e| e["type"] == "dialtone.call.dtmf.received" && e["data"]["digit"] == "*"));
    assert!(events
        .iter()
        .any(|e| e["type"] == "dialtone.media.say" && e["data"]["text"] == "You are back."));
    assert_eq!(events.last().unwrap()["data"]["hangup_by"], "dialtone");
}

/// A REST call answered by a sipp callee runs its TwiML; its status callbacks arrive in
/// order even though the app fails the first two deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_call_runs_its_twiml_and_delivers_every_status_callback_in_order() {
    let (dialtone, app) = setup("").await;
    app.twiml(
        "/outbound",
        "<Response><Say>Hello from the API.</Say><Hangup/></Response>",
    );
    app.twiml("/status", "");
    app.fail_next("/status", 2);
    let callee_rtp = RtpSink::start();
    let callee = Sipp::scenario("callee_answer.xml").key("rtp_port", callee_rtp.port);
    let to = callee_uri(&callee);
    let callee = callee.spawn_uas();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (outbound, status) = (app.url("/outbound"), app.url("/status"));
    let form = [
        ("To", to.as_str()),
        ("From", NUMBER),
        ("Url", outbound.as_str()),
        ("StatusCallback", status.as_str()),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "ringing"),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "completed"),
    ];
    let (code, call) = dialtone.post("Calls.json", &form).await;
    assert_eq!(code, 201, "{call}");
    assert_eq!(call["status"], "queued");
    assert_eq!(call["direction"], "outbound-api");
    let sid = call["sid"].as_str().unwrap().to_owned();
    let callee = callee.await.unwrap();
    callee.assert_success("callee", &dialtone);

    let twiml = app.requests_to("/outbound");
    assert_eq!(twiml.len(), 1, "{:?}", app.requests());
    assert!(twiml[0].signature_valid);
    assert_eq!(twiml[0].param("CallSid"), Some(sid.as_str()));
    assert_eq!(twiml[0].param("Direction"), Some("outbound-api"));
    assert_eq!(twiml[0].param("CallStatus"), Some("in-progress"));
    let fetched = eventually(10, "the call to complete", || async {
        let (_, fetched) = dialtone.get(&format!("Calls/{sid}.json")).await;
        (fetched["status"] == "completed").then_some(fetched)
    })
    .await;
    assert_eq!(fetched["price"], "-0.01400", "{fetched}");

    let delivered = eventually(30, "all four status callbacks", || async {
        let requests = app.requests_to("/status");
        (requests.len() >= 6).then_some(requests)
    })
    .await;
    assert_eq!(
        delivered.len(),
        6,
        "two failures then four deliveries: {delivered:?}"
    );
    assert!(delivered.iter().all(|r| r.signature_valid));
    let accepted = &delivered[2..];
    let sequence: Vec<_> = accepted
        .iter()
        .map(|r| r.param("SequenceNumber").unwrap().to_owned())
        .collect();
    assert_eq!(sequence, ["0", "1", "2", "3"]);
    let statuses: Vec<_> = accepted
        .iter()
        .map(|r| r.param("CallStatus").unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    // The failed attempts were the first callback, retried in place: nothing overtook it.
    assert!(delivered[..3]
        .iter()
        .all(|r| r.param("SequenceNumber") == Some("0")));
    assert!(accepted[3].param("CallDuration").is_some());
}

fn tone_wav(seconds: u32) -> Vec<u8> {
    let samples: Vec<i16> = (0..8000 * seconds)
        .map(|i| ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    wav
}

/// A REST redirect during a `<Play>` switches the call to the new TwiML at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_redirect_during_play_switches_twiml() {
    let (dialtone, app) = setup("").await;
    app.bytes("/hold.wav", "audio/wav", tone_wav(2));
    app.twiml(
        "/voice",
        &format!(
            r#"<Response><Play loop="0">{}</Play></Response>"#,
            app.url("/hold.wav")
        ),
    );
    app.twiml(
        "/redirected",
        "<Response><Say>You have been redirected.</Say><Hangup/></Response>",
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let rtp = RtpSink::start();
    let (caller, call) = answered_caller(&dialtone, &rtp).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sid = call["sid"].as_str().unwrap().to_owned();
    let redirected = app.url("/redirected");
    let (code, updated) = dialtone
        .post(
            &format!("Calls/{sid}.json"),
            &[("Url", redirected.as_str())],
        )
        .await;
    assert_eq!(code, 200, "{updated}");
    let caller = caller.await.unwrap();
    caller.assert_success("caller", &dialtone);
    assert_eq!(app.requests_to("/redirected").len(), 1);
    let events = dialtone.call_events(&sid).await;
    let redirect = events
        .iter()
        .find(|e| e["type"] == "dialtone.call.redirected")
        .expect("call.redirected");
    assert_eq!(redirect["data"]["by"], "api");
    assert!(events
        .iter()
        .any(|e| e["type"] == "dialtone.media.say"
            && e["data"]["text"] == "You have been redirected."));
    // The Play was interrupted, not finished: it loops forever.
    assert!(events
        .iter()
        .any(|e| e["type"] == "dialtone.call.verb.finished" && e["data"]["verb"] == "Play"));
}

/// REST `Status=completed` hangs up a live call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_hangup_ends_a_live_call() {
    let (dialtone, app) = setup("").await;
    app.twiml(
        "/voice",
        r#"<Response><Say>Please hold.</Say><Pause length="60"/></Response>"#,
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let rtp = RtpSink::start();
    let (caller, call) = answered_caller(&dialtone, &rtp).await;
    let sid = call["sid"].as_str().unwrap().to_owned();
    let (code, updated) = dialtone
        .post(&format!("Calls/{sid}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["status"], "completed", "{updated}");
    let caller = caller.await.unwrap();
    assert!(caller.success, "the caller got no BYE:\n{}", caller.output);
    let events = dialtone.call_events(&sid).await;
    assert_eq!(events.last().unwrap()["data"]["hangup_by"], "api");
    // A second update of the ended call: Twilio's 21220.
    let (code, error) = dialtone
        .post(&format!("Calls/{sid}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(
        (code, &error["code"]),
        (400, &Value::from(21220)),
        "{error}"
    );
}

/// Three callers in one conference: each hears the others; the room's events are logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_party_conference_mixes_everyone() {
    let (dialtone, app) = setup("").await;
    app.twiml(
        "/voice",
        r#"<Response><Dial><Conference beep="false" waitUrl="/wait">standup</Conference></Dial></Response>"#,
    );
    app.twiml(
        "/wait",
        "<Response><Say>Please wait for the others.</Say></Response>",
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let sinks: Vec<RtpSink> = (0..3).map(|_| RtpSink::start()).collect();
    let mut callers = Vec::new();
    for (i, sink) in sinks.iter().enumerate() {
        let caller = Sipp::scenario("inbound_call.xml")
            .key("dialed", NUMBER)
            .key("rtp_port", sink.port)
            .pause_ms(6_000 - 500 * i as u64)
            .run(dialtone.sip_addr());
        callers.push(tokio::spawn(caller));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_joined = SystemTime::now();
    // The Conferences API: the room is in progress with its three participants.
    let (_, rooms) = dialtone
        .get("Conferences.json?FriendlyName=standup&Status=in-progress")
        .await;
    let rooms = rooms["conferences"].as_array().cloned().unwrap_or_default();
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    let conference_sid = rooms[0]["sid"].as_str().unwrap().to_owned();
    let participants = eventually(5, "three participants", || async {
        let (_, body) = dialtone
            .get(&format!("Conferences/{conference_sid}/Participants.json"))
            .await;
        let list = body["participants"].as_array().cloned().unwrap_or_default();
        (list.len() == 3).then_some(list)
    })
    .await;
    assert!(participants
        .iter()
        .all(|p| p["status"] == "connected" && p["conference_sid"] == conference_sid.as_str()));
    let one = participants[0]["call_sid"].as_str().unwrap();
    let (status, participant) = dialtone
        .get(&format!(
            "Conferences/{conference_sid}/Participants/{one}.json"
        ))
        .await;
    assert_eq!(status, 200, "{participant}");
    assert_eq!(participant["call_sid"], one);
    // The first caller waited alone: the waitUrl program played until the room started.
    let waits = app.requests_to("/wait");
    assert!(
        !waits.is_empty(),
        "the waitUrl was never fetched: {:?}",
        app.requests()
    );
    assert!(waits.iter().all(|w| w.signature_valid));
    for (i, caller) in callers.into_iter().enumerate() {
        let run = caller.await.unwrap();
        run.assert_success(&format!("caller {i}"), &dialtone);
    }
    for (i, sink) in sinks.iter().enumerate() {
        let heard = loudest_second(&sink.audio_since(
            Codec::Pcma,
            8,
            all_joined + Duration::from_millis(300),
        ));
        assert!(
            heard > 500.0,
            "participant {i} heard nobody (RMS {heard:.0})"
        );
    }
    // The room's own stream: started, three joins, three leaves, ended.
    let log = dialtone_events::sqlite::SqliteLog::open(
        dialtone.data_dir.path().join("data/events.db"),
        "check",
    )
    .unwrap();
    let types: Vec<String> = eventually(10, "the conference to end", || async {
        let all =
            dialtone_events::EventLog::read_all(&log, &dialtone_events::Cursor::start(), 100_000)
                .await
                .unwrap();
        let types: Vec<String> = all
            .iter()
            .filter(|r| r.event.subject.starts_with("CF"))
            .map(|r| r.event.event_type.clone())
            .collect();
        types
            .last()
            .is_some_and(|t| t == "dialtone.conference.ended")
            .then_some(types)
    })
    .await;
    let count = |t: &str| types.iter().filter(|x| x.as_str() == t).count();
    assert_eq!(types[0], "dialtone.conference.started");
    // Ended: completed, nobody connected any more.
    let room = eventually(10, "the conference to be completed", || async {
        let (_, room) = dialtone
            .get(&format!("Conferences/{conference_sid}.json"))
            .await;
        (room["status"] == "completed").then_some(room)
    })
    .await;
    assert_eq!(room["reason_conference_ended"], "last-participant-left");
    assert_eq!(room["friendly_name"], "standup");
    let (_, left) = dialtone
        .get(&format!("Conferences/{conference_sid}/Participants.json"))
        .await;
    assert_eq!(left["participants"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        count("dialtone.conference.participant.joined"),
        3,
        "{types:?}"
    );
    assert_eq!(
        count("dialtone.conference.participant.left"),
        3,
        "{types:?}"
    );
}

/// REST calls beyond the account's calls-per-second wait in `queued`; `queue_time` says how
/// long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_calls_are_paced_per_account() {
    let app = TwimlApp::start().await;
    let dialtone =
        Dialtone::start_with(Backend::Sqlite, "[outbound]\ncalls_per_second = 2.0\n").await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml("/outbound", "<Response><Hangup/></Response>");
    let callee_rtp = RtpSink::start();
    let callee = Sipp::scenario("callee_answer.xml")
        .key("rtp_port", callee_rtp.port)
        .calls(3);
    let to = callee_uri(&callee);
    let callee = callee.spawn_uas();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = app.url("/outbound");
    let mut sids = Vec::new();
    for _ in 0..3 {
        let (code, call) = dialtone
            .post(
                "Calls.json",
                &[("To", to.as_str()), ("From", NUMBER), ("Url", url.as_str())],
            )
            .await;
        assert_eq!(
            (code, &call["status"]),
            (201, &Value::from("queued")),
            "{call}"
        );
        sids.push(call["sid"].as_str().unwrap().to_owned());
    }
    let callee = callee.await.unwrap();
    callee.assert_success("callee", &dialtone);
    let mut queue_times = Vec::new();
    for sid in &sids {
        let call = eventually(20, "the call to complete", || async {
            let (_, call) = dialtone.get(&format!("Calls/{sid}.json")).await;
            (call["status"] == "completed").then_some(call)
        })
        .await;
        queue_times.push(call["queue_time"].as_str().unwrap().parse::<u64>().unwrap());
    }
    queue_times.sort_unstable();
    // Two calls per second: the second waits about half a second, the third about a second.
    assert!(queue_times[1] >= 400, "queue times {queue_times:?}");
    assert!(queue_times[2] >= 900, "queue times {queue_times:?}");
}

/// REST `Record=true`: the whole call is recorded (both directions, dual channel here), the
/// recording belongs to the call, and its status callback arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_call_with_record_true_is_recorded() {
    let (dialtone, app) = setup("").await;
    app.twiml(
        "/outbound",
        r#"<Response><Say>This call is recorded.</Say><Pause length="2"/><Hangup/></Response>"#,
    );
    app.twiml("/rec-status", "");
    let callee_rtp = RtpSink::start();
    let callee = Sipp::scenario("callee_answer.xml").key("rtp_port", callee_rtp.port);
    let to = callee_uri(&callee);
    let callee = callee.spawn_uas();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (outbound, rec_status) = (app.url("/outbound"), app.url("/rec-status"));
    let form = [
        ("To", to.as_str()),
        ("From", NUMBER),
        ("Url", outbound.as_str()),
        ("Record", "true"),
        ("RecordingChannels", "dual"),
        ("RecordingStatusCallback", rec_status.as_str()),
    ];
    let (code, call) = dialtone.post("Calls.json", &form).await;
    assert_eq!(code, 201, "{call}");
    let sid = call["sid"].as_str().unwrap().to_owned();
    let callee = callee.await.unwrap();
    callee.assert_success("callee", &dialtone);

    let callback = eventually(20, "the recording status callback", || async {
        app.requests_to("/rec-status").into_iter().next()
    })
    .await;
    assert_eq!(callback.param("RecordingStatus"), Some("completed"));
    assert_eq!(callback.param("RecordingSource"), Some("OutboundAPI"));
    assert_eq!(callback.param("RecordingChannels"), Some("2"));
    assert_eq!(callback.param("CallSid"), Some(sid.as_str()));
    let recording_sid = callback.param("RecordingSid").unwrap().to_owned();
    let (status, recording) = dialtone
        .get(&format!("Recordings/{recording_sid}.json"))
        .await;
    assert_eq!(status, 200, "{recording}");
    assert_eq!(recording["call_sid"], sid.as_str());
    assert_eq!(recording["channels"], 2);
    let seconds: u64 = recording["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (2..=6).contains(&seconds),
        "a ~3 s call recorded {seconds} s"
    );
}

/// `record-from-ringing`: the dial's recording starts when the callee rings (so it holds
/// the ringback the caller heard), runs through the bridge, and is written even though the
/// caller hangs up in the middle of the bridged call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_from_ringing_keeps_the_ringback_and_survives_the_caller_hanging_up() {
    let (dialtone, app) = setup("").await;
    let callee_rtp = RtpSink::start();
    let callee = Sipp::scenario("callee_answer.xml").key("rtp_port", callee_rtp.port);
    app.twiml(
        "/voice",
        &format!(
            r#"<Response><Dial record="record-from-ringing-dual" recordingStatusCallback="/rec-status"><Sip>{}</Sip></Dial></Response>"#,
            callee_uri(&callee)
        ),
    );
    app.twiml("/rec-status", "");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let caller_rtp = RtpSink::start();
    call_a_callee(&dialtone, callee, &caller_rtp, 4_000).await;

    let parent = parent_call(&dialtone).await;
    let parent_sid = parent["sid"].as_str().unwrap().to_owned();
    let events = dialtone.call_events(&parent_sid).await;
    let position = |event_type: &str| {
        events
            .iter()
            .position(|e| e["type"] == event_type)
            .unwrap_or_else(|| panic!("no {event_type} in {events:#?}"))
    };
    assert_eq!(
        events[position("dialtone.call.completed")]["data"]["hangup_by"],
        "caller"
    );
    // Started while ringing, before the bridge; written before the call's end.
    assert!(position("dialtone.call.recording.started") < position("dialtone.media.bridge"));
    assert!(position("dialtone.call.recording.completed") < position("dialtone.call.completed"));
    let started_at = event_time(&events, "dialtone.call.recording.started");
    let bridged_at = event_time(&events, "dialtone.media.bridge");
    let ringing_ms = bridged_at.duration_since(started_at).unwrap().as_millis() as u64;
    assert!(ringing_ms >= 300, "recorded {ringing_ms} ms of ringing");
    let completed = &events[position("dialtone.call.recording.completed")]["data"];
    let recording_sid = completed["recording_sid"].as_str().unwrap().to_owned();
    let duration_ms = completed["duration_ms"].as_u64().unwrap();
    let ended_at = event_time(&events, "dialtone.call.completed");
    let call_ms = ended_at.duration_since(started_at).unwrap().as_millis() as u64;
    assert!(
        duration_ms + 500 >= call_ms && duration_ms <= call_ms + 100,
        "recorded {duration_ms} ms of a dial that lasted {call_ms} ms from the first ring"
    );

    // Through the API: it belongs to the parent call, and its first moments hold the
    // ringback tone.
    let (_, listed) = dialtone
        .get(&format!("Calls/{parent_sid}/Recordings.json"))
        .await;
    let recordings = listed["recordings"].as_array().unwrap();
    assert_eq!(recordings.len(), 1, "{listed}");
    assert_eq!(recordings[0]["sid"], recording_sid.as_str());
    assert_eq!(recordings[0]["source"], "DialVerb");
    assert_eq!(recordings[0]["channels"], 2);
    // Dual channel: the caller on the left, what the caller heard on the right.
    let heard: Vec<i16> = dialtone
        .recording_samples(&recording_sid)
        .await
        .chunks_exact(2)
        .map(|frame| frame[1])
        .collect();
    assert!(
        heard.len() as u64 * 1000 / 8000 + 100 >= duration_ms,
        "the WAV holds {} frames",
        heard.len()
    );
    // Past its first 100 ms (the tone's start), the ringing part of the recording holds
    // the ringback.
    let ringing = &heard[800..(ringing_ms as usize * 8).min(heard.len())];
    assert!(
        rms(ringing) > 300.0,
        "no ringback in the recording's first {ringing_ms} ms (RMS {:.0})",
        rms(ringing)
    );
    let callback = eventually(20, "the recording status callback", || async {
        app.requests_to("/rec-status").into_iter().next()
    })
    .await;
    assert_eq!(callback.param("RecordingStatus"), Some("completed"));
    assert_eq!(callback.param("RecordingSource"), Some("DialVerb"));
    assert_eq!(callback.param("CallSid"), Some(parent_sid.as_str()));
}

/// A participant alone in a conference without a `waitUrl` hears hold music, not silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_participant_without_wait_url_hears_hold_music() {
    let (dialtone, app) = setup("").await;
    app.twiml(
        "/voice",
        r#"<Response><Dial><Conference beep="false">lonely</Conference></Dial></Response>"#,
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let sink = RtpSink::start();
    let started = SystemTime::now();
    let caller = Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", sink.port)
        .pause_ms(3_000)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("caller", &dialtone);
    let heard = sink.audio_since(Codec::Pcma, 8, started + Duration::from_millis(500));
    assert!(heard.len() >= 8000, "only {} samples arrived", heard.len());
    // Every second holds music (no gap of silence while waiting).
    for (i, second) in heard.chunks_exact(8000).enumerate() {
        let level = rms(second);
        assert!(
            level > 300.0,
            "second {i} of the wait was silent (RMS {level:.0})"
        );
    }
}

/// `<Conference statusCallback>`: the room's joins, its start (when the second caller
/// arrives), the leaves and its end reach the app in order, numbered and signed.
/// `record="record-from-start"`: the room's recording belongs to the conference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_status_callbacks_arrive_in_order_and_the_room_is_recorded() {
    let (dialtone, app) = setup("").await;
    let room = |extra: &str| {
        format!(
            r#"<Response><Dial><Conference beep="false" record="record-from-start" recordingStatusCallback="/conf-rec" statusCallback="/conf-status" statusCallbackEvent="start end join leave"{extra}>standup</Conference></Dial></Response>"#
        )
    };
    app.twiml("/voice", &room(""));
    app.twiml("/conf-status", "");
    app.twiml("/conf-rec", "");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let (first_rtp, second_rtp) = (RtpSink::start(), RtpSink::start());
    // The first caller stays until the conference ends and Dialtone hangs up.
    let first = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", first_rtp.port)
        .run(dialtone.sip_addr());
    let first = tokio::spawn(first);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // The second ends the conference for everyone when it leaves.
    app.twiml("/voice", &room(r#" endConferenceOnExit="true""#));
    let second = Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", second_rtp.port)
        .pause_ms(1_500)
        .run(dialtone.sip_addr())
        .await;
    second.assert_success("second caller", &dialtone);
    first
        .await
        .unwrap()
        .assert_success("first caller", &dialtone);

    let callbacks = eventually(20, "six conference callbacks", || async {
        let requests = app.requests_to("/conf-status");
        (requests.len() >= 6).then_some(requests)
    })
    .await;
    let events: Vec<&str> = callbacks
        .iter()
        .map(|r| r.param("StatusCallbackEvent").unwrap_or(""))
        .collect();
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
    let numbers: Vec<&str> = callbacks
        .iter()
        .map(|r| r.param("SequenceNumber").unwrap_or(""))
        .collect();
    assert_eq!(numbers, ["0", "1", "2", "3", "4", "5"]);
    let conference_sid = callbacks[0].param("ConferenceSid").unwrap();
    assert!(conference_sid.starts_with("CF"), "{conference_sid}");
    assert!(callbacks.iter().all(|r| r.signature_valid
        && r.param("ConferenceSid") == Some(conference_sid)
        && r.param("FriendlyName") == Some("standup")
        && r.param("AccountSid") == Some(dialtone.account_sid.as_str())));
    // The first caller joined first and left last.
    let mut calls = Vec::new();
    for call in dialtone.calls().await {
        let sid = call["sid"].as_str().unwrap().to_owned();
        let events = dialtone.call_events(&sid).await;
        calls.push((event_time(&events, "dialtone.call.initiated"), sid));
    }
    calls.sort();
    let (first_sid, second_sid) = (Some(calls[0].1.as_str()), Some(calls[1].1.as_str()));
    let participants: Vec<Option<&str>> = callbacks.iter().map(|r| r.param("CallSid")).collect();
    assert_eq!(
        participants,
        [first_sid, second_sid, None, second_sid, first_sid, None]
    );
    assert_eq!(
        callbacks[5].param("ReasonConferenceEnded"),
        Some("participant-with-end-conference-on-exit-left")
    );
    assert_eq!(callbacks[5].param("CallSidEndingConference"), second_sid);
    assert_eq!(callbacks[3].param("EndConferenceOnExit"), Some("true"));
    assert_eq!(callbacks[4].param("EndConferenceOnExit"), Some("false"));

    // The recording: the conference's, of the ~2.5 s the room lived, trimmed of silence
    // (Twilio's default for conferences) to the callers' speech.
    let recording = eventually(20, "the conference recording", || async {
        let (_, body) = dialtone
            .get(&format!("Recordings.json?ConferenceSid={conference_sid}"))
            .await;
        body["recordings"]
            .as_array()
            .and_then(|r| r.first().cloned())
            .filter(|r| r["status"] == "completed")
    })
    .await;
    assert_eq!(recording["conference_sid"], conference_sid);
    assert!(recording["call_sid"].is_null(), "{recording}");
    assert_eq!(recording["source"], "Conference");
    assert_eq!(recording["channels"], 1);
    let seconds: u64 = recording["duration"].as_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&seconds), "{seconds} s recorded");
    let samples = dialtone
        .recording_samples(recording["sid"].as_str().unwrap())
        .await;
    // Trimmed to speech, it is loud throughout.
    let level = rms(&samples);
    assert!(
        level > 300.0,
        "the conference recording is silence (RMS {level:.0})"
    );
    let (_, of_room) = dialtone
        .get(&format!("Conferences/{conference_sid}/Recordings.json"))
        .await;
    assert_eq!(of_room["recordings"][0]["sid"], recording["sid"]);
    // A call's recordings do not include the conference's.
    let (_, of_call) = dialtone
        .get(&format!("Calls/{}/Recordings.json", first_sid.unwrap()))
        .await;
    assert_eq!(of_call["recordings"].as_array().map(Vec::len), Some(0));
    let rec_status = eventually(20, "the conference recording's callback", || async {
        app.requests_to("/conf-rec").into_iter().next()
    })
    .await;
    assert!(rec_status.signature_valid);
    assert_eq!(rec_status.param("ConferenceSid"), Some(conference_sid));
    assert_eq!(rec_status.param("CallSid"), None);
    assert_eq!(rec_status.param("RecordingSource"), Some("Conference"));
    assert_eq!(rec_status.param("RecordingStatus"), Some("completed"));
    assert_eq!(rec_status.param("RecordingSid"), recording["sid"].as_str());
}

/// Conference control through the REST API: mute a participant, take another out (its
/// TwiML goes on after the `<Dial>`), then end the conference for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_mutes_kicks_and_ends_a_conference() {
    let (dialtone, app) = setup("").await;
    app.twiml(
        "/voice",
        r#"<Response><Dial><Conference beep="false" statusCallback="/conf-status" statusCallbackEvent="join leave mute hold end">ops</Conference></Dial><Say>Goodbye.</Say></Response>"#,
    );
    app.twiml("/conf-status", "");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let sinks = [RtpSink::start(), RtpSink::start()];
    let mut callers = Vec::new();
    for sink in &sinks {
        let caller = Sipp::scenario("inbound_dialtone_hangs_up.xml")
            .key("dialed", NUMBER)
            .key("rtp_port", sink.port)
            .run(dialtone.sip_addr());
        callers.push(tokio::spawn(caller));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (conference_sid, participants) = eventually(15, "two participants", || async {
        let (_, rooms) = dialtone.get("Conferences.json?FriendlyName=ops").await;
        let sid = rooms["conferences"][0]["sid"].as_str()?.to_owned();
        let (_, body) = dialtone
            .get(&format!("Conferences/{sid}/Participants.json"))
            .await;
        let list = body["participants"].as_array().cloned().unwrap_or_default();
        (list.len() == 2).then_some((sid, list))
    })
    .await;
    let first = participants[0]["call_sid"].as_str().unwrap().to_owned();
    let second = participants[1]["call_sid"].as_str().unwrap().to_owned();
    let participant = |call: &str| format!("Conferences/{conference_sid}/Participants/{call}.json");

    let (status, muted) = dialtone
        .post(&participant(&first), &[("Muted", "true")])
        .await;
    assert_eq!(status, 200, "{muted}");
    assert_eq!(muted["muted"], true);
    let (status, refused) = dialtone
        .post(
            &participant(&first),
            &[("HoldUrl", "https://app.example/hold.mp3")],
        )
        .await;
    assert_eq!(status, 400, "{refused}");

    let kicked = dialtone.delete(&participant(&second)).await;
    assert_eq!(kicked, 204);
    assert_eq!(dialtone.delete(&participant(&second)).await, 404);
    // The kicked call went on after its <Dial>.
    let events = eventually(10, "the kicked call to say goodbye", || async {
        let events = dialtone.call_events(&second).await;
        events
            .iter()
            .any(|e| e["type"] == "dialtone.media.say" && e["data"]["text"] == "Goodbye.")
            .then_some(events)
    })
    .await;
    assert!(events
        .iter()
        .any(|e| e["type"] == "dialtone.call.dial.completed"));

    // Alone now, and on hold: the first caller hears the hold music (silence without it).
    let (status, held) = dialtone
        .post(&participant(&first), &[("Hold", "true")])
        .await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["hold"], true);
    let held_at = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let music = sinks[0].audio_since(Codec::Pcmu, 0, held_at + Duration::from_millis(300));
    let level = loudest_second(&music);
    assert!(level > 300.0, "no hold music (RMS {level:.0})");
    let (status, unheld) = dialtone
        .post(&participant(&first), &[("Hold", "false")])
        .await;
    assert_eq!(status, 200, "{unheld}");
    assert_eq!(unheld["hold"], false);

    let (status, ended) = dialtone
        .post(
            &format!("Conferences/{conference_sid}.json"),
            &[("Status", "completed")],
        )
        .await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "completed");
    assert_eq!(ended["reason_conference_ended"], "conference-ended-via-api");
    for (i, caller) in callers.into_iter().enumerate() {
        caller
            .await
            .unwrap()
            .assert_success(&format!("caller {i}"), &dialtone);
    }

    let callbacks = eventually(20, "the conference callbacks", || async {
        let requests = app.requests_to("/conf-status");
        (requests.len() >= 8).then_some(requests)
    })
    .await;
    let seen: Vec<(&str, Option<&str>)> = callbacks
        .iter()
        .map(|r| {
            (
                r.param("StatusCallbackEvent").unwrap_or(""),
                r.param("CallSid"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("participant-join", Some(first.as_str())),
            ("participant-join", Some(second.as_str())),
            ("participant-mute", Some(first.as_str())),
            ("participant-leave", Some(second.as_str())),
            ("participant-hold", Some(first.as_str())),
            ("participant-unhold", Some(first.as_str())),
            ("participant-leave", Some(first.as_str())),
            ("conference-end", None),
        ]
    );
    assert_eq!(callbacks[2].param("Muted"), Some("true"));
    assert_eq!(callbacks[4].param("Hold"), Some("true"));
}

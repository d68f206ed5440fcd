//! Phone-menu building blocks end to end: `<Gather>` with sipp's RFC 4733 DTMF pcaps, and
//! `<Record>` of sipp's G.711 pcap, downloaded back through the Recordings API.

use dialtone_tests::{eventually, Backend, Dialtone, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

const NUMBER: &str = "+14155550100";

async fn setup() -> (Dialtone, TwimlApp) {
    let app = TwimlApp::start().await;
    let dialtone = Dialtone::start(Backend::Sqlite).await;
    app.set_auth_token(&dialtone.auth_token);
    (dialtone, app)
}

/// Runs `scenario` against the number and waits for the call to finish; returns its events.
async fn call(dialtone: &Dialtone, scenario: &str) -> Vec<Value> {
    let rtp = RtpSink::start();
    let run = Sipp::scenario(scenario)
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp failed", dialtone);
    let call = dialtone.finished_call().await;
    dialtone.call_events(call["sid"].as_str().unwrap()).await
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gather_num_digits_collects_rfc4733_digits() {
    let (dialtone, app) = setup().await;
    app.twiml(
        "/voice",
        r#"<Response><Gather numDigits="3" action="/gathered" timeout="10"><Say>Please enter your three digit code.</Say></Gather><Say>We did not get your code.</Say></Response>"#,
    );
    app.twiml(
        "/gathered",
        "<Response><Say>Thank you.</Say><Hangup/></Response>",
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let events = call(&dialtone, "inbound_dtmf_123.xml").await;

    let gathered = app.requests_to("/gathered");
    assert_eq!(gathered.len(), 1, "{:?}", app.requests());
    assert!(gathered[0].signature_valid);
    assert_eq!(gathered[0].param("Digits"), Some("123"));
    assert_eq!(gathered[0].param("FinishedOnKey"), Some(""));
    let digits: Vec<_> = of_type(&events, "dialtone.call.dtmf.received")
        .iter()
        .map(|e| {
            (
                e["data"]["digit"].as_str().unwrap().to_owned(),
                e["data"]["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        digits,
        [("1", "rfc4733"), ("2", "rfc4733"), ("3", "rfc4733")]
            .map(|(d, s)| (d.to_owned(), s.to_owned()))
    );
    let completed = of_type(&events, "dialtone.call.gather.completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["data"]["digits"], "123");
    assert_eq!(completed[0]["data"]["reason"], "num-digits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gather_finish_on_key_excludes_the_key() {
    let (dialtone, app) = setup().await;
    app.twiml("/voice", r##"<Response><Gather finishOnKey="#" action="/gathered" timeout="10"><Say>Enter digits then pound.</Say></Gather></Response>"##);
    app.twiml("/gathered", "<Response><Hangup/></Response>");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    call(&dialtone, "inbound_dtmf_1_pound.xml").await;
    let gathered = app.requests_to("/gathered");
    assert_eq!(gathered.len(), 1, "{:?}", app.requests());
    assert_eq!(gathered[0].param("Digits"), Some("1"));
    assert_eq!(gathered[0].param("FinishedOnKey"), Some("#"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gather_timeout_submits_partial_digits() {
    let (dialtone, app) = setup().await;
    // No numDigits and no finish key pressed: the digits go to the action after the timeout.
    app.twiml("/voice", r#"<Response><Gather action="/gathered" timeout="2"><Say>Enter digits.</Say></Gather></Response>"#);
    app.twiml("/gathered", "<Response><Hangup/></Response>");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let events = call(&dialtone, "inbound_dtmf_123.xml").await;
    let gathered = app.requests_to("/gathered");
    assert_eq!(gathered.len(), 1, "{:?}", app.requests());
    assert_eq!(gathered[0].param("Digits"), Some("123"));
    assert_eq!(
        of_type(&events, "dialtone.call.gather.completed")[0]["data"]["reason"],
        "timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gather_without_input_falls_through_to_the_next_verb() {
    let (dialtone, app) = setup().await;
    app.twiml(
        "/voice",
        r#"<Response><Gather action="/gathered" timeout="1"><Say>Press a key.</Say></Gather><Say>No input.</Say><Hangup/></Response>"#,
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let events = call(&dialtone, "inbound_dialtone_hangs_up.xml").await;
    assert!(
        app.requests_to("/gathered").is_empty(),
        "no input must not request the action"
    );
    let says: Vec<_> = of_type(&events, "dialtone.media.say")
        .iter()
        .map(|e| e["data"]["text"].clone())
        .collect();
    assert_eq!(
        says,
        [Value::from("Press a key."), Value::from("No input.")]
    );
}

/// Length of the caller's speech in sipp's g711a.pcap (7.08 s of audio in 30 ms packets) as
/// `trim-silence` keeps it: from the first to the last 20 ms frame above the recorder's voice
/// threshold (300 RMS; frames 47 and 353), plus its 100 ms margin on each side. Computed
/// independently by decoding the pcap.
const PCAP_VOICED_MS: u64 = (353 - 47 + 1) * 20 + 2 * 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_captures_the_callers_audio_and_serves_the_wav() {
    let (dialtone, app) = setup().await;
    app.twiml("/voice", r#"<Response><Record timeout="2" playBeep="false" maxLength="30" action="/recorded" recordingStatusCallback="/rec-status" recordingStatusCallbackEvent="in-progress completed"/></Response>"#);
    app.twiml(
        "/recorded",
        "<Response><Say>Goodbye.</Say><Hangup/></Response>",
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let events = call(&dialtone, "inbound_record.xml").await;

    let recorded = app.requests_to("/recorded");
    assert_eq!(recorded.len(), 1, "{:?}", app.requests());
    let request = &recorded[0];
    assert!(request.signature_valid);
    let sid = request.param("RecordingSid").unwrap().to_owned();
    assert!(sid.starts_with("RE"), "{request:?}");
    let url = request.param("RecordingUrl").unwrap();
    assert!(url.ends_with(&format!("/Recordings/{sid}")), "{url}");
    let seconds: u64 = request.param("RecordingDuration").unwrap().parse().unwrap();
    let record_events: Vec<_> = events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().contains("record"))
        .collect();
    assert_eq!(
        seconds,
        PCAP_VOICED_MS.div_ceil(1000),
        "RecordingDuration: {record_events:?}"
    );

    let completed = of_type(&events, "dialtone.call.recording.completed");
    assert_eq!(completed.len(), 1, "{events:?}");
    let duration_ms = completed[0]["data"]["duration_ms"].as_u64().unwrap();
    assert!(
        duration_ms.abs_diff(PCAP_VOICED_MS) <= 100,
        "recorded {duration_ms} ms, spoken {PCAP_VOICED_MS} ms"
    );
    assert_eq!(completed[0]["data"]["status"], "completed");

    // The metadata and the audio through the API.
    let (status, meta) = eventually(10, "the recording resource", || async {
        let (status, body) = dialtone.get(&format!("Recordings/{sid}.json")).await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(meta["call_sid"], events[0]["subject"]);
    assert_eq!(meta["source"], "RecordVerb");
    let samples = dialtone.recording_samples(&sid).await;
    let wav_ms = samples.len() as u64 * 1000 / 8000;
    assert!(
        wav_ms.abs_diff(duration_ms) <= 20,
        "WAV holds {wav_ms} ms, event says {duration_ms} ms"
    );
    assert!(
        dialtone_tests::rtp::rms(&samples) > 300.0,
        "the recording is silence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_recording_requests_no_action() {
    let (dialtone, app) = setup().await;
    app.twiml(
        "/voice",
        r#"<Response><Record timeout="1" playBeep="false" action="/recorded"/><Say>Nothing was recorded.</Say><Hangup/></Response>"#,
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let events = call(&dialtone, "inbound_dialtone_hangs_up.xml").await;
    assert!(
        app.requests_to("/recorded").is_empty(),
        "an empty recording must not request the action"
    );
    let completed = of_type(&events, "dialtone.call.recording.completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["data"]["status"], "absent");
    assert!(of_type(&events, "dialtone.media.say")
        .iter()
        .any(|e| e["data"]["text"] == "Nothing was recorded."));
}

//! A real inbound call through every layer, on each log backend: `dialtone serve`, a TwiML
//! app that verifies signatures, a number provisioned through the API, and sipp calling it.

use dialtone_media::codec::Codec;
use dialtone_tests::rtp::rms;
use dialtone_tests::{eventually, Backend, Dialtone, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

const NUMBER: &str = "+14155550100";

async fn setup(backend: Backend) -> (Dialtone, TwimlApp) {
    let app = TwimlApp::start().await;
    let dialtone = Dialtone::start(backend).await;
    app.set_auth_token(&dialtone.auth_token);
    (dialtone, app)
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn position(types: &[String], t: &str) -> usize {
    types
        .iter()
        .position(|x| x == t)
        .unwrap_or_else(|| panic!("no {t} in {types:?}"))
}

/// Say, then the caller hangs up after ~3 s: completed, right duration, events in order with
/// the TwiML document, audible RTP at the caller, usage billed.
async fn answered_call_end_to_end(backend: Backend) {
    let (dialtone, app) = setup(backend).await;
    let twiml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="alice">Hello from Dialtone. Thanks for calling.</Say><Pause length="30"/></Response>"#;
    app.twiml("/voice", twiml);
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;

    let rtp = RtpSink::start();
    let run = Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .pause_ms(3_000)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp failed", &dialtone);

    // The webhook: Twilio's parameters, validly signed.
    let requests = app.requests_to("/voice");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let voice = &requests[0];
    assert!(voice.signature_valid, "bad X-Twilio-Signature: {voice:?}");
    assert_eq!(voice.method, "POST");
    assert_eq!(voice.param("To"), Some(NUMBER));
    assert_eq!(voice.param("From"), Some("+14155550199"));
    assert_eq!(voice.param("CallStatus"), Some("ringing"));
    assert_eq!(voice.param("Direction"), Some("inbound"));
    assert_eq!(voice.param("ApiVersion"), Some("2010-04-01"));
    assert_eq!(
        voice.param("AccountSid"),
        Some(dialtone.account_sid.as_str())
    );
    let call_sid = voice.param("CallSid").unwrap().to_owned();

    // The Call resource.
    let call = dialtone.finished_call().await;
    assert_eq!(call["sid"], call_sid.as_str());
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["to"], NUMBER);
    let duration: u64 = call["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (3..=4).contains(&duration),
        "duration {duration} for a 3 s call: {call}"
    );
    assert_eq!(call["price"], "-0.00850", "{call}");
    assert_eq!(call["price_unit"], "USD");
    let (status, fetched) = dialtone.get(&format!("Calls/{call_sid}.json")).await;
    assert_eq!(
        (status, &fetched["status"]),
        (200, &Value::from("completed"))
    );

    // The event history, in order, with the TwiML document.
    let events = dialtone.call_events(&call_sid).await;
    let t = types(&events);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence"], i as u64 + 1);
        assert_eq!(event["subject"], call_sid.as_str());
    }
    assert_eq!(t[0], "dialtone.call.initiated");
    assert_eq!(t.last().unwrap(), "dialtone.call.completed");
    let order = [
        "dialtone.call.initiated",
        "dialtone.call.ringing",
        "dialtone.call.webhook.requested",
        "dialtone.call.webhook.responded",
        "dialtone.call.answered",
        "dialtone.media.say",
        "dialtone.call.completed",
    ];
    let positions: Vec<usize> = order.iter().map(|o| position(&t, o)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {t:?}"
    );
    let responded = &events[position(&t, "dialtone.call.webhook.responded")];
    assert_eq!(responded["data"]["body"], twiml);
    assert_eq!(responded["data"]["status"], 200);
    let completed = &events[position(&t, "dialtone.call.completed")];
    assert_eq!(completed["data"]["hangup_by"], "caller");

    // Dialtone's RTP reached the caller: one stream, 20 ms packets, audible speech.
    let packets = rtp.packets();
    assert!(
        packets.len() > 50,
        "only {} RTP packets reached the caller",
        packets.len()
    );
    let ssrc = packets[0].ssrc;
    assert!(
        packets
            .iter()
            .all(|p| p.ssrc == ssrc && p.payload_type == 8),
        "one PCMA stream expected"
    );
    for pair in packets.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence.wrapping_add(1),
            "sequence gap"
        );
        assert_eq!(
            pair[1].timestamp.wrapping_sub(pair[0].timestamp),
            160,
            "timestamp step"
        );
        assert_eq!(pair[1].payload.len(), 160);
    }
    let audio = rtp.audio(Codec::Pcma, 8);
    let loudest_second = audio.chunks(8000).map(rms).fold(0.0, f64::max);
    assert!(
        loudest_second > 500.0,
        "the <Say> audio is silence (RMS {loudest_second:.0})"
    );

    // The caller's RTP (sipp's pcap) was read.
    let metrics = dialtone.metrics().await;
    let received: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dialtone_rtp_packets_received_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        received > 50.0,
        "Dialtone read {received} RTP packets from the caller"
    );

    // Usage: one inbound call, one minute.
    let usage = eventually(20, "usage for the call", || async {
        let (_, body) = dialtone
            .get("Usage/Records.json?Category=calls-inbound")
            .await;
        body["usage_records"]
            .as_array()?
            .first()
            .filter(|r| r["count"] == "1")
            .cloned()
    })
    .await;
    assert_eq!(usage["usage"], "1");
    assert_eq!(usage["usage_unit"], "minutes");
    assert_eq!(usage["price"], "0.00850");
}

/// `<Reject reason="busy"/>`: 486, never answered, never billed.
async fn reject_busy_is_486_and_unbilled(backend: Backend) {
    let (dialtone, app) = setup(backend).await;
    app.twiml("/voice", r#"<Response><Reject reason="busy"/></Response>"#);
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let run = Sipp::scenario("inbound_busy.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", 9)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp expected 486", &dialtone);
    let call = dialtone.finished_call().await;
    assert_eq!(call["status"], "busy", "{call}");
    assert!(
        call["start_time"].is_null() || call["duration"].is_null() || call["duration"] == "0",
        "{call}"
    );
    let events = dialtone.call_events(call["sid"].as_str().unwrap()).await;
    let t = types(&events);
    assert!(
        !t.contains(&"dialtone.call.answered".to_owned()),
        "a rejected call was answered: {t:?}"
    );
    assert!(t.contains(&"dialtone.call.rejected".to_owned()), "{t:?}");
    let (_, usage) = dialtone
        .get("Usage/Records.json?Category=calls-inbound")
        .await;
    let record = &usage["usage_records"][0];
    assert!(
        record.is_null() || record["count"] == "0",
        "a rejected call was billed: {usage}"
    );
}

/// A number nobody provisioned: 404 and no call.
async fn unknown_number_is_404(backend: Backend) {
    let (dialtone, app) = setup(backend).await;
    app.twiml("/voice", "<Response><Say>never</Say></Response>");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let run = Sipp::scenario("inbound_not_found.xml")
        .key("dialed", "+14155559999")
        .key("rtp_port", 9)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp expected 404", &dialtone);
    assert!(app.requests().is_empty());
    assert!(dialtone.calls().await.is_empty());
}

/// Broken XML at the voice URL: the fallback URL is fetched with ErrorCode 12100 and its
/// TwiML runs (it hangs up, so Dialtone sends BYE).
async fn broken_twiml_goes_to_the_fallback(backend: Backend) {
    let (dialtone, app) = setup(backend).await;
    app.reply("/voice", 200, "text/xml", "<Response><Say>unterminated");
    app.twiml(
        "/fallback",
        "<Response><Say>Sorry, we are having trouble.</Say><Hangup/></Response>",
    );
    dialtone
        .provision(NUMBER, &app.url("/voice"), Some(&app.url("/fallback")))
        .await;
    let rtp = RtpSink::start();
    let run = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp expected a BYE from Dialtone", &dialtone);
    let fallback = app.requests_to("/fallback");
    assert_eq!(fallback.len(), 1, "{:?}", app.requests());
    assert!(fallback[0].signature_valid);
    assert_eq!(fallback[0].param("ErrorCode"), Some("12100"));
    assert_eq!(
        fallback[0].param("ErrorUrl"),
        Some(app.url("/voice").as_str())
    );
    let call = dialtone.finished_call().await;
    assert_eq!(call["status"], "completed");
    let events = dialtone.call_events(call["sid"].as_str().unwrap()).await;
    let failed = events
        .iter()
        .find(|e| e["type"] == "dialtone.call.twiml.failed")
        .expect("twiml.failed event");
    assert_eq!(failed["data"]["code"], 12100);
    assert_eq!(failed["data"]["class"], "parse");
    let completed = events.last().unwrap();
    assert_eq!(completed["data"]["hangup_by"], "dialtone");
    assert!(
        !rtp.packets().is_empty(),
        "the fallback's <Say> was not played"
    );
}

macro_rules! on_backend {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn answered_call_end_to_end() {
                super::answered_call_end_to_end($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reject_busy_is_486_and_unbilled() {
                super::reject_busy_is_486_and_unbilled($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unknown_number_is_404() {
                super::unknown_number_is_404($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn broken_twiml_goes_to_the_fallback() {
                super::broken_twiml_goes_to_the_fallback($backend).await;
            }
        }
    };
}

on_backend!(sqlite, Backend::Sqlite);
on_backend!(kafka, Backend::Kafka);

/// With inbound trunks configured, an INVITE from elsewhere gets 403, unless the number is
/// open to any source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trunk_sources_reach_numbers_unless_they_are_open() {
    let app = TwimlApp::start().await;
    let config =
        "[[trunks.inbound]]\nname = \"carrier\"\nallowed_sources = [\"198.51.100.0/24\"]\n\
                  [sip]\nopen_numbers = [\"+14155550101\"]\n";
    let dialtone = Dialtone::start_with(Backend::Sqlite, config).await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml("/voice", "<Response><Say>Hello.</Say><Hangup/></Response>");
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    dialtone
        .provision("+14155550101", &app.url("/voice"), None)
        .await;
    let run = Sipp::scenario("inbound_forbidden.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", 9)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("expected 403", &dialtone);
    assert!(app.requests().is_empty());
    let rtp = RtpSink::start();
    let run = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", "+14155550101")
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("the open number refused the call", &dialtone);
    assert_eq!(app.requests().len(), 1);
}

/// A document that redirects to itself forever is cut off: `twiml.failed` with class `loop`,
/// and the call ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_is_detected_and_ends_the_call() {
    let (dialtone, app) = setup(Backend::Sqlite).await;
    app.twiml(
        "/voice",
        "<Response><Pause length=\"1\"/><Redirect>/voice</Redirect></Response>",
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let rtp = RtpSink::start();
    let run = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp", &dialtone);
    let requests = app.requests_to("/voice").len();
    assert!(
        (10..=12).contains(&requests),
        "{requests} fetches before the loop was cut"
    );
    let call = dialtone.finished_call().await;
    let events = dialtone.call_events(call["sid"].as_str().unwrap()).await;
    let failed = events
        .iter()
        .find(|e| e["type"] == "dialtone.call.twiml.failed")
        .expect("twiml.failed");
    assert_eq!(failed["data"]["class"], "loop");
    assert_eq!(failed["data"]["code"], 90100);
    assert_eq!(events.last().unwrap()["data"]["hangup_by"], "error");
}

/// The same call over TCP: SIP listens on TCP at the same address as UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tcp() {
    let (dialtone, app) = setup(Backend::Sqlite).await;
    app.twiml(
        "/voice",
        "<Response><Say>Hello over TCP.</Say><Hangup/></Response>",
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let rtp = RtpSink::start();
    let run = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .over_tcp()
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp over TCP", &dialtone);
    let call = dialtone.finished_call().await;
    assert_eq!(call["status"], "completed");
    assert!(
        rtp.packets().len() > 20,
        "no audio over the TCP-signalled call"
    );
}

/// Overload control: past `max_calls` live calls, new INVITEs get 503 (with Retry-After);
/// the live call is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_limit_get_503() {
    let app = TwimlApp::start().await;
    let dialtone = Dialtone::start_with(Backend::Sqlite, "[sip.overload]\nmax_calls = 1\n").await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Hold on.</Say><Pause length="3"/><Hangup/></Response>"#,
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let rtp = RtpSink::start();
    let first = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr());
    let first = tokio::spawn(first);
    eventually(30, "the first call to be answered", || async {
        dialtone
            .calls()
            .await
            .into_iter()
            .find(|c| c["status"] == "in-progress")
            .map(|_| ())
    })
    .await;
    let second = Sipp::scenario("inbound_overloaded.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", 9)
        .run(dialtone.sip_addr())
        .await;
    second.assert_success("expected 503", &dialtone);
    let first = first.await.unwrap();
    assert!(first.success, "the live call suffered:\n{}", first.output);
    let metrics = dialtone.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dialtone_sip_rejected_total{reason=\"calls\"} 1")),
        "{metrics}"
    );
}

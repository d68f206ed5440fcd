//! The endpoint against sipp, the real SIP peer (scenarios in tests/scenarios/), over UDP and
//! TCP. Each test runs sipp as a child process and requires its exit code 0 (every call of
//! the scenario succeeded, including its `check_it` regexps and `verifyauth`), while the app
//! side (this test) plays Dialtone with SDP built by `dialtone_sip::sdp`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dialtone_sip::endpoint::{
    CallEvent, Credentials, EndpointConfig, HangupOutcome, IncomingCall, OutgoingCall,
    OutgoingInvite, ReofferAnswer, SipEndpoint, TerminationReason, Transport,
};
use dialtone_sip::message::{NameAddr, Uri};
use dialtone_sip::sdp::{self, Codec, LocalMedia};
use tokio::sync::mpsc;
use tokio::time::timeout;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

/// A port free for both UDP and TCP right now.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

async fn endpoint() -> (SipEndpoint, mpsc::Receiver<IncomingCall>) {
    SipEndpoint::bind(EndpointConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("bind endpoint")
}

fn transport_flag(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "u1",
        Transport::Tcp => "t1",
    }
}

/// One sipp run.
struct Sipp {
    scenario: &'static str,
    target: Option<SocketAddr>,
    port: u16,
    transport: Transport,
    extra: Vec<String>,
}

impl Sipp {
    fn new(scenario: &'static str) -> Sipp {
        Sipp {
            scenario,
            target: None,
            port: free_port(),
            transport: Transport::Udp,
            extra: vec!["-m".into(), "1".into()],
        }
    }

    fn target(mut self, t: SocketAddr) -> Sipp {
        self.target = Some(t);
        self
    }

    fn transport(mut self, t: Transport) -> Sipp {
        self.transport = t;
        self
    }

    fn args(mut self, args: &[&str]) -> Sipp {
        self.extra = args.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs sipp to its end. Panics with sipp's logs unless it exits 0.
    async fn run(self) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = tokio::process::Command::new("sipp");
        cmd.current_dir(dir.path())
            .arg("-sf")
            .arg(scenario(self.scenario))
            .args(["-i", "127.0.0.1", "-nostdin", "-trace_err"])
            .args(["-t", transport_flag(self.transport)])
            .args([
                "-p",
                &self.port.to_string(),
                "-mp",
                &free_port().to_string(),
            ])
            .args([
                "-timeout",
                "40s",
                "-timeout_error",
                "-max_recv_loops",
                "1000",
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(t) = self.target {
            cmd.arg(t.to_string());
        }
        let child = cmd
            .spawn()
            .expect("sipp must be installed (Debian package sip-tester)");
        let out = timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("sipp finished")
            .expect("sipp ran");
        if !out.status.success() {
            let mut logs = String::new();
            for e in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                logs.push_str(&format!("--- {}\n", e.path().display()));
                logs.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
            panic!(
                "sipp {} exited with {:?}\nstdout tail: {}\nstderr: {}\n{logs}",
                self.scenario,
                out.status,
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n"),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts sipp as a UAS and returns once it listens (on TCP: once its port is in
    /// LISTEN state, seen in /proc/net/tcp, without connecting to it).
    async fn spawn_uas(self) -> tokio::task::JoinHandle<()> {
        let port = self.port;
        let tcp = self.transport == Transport::Tcp;
        let task = tokio::spawn(self.run());
        if tcp {
            let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
            for _ in 0..200 {
                let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
                if table.contains(&needle) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        task
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<CallEvent>) -> CallEvent {
    timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("event in time")
        .expect("event channel open")
}

async fn next_call(incoming: &mut mpsc::Receiver<IncomingCall>) -> IncomingCall {
    timeout(Duration::from_secs(30), incoming.recv())
        .await
        .expect("call in time")
        .expect("a call")
}

/// Our SDP answer to the call's offer.
fn answer_offer(call: &IncomingCall) -> String {
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_000);
    let offer = call.sdp_offer.clone().expect("offer");
    sdp::answer(&offer, &local).expect("negotiation").0
}

async fn caller_answered_then_hangs_up(transport: Transport) {
    let (ep, mut incoming) = endpoint().await;
    let ours = ep.local_addr();
    let app = tokio::spawn(async move {
        let mut call = next_call(&mut incoming).await;
        assert_eq!(call.transport, transport);
        assert_eq!(call.to.uri.user().as_deref(), Some("+15550001111"));
        assert_eq!(call.from.display_name.as_deref(), Some("Caller"));
        let diversion = call.diversion.clone().expect("Diversion header");
        assert_eq!(diversion.uri.user().as_deref(), Some("+15559998888"));
        call.call.ringing(None).await.expect("ringing");
        let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_000);
        let offer = call.sdp_offer.clone().expect("offer");
        let (answer, negotiated) = sdp::answer(&offer, &local).expect("negotiation");
        assert_eq!(negotiated.codec, Codec::Pcmu);
        assert_eq!(negotiated.telephone_event_pt, Some(101));
        call.call.answer(answer).await.expect("answer");
        assert_eq!(
            next_event(&mut call.events).await,
            CallEvent::Acked { sdp: None }
        );
        assert_eq!(next_event(&mut call.events).await, CallEvent::ByeReceived);
        assert_eq!(
            next_event(&mut call.events).await,
            CallEvent::Terminated {
                reason: TerminationReason::RemoteBye
            }
        );
        assert!(
            call.events.recv().await.is_none(),
            "nothing after Terminated"
        );
    });
    Sipp::new("uac_call_bye.xml")
        .target(ours)
        .transport(transport)
        .run()
        .await;
    timeout(Duration::from_secs(10), app)
        .await
        .expect("app done")
        .expect("app ok");
    let (stats, live) = ep.stats().await.expect("stats");
    assert_eq!(live, 0);
    if transport == Transport::Tcp {
        assert_eq!(stats.rejected_stateless, 0);
    }
}

#[tokio::test]
async fn sipp_caller_gets_answered_and_hangs_up_over_udp() {
    caller_answered_then_hangs_up(Transport::Udp).await;
}

#[tokio::test]
async fn sipp_caller_gets_answered_and_hangs_up_over_tcp() {
    caller_answered_then_hangs_up(Transport::Tcp).await;
}

#[tokio::test]
async fn sipp_calls_complete_with_ten_percent_packet_loss() {
    let (ep, mut incoming) = endpoint().await;
    let ours = ep.local_addr();
    // Every call is answered; whatever is lost (INVITE, 100, 200, ACK, BYE, 200) must be
    // recovered by retransmissions on one side or the other.
    let app = tokio::spawn(async move {
        let mut calls = Vec::new();
        while let Some(mut call) = incoming.recv().await {
            let answer = answer_offer(&call);
            calls.push(tokio::spawn(async move {
                call.call.answer(answer).await.expect("answer");
                loop {
                    let ev = timeout(Duration::from_secs(30), call.events.recv())
                        .await
                        .unwrap_or_else(|_| panic!("call {} got stuck", call.call_id))
                        .expect("event channel open");
                    match ev {
                        CallEvent::Terminated { reason } => {
                            assert_eq!(reason, TerminationReason::RemoteBye);
                            break;
                        }
                        CallEvent::Acked { .. } | CallEvent::ByeReceived => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }));
        }
        calls
    });
    Sipp::new("uac_call_bye.xml")
        .target(ours)
        .args(&["-m", "20", "-r", "10", "-l", "20", "-lost", "10"])
        .run()
        .await;
    let (stats, _) = ep.stats().await.expect("stats");
    drop(ep);
    // The endpoint stops once every handle is gone; the app loop then ends.
    let calls = timeout(Duration::from_secs(60), app)
        .await
        .expect("app done")
        .expect("app ok");
    assert_eq!(calls.len(), 20, "every INVITE made exactly one call");
    for c in calls {
        timeout(Duration::from_secs(60), c)
            .await
            .expect("call done")
            .expect("call ok");
    }
    assert!(stats.malformed == 0, "{stats:?}");
}

#[tokio::test]
async fn sipp_caller_is_put_on_hold_and_back_by_reinvite_and_update() {
    let (ep, mut incoming) = endpoint().await;
    let ours = ep.local_addr();
    let app = tokio::spawn(async move {
        let mut call = next_call(&mut incoming).await;
        let answer = answer_offer(&call);
        call.call.answer(answer.clone()).await.expect("answer");
        let mut reoffers = Vec::new();
        loop {
            match next_event(&mut call.events).await {
                CallEvent::ReInvite { sdp, method } => {
                    reoffers.push((method, sdp.is_some()));
                    // Like Dialtone's call driver: always our original answer; the SIP layer
                    // fits the direction (and the o= version) to each offer.
                    call.call
                        .respond_to_reinvite(ReofferAnswer::Accept {
                            sdp: Some(answer.clone()),
                        })
                        .await
                        .expect("respond");
                }
                CallEvent::Terminated { reason } => {
                    assert_eq!(reason, TerminationReason::RemoteBye);
                    break;
                }
                CallEvent::Acked { .. } | CallEvent::ReInviteAcked { .. } => {}
                CallEvent::ByeReceived => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        use dialtone_sip::message::Method;
        assert_eq!(
            reoffers,
            vec![
                (Method::Invite, true),
                (Method::Invite, true),
                (Method::Update, true),
                (Method::Update, true)
            ]
        );
    });
    Sipp::new("uac_hold_unhold.xml").target(ours).run().await;
    timeout(Duration::from_secs(10), app)
        .await
        .expect("app done")
        .expect("app ok");
}

#[tokio::test]
async fn dialtone_hangs_up_a_sipp_caller() {
    let (ep, mut incoming) = endpoint().await;
    let ours = ep.local_addr();
    let app = tokio::spawn(async move {
        let mut call = next_call(&mut incoming).await;
        call.call.answer(answer_offer(&call)).await.expect("answer");
        assert_eq!(
            next_event(&mut call.events).await,
            CallEvent::Acked { sdp: None }
        );
        let outcome = call.call.hangup().await.expect("hangup");
        assert_eq!(outcome, HangupOutcome::ByeAnswered { status: 200 });
        assert_eq!(
            next_event(&mut call.events).await,
            CallEvent::Terminated {
                reason: TerminationReason::LocalBye
            }
        );
    });
    Sipp::new("uac_dialtone_hangs_up.xml")
        .target(ours)
        .run()
        .await;
    timeout(Duration::from_secs(10), app)
        .await
        .expect("app done")
        .expect("app ok");
}

#[tokio::test]
async fn sipp_caller_cancels_while_ringing() {
    let (ep, mut incoming) = endpoint().await;
    let ours = ep.local_addr();
    let app = tokio::spawn(async move {
        let mut call = next_call(&mut incoming).await;
        call.call.ringing(None).await.expect("ringing");
        assert_eq!(next_event(&mut call.events).await, CallEvent::Cancelled);
        assert_eq!(
            next_event(&mut call.events).await,
            CallEvent::Terminated {
                reason: TerminationReason::Cancelled
            }
        );
        // Too late to answer.
        assert!(call.call.answer("v=0\r\n".into()).await.is_err());
    });
    Sipp::new("uac_cancel.xml").target(ours).run().await;
    timeout(Duration::from_secs(10), app)
        .await
        .expect("app done")
        .expect("app ok");
}

#[tokio::test]
async fn sipp_options_ping() {
    let (ep, _incoming) = endpoint().await;
    Sipp::new("uac_options.xml")
        .target(ep.local_addr())
        .run()
        .await;
}

// ---------------------------------------------------------------------------------------
// Outbound calls to a sipp UAS

fn outgoing(target: SocketAddr, transport: Transport, local: &LocalMedia) -> OutgoingInvite {
    let mut out = OutgoingInvite::new(
        Uri::parse(&format!("sip:+15557654321@{target}")).unwrap(),
        target,
        NameAddr::parse("<sip:+15550001111@127.0.0.1>").unwrap(),
        sdp::offer(local),
    );
    out.transport = transport;
    out.ring_timeout = Some(Duration::from_secs(15));
    out
}

/// Waits for the answer (after any 18x); returns the answer's SDP.
async fn answered(call: &mut OutgoingCall) -> String {
    let mut answer = None;
    while answer.is_none() {
        match next_event(&mut call.events).await {
            CallEvent::Progress { status, .. } => assert_eq!(status, 180),
            CallEvent::Answered { sdp } => answer = sdp,
            other => panic!("unexpected {other:?}"),
        }
    }
    answer.expect("answer SDP")
}

/// Waits for the answer (after any 18x) and hangs up; returns the answer's SDP.
async fn answered_then_hang_up(call: &mut OutgoingCall) -> String {
    let answer = answered(call).await;
    hang_up(call).await;
    answer
}

async fn hang_up(call: &mut OutgoingCall) {
    let outcome = timeout(Duration::from_secs(20), call.call.hangup())
        .await
        .expect("hangup in time")
        .expect("hangup");
    assert_eq!(outcome, HangupOutcome::ByeAnswered { status: 200 });
    assert_eq!(
        next_event(&mut call.events).await,
        CallEvent::Terminated {
            reason: TerminationReason::LocalBye
        }
    );
}

async fn outbound_answered(transport: Transport) {
    let (ep, _incoming) = endpoint().await;
    let uas = Sipp::new("uas_answer.xml").transport(transport);
    let target = uas.addr();
    let sipp = uas.spawn_uas().await;
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_002);
    let mut call = ep
        .invite(outgoing(target, transport, &local))
        .await
        .expect("invite");
    assert!(!call.call_id.is_empty());
    let answer = answered(&mut call).await;
    let expected_connections = usize::from(transport == Transport::Tcp);
    let (stats, _) = ep.stats().await.expect("stats");
    assert_eq!(stats.tcp_connections, expected_connections);
    hang_up(&mut call).await;
    let (stats, _) = ep.stats().await.expect("stats");
    assert_eq!(
        stats.tcp_connections, expected_connections,
        "the INVITE's connection is reused for the ACK and the BYE"
    );
    let negotiated = sdp::accept_answer(&answer, &local).expect("answer SDP");
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.telephone_event_pt, Some(101));
    timeout(Duration::from_secs(30), sipp)
        .await
        .expect("sipp done")
        .expect("sipp ok");
}

#[tokio::test]
async fn outbound_call_to_sipp_uas_is_answered_and_hung_up_over_udp() {
    outbound_answered(Transport::Udp).await;
}

#[tokio::test]
async fn outbound_call_to_sipp_uas_is_answered_and_hung_up_over_tcp() {
    outbound_answered(Transport::Tcp).await;
}

#[tokio::test]
async fn outbound_call_to_a_busy_sipp_uas_is_busy() {
    let (ep, _incoming) = endpoint().await;
    let uas = Sipp::new("uas_busy.xml");
    let target = uas.addr();
    let sipp = uas.spawn_uas().await;
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_004);
    let mut call = ep
        .invite(outgoing(target, Transport::Udp, &local))
        .await
        .expect("invite");
    let CallEvent::Terminated { reason } = next_event(&mut call.events).await else {
        panic!("expected the end of the call")
    };
    assert_eq!(
        reason,
        TerminationReason::Failed {
            status: 486,
            reason: "Busy Here".into()
        }
    );
    assert_eq!(reason.twilio_status(), "busy");
    timeout(Duration::from_secs(30), sipp)
        .await
        .expect("sipp done")
        .expect("sipp ok");
}

#[tokio::test]
async fn outbound_call_unanswered_is_cancelled_after_the_ring_timeout() {
    let (ep, _incoming) = endpoint().await;
    let uas = Sipp::new("uas_no_answer.xml");
    let target = uas.addr();
    let sipp = uas.spawn_uas().await;
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_006);
    let mut out = outgoing(target, Transport::Udp, &local);
    out.ring_timeout = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let mut call = ep.invite(out).await.expect("invite");
    assert!(matches!(
        next_event(&mut call.events).await,
        CallEvent::Progress { status: 180, .. }
    ));
    let CallEvent::Terminated { reason } = next_event(&mut call.events).await else {
        panic!("expected the end of the call")
    };
    assert_eq!(reason, TerminationReason::TimedOut);
    assert_eq!(reason.twilio_status(), "no-answer");
    assert!(started.elapsed() >= Duration::from_secs(1));
    timeout(Duration::from_secs(30), sipp)
        .await
        .expect("sipp done")
        .expect("sipp ok");
}

#[tokio::test]
async fn outbound_call_answers_a_401_challenge_and_is_answered() {
    let (ep, _incoming) = endpoint().await;
    let uas = Sipp::new("uas_auth.xml");
    let target = uas.addr();
    let sipp = uas.spawn_uas().await;
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_008);
    let mut out = outgoing(target, Transport::Udp, &local);
    out.credentials = Some(Credentials {
        username: "dialtone".into(),
        password: "s3cret".into(),
    });
    let mut call = ep.invite(out).await.expect("invite");
    answered_then_hang_up(&mut call).await;
    // sipp's verifyauth checked the digest; its exit code says so.
    timeout(Duration::from_secs(30), sipp)
        .await
        .expect("sipp done")
        .expect("sipp ok");
}

#[tokio::test]
async fn outbound_call_with_a_wrong_password_fails() {
    let (ep, _incoming) = endpoint().await;
    // sipp answers a bad digest with 403 and then fails its own call on purpose.
    let uas = Sipp::new("uas_auth.xml");
    let target = uas.addr();
    let sipp = tokio::spawn(async move {
        let _ = tokio::spawn(uas.run()).await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_010);
    let mut out = outgoing(target, Transport::Udp, &local);
    out.credentials = Some(Credentials {
        username: "dialtone".into(),
        password: "wrong".into(),
    });
    let mut call = ep.invite(out).await.expect("invite");
    let CallEvent::Terminated { reason } = next_event(&mut call.events).await else {
        panic!("expected the end of the call")
    };
    assert_eq!(
        reason,
        TerminationReason::Failed {
            status: 403,
            reason: "Forbidden".into()
        }
    );
    assert_eq!(reason.twilio_status(), "failed");
    sipp.abort();
}

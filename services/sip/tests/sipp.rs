//! The UDP endpoint against sipp, the real SIP peer (scenarios in tests/scenarios/). Each
//! test runs `sipp -m 1` as a child process and requires its exit code 0, while the app side
//! (this test) answers with an SDP answer built by `dialtone_sip::sdp`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dialtone_sip::endpoint::{
    CallEvent, EndpointConfig, HangupOutcome, OutgoingInvite, SipEndpoint, TerminationReason,
};
use dialtone_sip::message::{NameAddr, Uri};
use dialtone_sip::sdp::{self, Codec, LocalMedia};
use tokio::time::timeout;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

async fn endpoint() -> (
    SipEndpoint,
    tokio::sync::mpsc::Receiver<dialtone_sip::endpoint::IncomingCall>,
) {
    SipEndpoint::bind(EndpointConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("bind endpoint")
}

/// Runs sipp with one call of `scenario` against `target` (or as a UAS when `target` is
/// `None`), from its own port. Panics with sipp's error log unless it exits 0.
async fn run_sipp(scenario_file: &str, target: Option<SocketAddr>, port: u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.current_dir(dir.path())
        .arg("-sf")
        .arg(scenario(scenario_file))
        .args(["-m", "1", "-i", "127.0.0.1", "-nostdin", "-trace_err"])
        .args(["-p", &port.to_string(), "-mp", &free_udp_port().to_string()])
        .args([
            "-timeout",
            "20s",
            "-timeout_error",
            "-max_recv_loops",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(t) = target {
        cmd.arg(t.to_string());
    }
    let child = cmd
        .spawn()
        .expect("sipp must be installed (Debian package sip-tester)");
    let out = timeout(Duration::from_secs(40), child.wait_with_output())
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
            "sipp {scenario_file} exited with {:?}\nstdout tail: {}\nstderr: {}\n{logs}",
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

async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<CallEvent>) -> CallEvent {
    timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("event in time")
        .expect("event channel open")
}

#[tokio::test]
async fn sipp_caller_gets_answered_and_hangs_up() {
    let (ep, mut incoming) = endpoint().await;
    let ours = ep.local_addr();
    let app = tokio::spawn(async move {
        let mut call = timeout(Duration::from_secs(20), incoming.recv())
            .await
            .expect("call in time")
            .expect("a call");
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
    run_sipp("uac_call_bye.xml", Some(ours), free_udp_port()).await;
    timeout(Duration::from_secs(10), app)
        .await
        .expect("app done")
        .expect("app ok");
    let (_, live) = ep.stats().await.expect("stats");
    assert_eq!(live, 0);
}

#[tokio::test]
async fn sipp_caller_cancels_while_ringing() {
    let (ep, mut incoming) = endpoint().await;
    let ours = ep.local_addr();
    let app = tokio::spawn(async move {
        let mut call = incoming.recv().await.expect("a call");
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
    run_sipp("uac_cancel.xml", Some(ours), free_udp_port()).await;
    timeout(Duration::from_secs(10), app)
        .await
        .expect("app done")
        .expect("app ok");
}

#[tokio::test]
async fn sipp_options_ping() {
    let (ep, _incoming) = endpoint().await;
    run_sipp("uac_options.xml", Some(ep.local_addr()), free_udp_port()).await;
}

#[tokio::test]
async fn outbound_call_to_sipp_uas_is_answered_and_hung_up() {
    let (ep, _incoming) = endpoint().await;
    let sipp_port = free_udp_port();
    let sipp = tokio::spawn(run_sipp("uas_answer.xml", None, sipp_port));
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40_002);
    let target: SocketAddr = format!("127.0.0.1:{sipp_port}").parse().unwrap();
    let mut call = ep
        .invite(OutgoingInvite {
            target: Uri::parse(&format!("sip:+15557654321@{target}")).unwrap(),
            destination: target,
            from: NameAddr::parse("<sip:+15550001111@127.0.0.1>").unwrap(),
            to: None,
            sdp: sdp::offer(&local),
            headers: Vec::new(),
            credentials: None,
            ring_timeout: Some(Duration::from_secs(15)),
        })
        .await
        .expect("invite");
    assert!(!call.call_id.is_empty());
    let mut answer = None;
    while answer.is_none() {
        match next_event(&mut call.events).await {
            CallEvent::Progress { status, .. } => assert_eq!(status, 180),
            CallEvent::Answered { sdp } => answer = sdp,
            other => panic!("unexpected {other:?}"),
        }
    }
    let negotiated = sdp::accept_answer(&answer.unwrap(), &local).expect("answer SDP");
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.telephone_event_pt, Some(101));
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
    timeout(Duration::from_secs(30), sipp)
        .await
        .expect("sipp done")
        .expect("sipp ok");
}

//! The UDP endpoint with real sockets: a raw UDP peer plays the carrier.

use std::net::SocketAddr;
use std::time::Duration;

use dialtone_sip::endpoint::{
    CallEvent, EndpointConfig, HangupOutcome, IncomingCall, ReofferAnswer, SipEndpoint,
};
use dialtone_sip::message::{
    parse_datagram, HeaderName, Method, Parsed, Request, Response, SipMessage,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

const OFFER: &str = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

struct Peer {
    sock: UdpSocket,
    target: SocketAddr,
}

impl Peer {
    async fn new(target: SocketAddr) -> Peer {
        Peer {
            sock: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            target,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("addr")
    }

    async fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.target)
            .await
            .expect("send");
    }

    async fn recv(&self) -> SipMessage {
        let mut buf = vec![0u8; 65535];
        let (n, _) = timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
            .await
            .expect("a datagram in time")
            .expect("recv");
        match parse_datagram(&buf[..n]) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("endpoint sent garbage: {other:?}"),
        }
    }

    async fn response(&self) -> Response {
        match self.recv().await {
            SipMessage::Response(r) => r,
            SipMessage::Request(r) => panic!("expected a response, got {}", r.method),
        }
    }

    async fn request(&self) -> Request {
        match self.recv().await {
            SipMessage::Request(r) => r,
            SipMessage::Response(r) => panic!("expected a request, got {}", r.status),
        }
    }

    async fn nothing_for(&self, d: Duration) {
        let mut buf = vec![0u8; 65535];
        if let Ok(Ok((n, _))) = timeout(d, self.sock.recv_from(&mut buf)).await {
            panic!(
                "unexpected datagram: {}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }

    fn invite(&self, call_id: &str, branch: &str) -> String {
        let me = self.addr();
        format!(
            "INVITE sip:+15550001111@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
From: <sip:+15552223333@{me}>;tag=ft\r\nTo: <sip:+15550001111@{t}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:caller@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
            OFFER.len(),
            t = self.target
        )
    }

    fn in_dialog(
        &self,
        ok: &Response,
        method: &str,
        cseq: u32,
        branch: &str,
        body: &str,
        ct: &str,
    ) -> String {
        let me = self.addr();
        format!(
            "{method} sip:dialtone@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
From: <sip:+15552223333@{me}>;tag=ft\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:caller@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            t = self.target,
            to = ok.headers.get(&HeaderName::To).unwrap(),
            cid = ok.headers.call_id().unwrap(),
        )
    }
}

async fn start(cfg: EndpointConfig) -> (SipEndpoint, mpsc::Receiver<IncomingCall>) {
    SipEndpoint::bind(cfg).await.expect("bind")
}

fn cfg() -> EndpointConfig {
    EndpointConfig::new("127.0.0.1:0".parse().unwrap())
}

async fn next_call(rx: &mut mpsc::Receiver<IncomingCall>) -> IncomingCall {
    timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("call in time")
        .expect("call")
}

async fn next_event(call: &mut IncomingCall) -> CallEvent {
    timeout(Duration::from_secs(5), call.events.recv())
        .await
        .expect("event in time")
        .expect("event")
}

/// INVITE, answer, ACK: returns the call and our 200.
async fn established(
    peer: &Peer,
    rx: &mut mpsc::Receiver<IncomingCall>,
    call_id: &str,
) -> (IncomingCall, Response) {
    peer.send(&peer.invite(call_id, &format!("z9hG4bK{call_id}")))
        .await;
    assert_eq!(peer.response().await.status, 100);
    let mut call = next_call(rx).await;
    call.call.answer("v=0\r\no=d 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n".into())
        .await
        .expect("answer");
    let ok = peer.response().await;
    assert_eq!(ok.status, 200);
    peer.send(&peer.in_dialog(&ok, "ACK", 1, &format!("z9hG4bKack{call_id}"), "", ""))
        .await;
    assert_eq!(next_event(&mut call).await, CallEvent::Acked { sdp: None });
    (call, ok)
}

#[tokio::test]
async fn retransmitted_invite_is_absorbed() {
    let (ep, mut rx) = start(cfg()).await;
    let peer = Peer::new(ep.local_addr()).await;
    let inv = peer.invite("rt-1", "z9hG4bKrt1");
    peer.send(&inv).await;
    assert_eq!(peer.response().await.status, 100);
    peer.send(&inv).await;
    assert_eq!(peer.response().await.status, 100, "the 100 is resent");
    let call = next_call(&mut rx).await;
    assert_eq!(call.call_id, "rt-1");
    assert_eq!(call.remote_addr, peer.addr());
    assert!(
        timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "no second IncomingCall"
    );
}

#[tokio::test]
async fn garbage_is_dropped_malformed_requests_get_400_and_options_still_work() {
    let (ep, _rx) = start(cfg()).await;
    let peer = Peer::new(ep.local_addr()).await;
    for g in [
        "\u{0}\u{1}garbage",
        "GET / HTTP/1.1\r\n\r\n",
        "\r\n\r\n",
        "SIP/2.0 999 x\r\n\r\n",
    ] {
        peer.send(g).await;
    }
    peer.nothing_for(Duration::from_millis(200)).await;
    let me = peer.addr();
    peer.send(&format!(
        "OPTIONS sip:x@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbad\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: bad\r\nCSeq: 99999999999 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        t = ep.local_addr()
    ))
    .await;
    let r = peer.response().await;
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("CSeq"), "{}", r.reason);
    peer.send(&format!(
        "OPTIONS sip:x@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKok\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: ok\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        t = ep.local_addr()
    ))
    .await;
    let r = peer.response().await;
    assert_eq!(r.status, 200);
    assert!(r.headers.list_contains(&HeaderName::Allow, "INVITE"));
    let (stats, _) = ep.stats().await.expect("stats");
    assert!(stats.malformed >= 3);
}

#[tokio::test]
async fn shutdown_refuses_new_calls_but_lets_the_app_hang_up() {
    let (ep, mut rx) = start(cfg()).await;
    let peer = Peer::new(ep.local_addr()).await;
    let (mut call, _ok) = established(&peer, &mut rx, "sd-1").await;
    ep.shutdown().await.expect("shutdown");
    peer.send(&peer.invite("sd-2", "z9hG4bKsd2")).await;
    let r = peer.response().await;
    assert_eq!(r.status, 503);
    assert!(r.headers.get(&HeaderName::RetryAfter).is_some());
    let handle = call.call.clone();
    let hangup = tokio::spawn(async move { handle.hangup().await });
    let bye = peer.request().await;
    assert_eq!(bye.method, Method::Bye);
    let ok = dialtone_sip::message::response_from_request(&bye, 200, None, None);
    peer.sock
        .send_to(&ok.to_bytes(), ep.local_addr())
        .await
        .expect("send");
    let outcome = hangup.await.expect("join").expect("hangup");
    assert_eq!(outcome, HangupOutcome::ByeAnswered { status: 200 });
    assert!(matches!(
        next_event(&mut call).await,
        CallEvent::Terminated { .. }
    ));
}

#[tokio::test]
async fn info_and_reinvite_reach_the_app() {
    let (ep, mut rx) = start(cfg()).await;
    let peer = Peer::new(ep.local_addr()).await;
    let (mut call, ok) = established(&peer, &mut rx, "ri-1").await;
    peer.send(&peer.in_dialog(
        &ok,
        "INFO",
        2,
        "z9hG4bKinfo",
        "Signal=#\r\n",
        "Content-Type: application/dtmf-relay\r\n",
    ))
    .await;
    assert_eq!(peer.response().await.status, 200);
    assert_eq!(
        next_event(&mut call).await,
        CallEvent::Info {
            content_type: Some("application/dtmf-relay".into()),
            body: b"Signal=#\r\n".to_vec()
        }
    );
    let hold = OFFER.replace("1 1 IN", "1 2 IN") + "a=sendonly\r\n";
    peer.send(&peer.in_dialog(
        &ok,
        "INVITE",
        3,
        "z9hG4bKre",
        &hold,
        "Content-Type: application/sdp\r\n",
    ))
    .await;
    assert_eq!(peer.response().await.status, 100);
    match next_event(&mut call).await {
        CallEvent::ReInvite { sdp, method } => {
            assert_eq!(method, Method::Invite);
            let local = dialtone_sip::sdp::LocalMedia::new("127.0.0.1".parse().unwrap(), 5000);
            let (answer, n) = dialtone_sip::sdp::answer(&sdp.unwrap(), &local).unwrap();
            assert_eq!(n.direction, dialtone_sip::sdp::Direction::RecvOnly);
            call.call
                .respond_to_reinvite(ReofferAnswer::Accept { sdp: Some(answer) })
                .await
                .expect("respond");
        }
        other => panic!("{other:?}"),
    }
    let r = peer.response().await;
    assert_eq!(r.status, 200);
    assert!(r.body_str().unwrap().contains("a=recvonly"));
}

#[tokio::test]
async fn a_full_incoming_queue_answers_503() {
    let mut c = cfg();
    c.incoming_queue = 1;
    let (ep, _rx) = start(c).await; // never read
    let peer = Peer::new(ep.local_addr()).await;
    peer.send(&peer.invite("q-1", "z9hG4bKq1")).await;
    assert_eq!(peer.response().await.status, 100);
    peer.send(&peer.invite("q-2", "z9hG4bKq2")).await;
    assert_eq!(peer.response().await.status, 100);
    let r = peer.response().await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.call_id().unwrap(), "q-2");
}

#[tokio::test]
async fn wildcard_bind_needs_a_public_host() {
    let err = SipEndpoint::bind(EndpointConfig::new("0.0.0.0:0".parse().unwrap())).await;
    assert!(matches!(
        err,
        Err(dialtone_sip::endpoint::SipError::NoPublicHost(_))
    ));
    let (ep, _rx) = SipEndpoint::bind(
        EndpointConfig::new("0.0.0.0:0".parse().unwrap()).public_host("127.0.0.1"),
    )
    .await
    .expect("bind with public host");
    assert!(ep.local_addr().port() != 0);
}

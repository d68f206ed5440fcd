//! TCP with real sockets: framing by Content-Length (pipelined and split messages),
//! responses on the request's connection, in-dialog requests reusing it, keep-alives, and
//! the limits (garbage, oversize, connection count, idle timeout) closing connections
//! without hurting the endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use dialtone_sip::endpoint::{
    CallEvent, EndpointConfig, HangupOutcome, IncomingCall, SipEndpoint, TcpConfig, Transport,
};
use dialtone_sip::message::{parse_stream, HeaderName, Method, Parsed, SipMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

const OFFER: &str = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const ANSWER: &str = "v=0\r\no=d 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

async fn start(tcp: TcpConfig) -> (SipEndpoint, mpsc::Receiver<IncomingCall>) {
    let mut cfg = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.tcp = tcp;
    SipEndpoint::bind(cfg).await.expect("bind")
}

/// A TCP peer reading framed messages.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(to: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(to).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("addr")
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next message, or `None` when the endpoint closed the connection.
    async fn recv(&mut self) -> Option<SipMessage> {
        loop {
            match parse_stream(&self.buf) {
                Ok(Some((Parsed::Message(m), n))) => {
                    self.buf.drain(..n);
                    return Some(m);
                }
                Ok(Some((Parsed::KeepAlive, n))) => {
                    self.buf.drain(..n);
                }
                Ok(None) => {}
                Err(e) => panic!("endpoint sent garbage: {e}"),
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("data in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn status(&mut self) -> u16 {
        match self.recv().await {
            Some(SipMessage::Response(r)) => r.status,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Waits until the endpoint closes the connection, discarding what it sends.
    async fn closed_within(&mut self, d: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    fn options(&self, target: SocketAddr, n: u32) -> String {
        let me = self.addr();
        format!(
            "OPTIONS sip:dialtone@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKopt{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p{n}\r\nTo: <sip:dialtone@{target}>\r\nCall-ID: opt-{n}\r\n\
CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    }
}

#[tokio::test]
async fn pipelined_and_split_messages_are_framed_and_answered_on_the_connection() {
    let (ep, _rx) = start(TcpConfig::default()).await;
    let target = ep.local_addr();
    let mut c = Conn::open(target).await;
    // Two requests in one write, then one split in three writes (inside the header block,
    // and inside the body).
    let two = format!("{}{}", c.options(target, 1), c.options(target, 2));
    c.send(two.as_bytes()).await;
    assert_eq!(c.status().await, 200);
    assert_eq!(c.status().await, 200);
    let me = c.addr();
    let with_body = format!(
        "OPTIONS sip:dialtone@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKopt3\r\n\
Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p3\r\nTo: <sip:dialtone@{target}>\r\nCall-ID: opt-3\r\n\
CSeq: 3 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789"
    );
    let bytes = with_body.as_bytes();
    c.send(&bytes[..40]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&bytes[40..bytes.len() - 4]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&bytes[bytes.len() - 4..]).await;
    match c.recv().await {
        Some(SipMessage::Response(r)) => {
            assert_eq!(r.status, 200);
            assert_eq!(r.headers.call_id().unwrap(), "opt-3");
            // The Via says port `me` but the answer came on the connection anyway.
            assert!(r.headers.top_via().unwrap().transport == "TCP");
        }
        other => panic!("{other:?}"),
    }
    // A CRLFCRLF ping gets a CRLF pong (RFC 5626) and the connection stays up.
    c.send(b"\r\n\r\n").await;
    let mut pong = [0u8; 2];
    timeout(Duration::from_secs(2), c.stream.read_exact(&mut pong))
        .await
        .expect("pong in time")
        .expect("pong");
    assert_eq!(&pong, b"\r\n");
    c.send(c.options(target, 4).as_bytes()).await;
    assert_eq!(c.status().await, 200);
    let (stats, _) = ep.stats().await.expect("stats");
    assert_eq!(stats.tcp_connections, 1);
}

#[tokio::test]
async fn a_call_over_tcp_and_our_bye_reuse_the_callers_connection() {
    let (ep, mut rx) = start(TcpConfig::default()).await;
    let target = ep.local_addr();
    let mut c = Conn::open(target).await;
    let me = c.addr();
    let invite = format!(
        "INVITE sip:+15550001111@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKinv\r\nMax-Forwards: 70\r\n\
From: <sip:+15552223333@{me}>;tag=ft\r\nTo: <sip:+15550001111@{target}>\r\nCall-ID: tcp-call\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:caller@127.0.0.1:1;transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    );
    c.send(invite.as_bytes()).await;
    assert_eq!(c.status().await, 100);
    let mut call = timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("call in time")
        .expect("call");
    assert_eq!(call.transport, Transport::Tcp);
    assert_eq!(call.remote_addr, me);
    call.call.answer(ANSWER.into()).await.expect("answer");
    let ok = match c.recv().await {
        Some(SipMessage::Response(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(ok.status, 200);
    assert!(ok
        .headers
        .get(&HeaderName::Contact)
        .unwrap()
        .contains("transport=tcp"));
    let ack = format!(
        "ACK sip:dialtone@{target};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKack\r\nMax-Forwards: 70\r\n\
From: <sip:+15552223333@{me}>;tag=ft\r\nTo: {}\r\nCall-ID: tcp-call\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        ok.headers.get(&HeaderName::To).unwrap()
    );
    c.send(ack.as_bytes()).await;
    let ev = timeout(Duration::from_secs(5), call.events.recv())
        .await
        .expect("event")
        .expect("event");
    assert_eq!(ev, CallEvent::Acked { sdp: None });
    // The caller's Contact (port 1) accepts no connection: the BYE must come on this one.
    let handle = call.call.clone();
    let hangup = tokio::spawn(async move { handle.hangup().await });
    let bye = match c.recv().await {
        Some(SipMessage::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.top_via().unwrap().transport, "TCP");
    let ok = dialtone_sip::message::response_from_request(&bye, 200, None, None);
    c.send(&ok.to_bytes()).await;
    let outcome = timeout(Duration::from_secs(5), hangup)
        .await
        .expect("hangup in time")
        .expect("join")
        .expect("hangup");
    assert_eq!(outcome, HangupOutcome::ByeAnswered { status: 200 });
    let (stats, live) = ep.stats().await.expect("stats");
    assert_eq!((stats.tcp_connections, live), (1, 0));
}

#[tokio::test]
async fn garbage_gets_a_400_then_the_connection_is_closed() {
    let (ep, _rx) = start(TcpConfig::default()).await;
    let target = ep.local_addr();
    // A request whose header block reads but whose Content-Length is nonsense: 400, close.
    let mut c = Conn::open(target).await;
    let me = c.addr();
    c.send(
        format!(
            "OPTIONS sip:x@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKbad\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: bad\r\nCSeq: 1 OPTIONS\r\nContent-Length: lots\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.status().await, 400);
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // Binary noise: closed without an answer.
    let mut c = Conn::open(target).await;
    c.send(b"\x00\x01\x02\xff\xfe garbage\r\n\r\n").await;
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // The endpoint is fine.
    let mut c = Conn::open(target).await;
    c.send(c.options(target, 9).as_bytes()).await;
    assert_eq!(c.status().await, 200);
    let (stats, _) = ep.stats().await.expect("stats");
    assert!(stats.malformed >= 2, "{stats:?}");
}

#[tokio::test]
async fn an_oversized_message_closes_the_connection() {
    let (ep, _rx) = start(TcpConfig {
        max_message_bytes: 4096,
        ..TcpConfig::default()
    })
    .await;
    let target = ep.local_addr();
    // A header block that never ends.
    let mut c = Conn::open(target).await;
    let me = c.addr();
    c.send(
        format!("OPTIONS sip:x@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKbig\r\n")
            .as_bytes(),
    )
    .await;
    let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
    let mut closed = false;
    for _ in 0..64 {
        if c.stream.write_all(filler.as_bytes()).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed || c.closed_within(Duration::from_secs(5)).await);
    // A complete message with a body over the limit.
    let mut c = Conn::open(target).await;
    let body = "b".repeat(10_000);
    let me = c.addr();
    let big = format!(
        "OPTIONS sip:x@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKbig2\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:x@y>\r\nCall-ID: big2\r\nCSeq: 1 OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = c.stream.write_all(big.as_bytes()).await;
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let mut c = Conn::open(target).await;
    c.send(c.options(target, 1).as_bytes()).await;
    assert_eq!(c.status().await, 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_idle_ones_closed() {
    let (ep, _rx) = start(TcpConfig {
        max_connections: 2,
        idle_timeout_secs: 1,
        ..TcpConfig::default()
    })
    .await;
    let target = ep.local_addr();
    let mut a = Conn::open(target).await;
    let mut b = Conn::open(target).await;
    a.send(a.options(target, 1).as_bytes()).await;
    assert_eq!(a.status().await, 200);
    b.send(b.options(target, 2).as_bytes()).await;
    assert_eq!(b.status().await, 200);
    let mut c = Conn::open(target).await;
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "a third connection is closed at once"
    );
    // Quiet for more than the idle timeout: both are closed by the sweep.
    assert!(a.closed_within(Duration::from_secs(5)).await);
    assert!(b.closed_within(Duration::from_secs(5)).await);
    let (stats, _) = ep.stats().await.expect("stats");
    assert_eq!(stats.tcp_connections, 0);
    // And new ones are welcome again.
    let mut d = Conn::open(target).await;
    d.send(d.options(target, 3).as_bytes()).await;
    assert_eq!(d.status().await, 200);
}

#[tokio::test]
async fn tcp_can_be_turned_off() {
    let (ep, _rx) = start(TcpConfig {
        enabled: false,
        ..TcpConfig::default()
    })
    .await;
    assert!(TcpStream::connect(ep.local_addr()).await.is_err());
}

//! Overload control with real UDP: a flood of INVITEs from one socket and from hundreds of
//! loopback source addresses (127.0.1.x, 127.0.2.x: all of 127/8 is local). New INVITEs
//! beyond the limits get 503 with Retry-After, OPTIONS are still answered, the limiter's
//! tables stay under their caps, and `dialtone_sip_rejected_total` counts the refusals.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dialtone_sip::endpoint::{EndpointConfig, OverloadConfig, SipEndpoint};
use dialtone_sip::message::{parse_datagram, HeaderName, Parsed, SipMessage};
use tokio::net::UdpSocket;
use tokio::time::timeout;

fn invite(target: SocketAddr, me: SocketAddr, n: u64) -> String {
    let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:+15550001111@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKflood{n};rport\r\nMax-Forwards: 70\r\n\
From: <sip:+1555{n}@{me}>;tag=f{n}\r\nTo: <sip:+15550001111@{target}>\r\nCall-ID: flood-{n}@{me}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:c@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

#[derive(Default)]
struct Seen {
    trying: AtomicU64,
    unavailable: AtomicU64,
    retry_after_missing: AtomicU64,
}

/// Reads every response arriving on `sock` until it has been quiet for a while.
fn drain(sock: Arc<UdpSocket>, seen: Arc<Seen>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok(Ok((n, _))) = timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
            if let Ok(Parsed::Message(SipMessage::Response(r))) = parse_datagram(&buf[..n]) {
                match r.status {
                    100 => seen.trying.fetch_add(1, Ordering::Relaxed),
                    503 => {
                        if r.headers.get(&HeaderName::RetryAfter).is_none() {
                            seen.retry_after_missing.fetch_add(1, Ordering::Relaxed);
                        }
                        seen.unavailable.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => 0,
                };
            }
        }
    })
}

/// The endpoint, and how many calls the app has been handed so far.
async fn endpoint(overload: OverloadConfig) -> (SipEndpoint, Arc<AtomicU64>) {
    let mut cfg = EndpointConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.overload = overload;
    cfg.incoming_queue = 10_000;
    let (ep, mut incoming) = SipEndpoint::bind(cfg).await.expect("bind");
    // The app takes calls and sits on them (never answers), so they count as live calls.
    let handed = Arc::new(AtomicU64::new(0));
    let count = handed.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(call) = incoming.recv().await {
            held.push(call);
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    (ep, handed)
}

/// Sends `count` INVITEs from `sock`, paced a little so that the kernel's receive buffers
/// keep up (the point is the endpoint's behaviour, not UDP drops).
async fn flood(sock: &UdpSocket, target: SocketAddr, first: u64, count: u64) {
    let me = sock.local_addr().expect("addr");
    for n in first..first + count {
        sock.send_to(invite(target, me, n).as_bytes(), target)
            .await
            .expect("send");
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn options_still_answered(target: SocketAddr) {
    let probe = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let pm = probe.local_addr().expect("addr");
    let options = format!(
        "OPTIONS sip:dialtone@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {pm};branch=z9hG4bKprobe\r\nMax-Forwards: 70\r\n\
From: <sip:probe@{pm}>;tag=p\r\nTo: <sip:dialtone@{target}>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    probe
        .send_to(options.as_bytes(), target)
        .await
        .expect("send");
    let mut buf = vec![0u8; 65_535];
    let (len, _) = timeout(Duration::from_secs(5), probe.recv_from(&mut buf))
        .await
        .expect("OPTIONS answered in time")
        .expect("recv");
    match parse_datagram(&buf[..len]) {
        Ok(Parsed::Message(SipMessage::Response(r))) => assert_eq!(r.status, 200),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_flood_of_invites_is_refused_while_options_and_memory_stay_fine() {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("metrics recorder");

    // A. Per-source rate: 1 call/s with a burst of 2, at most 50 sources tracked.
    let (a, app_a) = endpoint(OverloadConfig {
        max_calls: 10_000,
        max_server_transactions: 50_000,
        per_source_cps: 1.0,
        per_source_burst: 2,
        max_tracked_sources: 50,
        retry_after_secs: 3,
    })
    .await;
    let target = a.local_addr();
    let seen_a = Arc::new(Seen::default());
    // One source, 3,000 INVITEs.
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let reader = drain(sock.clone(), seen_a.clone());
    let started = std::time::Instant::now();
    flood(&sock, target, 0, 3_000).await;
    let single_source_secs = started.elapsed().as_secs() + 1;
    // 400 other sources (loopback aliases), 5 INVITEs each.
    let mut readers = vec![reader];
    for i in 0..400u32 {
        let ip = Ipv4Addr::new(127, 0, 1 + (i / 200) as u8, 1 + (i % 200) as u8);
        let s = Arc::new(
            UdpSocket::bind((ip, 0))
                .await
                .expect("bind a loopback alias"),
        );
        flood(&s, target, 10_000 + u64::from(i) * 10, 5).await;
        readers.push(drain(s, seen_a.clone()));
    }
    options_still_answered(target).await;
    for r in readers {
        r.await.expect("reader");
    }
    let (stats_a, live_a) = a.stats().await.expect("stats");
    assert!(stats_a.tracked_sources <= 50, "{stats_a:?}");
    // Each of the 400 sources got its burst of 2; the flooding one its burst and its rate.
    let most = 2 + single_source_secs as usize + 400 * 2;
    assert!(
        (800..=most).contains(&live_a),
        "{live_a} calls; {stats_a:?}"
    );
    assert!(
        stats_a.rejected_source_rate as usize + live_a >= 4_500,
        "nearly every INVITE was judged: {stats_a:?}"
    );
    assert_eq!(stats_a.rejected_call_limit, 0);
    assert!(seen_a.trying.load(Ordering::Relaxed) as usize <= live_a);
    assert!(seen_a.unavailable.load(Ordering::Relaxed) <= stats_a.rejected_source_rate);
    assert!(seen_a.unavailable.load(Ordering::Relaxed) >= 4_000);

    // B. Call limit: 100 live calls, no per-source limit.
    let (b, app_b) = endpoint(OverloadConfig {
        max_calls: 100,
        per_source_cps: 0.0,
        ..OverloadConfig::default()
    })
    .await;
    let target_b = b.local_addr();
    let seen_b = Arc::new(Seen::default());
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let reader = drain(sock.clone(), seen_b.clone());
    flood(&sock, target_b, 0, 1_000).await;
    options_still_answered(target_b).await;
    reader.await.expect("reader");
    let (stats_b, live_b) = b.stats().await.expect("stats");
    assert_eq!(live_b, 100, "{stats_b:?}");
    assert!(stats_b.rejected_call_limit >= 850, "{stats_b:?}");
    assert_eq!(stats_b.tracked_sources, 0);
    assert!(stats_b.server_transactions <= 101, "{stats_b:?}");
    assert!(stats_b.recent_invites <= 100, "{stats_b:?}");
    assert_eq!(seen_b.trying.load(Ordering::Relaxed), 100);

    // Every 503 carried Retry-After.
    assert_eq!(seen_a.retry_after_missing.load(Ordering::Relaxed), 0);
    assert_eq!(seen_b.retry_after_missing.load(Ordering::Relaxed), 0);
    // The metric counts the refusals by reason.
    let text = metrics.render();
    let metric = |reason: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with("dialtone_sip_rejected_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        metric("source_rate"),
        stats_a.rejected_source_rate,
        "{text}"
    );
    assert_eq!(metric("calls"), stats_b.rejected_call_limit, "{text}");
    assert_eq!(app_a.load(Ordering::Relaxed) as usize, live_a);
    assert_eq!(app_b.load(Ordering::Relaxed) as usize, live_b);
}

//! Every timer of every machine, driven with simulated time.

use super::*;
use crate::message::{parse_datagram, response_from_request, Parsed, SipMessage};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn parse_req(text: &str) -> Request {
    match parse_datagram(text.as_bytes()) {
        Ok(Parsed::Message(SipMessage::Request(r))) => r,
        other => panic!("{other:?}"),
    }
}

fn request(method: &str, branch: &str) -> Request {
    let via = if branch.is_empty() {
        "SIP/2.0/UDP 192.0.2.1:5060".to_owned()
    } else {
        format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}")
    };
    parse_req(&format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:alice@a.example>;tag=ft\r\n\
To: <sip:bob@b.example>\r\nCall-ID: cid-1\r\nCSeq: 7 {method}\r\nMax-Forwards: 70\r\n\
Route: <sip:proxy.example;lr>\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn peer() -> SocketAddr {
    "192.0.2.1:5060".parse().unwrap()
}

fn drain(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

/// Advances to `until`, firing every deadline on the way at its exact time; returns
/// (time offset of each transmit, notices).
fn run_until(
    l: &mut TransactionLayer,
    t0: Instant,
    until: Duration,
) -> (Vec<Duration>, Vec<(Duration, TxNotice)>) {
    let mut sends = Vec::new();
    let mut notices = Vec::new();
    while let Some(at) = l.poll_timeout() {
        if at > t0 + until {
            break;
        }
        for n in l.handle_timeout(at) {
            notices.push((at - t0, n));
        }
        for _ in drain(l) {
            sends.push(at - t0);
        }
    }
    (sends, notices)
}

fn first_line(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.data)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn status_of(t: &Transmit) -> u16 {
    first_line(t)[8..11].parse().unwrap()
}

fn response_for(req: &Request, status: u16) -> Response {
    response_from_request(req, status, None, Some("tt"))
}

#[test]
fn invite_client_timer_a_doubles_until_timer_b() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let tx = l
        .send_request(t0, request("INVITE", "z9hG4bKa"), peer(), Transport::Udp)
        .unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    let (sends, notices) = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(
        sends,
        vec![ms(500), ms(1500), ms(3500), ms(7500), ms(15500), ms(31500)]
    );
    assert_eq!(
        notices,
        vec![(
            ms(32000),
            TxNotice::Timeout {
                tx,
                method: Method::Invite
            }
        )]
    );
    assert!(l.is_empty());
}

#[test]
fn invite_client_non_2xx_gets_ack_and_timer_d() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKb");
    let tx = l
        .send_request(t0, inv.clone(), peer(), Transport::Udp)
        .unwrap();
    drain(&mut l);
    let (id, r) = l
        .on_response(t0 + ms(100), response_for(&inv, 180))
        .unwrap();
    assert_eq!((id, r.status), (tx, 180));
    assert_eq!(
        l.invite_client_state(tx),
        Some(InviteClientState::Proceeding)
    );
    // No retransmissions in Proceeding, and no Timer B either.
    let (sends, notices) = run_until(&mut l, t0, Duration::from_secs(60));
    assert!(sends.is_empty() && notices.is_empty());
    let now = t0 + Duration::from_secs(60);
    let (_, r) = l.on_response(now, response_for(&inv, 486)).unwrap();
    assert_eq!(r.status, 486);
    let acks = drain(&mut l);
    assert_eq!(acks.len(), 1);
    let ack_text = String::from_utf8_lossy(&acks[0].data).to_string();
    assert!(
        ack_text.starts_with("ACK sip:bob@192.0.2.2 SIP/2.0\r\n"),
        "{ack_text}"
    );
    assert!(ack_text.contains("branch=z9hG4bKb"));
    assert!(ack_text.contains("CSeq: 7 ACK"));
    assert!(ack_text.contains("To: <sip:bob@b.example>;tag=tt"));
    assert!(ack_text.contains("Route: <sip:proxy.example;lr>"));
    // A retransmitted 486 is absorbed but re-ACKed.
    assert!(l
        .on_response(now + ms(10), response_for(&inv, 486))
        .is_none());
    assert_eq!(drain(&mut l).len(), 1);
    assert_eq!(
        l.invite_client_state(tx),
        Some(InviteClientState::Completed)
    );
    let (_, _) = run_until(&mut l, now, Duration::from_secs(31));
    assert_eq!(l.len(), 1);
    let (_, _) = run_until(&mut l, now, Duration::from_secs(33));
    assert!(l.is_empty(), "Timer D ended the transaction");
}

#[test]
fn invite_client_2xx_accepted_until_timer_m() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKc");
    let tx = l
        .send_request(t0, inv.clone(), peer(), Transport::Udp)
        .unwrap();
    drain(&mut l);
    assert!(l.on_response(t0, response_for(&inv, 200)).is_some());
    assert_eq!(l.invite_client_state(tx), Some(InviteClientState::Accepted));
    assert!(
        drain(&mut l).is_empty(),
        "the TU, not the transaction, ACKs a 2xx"
    );
    // 2xx retransmissions reach the TU.
    assert!(l
        .on_response(t0 + ms(500), response_for(&inv, 200))
        .is_some());
    run_until(&mut l, t0, ms(31_999));
    assert_eq!(l.len(), 1);
    run_until(&mut l, t0, ms(32_000));
    assert!(l.is_empty(), "Timer M");
}

#[test]
fn non_invite_client_timer_e_caps_at_t2_and_timer_f_times_out() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let tx = l
        .send_request(t0, request("BYE", "z9hG4bKd"), peer(), Transport::Udp)
        .unwrap();
    drain(&mut l);
    let (sends, notices) = run_until(&mut l, t0, Duration::from_secs(40));
    let expected: Vec<Duration> = [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .into_iter()
    .map(ms)
    .collect();
    assert_eq!(sends, expected);
    assert_eq!(
        notices,
        vec![(
            ms(32000),
            TxNotice::Timeout {
                tx,
                method: Method::Bye
            }
        )]
    );
    assert!(l.is_empty());
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_then_timer_k() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bKe");
    l.send_request(t0, bye.clone(), peer(), Transport::Udp)
        .unwrap();
    drain(&mut l);
    run_until(&mut l, t0, ms(600)); // one retransmission at 500 ms, next due at 1500
    assert!(l
        .on_response(t0 + ms(700), response_for(&bye, 100))
        .is_some());
    let (sends, _) = run_until(&mut l, t0, ms(10_000));
    assert_eq!(sends, vec![ms(1500), ms(5500), ms(9500)]);
    let now = t0 + ms(10_000);
    let (_, r) = l.on_response(now, response_for(&bye, 200)).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        l.on_response(now, response_for(&bye, 200)).is_none(),
        "absorbed in Completed"
    );
    run_until(&mut l, now, ms(4_999));
    assert_eq!(l.len(), 1);
    run_until(&mut l, now, ms(5_000));
    assert!(l.is_empty(), "Timer K = T4");
}

#[test]
fn invite_server_non_2xx_timer_g_then_ack_then_timer_i() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKf");
    let inc = l
        .on_request(t0, inv.clone(), peer(), Transport::Udp)
        .unwrap()
        .unwrap();
    let tx = inc.tx.unwrap();
    l.send_response(t0, tx, &response_for(&inv, 180)).unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    // Retransmitted INVITE in Proceeding: the last provisional is resent.
    assert!(l
        .on_request(t0 + ms(100), inv.clone(), peer(), Transport::Udp)
        .unwrap()
        .is_none());
    let re = drain(&mut l);
    assert_eq!(re.len(), 1);
    assert_eq!(status_of(&re[0]), 180);
    l.send_response(t0 + ms(200), tx, &response_for(&inv, 486))
        .unwrap();
    drain(&mut l);
    let (sends, _) = run_until(&mut l, t0 + ms(200), ms(12_000));
    assert_eq!(
        sends,
        vec![ms(500), ms(1500), ms(3500), ms(7500), ms(11500)]
    );
    // Retransmitted INVITE in Completed: the final is resent.
    let now = t0 + ms(12_300);
    assert!(l
        .on_request(now, inv.clone(), peer(), Transport::Udp)
        .unwrap()
        .is_none());
    assert_eq!(status_of(&drain(&mut l)[0]), 486);
    // The ACK (same branch) confirms; no more retransmissions.
    let ack = ack_for_non_2xx(&inv, &response_for(&inv, 486));
    assert!(l
        .on_request(now, ack.clone(), peer(), Transport::Udp)
        .unwrap()
        .is_none());
    assert_eq!(
        l.invite_server_state(tx),
        Some(InviteServerState::Confirmed)
    );
    assert!(
        l.on_request(now, ack, peer(), Transport::Udp)
            .unwrap()
            .is_none(),
        "ACK retransmission absorbed"
    );
    let (sends, _) = run_until(&mut l, now, ms(4_999));
    assert!(sends.is_empty());
    assert_eq!(l.len(), 1);
    run_until(&mut l, now, ms(5_000));
    assert!(l.is_empty(), "Timer I = T4");
}

#[test]
fn invite_server_timer_h_reports_missing_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKg");
    let tx = l
        .on_request(t0, inv.clone(), peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    l.send_response(t0, tx, &response_for(&inv, 603)).unwrap();
    drain(&mut l);
    let (sends, notices) = run_until(&mut l, t0, Duration::from_secs(40));
    // G: 0.5, 1.5, 3.5, 7.5, then every T2 (4 s) until H at 32 s.
    let expected: Vec<Duration> = [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .into_iter()
    .map(ms)
    .collect();
    assert_eq!(sends, expected);
    assert_eq!(
        notices,
        vec![(
            ms(32_000),
            TxNotice::Timeout {
                tx,
                method: Method::Invite
            }
        )]
    );
    assert!(l.is_empty());
}

#[test]
fn invite_server_2xx_accepted_absorbs_invite_and_passes_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKh");
    let tx = l
        .on_request(t0, inv.clone(), peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    l.send_response(t0, tx, &response_for(&inv, 200)).unwrap();
    drain(&mut l);
    assert_eq!(l.invite_server_state(tx), Some(InviteServerState::Accepted));
    assert!(l
        .on_request(t0 + ms(10), inv.clone(), peer(), Transport::Udp)
        .unwrap()
        .is_none());
    assert!(
        drain(&mut l).is_empty(),
        "the transaction does not retransmit 2xx"
    );
    // The UAS core's retransmission goes through.
    l.send_response(t0 + ms(500), tx, &response_for(&inv, 200))
        .unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    // An ACK reusing the INVITE's branch (RFC 2543 style) goes to the TU.
    let mut ack = ack_for_non_2xx(&inv, &response_for(&inv, 200));
    ack.headers.set(HeaderName::CSeq, "7 ACK");
    let inc = l
        .on_request(t0 + ms(600), ack, peer(), Transport::Udp)
        .unwrap()
        .unwrap();
    assert_eq!(inc.tx, Some(tx));
    assert_eq!(inc.request.method, Method::Ack);
    run_until(&mut l, t0, ms(32_000));
    assert!(l.is_empty(), "Timer L");
    // A late ACK with its own branch has no transaction: the TU gets it.
    let late = request("ACK", "z9hG4bKother");
    assert!(l
        .on_request(t0 + ms(40_000), late, peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .is_none());
}

#[test]
fn non_invite_server_retransmissions_and_timer_j() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let opt = request("OPTIONS", "z9hG4bKi");
    let tx = l
        .on_request(t0, opt.clone(), peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    assert!(l
        .on_request(t0, opt.clone(), peer(), Transport::Udp)
        .unwrap()
        .is_none());
    assert!(
        drain(&mut l).is_empty(),
        "retransmission in Trying is absorbed silently"
    );
    l.send_response(t0, tx, &response_for(&opt, 200)).unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    assert!(l
        .on_request(t0 + ms(1), opt.clone(), peer(), Transport::Udp)
        .unwrap()
        .is_none());
    assert_eq!(drain(&mut l).len(), 1, "final resent");
    assert!(l.send_response(t0, tx, &response_for(&opt, 500)).is_err());
    run_until(&mut l, t0, ms(31_999));
    assert_eq!(l.len(), 1);
    run_until(&mut l, t0, ms(32_000));
    assert!(l.is_empty(), "Timer J");
}

#[test]
fn cancel_matches_its_invite_both_styles() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKj");
    let tx = l
        .on_request(t0, inv, peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    let cancel = request("CANCEL", "z9hG4bKj");
    assert_eq!(l.find_invite_for_cancel(&cancel), Some(tx));
    let ctx = l
        .on_request(t0, cancel, peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    assert_ne!(ctx, tx, "CANCEL has its own transaction");
    assert_eq!(
        l.find_invite_for_cancel(&request("CANCEL", "z9hG4bKzz")),
        None
    );

    let inv2543 = request("INVITE", "");
    let tx2 = l
        .on_request(t0, inv2543.clone(), peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    assert!(
        l.on_request(t0, inv2543, peer(), Transport::Udp)
            .unwrap()
            .is_none(),
        "2543 retransmission matched"
    );
    assert_eq!(l.find_invite_for_cancel(&request("CANCEL", "")), Some(tx2));
}

#[test]
fn rfc2543_ack_for_non_2xx_is_matched_and_bare_cookie_is_2543() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bK"); // RFC 4475 §3.2.1: the cookie alone
    let tx = l
        .on_request(t0, inv.clone(), peer(), Transport::Udp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    l.send_response(t0, tx, &response_for(&inv, 404)).unwrap();
    let ack = ack_for_non_2xx(&inv, &response_for(&inv, 404));
    assert!(l
        .on_request(t0, ack, peer(), Transport::Udp)
        .unwrap()
        .is_none());
    assert_eq!(
        l.invite_server_state(tx),
        Some(InviteServerState::Confirmed)
    );
}

#[test]
fn responses_match_on_branch_and_method() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bKk");
    l.send_request(t0, bye.clone(), peer(), Transport::Udp)
        .unwrap();
    let mut wrong_method = response_for(&bye, 200);
    wrong_method.headers.set(HeaderName::CSeq, "7 INVITE");
    assert!(l.on_response(t0, wrong_method).is_none());
    let other = response_for(&request("BYE", "z9hG4bKzz"), 200);
    assert!(l.on_response(t0, other).is_none());
    assert!(l.on_response(t0, response_for(&bye, 200)).is_some());
}

#[test]
fn configurable_t1_and_response_destination() {
    let cfg = TimerConfig {
        t1: ms(100),
        t2: ms(400),
        ..TimerConfig::default()
    };
    let mut l = TransactionLayer::new(cfg, false);
    let t0 = Instant::now();
    l.send_request(t0, request("INVITE", "z9hG4bKl"), peer(), Transport::Udp)
        .unwrap();
    drain(&mut l);
    let (sends, notices) = run_until(&mut l, t0, ms(7_000));
    assert_eq!(
        sends,
        vec![ms(100), ms(300), ms(700), ms(1500), ms(3100), ms(6300)]
    );
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].0, ms(6_400));

    let src: SocketAddr = "198.51.100.9:40000".parse().unwrap();
    let plain = Via::parse("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1").unwrap();
    assert_eq!(
        response_destination(&plain, src, Transport::Udp, false),
        "198.51.100.9:5070".parse().unwrap()
    );
    assert_eq!(response_destination(&plain, src, Transport::Udp, true), src);
    let rport = Via::parse("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport").unwrap();
    assert_eq!(
        response_destination(&rport, src, Transport::Udp, false),
        src
    );
}

#[test]
fn stamp_received_adds_received_and_rport() {
    let mut r = parse_req(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport, SIP/2.0/UDP p.example\r\n\r\n",
    );
    stamp_received(&mut r, "198.51.100.9:40000".parse().unwrap());
    assert_eq!(
        r.headers.get(&HeaderName::Via),
        Some("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport=40000;received=198.51.100.9, SIP/2.0/UDP p.example")
    );
    let mut same = parse_req(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK1\r\n\r\n",
    );
    stamp_received(&mut same, "198.51.100.9:5060".parse().unwrap());
    assert_eq!(
        same.headers.get(&HeaderName::Via),
        Some("SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK1")
    );
}

#[test]
fn timer_queue_stays_bounded_under_many_transactions() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    for i in 0..1000 {
        let req = request("OPTIONS", &format!("z9hG4bKq{i}"));
        let tx = l
            .on_request(t0, req.clone(), peer(), Transport::Udp)
            .unwrap()
            .unwrap()
            .tx
            .unwrap();
        l.send_response(t0, tx, &response_for(&req, 200)).unwrap();
    }
    assert_eq!(l.timer_queue_len(), 1000);
    run_until(&mut l, t0, Duration::from_secs(33));
    assert!(l.is_empty());
    assert_eq!(l.timer_queue_len(), 0);
}

#[test]
fn reliable_transport_has_no_retransmissions_and_ends_at_once() {
    let mut l = TransactionLayer::new(TimerConfig::default(), false);
    let t0 = Instant::now();
    // INVITE client over TCP: sent once, no Timer A; Timer B still ends it.
    let inv = request("INVITE", "z9hG4bKtcp1");
    let tx = l
        .send_request(t0, inv.clone(), peer(), Transport::Tcp)
        .unwrap();
    let first = drain(&mut l);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].transport, Transport::Tcp);
    let (sends, notices) = run_until(&mut l, t0, Duration::from_secs(40));
    assert!(sends.is_empty(), "no retransmission on TCP: {sends:?}");
    assert_eq!(
        notices,
        vec![(
            ms(32_000),
            TxNotice::Timeout {
                tx,
                method: Method::Invite
            }
        )]
    );
    // A non-2xx final: ACKed once, then the transaction is over (no Timer D).
    let inv = request("INVITE", "z9hG4bKtcp2");
    l.send_request(t0, inv.clone(), peer(), Transport::Tcp)
        .unwrap();
    drain(&mut l);
    assert!(l.on_response(t0, response_for(&inv, 486)).is_some());
    let ack = drain(&mut l);
    assert_eq!(ack.len(), 1);
    assert!(first_line(&ack[0]).starts_with("ACK "));
    assert!(l.is_empty());
    // Non-INVITE server over TCP: the final response ends it (no Timer J), and the server
    // count follows.
    let opt = request("OPTIONS", "z9hG4bKtcp3");
    assert!(!l.matches_server(&opt));
    let tx = l
        .on_request(
            t0,
            opt.clone(),
            "192.0.2.1:40000".parse().unwrap(),
            Transport::Tcp,
        )
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    assert!(l.matches_server(&opt));
    assert_eq!(l.server_count(), 1);
    assert_eq!(
        l.destination(tx),
        Some(("192.0.2.1:40000".parse().unwrap(), Transport::Tcp)),
        "responses go back on the connection, not to the Via port"
    );
    l.send_response(t0, tx, &response_for(&opt, 200)).unwrap();
    assert_eq!(drain(&mut l).len(), 1);
    assert_eq!(l.server_count(), 0);
    assert!(l.is_empty());
    // INVITE server over TCP: no Timer G for a non-2xx final; the ACK ends it.
    let inv = request("INVITE", "z9hG4bKtcp4");
    let tx = l
        .on_request(t0, inv.clone(), peer(), Transport::Tcp)
        .unwrap()
        .unwrap()
        .tx
        .unwrap();
    l.send_response(t0, tx, &response_for(&inv, 486)).unwrap();
    drain(&mut l);
    let mut ack = request("ACK", "z9hG4bKtcp4");
    ack.headers
        .set(HeaderName::To, "<sip:bob@b.example>;tag=tt");
    assert!(l
        .on_request(t0 + ms(10), ack, peer(), Transport::Tcp)
        .unwrap()
        .is_none());
    assert!(l.is_empty());
    assert_eq!(l.server_count(), 0);
}

//! UA core behaviour with simulated time: no sockets, no sleeps.

use super::*;
use crate::message::{Request, Response, SipMessage};

const PEER: &str = "192.0.2.10:5060";
const OFFER: &str = "v=0\r\no=caller 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
const ANSWER: &str = "v=0\r\no=dialtone 5 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

struct H {
    ua: UserAgent,
    t0: Instant,
    now: Instant,
    sent: Vec<(SocketAddr, SipMessage)>,
    /// Where and how each transmit went, in order (never drained by `take_sent`).
    wire: Vec<(SocketAddr, Transport)>,
    events: Vec<(CallKey, CallEvent)>,
    incoming: Vec<InboundCall>,
    hangups: Vec<(CallKey, HangupOutcome)>,
}

impl H {
    fn new() -> H {
        H::with(UaConfig {
            contact_host: "198.51.100.1".into(),
            ..UaConfig::default()
        })
    }

    fn with(cfg: UaConfig) -> H {
        let t0 = Instant::now();
        H {
            ua: UserAgent::new(cfg),
            t0,
            now: t0,
            sent: Vec::new(),
            wire: Vec::new(),
            events: Vec::new(),
            incoming: Vec::new(),
            hangups: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.ua.poll_output() {
            match o {
                UaOutput::Transmit(t) => {
                    let m = match crate::message::parse_datagram(&t.data) {
                        Ok(Parsed::Message(m)) => m,
                        other => panic!("sent garbage: {other:?}"),
                    };
                    self.sent.push((t.to, m));
                    self.wire.push((t.to, t.transport));
                }
                UaOutput::IncomingCall(c) => self.incoming.push(*c),
                UaOutput::Call { key, event } => self.events.push((key, event)),
                UaOutput::HangupDone { key, outcome } => self.hangups.push((key, outcome)),
            }
        }
    }

    fn recv(&mut self, text: &str) {
        self.ua.handle_datagram(self.now, peer(), text.as_bytes());
        self.drain();
    }

    /// Advances simulated time to `now + d`, running every deadline at its exact time.
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.ua.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.ua.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    fn take_sent(&mut self) -> Vec<SipMessage> {
        self.drain();
        self.sent.drain(..).map(|(_, m)| m).collect()
    }

    fn responses(&mut self) -> Vec<Response> {
        self.take_sent()
            .into_iter()
            .filter_map(|m| match m {
                SipMessage::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn statuses(&mut self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }

    fn requests(&mut self) -> Vec<Request> {
        self.take_sent()
            .into_iter()
            .filter_map(|m| match m {
                SipMessage::Request(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn events_for(&mut self, key: CallKey) -> Vec<CallEvent> {
        self.drain();
        let (mine, rest): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|(k, _)| *k == key);
        self.events = rest;
        mine.into_iter().map(|(_, e)| e).collect()
    }
}

fn invite(call_id: &str, branch: &str, extra: &str, sdp: Option<&str>) -> String {
    let body = sdp.unwrap_or("");
    let ct = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "INVITE sip:+15550001111@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: \"Alice\" <sip:+15552223333@carrier.example>;tag=ft\r\nTo: <sip:+15550001111@198.51.100.1>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@192.0.2.10:5060>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request inside the dialog of `ok` (our 2xx), as the caller would send it.
fn in_dialog(
    ok: &Response,
    method: &str,
    cseq: u32,
    branch: &str,
    extra: &str,
    body: &str,
) -> String {
    let to = ok.headers.get(&HeaderName::To).unwrap();
    let call_id = ok.headers.call_id().unwrap();
    let ct = if body.is_empty() {
        ""
    } else if method == "INFO" {
        "Content-Type: application/dtmf-relay\r\n"
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:dialtone@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: \"Alice\" <sip:+15552223333@carrier.example>;tag=ft\r\nTo: {to}\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:gw@192.0.2.10:5060>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// INVITE → 100 → IncomingCall → answer → 200 (returned) → ACK.
fn answered_call(h: &mut H, extra: &str) -> (CallKey, Response) {
    h.recv(&invite("call-1", "z9hG4bKinv1", extra, Some(OFFER)));
    assert_eq!(h.statuses(), vec![100]);
    let key = h.incoming.last().unwrap().key;
    h.ua.answer(h.now, key, ANSWER.into()).unwrap();
    let ok = h.responses().remove(0);
    assert_eq!(ok.status, 200);
    h.recv(&in_dialog(&ok, "ACK", 1, "z9hG4bKack1", "", ""));
    assert_eq!(h.events_for(key), vec![CallEvent::Acked { sdp: None }]);
    (key, ok)
}

#[test]
fn invite_gets_100_at_once_and_retransmissions_never_make_a_second_call() {
    let mut h = H::new();
    let inv = invite("c1", "z9hG4bK1", "", Some(OFFER));
    h.recv(&inv);
    assert_eq!(h.statuses(), vec![100]);
    assert_eq!(h.incoming.len(), 1);
    let call = &h.incoming[0];
    assert_eq!(call.sdp_offer.as_deref(), Some(OFFER));
    assert_eq!(call.from.display_name.as_deref(), Some("Alice"));
    assert_eq!(call.to.uri.user().as_deref(), Some("+15550001111"));
    h.recv(&inv);
    assert_eq!(h.statuses(), vec![100], "the 100 is resent, nothing else");
    assert_eq!(h.incoming.len(), 1);
    // After the transaction is gone, a late copy is still absorbed.
    let key = h.incoming[0].key;
    h.ua.reject(h.now, key, 486, None).unwrap();
    assert_eq!(h.statuses(), vec![486]);
    h.advance(Duration::from_secs(33));
    h.take_sent();
    h.recv(&inv);
    assert_eq!(h.incoming.len(), 1);
    assert!(h.take_sent().is_empty());
    // Same Call-ID/From tag/CSeq through another branch: merged request.
    h.recv(&invite("c1", "z9hG4bKother", "", Some(OFFER)));
    assert_eq!(h.statuses(), vec![482]);
    assert_eq!(h.incoming.len(), 1);
}

#[test]
fn ringing_answer_and_2xx_retransmission_until_ack() {
    let mut h = H::new();
    h.recv(&invite(
        "c2",
        "z9hG4bK2",
        "Record-Route: <sip:192.0.2.50;lr>\r\n",
        Some(OFFER),
    ));
    h.take_sent();
    let key = h.incoming[0].key;
    h.ua.ringing(h.now, key, None).unwrap();
    let ringing = h.responses().remove(0);
    assert_eq!(ringing.status, 180);
    let tag = ringing.headers.to().unwrap().tag().unwrap().to_owned();
    assert!(ringing.headers.get(&HeaderName::Contact).is_some());
    assert_eq!(
        ringing.headers.get(&HeaderName::RecordRoute),
        Some("<sip:192.0.2.50;lr>")
    );
    h.ua.ringing(h.now, key, Some(ANSWER.into())).unwrap();
    let progress = h.responses().remove(0);
    assert_eq!(progress.status, 183);
    assert_eq!(progress.body_str(), Some(ANSWER));
    h.ua.answer(h.now, key, ANSWER.into()).unwrap();
    let ok = h.responses().remove(0);
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers.to().unwrap().tag(),
        Some(tag.as_str()),
        "same tag as the 180"
    );
    assert_eq!(ok.headers.get(&HeaderName::Allow), Some(ALLOW));
    assert_eq!(ok.body_str(), Some(ANSWER));
    assert_eq!(
        h.ua.answer(h.now, key, ANSWER.into()),
        Err(CallError::AlreadyFinal)
    );
    // Retransmissions at T1, 2T1, 4T1... capped at T2.
    let mut times = Vec::new();
    for _ in 0..5 {
        let before = h.now;
        let next = h.ua.poll_timeout().unwrap();
        h.advance(next - before);
        let st = h.statuses();
        if st == vec![200] {
            times.push(h.now - h.t0);
        }
    }
    let ms: Vec<u128> = times.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![500, 1500, 3500, 7500, 11500]);
    h.recv(&in_dialog(&ok, "ACK", 1, "z9hG4bKack", "", ""));
    assert_eq!(h.events_for(key), vec![CallEvent::Acked { sdp: None }]);
    h.advance(Duration::from_secs(30));
    assert!(h.statuses().is_empty(), "no more 200s after the ACK");
}

#[test]
fn missing_ack_gives_ack_timeout_and_a_bye() {
    let mut h = H::new();
    h.recv(&invite("c3", "z9hG4bK3", "", Some(OFFER)));
    h.take_sent();
    let key = h.incoming[0].key;
    h.ua.answer(h.now, key, ANSWER.into()).unwrap();
    h.take_sent();
    h.advance(Duration::from_millis(31_999));
    assert!(h.events_for(key).is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.events_for(key), vec![CallEvent::AckTimeout]);
    let reqs = h.requests();
    let bye = reqs
        .iter()
        .find(|r| r.method == Method::Bye)
        .expect("BYE sent");
    assert_eq!(bye.uri.to_string(), "sip:gw@192.0.2.10:5060");
    let ok = crate::message::response_from_request(bye, 200, None, None);
    h.ua.handle_datagram(h.now, peer(), &ok.to_bytes());
    h.drain();
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::Terminated {
            reason: TerminationReason::AckTimeout
        }]
    );
    assert_eq!(h.ua.call_count(), 0);
}

#[test]
fn cancel_before_answer_gives_200_and_487() {
    let mut h = H::new();
    let inv = invite("c4", "z9hG4bK4", "", Some(OFFER));
    h.recv(&inv);
    h.take_sent();
    let key = h.incoming[0].key;
    h.ua.ringing(h.now, key, None).unwrap();
    h.take_sent();
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    h.recv(&cancel);
    let rs = h.responses();
    let st: Vec<(u16, String)> = rs
        .iter()
        .map(|r| (r.status, r.headers.cseq().unwrap().method.to_string()))
        .collect();
    assert_eq!(st, vec![(200, "CANCEL".into()), (487, "INVITE".into())]);
    assert_eq!(
        h.events_for(key),
        vec![
            CallEvent::Cancelled,
            CallEvent::Terminated {
                reason: TerminationReason::Cancelled
            }
        ]
    );
    assert_eq!(
        h.ua.answer(h.now, key, ANSWER.into()),
        Err(CallError::NoSuchCall)
    );
    // A CANCEL for nothing: 481.
    h.recv(&cancel.replace("z9hG4bK4", "z9hG4bKnothing"));
    assert_eq!(h.statuses(), vec![481]);
}

#[test]
fn bye_from_caller_ends_the_call() {
    let mut h = H::new();
    let (key, ok) = answered_call(&mut h, "");
    h.recv(&in_dialog(&ok, "BYE", 2, "z9hG4bKbye", "", ""));
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(
        h.events_for(key),
        vec![
            CallEvent::ByeReceived,
            CallEvent::Terminated {
                reason: TerminationReason::RemoteBye
            }
        ]
    );
    // The retransmitted BYE is answered by the transaction; a new one gets 481.
    h.recv(&in_dialog(&ok, "BYE", 2, "z9hG4bKbye", "", ""));
    assert_eq!(h.statuses(), vec![200]);
    h.recv(&in_dialog(&ok, "BYE", 3, "z9hG4bKbye2", "", ""));
    assert_eq!(h.statuses(), vec![481]);
}

#[test]
fn hangup_sends_bye_and_reports_its_outcome() {
    let mut h = H::new();
    let (key, _ok) = answered_call(&mut h, "");
    h.ua.hangup(h.now, key).unwrap();
    assert_eq!(h.ua.hangup(h.now, key), Err(CallError::AlreadyTerminating));
    let bye = h.requests().remove(0);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        bye.headers.from().unwrap().tag(),
        _ok.headers.to().unwrap().tag()
    );
    assert_eq!(bye.headers.to().unwrap().tag(), Some("ft"));
    let resp = crate::message::response_from_request(&bye, 200, None, None);
    h.ua.handle_datagram(h.now, peer(), &resp.to_bytes());
    h.drain();
    assert_eq!(
        h.hangups,
        vec![(key, HangupOutcome::ByeAnswered { status: 200 })]
    );
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::Terminated {
            reason: TerminationReason::LocalBye
        }]
    );

    // BYE never answered: Timer F.
    let mut h = H::new();
    let (key, _) = answered_call(&mut h, "");
    h.ua.hangup(h.now, key).unwrap();
    h.advance(Duration::from_secs(32));
    assert_eq!(h.hangups, vec![(key, HangupOutcome::ByeTimedOut)]);
}

#[test]
fn hangup_before_ack_waits_for_the_ack_and_before_answer_declines() {
    let mut h = H::new();
    h.recv(&invite("c5", "z9hG4bK5", "", Some(OFFER)));
    let key = h.incoming[0].key;
    h.ua.answer(h.now, key, ANSWER.into()).unwrap();
    let ok = h.responses().pop().unwrap();
    h.ua.hangup(h.now, key).unwrap();
    assert!(h.requests().is_empty(), "no BYE before the ACK");
    h.recv(&in_dialog(&ok, "ACK", 1, "z9hG4bKa5", "", ""));
    assert_eq!(h.requests().len(), 1, "BYE right after the ACK");

    let mut h = H::new();
    h.recv(&invite("c6", "z9hG4bK6", "", Some(OFFER)));
    h.take_sent();
    let key = h.incoming[0].key;
    h.ua.hangup(h.now, key).unwrap();
    assert_eq!(h.statuses(), vec![603]);
    assert_eq!(
        h.hangups,
        vec![(key, HangupOutcome::Rejected { status: 603 })]
    );
}

#[test]
fn info_options_and_unknown_dialogs() {
    let mut h = H::new();
    let (key, ok) = answered_call(&mut h, "");
    h.recv(&in_dialog(
        &ok,
        "INFO",
        2,
        "z9hG4bKi",
        "",
        "Signal=5\r\nDuration=160\r\n",
    ));
    assert_eq!(h.statuses(), vec![200]);
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::Info {
            content_type: Some("application/dtmf-relay".into()),
            body: b"Signal=5\r\nDuration=160\r\n".to_vec()
        }]
    );
    h.recv(&in_dialog(&ok, "OPTIONS", 3, "z9hG4bKo", "", ""));
    let r = h.responses().remove(0);
    assert_eq!(
        (r.status, r.headers.get(&HeaderName::Allow)),
        (200, Some(ALLOW))
    );
    // Lower CSeq than the last one: out of order.
    h.recv(&in_dialog(&ok, "INFO", 2, "z9hG4bKi2", "", ""));
    assert_eq!(h.statuses(), vec![500]);
    let stranger = in_dialog(&ok, "INFO", 9, "z9hG4bKx", "", "").replace("tag=ft", "tag=other");
    h.recv(&stranger);
    assert_eq!(h.statuses(), vec![481]);
    h.recv(
        "OPTIONS sip:x@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKopt\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:x@198.51.100.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    );
    let r = h.responses().remove(0);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get(&HeaderName::Accept), Some("application/sdp"));
}

#[test]
fn reinvite_is_delivered_answered_and_acked() {
    let mut h = H::new();
    let (key, ok) = answered_call(&mut h, "");
    let hold = OFFER.replace("o=caller 1 1", "o=caller 1 2") + "a=sendonly\r\n";
    h.recv(&in_dialog(&ok, "INVITE", 2, "z9hG4bKre", "", &hold));
    assert_eq!(h.statuses(), vec![100]);
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::ReInvite {
            sdp: Some(hold.clone()),
            method: Method::Invite
        }]
    );
    // A second re-INVITE while the first waits: 500 with Retry-After.
    h.recv(&in_dialog(&ok, "INVITE", 3, "z9hG4bKre2", "", &hold));
    let r = h.responses().into_iter().find(|r| r.status != 100).unwrap();
    assert_eq!(r.status, 500);
    assert!(r.headers.get(&HeaderName::RetryAfter).is_some());
    let new_answer = ANSWER.replace("5 1", "5 2") + "a=recvonly\r\n";
    h.ua.respond_to_reoffer(
        h.now,
        key,
        ReofferAnswer::Accept {
            sdp: Some(new_answer.clone()),
        },
    )
    .unwrap();
    let r = h.responses().remove(0);
    assert_eq!((r.status, r.body_str()), (200, Some(new_answer.as_str())));
    assert_eq!(
        h.ua.respond_to_reoffer(h.now, key, ReofferAnswer::Accept { sdp: None }),
        Err(CallError::NoPendingReoffer)
    );
    h.advance(Duration::from_millis(500));
    // (The 500 to the second re-INVITE is retransmitted by its transaction too.)
    assert!(
        h.statuses().contains(&200),
        "re-INVITE 2xx retransmitted too"
    );
    h.recv(&in_dialog(&ok, "ACK", 2, "z9hG4bKreack", "", ""));
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::ReInviteAcked { sdp: None }]
    );
    // The same offer again (unchanged o= version) is answered without the app.
    h.recv(&in_dialog(&ok, "INVITE", 4, "z9hG4bKre3", "", &hold));
    let r = h.responses().into_iter().find(|r| r.status == 200).unwrap();
    assert_eq!(r.body_str(), Some(new_answer.as_str()));
    assert!(h.events_for(key).is_empty());
}

#[test]
fn reoffer_not_answered_in_time_gets_500_and_update_without_body_is_a_refresh() {
    let mut h = H::new();
    let (key, ok) = answered_call(&mut h, "");
    let offer2 = OFFER.replace("o=caller 1 1", "o=caller 1 2");
    h.recv(&in_dialog(&ok, "UPDATE", 2, "z9hG4bKu", "", &offer2));
    assert!(h.statuses().is_empty());
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::ReInvite {
            sdp: Some(offer2),
            method: Method::Update
        }]
    );
    h.advance(Duration::from_secs(10));
    assert_eq!(h.statuses(), vec![500]);
    h.recv(&in_dialog(&ok, "UPDATE", 3, "z9hG4bKu2", "", ""));
    assert_eq!(h.statuses(), vec![200]);
    assert!(h.events_for(key).is_empty());
}

#[test]
fn method_scheme_require_and_body_policies() {
    let mut h = H::new();
    let base = invite("p1", "z9hG4bKp1", "", Some(OFFER));
    h.recv(
        &base
            .replace("INVITE sip:", "SUBSCRIBE sip:")
            .replace("1 INVITE", "1 SUBSCRIBE"),
    );
    assert_eq!(h.statuses(), vec![405]);
    h.recv(
        &base
            .replace("INVITE sip:", "FROB sip:")
            .replace("1 INVITE", "1 FROB")
            .replace("z9hG4bKp1", "z9hG4bKp2"),
    );
    assert_eq!(h.statuses(), vec![501]);
    h.recv(&invite(
        "p3",
        "z9hG4bKp3",
        "Require: 100rel\r\n",
        Some(OFFER),
    ));
    let r = h.responses().remove(0);
    assert_eq!(
        (r.status, r.headers.get(&HeaderName::Unsupported)),
        (420, Some("100rel"))
    );
    h.recv(&invite(
        "p4",
        "z9hG4bKp4",
        "Session-Expires: 60\r\n",
        Some(OFFER),
    ));
    let r = h.responses().remove(0);
    assert_eq!(
        (r.status, r.headers.get(&HeaderName::MinSe)),
        (422, Some("90"))
    );
    h.recv(&invite("p5", "z9hG4bKp5", "", Some(OFFER)).replace("application/sdp", "text/html"));
    assert_eq!(h.statuses(), vec![415]);
    assert!(h.incoming.is_empty());
    // SDP inside multipart/mixed (SIP-I) is found.
    let body = format!("--xx\r\nContent-Type: application/sdp\r\n\r\n{OFFER}\r\n--xx\r\nContent-Type: application/isup\r\n\r\n\x01\x02\r\n--xx--\r\n");
    h.recv(&invite("p6", "z9hG4bKp6", "", Some(&body)).replace(
        "application/sdp\r\nContent-Length",
        "multipart/mixed;boundary=xx\r\nContent-Length",
    ));
    assert_eq!(h.statuses(), vec![100]);
    assert_eq!(h.incoming[0].sdp_offer.as_deref(), Some(OFFER));
}

#[test]
fn session_timer_uac_refreshes_or_we_hang_up() {
    let mut h = H::new();
    let (key, ok) = answered_call(
        &mut h,
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
    );
    assert_eq!(
        ok.headers.get(&HeaderName::SessionExpires),
        Some("120;refresher=uac")
    );
    assert_eq!(ok.headers.get(&HeaderName::Require), Some("timer"));
    // A refresh at half time keeps the call.
    h.advance(Duration::from_secs(60));
    h.recv(&in_dialog(
        &ok,
        "UPDATE",
        2,
        "z9hG4bKr1",
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        "",
    ));
    let r = h.responses().remove(0);
    assert_eq!(
        (r.status, r.headers.get(&HeaderName::SessionExpires)),
        (200, Some("120;refresher=uac"))
    );
    h.advance(Duration::from_secs(87));
    assert!(h.requests().is_empty());
    // Then silence: BYE at 120 - min(32, 40) = 88 s after the refresh.
    h.advance(Duration::from_secs(1));
    assert_eq!(h.events_for(key), vec![CallEvent::SessionExpired]);
    let bye = h.requests().remove(0);
    assert_eq!(bye.method, Method::Bye);
    assert!(bye.headers.get(&HeaderName::Reason).is_some());
}

#[test]
fn session_timer_we_refresh_with_update_when_uac_lacks_timer() {
    let mut h = H::new();
    let (key, ok) = answered_call(
        &mut h,
        "Session-Expires: 200\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n",
    );
    assert_eq!(
        ok.headers.get(&HeaderName::SessionExpires),
        Some("200;refresher=uas")
    );
    assert_eq!(ok.headers.get(&HeaderName::Require), None);
    h.advance(Duration::from_secs(100));
    let upd = h.requests().remove(0);
    assert_eq!(upd.method, Method::Update);
    assert_eq!(
        upd.headers.get(&HeaderName::SessionExpires),
        Some("200;refresher=uac")
    );
    // Glare: the caller re-INVITEs while our UPDATE is pending.
    h.recv(&in_dialog(&ok, "INVITE", 2, "z9hG4bKg", "", OFFER));
    assert!(h.statuses().contains(&491));
    let resp = crate::message::response_from_request(&upd, 200, None, None);
    h.ua.handle_datagram(h.now, peer(), &resp.to_bytes());
    h.drain();
    h.advance(Duration::from_secs(100));
    assert_eq!(
        h.requests()
            .iter()
            .filter(|r| r.method == Method::Update)
            .count(),
        1
    );
    assert!(h.events_for(key).is_empty());
}

#[test]
fn shutdown_answers_503_and_leaves_calls_alone() {
    let mut h = H::new();
    let (key, _ok) = answered_call(&mut h, "");
    h.ua.stop_accepting();
    h.recv(&invite("late", "z9hG4bKlate", "", Some(OFFER)));
    let r = h.responses().remove(0);
    assert_eq!(
        (r.status, r.headers.get(&HeaderName::RetryAfter)),
        (503, Some("30"))
    );
    h.ua.hangup(h.now, key).unwrap();
    assert_eq!(h.requests()[0].method, Method::Bye);
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut h = H::new();
    for g in [
        &b"\x00\x01\x02"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200\r\n\r\n",
        b"\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKg\r\nContent-Length: 99\r\n\r\n",
    ] {
        h.ua.handle_datagram(h.now, peer(), g);
        h.drain();
    }
    let st = h.statuses();
    assert_eq!(st, vec![400], "only the request with a Via gets an answer");
    assert!(h.ua.stats().malformed >= 4);
}

// ------------------------------------------------------------------------------------
// UAC
// ------------------------------------------------------------------------------------

fn outgoing(creds: Option<Credentials>, ring: Option<Duration>) -> OutgoingInvite {
    OutgoingInvite {
        target: Uri::parse("sip:+15557654321@192.0.2.10").unwrap(),
        destination: peer(),
        transport: Transport::Udp,
        from: NameAddr::parse("<sip:+15550001111@198.51.100.1>").unwrap(),
        to: None,
        sdp: ANSWER.into(),
        headers: vec![("X-Test".into(), "1".into())],
        credentials: creds,
        ring_timeout: ring,
    }
}

fn reply(
    req: &Request,
    status: u16,
    tag: &str,
    extra: &[(HeaderName, &str)],
    sdp: Option<&str>,
) -> Vec<u8> {
    let mut r = crate::message::response_from_request(req, status, None, Some(tag));
    r.headers
        .push(HeaderName::Contact, "<sip:callee@192.0.2.10:5060>");
    for (n, v) in extra {
        r.headers.push(n.clone(), *v);
    }
    if let Some(s) = sdp {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = s.as_bytes().to_vec();
    }
    r.to_bytes()
}

#[test]
fn uac_invite_progress_answer_ack_and_bye() {
    let mut h = H::new();
    let key = h.ua.invite(h.now, outgoing(None, None)).unwrap();
    let inv = h.requests().remove(0);
    assert_eq!(inv.method, Method::Invite);
    assert_eq!(inv.headers.get(&HeaderName::parse("X-Test")), Some("1"));
    assert!(inv.headers.from().unwrap().tag().is_some());
    h.ua.handle_datagram(h.now, peer(), &reply(&inv, 100, "rt", &[], None));
    h.ua.handle_datagram(h.now, peer(), &reply(&inv, 183, "rt", &[], Some(OFFER)));
    h.drain();
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::Progress {
            status: 183,
            reason: "Session Progress".into(),
            sdp: Some(OFFER.into())
        }]
    );
    let ok = reply(&inv, 200, "rt", &[], Some(OFFER));
    h.ua.handle_datagram(h.now, peer(), &ok);
    h.drain();
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::Answered {
            sdp: Some(OFFER.into())
        }]
    );
    let ack = h.requests().remove(0);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri.to_string(), "sip:callee@192.0.2.10:5060");
    assert_eq!(
        ack.headers.cseq().unwrap().seq,
        inv.headers.cseq().unwrap().seq
    );
    // A retransmitted 2xx is ACKed again.
    h.ua.handle_datagram(h.now, peer(), &ok);
    h.drain();
    assert_eq!(h.requests()[0].method, Method::Ack);
    h.ua.hangup(h.now, key).unwrap();
    let bye = h.requests().remove(0);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.to().unwrap().tag(), Some("rt"));
    let r = crate::message::response_from_request(&bye, 200, None, None);
    h.ua.handle_datagram(h.now, peer(), &r.to_bytes());
    h.drain();
    assert_eq!(
        h.hangups,
        vec![(key, HangupOutcome::ByeAnswered { status: 200 })]
    );
}

#[test]
fn uac_busy_maps_to_twilio_busy_and_auth_is_answered() {
    let mut h = H::new();
    let creds = Credentials {
        username: "acct".into(),
        password: "pw".into(),
    };
    let key = h.ua.invite(h.now, outgoing(Some(creds), None)).unwrap();
    let inv = h.requests().remove(0);
    h.ua.handle_datagram(
        h.now,
        peer(),
        &reply(
            &inv,
            407,
            "p",
            &[(
                HeaderName::ProxyAuthenticate,
                "Digest realm=\"trunk\", nonce=\"n1\", qop=\"auth\", algorithm=SHA-256",
            )],
            None,
        ),
    );
    h.drain();
    let sent = h.requests();
    assert_eq!(
        sent[0].method,
        Method::Ack,
        "ACK for the 407 from the transaction"
    );
    let inv2 = &sent[1];
    assert_eq!(inv2.method, Method::Invite);
    assert_eq!(
        inv2.headers.cseq().unwrap().seq,
        inv.headers.cseq().unwrap().seq + 1
    );
    let auth = inv2.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    assert!(
        auth.contains("username=\"acct\"") && auth.contains("algorithm=SHA-256"),
        "{auth}"
    );
    assert_eq!(inv2.headers.call_id(), inv.headers.call_id());
    h.ua.handle_datagram(h.now, peer(), &reply(inv2, 486, "b", &[], None));
    h.drain();
    let ev = h.events_for(key);
    let CallEvent::Terminated { reason } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(reason.twilio_status(), "busy");
}

#[test]
fn uac_cancel_and_ring_timeout() {
    let mut h = H::new();
    let key = h.ua.invite(h.now, outgoing(None, None)).unwrap();
    let inv = h.requests().remove(0);
    h.ua.hangup(h.now, key).unwrap();
    assert!(
        h.requests().is_empty(),
        "no CANCEL before a provisional (§9.1)"
    );
    h.ua.handle_datagram(h.now, peer(), &reply(&inv, 180, "rt", &[], None));
    h.drain();
    let cancel = h.requests().remove(0);
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.headers.top_via().unwrap().branch(),
        inv.headers.top_via().unwrap().branch()
    );
    h.ua.handle_datagram(
        h.now,
        peer(),
        &crate::message::response_from_request(&cancel, 200, None, None).to_bytes(),
    );
    h.ua.handle_datagram(h.now, peer(), &reply(&inv, 487, "rt", &[], None));
    h.drain();
    assert_eq!(h.hangups, vec![(key, HangupOutcome::Cancelled)]);
    let ev = h.events_for(key);
    assert!(ev.contains(&CallEvent::Terminated {
        reason: TerminationReason::LocalCancel
    }));

    let mut h = H::new();
    let key =
        h.ua.invite(h.now, outgoing(None, Some(Duration::from_secs(20))))
            .unwrap();
    let inv = h.requests().remove(0);
    h.ua.handle_datagram(h.now, peer(), &reply(&inv, 180, "rt", &[], None));
    h.drain();
    h.advance(Duration::from_secs(20));
    let cancel = h
        .requests()
        .into_iter()
        .find(|r| r.method == Method::Cancel)
        .unwrap();
    h.ua.handle_datagram(
        h.now,
        peer(),
        &crate::message::response_from_request(&cancel, 200, None, None).to_bytes(),
    );
    h.ua.handle_datagram(h.now, peer(), &reply(&inv, 487, "rt", &[], None));
    h.drain();
    let ev = h.events_for(key);
    let Some(CallEvent::Terminated { reason }) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(reason.twilio_status(), "no-answer");
}

#[test]
fn uac_timer_b_without_any_response() {
    let mut h = H::new();
    let key = h.ua.invite(h.now, outgoing(None, None)).unwrap();
    h.take_sent();
    h.advance(Duration::from_secs(32));
    let ev = h.events_for(key);
    assert_eq!(
        ev,
        vec![CallEvent::Terminated {
            reason: TerminationReason::TimedOut
        }]
    );
    assert_eq!(h.requests().len(), 6, "Timer A retransmissions");
}

#[test]
fn unanswered_inbound_call_is_given_up_with_480() {
    let mut h = H::new();
    h.recv(&invite("u1", "z9hG4bKu1", "", Some(OFFER)));
    h.take_sent();
    let key = h.incoming[0].key;
    h.advance(Duration::from_secs(299));
    assert!(h.statuses().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.statuses(), vec![480]);
    assert_eq!(
        h.events_for(key),
        vec![CallEvent::Terminated {
            reason: TerminationReason::Rejected { status: 480 }
        }]
    );
}

#[test]
fn reoffer_accepted_without_sdp_keeps_ours() {
    let mut h = H::new();
    let (key, ok) = answered_call(&mut h, "");
    let offer2 = OFFER.replace("o=caller 1 1", "o=caller 1 2");
    h.recv(&in_dialog(&ok, "INVITE", 2, "z9hG4bKk", "", &offer2));
    h.take_sent();
    h.ua.respond_to_reoffer(h.now, key, ReofferAnswer::Accept { sdp: None })
        .unwrap();
    let r = h.responses().remove(0);
    assert_eq!((r.status, r.body_str()), (200, Some(ANSWER)));
}

#[test]
fn uac_gives_up_when_cancel_gets_no_487_and_retries_422() {
    let mut h = H::new();
    let key = h.ua.invite(h.now, outgoing(None, None)).unwrap();
    let inv = h.requests().remove(0);
    h.ua.handle_datagram(h.now, peer(), &reply(&inv, 180, "rt", &[], None));
    h.ua.hangup(h.now, key).unwrap();
    h.drain();
    assert!(h.requests().iter().any(|r| r.method == Method::Cancel));
    h.advance(Duration::from_secs(32));
    assert_eq!(h.hangups, vec![(key, HangupOutcome::Cancelled)]);
    assert!(h.events_for(key).contains(&CallEvent::Terminated {
        reason: TerminationReason::LocalCancel
    }));
    assert_eq!(
        h.ua.transaction_count(),
        0,
        "the INVITE transaction is gone too"
    );

    let mut h = H::new();
    let key = h.ua.invite(h.now, outgoing(None, None)).unwrap();
    let inv = h.requests().remove(0);
    assert_eq!(inv.headers.get(&HeaderName::SessionExpires), Some("1800"));
    h.ua.handle_datagram(
        h.now,
        peer(),
        &reply(&inv, 422, "x", &[(HeaderName::MinSe, "3600")], None),
    );
    h.drain();
    let again = h
        .requests()
        .into_iter()
        .find(|r| r.method == Method::Invite)
        .unwrap();
    assert_eq!(again.headers.get(&HeaderName::SessionExpires), Some("3600"));
    assert!(h.events_for(key).is_empty(), "the call goes on");
}

// ------------------------------------------------------------------------------------
// Overload control

fn options(call_id: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:dialtone@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:probe@carrier.example>;tag=p\r\nTo: <sip:dialtone@198.51.100.1>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn with_overload(overload: OverloadConfig) -> H {
    H::with(UaConfig {
        contact_host: "198.51.100.1".into(),
        overload,
        ..UaConfig::default()
    })
}

#[test]
fn per_source_rate_gets_503_with_retry_after_and_leaves_no_state() {
    let mut h = with_overload(OverloadConfig {
        per_source_cps: 2.0,
        per_source_burst: 2,
        ..OverloadConfig::default()
    });
    h.recv(&invite("r1", "z9hG4bKr1", "", Some(OFFER)));
    h.recv(&invite("r2", "z9hG4bKr2", "", Some(OFFER)));
    assert_eq!(h.statuses(), vec![100, 100]);
    let txs = h.ua.transaction_count();
    let inv3 = invite("r3", "z9hG4bKr3", "", Some(OFFER));
    h.recv(&inv3);
    let r = h.responses().remove(0);
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some("1"));
    assert!(r.headers.to().unwrap().tag().is_some());
    assert_eq!(h.incoming.len(), 2);
    assert_eq!(
        h.ua.transaction_count(),
        txs,
        "no transaction for a refused INVITE"
    );
    // A retransmission of an admitted INVITE is not charged: still a 100, not a 503.
    h.recv(&invite("r1", "z9hG4bKr1", "", Some(OFFER)));
    assert_eq!(h.statuses(), vec![100]);
    // A retransmission of the refused one is judged again.
    h.recv(&inv3);
    assert_eq!(h.statuses(), vec![503]);
    // OPTIONS and in-dialog requests are not limited.
    h.recv(&options("o1", "z9hG4bKo1"));
    assert_eq!(h.statuses(), vec![200]);
    let key = h.incoming[0].key;
    h.ua.answer(h.now, key, ANSWER.into()).unwrap();
    let ok = h.responses().remove(0);
    h.recv(&in_dialog(&ok, "ACK", 1, "z9hG4bKa1", "", ""));
    h.recv(&in_dialog(&ok, "BYE", 2, "z9hG4bKb1", "", ""));
    assert_eq!(h.statuses(), vec![200]);
    let st = h.ua.stats();
    assert_eq!(st.rejected_source_rate, 2);
    assert_eq!(st.rejected(RejectReason::SourceRate), 2);
    assert_eq!(st.tracked_sources, 1);
    // Half a second later one token is back.
    h.advance(Duration::from_millis(500));
    h.take_sent();
    h.recv(&invite("r4", "z9hG4bKr4", "", Some(OFFER)));
    assert_eq!(h.statuses(), vec![100]);
}

#[test]
fn call_limit_gets_503_and_frees_up_when_a_call_ends() {
    let mut h = with_overload(OverloadConfig {
        max_calls: 1,
        retry_after_secs: 7,
        ..OverloadConfig::default()
    });
    let (key, ok) = answered_call(&mut h, "");
    h.recv(&invite("c2", "z9hG4bKc2", "", Some(OFFER)));
    let r = h.responses().remove(0);
    assert_eq!(
        (r.status, r.headers.get(&HeaderName::RetryAfter)),
        (503, Some("7"))
    );
    assert_eq!(h.ua.stats().rejected_call_limit, 1);
    // In-dialog requests of the live call still work.
    h.recv(&in_dialog(&ok, "INFO", 2, "z9hG4bKi", "", "Signal=1\r\n"));
    assert_eq!(h.statuses(), vec![200]);
    h.recv(&in_dialog(&ok, "BYE", 3, "z9hG4bKb", "", ""));
    assert_eq!(h.statuses(), vec![200]);
    assert!(h.events_for(key).contains(&CallEvent::ByeReceived));
    h.recv(&invite("c3", "z9hG4bKc3", "", Some(OFFER)));
    assert_eq!(h.statuses(), vec![100]);
}

#[test]
fn transaction_limit_answers_options_statelessly_and_keeps_dialogs_working() {
    let mut h = with_overload(OverloadConfig {
        max_server_transactions: 3,
        ..OverloadConfig::default()
    });
    let (key, ok) = answered_call(&mut h, "");
    // Fill the table with OPTIONS transactions (Timer J keeps them 32 s on UDP).
    for i in 0..3 {
        h.recv(&options(&format!("fill{i}"), &format!("z9hG4bKfill{i}")));
    }
    h.take_sent();
    let full = h.ua.stats().server_transactions;
    assert_eq!(full, 3);
    let before = h.ua.stats().stateless_options;
    for i in 0..100 {
        h.recv(&options(&format!("o{i}"), &format!("z9hG4bKo{i}")));
        assert_eq!(h.statuses(), vec![200]);
    }
    assert_eq!(h.ua.stats().server_transactions, full, "no new state");
    assert_eq!(h.ua.stats().stateless_options, before + 100);
    h.recv(&invite("n1", "z9hG4bKn1", "", Some(OFFER)));
    assert_eq!(h.statuses(), vec![503]);
    // A request for an unknown dialog: 503 too (without state), never 481 with state.
    let mut stranger = ok.clone();
    stranger.headers.set(HeaderName::CallId, "nope");
    h.recv(&in_dialog(&stranger, "BYE", 2, "z9hG4bKs", "", ""));
    assert_eq!(h.statuses(), vec![503]);
    assert_eq!(h.ua.stats().rejected_transaction_limit, 2);
    // The live dialog's BYE gets through.
    h.recv(&in_dialog(&ok, "BYE", 2, "z9hG4bKbye", "", ""));
    assert_eq!(h.statuses(), vec![200]);
    assert!(h.events_for(key).contains(&CallEvent::ByeReceived));
    // Once the transactions time out, INVITEs are admitted again.
    h.advance(Duration::from_secs(40));
    h.take_sent();
    h.recv(&invite("n2", "z9hG4bKn2", "", Some(OFFER)));
    assert_eq!(h.statuses(), vec![100]);
}

#[test]
fn a_flood_of_spoofed_sources_keeps_every_table_under_its_cap() {
    let mut h = with_overload(OverloadConfig {
        max_calls: 50,
        max_server_transactions: 200,
        per_source_cps: 1.0,
        per_source_burst: 1,
        max_tracked_sources: 100,
        ..OverloadConfig::default()
    });
    for i in 0..20_000u32 {
        let src = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 5060));
        let text = invite(&format!("f{i}"), &format!("z9hG4bKf{i}"), "", Some(OFFER));
        h.ua.handle_datagram(h.now, src, text.as_bytes());
        while h.ua.poll_output().is_some() {}
        if i % 1000 == 0 {
            h.now += Duration::from_millis(100);
            h.ua.handle_timeout(h.now);
            while h.ua.poll_output().is_some() {}
        }
    }
    let st = h.ua.stats();
    assert!(st.calls <= 50, "{st:?}");
    assert!(st.server_transactions <= 200, "{st:?}");
    assert!(st.tracked_sources <= 100, "{st:?}");
    assert!(st.recent_invites <= 50, "{st:?}");
    assert_eq!(
        st.rejected_call_limit + st.rejected_transaction_limit + st.rejected_source_rate,
        20_000 - 50
    );
    h.recv(&options("after", "z9hG4bKafter"));
    assert_eq!(h.statuses(), vec![200]);
}

// ------------------------------------------------------------------------------------
// TCP

fn recv_tcp(h: &mut H, from: SocketAddr, text: &str) {
    h.ua.handle_parsed(
        h.now,
        Transport::Tcp,
        from,
        crate::message::parse_datagram(text.as_bytes()),
    );
    h.drain();
}

#[test]
fn inbound_call_over_tcp_answers_on_the_connection_without_retransmissions() {
    let mut h = H::new();
    // The caller's connection comes from an ephemeral port; its Via says 5060.
    let conn: SocketAddr = "192.0.2.10:41234".parse().unwrap();
    let text =
        invite("tcp-1", "z9hG4bKtcp1", "", Some(OFFER)).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    recv_tcp(&mut h, conn, &text);
    assert_eq!(h.statuses(), vec![100]);
    assert_eq!(h.wire.last(), Some(&(conn, Transport::Tcp)));
    let call = h.incoming.last().unwrap();
    assert_eq!(call.transport, Transport::Tcp);
    let key = call.key;
    h.ua.reject(h.now, key, 486, None).ok();
    h.take_sent();
    // A second call: answered, then the 2xx is retransmitted (end-to-end, §13.3.1.4) on
    // the connection; BYE from us goes over TCP with a TCP Via.
    let text =
        invite("tcp-2", "z9hG4bKtcp2", "", Some(OFFER)).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    recv_tcp(&mut h, conn, &text);
    h.take_sent();
    let key = h.incoming.last().unwrap().key;
    h.ua.answer(h.now, key, ANSWER.into()).unwrap();
    let ok = h.responses().remove(0);
    assert_eq!(ok.status, 200);
    let contact = ok.headers.get(&HeaderName::Contact).unwrap();
    assert!(contact.contains(";transport=tcp"), "{contact}");
    assert_eq!(h.wire.last(), Some(&(conn, Transport::Tcp)));
    let ack = in_dialog(&ok, "ACK", 1, "z9hG4bKtack", "", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    recv_tcp(&mut h, conn, &ack);
    assert_eq!(h.events_for(key), vec![CallEvent::Acked { sdp: None }]);
    h.ua.hangup(h.now, key).unwrap();
    let bye = h.requests().remove(0);
    assert_eq!(bye.method, Method::Bye);
    assert!(bye.headers.top_via().unwrap().transport == "TCP");
    assert_eq!(
        h.wire.last(),
        Some(&(conn, Transport::Tcp)),
        "the BYE reuses the caller's connection, not its Contact port"
    );
    // No BYE retransmission on TCP.
    h.advance(Duration::from_secs(5));
    assert!(h.requests().is_empty());
    let r = crate::message::response_from_request(&bye, 200, None, None);
    recv_tcp(&mut h, conn, &String::from_utf8_lossy(&r.to_bytes()));
    assert_eq!(
        h.hangups,
        vec![(key, HangupOutcome::ByeAnswered { status: 200 })]
    );
}

#[test]
fn outbound_call_over_tcp_and_a_transport_error_fails_it() {
    let mut h = H::new();
    let mut out = outgoing(None, None);
    out.transport = Transport::Tcp;
    let key = h.ua.invite(h.now, out).unwrap();
    let inv = h.requests().remove(0);
    assert_eq!(inv.headers.top_via().unwrap().transport, "TCP");
    assert!(inv
        .headers
        .get(&HeaderName::Contact)
        .unwrap()
        .contains("transport=tcp"));
    assert_eq!(h.wire.last(), Some(&(peer(), Transport::Tcp)));
    h.advance(Duration::from_secs(10));
    assert!(h.requests().is_empty(), "no Timer A on TCP");
    let mut retry = outgoing(None, None);
    retry.transport = Transport::Tcp;
    let key2 = h.ua.invite(h.now, retry).unwrap();
    h.take_sent();
    // The shell could not connect: the INVITE's transaction reports a transport error.
    let tx = *h
        .ua
        .by_client_tx
        .iter()
        .find(|(_, (k, _))| *k == key2)
        .map(|(tx, _)| tx)
        .unwrap();
    h.ua.handle_transport_error(h.now, tx);
    h.drain();
    let ev = h.events_for(key2);
    let Some(CallEvent::Terminated { reason }) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(reason.twilio_status(), "failed");
    // The first call times out normally (Timer B): no-answer.
    h.advance(Duration::from_secs(30));
    let ev = h.events_for(key);
    assert_eq!(
        ev.last(),
        Some(&CallEvent::Terminated {
            reason: TerminationReason::TimedOut
        })
    );
}

//! The parser and the UA core never panic, whatever arrives: random bytes, and the RFC 4475
//! messages mutated (bytes flipped, cut, spliced).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dialtone_sip::message::{parse_datagram, parse_stream, CSeq, NameAddr, Uri, Via};
use dialtone_sip::sdp::{self, LocalMedia};
use dialtone_sip::ua::{UaConfig, UaOutput, UserAgent};
use proptest::prelude::*;

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/rfc4475");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("the rfc4475 corpus in tests/data") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "dat") {
            out.push(std::fs::read(&p).expect("readable"));
        }
    }
    out.sort();
    out
}

fn feed_ua(data: &[u8]) {
    let mut ua = UserAgent::new(UaConfig::default());
    let src: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let t0 = Instant::now();
    ua.handle_datagram(t0, src, data);
    // Answer any call it produced, then run its timers for a while.
    let mut calls = Vec::new();
    while let Some(o) = ua.poll_output() {
        if let UaOutput::IncomingCall(c) = o {
            calls.push(c.key);
        }
    }
    for k in calls {
        let _ = ua.answer(t0, k, "v=0\r\n".into());
    }
    ua.handle_datagram(t0, src, data);
    ua.handle_timeout(t0 + Duration::from_secs(40));
    while ua.poll_output().is_some() {}
}

fn everything(data: &[u8]) {
    let _ = parse_datagram(data);
    let _ = parse_stream(data);
    let text = String::from_utf8_lossy(data);
    let _ = Uri::parse(&text);
    let _ = NameAddr::parse(&text);
    let _ = Via::parse(&text);
    let _ = CSeq::parse(&text);
    let _ = sdp::answer(&text, &LocalMedia::new("192.0.2.9".parse().unwrap(), 4000));
    let _ = sdp::accept_answer(&text, &LocalMedia::new("192.0.2.9".parse().unwrap(), 4000));
    let _ = dialtone_sip::auth::Challenge::parse(&text);
    feed_ua(data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        everything(&data);
    }

    #[test]
    fn sip_shaped_text_never_panics(s in "(INVITE|SIP/2\\.0|OPTIONS|ACK) [ -~]{0,40}\r\n(([A-Za-z:; ,<>\"@=.\\\\/-]{0,30})\r\n){0,8}\r\n[ -~]{0,40}") {
        everything(s.as_bytes());
    }

    #[test]
    fn mutated_torture_messages_never_panic(
        pick in 0usize..50,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let all = corpus();
        let mut data = all[pick % all.len()].clone();
        for (pos, byte) in flips {
            if !data.is_empty() {
                let i = pos % data.len();
                data[i] = byte;
            }
        }
        if !data.is_empty() {
            data.truncate(cut % (data.len() + 1));
        }
        everything(&data);
    }
}

#[test]
fn every_prefix_of_every_torture_message_is_safe() {
    for msg in corpus() {
        for end in 0..=msg.len() {
            let _ = parse_datagram(&msg[..end]);
            let _ = parse_stream(&msg[..end]);
        }
    }
}

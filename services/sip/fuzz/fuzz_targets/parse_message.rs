//! Parser, header views and SDP on arbitrary bytes: must never panic.
#![no_main]

use dialtone_sip::message::{parse_datagram, parse_stream, NameAddr, Parsed, SipMessage, Uri, Via};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Message(m)) = parse_datagram(data) {
        let h = m.headers();
        let _ = h.vias();
        let _ = h.cseq();
        let _ = h.from();
        let _ = h.to();
        let _ = h.contacts();
        let _ = h.record_route();
        if let SipMessage::Request(r) = &m {
            let _ = dialtone_sip::message::validate_request(r);
        }
        // What we write back must parse again.
        assert!(parse_datagram(&m.to_bytes()).is_ok());
    }
    let _ = parse_stream(data);
    let text = String::from_utf8_lossy(data);
    let _ = Uri::parse(&text);
    let _ = NameAddr::parse(&text);
    let _ = Via::parse(&text);
    let local = dialtone_sip::sdp::LocalMedia::new([192, 0, 2, 1].into(), 4000);
    let _ = dialtone_sip::sdp::answer(&text, &local);
});

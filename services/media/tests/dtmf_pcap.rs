//! The RFC 4733 receiver against sipp's DTMF captures: each yields exactly its key, once.

mod common;

use dialtone_media::dtmf::rfc4733::Rfc4733Receiver;
use rtp_rs::RtpReader;

#[test]
fn sipp_captures_yield_exactly_their_digit_once() {
    let dir = std::path::Path::new("/usr/share/sip-tester");
    let cases = [
        ("0", '0'),
        ("1", '1'),
        ("2", '2'),
        ("3", '3'),
        ("4", '4'),
        ("5", '5'),
        ("6", '6'),
        ("7", '7'),
        ("8", '8'),
        ("9", '9'),
        ("star", '*'),
        ("pound", '#'),
    ];
    for (name, key) in cases {
        let path = dir.join(format!("dtmf_2833_{name}.pcap"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (is sip-tester installed?)", path.display()));
        let payloads = common::pcap_udp_payloads(&bytes);
        assert!(payloads.len() >= 3, "{name}: {} packets", payloads.len());
        let mut rx = Rfc4733Receiver::new();
        let mut digits = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let r = RtpReader::new(p).unwrap();
            assert_eq!(r.payload_type(), 101);
            rx.on_packet(r.timestamp(), r.payload(), i as u64 * 20, &mut digits);
        }
        // nothing more after a long time either
        rx.poll(1_000_000, &mut digits);
        assert_eq!(digits.len(), 1, "{name}: {digits:?}");
        assert_eq!(digits[0].digit, key, "{name}");
        // sipp holds each key for 280 ms (duration 2240 at 8 kHz)
        assert_eq!(digits[0].duration_ms, 280, "{name}");
    }
}

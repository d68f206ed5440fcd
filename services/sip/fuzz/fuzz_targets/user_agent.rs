//! The UA core fed arbitrary datagrams and timer runs: must never panic.
#![no_main]

use std::time::{Duration, Instant};

use dialtone_sip::ua::{UaConfig, UaOutput, UserAgent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut ua = UserAgent::new(UaConfig::default());
    let t0 = Instant::now();
    let src = "192.0.2.1:5060".parse().unwrap();
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        ua.handle_datagram(t0 + Duration::from_millis(i as u64 * 100), src, chunk);
        while let Some(o) = ua.poll_output() {
            if let UaOutput::IncomingCall(c) = o {
                let _ = ua.answer(t0, c.key, "v=0\r\n".into());
            }
        }
    }
    ua.handle_timeout(t0 + Duration::from_secs(64));
    while ua.poll_output().is_some() {}
});

//! RTP packet building (rtp-rs) with correct sequence numbers, timestamps and SSRC.
//!
//! Timestamps are not kept as a running counter: the playout engine derives them from the
//! frame clock (`RtpClock::timestamp(frame)`), so a stream's timestamp keeps advancing by
//! 160 per 20 ms even when nothing is sent (silence suppression, pauses), as RFC 3550 wants.

use rand::Rng;
use rtp_rs::{RtpPacketBuilder, Seq};

use crate::error::MediaError;
use crate::pcm::FRAME_SAMPLES;

/// Largest RTP packet the runtime builds: 12-byte header + 160 bytes of G.711 (with room).
pub const MAX_PACKET: usize = 12 + 4 * FRAME_SAMPLES;

/// The sending half of an RTP stream: SSRC and sequence numbers.
#[derive(Debug, Clone)]
pub struct RtpPacketizer {
    ssrc: u32,
    next_seq: u16,
}

impl RtpPacketizer {
    /// A packetizer with a random SSRC and a random initial sequence number (RFC 3550 §5.1).
    pub fn new_random() -> RtpPacketizer {
        let mut rng = rand::rng();
        RtpPacketizer {
            ssrc: rng.random(),
            next_seq: rng.random(),
        }
    }

    pub fn new(ssrc: u32, initial_seq: u16) -> RtpPacketizer {
        RtpPacketizer {
            ssrc,
            next_seq: initial_seq,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Writes one packet into `out` and returns its length; the sequence number advances by
    /// one (wrapping) only when a packet was written.
    pub fn write(
        &mut self,
        out: &mut [u8],
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<usize, MediaError> {
        let len = RtpPacketBuilder::new()
            .payload_type(payload_type)
            .marked(marker)
            .sequence(Seq::from(self.next_seq))
            .timestamp(timestamp)
            .ssrc(self.ssrc)
            .payload(payload)
            .build_into(out)
            .map_err(|e| MediaError::RtpBuild(format!("{e:?}")))?;
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(len)
    }
}

/// Maps frame numbers of the 20 ms clock to RTP timestamps.
#[derive(Debug, Clone, Copy)]
pub struct RtpClock {
    base: u32,
}

impl RtpClock {
    /// A clock with a random initial timestamp (RFC 3550 §5.1).
    pub fn new_random() -> RtpClock {
        RtpClock {
            base: rand::rng().random(),
        }
    }

    pub fn new(base: u32) -> RtpClock {
        RtpClock { base }
    }

    /// Timestamp of the frame `frames_since_start` frames after the stream started.
    pub fn timestamp(&self, frames_since_start: u64) -> u32 {
        // Truncation is the RTP wrap-around: timestamps are modulo 2^32.
        self.base
            .wrapping_add((frames_since_start as u32).wrapping_mul(FRAME_SAMPLES as u32))
    }
}

/// Whether RTP timestamp `a` comes before `b`, modulo 2^32 (serial number arithmetic).
pub fn timestamp_before(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::RtpReader;

    #[test]
    fn packets_carry_consecutive_sequence_numbers_and_wrap() {
        let mut p = RtpPacketizer::new(0x1234_5678, 65534);
        let mut buf = [0u8; MAX_PACKET];
        let payload = [0xFFu8; 160];
        let mut seqs = Vec::new();
        for i in 0..4u32 {
            let n = p
                .write(&mut buf, 0, i == 0, 1000 + i * 160, &payload)
                .unwrap();
            assert_eq!(n, 172);
            let r = RtpReader::new(&buf[..n]).unwrap();
            assert_eq!(r.ssrc(), 0x1234_5678);
            assert_eq!(r.payload_type(), 0);
            assert_eq!(r.mark(), i == 0);
            assert_eq!(r.timestamp(), 1000 + i * 160);
            assert_eq!(r.payload(), &payload[..]);
            seqs.push(u16::from(r.sequence_number()));
        }
        assert_eq!(seqs, vec![65534, 65535, 0, 1]);
    }

    #[test]
    fn failed_build_does_not_consume_a_sequence_number() {
        let mut p = RtpPacketizer::new(1, 10);
        let mut small = [0u8; 20];
        assert!(p.write(&mut small, 0, false, 0, &[0u8; 160]).is_err());
        assert!(p
            .write(&mut [0u8; 200], 200, false, 0, &[0u8; 160])
            .is_err());
        assert_eq!(p.next_seq(), 10);
    }

    #[test]
    fn clock_advances_160_per_frame_and_wraps() {
        let c = RtpClock::new(u32::MAX - 100);
        assert_eq!(c.timestamp(0), u32::MAX - 100);
        assert_eq!(c.timestamp(1), 59);
        assert_eq!(c.timestamp(2), 219);
        // Far-away frames stay consistent modulo 2^32.
        let far = 30_000_000u64;
        assert_eq!(c.timestamp(far + 1).wrapping_sub(c.timestamp(far)), 160);
    }

    #[test]
    fn random_streams_differ() {
        let a = RtpPacketizer::new_random();
        let b = RtpPacketizer::new_random();
        let c = RtpClock::new_random();
        let d = RtpClock::new_random();
        // 2^-32 and 2^-16 chances of a false failure; both equal at once is 2^-80.
        assert!(a.ssrc() != b.ssrc() || a.next_seq() != b.next_seq() || c.base != d.base);
    }

    #[test]
    fn serial_timestamp_order() {
        assert!(timestamp_before(1, 2));
        assert!(!timestamp_before(2, 1));
        assert!(timestamp_before(u32::MAX - 5, 3));
        assert!(!timestamp_before(7, 7));
    }
}

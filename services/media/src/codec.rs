//! G.711 codecs (PCMU, PCMA) over `audio-codec-algorithms`, with lookup tables for decoding.

use std::sync::LazyLock;

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

/// Payload type of PCMU (G.711 μ-law), static in RFC 3551.
pub const PT_PCMU: u8 = 0;
/// Payload type of PCMA (G.711 A-law), static in RFC 3551.
pub const PT_PCMA: u8 = 8;

/// An RTP audio codec the runtime can send and receive (8 kHz, 20 ms frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
}

static ULAW_DECODE: LazyLock<[i16; 256]> = LazyLock::new(|| {
    let mut table = [0i16; 256];
    for (byte, slot) in table.iter_mut().enumerate() {
        *slot = decode_ulaw(byte as u8);
    }
    table
});

static ALAW_DECODE: LazyLock<[i16; 256]> = LazyLock::new(|| {
    let mut table = [0i16; 256];
    for (byte, slot) in table.iter_mut().enumerate() {
        *slot = decode_alaw(byte as u8);
    }
    table
});

impl Codec {
    /// Both codecs, in the order the runtime prefers them.
    pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    /// The static RTP payload type.
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => PT_PCMU,
            Codec::Pcma => PT_PCMA,
        }
    }

    /// The codec of a static payload type, if it is one we support.
    pub const fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            PT_PCMU => Some(Codec::Pcmu),
            PT_PCMA => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name (`a=rtpmap:<pt> <name>/8000`).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec with this SDP encoding name (case-insensitive).
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }

    /// RTP clock rate in Hz.
    pub const fn clock_rate(self) -> u32 {
        8000
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 1,
        }
    }

    /// The encoded byte of digital silence (0xFF for μ-law, 0xD5 for A-law).
    pub fn silence_byte(self) -> u8 {
        self.encode_sample(0)
    }

    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => encode_ulaw(sample),
            Codec::Pcma => encode_alaw(sample),
        }
    }

    pub fn decode_sample(self, byte: u8) -> i16 {
        match self {
            Codec::Pcmu => ULAW_DECODE[usize::from(byte)],
            Codec::Pcma => ALAW_DECODE[usize::from(byte)],
        }
    }

    /// Encodes `pcm` into `out`, sample by sample, over `min(pcm.len(), out.len())` samples.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) {
        match self {
            Codec::Pcmu => {
                for (o, s) in out.iter_mut().zip(pcm) {
                    *o = encode_ulaw(*s);
                }
            }
            Codec::Pcma => {
                for (o, s) in out.iter_mut().zip(pcm) {
                    *o = encode_alaw(*s);
                }
            }
        }
    }

    /// Encodes a whole buffer.
    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        let mut out = vec![0u8; pcm.len()];
        self.encode_into(pcm, &mut out);
        out
    }

    /// Decodes `payload`, appending the samples to `out`.
    pub fn decode_append(self, payload: &[u8], out: &mut Vec<i16>) {
        let table: &[i16; 256] = match self {
            Codec::Pcmu => &ULAW_DECODE,
            Codec::Pcma => &ALAW_DECODE,
        };
        out.extend(payload.iter().map(|b| table[usize::from(*b)]));
    }

    /// Decodes a whole payload.
    pub fn decode(self, payload: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(payload.len());
        self.decode_append(payload, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_types_and_names() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(18), None);
        assert_eq!(Codec::from_encoding_name("pcma"), Some(Codec::Pcma));
        assert_eq!(Codec::from_encoding_name("G729"), None);
    }

    #[test]
    fn silence_bytes_are_the_standard_ones() {
        assert_eq!(Codec::Pcmu.silence_byte(), 0xFF);
        assert_eq!(Codec::Pcma.silence_byte(), 0xD5);
        assert_eq!(Codec::Pcmu.decode_sample(0xFF), 0);
        assert!(Codec::Pcma.decode_sample(0xD5).abs() <= 8);
    }

    /// Every 16-bit sample survives a round trip within G.711's quantisation step, which grows
    /// with the magnitude (logarithmic companding: about 1/16 of the value, at least 1 LSB step).
    #[test]
    fn round_trip_error_is_within_quantisation_step() {
        for codec in Codec::ALL {
            for s in i16::MIN..=i16::MAX {
                let back = codec.decode_sample(codec.encode_sample(s));
                let err = (i32::from(back) - i32::from(s)).abs();
                let magnitude = i32::from(s).abs();
                let allowed = (magnitude / 16).max(16) + 8;
                assert!(
                    err <= allowed,
                    "{codec:?}: {s} -> {back} (error {err}, allowed {allowed})"
                );
            }
        }
    }

    #[test]
    fn encoded_bytes_decode_and_reencode_identically() {
        for codec in Codec::ALL {
            for b in 0..=255u8 {
                let s = codec.decode_sample(b);
                let again = codec.encode_sample(s);
                // μ-law has two encodings of zero (0x7F and 0xFF); everything else is exact.
                assert_eq!(codec.decode_sample(again), s, "{codec:?} byte {b:#04x}");
            }
        }
    }

    #[test]
    fn buffers_round_trip() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i * 397) % 20000 - 10000) as i16)
            .collect();
        for codec in Codec::ALL {
            let enc = codec.encode(&pcm);
            assert_eq!(enc.len(), 160);
            let dec = codec.decode(&enc);
            assert_eq!(dec.len(), 160);
            for (a, b) in pcm.iter().zip(&dec) {
                assert!((i32::from(*a) - i32::from(*b)).abs() <= 700);
            }
        }
    }
}

//! A UDP socket that catches the RTP Dialtone sends to a caller, for checks on sequence
//! numbers, timestamps, SSRC and the decoded audio.

use std::sync::{Arc, Mutex};

use dialtone_media::codec::Codec;

/// One received RTP packet's header fields and payload.
#[derive(Debug, Clone)]
pub struct RtpPacket {
    /// When it arrived.
    pub received: std::time::SystemTime,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// Receives on a local UDP port in the background.
pub struct RtpSink {
    pub port: u16,
    packets: Arc<Mutex<Vec<RtpPacket>>>,
}

impl RtpSink {
    pub fn start() -> RtpSink {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let packets = Arc::new(Mutex::new(Vec::new()));
        let store = packets.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok(n) = socket.recv(&mut buf) {
                if let Some(packet) = parse(&buf[..n]) {
                    store.lock().unwrap().push(packet);
                }
            }
        });
        RtpSink { port, packets }
    }

    pub fn packets(&self) -> Vec<RtpPacket> {
        self.packets.lock().unwrap().clone()
    }

    /// The decoded audio of the packets with `payload_type` that arrived after `since`.
    pub fn audio_since(
        &self,
        codec: Codec,
        payload_type: u8,
        since: std::time::SystemTime,
    ) -> Vec<i16> {
        let mut pcm = Vec::new();
        for packet in self
            .packets()
            .iter()
            .filter(|p| p.payload_type == payload_type && p.received >= since)
        {
            codec.decode_append(&packet.payload, &mut pcm);
        }
        pcm
    }

    /// The decoded audio of all packets with `payload_type`.
    pub fn audio(&self, codec: Codec, payload_type: u8) -> Vec<i16> {
        let mut pcm = Vec::new();
        for packet in self
            .packets()
            .iter()
            .filter(|p| p.payload_type == payload_type)
        {
            codec.decode_append(&packet.payload, &mut pcm);
        }
        pcm
    }
}

fn parse(data: &[u8]) -> Option<RtpPacket> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(data[0] & 0x0f);
    let start = 12 + 4 * csrc;
    Some(RtpPacket {
        received: std::time::SystemTime::now(),
        marker: data[1] & 0x80 != 0,
        payload_type: data[1] & 0x7f,
        sequence: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        payload: data.get(start..)?.to_vec(),
    })
}

/// Root mean square of samples.
/// The RMS of the loudest second (8,000 samples) of `pcm`: whether anyone was heard.
pub fn loudest_second(pcm: &[i16]) -> f64 {
    pcm.chunks(8000).map(rms).fold(0.0, f64::max)
}

pub fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / pcm.len() as f64)
        .sqrt()
}

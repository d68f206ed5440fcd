//! Helpers shared by the integration tests: a classic pcap reader and an RTP peer.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rtp_rs::RtpReader;

/// The UDP payloads of a classic (libpcap) capture over Ethernet, IPv4.
pub fn pcap_udp_payloads(bytes: &[u8]) -> Vec<Vec<u8>> {
    let magic = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let le = match magic {
        0xa1b2c3d4 => true,
        0xd4c3b2a1 => false,
        other => panic!("not a pcap file: magic {other:#x}"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w: [u8; 4] = b[i..i + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let linktype = u32_at(bytes, 20);
    assert_eq!(linktype, 1, "only Ethernet captures are handled");
    let mut out = Vec::new();
    let mut pos = 24;
    while pos + 16 <= bytes.len() {
        let incl = u32_at(bytes, pos + 8) as usize;
        let frame = &bytes[pos + 16..pos + 16 + incl];
        pos += 16 + incl;
        let mut eth = 14;
        let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        if ethertype == 0x8100 {
            ethertype = u16::from_be_bytes([frame[16], frame[17]]);
            eth += 4;
        }
        if ethertype != 0x0800 {
            continue;
        }
        let ip = &frame[eth..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 {
            continue;
        }
        let udp = &ip[ihl..];
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(udp[8..udp_len].to_vec());
    }
    out
}

/// An RTP packet as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub pt: u8,
    pub payload: Vec<u8>,
}

pub fn parse(buf: &[u8], at: Instant) -> Received {
    let r = RtpReader::new(buf).expect("valid RTP");
    Received {
        at,
        seq: u16::from(r.sequence_number()),
        ts: r.timestamp(),
        ssrc: r.ssrc(),
        marker: r.mark(),
        pt: r.payload_type(),
        payload: r.payload().to_vec(),
    }
}

/// A UDP socket playing the remote party.
pub struct Peer {
    pub socket: UdpSocket,
}

impl Peer {
    pub fn new() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Peer { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Receives packets until `stop` says so or `limit` passes.
    pub fn collect_until(
        &self,
        limit: Duration,
        mut stop: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline && !stop(&out) {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                out.push(parse(&buf[..n], Instant::now()));
            }
        }
        out
    }

    /// Receives for `d`.
    pub fn collect_for(&self, d: Duration) -> Vec<Received> {
        self.collect_until(d, |_| false)
    }

    /// Discards whatever is queued.
    pub fn drain(&self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while self.socket.recv_from(&mut buf).is_ok() {}
        self.socket.set_nonblocking(false).unwrap();
    }
}

/// Builds an RTP packet.
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    rtp_rs::RtpPacketBuilder::new()
        .payload_type(pt)
        .sequence(rtp_rs::Seq::from(seq))
        .timestamp(ts)
        .ssrc(ssrc)
        .marked(marker)
        .payload(payload)
        .build()
        .unwrap()
}

//! RFC 4733 telephone-event payloads and a receiver that turns a packet stream into key
//! presses.
//!
//! A sender repeats each event: updates every 50 ms or so while the key is held, then the
//! final packet (E bit) three times, and some senders also repeat the first packet. All
//! packets of one event share its RTP timestamp, so the receiver deduplicates by timestamp:
//! one key press per timestamp, reported once with its final duration.

use crate::dtmf::{key_of_event, DtmfDigit};
use crate::rtp::timestamp_before;

/// How long an event may go without any packet before it is reported as ended (its end
/// packets were lost).
pub const EVENT_TIMEOUT_MS: u64 = 400;

/// Default volume field of the events we send (-10 dBm0).
pub const DEFAULT_VOLUME: u8 = 10;

/// One RFC 4733 event payload (4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units (1/8000 s).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first 4 bytes of a payload; `None` when it is too short.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let bytes: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(TelephoneEvent {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            volume: bytes[1] & 0x3F,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

#[derive(Debug, Clone, Copy)]
struct OpenEvent {
    timestamp: u32,
    key: char,
    duration: u16,
    last_packet_ms: u64,
}

/// Sans-IO receiver of telephone-events: feed it every packet of the negotiated
/// telephone-event payload type, and call `poll` now and then for events whose end was lost.
#[derive(Debug, Default)]
pub struct Rfc4733Receiver {
    open: Option<OpenEvent>,
    /// Timestamp of the last event reported; packets at or before it are repeats.
    last_reported: Option<u32>,
}

impl Rfc4733Receiver {
    pub fn new() -> Rfc4733Receiver {
        Rfc4733Receiver::default()
    }

    /// Feeds one packet (RTP timestamp and payload); appends the key presses that completed.
    pub fn on_packet(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now_ms: u64,
        out: &mut Vec<DtmfDigit>,
    ) {
        let Some(ev) = TelephoneEvent::parse(payload) else {
            return;
        };
        // Events above 15 (flash, tones of RFC 4734) are not keys.
        let Some(key) = key_of_event(ev.event) else {
            return;
        };
        if let Some(last) = self.last_reported {
            if timestamp == last || timestamp_before(timestamp, last) {
                return; // a repeat of an event already reported, or a stale one
            }
        }
        match self.open.as_mut() {
            Some(open) if open.timestamp == timestamp => {
                open.duration = open.duration.max(ev.duration);
                open.last_packet_ms = now_ms;
            }
            Some(open) if timestamp_before(timestamp, open.timestamp) => return,
            open => {
                if open.is_some() {
                    // A new event began while the previous one never sent its end.
                    self.report_open(out);
                }
                self.open = Some(OpenEvent {
                    timestamp,
                    key,
                    duration: ev.duration,
                    last_packet_ms: now_ms,
                });
            }
        }
        if ev.end {
            self.report_open(out);
        }
    }

    /// Reports an open event that has not been refreshed for [`EVENT_TIMEOUT_MS`].
    pub fn poll(&mut self, now_ms: u64, out: &mut Vec<DtmfDigit>) {
        if let Some(open) = self.open {
            if now_ms.saturating_sub(open.last_packet_ms) >= EVENT_TIMEOUT_MS {
                self.report_open(out);
            }
        }
    }

    /// Whether an event is in progress (so `poll` has something to time out).
    pub fn has_open_event(&self) -> bool {
        self.open.is_some()
    }

    fn report_open(&mut self, out: &mut Vec<DtmfDigit>) {
        if let Some(open) = self.open.take() {
            self.last_reported = Some(open.timestamp);
            out.push(DtmfDigit {
                digit: open.key,
                duration_ms: u32::from(open.duration) / 8,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume: DEFAULT_VOLUME,
            duration,
        }
        .to_bytes()
    }

    #[test]
    fn payload_round_trip() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 2240,
        };
        assert_eq!(ev.to_bytes(), [0x0b, 0x8a, 0x08, 0xc0]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Some(ev));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn one_digit_per_event_despite_three_end_packets() {
        let mut rx = Rfc4733Receiver::new();
        let mut out = Vec::new();
        let ts = 13280;
        for (i, d) in [160u16, 320, 480, 640].iter().enumerate() {
            rx.on_packet(ts, &payload(1, false, *d), i as u64 * 20, &mut out);
        }
        assert!(out.is_empty());
        for i in 0..3 {
            rx.on_packet(ts, &payload(1, true, 800), 100 + i * 20, &mut out);
        }
        assert_eq!(
            out,
            vec![DtmfDigit {
                digit: '1',
                duration_ms: 100
            }]
        );
        // late retransmissions of the same event change nothing
        rx.on_packet(ts, &payload(1, false, 640), 300, &mut out);
        rx.on_packet(ts, &payload(1, true, 800), 320, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn same_key_twice_is_two_events() {
        let mut rx = Rfc4733Receiver::new();
        let mut out = Vec::new();
        rx.on_packet(1000, &payload(5, true, 800), 0, &mut out);
        rx.on_packet(1000, &payload(5, true, 800), 20, &mut out);
        rx.on_packet(3000, &payload(5, false, 160), 300, &mut out);
        rx.on_packet(3000, &payload(5, true, 960), 400, &mut out);
        let keys: Vec<char> = out.iter().map(|d| d.digit).collect();
        assert_eq!(keys, vec!['5', '5']);
        assert_eq!(out[1].duration_ms, 120);
    }

    #[test]
    fn lost_end_packets_are_reported_on_the_next_event_or_timeout() {
        let mut rx = Rfc4733Receiver::new();
        let mut out = Vec::new();
        rx.on_packet(5000, &payload(2, false, 400), 0, &mut out);
        rx.on_packet(9000, &payload(3, false, 160), 500, &mut out);
        assert_eq!(
            out,
            vec![DtmfDigit {
                digit: '2',
                duration_ms: 50
            }]
        );
        rx.poll(600, &mut out);
        assert_eq!(out.len(), 1, "not timed out yet");
        rx.poll(500 + EVENT_TIMEOUT_MS, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].digit, '3');
        assert!(!rx.has_open_event());
    }

    #[test]
    fn stale_and_foreign_packets_are_ignored() {
        let mut rx = Rfc4733Receiver::new();
        let mut out = Vec::new();
        rx.on_packet(10_000, &payload(9, true, 800), 0, &mut out);
        // an older event arriving late
        rx.on_packet(8_000, &payload(4, true, 800), 10, &mut out);
        // flash (16) is not a key; a truncated payload is ignored
        rx.on_packet(12_000, &payload(16, true, 800), 20, &mut out);
        rx.on_packet(13_000, &[1, 2], 30, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].digit, '9');
    }

    #[test]
    fn timestamps_wrap() {
        let mut rx = Rfc4733Receiver::new();
        let mut out = Vec::new();
        rx.on_packet(u32::MAX - 80, &payload(7, true, 800), 0, &mut out);
        rx.on_packet(200, &payload(8, true, 800), 300, &mut out);
        let keys: Vec<char> = out.iter().map(|d| d.digit).collect();
        assert_eq!(keys, vec!['7', '8']);
    }
}

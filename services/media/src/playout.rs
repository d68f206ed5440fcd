//! The playout of one outbound stream, sans-IO: a queue of audio items, and for each 20 ms
//! frame of the engine's clock, the RTP packet to send (if any) and the notifications due.
//!
//! Timestamps come from the frame clock, so they advance by 160 per frame whether or not a
//! packet is sent; the marker bit is set on the first packet after a frame that sent nothing
//! (the start of a talkspurt) and on the first packet of each RFC 4733 event.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::codec::Codec;
use crate::dtmf::rfc4733::{TelephoneEvent, DEFAULT_VOLUME};
use crate::dtmf::{event_code, key_frequencies};
use crate::mix::{EventRelay, Frame, RelayOutput, RelayedEvent};
use crate::pcm::{Pcm, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE};
use crate::recorder::RecorderConfig;
use crate::rtp::{RtpClock, RtpPacketizer};

/// Identifies a command given to a session; outcomes refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

impl std::fmt::Display for CommandId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Peak amplitude of each of the two tones of in-band DTMF we send.
pub const INBAND_DTMF_AMPLITUDE: f32 = 7000.0;

/// What to start recording, once the queue reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRequest {
    pub path: std::path::PathBuf,
    pub config: RecorderConfig,
}

/// One element of a stream's queue.
#[derive(Debug, Clone)]
pub enum AudioItem {
    /// A prompt, played `loops` times (0: until stopped).
    Pcm { pcm: Arc<Pcm>, loops: u32 },
    /// Silence (no packets, or silence packets with `idle_silence`).
    Silence { ms: u32 },
    /// A key press: RFC 4733 events when telephone-event is negotiated, in-band tones if not.
    Key { key: char, duration_ms: u32 },
    /// Starts a recording when reached (after the beep before it); takes no time.
    StartRecording(Box<RecordingRequest>),
}

/// An item with the command it belongs to. A command's items are queued together, the last
/// one flagged, so that its outcome is reported once.
#[derive(Debug, Clone)]
pub struct QueuedItem {
    pub item: AudioItem,
    pub command: CommandId,
    pub last_of_command: bool,
}

/// Notifications produced by the playout.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayoutEvent {
    Finished(CommandId),
    Interrupted(CommandId),
    StartRecording {
        command: CommandId,
        request: Box<RecordingRequest>,
    },
}

/// Position within the item at the head of the queue.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// Frames produced in the current pass over the item.
    frame: u32,
    /// Completed passes (loops) over a prompt.
    loops_done: u32,
    /// RTP timestamp of the event being sent (all its packets carry the event's start).
    event_timestamp: u32,
}

/// A stream's outbound state machine.
#[derive(Debug)]
pub struct StreamPlayout {
    codec: Codec,
    telephone_event_pt: Option<u8>,
    idle_silence: bool,
    packetizer: RtpPacketizer,
    clock: RtpClock,
    start_frame: Option<u64>,
    last_sent_frame: Option<u64>,
    queue: VecDeque<QueuedItem>,
    cursor: Cursor,
    generation: u64,
    relay: EventRelay,
}

impl StreamPlayout {
    /// A stream with a random SSRC, initial sequence number and timestamp.
    pub fn new(codec: Codec, telephone_event_pt: Option<u8>, idle_silence: bool) -> StreamPlayout {
        StreamPlayout::with_rtp(
            codec,
            telephone_event_pt,
            idle_silence,
            RtpPacketizer::new_random(),
            RtpClock::new_random(),
        )
    }

    pub fn with_rtp(
        codec: Codec,
        telephone_event_pt: Option<u8>,
        idle_silence: bool,
        packetizer: RtpPacketizer,
        clock: RtpClock,
    ) -> StreamPlayout {
        StreamPlayout {
            codec,
            telephone_event_pt,
            idle_silence,
            packetizer,
            clock,
            start_frame: None,
            last_sent_frame: None,
            queue: VecDeque::new(),
            cursor: Cursor::default(),
            generation: 0,
            relay: EventRelay::new(),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.packetizer.ssrc()
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn set_media(&mut self, codec: Codec, telephone_event_pt: Option<u8>) {
        self.codec = codec;
        self.telephone_event_pt = telephone_event_pt;
    }

    /// Whether nothing is queued.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn queued_items(&self) -> usize {
        self.queue.len()
    }

    /// Queues a command's items; if they were issued before the last `clear` (an older
    /// generation), they are interrupted at once instead.
    pub fn enqueue(
        &mut self,
        generation: u64,
        items: Vec<QueuedItem>,
        events: &mut Vec<PlayoutEvent>,
    ) {
        if generation < self.generation {
            events.extend(
                items
                    .iter()
                    .filter(|q| q.last_of_command)
                    .map(|q| PlayoutEvent::Interrupted(q.command)),
            );
            return;
        }
        self.queue.extend(items);
    }

    /// Barge-in: interrupts the current and queued items; commands of older generations
    /// arriving later are interrupted too.
    pub fn clear(&mut self, generation: u64, events: &mut Vec<PlayoutEvent>) {
        self.generation = self.generation.max(generation);
        events.extend(
            self.queue
                .drain(..)
                .filter(|q| q.last_of_command)
                .map(|q| PlayoutEvent::Interrupted(q.command)),
        );
        self.cursor = Cursor::default();
    }

    /// Produces frame `frame` of the engine clock: writes the packet into `out` and returns its
    /// length, or `None` when nothing is sent this frame. Frames must be given in increasing
    /// order; skipped frames simply send nothing.
    pub fn on_frame(
        &mut self,
        frame: u64,
        out: &mut [u8],
        events: &mut Vec<PlayoutEvent>,
    ) -> Option<usize> {
        self.produce(frame, out, events, None)
    }

    /// Like [`on_frame`](Self::on_frame) for a leg in a bridge or conference: `mix` (the other
    /// parties' audio) is summed with the queue's audio, with clipping, and a packet is sent
    /// every frame. A telephone-event packet (a `Digits` key of the queue, or an event relayed
    /// from the other leg of a bridge) takes the frame instead of audio; a relayed key on a leg
    /// without telephone-event replaces the other party's audio with its in-band tone.
    pub fn on_frame_mixed(
        &mut self,
        frame: u64,
        out: &mut [u8],
        events: &mut Vec<PlayoutEvent>,
        mix: &Frame,
    ) -> Option<usize> {
        self.produce(frame, out, events, Some(mix))
    }

    /// Queues a telephone-event received on the other leg of a bridge.
    pub fn relay_event(&mut self, event: RelayedEvent) {
        self.relay.push(event);
    }

    /// Forgets relayed events (the bridge ended).
    pub fn reset_relay(&mut self) {
        self.relay.reset();
    }

    fn produce(
        &mut self,
        frame: u64,
        out: &mut [u8],
        events: &mut Vec<PlayoutEvent>,
        mix: Option<&Frame>,
    ) -> Option<usize> {
        let start = *self.start_frame.get_or_insert(frame);
        let timestamp = self.clock.timestamp(frame.saturating_sub(start));
        let after_gap = self.last_sent_frame.is_none_or(|f| f + 1 != frame);
        self.skip_instant_items(events);

        let mut payload = [0u8; FRAME_SAMPLES];
        let silence = self.codec.silence_byte();
        let mut payload_type = self.codec.payload_type();
        let mut marker = after_gap;
        let mut packet_timestamp = timestamp;
        let mut send = true;
        let mut completed = false;
        let mut payload_len = FRAME_SAMPLES;
        // Whether `payload` holds audio of the queue (to sum with the mix).
        let mut queue_audio = true;

        match self.queue.front() {
            None => {
                if !self.idle_silence && mix.is_none() {
                    return None;
                }
                payload.fill(silence);
                queue_audio = false;
            }
            Some(q) => match &q.item {
                AudioItem::Pcm { pcm, loops } => {
                    let bytes = pcm.encoded(self.codec);
                    let offset = self.cursor.frame as usize * FRAME_SAMPLES;
                    let end = (offset + FRAME_SAMPLES).min(bytes.len());
                    let chunk = bytes.get(offset..end).unwrap_or(&[]);
                    payload[..chunk.len()].copy_from_slice(chunk);
                    payload[chunk.len()..].fill(silence);
                    self.cursor.frame += 1;
                    if end >= bytes.len() {
                        self.cursor.frame = 0;
                        self.cursor.loops_done += 1;
                        completed = *loops != 0 && self.cursor.loops_done >= *loops;
                    }
                }
                AudioItem::Silence { ms } => {
                    self.cursor.frame += 1;
                    completed = self.cursor.frame >= frames_for(*ms);
                    queue_audio = false;
                    if self.idle_silence || mix.is_some() {
                        payload.fill(silence);
                    } else {
                        send = false;
                    }
                }
                AudioItem::Key { key, duration_ms } => {
                    let frames = frames_for(*duration_ms).max(1);
                    let k = self.cursor.frame + 1;
                    match (self.telephone_event_pt, event_code(*key)) {
                        (Some(pt), Some(code)) => {
                            if k == 1 {
                                self.cursor.event_timestamp = timestamp;
                            }
                            let ev = TelephoneEvent {
                                event: code,
                                end: k >= frames,
                                volume: DEFAULT_VOLUME,
                                duration: (k.min(frames) as usize * FRAME_SAMPLES)
                                    .min(usize::from(u16::MAX))
                                    as u16,
                            };
                            payload[..4].copy_from_slice(&ev.to_bytes());
                            payload_len = 4;
                            payload_type = pt;
                            marker = k == 1;
                            packet_timestamp = self.cursor.event_timestamp;
                            // The end packet goes out three times (RFC 4733 §2.5.1.4).
                            completed = k >= frames + 2;
                        }
                        _ => {
                            let (low, high) = key_frequencies(*key).unwrap_or((0.0, 0.0));
                            let first = self.cursor.frame as usize * FRAME_SAMPLES;
                            for (i, b) in payload.iter_mut().enumerate() {
                                let t = (first + i) as f32 / SAMPLE_RATE as f32;
                                let v = ((std::f32::consts::TAU * low * t).sin()
                                    + (std::f32::consts::TAU * high * t).sin())
                                    * INBAND_DTMF_AMPLITUDE;
                                *b = self.codec.encode_sample(v as i16);
                            }
                            completed = k >= frames;
                        }
                    }
                    self.cursor.frame += 1;
                }
                // skip_instant_items consumed these
                AudioItem::StartRecording(_) => {
                    send = false;
                    queue_audio = false;
                }
            },
        }

        if completed {
            self.cursor = Cursor::default();
            if let Some(q) = self.queue.pop_front() {
                if q.last_of_command {
                    events.push(PlayoutEvent::Finished(q.command));
                }
            }
        }
        // A key of the queue sent as an event keeps the frame; otherwise the mix joins in.
        if let Some(mix) = mix.filter(|_| payload_len == FRAME_SAMPLES) {
            let mut pcm = *mix;
            match self
                .relay
                .next(timestamp, self.telephone_event_pt, &mut pcm)
            {
                RelayOutput::Event {
                    payload: event,
                    timestamp: event_timestamp,
                    marker: first,
                } => {
                    payload[..4].copy_from_slice(&event);
                    payload_len = 4;
                    payload_type = self.telephone_event_pt.unwrap_or(payload_type);
                    marker = first;
                    packet_timestamp = event_timestamp;
                }
                RelayOutput::Tone | RelayOutput::Nothing => {
                    if queue_audio && send {
                        for (s, b) in pcm.iter_mut().zip(&payload) {
                            *s = s.saturating_add(self.codec.decode_sample(*b));
                        }
                    }
                    self.codec.encode_into(&pcm, &mut payload);
                }
            }
            send = true;
        }
        if !send {
            return None;
        }
        match self.packetizer.write(
            out,
            payload_type,
            marker,
            packet_timestamp,
            &payload[..payload_len],
        ) {
            Ok(n) => {
                self.last_sent_frame = Some(frame);
                Some(n)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build an RTP packet");
                None
            }
        }
    }

    /// Pops the items that take no time (recording starts, empty prompts, zero pauses).
    fn skip_instant_items(&mut self, events: &mut Vec<PlayoutEvent>) {
        while let Some(q) = self.queue.front() {
            let instant = match &q.item {
                AudioItem::Pcm { pcm, .. } => pcm.is_empty(),
                AudioItem::Silence { ms } => frames_for(*ms) == 0,
                AudioItem::Key { .. } => false,
                AudioItem::StartRecording(_) => true,
            };
            if !instant {
                return;
            }
            let Some(q) = self.queue.pop_front() else {
                return;
            };
            self.cursor = Cursor::default();
            match q.item {
                // The recording reports its own outcomes.
                AudioItem::StartRecording(request) => events.push(PlayoutEvent::StartRecording {
                    command: q.command,
                    request,
                }),
                _ if q.last_of_command => events.push(PlayoutEvent::Finished(q.command)),
                _ => {}
            }
        }
    }

    /// Interrupts everything (the stream is going away).
    pub fn interrupt_all(&mut self, events: &mut Vec<PlayoutEvent>) {
        let generation = self.generation;
        self.clear(generation, events);
    }
}

/// Frames needed for `ms` milliseconds (rounded up).
pub fn frames_for(ms: u32) -> u32 {
    ms.div_ceil(FRAME_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::RtpReader;

    const TE: u8 = 101;

    struct Sent {
        frame: u64,
        seq: u16,
        ts: u32,
        marker: bool,
        pt: u8,
        payload: Vec<u8>,
    }

    fn stream(idle_silence: bool, te: Option<u8>) -> StreamPlayout {
        StreamPlayout::with_rtp(
            Codec::Pcmu,
            te,
            idle_silence,
            RtpPacketizer::new(0xABCD, 65530),
            RtpClock::new(1_000_000),
        )
    }

    fn run(s: &mut StreamPlayout, frames: std::ops::Range<u64>) -> (Vec<Sent>, Vec<PlayoutEvent>) {
        let mut sent = Vec::new();
        let mut events = Vec::new();
        let mut buf = [0u8; 512];
        for f in frames {
            if let Some(n) = s.on_frame(f, &mut buf, &mut events) {
                let r = RtpReader::new(&buf[..n]).unwrap();
                assert_eq!(r.ssrc(), 0xABCD);
                sent.push(Sent {
                    frame: f,
                    seq: u16::from(r.sequence_number()),
                    ts: r.timestamp(),
                    marker: r.mark(),
                    pt: r.payload_type(),
                    payload: r.payload().to_vec(),
                });
            }
        }
        (sent, events)
    }

    fn item(item: AudioItem, command: u64, last: bool) -> QueuedItem {
        QueuedItem {
            item,
            command: CommandId(command),
            last_of_command: last,
        }
    }

    #[test]
    fn prompt_is_sent_in_frames_with_consecutive_seq_and_timestamps() {
        let mut s = stream(false, None);
        let pcm = Arc::new(Pcm::tone(&[440.0], 110, 8000.0)); // 880 samples: 5.5 frames
        let mut ev = Vec::new();
        s.enqueue(
            0,
            vec![item(
                AudioItem::Pcm {
                    pcm: pcm.clone(),
                    loops: 1,
                },
                1,
                true,
            )],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 100..110);
        assert_eq!(sent.len(), 6);
        for (i, p) in sent.iter().enumerate() {
            assert_eq!(p.seq, 65530u16.wrapping_add(i as u16));
            assert_eq!(p.ts, 1_000_000 + 160 * i as u32);
            assert_eq!(p.marker, i == 0);
            assert_eq!(p.pt, 0);
            assert_eq!(p.payload.len(), 160);
        }
        // the last frame is padded with silence
        assert_eq!(&sent[5].payload[..80], &pcm.encoded(Codec::Pcmu)[800..880]);
        assert!(sent[5].payload[80..].iter().all(|b| *b == 0xFF));
        assert_eq!(events, vec![PlayoutEvent::Finished(CommandId(1))]);
    }

    #[test]
    fn pause_without_idle_silence_is_a_gap_then_a_marker() {
        let mut s = stream(false, None);
        let pcm = Arc::new(Pcm::tone(&[440.0], 40, 8000.0));
        let mut ev = Vec::new();
        s.enqueue(
            0,
            vec![
                item(
                    AudioItem::Pcm {
                        pcm: pcm.clone(),
                        loops: 1,
                    },
                    1,
                    true,
                ),
                item(AudioItem::Silence { ms: 100 }, 2, true),
                item(AudioItem::Pcm { pcm, loops: 2 }, 3, true),
            ],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 0..20);
        let frames: Vec<u64> = sent.iter().map(|p| p.frame).collect();
        assert_eq!(frames, vec![0, 1, 7, 8, 9, 10]);
        let markers: Vec<bool> = sent.iter().map(|p| p.marker).collect();
        assert_eq!(markers, vec![true, false, true, false, false, false]);
        // the timestamp advanced through the pause; sequence numbers did not
        assert_eq!(sent[2].ts.wrapping_sub(sent[1].ts), 6 * 160);
        assert_eq!(sent[2].seq, sent[1].seq.wrapping_add(1));
        assert_eq!(
            events,
            vec![
                PlayoutEvent::Finished(CommandId(1)),
                PlayoutEvent::Finished(CommandId(2)),
                PlayoutEvent::Finished(CommandId(3))
            ]
        );
    }

    #[test]
    fn idle_silence_sends_continuously() {
        let mut s = stream(true, None);
        let (sent, _) = run(&mut s, 0..3);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|p| p.payload.iter().all(|b| *b == 0xFF)));
        assert_eq!(
            sent.iter().map(|p| p.marker).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        let mut ev = Vec::new();
        s.enqueue(
            0,
            vec![item(AudioItem::Silence { ms: 40 }, 1, true)],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 3..6);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|p| !p.marker));
        assert_eq!(events, vec![PlayoutEvent::Finished(CommandId(1))]);
    }

    #[test]
    fn engine_skips_make_a_new_talkspurt() {
        let mut s = stream(false, None);
        let mut ev = Vec::new();
        let pcm = Arc::new(Pcm::tone(&[440.0], 1000, 8000.0));
        s.enqueue(
            0,
            vec![item(AudioItem::Pcm { pcm, loops: 1 }, 1, true)],
            &mut ev,
        );
        let (a, _) = run(&mut s, 0..2);
        let (b, _) = run(&mut s, 10..11);
        assert!(a[0].marker && !a[1].marker && b[0].marker);
        assert_eq!(b[0].ts.wrapping_sub(a[0].ts), 10 * 160);
    }

    #[test]
    fn rfc4733_digit_packets() {
        let mut s = stream(false, Some(TE));
        let mut ev = Vec::new();
        s.enqueue(
            0,
            vec![
                item(
                    AudioItem::Key {
                        key: '#',
                        duration_ms: 100,
                    },
                    1,
                    false,
                ),
                item(AudioItem::Silence { ms: 100 }, 1, true),
            ],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 50..70);
        assert_eq!(sent.len(), 7, "5 updates, the end packet 3 times");
        let start_ts = sent[0].ts;
        for (i, p) in sent.iter().enumerate() {
            assert_eq!(p.pt, TE);
            assert_eq!(p.ts, start_ts, "all packets carry the event start");
            assert_eq!(p.marker, i == 0);
            let e = TelephoneEvent::parse(&p.payload).unwrap();
            assert_eq!(e.event, 11);
            let k = (i + 1).min(5) as u16;
            assert_eq!(e.duration, 160 * k);
            assert_eq!(e.end, i >= 4);
        }
        // consecutive sequence numbers for all of them, including the repeated end
        for w in sent.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        }
        assert_eq!(events, vec![PlayoutEvent::Finished(CommandId(1))]);
        // and the receiver sees exactly one key of 100 ms
        let mut rx = crate::dtmf::rfc4733::Rfc4733Receiver::new();
        let mut keys = Vec::new();
        for (i, p) in sent.iter().enumerate() {
            rx.on_packet(p.ts, &p.payload, i as u64 * 20, &mut keys);
        }
        assert_eq!(
            keys,
            vec![crate::dtmf::DtmfDigit {
                digit: '#',
                duration_ms: 100
            }]
        );
    }

    #[test]
    fn inband_digits_without_telephone_event() {
        let mut s = stream(false, None);
        let mut ev = Vec::new();
        s.enqueue(
            0,
            vec![
                item(
                    AudioItem::Key {
                        key: '4',
                        duration_ms: 100,
                    },
                    1,
                    false,
                ),
                item(AudioItem::Silence { ms: 100 }, 1, false),
                item(
                    AudioItem::Key {
                        key: '2',
                        duration_ms: 100,
                    },
                    1,
                    true,
                ),
            ],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 0..20);
        assert_eq!(sent.len(), 10);
        assert!(sent.iter().all(|p| p.pt == 0));
        let mut pcm = Vec::new();
        let mut last_frame = None;
        for p in &sent {
            if let Some(l) = last_frame {
                for _ in l + 1..p.frame {
                    pcm.extend(std::iter::repeat_n(0i16, 160));
                }
            }
            last_frame = Some(p.frame);
            Codec::Pcmu.decode_append(&p.payload, &mut pcm);
        }
        pcm.extend(std::iter::repeat_n(0i16, 800));
        let mut det = crate::dtmf::goertzel::GoertzelDetector::default();
        let mut keys = Vec::new();
        det.push(&pcm, &mut keys);
        det.flush(&mut keys);
        let keys: String = keys.iter().map(|k| k.digit).collect();
        assert_eq!(keys, "42");
        assert_eq!(events, vec![PlayoutEvent::Finished(CommandId(1))]);
    }

    #[test]
    fn loops_and_infinite_loops() {
        let mut s = stream(false, None);
        let mut ev = Vec::new();
        let pcm = Arc::new(Pcm::tone(&[440.0], 40, 8000.0));
        s.enqueue(
            0,
            vec![item(
                AudioItem::Pcm {
                    pcm: pcm.clone(),
                    loops: 3,
                },
                1,
                true,
            )],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 0..10);
        assert_eq!(sent.len(), 6);
        assert_eq!(events, vec![PlayoutEvent::Finished(CommandId(1))]);
        s.enqueue(
            0,
            vec![item(AudioItem::Pcm { pcm, loops: 0 }, 2, true)],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 10..1010);
        assert_eq!(sent.len(), 1000);
        assert!(events.is_empty());
        assert!(!s.is_idle());
    }

    #[test]
    fn clear_interrupts_current_and_queued_and_older_generations() {
        let mut s = stream(false, None);
        let mut ev = Vec::new();
        let pcm = Arc::new(Pcm::tone(&[440.0], 1000, 8000.0));
        s.enqueue(
            0,
            vec![
                item(
                    AudioItem::Pcm {
                        pcm: pcm.clone(),
                        loops: 1,
                    },
                    1,
                    false,
                ),
                item(AudioItem::Silence { ms: 40 }, 1, true),
                item(
                    AudioItem::Pcm {
                        pcm: pcm.clone(),
                        loops: 1,
                    },
                    2,
                    true,
                ),
            ],
            &mut ev,
        );
        let (sent, _) = run(&mut s, 0..5);
        assert_eq!(sent.len(), 5);
        s.clear(1, &mut ev);
        assert_eq!(
            ev,
            vec![
                PlayoutEvent::Interrupted(CommandId(1)),
                PlayoutEvent::Interrupted(CommandId(2))
            ]
        );
        ev.clear();
        // a command issued before the barge-in but prepared after it
        s.enqueue(
            0,
            vec![item(
                AudioItem::Pcm {
                    pcm: pcm.clone(),
                    loops: 1,
                },
                3,
                true,
            )],
            &mut ev,
        );
        assert_eq!(ev, vec![PlayoutEvent::Interrupted(CommandId(3))]);
        ev.clear();
        let (sent, _) = run(&mut s, 5..10);
        assert!(sent.is_empty());
        // a new one plays from its beginning, as a new talkspurt
        s.enqueue(
            1,
            vec![item(
                AudioItem::Pcm {
                    pcm: pcm.clone(),
                    loops: 1,
                },
                4,
                true,
            )],
            &mut ev,
        );
        let (sent, _) = run(&mut s, 10..11);
        assert!(sent[0].marker);
        assert_eq!(sent[0].payload, pcm.encoded(Codec::Pcmu)[..160].to_vec());
    }

    #[test]
    fn recording_start_is_reported_when_reached() {
        let mut s = stream(false, None);
        let mut ev = Vec::new();
        let beep = Arc::new(Pcm::tone(&[1000.0], 60, 8000.0));
        let req = RecordingRequest {
            path: "/tmp/x.wav".into(),
            config: RecorderConfig::default(),
        };
        s.enqueue(
            0,
            vec![
                item(
                    AudioItem::Pcm {
                        pcm: beep,
                        loops: 1,
                    },
                    7,
                    false,
                ),
                item(AudioItem::StartRecording(Box::new(req.clone())), 7, true),
            ],
            &mut ev,
        );
        let (sent, events) = run(&mut s, 0..3);
        assert_eq!(sent.len(), 3);
        assert!(events.is_empty());
        let (_, events) = run(&mut s, 3..4);
        assert_eq!(
            events,
            vec![PlayoutEvent::StartRecording {
                command: CommandId(7),
                request: Box::new(req)
            }]
        );
        assert!(s.is_idle());
    }

    #[test]
    fn codec_change_applies_to_the_next_frame() {
        let mut s = stream(false, None);
        let mut ev = Vec::new();
        let pcm = Arc::new(Pcm::tone(&[440.0], 100, 8000.0));
        s.enqueue(
            0,
            vec![item(
                AudioItem::Pcm {
                    pcm: pcm.clone(),
                    loops: 1,
                },
                1,
                true,
            )],
            &mut ev,
        );
        let (a, _) = run(&mut s, 0..1);
        s.set_media(Codec::Pcma, None);
        let (b, _) = run(&mut s, 1..2);
        assert_eq!((a[0].pt, b[0].pt), (0, 8));
        assert_eq!(b[0].payload, pcm.encoded(Codec::Pcma)[160..320].to_vec());
    }

    fn mixed(
        s: &mut StreamPlayout,
        frames: std::ops::Range<u64>,
        mix: &Frame,
    ) -> (Vec<Sent>, Vec<PlayoutEvent>) {
        let mut sent = Vec::new();
        let mut events = Vec::new();
        let mut buf = [0u8; 512];
        for f in frames {
            if let Some(n) = s.on_frame_mixed(f, &mut buf, &mut events, mix) {
                let r = RtpReader::new(&buf[..n]).unwrap();
                sent.push(Sent {
                    frame: f,
                    seq: u16::from(r.sequence_number()),
                    ts: r.timestamp(),
                    marker: r.mark(),
                    pt: r.payload_type(),
                    payload: r.payload().to_vec(),
                });
            }
        }
        (sent, events)
    }

    #[test]
    fn mixed_frames_are_sent_continuously_in_the_stream_codec() {
        // idle silence off: alone it sends nothing, mixed it sends every frame
        let mut s = StreamPlayout::with_rtp(
            Codec::Pcma,
            None,
            false,
            RtpPacketizer::new(0xABCD, 10),
            RtpClock::new(0),
        );
        let (before, _) = run(&mut s, 0..3);
        assert!(before.is_empty());
        let mix = [1000i16; FRAME_SAMPLES];
        let (sent, _) = mixed(&mut s, 3..8, &mix);
        assert_eq!(sent.len(), 5);
        assert!(sent[0].marker && sent[1..].iter().all(|p| !p.marker));
        for (i, p) in sent.iter().enumerate() {
            assert_eq!(p.pt, 8);
            assert_eq!(p.seq, 10 + i as u16);
            assert_eq!(p.ts, (3 + i as u32) * 160);
            let pcm = Codec::Pcma.decode(&p.payload);
            assert!(
                pcm.iter().all(|v| (*v - 1000).abs() < 40),
                "{:?}",
                &pcm[..4]
            );
        }
        // after the bridge: back to plain playout (nothing to send), same SSRC and sequence
        let mut ev = Vec::new();
        s.enqueue(
            0,
            vec![item(AudioItem::Silence { ms: 20 }, 1, true)],
            &mut ev,
        );
        let tone = Arc::new(Pcm::tone(&[440.0], 40, 8000.0));
        s.enqueue(
            0,
            vec![item(
                AudioItem::Pcm {
                    pcm: tone,
                    loops: 1,
                },
                2,
                true,
            )],
            &mut ev,
        );
        let (after, _) = run(&mut s, 8..12);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].seq, 15);
        assert!(after[0].marker);
    }

    #[test]
    fn playback_is_summed_with_the_mix_and_keys_take_their_frames() {
        let mut s = stream(false, Some(TE));
        let mut ev = Vec::new();
        let prompt = Arc::new(Pcm::new(vec![2000i16; 320]));
        s.enqueue(
            0,
            vec![
                item(
                    AudioItem::Pcm {
                        pcm: prompt,
                        loops: 1,
                    },
                    1,
                    true,
                ),
                item(
                    AudioItem::Key {
                        key: '1',
                        duration_ms: 20,
                    },
                    2,
                    true,
                ),
            ],
            &mut ev,
        );
        let mix = [-500i16; FRAME_SAMPLES];
        let (sent, events) = mixed(&mut s, 0..6, &mix);
        assert_eq!(sent.len(), 6);
        for p in &sent[..2] {
            assert_eq!(p.pt, 0);
            let pcm = Codec::Pcmu.decode(&p.payload);
            assert!(
                pcm.iter().all(|v| (*v - 1500).abs() < 80),
                "{:?}",
                &pcm[..4]
            );
        }
        // the key: one update + end sent 3 times, as events
        assert!(sent[2..5].iter().all(|p| p.pt == TE));
        assert_eq!(sent[5].pt, 0);
        let pcm = Codec::Pcmu.decode(&sent[5].payload);
        assert!(pcm.iter().all(|v| (*v + 500).abs() < 40));
        assert_eq!(
            events,
            vec![
                PlayoutEvent::Finished(CommandId(1)),
                PlayoutEvent::Finished(CommandId(2))
            ]
        );
    }

    #[test]
    fn relayed_events_take_frames_with_this_stream_identity() {
        let mut s = stream(false, Some(TE));
        let mix = [0i16; FRAME_SAMPLES];
        let (first, _) = mixed(&mut s, 0..2, &mix);
        for k in 1..=3u16 {
            s.relay_event(RelayedEvent {
                timestamp: 777,
                event: TelephoneEvent {
                    event: 10,
                    end: k == 3,
                    volume: 10,
                    duration: 160 * k,
                },
            });
        }
        let (sent, _) = mixed(&mut s, 2..6, &mix);
        assert_eq!(sent.len(), 4);
        assert!(sent[..3]
            .iter()
            .all(|p| p.pt == TE && p.ts == first[1].ts + 160));
        assert_eq!(
            sent.iter().map(|p| p.marker).collect::<Vec<_>>(),
            vec![true, false, false, false]
        );
        assert_eq!(sent[3].pt, 0, "audio again");
        for w in first.iter().chain(&sent).collect::<Vec<_>>().windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        }
        let last = TelephoneEvent::parse(&sent[2].payload).unwrap();
        assert!(last.end && last.duration == 480 && last.event == 10);
    }
}

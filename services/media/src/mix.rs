//! Bridges and conferences, sans-IO: the jitter buffer that turns a leg's received packets
//! into one 20 ms frame per tick, N-1 mixing with clipping, the relay of RFC 4733
//! telephone-events from one leg to another (passed through, or regenerated as in-band
//! tones), and the conference beeps.
//!
//! Everything here works on decoded 8 kHz PCM, so PCMU↔PCMA transcoding is simply decoding on
//! the receiving leg and encoding on the sending leg.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};

use crate::dtmf::rfc4733::TelephoneEvent;
use crate::dtmf::{key_frequencies, key_of_event};
use crate::pcm::{Pcm, FRAME_SAMPLES, SAMPLE_RATE};
use crate::playout::INBAND_DTMF_AMPLITUDE;
use crate::rtp::timestamp_before;

/// One 20 ms frame of 8 kHz audio.
pub type Frame = [i16; FRAME_SAMPLES];

/// A frame of digital silence.
pub const SILENT_FRAME: Frame = [0; FRAME_SAMPLES];

/// Frames buffered before a leg's audio starts flowing (after a start or an underrun): the
/// cushion that absorbs network jitter, at the cost of this much delay.
pub const JITTER_PRIME_FRAMES: usize = 2;
/// More than this buffered (the remote sends faster than we play, or a burst arrived), the
/// oldest audio is dropped down to the prime level, so that delay stays bounded.
pub const JITTER_MAX_FRAMES: usize = 6;
/// Timestamp gaps up to this (lost packets) are filled with silence; longer ones are silence
/// suppression or a new stream, and the buffer just resynchronises.
pub const MAX_CONCEALED_SAMPLES: u32 = 4 * FRAME_SAMPLES as u32;
/// Packets up to this far behind the expected timestamp are late or duplicates (dropped);
/// further behind, the remote restarted its timestamps.
const LATE_WINDOW_SAMPLES: u32 = SAMPLE_RATE;

/// A leg's received audio, reordered into frames: pushed by the receive thread as packets
/// arrive, popped once per 20 ms tick by the mixer.
#[derive(Debug, Default)]
pub struct JitterBuffer {
    samples: VecDeque<i16>,
    next_timestamp: Option<u32>,
    primed: bool,
    dropped_samples: u64,
    concealed_samples: u64,
}

impl JitterBuffer {
    pub fn new() -> JitterBuffer {
        JitterBuffer::default()
    }

    /// Adds a packet's decoded audio, with its RTP timestamp.
    pub fn push(&mut self, timestamp: u32, samples: &[i16]) {
        if let Some(expected) = self.next_timestamp {
            if timestamp_before(timestamp, expected) {
                if expected.wrapping_sub(timestamp) <= LATE_WINDOW_SAMPLES {
                    return; // a duplicate, or too late to be played
                }
            } else {
                let gap = timestamp.wrapping_sub(expected);
                if gap > 0 && gap <= MAX_CONCEALED_SAMPLES {
                    self.samples.extend(std::iter::repeat_n(0i16, gap as usize));
                    self.concealed_samples += u64::from(gap);
                }
            }
        }
        self.samples.extend(samples.iter().copied());
        self.next_timestamp = Some(timestamp.wrapping_add(samples.len() as u32));
        if self.samples.len() > JITTER_MAX_FRAMES * FRAME_SAMPLES {
            let excess = self.samples.len() - JITTER_PRIME_FRAMES * FRAME_SAMPLES;
            self.samples.drain(..excess);
            self.dropped_samples += excess as u64;
        }
    }

    /// The next frame, or `None` while priming or when nothing arrived (the caller plays
    /// silence). A partial frame at the end of a talkspurt is padded with silence.
    pub fn pop(&mut self) -> Option<Frame> {
        if !self.primed {
            if self.samples.len() < JITTER_PRIME_FRAMES * FRAME_SAMPLES {
                return None;
            }
            self.primed = true;
        }
        if self.samples.is_empty() {
            self.primed = false;
            return None;
        }
        let mut frame = SILENT_FRAME;
        let n = self.samples.len().min(FRAME_SAMPLES);
        for (slot, sample) in frame.iter_mut().zip(self.samples.drain(..n)) {
            *slot = sample;
        }
        if n < FRAME_SAMPLES {
            self.primed = false;
        }
        Some(frame)
    }

    /// Forgets everything (the leg left its bridge or conference).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.next_timestamp = None;
        self.primed = false;
    }

    /// Samples waiting.
    pub fn buffered(&self) -> usize {
        self.samples.len()
    }

    /// Samples dropped to bound the delay.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// Silence inserted for lost packets.
    pub fn concealed_samples(&self) -> u64 {
        self.concealed_samples
    }
}

/// Saturates a sum to 16 bits.
pub fn clip(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// `a + b`, clipped.
pub fn add_frames(a: &Frame, b: &Frame) -> Frame {
    let mut out = SILENT_FRAME;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x.saturating_add(*y);
    }
    out
}

/// N-1 mixing: `outputs[i]` is the sum of every input but `inputs[i]`, plus `extra` (heard
/// by everyone, e.g. a beep), clipped. `None` inputs (muted, or nothing received) contribute
/// nothing. The sum is computed once (32-bit, no clipping until the end), so the cost is
/// O(N) per frame, not O(N²).
pub fn mix_minus_one(inputs: &[Option<Frame>], extra: Option<&Frame>, outputs: &mut Vec<Frame>) {
    let mut total = [0i32; FRAME_SAMPLES];
    for frame in inputs.iter().flatten() {
        for (t, s) in total.iter_mut().zip(frame) {
            *t += i32::from(*s);
        }
    }
    if let Some(extra) = extra {
        for (t, s) in total.iter_mut().zip(extra) {
            *t += i32::from(*s);
        }
    }
    outputs.clear();
    for input in inputs {
        let mut out = SILENT_FRAME;
        match input {
            Some(own) => {
                for ((o, t), s) in out.iter_mut().zip(&total).zip(own) {
                    *o = clip(*t - i32::from(*s));
                }
            }
            None => {
                for (o, t) in out.iter_mut().zip(&total) {
                    *o = clip(*t);
                }
            }
        }
        outputs.push(out);
    }
}

/// A telephone-event packet received on one leg, to be relayed to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayedEvent {
    /// RTP timestamp of the event on the receiving leg (the event's start).
    pub timestamp: u32,
    pub event: TelephoneEvent,
}

/// What the relay contributes to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutput {
    /// Nothing: the frame carries the bridged audio.
    Nothing,
    /// Send this telephone-event packet (in place of audio this frame).
    Event {
        payload: [u8; 4],
        /// The event's start in the sending leg's timestamps.
        timestamp: u32,
        /// First packet of the event.
        marker: bool,
    },
    /// The frame is an in-band DTMF tone (written into the caller's buffer), in place of the
    /// bridged audio.
    Tone,
}

/// Events with no update for this many frames while not ended are over (their end packets
/// were lost).
const RELAY_IDLE_FRAMES: u32 = 25;
/// Shortest in-band tone regenerated (detectors need 40 ms).
const MIN_TONE_FRAMES: u32 = 3;
/// Silence between two regenerated tones.
const TONE_GAP_FRAMES: u32 = 3;
/// Packets queued at most (a flood of events cannot grow memory).
const MAX_PENDING_EVENTS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct PassedEvent {
    source_timestamp: u32,
    timestamp: u32,
}

#[derive(Debug, Clone, Copy)]
struct Tone {
    source_timestamp: u32,
    key: char,
    /// Duration announced by the sender so far, in samples.
    duration: u32,
    ended: bool,
    frames: u32,
    idle_frames: u32,
}

/// Relays the telephone-events received on the other leg of a bridge to this leg, in this
/// leg's terms: with telephone-event negotiated, each packet is passed through with this
/// leg's payload type, sequence numbers and a timestamp of this leg's clock (the event start
/// mapped once, durations and end flags kept); without it, each key is regenerated as an
/// in-band tone of the duration the sender announced.
#[derive(Debug, Default)]
pub struct EventRelay {
    pending: VecDeque<RelayedEvent>,
    passing: Option<PassedEvent>,
    tones: VecDeque<Tone>,
    /// Source timestamp of the last event regenerated: later packets of it are repeats.
    last_tone: Option<u32>,
    gap_frames: u32,
    /// Samples of the current tone produced so far (its phase).
    tone_sample: usize,
}

impl EventRelay {
    pub fn new() -> EventRelay {
        EventRelay::default()
    }

    /// Queues an event packet from the other leg.
    pub fn push(&mut self, event: RelayedEvent) {
        if self.pending.len() >= MAX_PENDING_EVENTS {
            self.pending.pop_front();
        }
        self.pending.push_back(event);
    }

    /// Whether nothing is queued or playing.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.tones.is_empty()
    }

    /// Forgets everything (the bridge ended).
    pub fn reset(&mut self) {
        *self = EventRelay::default();
    }

    /// This frame's contribution. `timestamp` is the frame's RTP timestamp on this leg;
    /// `telephone_event_pt` this leg's negotiated payload type; for a tone, `pcm` receives
    /// the samples.
    pub fn next(
        &mut self,
        timestamp: u32,
        telephone_event_pt: Option<u8>,
        pcm: &mut Frame,
    ) -> RelayOutput {
        match telephone_event_pt {
            Some(_) => self.next_passed(timestamp),
            None => self.next_tone(pcm),
        }
    }

    fn next_passed(&mut self, timestamp: u32) -> RelayOutput {
        while let Some(ev) = self.pending.pop_front() {
            let (marker, start) = match self.passing {
                Some(p) if p.source_timestamp == ev.timestamp => (false, p.timestamp),
                // a straggler of an event already replaced by a newer one
                Some(p) if timestamp_before(ev.timestamp, p.source_timestamp) => continue,
                _ => {
                    self.passing = Some(PassedEvent {
                        source_timestamp: ev.timestamp,
                        timestamp,
                    });
                    (true, timestamp)
                }
            };
            return RelayOutput::Event {
                payload: ev.event.to_bytes(),
                timestamp: start,
                marker,
            };
        }
        RelayOutput::Nothing
    }

    fn absorb_pending(&mut self) {
        while let Some(ev) = self.pending.pop_front() {
            let Some(key) = key_of_event(ev.event.event) else {
                continue; // not a key (flash, RFC 4734 tones): nothing to play
            };
            let duration = u32::from(ev.event.duration);
            if let Some(t) = self
                .tones
                .iter_mut()
                .find(|t| t.source_timestamp == ev.timestamp)
            {
                t.duration = t.duration.max(duration);
                t.ended |= ev.event.end;
                t.idle_frames = 0;
                continue;
            }
            let newest = self
                .tones
                .back()
                .map(|t| t.source_timestamp)
                .or(self.last_tone);
            if let Some(newest) = newest {
                if ev.timestamp == newest || timestamp_before(ev.timestamp, newest) {
                    continue; // a repeat of an event already played
                }
            }
            self.tones.push_back(Tone {
                source_timestamp: ev.timestamp,
                key,
                duration,
                ended: ev.event.end,
                frames: 0,
                idle_frames: 0,
            });
        }
    }

    fn next_tone(&mut self, pcm: &mut Frame) -> RelayOutput {
        self.absorb_pending();
        if self.gap_frames > 0 {
            self.gap_frames -= 1;
            return RelayOutput::Nothing;
        }
        let Some(tone) = self.tones.front_mut() else {
            return RelayOutput::Nothing;
        };
        let (low, high) = key_frequencies(tone.key).unwrap_or((0.0, 0.0));
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (self.tone_sample + i) as f32 / SAMPLE_RATE as f32;
            let v = ((std::f32::consts::TAU * low * t).sin()
                + (std::f32::consts::TAU * high * t).sin())
                * INBAND_DTMF_AMPLITUDE;
            *s = v as i16;
        }
        self.tone_sample += FRAME_SAMPLES;
        tone.frames += 1;
        tone.idle_frames += 1;
        let played = tone.frames * FRAME_SAMPLES as u32;
        let done = (tone.ended && played >= tone.duration && tone.frames >= MIN_TONE_FRAMES)
            || tone.idle_frames > RELAY_IDLE_FRAMES;
        if done {
            self.last_tone = Some(tone.source_timestamp);
            self.tones.pop_front();
            self.tone_sample = 0;
            self.gap_frames = TONE_GAP_FRAMES;
        }
        RelayOutput::Tone
    }
}

/// The beep everyone in a conference hears when a participant enters (rising).
pub static ENTER_BEEP: LazyLock<Arc<[i16]>> = LazyLock::new(|| two_tone_beep(600.0, 900.0));
/// The beep everyone in a conference hears when a participant leaves (falling).
pub static EXIT_BEEP: LazyLock<Arc<[i16]>> = LazyLock::new(|| two_tone_beep(900.0, 600.0));

fn two_tone_beep(first_hz: f32, second_hz: f32) -> Arc<[i16]> {
    let mut samples = Pcm::tone(&[first_hz], 120, 6000.0).into_samples();
    samples.extend(Pcm::tone(&[second_hz], 120, 6000.0).samples());
    samples.into()
}

/// Beeps queued in a room, played one after the other into the mix.
#[derive(Debug, Default)]
pub struct BeepQueue {
    beeps: VecDeque<Arc<[i16]>>,
    position: usize,
}

impl BeepQueue {
    pub fn push(&mut self, beep: Arc<[i16]>) {
        // A crowd joining at once does not make a minute of beeps.
        if self.beeps.len() < 4 {
            self.beeps.push_back(beep);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.beeps.is_empty()
    }

    /// The next frame of beeps, if one is playing.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let beep = self.beeps.front()?;
        let mut frame = SILENT_FRAME;
        let end = (self.position + FRAME_SAMPLES).min(beep.len());
        let chunk = beep.get(self.position..end).unwrap_or(&[]);
        frame[..chunk.len()].copy_from_slice(chunk);
        self.position = end;
        if self.position >= beep.len() {
            self.beeps.pop_front();
            self.position = 0;
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::goertzel::GoertzelDetector;
    use crate::dtmf::rfc4733::Rfc4733Receiver;

    fn frame_of(v: i16) -> Frame {
        [v; FRAME_SAMPLES]
    }

    #[test]
    fn jitter_buffer_primes_then_delivers_in_order() {
        let mut jb = JitterBuffer::new();
        assert_eq!(jb.pop(), None);
        jb.push(1000, &frame_of(1));
        assert_eq!(jb.pop(), None, "one frame is not enough to start");
        jb.push(1160, &frame_of(2));
        assert_eq!(jb.pop(), Some(frame_of(1)));
        jb.push(1320, &frame_of(3));
        assert_eq!(jb.pop(), Some(frame_of(2)));
        assert_eq!(jb.pop(), Some(frame_of(3)));
        // underrun: it primes again
        assert_eq!(jb.pop(), None);
        jb.push(1480, &frame_of(4));
        assert_eq!(jb.pop(), None);
        jb.push(1640, &frame_of(5));
        assert_eq!(jb.pop(), Some(frame_of(4)));
    }

    #[test]
    fn jitter_buffer_conceals_loss_and_drops_duplicates() {
        let mut jb = JitterBuffer::new();
        jb.push(0, &frame_of(1));
        jb.push(320, &frame_of(3)); // 160 lost
        jb.push(160, &frame_of(2)); // too late: dropped
        jb.push(320, &frame_of(3)); // duplicate: dropped
        assert_eq!(jb.pop(), Some(frame_of(1)));
        assert_eq!(jb.pop(), Some(SILENT_FRAME));
        assert_eq!(jb.pop(), Some(frame_of(3)));
        assert_eq!(jb.pop(), None);
        assert_eq!(jb.concealed_samples(), 160);
    }

    #[test]
    fn jitter_buffer_resyncs_on_jumps_and_bounds_delay() {
        let mut jb = JitterBuffer::new();
        jb.push(u32::MAX - 159, &frame_of(1));
        jb.push(0, &frame_of(2)); // wraps
                                  // silence suppression: a 2 s jump is not filled
        jb.push(16_160, &frame_of(3));
        assert_eq!(jb.buffered(), 3 * FRAME_SAMPLES);
        // a restart far behind is accepted too
        jb.push(5, &frame_of(4));
        assert_eq!(jb.buffered(), 4 * FRAME_SAMPLES);
        // a burst: delay is cut back to the prime level
        for i in 0..10u32 {
            jb.push(165 + i * 160, &frame_of(10 + i as i16));
        }
        assert!(jb.buffered() <= JITTER_MAX_FRAMES * FRAME_SAMPLES);
        assert!(jb.dropped_samples() > 0);
        // the newest audio is kept
        let mut last = None;
        while let Some(f) = jb.pop() {
            last = Some(f);
        }
        assert_eq!(last, Some(frame_of(19)));
    }

    #[test]
    fn odd_packet_sizes_are_reframed() {
        let mut jb = JitterBuffer::new();
        // 30 ms packets
        jb.push(0, &[7; 240]);
        jb.push(240, &[8; 240]);
        let a = jb.pop().unwrap();
        let b = jb.pop().unwrap();
        let c = jb.pop().unwrap();
        assert!(a.iter().all(|s| *s == 7));
        assert_eq!((b[79], b[80]), (7, 8));
        assert!(c.iter().all(|s| *s == 8));
        assert_eq!(jb.pop(), None);
    }

    #[test]
    fn minus_one_mix_excludes_each_own_input_and_clips() {
        let inputs = vec![
            Some(frame_of(100)),
            Some(frame_of(20)),
            None,
            Some(frame_of(3)),
        ];
        let mut out = Vec::new();
        mix_minus_one(&inputs, None, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], frame_of(23));
        assert_eq!(out[1], frame_of(103));
        assert_eq!(out[2], frame_of(123), "a muted participant hears everyone");
        assert_eq!(out[3], frame_of(120));
        let loud = vec![
            Some(frame_of(30000)),
            Some(frame_of(30000)),
            Some(frame_of(1)),
        ];
        mix_minus_one(&loud, Some(&frame_of(-5)), &mut out);
        assert_eq!(out[2], frame_of(i16::MAX));
        assert_eq!(out[0], frame_of(29996));
        // alone: silence (plus what everyone hears)
        mix_minus_one(&[Some(frame_of(500))], None, &mut out);
        assert_eq!(out[0], SILENT_FRAME);
        assert_eq!(
            add_frames(&frame_of(-30000), &frame_of(-30000)),
            frame_of(i16::MIN)
        );
    }

    fn star_packets(timestamp: u32) -> Vec<RelayedEvent> {
        let mut out: Vec<RelayedEvent> = (1..=5u16)
            .map(|k| RelayedEvent {
                timestamp,
                event: TelephoneEvent {
                    event: 10,
                    end: k == 5,
                    volume: 10,
                    duration: 160 * k,
                },
            })
            .collect();
        let last = *out.last().unwrap();
        out.push(last);
        out.push(last);
        out
    }

    #[test]
    fn relay_passes_events_through_in_the_target_clock() {
        let mut relay = EventRelay::new();
        let mut pcm = SILENT_FRAME;
        assert_eq!(relay.next(5000, Some(96), &mut pcm), RelayOutput::Nothing);
        for ev in star_packets(123_456) {
            relay.push(ev);
        }
        let mut rx = Rfc4733Receiver::new();
        let mut keys = Vec::new();
        let mut sent = Vec::new();
        for frame in 0..10u32 {
            let ts = 5160 + frame * 160;
            if let RelayOutput::Event {
                payload,
                timestamp,
                marker,
            } = relay.next(ts, Some(96), &mut pcm)
            {
                assert_eq!(timestamp, 5160, "the start is mapped once");
                assert_eq!(marker, sent.is_empty());
                rx.on_packet(timestamp, &payload, u64::from(frame) * 20, &mut keys);
                sent.push(TelephoneEvent::parse(&payload).unwrap());
            }
        }
        assert_eq!(sent.len(), 7, "every packet relayed, the end repeats too");
        assert_eq!(sent[4].duration, 800);
        assert!(sent[4].end && !sent[3].end);
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0].digit, keys[0].duration_ms), ('*', 100));
        // a second press is a new event (new start, marker)
        for ev in star_packets(200_000) {
            relay.push(ev);
        }
        match relay.next(9000, Some(96), &mut pcm) {
            RelayOutput::Event {
                timestamp, marker, ..
            } => assert!(marker && timestamp == 9000),
            other => panic!("{other:?}"),
        }
        assert_eq!(relay.pending.len(), 6);
        assert!(!relay.is_idle());
    }

    #[test]
    fn relay_regenerates_in_band_tones_without_telephone_event() {
        let mut relay = EventRelay::new();
        // a burst (all packets of the key at once) and a repeat of it afterwards
        for ev in star_packets(1000) {
            relay.push(ev);
        }
        let mut audio = Vec::new();
        let mut tone_frames = 0;
        for i in 0..20 {
            if i == 8 {
                for ev in star_packets(1000) {
                    relay.push(ev);
                }
            }
            let mut pcm = SILENT_FRAME;
            if relay.next(0, None, &mut pcm) == RelayOutput::Tone {
                tone_frames += 1;
            } else {
                pcm = SILENT_FRAME;
            }
            audio.extend_from_slice(&pcm);
        }
        assert_eq!(tone_frames, 5, "the announced 100 ms, once");
        assert!(relay.is_idle());
        let mut det = GoertzelDetector::default();
        let mut keys = Vec::new();
        det.push(&audio, &mut keys);
        det.flush(&mut keys);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].digit, '*');
        assert!((80..=120).contains(&keys[0].duration_ms), "{:?}", keys[0]);
    }

    #[test]
    fn relay_tone_ends_when_its_end_packets_are_lost() {
        let mut relay = EventRelay::new();
        relay.push(star_packets(1000)[0]);
        let mut pcm = SILENT_FRAME;
        let mut frames = 0;
        while relay.next(0, None, &mut pcm) == RelayOutput::Tone {
            frames += 1;
            assert!(frames < 100);
        }
        assert_eq!(frames, RELAY_IDLE_FRAMES + 1);
    }

    #[test]
    fn beeps_play_in_turn() {
        let mut q = BeepQueue::default();
        assert!(q.next_frame().is_none());
        q.push(ENTER_BEEP.clone());
        q.push(EXIT_BEEP.clone());
        let frames = std::iter::from_fn(|| q.next_frame()).count();
        assert_eq!(frames, 2 * ENTER_BEEP.len().div_ceil(FRAME_SAMPLES));
        assert!(q.is_empty());
    }
}

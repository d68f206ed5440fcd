//! Trimming of leading and trailing silence from a recording that is streamed to disk
//! (bridge, call and conference recordings; `<Record>` trims in memory, see
//! [`crate::recorder`]). Twilio's `trim="trim-silence"`.
//!
//! Sans-IO: fed the recording's samples in any chunks, it returns what to write. Silence
//! before the first voiced 20 ms frame is dropped except the last [`TRIM_MARGIN_MS`]; silence
//! after a voiced frame is held back until more voice comes (then written) or the recording
//! ends (then dropped except the first [`TRIM_MARGIN_MS`]). To bound memory, at most
//! [`MAX_HELD_MS`] of silence is held: past that the oldest is written, so a recording that
//! ends in a longer silence keeps all but its last minute of it. A recording with no voice
//! at all comes out empty.

use std::collections::VecDeque;

use crate::pcm::{ms_to_samples, rms, FRAME_SAMPLES};
pub use crate::recorder::TRIM_MARGIN_MS;

/// Longest silence held back in memory.
pub const MAX_HELD_MS: u32 = 60_000;

/// The trimmer of one recording.
#[derive(Debug)]
pub struct SilenceTrimmer {
    channels: usize,
    threshold_rms: f64,
    /// Samples of an incomplete frame.
    partial: Vec<i16>,
    /// Silent frames not written yet: before the first voice, the last margin's worth;
    /// after it, everything since the last voice.
    held: VecDeque<Vec<i16>>,
    voiced: bool,
}

impl SilenceTrimmer {
    /// `channels` interleaved; a frame is voiced when its RMS over every channel reaches
    /// `threshold_rms`.
    pub fn new(channels: u16, threshold_rms: f64) -> SilenceTrimmer {
        SilenceTrimmer {
            channels: usize::from(channels.max(1)),
            threshold_rms,
            partial: Vec::new(),
            held: VecDeque::new(),
            voiced: false,
        }
    }

    fn frame_len(&self) -> usize {
        FRAME_SAMPLES * self.channels
    }

    fn frames_in(&self, ms: u32) -> usize {
        ms_to_samples(ms) / FRAME_SAMPLES
    }

    /// Takes more samples; returns those to write now.
    pub fn push(&mut self, samples: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        self.partial.extend_from_slice(samples);
        let frame_len = self.frame_len();
        let whole = self.partial.len() / frame_len * frame_len;
        let frames: Vec<i16> = self.partial.drain(..whole).collect();
        for frame in frames.chunks_exact(frame_len) {
            self.frame(frame, &mut out);
        }
        out
    }

    fn frame(&mut self, frame: &[i16], out: &mut Vec<i16>) {
        if rms(frame) >= self.threshold_rms {
            self.voiced = true;
            for held in self.held.drain(..) {
                out.extend_from_slice(&held);
            }
            out.extend_from_slice(frame);
            return;
        }
        self.held.push_back(frame.to_vec());
        let keep = if self.voiced {
            self.frames_in(MAX_HELD_MS)
        } else {
            self.frames_in(TRIM_MARGIN_MS)
        };
        while self.held.len() > keep {
            if let Some(oldest) = self.held.pop_front() {
                if self.voiced {
                    out.extend_from_slice(&oldest);
                }
            }
        }
    }

    /// The recording ended: the last samples to write.
    pub fn finish(mut self) -> Vec<i16> {
        let mut out = Vec::new();
        if self.voiced {
            let margin = self.frames_in(TRIM_MARGIN_MS);
            for held in self.held.drain(..).take(margin) {
                out.extend_from_slice(&held);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOICE: i16 = 3000;

    fn frames(value: i16, count: usize, channels: usize) -> Vec<i16> {
        vec![value; FRAME_SAMPLES * channels * count]
    }

    /// Feeds `input` in awkward chunks and returns everything written.
    fn run(trimmer: SilenceTrimmer, input: &[i16]) -> Vec<i16> {
        let mut trimmer = trimmer;
        let mut out = Vec::new();
        for chunk in input.chunks(77) {
            out.extend(trimmer.push(chunk));
        }
        out.extend(trimmer.finish());
        out
    }

    #[test]
    fn leading_and_trailing_silence_go_but_a_margin_and_inner_pauses_stay() {
        let margin = ms_to_samples(TRIM_MARGIN_MS);
        let mut input = frames(0, 100, 1); // 2 s of silence
        input.extend(frames(VOICE, 10, 1));
        input.extend(frames(0, 50, 1)); // a 1 s pause inside
        input.extend(frames(VOICE, 10, 1));
        input.extend(frames(0, 150, 1)); // 3 s of trailing silence
        let out = run(SilenceTrimmer::new(1, 300.0), &input);
        let voice = 2 * 10 * FRAME_SAMPLES;
        let pause = 50 * FRAME_SAMPLES;
        assert_eq!(out.len(), margin + voice + pause + margin);
        assert!(out[..margin].iter().all(|s| *s == 0));
        assert_eq!(out[margin], VOICE);
        assert!(out[out.len() - margin..].iter().all(|s| *s == 0));
    }

    #[test]
    fn silence_only_comes_out_empty_and_stereo_frames_stay_whole() {
        assert!(run(SilenceTrimmer::new(1, 300.0), &frames(0, 200, 1)).is_empty());
        let mut input = frames(0, 30, 2);
        input.extend(frames(VOICE, 5, 2));
        let out = run(SilenceTrimmer::new(2, 300.0), &input);
        let margin = ms_to_samples(TRIM_MARGIN_MS) * 2;
        assert_eq!(out.len(), margin + 5 * FRAME_SAMPLES * 2);
        assert_eq!(out.len() % 2, 0);
    }

    #[test]
    fn a_very_long_trailing_silence_is_written_beyond_the_held_limit() {
        let held = ms_to_samples(MAX_HELD_MS);
        let mut input = frames(VOICE, 5, 1);
        input.extend(vec![0; held + 40 * FRAME_SAMPLES]);
        let out = run(SilenceTrimmer::new(1, 300.0), &input);
        // The 40 frames over the limit are written; the last minute goes but its margin.
        assert_eq!(
            out.len(),
            5 * FRAME_SAMPLES + 40 * FRAME_SAMPLES + ms_to_samples(TRIM_MARGIN_MS)
        );
    }
}

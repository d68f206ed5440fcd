//! Call recording (Twilio REST `Record=true`, `<Start><Recording>`): both directions of one
//! session, whatever plays on it, in one 8 kHz 16-bit WAV file.
//!
//! ```text
//! let id = session.start_call_recording(CallRecordingOptions {
//!     path, channels: RecordingChannels::Dual, track: RecordingTrack::Both,
//!     trim_silence: false })?;
//! // outcome RecordingStarted { id }
//! session.stop_call_recording();   // or the session closes
//! // outcome CallRecordingFinished { id, path, duration_ms, channels }  (or Failed { id, .. })
//! ```
//!
//! The session's playout engine thread is the recording's clock: every 20 ms frame it takes
//! what it has just sent to the remote party (decoded from the very packet: speech, prompts,
//! tones, bridged or conference audio, all already mixed), and one frame of what the remote
//! party said (decoded by the receive thread into a small jitter buffer of its own, so a
//! bridge or conference taking the same audio does not interfere). A frame with no packet,
//! or a telephone-event packet, is silence. So the file's duration is the wall time the
//! recording ran, even through silence, and both channels stay aligned (the inbound side
//! runs the jitter buffer's 40 ms behind, as any listener would hear it).
//!
//! Channels: `Mono` sums both directions with clipping; `Dual` keeps the remote party
//! (inbound, what Twilio calls the called party of a REST call) on the left and what Dialtone
//! sends (outbound) on the right. A single track (`Inbound` or `Outbound`) is always mono:
//! there is only one direction to keep.

use std::path::PathBuf;

use crate::bridge::RecordingChannels;
use crate::mix::{add_frames, Frame, SILENT_FRAME};
use crate::pcm::FRAME_SAMPLES;

/// Which direction of a session a call recording keeps (Twilio's `RecordingTrack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingTrack {
    /// What the remote party says (audio received).
    Inbound,
    /// What Dialtone sends to the remote party (audio sent).
    Outbound,
    /// Both.
    #[default]
    Both,
}

impl RecordingTrack {
    /// Twilio's name: `inbound`, `outbound`, `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingTrack::Inbound => "inbound",
            RecordingTrack::Outbound => "outbound",
            RecordingTrack::Both => "both",
        }
    }

    /// Parses Twilio's name (case-insensitive).
    pub fn parse(value: &str) -> Option<RecordingTrack> {
        [
            RecordingTrack::Inbound,
            RecordingTrack::Outbound,
            RecordingTrack::Both,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

/// What and where to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecordingOptions {
    /// The WAV file (its directory is created; it is written to `<path>.partial` and appears
    /// under `path` when complete).
    pub path: PathBuf,
    pub channels: RecordingChannels,
    pub track: RecordingTrack,
    /// Leave out leading and trailing silence (Twilio `Trim=trim-silence`; see
    /// [`crate::trim`]).
    pub trim_silence: bool,
}

impl CallRecordingOptions {
    /// Mono, both tracks, untrimmed.
    pub fn new(path: impl Into<PathBuf>) -> CallRecordingOptions {
        CallRecordingOptions {
            path: path.into(),
            channels: RecordingChannels::Mono,
            track: RecordingTrack::Both,
            trim_silence: false,
        }
    }

    /// Channels of the file: 2 only for `Dual` with both tracks.
    pub fn file_channels(&self) -> u16 {
        match (self.channels, self.track) {
            (RecordingChannels::Dual, RecordingTrack::Both) => 2,
            _ => 1,
        }
    }
}

/// Longest gap of engine frames (frames the engine skipped when it fell behind) filled with
/// silence: 20 s.
const MAX_GAP_FRAMES: u64 = 1000;

/// Turns pairs of frames (received, sent) into the recording's samples. Pure.
#[derive(Debug, Clone)]
pub(crate) struct CallRecordingMix {
    channels: u16,
    track: RecordingTrack,
    last_frame: Option<u64>,
}

impl CallRecordingMix {
    pub(crate) fn new(options: &CallRecordingOptions) -> CallRecordingMix {
        CallRecordingMix {
            channels: options.file_channels(),
            track: options.track,
            last_frame: None,
        }
    }

    pub(crate) fn channels(&self) -> u16 {
        self.channels
    }

    /// Appends engine frame `frame` to `out`: `inbound` is what the remote party said,
    /// `outbound` what was sent to it. Frames the engine skipped since the last one become
    /// silence, so the recording keeps wall-clock time.
    pub(crate) fn push(
        &mut self,
        frame: u64,
        inbound: &Frame,
        outbound: &Frame,
        out: &mut Vec<i16>,
    ) {
        if let Some(last) = self.last_frame {
            if frame <= last {
                return; // frames only move forward; a repeat adds nothing
            }
            let missed = (frame - last - 1).min(MAX_GAP_FRAMES);
            for _ in 0..missed {
                self.append(&SILENT_FRAME, &SILENT_FRAME, out);
            }
        }
        self.last_frame = Some(frame);
        self.append(inbound, outbound, out);
    }

    fn append(&self, inbound: &Frame, outbound: &Frame, out: &mut Vec<i16>) {
        match (self.track, self.channels) {
            (RecordingTrack::Inbound, _) => out.extend_from_slice(inbound),
            (RecordingTrack::Outbound, _) => out.extend_from_slice(outbound),
            (RecordingTrack::Both, 2) => {
                out.reserve(2 * FRAME_SAMPLES);
                for (left, right) in inbound.iter().zip(outbound) {
                    out.push(*left);
                    out.push(*right);
                }
            }
            (RecordingTrack::Both, _) => out.extend_from_slice(&add_frames(inbound, outbound)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: i16) -> Frame {
        [v; FRAME_SAMPLES]
    }

    fn options(channels: RecordingChannels, track: RecordingTrack) -> CallRecordingOptions {
        CallRecordingOptions {
            path: PathBuf::from("x.wav"),
            channels,
            track,
            trim_silence: false,
        }
    }

    #[test]
    fn dual_puts_inbound_left_and_outbound_right() {
        let mut mix =
            CallRecordingMix::new(&options(RecordingChannels::Dual, RecordingTrack::Both));
        assert_eq!(mix.channels(), 2);
        let mut out = Vec::new();
        mix.push(10, &frame(100), &frame(-7), &mut out);
        assert_eq!(out.len(), 2 * FRAME_SAMPLES);
        assert!(out.chunks(2).all(|lr| lr == [100, -7]));
    }

    #[test]
    fn mono_sums_with_clipping_and_single_tracks_are_mono() {
        let mut out = Vec::new();
        let mut mono =
            CallRecordingMix::new(&options(RecordingChannels::Mono, RecordingTrack::Both));
        mono.push(1, &frame(30_000), &frame(10_000), &mut out);
        assert_eq!(out, vec![i16::MAX; FRAME_SAMPLES]);

        for (track, expected) in [(RecordingTrack::Inbound, 5), (RecordingTrack::Outbound, 9)] {
            let options = options(RecordingChannels::Dual, track);
            assert_eq!(options.file_channels(), 1, "{track:?}");
            let mut mix = CallRecordingMix::new(&options);
            let mut out = Vec::new();
            mix.push(1, &frame(5), &frame(9), &mut out);
            assert_eq!(out, vec![expected; FRAME_SAMPLES], "{track:?}");
        }
    }

    #[test]
    fn skipped_engine_frames_become_silence_and_repeats_are_ignored() {
        let mut mix =
            CallRecordingMix::new(&options(RecordingChannels::Mono, RecordingTrack::Both));
        let mut out = Vec::new();
        mix.push(100, &frame(1), &frame(1), &mut out);
        mix.push(103, &frame(1), &frame(1), &mut out);
        assert_eq!(out.len(), 4 * FRAME_SAMPLES);
        assert!(out[FRAME_SAMPLES..3 * FRAME_SAMPLES]
            .iter()
            .all(|s| *s == 0));
        assert!(out[3 * FRAME_SAMPLES..].iter().all(|s| *s == 2));
        mix.push(103, &frame(1), &frame(1), &mut out);
        mix.push(50, &frame(1), &frame(1), &mut out);
        assert_eq!(out.len(), 4 * FRAME_SAMPLES);
        // A huge jump is capped.
        let mut out = Vec::new();
        mix.push(103 + 1_000_000, &frame(1), &frame(1), &mut out);
        assert_eq!(out.len(), (MAX_GAP_FRAMES as usize + 1) * FRAME_SAMPLES);
    }

    #[test]
    fn tracks_parse_twilio_names() {
        assert_eq!(
            RecordingTrack::parse("Inbound"),
            Some(RecordingTrack::Inbound)
        );
        assert_eq!(RecordingTrack::parse(" both "), Some(RecordingTrack::Both));
        assert_eq!(
            RecordingTrack::parse("outbound"),
            Some(RecordingTrack::Outbound)
        );
        assert_eq!(RecordingTrack::parse("inbound_track"), None);
        assert_eq!(RecordingTrack::default().as_str(), "both");
        assert_eq!(CallRecordingOptions::new("a.wav").file_channels(), 1);
    }
}

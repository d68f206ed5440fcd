//! Recording: a sans-IO recorder of inbound audio (silence timeout, maximum length, finish
//! keys, trimming of leading and trailing silence) and the WAV writer of the shell.

use std::path::{Path, PathBuf};

use crate::error::MediaError;
use crate::pcm::{rms, samples_to_ms, FRAME_SAMPLES, SAMPLE_RATE};

/// Audio kept before the first and after the last voiced frame when trimming.
pub const TRIM_MARGIN_MS: u32 = 100;

/// How a recording is made (Twilio's `<Record>` attributes, in our units).
#[derive(Debug, Clone, PartialEq)]
pub struct RecorderConfig {
    /// End after this much silence (Twilio `timeout`, default 5 s); 0 disables it.
    pub silence_timeout_ms: u32,
    /// Longest recording (Twilio `maxLength`, default 3600 s); 0 means no limit.
    pub max_length_ms: u32,
    /// Keys that end the recording (Twilio `finishOnKey`, default `1234567890*#`).
    pub finish_on_keys: String,
    /// Remove leading and trailing silence (Twilio `trim="trim-silence"`, the default).
    pub trim_silence: bool,
    /// RMS level (of 32767) from which a 20 ms frame counts as voice.
    pub voice_threshold_rms: f64,
}

impl Default for RecorderConfig {
    fn default() -> RecorderConfig {
        RecorderConfig {
            silence_timeout_ms: 5_000,
            max_length_ms: 3_600_000,
            finish_on_keys: "1234567890*#".to_string(),
            trim_silence: true,
            voice_threshold_rms: 300.0,
        }
    }
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingEnd {
    SilenceTimeout,
    MaxLength,
    /// A finish key was pressed.
    Key(char),
    /// `stop_recording` (or a new recording) ended it.
    Stopped,
    /// The session closed (the call hung up).
    Hangup,
}

impl RecordingEnd {
    /// Twilio's `Digits` value of a recording's action request: the key, or `hangup`.
    pub fn digits(&self) -> Option<String> {
        match self {
            RecordingEnd::Key(k) => Some(k.to_string()),
            RecordingEnd::Hangup => Some("hangup".to_string()),
            _ => None,
        }
    }
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedAudio {
    /// 8 kHz mono samples, trimmed when configured.
    pub samples: Vec<i16>,
    pub duration_ms: u64,
    /// No voiced frame at all.
    pub silent: bool,
    /// Nothing left to keep (no audio, or all silence trimmed away).
    pub empty: bool,
    pub end: RecordingEnd,
}

/// Sans-IO recorder: feed it decoded inbound audio, keys and the time; it says when to stop.
#[derive(Debug)]
pub struct Recorder {
    config: RecorderConfig,
    started_ms: u64,
    samples: Vec<i16>,
    /// Start of the frame being measured for voice activity.
    frame_start: usize,
    first_voiced: Option<usize>,
    /// End (exclusive) of the last voiced frame.
    last_voiced_end: usize,
    /// Silent audio received since the last voiced frame (audio time, so that packets
    /// arriving in bursts are measured by what they carry, not when they came).
    silent_samples: usize,
    /// When audio last arrived: with no packets at all, silence is measured in wall time.
    last_audio_ms: u64,
    end: Option<RecordingEnd>,
}

impl Recorder {
    pub fn new(config: RecorderConfig, now_ms: u64) -> Recorder {
        Recorder {
            config,
            started_ms: now_ms,
            samples: Vec::new(),
            frame_start: 0,
            first_voiced: None,
            last_voiced_end: 0,
            silent_samples: 0,
            last_audio_ms: now_ms,
            end: None,
        }
    }

    pub fn config(&self) -> &RecorderConfig {
        &self.config
    }

    /// The reason the recording ended, once it has.
    pub fn ended(&self) -> Option<RecordingEnd> {
        self.end
    }

    fn max_samples(&self) -> usize {
        if self.config.max_length_ms == 0 {
            usize::MAX
        } else {
            (u64::from(self.config.max_length_ms) * u64::from(SAMPLE_RATE) / 1000) as usize
        }
    }

    /// Appends inbound audio received at `now_ms`.
    pub fn on_audio(&mut self, samples: &[i16], now_ms: u64) -> Option<RecordingEnd> {
        if self.end.is_some() {
            return self.end;
        }
        let room = self.max_samples().saturating_sub(self.samples.len());
        let take = samples.len().min(room);
        self.samples.extend_from_slice(&samples[..take]);
        while self.samples.len() - self.frame_start >= FRAME_SAMPLES {
            let frame = &self.samples[self.frame_start..self.frame_start + FRAME_SAMPLES];
            if rms(frame) >= self.config.voice_threshold_rms {
                self.first_voiced.get_or_insert(self.frame_start);
                self.last_voiced_end = self.frame_start + FRAME_SAMPLES;
                self.silent_samples = 0;
            } else {
                self.silent_samples += FRAME_SAMPLES;
            }
            self.frame_start += FRAME_SAMPLES;
        }
        self.last_audio_ms = now_ms;
        if take < samples.len() || self.samples.len() >= self.max_samples() {
            self.end = Some(RecordingEnd::MaxLength);
            return self.end;
        }
        self.on_time(now_ms)
    }

    /// A key was pressed.
    pub fn on_key(&mut self, key: char) -> Option<RecordingEnd> {
        if self.end.is_none() && self.config.finish_on_keys.contains(key) {
            self.end = Some(RecordingEnd::Key(key));
        }
        self.end
    }

    /// The time passed (also with no audio at all: the remote may send nothing).
    pub fn on_time(&mut self, now_ms: u64) -> Option<RecordingEnd> {
        if self.end.is_some() {
            return self.end;
        }
        let max = u64::from(self.config.max_length_ms);
        let timeout = u64::from(self.config.silence_timeout_ms);
        if max > 0 && now_ms.saturating_sub(self.started_ms) >= max {
            self.end = Some(RecordingEnd::MaxLength);
        } else if timeout > 0 && self.silence_ms(now_ms) >= timeout {
            self.end = Some(RecordingEnd::SilenceTimeout);
        }
        self.end
    }

    /// Silence so far: silent audio since the last voice, plus the time since audio last
    /// arrived.
    fn silence_ms(&self, now_ms: u64) -> u64 {
        samples_to_ms(self.silent_samples) + now_ms.saturating_sub(self.last_audio_ms)
    }

    /// Ends the recording (with the reason it already has, or `reason`) and returns the audio.
    pub fn finish(self, reason: RecordingEnd) -> RecordedAudio {
        let end = self.end.unwrap_or(reason);
        let silent = self.first_voiced.is_none();
        let mut samples = self.samples;
        if self.config.trim_silence {
            match self.first_voiced {
                None => samples.clear(),
                Some(first) => {
                    let margin = crate::pcm::ms_to_samples(TRIM_MARGIN_MS);
                    let start = first.saturating_sub(margin);
                    let end = (self.last_voiced_end + margin).min(samples.len());
                    samples.truncate(end);
                    samples.drain(..start);
                }
            }
        }
        RecordedAudio {
            duration_ms: samples_to_ms(samples.len()),
            empty: samples.is_empty(),
            silent,
            samples,
            end,
        }
    }
}

/// Writes 8 kHz mono 16-bit PCM to a WAV file (creating its directory), atomically: the file
/// appears complete or not at all.
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), MediaError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| MediaError::io(dir, e))?;
        }
    }
    let tmp: PathBuf = path.with_extension("wav.partial");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wav_err = |e: hound::Error| MediaError::WavWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut writer = hound::WavWriter::create(&tmp, spec).map_err(wav_err)?;
    {
        let mut w = writer.get_i16_writer(samples.len() as u32);
        for s in samples {
            w.write_sample(*s);
        }
        w.flush().map_err(wav_err)?;
    }
    writer.finalize().map_err(wav_err)?;
    std::fs::rename(&tmp, path).map_err(|e| MediaError::io(path, e))?;
    Ok(())
}

/// A WAV file (8 kHz 16-bit, mono or interleaved stereo) written as audio comes, for
/// recordings as long as calls: written to `<path>.partial` and renamed on `finish`, so the
/// file appears complete or not at all.
pub struct WavFileWriter {
    path: PathBuf,
    tmp: PathBuf,
    channels: u16,
    samples: u64,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
}

impl std::fmt::Debug for WavFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavFileWriter")
            .field("path", &self.path)
            .field("channels", &self.channels)
            .field("samples", &self.samples)
            .finish()
    }
}

impl WavFileWriter {
    /// Creates the file (and its directory).
    pub fn create(path: &Path, channels: u16) -> Result<WavFileWriter, MediaError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| MediaError::io(dir, e))?;
            }
        }
        let tmp = path.with_extension("wav.partial");
        let spec = hound::WavSpec {
            channels: channels.max(1),
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&tmp, spec).map_err(|e| MediaError::WavWrite {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(WavFileWriter {
            path: path.to_path_buf(),
            tmp,
            channels: channels.max(1),
            samples: 0,
            writer: Some(writer),
        })
    }

    fn error(&self, e: hound::Error) -> MediaError {
        MediaError::WavWrite {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Appends samples (interleaved when stereo).
    pub fn write(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        for s in samples {
            if let Err(e) = writer.write_sample(*s) {
                let err = self.error(e);
                self.abandon();
                return Err(err);
            }
        }
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Milliseconds written so far.
    pub fn duration_ms(&self) -> u64 {
        self.samples / u64::from(self.channels) * 1000 / u64::from(SAMPLE_RATE)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Completes the file; returns its duration in ms.
    pub fn finish(mut self) -> Result<u64, MediaError> {
        let Some(writer) = self.writer.take() else {
            return Err(MediaError::WavWrite {
                path: self.path.clone(),
                reason: "an earlier write failed".into(),
            });
        };
        if let Err(e) = writer.finalize() {
            let err = self.error(e);
            self.abandon();
            return Err(err);
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| MediaError::io(&self.path, e))?;
        Ok(self.duration_ms())
    }

    /// Gives up: the partial file is removed.
    fn abandon(&mut self) {
        self.writer = None;
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Drop for WavFileWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcm::Pcm;

    fn voice(ms: u32) -> Vec<i16> {
        Pcm::tone(&[300.0, 1100.0], ms, 4000.0).into_samples()
    }

    fn quiet(ms: u32) -> Vec<i16> {
        // line noise well under the voice threshold
        (0..ms * 8)
            .map(|i| if i % 2 == 0 { 40 } else { -40 })
            .collect()
    }

    /// Feeds `samples` in 20 ms packets starting at `t`; returns the time after them.
    fn feed(r: &mut Recorder, samples: &[i16], mut t: u64) -> (u64, Option<RecordingEnd>) {
        let mut end = None;
        for chunk in samples.chunks(160) {
            t += 20;
            end = r.on_audio(chunk, t);
            if end.is_some() {
                break;
            }
        }
        (t, end)
    }

    #[test]
    fn silence_timeout_after_speech_and_trim() {
        let cfg = RecorderConfig {
            silence_timeout_ms: 2000,
            ..Default::default()
        };
        let mut r = Recorder::new(cfg, 0);
        let (t, end) = feed(&mut r, &quiet(1000), 0);
        assert_eq!((t, end), (1000, None));
        let (t, end) = feed(&mut r, &voice(1500), t);
        assert_eq!((t, end), (2500, None));
        let (t, end) = feed(&mut r, &quiet(5000), t);
        assert_eq!(end, Some(RecordingEnd::SilenceTimeout));
        assert_eq!(t, 4500, "2 s after the last voiced frame");
        let rec = r.finish(RecordingEnd::Stopped);
        assert_eq!(rec.end, RecordingEnd::SilenceTimeout);
        assert!(!rec.silent && !rec.empty);
        // 1.5 s of voice plus the two margins
        assert_eq!(rec.duration_ms, 1500 + 2 * u64::from(TRIM_MARGIN_MS));
    }

    #[test]
    fn silence_is_measured_in_audio_time_then_wall_time() {
        let cfg = RecorderConfig {
            silence_timeout_ms: 1000,
            ..Default::default()
        };
        // a burst: 3 s of audio arriving at once is judged by its content
        let mut r = Recorder::new(cfg.clone(), 0);
        let mut audio = voice(500);
        audio.extend(quiet(800));
        audio.extend(voice(500));
        audio.extend(quiet(1200));
        let mut end = None;
        for chunk in audio.chunks(160) {
            end = end.or(r.on_audio(chunk, 10));
        }
        assert_eq!(end, Some(RecordingEnd::SilenceTimeout));
        let rec = r.finish(RecordingEnd::Stopped);
        // voice from the first sample: no leading margin to keep
        assert_eq!(rec.duration_ms, 500 + 800 + 500 + u64::from(TRIM_MARGIN_MS));
        // voice, then the remote stops sending: wall time counts, on top of silent audio
        let mut r = Recorder::new(cfg, 0);
        let (t, _) = feed(&mut r, &voice(400), 0);
        let (t, _) = feed(&mut r, &quiet(300), t);
        assert_eq!(r.on_time(t + 699), None);
        assert_eq!(r.on_time(t + 700), Some(RecordingEnd::SilenceTimeout));
    }

    #[test]
    fn silence_only_is_empty_when_trimmed() {
        let mut r = Recorder::new(RecorderConfig::default(), 0);
        let (t, end) = feed(&mut r, &quiet(6000), 0);
        assert_eq!((t, end), (5000, Some(RecordingEnd::SilenceTimeout)));
        let rec = r.finish(RecordingEnd::Stopped);
        assert!(rec.silent && rec.empty);
        assert_eq!(rec.duration_ms, 0);
    }

    #[test]
    fn untrimmed_keeps_everything() {
        let cfg = RecorderConfig {
            trim_silence: false,
            ..Default::default()
        };
        let mut r = Recorder::new(cfg, 0);
        let (t, _) = feed(&mut r, &quiet(500), 0);
        feed(&mut r, &voice(500), t);
        let rec = r.finish(RecordingEnd::Stopped);
        assert_eq!(rec.end, RecordingEnd::Stopped);
        assert_eq!(rec.duration_ms, 1000);
        assert!(!rec.silent);
    }

    #[test]
    fn max_length_cuts_the_audio() {
        let cfg = RecorderConfig {
            max_length_ms: 1000,
            trim_silence: false,
            ..Default::default()
        };
        let mut r = Recorder::new(cfg, 0);
        let (_, end) = feed(&mut r, &voice(3000), 0);
        assert_eq!(end, Some(RecordingEnd::MaxLength));
        let rec = r.finish(RecordingEnd::Stopped);
        assert_eq!(rec.duration_ms, 1000);
    }

    #[test]
    fn max_length_by_time_without_audio() {
        let cfg = RecorderConfig {
            max_length_ms: 3000,
            silence_timeout_ms: 0,
            ..Default::default()
        };
        let mut r = Recorder::new(cfg, 10_000);
        assert_eq!(r.on_time(12_999), None);
        assert_eq!(r.on_time(13_000), Some(RecordingEnd::MaxLength));
        let rec = r.finish(RecordingEnd::Stopped);
        assert!(rec.empty && rec.silent);
    }

    #[test]
    fn finish_keys() {
        let cfg = RecorderConfig {
            finish_on_keys: "#".into(),
            ..Default::default()
        };
        let mut r = Recorder::new(cfg, 0);
        feed(&mut r, &voice(400), 0);
        assert_eq!(r.on_key('5'), None);
        assert_eq!(r.on_key('#'), Some(RecordingEnd::Key('#')));
        // later input changes nothing
        assert_eq!(r.on_key('*'), Some(RecordingEnd::Key('#')));
        let rec = r.finish(RecordingEnd::Hangup);
        assert_eq!(rec.end, RecordingEnd::Key('#'));
        assert_eq!(rec.end.digits().as_deref(), Some("#"));
        assert_eq!(RecordingEnd::Hangup.digits().as_deref(), Some("hangup"));
    }

    #[test]
    fn wav_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/rec.wav");
        let samples = voice(250);
        write_wav(&path, &samples).unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (8000, 1, 16)
        );
        let back: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(back, samples);
        assert!(!path.with_extension("wav.partial").exists());
    }

    #[test]
    fn streamed_stereo_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/dual.wav");
        let mut w = WavFileWriter::create(&path, 2).unwrap();
        let frame: Vec<i16> = (0..320)
            .map(|i| if i % 2 == 0 { 100 } else { -7 })
            .collect();
        for _ in 0..50 {
            w.write(&frame).unwrap();
        }
        assert!(!path.exists(), "not there until finished");
        assert_eq!(w.finish().unwrap(), 1000);
        let mut reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.duration(), 8000);
        let back: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(&back[..4], &[100, -7, 100, -7]);
        // a writer dropped unfinished leaves nothing behind
        let other = dir.path().join("x/gone.wav");
        drop(WavFileWriter::create(&other, 1).unwrap());
        assert!(!other.exists() && !other.with_extension("wav.partial").exists());
    }
}

//! 8 kHz mono 16-bit audio buffers, resampling to 8 kHz, tone synthesis and level measures.

use std::fmt;
use std::sync::OnceLock;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::codec::Codec;
use crate::error::MediaError;

/// Sample rate of everything the runtime plays and records.
pub const SAMPLE_RATE: u32 = 8000;
/// Duration of one RTP frame.
pub const FRAME_MS: u32 = 20;
/// Samples (and G.711 bytes) in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;

/// A prompt: 8 kHz mono 16-bit PCM, shared between calls through `Arc<Pcm>`.
///
/// The G.711 encodings are computed once per codec and kept, so that a prompt played on
/// thousands of calls is encoded once and the playout engine only copies bytes.
#[derive(Clone, Default)]
pub struct Pcm {
    samples: Vec<i16>,
    encoded: [OnceLock<Box<[u8]>>; 2],
}

impl fmt::Debug for Pcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pcm")
            .field("samples", &self.samples.len())
            .field("duration_ms", &self.duration_ms())
            .finish()
    }
}

impl PartialEq for Pcm {
    fn eq(&self, other: &Pcm) -> bool {
        self.samples == other.samples
    }
}

impl Pcm {
    /// Wraps 8 kHz mono samples.
    pub fn new(samples: Vec<i16>) -> Pcm {
        Pcm {
            samples,
            encoded: Default::default(),
        }
    }

    /// `ms` milliseconds of digital silence.
    pub fn silence(ms: u32) -> Pcm {
        Pcm::new(vec![0; ms_to_samples(ms)])
    }

    /// A sum of sine tones, `amplitude` each (peak, out of 32767), `ms` long, with 5 ms ramps
    /// at both ends so that the tone does not click.
    pub fn tone(frequencies_hz: &[f32], ms: u32, amplitude: f32) -> Pcm {
        let n = ms_to_samples(ms);
        let ramp = ms_to_samples(5).min(n / 2).max(1);
        let samples = (0..n)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                let v: f32 = frequencies_hz
                    .iter()
                    .map(|f| (std::f32::consts::TAU * f * t).sin() * amplitude)
                    .sum();
                let envelope = if i < ramp {
                    i as f32 / ramp as f32
                } else if i >= n - ramp {
                    (n - 1 - i) as f32 / ramp as f32
                } else {
                    1.0
                };
                (v * envelope).clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        Pcm::new(samples)
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    pub fn into_samples(self) -> Vec<i16> {
        self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn duration_ms(&self) -> u64 {
        samples_to_ms(self.samples.len())
    }

    /// The G.711 encoding of the whole buffer, computed on first use and kept.
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        self.encoded[codec.index()].get_or_init(|| codec.encode(&self.samples).into_boxed_slice())
    }

    /// Root-mean-square level of the whole buffer (0 for an empty one).
    pub fn rms(&self) -> f64 {
        rms(&self.samples)
    }
}

pub fn ms_to_samples(ms: u32) -> usize {
    (u64::from(ms) * u64::from(SAMPLE_RATE) / 1000) as usize
}

pub fn samples_to_ms(samples: usize) -> u64 {
    samples as u64 * 1000 / u64::from(SAMPLE_RATE)
}

/// Root-mean-square of a block of samples.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Averages interleaved channels into one.
pub fn downmix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Converts floats in [-1, 1] to 16-bit samples, clipping.
pub fn f32_to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Resamples mono float audio at `from_hz` to 8 kHz 16-bit, with rubato's FFT resampler
/// (fixed ratio, anti-aliased, startup delay trimmed).
pub fn resample_to_8k(mono: &[f32], from_hz: u32) -> Result<Vec<i16>, MediaError> {
    if from_hz == 0 {
        return Err(MediaError::Resample {
            from_hz,
            to_hz: SAMPLE_RATE,
            reason: "sample rate 0".into(),
        });
    }
    if from_hz == SAMPLE_RATE || mono.is_empty() {
        return Ok(f32_to_i16(mono));
    }
    let err = |reason: String| MediaError::Resample {
        from_hz,
        to_hz: SAMPLE_RATE,
        reason,
    };
    let mut resampler = Fft::<f32>::new(
        from_hz as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| err(e.to_string()))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| err(e.to_string()))?;
    let output = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|e| err(e.to_string()))?;
    Ok(f32_to_i16(&output.take_data()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(ms_to_samples(20), FRAME_SAMPLES);
        assert_eq!(Pcm::silence(1000).len(), 8000);
        assert_eq!(Pcm::silence(1000).duration_ms(), 1000);
        assert_eq!(samples_to_ms(80), 10);
    }

    #[test]
    fn tone_has_the_expected_level() {
        let tone = Pcm::tone(&[1000.0], 500, 10000.0);
        assert_eq!(tone.len(), 4000);
        // RMS of a sine of peak A is A/sqrt(2) ~ 7071; ramps lower it a little.
        assert!((tone.rms() - 7071.0).abs() < 300.0, "rms {}", tone.rms());
        assert_eq!(Pcm::silence(100).rms(), 0.0);
    }

    #[test]
    fn encoding_is_cached_per_codec() {
        let tone = Pcm::tone(&[440.0], 100, 8000.0);
        let a = tone.encoded(Codec::Pcmu).as_ptr();
        let b = tone.encoded(Codec::Pcmu).as_ptr();
        assert_eq!(a, b);
        assert_eq!(tone.encoded(Codec::Pcma).len(), tone.len());
    }

    #[test]
    fn resampling_keeps_duration_and_frequency() {
        // 1 s of 440 Hz at 22050 Hz -> 8000 samples at 8 kHz, still 440 Hz.
        let from = 22050u32;
        let input: Vec<f32> = (0..from)
            .map(|i| (std::f32::consts::TAU * 440.0 * i as f32 / from as f32).sin() * 0.5)
            .collect();
        let out = resample_to_8k(&input, from).unwrap();
        assert!((out.len() as i64 - 8000).abs() <= 2, "len {}", out.len());
        // count zero crossings in the middle to estimate the frequency
        let mid = &out[1000..7000];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let freq = crossings as f64 / 2.0 / (6000.0 / 8000.0);
        assert!((freq - 440.0).abs() < 5.0, "frequency {freq}");
        assert!((rms(mid) - 0.5 * 32767.0 / 2f64.sqrt()).abs() < 500.0);
    }

    #[test]
    fn resampling_removes_content_above_nyquist() {
        // 6 kHz cannot exist at 8 kHz: it must be filtered out, not aliased to 2 kHz.
        let from = 48000u32;
        let input: Vec<f32> = (0..from)
            .map(|i| (std::f32::consts::TAU * 6000.0 * i as f32 / from as f32).sin() * 0.5)
            .collect();
        let out = resample_to_8k(&input, from).unwrap();
        assert!(rms(&out[500..7500]) < 200.0, "rms {}", rms(&out[500..7500]));
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(resample_to_8k(&[0.0; 10], 0).is_err());
    }

    #[test]
    fn downmix_averages() {
        assert_eq!(downmix_to_mono(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
        assert_eq!(downmix_to_mono(&[0.25], 1), vec![0.25]);
    }
}

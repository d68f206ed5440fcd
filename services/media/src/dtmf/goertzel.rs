//! In-band DTMF detection with the Goertzel algorithm, for calls that did not negotiate
//! telephone-event.
//!
//! The detector looks at 20 ms windows (160 samples) every 10 ms (50 % overlap), measures the
//! power at the eight DTMF frequencies, and accepts a window when one row and one column tone
//! carry most of its energy, the other tones of each group are well below them, and the twist
//! (level difference between the groups) is within limits. A key must hold for two
//! consecutive windows (30 ms of tone) and is reported when it is released, with its duration.

use crate::dtmf::{key_at, DtmfDigit, COL_HZ, ROW_HZ};
use crate::pcm::SAMPLE_RATE;

/// Analysis window (20 ms).
pub const WINDOW: usize = 160;
/// Hop between windows (10 ms).
pub const HOP: usize = 80;
const HOP_MS: u32 = 10;

/// Thresholds of the detector.
#[derive(Debug, Clone, Copy)]
pub struct GoertzelConfig {
    /// Minimum RMS of a window for it to be considered at all (about -32 dBm0).
    pub min_rms: f32,
    /// Share of the window's energy the two tones must carry together (0..1).
    pub min_tone_share: f32,
    /// Other tones of a group must be below the strongest by this power ratio.
    pub max_other_tone_ratio: f32,
    /// Low group stronger than high group ("normal" twist) allowed, in dB.
    pub max_normal_twist_db: f32,
    /// High group stronger than low group ("reverse" twist) allowed, in dB.
    pub max_reverse_twist_db: f32,
    /// Consecutive accepted windows before a key counts (2 = 30 ms of tone).
    pub min_windows: u32,
    /// Consecutive rejected windows that end a key (tolerates a short drop-out).
    pub release_windows: u32,
}

impl Default for GoertzelConfig {
    fn default() -> GoertzelConfig {
        GoertzelConfig {
            min_rms: 300.0,
            min_tone_share: 0.8,
            max_other_tone_ratio: 0.2,
            max_normal_twist_db: 8.0,
            max_reverse_twist_db: 4.0,
            min_windows: 2,
            release_windows: 2,
        }
    }
}

/// Sans-IO in-band DTMF detector; feed it decoded 8 kHz audio in any block size.
#[derive(Debug)]
pub struct GoertzelDetector {
    config: GoertzelConfig,
    coefficients: [f32; 8],
    pending: Vec<i16>,
    candidate: Option<char>,
    hits: u32,
    misses: u32,
}

impl Default for GoertzelDetector {
    fn default() -> GoertzelDetector {
        GoertzelDetector::new(GoertzelConfig::default())
    }
}

impl GoertzelDetector {
    pub fn new(config: GoertzelConfig) -> GoertzelDetector {
        let mut coefficients = [0f32; 8];
        for (c, f) in coefficients
            .iter_mut()
            .zip(ROW_HZ.iter().chain(COL_HZ.iter()))
        {
            *c = 2.0 * (std::f32::consts::TAU * f / SAMPLE_RATE as f32).cos();
        }
        GoertzelDetector {
            config,
            coefficients,
            pending: Vec::with_capacity(WINDOW * 3),
            candidate: None,
            hits: 0,
            misses: 0,
        }
    }

    /// Feeds audio; appends the keys released in it.
    pub fn push(&mut self, samples: &[i16], out: &mut Vec<DtmfDigit>) {
        self.pending.extend_from_slice(samples);
        let mut start = 0;
        while self.pending.len() - start >= WINDOW {
            let window = &self.pending[start..start + WINDOW];
            let key = self.analyse(window);
            self.step(key, out);
            start += HOP;
        }
        self.pending.drain(..start);
    }

    /// Ends the stream: reports a key still held.
    pub fn flush(&mut self, out: &mut Vec<DtmfDigit>) {
        self.release(out);
        self.pending.clear();
    }

    fn step(&mut self, key: Option<char>, out: &mut Vec<DtmfDigit>) {
        match key {
            Some(k) if self.candidate == Some(k) => {
                self.hits += 1;
                self.misses = 0;
            }
            Some(k) => {
                self.release(out);
                self.candidate = Some(k);
                self.hits = 1;
                self.misses = 0;
            }
            None => {
                if self.candidate.is_some() {
                    self.misses += 1;
                    if self.misses >= self.config.release_windows {
                        self.release(out);
                    }
                }
            }
        }
    }

    fn release(&mut self, out: &mut Vec<DtmfDigit>) {
        if let Some(k) = self.candidate.take() {
            if self.hits >= self.config.min_windows {
                out.push(DtmfDigit {
                    digit: k,
                    duration_ms: (self.hits + 1) * HOP_MS,
                });
            }
        }
        self.hits = 0;
        self.misses = 0;
    }

    /// The key whose two tones dominate this window, if any.
    fn analyse(&self, window: &[i16]) -> Option<char> {
        let n = window.len() as f32;
        let energy: f32 = window.iter().map(|s| f32::from(*s) * f32::from(*s)).sum();
        if energy <= 0.0 || (energy / n).sqrt() < self.config.min_rms {
            return None;
        }
        let mut share = [0f32; 8];
        for (s, coeff) in share.iter_mut().zip(self.coefficients) {
            let (mut s1, mut s2) = (0f32, 0f32);
            for x in window {
                let s0 = f32::from(*x) + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            // A sine of amplitude A gives power (A n / 2)^2 and energy n A^2 / 2, so this is
            // the share of the window's energy at that frequency.
            *s = 2.0 * power / (n * energy);
        }
        let (rows, cols) = share.split_at(4);
        let (row, row_share) = strongest(rows);
        let (col, col_share) = strongest(cols);
        if row_share + col_share < self.config.min_tone_share {
            return None;
        }
        let others_low = |group: &[f32], best: usize, best_share: f32| {
            group
                .iter()
                .enumerate()
                .all(|(i, s)| i == best || *s <= best_share * self.config.max_other_tone_ratio)
        };
        if !others_low(rows, row, row_share) || !others_low(cols, col, col_share) {
            return None;
        }
        let twist_db = 10.0 * (row_share / col_share.max(f32::MIN_POSITIVE)).log10();
        if twist_db > self.config.max_normal_twist_db
            || -twist_db > self.config.max_reverse_twist_db
        {
            return None;
        }
        Some(key_at(row, col))
    }
}

fn strongest(group: &[f32]) -> (usize, f32) {
    group.iter().copied().enumerate().fold(
        (0, f32::MIN),
        |best, (i, s)| if s > best.1 { (i, s) } else { best },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{key_frequencies, DTMF_KEYS};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A key's two tones (peak `low_amp` and `high_amp`) for `ms`, at sample offset `phase`.
    fn tone(key: char, ms: u32, low_amp: f32, high_amp: f32) -> Vec<f32> {
        let (low, high) = key_frequencies(key).unwrap();
        let n = (ms * 8) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (std::f32::consts::TAU * low * t).sin() * low_amp
                    + (std::f32::consts::TAU * high * t).sin() * high_amp
            })
            .collect()
    }

    fn silence(ms: u32) -> Vec<f32> {
        vec![0.0; (ms * 8) as usize]
    }

    fn with_noise(signal: &[f32], noise_rms: f32, seed: u64) -> Vec<i16> {
        let mut rng = StdRng::seed_from_u64(seed);
        // uniform noise in [-a, a] has RMS a / sqrt(3)
        let a = noise_rms * 3f32.sqrt();
        signal
            .iter()
            .map(|s| (s + rng.random_range(-a..=a)).clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    fn detect(samples: &[i16], block: usize) -> Vec<DtmfDigit> {
        let mut d = GoertzelDetector::default();
        let mut out = Vec::new();
        for chunk in samples.chunks(block) {
            d.push(chunk, &mut out);
        }
        d.flush(&mut out);
        out
    }

    #[test]
    fn detects_all_sixteen_keys_in_noise() {
        let mut signal = silence(75);
        for key in DTMF_KEYS {
            signal.extend(tone(key, 100, 6000.0, 6000.0));
            signal.extend(silence(100));
        }
        // noise 20 dB below each tone
        let samples = with_noise(&signal, 6000.0 / 2f32.sqrt() / 10.0, 7);
        let found = detect(&samples, 160);
        let keys: String = found.iter().map(|d| d.digit).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        for d in &found {
            assert!(
                (80..=130).contains(&d.duration_ms),
                "{} lasted {} ms",
                d.digit,
                d.duration_ms
            );
        }
    }

    #[test]
    fn block_size_does_not_matter() {
        let mut signal = silence(33);
        for key in ['5', '#', '0'] {
            signal.extend(tone(key, 80, 5000.0, 5000.0));
            signal.extend(silence(60));
        }
        let samples = with_noise(&signal, 100.0, 3);
        for block in [1, 80, 160, 240, 1000] {
            let keys: String = detect(&samples, block).iter().map(|d| d.digit).collect();
            assert_eq!(keys, "5#0", "block size {block}");
        }
    }

    #[test]
    fn minimum_duration() {
        for offset in [0u32, 3, 7, 11, 17] {
            let mut long = silence(offset);
            long.extend(tone('7', 45, 6000.0, 6000.0));
            long.extend(silence(60));
            let found = detect(&with_noise(&long, 50.0, 1), 160);
            assert_eq!(
                found.len(),
                1,
                "45 ms tone at offset {offset} ms: {found:?}"
            );

            let mut short = silence(offset);
            short.extend(tone('7', 20, 6000.0, 6000.0));
            short.extend(silence(60));
            assert!(
                detect(&with_noise(&short, 50.0, 2), 160).is_empty(),
                "a 20 ms tone is not a key press"
            );
        }
    }

    #[test]
    fn the_same_key_twice_with_a_gap_is_two_presses() {
        let mut signal = tone('3', 100, 6000.0, 6000.0);
        signal.extend(silence(60));
        signal.extend(tone('3', 100, 6000.0, 6000.0));
        signal.extend(silence(60));
        let keys: String = detect(&with_noise(&signal, 60.0, 5), 160)
            .iter()
            .map(|d| d.digit)
            .collect();
        assert_eq!(keys, "33");
    }

    #[test]
    fn twist_limits() {
        // high group 6 dB weaker than low (normal twist, accepted)
        let ok = with_noise(&tone('9', 100, 8000.0, 4000.0), 30.0, 1);
        assert_eq!(detect(&ok, 160).len(), 1);
        // high group 3 dB stronger (reverse twist, accepted)
        let ok = with_noise(&tone('9', 100, 4000.0, 5650.0), 30.0, 1);
        assert_eq!(detect(&ok, 160).len(), 1);
        // high group 12 dB weaker: rejected
        let bad = with_noise(&tone('9', 100, 8000.0, 2000.0), 30.0, 1);
        assert!(detect(&bad, 160).is_empty());
        // high group 8 dB stronger: rejected
        let bad = with_noise(&tone('9', 100, 2000.0, 5000.0), 30.0, 1);
        assert!(detect(&bad, 160).is_empty());
    }

    #[test]
    fn single_tones_noise_and_quiet_keys_are_not_keys() {
        let (low, _) = key_frequencies('1').unwrap();
        let single: Vec<f32> = (0..4000)
            .map(|i| (std::f32::consts::TAU * low * i as f32 / 8000.0).sin() * 8000.0)
            .collect();
        assert!(detect(&with_noise(&single, 50.0, 1), 160).is_empty());
        assert!(detect(&with_noise(&silence(1000), 3000.0, 9), 160).is_empty());
        // a key far below the energy floor
        assert!(detect(&with_noise(&tone('1', 200, 150.0, 150.0), 1.0, 1), 160).is_empty());
        // a key drowned in noise (0 dB SNR)
        assert!(detect(&with_noise(&tone('1', 200, 3000.0, 3000.0), 3000.0, 4), 160).is_empty());
    }
}

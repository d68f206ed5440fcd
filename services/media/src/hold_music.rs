//! Hold music: what a conference participant waiting alone hears when the `<Conference>` has
//! no `waitUrl` (Twilio plays hold music from its own servers there; Dialtone has no such
//! server to fetch from, so it synthesises some).
//!
//! An eight-second loop (a whole number of 20 ms frames, so that looping it is seamless): a
//! I–vi–IV–V progression in C, each chord two seconds, played as a soft plucked arpeggio
//! over a sustained bass note, at about the level of a ringback tone. Built once and shared by
//! every call.

use std::f32::consts::TAU;
use std::sync::{Arc, LazyLock};

use crate::pcm::{ms_to_samples, Pcm, SAMPLE_RATE};

/// One loop of the hold music.
pub fn hold_music() -> Arc<Pcm> {
    static MUSIC: LazyLock<Arc<Pcm>> = LazyLock::new(|| Arc::new(compose()));
    MUSIC.clone()
}

/// Notes of each chord (Hz): bass, then the arpeggio (C, Am, F, G).
const CHORDS: [(f32, [f32; 4]); 4] = [
    (130.81, [261.63, 329.63, 392.00, 523.25]),
    (110.00, [220.00, 261.63, 329.63, 440.00]),
    (87.31, [174.61, 220.00, 261.63, 349.23]),
    (98.00, [196.00, 246.94, 293.66, 392.00]),
];
const CHORD_MS: u32 = 2000;
const NOTE_MS: u32 = 250;
/// Peak amplitude of one arpeggio note and of the bass.
const NOTE_AMPLITUDE: f32 = 2200.0;
const BASS_AMPLITUDE: f32 = 900.0;

fn compose() -> Pcm {
    let chord_len = ms_to_samples(CHORD_MS);
    let note_len = ms_to_samples(NOTE_MS);
    let rate = SAMPLE_RATE as f32;
    let mut samples = Vec::with_capacity(chord_len * CHORDS.len());
    for (bass, notes) in CHORDS {
        for i in 0..chord_len {
            let t = i as f32 / rate;
            // The bass swells in and out with the chord, so that chords join without clicks.
            let swell = (std::f32::consts::PI * i as f32 / chord_len as f32).sin();
            let mut value = BASS_AMPLITUDE * swell * (TAU * bass * t).sin();
            // Up and down the arpeggio: 0 1 2 3 2 1 0 1 …
            let step = i / note_len;
            let note = notes[[0, 1, 2, 3, 2, 1, 0, 1][step % 8]];
            let since = (i % note_len) as f32 / rate;
            // A plucked note: a 5 ms attack, then an exponential decay, silent at its end.
            let attack = (since / 0.005).min(1.0);
            let decay = (-since * 9.0).exp() * (1.0 - (i % note_len) as f32 / note_len as f32);
            value += NOTE_AMPLITUDE * attack * decay * (TAU * note * since).sin();
            samples.push(value.round().clamp(-32767.0, 32767.0) as i16);
        }
    }
    Pcm::new(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcm::{rms, FRAME_SAMPLES};

    #[test]
    fn hold_music_is_an_audible_seamless_loop_shared_by_every_call() {
        let music = hold_music();
        assert_eq!(music.duration_ms(), 8000);
        assert_eq!(music.len() % FRAME_SAMPLES, 0);
        // Audible all along (no second of silence), but well below full scale.
        for second in music.samples().chunks(8000) {
            let level = rms(second);
            assert!((300.0..6000.0).contains(&level), "RMS {level}");
        }
        let peak = music.samples().iter().map(|s| s.unsigned_abs()).max();
        assert!(peak < Some(8000), "peak {peak:?}");
        // The loop joins without a click: its ends are near silence.
        let samples = music.samples();
        assert!(samples[0].unsigned_abs() < 200 && samples[samples.len() - 1].unsigned_abs() < 200);
        assert!(Arc::ptr_eq(&music, &hold_music()));
    }
}

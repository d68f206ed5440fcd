//! Ringback tones: what a caller hears while the called party rings, by country (the tone
//! plans of ITU-T E.180, as telephone exchanges and Asterisk's `indications.conf` play them).
//!
//! A tone is one cadence cycle of PCM (a whole number of 20 ms frames, so that looping it is
//! seamless), built once per country and shared by every call.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use crate::error::MediaError;
use crate::pcm::{ms_to_samples, Pcm};

/// Peak amplitude of each frequency of a ringback tone (about -19 dBm0, the usual level).
pub const RINGBACK_AMPLITUDE: f32 = 2500.0;

/// A country's ringback: frequencies played together, and the cadence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingTone {
    /// ISO 3166 code, lowercase (`uk` rather than `gb`, as Twilio's `ringTone` spells it).
    pub country: &'static str,
    pub frequencies_hz: &'static [f32],
    /// Alternating on and off durations of one cycle, in ms, starting with a tone.
    pub cadence_ms: &'static [u32],
}

const SINGLE_RING: &[u32] = &[1000, 4000];
const DOUBLE_RING: &[u32] = &[400, 200, 400, 2000];

/// The tone plans known. Modulated tones (Japan's 400 Hz × 16 Hz, India's 400 Hz × 25 Hz)
/// are approximated by their carrier.
pub const RING_TONES: &[RingTone] = &[
    RingTone {
        country: "us",
        frequencies_hz: &[440.0, 480.0],
        cadence_ms: &[2000, 4000],
    },
    RingTone {
        country: "uk",
        frequencies_hz: &[400.0, 450.0],
        cadence_ms: DOUBLE_RING,
    },
    RingTone {
        country: "au",
        frequencies_hz: &[400.0, 450.0],
        cadence_ms: DOUBLE_RING,
    },
    RingTone {
        country: "nz",
        frequencies_hz: &[400.0, 450.0],
        cadence_ms: DOUBLE_RING,
    },
    RingTone {
        country: "in",
        frequencies_hz: &[400.0],
        cadence_ms: DOUBLE_RING,
    },
    RingTone {
        country: "de",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "fr",
        frequencies_hz: &[440.0],
        cadence_ms: &[1500, 3500],
    },
    RingTone {
        country: "it",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "es",
        frequencies_hz: &[425.0],
        cadence_ms: &[1500, 3000],
    },
    RingTone {
        country: "nl",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "be",
        frequencies_hz: &[425.0],
        cadence_ms: &[1000, 3000],
    },
    RingTone {
        country: "ch",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "at",
        frequencies_hz: &[420.0],
        cadence_ms: &[1000, 5000],
    },
    RingTone {
        country: "se",
        frequencies_hz: &[425.0],
        cadence_ms: &[1000, 5000],
    },
    RingTone {
        country: "no",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "dk",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "fi",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "pl",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "pt",
        frequencies_hz: &[425.0],
        cadence_ms: &[1000, 5000],
    },
    RingTone {
        country: "ru",
        frequencies_hz: &[425.0],
        cadence_ms: &[800, 3200],
    },
    RingTone {
        country: "br",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "mx",
        frequencies_hz: &[425.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "cn",
        frequencies_hz: &[450.0],
        cadence_ms: SINGLE_RING,
    },
    RingTone {
        country: "jp",
        frequencies_hz: &[400.0],
        cadence_ms: &[1000, 2000],
    },
];

/// The tone plan of a country (case-insensitive; `gb` and `ie` are `uk`'s, `ca` is `us`'s).
pub fn ring_tone(country: &str) -> Option<&'static RingTone> {
    let country = country.trim().to_ascii_lowercase();
    let country = match country.as_str() {
        "gb" | "ie" => "uk",
        "ca" | "us-old" => "us",
        other => other,
    };
    RING_TONES.iter().find(|t| t.country == country)
}

static CACHE: LazyLock<Mutex<HashMap<&'static str, Arc<Pcm>>>> = LazyLock::new(Default::default);

/// One cadence cycle of a country's ringback (played with `loops: 0` it rings until stopped).
pub fn ringback(country: &str) -> Result<Arc<Pcm>, MediaError> {
    let tone = ring_tone(country).ok_or_else(|| MediaError::UnknownRingTone {
        country: country.to_string(),
    })?;
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    Ok(cache
        .entry(tone.country)
        .or_insert_with(|| Arc::new(cycle(tone)))
        .clone())
}

/// Builds one cycle of a tone plan.
pub fn cycle(tone: &RingTone) -> Pcm {
    let mut samples = Vec::new();
    for (i, ms) in tone.cadence_ms.iter().enumerate() {
        if i % 2 == 0 {
            samples.extend(Pcm::tone(tone.frequencies_hz, *ms, RINGBACK_AMPLITUDE).samples());
        } else {
            samples.extend(std::iter::repeat_n(0i16, ms_to_samples(*ms)));
        }
    }
    Pcm::new(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcm::{rms, FRAME_SAMPLES};

    /// Power at `hz` relative to the block's total power (Goertzel).
    fn share(samples: &[i16], hz: f32) -> f32 {
        let coeff = 2.0 * (std::f32::consts::TAU * hz / 8000.0).cos();
        let (mut s1, mut s2) = (0f32, 0f32);
        for x in samples {
            let s0 = f32::from(*x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        let energy: f32 = samples.iter().map(|s| f32::from(*s).powi(2)).sum();
        2.0 * power / (samples.len() as f32 * energy)
    }

    /// On/off runs of 20 ms frames.
    fn cadence(samples: &[i16]) -> Vec<(bool, u32)> {
        let mut runs: Vec<(bool, u32)> = Vec::new();
        for frame in samples.chunks(FRAME_SAMPLES) {
            let on = rms(frame) > 300.0;
            match runs.last_mut() {
                Some((state, ms)) if *state == on => *ms += 20,
                _ => runs.push((on, 20)),
            }
        }
        runs
    }

    #[test]
    fn us_ringback_is_440_plus_480_two_on_four_off() {
        let pcm = ringback("US").unwrap();
        assert_eq!(pcm.len(), 6 * 8000);
        assert_eq!(cadence(pcm.samples()), vec![(true, 2000), (false, 4000)]);
        let on = &pcm.samples()[800..8800];
        let both = share(on, 440.0) + share(on, 480.0);
        assert!(both > 0.9, "440 + 480 Hz carry the tone: {both}");
        assert!(share(on, 440.0) > 0.4 && share(on, 480.0) > 0.4);
        assert!(share(on, 400.0) < 0.05);
        // cached: every call shares one buffer
        assert!(Arc::ptr_eq(&pcm, &ringback("us").unwrap()));
    }

    #[test]
    fn uk_ringback_is_a_double_ring_of_400_plus_450() {
        let pcm = ringback("gb").unwrap();
        assert_eq!(
            cadence(pcm.samples()),
            vec![(true, 400), (false, 200), (true, 400), (false, 2000)]
        );
        let on = &pcm.samples()[100..3100];
        assert!(share(on, 400.0) > 0.35 && share(on, 450.0) > 0.35);
        assert!(share(on, 480.0) < 0.1);
    }

    #[test]
    fn every_plan_loops_seamlessly_and_unknown_countries_fail() {
        for tone in RING_TONES {
            let total: u32 = tone.cadence_ms.iter().sum();
            assert_eq!(total % 20, 0, "{}", tone.country);
            assert_eq!(tone.cadence_ms.len() % 2, 0, "{}", tone.country);
            assert_eq!(cycle(tone).len(), ms_to_samples(total));
        }
        assert_eq!(ring_tone("de").unwrap().frequencies_hz, &[425.0]);
        assert!(matches!(
            ringback("xx"),
            Err(MediaError::UnknownRingTone { .. })
        ));
    }
}

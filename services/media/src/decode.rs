//! Decoding of prompt audio to 8 kHz mono: WAV and MP3 (symphonia), Sun/NeXT `.au`, and raw
//! G.711 (`audio/basic`, `audio/ulaw`, `audio/x-mulaw`, A-law).

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::codec::Codec;
use crate::error::MediaError;
use crate::pcm::{downmix_to_mono, resample_to_8k, Pcm, SAMPLE_RATE};

/// Longest prompt the runtime decodes; longer audio is refused rather than filling memory.
pub const MAX_AUDIO_SECS: u64 = 30 * 60;

/// The format of a buffer of audio, from its first bytes, then its content type, then the
/// extension of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Wav,
    Mp3,
    /// Sun/NeXT `.snd` header.
    Au,
    /// Headerless G.711 at 8 kHz.
    RawG711(Codec),
}

impl AudioFormat {
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "WAV",
            AudioFormat::Mp3 => "MP3",
            AudioFormat::Au => "AU",
            AudioFormat::RawG711(Codec::Pcmu) => "raw mu-law",
            AudioFormat::RawG711(Codec::Pcma) => "raw A-law",
        }
    }
}

/// Works out the format of `bytes`; `content_type` is the HTTP `Content-Type` (parameters
/// allowed) and `extension` the file name extension, both optional.
pub fn sniff_format(
    bytes: &[u8],
    content_type: Option<&str>,
    extension: Option<&str>,
) -> Option<AudioFormat> {
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return Some(AudioFormat::Wav);
    }
    if bytes.starts_with(b".snd") {
        return Some(AudioFormat::Au);
    }
    let declared = content_type
        .and_then(format_of_content_type)
        .or_else(|| extension.and_then(format_of_extension));
    if bytes.starts_with(b"ID3") {
        return Some(AudioFormat::Mp3);
    }
    // An MPEG frame sync, unless declared raw G.711 (0xFF is μ-law silence).
    if bytes.len() >= 2
        && bytes[0] == 0xFF
        && bytes[1] & 0xE0 == 0xE0
        && !matches!(declared, Some(AudioFormat::RawG711(_)))
    {
        return Some(AudioFormat::Mp3);
    }
    declared
}

fn format_of_content_type(content_type: &str) -> Option<AudioFormat> {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "audio/basic" | "audio/ulaw" | "audio/x-mulaw" | "audio/mulaw" | "audio/pcmu"
        | "audio/x-ulaw" => Some(AudioFormat::RawG711(Codec::Pcmu)),
        "audio/alaw" | "audio/x-alaw" | "audio/pcma" => Some(AudioFormat::RawG711(Codec::Pcma)),
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg-3" => Some(AudioFormat::Mp3),
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some(AudioFormat::Wav),
        _ => None,
    }
}

fn format_of_extension(ext: &str) -> Option<AudioFormat> {
    match ext.to_ascii_lowercase().as_str() {
        "wav" | "wave" => Some(AudioFormat::Wav),
        "mp3" => Some(AudioFormat::Mp3),
        "au" | "snd" => Some(AudioFormat::Au),
        "ul" | "ulaw" | "mulaw" | "u" | "pcmu" => Some(AudioFormat::RawG711(Codec::Pcmu)),
        "al" | "alaw" | "pcma" => Some(AudioFormat::RawG711(Codec::Pcma)),
        _ => None,
    }
}

/// Decodes a prompt to 8 kHz mono.
pub fn decode_audio(
    bytes: &[u8],
    content_type: Option<&str>,
    extension: Option<&str>,
) -> Result<Pcm, MediaError> {
    let format = sniff_format(bytes, content_type, extension).ok_or_else(|| {
        MediaError::UnsupportedAudio {
            content_type: content_type.map(str::to_string),
            magic: hex::encode(&bytes[..bytes.len().min(8)]),
        }
    })?;
    match format {
        AudioFormat::Wav => decode_guarded(bytes, "wav", format),
        AudioFormat::Mp3 => decode_guarded(bytes, "mp3", format),
        AudioFormat::Au => decode_au(bytes),
        AudioFormat::RawG711(codec) => {
            check_length(bytes.len() as u64, SAMPLE_RATE)?;
            Ok(Pcm::new(codec.decode(bytes)))
        }
    }
}

fn check_length(frames: u64, rate: u32) -> Result<(), MediaError> {
    if frames > MAX_AUDIO_SECS * u64::from(rate.max(1)) {
        return Err(MediaError::AudioTooLong {
            limit_secs: MAX_AUDIO_SECS,
        });
    }
    Ok(())
}

/// Symphonia documents that some malformed streams may panic its decoders: contain that, so
/// that a bad file from an application is an error, not a crash.
fn decode_guarded(bytes: &[u8], extension: &str, format: AudioFormat) -> Result<Pcm, MediaError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_with_symphonia(bytes, extension, format)
    }))
    .unwrap_or_else(|_| {
        Err(MediaError::Decode {
            format: format.name(),
            reason: "the decoder panicked on malformed input".into(),
        })
    })
}

fn decode_with_symphonia(
    bytes: &[u8],
    extension: &str,
    format: AudioFormat,
) -> Result<Pcm, MediaError> {
    let err = |reason: String| MediaError::Decode {
        format: format.name(),
        reason,
    };
    let source = std::io::Cursor::new(bytes.to_vec());
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let mut reader = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| err(e.to_string()))?;
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| err("no audio track".into()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| err("no audio codec parameters".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| err(e.to_string()))?;

    let mut mono: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut rate: Option<u32> = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // Truncated files end with an unexpected EOF: keep what was decoded.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(e) => return Err(err(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = buf.spec();
                let this_rate = spec.rate();
                let channels = spec.channels().count().max(1);
                match rate {
                    None => rate = Some(this_rate),
                    Some(r) if r != this_rate => {
                        return Err(err(format!("sample rate changed from {r} to {this_rate}")))
                    }
                    Some(_) => {}
                }
                interleaved.clear();
                buf.copy_to_vec_interleaved(&mut interleaved);
                mono.extend(downmix_to_mono(&interleaved, channels));
                check_length(mono.len() as u64, this_rate)?;
            }
            // A corrupt frame: skip it, as players do.
            Err(SymphoniaError::DecodeError(e)) => {
                tracing::debug!(error = e, "skipping undecodable audio packet");
            }
            Err(e) => return Err(err(e.to_string())),
        }
    }
    let Some(rate) = rate else {
        return Err(err("no audio decoded".into()));
    };
    Ok(Pcm::new(resample_to_8k(&mono, rate)?))
}

/// Sun/NeXT audio: big-endian header `.snd`, data offset, size, encoding, rate, channels.
fn decode_au(bytes: &[u8]) -> Result<Pcm, MediaError> {
    let err = |reason: &str| MediaError::Decode {
        format: "AU",
        reason: reason.to_string(),
    };
    let word = |i: usize| -> Result<u32, MediaError> {
        bytes
            .get(i * 4..i * 4 + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| err("truncated header"))
    };
    let offset = word(1)? as usize;
    let declared = word(2)?;
    let encoding = word(3)?;
    let rate = word(4)?;
    let channels = word(5)?.max(1) as usize;
    let data = bytes
        .get(offset..)
        .ok_or_else(|| err("data offset beyond end"))?;
    // 0xFFFFFFFF means "size unknown": take everything.
    let data = if declared != u32::MAX {
        &data[..data.len().min(declared as usize)]
    } else {
        data
    };
    let samples: Vec<f32> = match encoding {
        1 => Codec::Pcmu
            .decode(data)
            .iter()
            .map(|s| f32::from(*s) / 32768.0)
            .collect(),
        27 => Codec::Pcma
            .decode(data)
            .iter()
            .map(|s| f32::from(*s) / 32768.0)
            .collect(),
        2 => data.iter().map(|b| f32::from(*b as i8) / 128.0).collect(),
        3 => data
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_be_bytes([c[0], c[1]])) / 32768.0)
            .collect(),
        other => return Err(err(&format!("unsupported encoding {other}"))),
    };
    check_length((samples.len() / channels) as u64, rate)?;
    let mono = downmix_to_mono(&samples, channels);
    Ok(Pcm::new(resample_to_8k(&mono, rate)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(rate: u32, channels: u16, bits: u16, seconds: f32, freq: f32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
            let n = (rate as f32 * seconds) as usize;
            for i in 0..n {
                let v = (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin() * 0.5;
                for _ in 0..channels {
                    if bits == 16 {
                        w.write_sample((v * 32767.0) as i16).unwrap();
                    } else {
                        w.write_sample((v * 127.0) as i8).unwrap();
                    }
                }
            }
            w.finalize().unwrap();
        }
        cursor.into_inner()
    }

    #[test]
    fn sniffing() {
        let wav = wav_bytes(8000, 1, 16, 0.01, 440.0);
        assert_eq!(sniff_format(&wav, None, None), Some(AudioFormat::Wav));
        assert_eq!(
            sniff_format(b"ID3\x04rest", None, None),
            Some(AudioFormat::Mp3)
        );
        assert_eq!(
            sniff_format(&[0xFF, 0xFB, 0x90], Some("audio/mpeg"), None),
            Some(AudioFormat::Mp3)
        );
        // μ-law silence starts with 0xFF: the content type decides
        assert_eq!(
            sniff_format(&[0xFF, 0xFF, 0xFF], Some("audio/x-mulaw;rate=8000"), None),
            Some(AudioFormat::RawG711(Codec::Pcmu))
        );
        assert_eq!(
            sniff_format(&[1, 2, 3], Some("AUDIO/BASIC"), None),
            Some(AudioFormat::RawG711(Codec::Pcmu))
        );
        assert_eq!(
            sniff_format(&[1, 2, 3], None, Some("ulaw")),
            Some(AudioFormat::RawG711(Codec::Pcmu))
        );
        assert_eq!(sniff_format(b"<html>", Some("text/html"), Some("x")), None);
    }

    #[test]
    fn wav_at_any_rate_and_channels_becomes_8k_mono() {
        for (rate, channels, bits) in [(8000, 1, 16), (16000, 1, 16), (44100, 2, 16), (22050, 1, 8)]
        {
            let wav = wav_bytes(rate, channels, bits, 0.5, 440.0);
            let pcm = decode_audio(&wav, Some("audio/wav"), None).unwrap();
            assert!(
                (pcm.len() as i64 - 4000).abs() <= 4,
                "{rate}/{channels}/{bits}: {} samples",
                pcm.len()
            );
            let mid = &pcm.samples()[500..3500];
            let level = crate::pcm::rms(mid);
            assert!(
                (level - 11585.0).abs() < 1000.0,
                "{rate}/{channels}/{bits}: rms {level}"
            );
        }
    }

    #[test]
    fn raw_ulaw_and_alaw() {
        let tone = Pcm::tone(&[1000.0], 100, 8000.0);
        let ulaw = tone.encoded(Codec::Pcmu).to_vec();
        let pcm = decode_audio(&ulaw, Some("audio/x-mulaw"), None).unwrap();
        assert_eq!(pcm.len(), 800);
        assert!((pcm.rms() - tone.rms()).abs() < 200.0);
        let alaw = tone.encoded(Codec::Pcma).to_vec();
        let pcm = decode_audio(&alaw, Some("audio/x-alaw"), None).unwrap();
        assert!((pcm.rms() - tone.rms()).abs() < 200.0);
    }

    #[test]
    fn au_file() {
        let tone = Pcm::tone(&[500.0], 200, 8000.0);
        let mut au = Vec::new();
        for w in [0x2e736e64u32, 24, 1600, 1, 8000, 1] {
            au.extend_from_slice(&w.to_be_bytes());
        }
        au.extend_from_slice(tone.encoded(Codec::Pcmu));
        let pcm = decode_audio(&au, Some("audio/basic"), None).unwrap();
        assert_eq!(pcm.len(), 1600);
        assert!((pcm.rms() - tone.rms()).abs() < 200.0);
        assert!(decode_audio(&au[..10], None, None).is_err());
    }

    #[test]
    fn mp3_44k_stereo_becomes_8k_mono() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tone-600hz-44k-stereo.mp3"
        ))
        .unwrap();
        assert_eq!(sniff_format(&bytes, None, None), Some(AudioFormat::Mp3));
        let pcm = decode_audio(&bytes, Some("audio/mpeg"), Some("mp3")).unwrap();
        // 0.8 s, plus up to one MP3 frame of encoder delay and padding
        assert!(
            (6400..=6400 + 1200).contains(&pcm.len()),
            "{} samples",
            pcm.len()
        );
        let mid = &pcm.samples()[1600..4800];
        let level = crate::pcm::rms(mid);
        assert!(
            (level - 16000.0 / 2f64.sqrt()).abs() < 1500.0,
            "rms {level}"
        );
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let freq = crossings as f64 / 2.0 / (mid.len() as f64 / 8000.0);
        assert!((freq - 600.0).abs() < 10.0, "frequency {freq}");
    }

    #[test]
    fn random_bytes_behind_every_magic_never_panic() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(11);
        let mp3 = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tone-600hz-44k-stereo.mp3"
        ))
        .unwrap();
        let wav = wav_bytes(8000, 1, 16, 0.05, 440.0);
        let prefixes: [&[u8]; 6] = [
            b"RIFF\x24\x00\x00\x00WAVEfmt ",
            b"ID3\x04\x00",
            &[0xFF, 0xFB, 0x90, 0x64],
            b".snd",
            &mp3[..200],
            &wav[..44],
        ];
        for prefix in prefixes {
            for _ in 0..50 {
                let mut bytes = prefix.to_vec();
                let n = rng.random_range(0..2000);
                bytes.extend((0..n).map(|_| rng.random::<u8>()));
                let _ = decode_audio(&bytes, None, None);
            }
        }
        // and corrupted real files
        for _ in 0..50 {
            let mut bytes = mp3.clone();
            for _ in 0..20 {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            let _ = decode_audio(&bytes, None, None);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            decode_audio(b"<html>oops</html>", Some("text/html"), None),
            Err(MediaError::UnsupportedAudio { .. })
        ));
        let mut wav = wav_bytes(8000, 1, 16, 0.1, 440.0);
        wav.truncate(30);
        assert!(decode_audio(&wav, None, None).is_err());
        assert!(decode_audio(b"ID3\x04\x00\x00\x00\x00\x00\x00junk", None, None).is_err());
        assert!(decode_audio(&[], Some("audio/mpeg"), None).is_err());
    }
}

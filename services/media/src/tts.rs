//! Text-to-speech: the [`Tts`] trait, the espeak-ng implementation (a child process writing a
//! WAV file), the mapping of Twilio voices and languages to espeak voices, and caching in
//! memory (bounded, single-flight) and optionally on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::cache::{CacheStats, PcmCache};
use crate::error::MediaError;
use crate::pcm::{resample_to_8k, Pcm, SAMPLE_RATE};

/// Speech synthesis: text in, 8 kHz prompt out.
#[async_trait]
pub trait Tts: Send + Sync + 'static {
    /// Speaks `text` with a Twilio `voice` (`man`, `woman`, `alice`, `Polly.Joanna`, …) and
    /// `language` (`en-US`, …); both optional. `text` may be an SSML document (starting with
    /// `<speak>`), as `dialtone-voice` renders `<Say>` with breaks and say-as.
    async fn synthesize(
        &self,
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> Result<Arc<Pcm>, MediaError>;
}

/// Gender of a voice, picking the espeak variant (`+m3` or `+f3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceGender {
    Male,
    Female,
}

impl VoiceGender {
    pub fn espeak_variant(self) -> &'static str {
        match self {
            VoiceGender::Male => "+m3",
            VoiceGender::Female => "+f3",
        }
    }
}

/// Language used when neither the voice nor the `language` attribute gives one.
pub const DEFAULT_LANGUAGE: &str = "en-US";

/// Twilio `language` codes (BCP-47, as in `<Say language>`) and the espeak-ng voice that
/// speaks them. Lookups ignore case; a code not listed falls back to the entry of its primary
/// language (`es-AR` → `es`), then to `en-us`.
pub const LANGUAGE_TO_ESPEAK: &[(&str, &str)] = &[
    ("en", "en-us"),
    ("en-US", "en-us"),
    ("en-CA", "en-us"),
    ("en-GB", "en-gb"),
    ("en-AU", "en-gb"),
    ("en-NZ", "en-gb"),
    ("en-IE", "en-gb"),
    ("en-IN", "en-gb"),
    ("en-ZA", "en-gb"),
    ("en-GB-WLS", "en-gb"),
    ("es", "es"),
    ("es-ES", "es"),
    ("es-MX", "es-419"),
    ("es-US", "es-419"),
    ("ca-ES", "ca"),
    ("fr", "fr-fr"),
    ("fr-FR", "fr-fr"),
    ("fr-CA", "fr-fr"),
    ("fr-BE", "fr-be"),
    ("fr-CH", "fr-ch"),
    ("de", "de"),
    ("de-DE", "de"),
    ("de-AT", "de"),
    ("de-CH", "de"),
    ("it", "it"),
    ("it-IT", "it"),
    ("pt", "pt"),
    ("pt-PT", "pt"),
    ("pt-BR", "pt-br"),
    ("nl", "nl"),
    ("nl-NL", "nl"),
    ("nl-BE", "nl"),
    ("da-DK", "da"),
    ("fi-FI", "fi"),
    ("nb-NO", "nb"),
    ("sv-SE", "sv"),
    ("is-IS", "is"),
    ("pl-PL", "pl"),
    ("cs-CZ", "cs"),
    ("ro-RO", "ro"),
    ("hu-HU", "hu"),
    ("el-GR", "el"),
    ("ru-RU", "ru"),
    ("uk-UA", "uk"),
    ("tr-TR", "tr"),
    ("ar-AE", "ar"),
    ("arb", "ar"),
    ("he-IL", "he"),
    ("hi-IN", "hi"),
    ("ja-JP", "ja"),
    ("ko-KR", "ko"),
    ("zh-CN", "cmn"),
    ("cmn-CN", "cmn"),
    ("zh-TW", "cmn"),
    ("zh-HK", "yue"),
    ("yue-HK", "yue"),
    ("cy-GB", "cy"),
    ("id-ID", "id"),
    ("vi-VN", "vi"),
    ("th-TH", "th"),
];

/// Amazon Polly voices usable as `voice="Polly.<Name>"` (also `-Neural`/`-Generative`): their
/// gender and the language they speak (which wins over the `language` attribute).
pub const POLLY_VOICES: &[(&str, VoiceGender, &str)] = &[
    ("Joanna", VoiceGender::Female, "en-US"),
    ("Salli", VoiceGender::Female, "en-US"),
    ("Kimberly", VoiceGender::Female, "en-US"),
    ("Kendra", VoiceGender::Female, "en-US"),
    ("Ivy", VoiceGender::Female, "en-US"),
    ("Ruth", VoiceGender::Female, "en-US"),
    ("Danielle", VoiceGender::Female, "en-US"),
    ("Matthew", VoiceGender::Male, "en-US"),
    ("Joey", VoiceGender::Male, "en-US"),
    ("Justin", VoiceGender::Male, "en-US"),
    ("Kevin", VoiceGender::Male, "en-US"),
    ("Stephen", VoiceGender::Male, "en-US"),
    ("Gregory", VoiceGender::Male, "en-US"),
    ("Amy", VoiceGender::Female, "en-GB"),
    ("Emma", VoiceGender::Female, "en-GB"),
    ("Brian", VoiceGender::Male, "en-GB"),
    ("Arthur", VoiceGender::Male, "en-GB"),
    ("Nicole", VoiceGender::Female, "en-AU"),
    ("Olivia", VoiceGender::Female, "en-AU"),
    ("Russell", VoiceGender::Male, "en-AU"),
    ("Raveena", VoiceGender::Female, "en-IN"),
    ("Aditi", VoiceGender::Female, "en-IN"),
    ("Kajal", VoiceGender::Female, "en-IN"),
    ("Niamh", VoiceGender::Female, "en-IE"),
    ("Aria", VoiceGender::Female, "en-NZ"),
    ("Ayanda", VoiceGender::Female, "en-ZA"),
    ("Geraint", VoiceGender::Male, "en-GB-WLS"),
    ("Gwyneth", VoiceGender::Female, "cy-GB"),
    ("Conchita", VoiceGender::Female, "es-ES"),
    ("Lucia", VoiceGender::Female, "es-ES"),
    ("Enrique", VoiceGender::Male, "es-ES"),
    ("Sergio", VoiceGender::Male, "es-ES"),
    ("Mia", VoiceGender::Female, "es-MX"),
    ("Andres", VoiceGender::Male, "es-MX"),
    ("Penelope", VoiceGender::Female, "es-US"),
    ("Lupe", VoiceGender::Female, "es-US"),
    ("Miguel", VoiceGender::Male, "es-US"),
    ("Pedro", VoiceGender::Male, "es-US"),
    ("Celine", VoiceGender::Female, "fr-FR"),
    ("Lea", VoiceGender::Female, "fr-FR"),
    ("Mathieu", VoiceGender::Male, "fr-FR"),
    ("Remi", VoiceGender::Male, "fr-FR"),
    ("Chantal", VoiceGender::Female, "fr-CA"),
    ("Gabrielle", VoiceGender::Female, "fr-CA"),
    ("Liam", VoiceGender::Male, "fr-CA"),
    ("Marlene", VoiceGender::Female, "de-DE"),
    ("Vicki", VoiceGender::Female, "de-DE"),
    ("Hans", VoiceGender::Male, "de-DE"),
    ("Daniel", VoiceGender::Male, "de-DE"),
    ("Hannah", VoiceGender::Female, "de-AT"),
    ("Carla", VoiceGender::Female, "it-IT"),
    ("Bianca", VoiceGender::Female, "it-IT"),
    ("Giorgio", VoiceGender::Male, "it-IT"),
    ("Adriano", VoiceGender::Male, "it-IT"),
    ("Camila", VoiceGender::Female, "pt-BR"),
    ("Vitoria", VoiceGender::Female, "pt-BR"),
    ("Ricardo", VoiceGender::Male, "pt-BR"),
    ("Thiago", VoiceGender::Male, "pt-BR"),
    ("Ines", VoiceGender::Female, "pt-PT"),
    ("Cristiano", VoiceGender::Male, "pt-PT"),
    ("Lotte", VoiceGender::Female, "nl-NL"),
    ("Laura", VoiceGender::Female, "nl-NL"),
    ("Ruben", VoiceGender::Male, "nl-NL"),
    ("Naja", VoiceGender::Female, "da-DK"),
    ("Sofie", VoiceGender::Female, "da-DK"),
    ("Mads", VoiceGender::Male, "da-DK"),
    ("Liv", VoiceGender::Female, "nb-NO"),
    ("Ida", VoiceGender::Female, "nb-NO"),
    ("Astrid", VoiceGender::Female, "sv-SE"),
    ("Elin", VoiceGender::Female, "sv-SE"),
    ("Suvi", VoiceGender::Female, "fi-FI"),
    ("Dora", VoiceGender::Female, "is-IS"),
    ("Karl", VoiceGender::Male, "is-IS"),
    ("Ewa", VoiceGender::Female, "pl-PL"),
    ("Maja", VoiceGender::Female, "pl-PL"),
    ("Ola", VoiceGender::Female, "pl-PL"),
    ("Jacek", VoiceGender::Male, "pl-PL"),
    ("Jan", VoiceGender::Male, "pl-PL"),
    ("Carmen", VoiceGender::Female, "ro-RO"),
    ("Tatyana", VoiceGender::Female, "ru-RU"),
    ("Maxim", VoiceGender::Male, "ru-RU"),
    ("Filiz", VoiceGender::Female, "tr-TR"),
    ("Burcu", VoiceGender::Female, "tr-TR"),
    ("Zeina", VoiceGender::Female, "arb"),
    ("Hala", VoiceGender::Female, "ar-AE"),
    ("Mizuki", VoiceGender::Female, "ja-JP"),
    ("Kazuha", VoiceGender::Female, "ja-JP"),
    ("Tomoko", VoiceGender::Female, "ja-JP"),
    ("Takumi", VoiceGender::Male, "ja-JP"),
    ("Seoyeon", VoiceGender::Female, "ko-KR"),
    ("Zhiyu", VoiceGender::Female, "cmn-CN"),
];

/// Twilio's basic voices and their gender (`alice` is a woman's voice).
pub const BASIC_VOICES: &[(&str, VoiceGender)] = &[
    ("man", VoiceGender::Male),
    ("woman", VoiceGender::Female),
    ("alice", VoiceGender::Female),
];

/// Gender used when the voice does not tell (no voice, or a Google voice): Twilio's
/// historical default voice is `man`.
pub const DEFAULT_GENDER: VoiceGender = VoiceGender::Male;

fn espeak_language(language: &str) -> Option<&'static str> {
    let find = |code: &str| {
        LANGUAGE_TO_ESPEAK
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(code))
            .map(|(_, v)| *v)
    };
    let code = language.trim().replace('_', "-");
    find(&code).or_else(|| find(code.split('-').next().unwrap_or("")))
}

/// The espeak-ng voice (`-v` argument) for a Twilio voice and language.
///
/// `Polly.<Name>` brings its own language and gender; `Google.<ll-CC>-…` its language;
/// `man`/`woman`/`alice` a gender. The `language` attribute applies otherwise.
pub fn espeak_voice(voice: Option<&str>, language: Option<&str>) -> String {
    let voice = voice.map(str::trim).filter(|v| !v.is_empty());
    let mut gender = None;
    let mut voice_language: Option<String> = None;
    if let Some(v) = voice {
        if let Some(name) = strip_prefix_ignore_case(v, "polly.") {
            let base = name.split('-').next().unwrap_or(name);
            if let Some((_, g, lang)) = POLLY_VOICES
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(base))
            {
                gender = Some(*g);
                voice_language = Some((*lang).to_string());
            }
        } else if let Some(name) = strip_prefix_ignore_case(v, "google.") {
            let mut parts = name.split('-');
            if let (Some(l), Some(c)) = (parts.next(), parts.next()) {
                voice_language = Some(format!("{l}-{c}"));
            }
        } else if let Some((_, g)) = BASIC_VOICES.iter().find(|(n, _)| n.eq_ignore_ascii_case(v)) {
            gender = Some(*g);
        }
    }
    let lang = voice_language
        .as_deref()
        .and_then(espeak_language)
        .or_else(|| language.and_then(espeak_language))
        .or_else(|| espeak_language(DEFAULT_LANGUAGE))
        .unwrap_or("en-us");
    format!(
        "{lang}{}",
        gender.unwrap_or(DEFAULT_GENDER).espeak_variant()
    )
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Settings of [`EspeakTts`].
#[derive(Debug, Clone)]
pub struct EspeakConfig {
    /// The program to run (`espeak-ng`, looked up in `PATH`).
    pub program: PathBuf,
    /// Where synthesised prompts are kept across restarts (8 kHz WAV files), if anywhere.
    pub cache_dir: Option<PathBuf>,
    /// Memory budget of the in-memory cache.
    pub memory_cache_bytes: usize,
    /// A synthesis taking longer than this is killed.
    pub timeout: Duration,
}

impl Default for EspeakConfig {
    fn default() -> EspeakConfig {
        EspeakConfig {
            program: PathBuf::from("espeak-ng"),
            cache_dir: None,
            memory_cache_bytes: 64 << 20,
            timeout: Duration::from_secs(15),
        }
    }
}

/// espeak-ng behind the [`Tts`] trait, with caches. Each synthesis runs
/// `espeak-ng -v <voice> -w <tmpfile> --stdin` (the WAV header of `--stdout` carries a bogus
/// length) and resamples its 22.05 kHz output to 8 kHz.
pub struct EspeakTts {
    config: EspeakConfig,
    cache: PcmCache<(String, String)>,
    runs: AtomicU64,
    disk_hits: AtomicU64,
}

impl EspeakTts {
    pub fn new(config: EspeakConfig) -> EspeakTts {
        EspeakTts {
            cache: PcmCache::new(config.memory_cache_bytes),
            config,
            runs: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
        }
    }

    /// How many times espeak-ng was run.
    pub fn synth_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// How many prompts came from the disk cache.
    pub fn disk_hits(&self) -> u64 {
        self.disk_hits.load(Ordering::Relaxed)
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    fn disk_path(&self, espeak_voice: &str, text: &str) -> Option<PathBuf> {
        let dir = self.config.cache_dir.as_ref()?;
        let mut h = Sha256::new();
        h.update(b"espeak-ng v1\0");
        h.update(espeak_voice.as_bytes());
        h.update(b"\0");
        h.update(text.as_bytes());
        Some(dir.join(format!("{}.wav", hex::encode(h.finalize()))))
    }

    async fn load(&self, espeak_voice: &str, text: &str) -> Result<Arc<Pcm>, MediaError> {
        let disk = self.disk_path(espeak_voice, text);
        if let Some(path) = disk.clone() {
            let read = tokio::task::spawn_blocking(move || read_8k_wav(&path))
                .await
                .map_err(|e| MediaError::Task(e.to_string()))?;
            if let Some(pcm) = read {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::new(pcm));
            }
        }
        let pcm = Arc::new(self.run_espeak(espeak_voice, text).await?);
        if let Some(path) = disk {
            let pcm = pcm.clone();
            let written = tokio::task::spawn_blocking(move || {
                crate::recorder::write_wav(&path, pcm.samples())
            })
            .await
            .map_err(|e| MediaError::Task(e.to_string()))?;
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot write the TTS disk cache");
            }
        }
        Ok(pcm)
    }

    async fn run_espeak(&self, espeak_voice: &str, text: &str) -> Result<Pcm, MediaError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let program = self.config.program.display().to_string();
        let tts_err = |reason: String| MediaError::Tts {
            program: program.clone(),
            reason,
        };
        let dir = tempfile::tempdir().map_err(|e| tts_err(format!("temporary directory: {e}")))?;
        let wav_path = dir.path().join("speech.wav");
        let mut command = tokio::process::Command::new(&self.config.program);
        if is_ssml(text) {
            // espeak-ng's SSML mode: <break time="…"/> becomes a pause.
            command.arg("-m");
        }
        let mut child = command
            .arg("-v")
            .arg(espeak_voice)
            .arg("-b")
            .arg("1")
            .arg("-w")
            .arg(&wav_path)
            .arg("--stdin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| tts_err(format!("cannot start: {e}")))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| tts_err("no stdin".into()))?;
        let text_owned = text.to_string();
        let run = async move {
            stdin.write_all(text_owned.as_bytes()).await?;
            stdin.shutdown().await?;
            drop(stdin);
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(self.config.timeout, run)
            .await
            .map_err(|_| MediaError::TtsTimeout {
                program: program.clone(),
                secs: self.config.timeout.as_secs(),
            })?
            .map_err(|e| tts_err(e.to_string()))?;
        if !output.status.success() {
            return Err(tts_err(format!(
                "{} (voice {espeak_voice}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let pcm = tokio::task::spawn_blocking(move || {
            let result = decode_wav_file(&wav_path);
            drop(dir);
            result
        })
        .await
        .map_err(|e| MediaError::Task(e.to_string()))??;
        Ok(pcm)
    }
}

#[async_trait]
impl Tts for EspeakTts {
    async fn synthesize(
        &self,
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> Result<Arc<Pcm>, MediaError> {
        let espeak_voice = espeak_voice(voice, language);
        let key = (espeak_voice.clone(), text.to_string());
        self.cache
            .get_or_load(key, || self.load(&espeak_voice, text))
            .await
    }
}

/// Whether `text` is an SSML document rather than plain text.
pub fn is_ssml(text: &str) -> bool {
    text.trim_start().starts_with("<speak>")
}

/// Reads a WAV file of any rate and channel count (integer or float PCM) to 8 kHz mono.
pub fn decode_wav_file(path: &Path) -> Result<Pcm, MediaError> {
    let err = |reason: String| MediaError::Decode {
        format: "WAV",
        reason: format!("{}: {reason}", path.display()),
    };
    let mut reader = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
    let spec = reader.spec();
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        }
    };
    let mono = crate::pcm::downmix_to_mono(&interleaved, usize::from(spec.channels));
    Ok(Pcm::new(resample_to_8k(&mono, spec.sample_rate)?))
}

/// A cached prompt: only 8 kHz mono 16-bit files are accepted (anything else is a stale or
/// foreign file and is resynthesised).
fn read_8k_wav(path: &Path) -> Option<Pcm> {
    let mut reader = hound::WavReader::open(path).ok()?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE || spec.channels != 1 || spec.bits_per_sample != 16 {
        return None;
    }
    let samples: Result<Vec<i16>, _> = reader.samples::<i16>().collect();
    samples.ok().map(Pcm::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_mapping() {
        assert_eq!(espeak_voice(None, None), "en-us+m3");
        assert_eq!(espeak_voice(Some("man"), Some("en-GB")), "en-gb+m3");
        assert_eq!(espeak_voice(Some("woman"), Some("es-ES")), "es+f3");
        assert_eq!(espeak_voice(Some("alice"), Some("fr-FR")), "fr-fr+f3");
        assert_eq!(espeak_voice(Some("alice"), Some("de-DE")), "de+f3");
        assert_eq!(espeak_voice(Some("Alice"), Some("en_us")), "en-us+f3");
        // Polly voices carry their language and gender
        assert_eq!(
            espeak_voice(Some("Polly.Joanna"), Some("de-DE")),
            "en-us+f3"
        );
        assert_eq!(espeak_voice(Some("Polly.Brian-Neural"), None), "en-gb+m3");
        assert_eq!(espeak_voice(Some("polly.hans"), None), "de+m3");
        assert_eq!(
            espeak_voice(Some("Polly.Mia-Generative"), None),
            "es-419+f3"
        );
        // Google voices carry their language
        assert_eq!(
            espeak_voice(Some("Google.fr-FR-Standard-A"), None),
            "fr-fr+m3"
        );
        // unknown voices and languages fall back
        assert_eq!(espeak_voice(Some("Polly.Nobody"), Some("it-IT")), "it+m3");
        assert_eq!(espeak_voice(Some("robot"), Some("es-AR")), "es+m3");
        assert_eq!(espeak_voice(Some("man"), Some("xx-YY")), "en-us+m3");
    }

    #[test]
    fn every_table_entry_is_reachable() {
        for (code, voice) in LANGUAGE_TO_ESPEAK {
            assert_eq!(espeak_language(code), Some(*voice));
        }
        for (name, gender, lang) in POLLY_VOICES {
            let v = espeak_voice(Some(&format!("Polly.{name}")), None);
            assert!(v.ends_with(gender.espeak_variant()), "{name}");
            assert!(espeak_language(lang).is_some(), "{name}: {lang}");
        }
    }
}

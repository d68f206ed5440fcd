//! Speech with the real espeak-ng: audio, caching in memory and on disk, voices, and no
//! false DTMF in speech (talk-off).

use std::sync::Arc;

use dialtone_media::dtmf::goertzel::GoertzelDetector;
use dialtone_media::pcm::rms;
use dialtone_media::{EspeakConfig, EspeakTts, MediaError, Tts};

#[tokio::test]
async fn speech_is_8k_audio_cached_in_memory() {
    let tts = EspeakTts::new(EspeakConfig::default());
    let text = "Thank you for calling. Your call is important to us.";
    let a = tts
        .synthesize(text, Some("woman"), Some("en-US"))
        .await
        .unwrap();
    // ~3 s of speech at 8 kHz
    assert!((8000..8000 * 8).contains(&a.len()), "{} samples", a.len());
    assert!(rms(a.samples()) > 1000.0, "rms {}", rms(a.samples()));
    let b = tts
        .synthesize(text, Some("woman"), Some("en-US"))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // alice maps to the same espeak voice as woman
    let c = tts
        .synthesize(text, Some("alice"), Some("en-us"))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&a, &c));
    assert_eq!(tts.synth_runs(), 1);
    // another voice is another synthesis, and sounds different
    let d = tts
        .synthesize(text, Some("man"), Some("en-US"))
        .await
        .unwrap();
    assert_eq!(tts.synth_runs(), 2);
    assert_ne!(a.samples(), d.samples());
    let stats = tts.cache_stats();
    assert_eq!(stats.entries, 2);
    assert!(stats.hits >= 2);
}

#[tokio::test]
async fn concurrent_requests_run_espeak_once() {
    let tts = Arc::new(EspeakTts::new(EspeakConfig::default()));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let tts = tts.clone();
        tasks.push(tokio::spawn(async move {
            tts.synthesize("Please hold.", None, None)
                .await
                .unwrap()
                .len()
        }));
    }
    let lens: Vec<usize> = futures_join(tasks).await;
    assert!(lens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(tts.synth_runs(), 1);
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<usize>>) -> Vec<usize> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn disk_cache_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = EspeakConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..EspeakConfig::default()
    };
    let first = EspeakTts::new(config.clone());
    let a = first
        .synthesize("Goodbye.", Some("Polly.Amy"), None)
        .await
        .unwrap();
    assert_eq!(first.synth_runs(), 1);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let second = EspeakTts::new(config);
    let b = second
        .synthesize("Goodbye.", Some("Polly.Amy"), None)
        .await
        .unwrap();
    assert_eq!(second.synth_runs(), 0);
    assert_eq!(second.disk_hits(), 1);
    assert_eq!(a.samples(), b.samples());
}

#[tokio::test]
async fn languages() {
    let tts = EspeakTts::new(EspeakConfig::default());
    for (text, lang) in [
        ("Bonjour et bienvenue", "fr-FR"),
        ("Hola y bienvenido", "es-ES"),
        ("Hallo und willkommen", "de-DE"),
        ("Hello and welcome", "en-GB"),
    ] {
        let pcm = tts
            .synthesize(text, Some("alice"), Some(lang))
            .await
            .unwrap();
        assert!(rms(pcm.samples()) > 1000.0, "{lang}");
    }
}

#[tokio::test]
async fn speech_does_not_look_like_dtmf() {
    let tts = EspeakTts::new(EspeakConfig::default());
    let text = "One two three four five six seven eight nine zero. Star. Pound. \
        Please enter your account number followed by the pound key. \
        Beep beep. Eeeeeee. Mmmmmm. Oh no! Whistle while you work.";
    for voice in ["man", "woman"] {
        let pcm = tts.synthesize(text, Some(voice), None).await.unwrap();
        let mut det = GoertzelDetector::default();
        let mut keys = Vec::new();
        for chunk in pcm.samples().chunks(160) {
            det.push(chunk, &mut keys);
        }
        det.flush(&mut keys);
        assert!(keys.is_empty(), "{voice}: talk-off {keys:?}");
    }
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let tts = EspeakTts::new(EspeakConfig {
        program: "/nonexistent/espeak-ng".into(),
        ..EspeakConfig::default()
    });
    let err = tts.synthesize("hello", None, None).await.unwrap_err();
    assert!(matches!(err, MediaError::Tts { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/espeak-ng"));
}

//! `<Say>` SSML through espeak-ng: a `<break>` is a real pause.

use dialtone_media::tts::{EspeakConfig, EspeakTts, Tts};

#[tokio::test]
async fn a_break_in_ssml_lengthens_the_speech_by_its_pause() {
    let tts = EspeakTts::new(EspeakConfig::default());
    let plain = tts
        .synthesize("one two", Some("man"), Some("en-US"))
        .await
        .unwrap();
    let ssml = tts
        .synthesize(
            r#"<speak>one <break time="1500ms"/> two</speak>"#,
            Some("man"),
            Some("en-US"),
        )
        .await
        .unwrap();
    let (plain_ms, ssml_ms) = (plain.samples().len() / 8, ssml.samples().len() / 8);
    assert!(
        ssml_ms >= plain_ms + 1200,
        "the break added {} ms, expected about 1500",
        ssml_ms as i64 - plain_ms as i64
    );
    // The markup is not read out: without -m espeak would say "speak", "break", "time"…
    assert!(
        ssml_ms < plain_ms + 2500,
        "{ssml_ms} ms vs {plain_ms} ms: was the markup spoken?"
    );
}

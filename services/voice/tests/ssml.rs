//! What `<Say>` SSML becomes for the speech engine.

use dialtone_voice::twiml::{parse, Verb};

fn say(twiml: &str) -> (dialtone_voice::twiml::Say, Vec<String>) {
    let document = parse(twiml).unwrap();
    let warnings = document
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .collect();
    match document.verbs.into_iter().next().map(|v| v.value) {
        Some(Verb::Say(say)) => (say, warnings),
        other => panic!("expected a Say, got {other:?}"),
    }
}

#[test]
fn plain_text_needs_no_ssml() {
    let (say, warnings) = say("<Response><Say>Hello there</Say></Response>");
    assert_eq!(say.speech_ssml(), None);
    assert_eq!(say.text(), "Hello there");
    assert!(warnings.is_empty());
}

#[test]
fn breaks_become_pauses_and_digits_are_spelled_out() {
    let (say, warnings) = say(
        r#"<Response><Say>Your code is <say-as interpret-as="digits">1234</say-as>.<break time="1s"/>Again: <say-as interpret-as="telephone">555-0100</say-as><break strength="strong"/>Bye &amp; thanks</Say></Response>"#,
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        say.speech_ssml().as_deref(),
        Some(
            r#"<speak>Your code is 1 2 3 4.<break time="1000ms"/>Again: 5 5 5 0 1 0 0<break time="700ms"/>Bye &amp; thanks</speak>"#
        )
    );
    assert_eq!(
        say.text(),
        "Your code is 1 2 3 4 . Again: 5 5 5 0 1 0 0 Bye & thanks"
    );
}

#[test]
fn other_ssml_is_spoken_as_text_with_a_warning() {
    let (say, warnings) = say(
        r#"<Response><Say>This is <emphasis level="strong">very</emphasis> <prosody rate="slow">slow</prosody> and <sub alias="World Wide Web">WWW</sub></Say></Response>"#,
    );
    assert_eq!(
        say.speech_ssml().as_deref(),
        Some("<speak>This is very slow and World Wide Web</speak>")
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings
        .iter()
        .any(|w| w.contains("<emphasis> is spoken as plain text")));
    assert!(warnings
        .iter()
        .any(|w| w.contains("<prosody> is spoken as plain text")));
}

use dialtone_events::payload::HttpMethod;

use super::*;

fn verbs(doc: &Document) -> Vec<&Verb> {
    doc.verbs.iter().map(|v| &v.value).collect()
}

fn codes(doc: &Document) -> Vec<u32> {
    doc.warnings.iter().map(|w| w.code).collect()
}

#[test]
fn a_typical_ivr_document_parses_with_twilio_defaults() {
    let doc = parse(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Say voice="alice" language="en-GB" loop="2">Welcome to Dialtone.</Say>
  <Gather numDigits="1" action="/menu">
    <Say>Press 1 for sales.</Say>
    <Play>https://example.com/beep.wav</Play>
    <Pause length="2"/>
  </Gather>
  <Redirect method="GET">/start</Redirect>
</Response>"#,
    )
    .unwrap();
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    let v = verbs(&doc);
    assert_eq!(v.len(), 3);
    let Verb::Say(say) = v[0] else { panic!() };
    assert_eq!(say.voice.as_deref(), Some("alice"));
    assert_eq!(say.language.as_deref(), Some("en-GB"));
    assert_eq!(say.loops, 2);
    assert_eq!(say.text(), "Welcome to Dialtone.");
    let Verb::Gather(g) = v[1] else { panic!() };
    assert_eq!(g.action.as_deref(), Some("/menu"));
    assert_eq!(g.method, HttpMethod::Post);
    assert_eq!(g.timeout, 5);
    assert_eq!(g.finish_on_key, Some('#'));
    assert_eq!(g.num_digits, Some(1));
    assert!(g.input.dtmf && !g.input.speech);
    assert!(!g.action_on_empty_result);
    assert_eq!(g.prompts.len(), 3);
    assert!(
        matches!(&g.prompts[1].value, Prompt::Play(p) if p.url.as_deref() == Some("https://example.com/beep.wav") && p.loops == 1)
    );
    assert!(matches!(&g.prompts[2].value, Prompt::Pause(p) if p.length == 2));
    assert_eq!(
        v[2],
        &Verb::Redirect(Redirect {
            url: "/start".into(),
            method: HttpMethod::Get
        })
    );
    // Positions are 1-based line/column of the start tag.
    assert_eq!(doc.verbs[0].position, Position { line: 3, column: 3 });
    assert_eq!(doc.verbs[1].position, Position { line: 4, column: 3 });
    assert_eq!(g.prompts[2].position, Position { line: 7, column: 5 });
}

#[test]
fn defaults_of_record_dial_reject_pause() {
    let doc = parse(
        "<Response><Pause/><Record/><Dial>+15551234567</Dial><Reject/><Reject reason=\"busy\"/><Hangup/></Response>",
    )
    .unwrap();
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    let v = verbs(&doc);
    assert_eq!(v[0], &Verb::Pause(Pause { length: 1 }));
    let Verb::Record(r) = v[1] else { panic!() };
    assert_eq!(r, &Record::default());
    assert_eq!(r.finish_on_key, "1234567890*#");
    assert_eq!(r.max_length, 3600);
    assert!(r.play_beep);
    let Verb::Dial(d) = v[2] else { panic!() };
    assert_eq!(d.timeout, 30);
    assert_eq!(d.action, None);
    assert_eq!(d.time_limit, 14400);
    assert_eq!(d.record, DialRecord::DoNotRecord);
    assert_eq!(d.targets.len(), 1);
    assert!(matches!(&d.targets[0].value, DialTarget::Number(n) if n.number == "+15551234567"));
    let Verb::Reject(rj) = v[3] else { panic!() };
    assert_eq!(
        (rj.reason, rj.reason.sip_code()),
        (RejectReason::Rejected, 603)
    );
    let Verb::Reject(rj) = v[4] else { panic!() };
    assert_eq!((rj.reason, rj.reason.sip_code()), (RejectReason::Busy, 486));
    assert_eq!(v[5], &Verb::Hangup(Hangup::default()));
}

#[test]
fn the_root_must_be_response() {
    let err = parse("<?xml version=\"1.0\"?>\n<Responce><Say>Hi</Say></Responce>").unwrap_err();
    assert_eq!(err.code(), 12100);
    assert_eq!(
        err,
        ParseError::WrongRoot {
            found: "Responce".into(),
            position: Position { line: 2, column: 1 }
        }
    );
    assert_eq!(parse("").unwrap_err(), ParseError::Empty);
    assert_eq!(
        parse("  <!-- nothing -->  ").unwrap_err(),
        ParseError::Empty
    );
    assert_eq!(
        parse("<html><body>Oops</body></html>").unwrap_err().code(),
        12100
    );
}

#[test]
fn malformed_xml_is_12100_with_line_and_column() {
    let cases = [
        // mismatched end tag
        ("<Response>\n  <Say>Hi</Play>\n</Response>", 2),
        // never closed
        ("<Response>\n<Say>Hi</Say>\n", 3),
        // bad attribute syntax
        ("<Response>\n\n<Say voice=alice>Hi</Say></Response>", 3),
        // text before the root
        ("hello <Response/>", 1),
        // two roots
        ("<Response/>\n<Response/>", 2),
        // bare & outside Say
        ("<Response>\n<Play>http://x/a?b=1&c=2</Play></Response>", 2),
        // unknown entity outside Say
        ("<Response><Redirect>&nbsp;</Redirect></Response>", 1),
        // bare & in an attribute
        ("<Response><Gather action=\"/a?x=1&y=2\"/></Response>", 1),
    ];
    for (source, line) in cases {
        match parse(source) {
            Err(ParseError::Malformed { position, message }) => {
                assert_eq!(position.line, line, "{source:?}: {message}");
                assert!(position.column >= 1);
            }
            other => panic!("{source:?} gave {other:?}"),
        }
    }
    let err = parse("<Response>\n<Play>http://x/a?b=1&c=2</Play></Response>").unwrap_err();
    assert_eq!(
        err.position(),
        Some(Position {
            line: 2,
            column: 21
        })
    );
}

#[test]
fn a_bare_ampersand_in_say_is_kept_with_a_warning() {
    let doc = parse("<Response>\n  <Say>Tom & Jerry &amp; AT&T&nbsp;</Say>\n</Response>").unwrap();
    let Verb::Say(say) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(say.text(), "Tom & Jerry & AT&T&nbsp;");
    assert_eq!(codes(&doc), vec![12200]);
    assert_eq!(doc.warnings[0].position.line, 2);
    assert!(doc.warnings[0].message.contains('&'));
    // Nested in Gather too.
    let doc = parse("<Response><Gather><Say>R&D</Say></Gather></Response>").unwrap();
    assert_eq!(codes(&doc), vec![12200]);
}

#[test]
fn entities_character_references_and_cdata_are_decoded() {
    let doc = parse(
        "<Response><Say>&lt;1&gt; &quot;q&quot; &apos;a&apos; &#233;t&#xE9; <![CDATA[<raw> & stuff]]></Say></Response>",
    )
    .unwrap();
    assert!(doc.warnings.is_empty());
    let Verb::Say(say) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(say.text(), "<1> \"q\" 'a' été <raw> & stuff");
}

#[test]
fn schema_problems_are_warnings_with_twilio_codes_and_defaults() {
    let doc = parse(
        r###"<Response>
<Gather finishOnKey="##" timeout="soon" numDigits="0" method="PUT" colour="red" input="dtmf speech">
  <Record/>
  <Say>Hi</Say>
</Gather>
<Say loop="-1" voice="">x</Say>
<Fax>no</Fax>
<Dial record="sometimes">123</Dial>
</Response>"###,
    )
    .unwrap();
    let Verb::Gather(g) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(g.finish_on_key, Some('#'));
    assert_eq!(g.timeout, 5);
    assert_eq!(g.num_digits, None);
    assert_eq!(g.method, HttpMethod::Post);
    assert!(g.input.dtmf && g.input.speech);
    assert_eq!(g.prompts.len(), 1, "Record cannot be nested in Gather");
    let Verb::Say(say) = &doc.verbs[1].value else {
        panic!()
    };
    assert_eq!((say.loops, say.voice.clone()), (1, None));
    assert_eq!(doc.verbs.len(), 3, "the unknown <Fax> is skipped");
    let Verb::Dial(d) = &doc.verbs[2].value else {
        panic!()
    };
    assert_eq!(d.record, DialRecord::DoNotRecord);

    let mut got: Vec<(u32, &str, u32)> = doc
        .warnings
        .iter()
        .map(|w| (w.code, w.element.as_str(), w.position.line))
        .collect();
    got.sort();
    let mut want = vec![
        (13310, "Gather", 2), // finishOnKey
        (13313, "Gather", 2), // timeout
        (12200, "Gather", 2), // numDigits
        (12200, "Gather", 2), // method
        (12200, "Gather", 2), // unknown attribute colour
        (12200, "Gather", 3), // nested Record
        (12200, "Say", 6),    // loop
        (12200, "Fax", 7),    // unknown verb
        (12200, "Dial", 8),   // record value
    ];
    want.sort();
    assert_eq!(got, want, "{:#?}", doc.warnings);
    assert!(doc.warnings.iter().any(|w| w.message.contains("colour")));
}

#[test]
fn finish_on_key_empty_disables_it() {
    let doc = parse("<Response><Gather finishOnKey=\"\" numDigits=\"4\" actionOnEmptyResult=\"true\" timeout=\"10\"/></Response>").unwrap();
    let Verb::Gather(g) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(g.finish_on_key, None);
    assert_eq!(g.timeout, 10);
    assert!(g.action_on_empty_result);
    assert!(doc.warnings.is_empty());
}

#[test]
fn dialtone_gather_extensions_parse() {
    let doc = parse(
        "<Response><Gather minDigits=\"2\" maxDigits=\"6\" validDigits=\"0123\" interDigitTimeout=\"3\" speechTimeout=\"auto\"/></Response>",
    )
    .unwrap();
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    let Verb::Gather(g) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(g.min_digits, Some(2));
    assert_eq!(g.max_digits, Some(6));
    assert_eq!(g.valid_digits.as_deref(), Some("0123"));
    assert_eq!(g.inter_digit_timeout, Some(3));
    assert_eq!(g.speech_timeout, Some(SpeechTimeout::Auto));
}

#[test]
fn ssml_children_of_say() {
    let doc = parse(
        r#"<Response><Say voice="Polly.Joanna">Hello <break time="500ms"/><emphasis level="strong">there</emphasis>, <say-as interpret-as="digits">123</say-as> <sub alias="World Wide Web">WWW</sub><prosody rate="90%" pitch="+5%" volume="-6dB">slow</prosody><p>para</p><lang xml:lang="fr-FR">bonjour</lang><phoneme alphabet="ipa" ph="pɪˈkɑːn">pecan</phoneme><w role="amazon:VB">read</w><s>end</s></Say></Response>"#,
    )
    .unwrap();
    // Valid SSML that the speech engine only speaks as text is worth a warning each.
    let spoken_as_text: Vec<_> = doc.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        spoken_as_text,
        ["emphasis", "prosody", "lang", "phoneme", "w"]
            .map(|t| format!("SSML <{t}> is spoken as plain text")),
        "{:?}",
        doc.warnings
    );
    let Verb::Say(say) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(
        say.text(),
        "Hello there, 1 2 3 World Wide Webslow para bonjourpecanread end"
    );
    let ssml = say.ssml();
    assert!(ssml.contains(r#"<break time="500ms"/>"#), "{ssml}");
    assert!(
        ssml.contains(r#"<say-as interpret-as="digits">123</say-as>"#),
        "{ssml}"
    );
    assert!(
        ssml.contains(r#"<lang xml:lang="fr-FR">bonjour</lang>"#),
        "{ssml}"
    );

    let doc = parse(
        r#"<Response><Say><break time="soon" strength="huge"/><prosody rate="zoom">x</prosody><blink>y</blink></Say></Response>"#,
    )
    .unwrap();
    assert_eq!(codes(&doc), vec![12200, 12200, 12200, 12200, 12200]);
    let Verb::Say(say) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(say.text(), "x y", "unknown SSML keeps its words");
}

#[test]
fn every_verb_and_noun_of_twilio_voice_parses() {
    let doc = parse(
        r###"<Response>
  <Say>a</Say>
  <Play digits="1w2#">  </Play>
  <Play loop="0">https://x/a.mp3</Play>
  <Pause length="3"/>
  <Gather input="speech" speechTimeout="3" maxSpeechTime="30" language="es-MX" hints="yes,no" profanityFilter="false" bargeIn="false" partialResultCallback="/p" partialResultCallbackMethod="GET" speechModel="phone_call" enhanced="true" debug="true"/>
  <Record action="/r" method="GET" timeout="0" finishOnKey="#" maxLength="30" playBeep="false" trim="do-not-trim" recordingStatusCallback="/rs" recordingStatusCallbackMethod="GET" recordingStatusCallbackEvent="in-progress completed absent" transcribe="true" transcribeCallback="/t" recordingConfigurationId="x"/>
  <Dial action="/d" method="GET" timeout="20" hangupOnStar="true" timeLimit="60" callerId="+15550000000" record="record-from-answer-dual" trim="do-not-trim" recordingStatusCallback="/rs" recordingStatusCallbackMethod="GET" recordingStatusCallbackEvent="completed" recordingTrack="inbound" answerOnBridge="true" ringTone="uk" callReason="Appointment" sequential="true" referUrl="/refer" referMethod="GET" recordingConfigurationId="y" events="e" passports="p">
    <Number sendDigits="ww123" url="/whisper" method="GET" statusCallbackEvent="initiated ringing answered completed" statusCallback="/sc" statusCallbackMethod="GET" byoc="BY1" machineDetection="Enable" machineDetectionTimeout="10" machineDetectionSpeechThreshold="2000" machineDetectionSpeechEndThreshold="1000" machineDetectionSilenceTimeout="3000" amdStatusCallback="/amd" amdStatusCallbackMethod="GET">+15551112222</Number>
    <Sip username="u" password="p" url="/w" method="POST" statusCallbackEvent="answered" statusCallback="/s" statusCallbackMethod="POST">sip:alice@example.com;transport=tls?X-Custom=1<Uri priority="1" weight="2" username="u2" password="p2">sip:b@example.com</Uri><Headers><Header name="X-A" value="1"/></Headers></Sip>
    <Client url="/c" statusCallbackEvent="ringing"><Identity>bob</Identity><Parameter name="k" value="v"/></Client>
    <Conference muted="true" beep="onEnter" startConferenceOnEnter="false" endConferenceOnExit="true" waitUrl="" waitMethod="GET" maxParticipants="10" record="record-from-start" region="ie1" coach="CA1" trim="do-not-trim" statusCallbackEvent="start end join leave mute hold modify speaker announcement" statusCallback="/cs" statusCallbackMethod="GET" recordingStatusCallback="/r" recordingStatusCallbackMethod="GET" recordingStatusCallbackEvent="completed" eventCallbackUrl="/e" jitterBufferSize="small" participantLabel="agent" recordingConfigurationId="z">Room 1</Conference>
    <Queue url="/q" method="GET" reservationSid="WR1" postWorkActivitySid="WA1">support</Queue>
    <Application url="/a" customerId="c" copyParentTo="true"><ApplicationSid>AP123</ApplicationSid><Parameter name="x" value="y"/></Application>
    <Sim>DE123</Sim>
    <WhatsApp url="/wa">+15553334444</WhatsApp>
  </Dial>
  <Enqueue action="/eq" method="GET" waitUrl="/wait" waitUrlMethod="GET" maxQueueSize="5" workflowSid="WW1"><Task priority="5" timeout="200">{"lang":"en"}</Task></Enqueue>
  <Leave/>
  <Refer action="/ref" method="GET"><Sip>sip:x@example.com</Sip></Refer>
  <Connect action="/c" method="GET">
    <Stream url="wss://x/s" name="s1" track="inbound_track"><Parameter name="a" value="b"/></Stream>
    <Room participantIdentity="p">room</Room>
    <ConversationRelay url="wss://x/r" language="en-US" welcomeGreeting="Hi"><Language code="fr-FR" voice="v"/><Parameter name="a" value="b"/></ConversationRelay>
    <VirtualAgent connectorName="c"><Config name="a" value="b"/></VirtualAgent>
    <Conversation serviceInstanceSid="IS1"/>
    <AiSession aiConnector="a" aiSessionConfiguration="b"/>
    <ConversationRelaySession connector="a" sessionConfiguration="b"/>
    <Autopilot>UA1</Autopilot>
  </Connect>
  <Start action="/s"><Stream url="wss://x" name="fork" track="both_tracks"/><Siprec name="r" connectorName="c"/><Transcription name="t" languageCode="en-US"/><Recording recordingStatusCallback="/r" channels="dual"/></Start>
  <Stop><Stream name="fork"/><Siprec name="r"/><Transcription name="t"/></Stop>
  <Pay input="dtmf" action="/pay" bankAccountType="consumer-savings" statusCallback="/ps" statusCallbackMethod="GET" timeout="10" maxAttempts="2" securityCode="false" postalCode="94107" minPostalCodeLength="5" paymentConnector="Stripe" paymentMethod="ach-debit" tokenType="one-time" chargeAmount="10.00" currency="eur" description="d" validCardTypes="visa amex" language="en-GB">
    <Prompt for="payment-card-number" errorType="timeout invalid-card-number" cardType="visa" attempt="1 2" requireMatchingInputs="true"><Say>Card?</Say><Pause/></Prompt>
    <Parameter name="k" value="v"/>
  </Pay>
  <Sms to="+1" from="+2" action="/sms" method="GET" statusCallback="/ss">hello</Sms>
  <Echo/>
  <Reject reason="busy"><Parameter name="a" value="b"/></Reject>
  <Hangup><Parameter name="a" value="b"/></Hangup>
</Response>"###,
    )
    .unwrap();
    assert!(doc.warnings.is_empty(), "{:#?}", doc.warnings);
    let names: Vec<&str> = doc.verbs.iter().map(|v| v.value.name()).collect();
    assert_eq!(
        names,
        [
            "Say", "Play", "Play", "Pause", "Gather", "Record", "Dial", "Enqueue", "Leave",
            "Refer", "Connect", "Start", "Stop", "Pay", "Sms", "Echo", "Reject", "Hangup"
        ]
    );
    let Verb::Play(p) = &doc.verbs[1].value else {
        panic!()
    };
    assert_eq!(
        (p.digits.as_deref(), p.url.as_deref()),
        (Some("1w2#"), None)
    );
    let Verb::Gather(g) = &doc.verbs[4].value else {
        panic!()
    };
    assert!(g.input.speech && !g.input.dtmf);
    let Verb::Record(r) = &doc.verbs[5].value else {
        panic!()
    };
    assert_eq!(r.timeout, 0);
    assert_eq!(r.trim, Trim::DoNotTrim);
    assert_eq!(r.recording_status_callback_event.len(), 3);
    let Verb::Dial(d) = &doc.verbs[6].value else {
        panic!()
    };
    assert_eq!(d.targets.len(), 8);
    assert_eq!(d.record, DialRecord::RecordFromAnswerDual);
    let DialTarget::Sip(sip) = &d.targets[1].value else {
        panic!()
    };
    assert_eq!(sip.uri, "sip:alice@example.com;transport=tls?X-Custom=1");
    assert_eq!(sip.uris.len(), 1);
    assert_eq!(sip.headers, vec![("X-A".to_owned(), "1".to_owned())]);
    let DialTarget::Client(client) = &d.targets[2].value else {
        panic!()
    };
    assert_eq!(client.identity, "bob");
    let DialTarget::Conference(conf) = &d.targets[3].value else {
        panic!()
    };
    assert_eq!(conf.name, "Room 1");
    assert_eq!(
        conf.wait_url.as_deref(),
        Some(""),
        "empty waitUrl means silence"
    );
    assert_eq!(conf.status_callback_event.len(), 9);
    let DialTarget::Application(app) = &d.targets[5].value else {
        panic!()
    };
    assert_eq!(app.application_sid, "AP123");
    let Verb::Connect(c) = &doc.verbs[10].value else {
        panic!()
    };
    assert_eq!(c.nouns.len(), 8);
    assert_eq!(c.nouns[0].attribute("url"), Some("wss://x/s"));
    assert_eq!(c.nouns[1].text.as_deref(), Some("room"));
    let Verb::Pay(pay) = &doc.verbs[13].value else {
        panic!()
    };
    assert_eq!(pay.prompts[0].prompts.len(), 2);
    assert_eq!(pay.prompts[0].attempt, vec![1, 2]);
}

#[test]
fn hostile_input_never_panics() {
    let deep = "<Response>".to_owned() + &"<Say>".repeat(10_000) + "x";
    assert!(matches!(parse(&deep), Err(ParseError::Malformed { .. })));
    for source in [
        "<",
        "<Response",
        "<Response>&",
        "<Response>&#0;</Response>",
        "<Response>&#xD800;</Response>",
        "\u{feff}<Response/>",
        "<Response><Say>\u{0}</Say></Response>",
        "<?xml?>",
        "<!DOCTYPE x [<!ENTITY a 'b'>]><Response>&a;</Response>",
        "<Response><Dial><Number/></Dial></Response>",
        "<Response><Say>é</Say></Response>",
    ] {
        let _ = parse(source);
    }
    assert!(
        parse("\u{feff}<Response/>").is_ok(),
        "a byte-order mark is fine"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let err = parse("<Response><Say>é€</Say><Oops></Response>").unwrap_err();
    let ParseError::Malformed { position, .. } = err else {
        panic!()
    };
    assert_eq!(position.line, 1);
    // `</Response>` (the mismatched end tag) starts at character 30, byte 33.
    assert_eq!(position.column, 30);
}

#[test]
fn the_writer_escapes_and_round_trips() {
    let document = Element::response([
        Element::new("Say")
            .attr("voice", "alice")
            .text("Tom & Jerry <3 \"quotes\""),
        Element::new("Gather")
            .attr("action", "/menu?a=1&b=2")
            .attr("numDigits", "1")
            .child(Element::new("Play").text("https://x/a.wav?x=1&y=2")),
        Element::new("Hangup"),
    ])
    .to_document();
    assert!(document.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>"));
    assert!(document.contains("Tom &amp; Jerry &lt;3"), "{document}");
    let doc = parse(&document).unwrap();
    assert!(doc.warnings.is_empty());
    let Verb::Say(say) = &doc.verbs[0].value else {
        panic!()
    };
    assert_eq!(say.text(), "Tom & Jerry <3 \"quotes\"");
    let Verb::Gather(g) = &doc.verbs[1].value else {
        panic!()
    };
    assert_eq!(g.action.as_deref(), Some("/menu?a=1&b=2"));
    assert!(
        matches!(&g.prompts[0].value, Prompt::Play(p) if p.url.as_deref() == Some("https://x/a.wav?x=1&y=2"))
    );
    assert_eq!(doc.verbs[2].value, Verb::Hangup(Hangup::default()));
}

//! TwiML (Twilio's voice markup): a typed verb tree, its parser and a small writer.
//!
//! [`parse`] turns a document into a [`Document`]: the verbs of `<Response>` in order, each
//! with its attributes parsed into typed values with Twilio's defaults, plus the warnings
//! Twilio would raise (unknown elements or attributes, invalid values). Like Twilio, the
//! parser is strict about XML well-formedness (error 12100) and tolerant about the schema:
//! an unknown attribute or a bad value yields a warning (12200, or the 13xxx code Twilio
//! documents for it) and the attribute's default, never a failure.
//!
//! One deliberate leniency (a frequent Twilio pain point): a bare `&` or an unknown entity
//! inside `<Say>` text is kept literally with a 12200 warning instead of failing the whole
//! document. Everywhere else it is a 12100 error, as on Twilio.

mod parse;
#[cfg(test)]
mod tests;
mod write;

pub use parse::{parse, ParseOptions};
pub use write::{Content, Element};

use dialtone_events::payload::HttpMethod;

/// Twilio error code for a document that is not well-formed XML or whose root is wrong.
pub const DOCUMENT_PARSE_FAILURE: u32 = 12100;
/// Twilio warning code for schema problems: unknown elements or attributes, bad values,
/// and (in Dialtone) verbs the platform cannot execute yet.
pub const SCHEMA_WARNING: u32 = 12200;
/// Twilio warning code: `<Gather finishOnKey>` is invalid.
pub const GATHER_INVALID_FINISH_ON_KEY: u32 = 13310;
/// Twilio warning code: `<Gather timeout>` is invalid.
pub const GATHER_INVALID_TIMEOUT: u32 = 13313;

/// 1-based line and column (in characters) of a place in a TwiML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a document could not be parsed at all (Twilio error 12100).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("TwiML is not well-formed XML at {position}: {message}")]
    Malformed { position: Position, message: String },
    #[error("the root element of TwiML must be <Response>, found <{found}> at {position}")]
    WrongRoot { found: String, position: Position },
    #[error("the TwiML document is empty: it has no <Response> element")]
    Empty,
}

impl ParseError {
    /// The Twilio error code: always 12100 (document parse failure).
    pub fn code(&self) -> u32 {
        DOCUMENT_PARSE_FAILURE
    }

    /// Where the problem is, when it is at a particular place.
    pub fn position(&self) -> Option<Position> {
        match self {
            ParseError::Malformed { position, .. } | ParseError::WrongRoot { position, .. } => {
                Some(*position)
            }
            ParseError::Empty => None,
        }
    }
}

/// A schema problem Twilio tolerates: the document still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 12200, or a more specific 13xxx code.
    pub code: u32,
    /// The element concerned, e.g. `Gather`.
    pub element: String,
    pub position: Position,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} <{}> at {}: {}",
            self.code, self.element, self.position, self.message
        )
    }
}

/// A parsed TwiML document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    /// The verbs of `<Response>`, in document order. Unknown elements are not in here
    /// (they produced a warning).
    pub verbs: Vec<Located<Verb>>,
    pub warnings: Vec<Warning>,
}

/// A value and where it starts in the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub position: Position,
    pub value: T,
}

/// A TwiML voice verb.
#[derive(Debug, Clone, PartialEq)]
pub enum Verb {
    Say(Say),
    Play(Play),
    Pause(Pause),
    Gather(Gather),
    Record(Record),
    Dial(Dial),
    Hangup(Hangup),
    Reject(Reject),
    Redirect(Redirect),
    Enqueue(Enqueue),
    Leave,
    Refer(Refer),
    Connect(Connect),
    Start(Start),
    Stop(Stop),
    Pay(Pay),
    Sms(Sms),
    Echo,
}

impl Verb {
    /// The element name, e.g. `Say`.
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Say(_) => "Say",
            Verb::Play(_) => "Play",
            Verb::Pause(_) => "Pause",
            Verb::Gather(_) => "Gather",
            Verb::Record(_) => "Record",
            Verb::Dial(_) => "Dial",
            Verb::Hangup(_) => "Hangup",
            Verb::Reject(_) => "Reject",
            Verb::Redirect(_) => "Redirect",
            Verb::Enqueue(_) => "Enqueue",
            Verb::Leave => "Leave",
            Verb::Refer(_) => "Refer",
            Verb::Connect(_) => "Connect",
            Verb::Start(_) => "Start",
            Verb::Stop(_) => "Stop",
            Verb::Pay(_) => "Pay",
            Verb::Sms(_) => "Sms",
            Verb::Echo => "Echo",
        }
    }
}

/// `<Say>`: text to speech.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Say {
    /// `voice`; `None` means the platform default.
    pub voice: Option<String>,
    /// `language`; `None` means the platform default (`en-US`).
    pub language: Option<String>,
    /// `loop`: how many times to say it; 0 means until the call ends.
    pub loops: u32,
    /// The body: text and SSML elements.
    pub content: Vec<SsmlNode>,
}

impl Say {
    /// The text to speak with the SSML markup removed: `<sub>` replaced by its alias,
    /// `<break>`, `<p>` and `<s>` by spaces, whitespace collapsed.
    pub fn text(&self) -> String {
        let mut raw = String::new();
        ssml_plain_text(&self.content, &mut raw);
        raw.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// What the speech engine renders: `None` when the body is plain text (speak
    /// [`Say::text`]); otherwise a `<speak>` document with the SSML Dialtone renders —
    /// `<break>` as a pause, `<say-as interpret-as="digits|telephone|character|spell-out">`
    /// spelled out, `<sub>` as its alias — and every other element reduced to its text.
    pub fn speech_ssml(&self) -> Option<String> {
        if !self
            .content
            .iter()
            .any(|n| matches!(n, SsmlNode::Element(_)))
        {
            return None;
        }
        let mut out = String::from("<speak>");
        speech_markup(&self.content, &mut out);
        out.push_str("</speak>");
        Some(out)
    }

    /// The body as SSML markup (without a `<speak>` wrapper), for engines that take SSML.
    pub fn ssml(&self) -> String {
        let mut out = String::new();
        for node in &self.content {
            write::ssml_markup(node, &mut out);
        }
        out
    }
}

fn attribute<'a>(element: &'a SsmlElement, name: &str) -> Option<&'a str> {
    element
        .attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `<say-as>` text as it should be spoken: digits and characters one by one.
fn say_as_text(element: &SsmlElement) -> String {
    let mut inner = String::new();
    ssml_plain_text(&element.children, &mut inner);
    match attribute(element, "interpret-as") {
        Some("digits" | "telephone") => inner
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" "),
        Some("character" | "spell-out") => inner
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" "),
        _ => inner,
    }
}

/// A `<break>`'s pause in milliseconds (SSML's strengths as espeak-ng reads them).
fn break_ms(element: &SsmlElement) -> u32 {
    if let Some(time) = attribute(element, "time") {
        let time = time.trim();
        if let Some(ms) = time
            .strip_suffix("ms")
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            return ms.clamp(0.0, 10_000.0) as u32;
        }
        if let Some(s) = time
            .strip_suffix('s')
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            return (s * 1000.0).clamp(0.0, 10_000.0) as u32;
        }
    }
    match attribute(element, "strength") {
        Some("none") => 0,
        Some("x-weak") => 100,
        Some("weak") => 250,
        Some("strong") => 700,
        Some("x-strong") => 1000,
        _ => 400,
    }
}

fn escape_text(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
}

fn speech_markup(nodes: &[SsmlNode], out: &mut String) {
    for node in nodes {
        match node {
            SsmlNode::Text(text) => escape_text(text, out),
            SsmlNode::Element(element) => match element.kind {
                SsmlKind::Break => {
                    out.push_str(&format!("<break time=\"{}ms\"/>", break_ms(element)))
                }
                SsmlKind::SayAs => escape_text(&say_as_text(element), out),
                SsmlKind::Sub => match attribute(element, "alias") {
                    Some(alias) => escape_text(alias, out),
                    None => speech_markup(&element.children, out),
                },
                SsmlKind::P | SsmlKind::S => {
                    out.push(' ');
                    speech_markup(&element.children, out);
                    out.push_str(" <break time=\"300ms\"/>");
                }
                _ => speech_markup(&element.children, out),
            },
        }
    }
}

fn ssml_plain_text(nodes: &[SsmlNode], out: &mut String) {
    for node in nodes {
        match node {
            SsmlNode::Text(text) => out.push_str(text),
            SsmlNode::Element(element) => match element.kind {
                SsmlKind::Sub => {
                    let alias = element
                        .attributes
                        .iter()
                        .find(|(name, _)| name == "alias")
                        .map(|(_, value)| value.as_str());
                    match alias {
                        Some(alias) => out.push_str(alias),
                        None => ssml_plain_text(&element.children, out),
                    }
                }
                SsmlKind::Break => out.push(' '),
                SsmlKind::SayAs => {
                    out.push(' ');
                    out.push_str(&say_as_text(element));
                    out.push(' ');
                }
                SsmlKind::P | SsmlKind::S => {
                    out.push(' ');
                    ssml_plain_text(&element.children, out);
                    out.push(' ');
                }
                _ => ssml_plain_text(&element.children, out),
            },
        }
    }
}

/// A piece of `<Say>` content.
#[derive(Debug, Clone, PartialEq)]
pub enum SsmlNode {
    Text(String),
    Element(SsmlElement),
}

/// An SSML element inside `<Say>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SsmlElement {
    pub kind: SsmlKind,
    /// Known attributes, as written (values were checked; see the warnings).
    pub attributes: Vec<(String, String)>,
    pub children: Vec<SsmlNode>,
}

/// The SSML elements TwiML allows inside `<Say>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsmlKind {
    Break,
    Emphasis,
    Lang,
    P,
    Phoneme,
    Prosody,
    S,
    SayAs,
    Sub,
    W,
}

impl SsmlKind {
    pub fn tag(self) -> &'static str {
        match self {
            SsmlKind::Break => "break",
            SsmlKind::Emphasis => "emphasis",
            SsmlKind::Lang => "lang",
            SsmlKind::P => "p",
            SsmlKind::Phoneme => "phoneme",
            SsmlKind::Prosody => "prosody",
            SsmlKind::S => "s",
            SsmlKind::SayAs => "say-as",
            SsmlKind::Sub => "sub",
            SsmlKind::W => "w",
        }
    }
}

/// `<Play>`: an audio file, or DTMF tones with `digits`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Play {
    /// `loop`: 0 means repeat (Twilio caps this at 1000 iterations) until the call ends.
    pub loops: u32,
    /// `digits`: DTMF to send (`0-9`, `*`, `#`, `w` = 0.5 s pause).
    pub digits: Option<String>,
    /// The body: the audio URL (may be relative).
    pub url: Option<String>,
}

/// `<Pause>`: silence.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    /// `length` in seconds (default 1).
    pub length: u32,
}

/// What `<Gather input>` listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatherInput {
    pub dtmf: bool,
    pub speech: bool,
}

/// `speechTimeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechTimeout {
    Seconds(u32),
    Auto,
}

/// A prompt nested in `<Gather>` or `<Prompt>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Say(Say),
    Play(Play),
    Pause(Pause),
}

/// `<Gather>`: collect DTMF (and, on Twilio, speech) while playing nested prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct Gather {
    /// `action`; `None` means the URL of the current document.
    pub action: Option<String>,
    pub method: HttpMethod,
    pub input: GatherInput,
    /// `timeout` in seconds (default 5): silence after the prompts, and between digits.
    pub timeout: u32,
    /// `finishOnKey`: `None` when set to `""` (disabled); default `#`.
    pub finish_on_key: Option<char>,
    /// `numDigits`: `None` means unlimited.
    pub num_digits: Option<u32>,
    pub speech_timeout: Option<SpeechTimeout>,
    pub max_speech_time: u32,
    pub language: Option<String>,
    pub hints: Option<String>,
    pub profanity_filter: bool,
    pub barge_in: bool,
    pub partial_result_callback: Option<String>,
    pub partial_result_callback_method: HttpMethod,
    pub action_on_empty_result: bool,
    pub speech_model: Option<String>,
    pub enhanced: bool,
    pub debug: bool,
    /// Dialtone extension `minDigits`: a submission with fewer digits counts as no input.
    pub min_digits: Option<u32>,
    /// Dialtone extension `maxDigits`: input ends once this many digits arrived (like
    /// `numDigits`, which wins when both are set).
    pub max_digits: Option<u32>,
    /// Dialtone extension `validDigits`: keys outside this set are ignored.
    pub valid_digits: Option<String>,
    /// Dialtone extension `interDigitTimeout` (seconds): the wait after each digit,
    /// instead of `timeout`.
    pub inter_digit_timeout: Option<u32>,
    pub prompts: Vec<Located<Prompt>>,
}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            action: None,
            method: HttpMethod::Post,
            input: GatherInput {
                dtmf: true,
                speech: false,
            },
            timeout: 5,
            finish_on_key: Some('#'),
            num_digits: None,
            speech_timeout: None,
            max_speech_time: 60,
            language: None,
            hints: None,
            profanity_filter: true,
            barge_in: true,
            partial_result_callback: None,
            partial_result_callback_method: HttpMethod::Post,
            action_on_empty_result: false,
            speech_model: None,
            enhanced: false,
            debug: false,
            min_digits: None,
            max_digits: None,
            valid_digits: None,
            inter_digit_timeout: None,
            prompts: Vec::new(),
        }
    }
}

/// `trim` of `<Record>`, `<Dial>`, `<Conference>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    TrimSilence,
    DoNotTrim,
}

/// `<Record>`: record the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `action`; `None` means the URL of the current document.
    pub action: Option<String>,
    pub method: HttpMethod,
    /// `timeout`: seconds of silence that end the recording (default 5; 0 disables).
    pub timeout: u32,
    /// `finishOnKey`: any of these keys ends the recording (default `1234567890*#`).
    pub finish_on_key: String,
    /// `maxLength` in seconds (default 3600).
    pub max_length: u32,
    pub play_beep: bool,
    pub trim: Trim,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: HttpMethod,
    /// Subset of `in-progress completed absent` (default `completed`).
    pub recording_status_callback_event: Vec<String>,
    pub transcribe: bool,
    pub transcribe_callback: Option<String>,
    pub recording_configuration_id: Option<String>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            action: None,
            method: HttpMethod::Post,
            timeout: 5,
            finish_on_key: "1234567890*#".to_owned(),
            max_length: 3600,
            play_beep: true,
            trim: Trim::TrimSilence,
            recording_status_callback: None,
            recording_status_callback_method: HttpMethod::Post,
            recording_status_callback_event: vec!["completed".to_owned()],
            transcribe: false,
            transcribe_callback: None,
            recording_configuration_id: None,
        }
    }
}

/// `record` of `<Dial>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialRecord {
    DoNotRecord,
    RecordFromAnswer,
    RecordFromRinging,
    RecordFromAnswerDual,
    RecordFromRingingDual,
}

/// `recordingTrack` of `<Dial>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingTrack {
    Inbound,
    Outbound,
    Both,
}

impl RecordingTrack {
    /// Twilio's name (`RecordingTrack` of recording status callbacks).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingTrack::Inbound => "inbound",
            RecordingTrack::Outbound => "outbound",
            RecordingTrack::Both => "both",
        }
    }
}

/// `<Dial>`: call another party and bridge.
#[derive(Debug, Clone, PartialEq)]
pub struct Dial {
    /// `action`; `None` means: no request, continue with the next verb.
    pub action: Option<String>,
    pub method: HttpMethod,
    /// `timeout`: seconds of ringing (default 30).
    pub timeout: u32,
    pub hangup_on_star: bool,
    /// `timeLimit` in seconds (default 14400).
    pub time_limit: u32,
    pub caller_id: Option<String>,
    pub record: DialRecord,
    /// `trim`; `None` means the platform default (Twilio's docs disagree on it).
    pub trim: Option<Trim>,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: HttpMethod,
    pub recording_status_callback_event: Vec<String>,
    pub recording_track: RecordingTrack,
    pub answer_on_bridge: bool,
    pub ring_tone: Option<String>,
    pub call_reason: Option<String>,
    /// `sequential`: ring the nouns one after another instead of all at once.
    pub sequential: bool,
    pub refer_url: Option<String>,
    pub refer_method: HttpMethod,
    pub recording_configuration_id: Option<String>,
    pub events: Option<String>,
    pub passports: Option<String>,
    /// The parties to ring. A bare number in the body becomes one `Number`.
    pub targets: Vec<Located<DialTarget>>,
}

impl Default for Dial {
    fn default() -> Self {
        Dial {
            action: None,
            method: HttpMethod::Post,
            timeout: 30,
            hangup_on_star: false,
            time_limit: 14400,
            caller_id: None,
            record: DialRecord::DoNotRecord,
            trim: None,
            recording_status_callback: None,
            recording_status_callback_method: HttpMethod::Post,
            recording_status_callback_event: vec!["completed".to_owned()],
            recording_track: RecordingTrack::Both,
            answer_on_bridge: false,
            ring_tone: None,
            call_reason: None,
            sequential: false,
            refer_url: None,
            refer_method: HttpMethod::Post,
            recording_configuration_id: None,
            events: None,
            passports: None,
            targets: Vec::new(),
        }
    }
}

/// A party `<Dial>` rings.
#[derive(Debug, Clone, PartialEq)]
pub enum DialTarget {
    Number(DialNumber),
    Sip(DialSip),
    Client(DialClient),
    Conference(DialConference),
    Queue(DialQueue),
    Application(DialApplication),
    Sim(String),
    WhatsApp(DialWhatsApp),
}

/// Callback attributes shared by the leg nouns (`url`, `method`, `statusCallback…`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegCallbacks {
    /// `url`: TwiML run on the callee after answer, before bridging.
    pub url: Option<String>,
    pub method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    /// Subset of `initiated ringing answered completed` (default `completed`).
    pub status_callback_event: Vec<String>,
}

impl Default for LegCallbacks {
    fn default() -> Self {
        LegCallbacks {
            url: None,
            method: HttpMethod::Post,
            status_callback: None,
            status_callback_method: HttpMethod::Post,
            status_callback_event: vec!["completed".to_owned()],
        }
    }
}

/// Answering-machine detection attributes of `<Number>` and `<Sip>`.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineDetection {
    /// `machineDetection`: `Enable` or `DetectMessageEnd`; `None` when off.
    pub mode: Option<String>,
    pub timeout: u32,
    pub speech_threshold: u32,
    pub speech_end_threshold: u32,
    pub silence_timeout: u32,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
}

impl Default for MachineDetection {
    fn default() -> Self {
        MachineDetection {
            mode: None,
            timeout: 30,
            speech_threshold: 2400,
            speech_end_threshold: 1200,
            silence_timeout: 5000,
            status_callback: None,
            status_callback_method: HttpMethod::Post,
        }
    }
}

/// `<Number>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialNumber {
    pub number: String,
    pub send_digits: Option<String>,
    pub byoc: Option<String>,
    pub callbacks: LegCallbacks,
    pub machine_detection: MachineDetection,
}

/// `<Uri>` inside `<Sip>` (failover targets).
#[derive(Debug, Clone, PartialEq)]
pub struct SipUri {
    pub uri: String,
    pub priority: Option<u32>,
    pub weight: Option<u32>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `<Sip>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialSip {
    pub uri: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub callbacks: LegCallbacks,
    pub machine_detection: MachineDetection,
    pub uris: Vec<SipUri>,
    /// `<Headers><Header name value/></Headers>`.
    pub headers: Vec<(String, String)>,
}

/// `<Parameter name value/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub value: String,
}

/// `<Client>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialClient {
    pub identity: String,
    pub callbacks: LegCallbacks,
    pub parameters: Vec<Parameter>,
}

/// `<Conference>`.
#[derive(Debug, Clone, PartialEq)]
pub struct DialConference {
    pub name: String,
    pub muted: bool,
    /// `beep`: `true`, `false`, `onEnter`, `onExit`.
    pub beep: String,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    /// `waitUrl`: `None` = platform hold music, `Some("")` = silence.
    pub wait_url: Option<String>,
    pub wait_method: HttpMethod,
    pub max_participants: u32,
    /// `record`: `do-not-record` or `record-from-start`.
    pub record: String,
    pub region: Option<String>,
    pub coach: Option<String>,
    pub trim: Trim,
    pub status_callback_event: Vec<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: HttpMethod,
    pub recording_status_callback_event: Vec<String>,
    pub event_callback_url: Option<String>,
    pub jitter_buffer_size: String,
    pub participant_label: Option<String>,
    pub recording_configuration_id: Option<String>,
}

impl Default for DialConference {
    fn default() -> Self {
        DialConference {
            name: String::new(),
            muted: false,
            beep: "true".to_owned(),
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            wait_url: None,
            wait_method: HttpMethod::Post,
            max_participants: 250,
            record: "do-not-record".to_owned(),
            region: None,
            coach: None,
            trim: Trim::TrimSilence,
            status_callback_event: Vec::new(),
            status_callback: None,
            status_callback_method: HttpMethod::Post,
            recording_status_callback: None,
            recording_status_callback_method: HttpMethod::Post,
            recording_status_callback_event: vec!["completed".to_owned()],
            event_callback_url: None,
            jitter_buffer_size: "large".to_owned(),
            participant_label: None,
            recording_configuration_id: None,
        }
    }
}

/// `<Queue>` inside `<Dial>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialQueue {
    pub name: String,
    pub url: Option<String>,
    pub method: HttpMethod,
    pub reservation_sid: Option<String>,
    pub post_work_activity_sid: Option<String>,
}

/// `<Application>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialApplication {
    pub application_sid: String,
    pub callbacks: LegCallbacks,
    pub customer_id: Option<String>,
    pub copy_parent_to: bool,
    pub parameters: Vec<Parameter>,
}

/// `<WhatsApp>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialWhatsApp {
    pub number: String,
    pub callbacks: LegCallbacks,
}

/// `<Hangup>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hangup {
    pub parameters: Vec<Parameter>,
}

/// `reason` of `<Reject>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RejectReason {
    #[default]
    Rejected,
    Busy,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Rejected => "rejected",
            RejectReason::Busy => "busy",
        }
    }

    /// The SIP final response that signals it: 603 Decline or 486 Busy Here.
    pub fn sip_code(self) -> u16 {
        match self {
            RejectReason::Rejected => 603,
            RejectReason::Busy => 486,
        }
    }
}

/// `<Reject>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reject {
    pub reason: RejectReason,
    pub parameters: Vec<Parameter>,
}

/// `<Redirect>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redirect {
    pub url: String,
    pub method: HttpMethod,
}

/// `<Task>` inside `<Enqueue>` (TaskRouter).
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueTask {
    pub attributes_json: String,
    pub priority: Option<u32>,
    pub timeout: Option<u32>,
}

/// `<Enqueue>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Enqueue {
    pub queue_name: String,
    pub action: Option<String>,
    pub method: HttpMethod,
    /// `waitUrl`: `None` = platform hold music.
    pub wait_url: Option<String>,
    pub wait_url_method: HttpMethod,
    pub max_queue_size: Option<u32>,
    pub workflow_sid: Option<String>,
    pub task: Option<EnqueueTask>,
}

/// `<Refer>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Refer {
    pub action: Option<String>,
    pub method: HttpMethod,
    /// The `<Sip>` target URI.
    pub target: Option<String>,
}

/// A noun of `<Connect>`, `<Start>` or `<Stop>` (`<Stream>`, `<ConversationRelay>`, …),
/// or one of their children (`<Parameter>`, `<Language>`, `<Config>`). Kept generic: its
/// attributes were checked against Twilio's list (unknown ones warned about) and are kept
/// as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Noun {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    /// Text body, if any (e.g. the room name of `<Room>`).
    pub text: Option<String>,
    pub children: Vec<Noun>,
    pub position: Position,
}

impl Noun {
    /// The value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `<Connect>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connect {
    pub action: Option<String>,
    pub method: HttpMethod,
    pub nouns: Vec<Noun>,
}

/// `<Start>` (non-blocking media forks).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Start {
    pub action: Option<String>,
    pub method: HttpMethod,
    pub nouns: Vec<Noun>,
}

/// `<Stop>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stop {
    pub nouns: Vec<Noun>,
}

/// `<Prompt>` inside `<Pay>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PayPrompt {
    /// `for`: which step this prompt is for.
    pub for_step: Option<String>,
    /// `errorType`: space-separated error kinds.
    pub error_type: Vec<String>,
    pub card_type: Vec<String>,
    pub attempt: Vec<u32>,
    pub require_matching_inputs: bool,
    pub prompts: Vec<Located<Prompt>>,
}

/// `<Pay>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pay {
    pub input: String,
    pub action: Option<String>,
    pub bank_account_type: String,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub timeout: u32,
    pub max_attempts: u32,
    pub security_code: bool,
    /// `postalCode`: `true`, `false`, or a fixed postal code.
    pub postal_code: String,
    pub min_postal_code_length: Option<u32>,
    pub payment_connector: String,
    pub payment_method: String,
    pub token_type: String,
    pub charge_amount: Option<String>,
    pub currency: String,
    pub description: Option<String>,
    pub valid_card_types: Vec<String>,
    pub language: Option<String>,
    pub prompts: Vec<PayPrompt>,
    pub parameters: Vec<Parameter>,
}

impl Default for Pay {
    fn default() -> Self {
        Pay {
            input: "dtmf".to_owned(),
            action: None,
            bank_account_type: "consumer-checking".to_owned(),
            status_callback: None,
            status_callback_method: HttpMethod::Post,
            timeout: 5,
            max_attempts: 1,
            security_code: true,
            postal_code: "true".to_owned(),
            min_postal_code_length: None,
            payment_connector: "Default".to_owned(),
            payment_method: "credit-card".to_owned(),
            token_type: "reusable".to_owned(),
            charge_amount: None,
            currency: "usd".to_owned(),
            description: None,
            valid_card_types: vec![
                "visa".to_owned(),
                "mastercard".to_owned(),
                "amex".to_owned(),
            ],
            language: None,
            prompts: Vec::new(),
            parameters: Vec::new(),
        }
    }
}

/// `<Sms>` (legacy).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sms {
    pub to: Option<String>,
    pub from: Option<String>,
    pub action: Option<String>,
    pub method: HttpMethod,
    pub status_callback: Option<String>,
    pub body: String,
}

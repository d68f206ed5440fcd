//! The TwiML parser: quick-xml events → a small element tree → typed verbs.
//!
//! Two passes keep each simple: the first checks XML well-formedness and records positions;
//! the second knows TwiML's schema and turns problems into warnings.

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use quick_xml::XmlVersion;

use dialtone_events::payload::HttpMethod;

use super::*;

/// Parser settings.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Deeper nesting is rejected (12100), so a hostile document cannot exhaust the stack.
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { max_depth: 64 }
    }
}

/// Parses a TwiML document with default options.
///
/// Returns an error (Twilio 12100) when the document is not well-formed XML or its root is
/// not `<Response>`; schema problems are [`Document::warnings`].
pub fn parse(source: &str) -> Result<Document, ParseError> {
    ParseOptions::default().parse(source)
}

impl ParseOptions {
    /// Parses a TwiML document.
    pub fn parse(&self, source: &str) -> Result<Document, ParseError> {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        let lines = LineIndex::new(source);
        let root = read_tree(source, &lines, self.max_depth)?;
        if root.name != "Response" {
            return Err(ParseError::WrongRoot {
                found: root.name,
                position: root.position,
            });
        }
        let mut schema = Schema {
            warnings: Vec::new(),
        };
        let verbs = schema.response(root)?;
        Ok(Document {
            verbs,
            warnings: schema.warnings,
        })
    }
}

// ---------------------------------------------------------------------------------------
// pass 1: XML → element tree

/// Maps byte offsets to line and column.
struct LineIndex<'a> {
    source: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { source, starts }
    }

    fn position(&self, offset: u64) -> Position {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.source.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts[line.saturating_sub(1)];
        // Count characters, not bytes; an offset inside a character counts that character.
        let column = self
            .source
            .get(line_start..offset)
            .map(|s| s.chars().count())
            .unwrap_or_else(|| offset - line_start);
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }
}

#[derive(Debug)]
struct RawAttribute {
    name: String,
    value: String,
}

#[derive(Debug)]
struct RawElement {
    name: String,
    attributes: Vec<RawAttribute>,
    children: Vec<RawNode>,
    position: Position,
}

#[derive(Debug)]
enum RawNode {
    Element(RawElement),
    Text(RawText),
}

#[derive(Debug)]
struct RawText {
    text: String,
    position: Position,
    /// The first thing only a lenient reader accepts in this text (a bare `&` or an unknown
    /// entity), with its position. Fine in `<Say>` (with a warning), an error elsewhere.
    lenient_issue: Option<(Position, String)>,
}

impl RawText {
    fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// The text, or the 12100 error if it needed leniency.
    fn strict(self) -> Result<String, ParseError> {
        match self.lenient_issue {
            Some((position, message)) => Err(ParseError::Malformed { position, message }),
            None => Ok(self.text),
        }
    }
}

fn malformed(lines: &LineIndex<'_>, offset: u64, message: impl Into<String>) -> ParseError {
    ParseError::Malformed {
        position: lines.position(offset),
        message: message.into(),
    }
}

fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

fn read_tree(
    source: &str,
    lines: &LineIndex<'_>,
    max_depth: usize,
) -> Result<RawElement, ParseError> {
    let mut reader = Reader::from_str(source);
    // Bare `&` is accepted here and judged in pass 2, where we know if we are in <Say>.
    reader.config_mut().allow_dangling_amp = true;
    let mut stack: Vec<RawElement> = Vec::new();
    let mut root: Option<RawElement> = None;
    // Text is accumulated across Text / GeneralRef / CData events until the next tag.
    let mut text: Option<RawText> = None;

    loop {
        let start = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(error) => {
                return Err(malformed(lines, reader.error_position(), error.to_string()));
            }
        };
        let (piece, issue): (Option<String>, Option<String>) = match &event {
            Event::Text(t) => {
                let content = t.xml10_content().into_owned();
                let issue = content
                    .contains('&')
                    .then(|| "unescaped '&' (write it as &amp;)".to_owned());
                (Some(content), issue)
            }
            Event::CData(c) => (Some(c.xml10_content().into_owned()), None),
            Event::GeneralRef(r) => {
                let name: &str = r;
                match r.resolve_char_ref() {
                    Ok(Some(c)) => (Some(c.to_string()), None),
                    Ok(None) => match predefined_entity(name) {
                        Some(c) => (Some(c.to_string()), None),
                        None => (
                            Some(format!("&{name};")),
                            Some(format!("undefined entity &{name};")),
                        ),
                    },
                    Err(error) => {
                        return Err(malformed(lines, start, error.to_string()));
                    }
                }
            }
            _ => (None, None),
        };
        if let Some(piece) = piece {
            let position = lines.position(start);
            let entry = text.get_or_insert_with(|| RawText {
                text: String::new(),
                position,
                lenient_issue: None,
            });
            entry.text.push_str(&piece);
            if entry.lenient_issue.is_none() {
                entry.lenient_issue = issue.map(|message| (position, message));
            }
            continue;
        }
        // Any other event ends the current text run.
        if let Some(done) = text.take() {
            match stack.last_mut() {
                Some(parent) => parent.children.push(RawNode::Text(done)),
                None if done.is_blank() && done.lenient_issue.is_none() => {}
                None => {
                    return Err(ParseError::Malformed {
                        position: done.position,
                        message: "text outside the root element".to_owned(),
                    });
                }
            }
        }
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return Err(malformed(
                        lines,
                        start,
                        "a second root element after </Response>",
                    ));
                }
                if stack.len() >= max_depth {
                    return Err(malformed(
                        lines,
                        start,
                        format!("elements are nested more than {max_depth} deep"),
                    ));
                }
                let name = e.name().into_inner().to_owned();
                let mut attributes = Vec::new();
                for attribute in e.attributes() {
                    let attribute =
                        attribute.map_err(|error| malformed(lines, start, error.to_string()))?;
                    let value = attribute
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|error| {
                            malformed(
                                lines,
                                start,
                                format!("attribute {}: {error}", attribute.key.into_inner()),
                            )
                        })?;
                    attributes.push(RawAttribute {
                        name: attribute.key.into_inner().to_owned(),
                        value: value.into_owned(),
                    });
                }
                let element = RawElement {
                    name,
                    attributes,
                    children: Vec::new(),
                    position: lines.position(start),
                };
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(RawNode::Element(element)),
                        None => root = Some(element),
                    }
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches its start tag.
                let Some(element) = stack.pop() else {
                    return Err(malformed(lines, start, "unexpected end tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(RawNode::Element(element)),
                    None => root = Some(element),
                }
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(malformed(
                        lines,
                        source.len() as u64,
                        format!("<{}> is never closed", open.name),
                    ));
                }
                return root.ok_or(ParseError::Empty);
            }
            // Declarations, comments, processing instructions and DOCTYPE carry no TwiML.
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// pass 2: element tree → typed verbs

struct Schema {
    warnings: Vec<Warning>,
}

/// The attributes of one element, taken one by one; what is left is unknown.
struct Attributes<'w> {
    element: String,
    position: Position,
    list: Vec<(RawAttribute, bool)>,
    warnings: &'w mut Vec<Warning>,
}

impl<'w> Attributes<'w> {
    fn new(raw: &mut RawElement, warnings: &'w mut Vec<Warning>) -> Self {
        Attributes {
            element: raw.name.clone(),
            position: raw.position,
            list: std::mem::take(&mut raw.attributes)
                .into_iter()
                .map(|a| (a, false))
                .collect(),
            warnings,
        }
    }

    fn warn(&mut self, code: u32, message: String) {
        self.warnings.push(Warning {
            code,
            element: self.element.clone(),
            position: self.position,
            message,
        });
    }

    /// The raw value of `name`, marking it as known.
    fn take(&mut self, name: &str) -> Option<String> {
        let mut found = None;
        for (attribute, used) in &mut self.list {
            if attribute.name == name && !*used {
                *used = true;
                if found.is_none() {
                    found = Some(attribute.value.clone());
                }
            }
        }
        found
    }

    /// A string attribute; empty counts as absent.
    fn string(&mut self, name: &str) -> Option<String> {
        self.take(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A string attribute where an empty value means something (kept as `Some("")`).
    fn string_keep_empty(&mut self, name: &str) -> Option<String> {
        self.take(name).map(|v| v.trim().to_owned())
    }

    fn method(&mut self, name: &str) -> HttpMethod {
        match self.take(name) {
            None => HttpMethod::Post,
            Some(value) => match HttpMethod::parse(value.trim()) {
                Some(method) => method,
                None => {
                    self.warn(
                        SCHEMA_WARNING,
                        format!("{name}={value:?} is not GET or POST; using POST"),
                    );
                    HttpMethod::Post
                }
            },
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.take(name) {
            None => default,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    self.warn(
                        SCHEMA_WARNING,
                        format!("{name}={value:?} is not true or false; using {default}"),
                    );
                    default
                }
            },
        }
    }

    /// An integer in `min..=max`, or `None` when absent or invalid (with a warning).
    fn opt_uint(&mut self, name: &str, min: u32, max: u32, code: u32) -> Option<u32> {
        let value = self.take(name)?;
        match value.trim().parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.warn(
                    code,
                    format!("{name}={value:?} is not an integer from {min} to {max}; ignored"),
                );
                None
            }
        }
    }

    fn uint(&mut self, name: &str, default: u32, min: u32, max: u32, code: u32) -> u32 {
        self.opt_uint(name, min, max, code).unwrap_or(default)
    }

    /// One of `choices`, compared exactly (Twilio's enum values are case-sensitive).
    fn choice(&mut self, name: &str, choices: &[&str], default: &str) -> String {
        match self.take(name) {
            None => default.to_owned(),
            Some(value) => {
                let trimmed = value.trim();
                if choices.contains(&trimmed) {
                    trimmed.to_owned()
                } else {
                    self.warn(
                        SCHEMA_WARNING,
                        format!(
                            "{name}={value:?} is not one of {}; using {default:?}",
                            choices.join(", ")
                        ),
                    );
                    default.to_owned()
                }
            }
        }
    }

    fn opt_choice(&mut self, name: &str, choices: &[&str]) -> Option<String> {
        let value = self.take(name)?;
        let trimmed = value.trim();
        if choices.contains(&trimmed) {
            Some(trimmed.to_owned())
        } else {
            self.warn(
                SCHEMA_WARNING,
                format!(
                    "{name}={value:?} is not one of {}; ignored",
                    choices.join(", ")
                ),
            );
            None
        }
    }

    /// A space-separated subset of `choices` (unknown items dropped with a warning).
    fn word_set(&mut self, name: &str, choices: &[&str], default: &[&str]) -> Vec<String> {
        let Some(value) = self.take(name) else {
            return default.iter().map(|s| (*s).to_owned()).collect();
        };
        let mut out: Vec<String> = Vec::new();
        for word in value.split(|c: char| c.is_whitespace() || c == ',') {
            if word.is_empty() {
                continue;
            }
            if choices.contains(&word) {
                if !out.iter().any(|w| w == word) {
                    out.push(word.to_owned());
                }
            } else {
                self.warn(
                    SCHEMA_WARNING,
                    format!(
                        "{name}: {word:?} is not one of {}; ignored",
                        choices.join(", ")
                    ),
                );
            }
        }
        out
    }

    fn trim(&mut self, default: Trim) -> Trim {
        let default_name = match default {
            Trim::TrimSilence => "trim-silence",
            Trim::DoNotTrim => "do-not-trim",
        };
        match self
            .choice("trim", &["trim-silence", "do-not-trim"], default_name)
            .as_str()
        {
            "do-not-trim" => Trim::DoNotTrim,
            _ => Trim::TrimSilence,
        }
    }

    /// All of `names` that are present, as written.
    fn known(&mut self, names: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (attribute, used) in &mut self.list {
            if !*used && names.contains(&attribute.name.as_str()) {
                *used = true;
                out.push((attribute.name.clone(), attribute.value.clone()));
            }
        }
        out
    }

    /// Warns about every attribute nobody took.
    fn finish(self) {
        let unknown: Vec<String> = self
            .list
            .iter()
            .filter(|(_, used)| !used)
            .map(|(a, _)| a.name.clone())
            .collect();
        for name in unknown {
            self.warnings.push(Warning {
                code: SCHEMA_WARNING,
                element: self.element.clone(),
                position: self.position,
                message: format!("unknown attribute {name:?} ignored"),
            });
        }
    }
}

const LEG_EVENTS: &[&str] = &["initiated", "ringing", "answered", "completed"];
const RECORDING_EVENTS: &[&str] = &["in-progress", "completed", "absent"];
const DTMF_KEYS: &str = "0123456789*#";

impl Schema {
    fn warn(&mut self, code: u32, element: &str, position: Position, message: impl Into<String>) {
        self.warnings.push(Warning {
            code,
            element: element.to_owned(),
            position,
            message: message.into(),
        });
    }

    fn response(&mut self, mut root: RawElement) -> Result<Vec<Located<Verb>>, ParseError> {
        Attributes::new(&mut root, &mut self.warnings).finish();
        let mut verbs = Vec::new();
        for child in root.children {
            match child {
                RawNode::Text(text) => {
                    let position = text.position;
                    if !text.strict()?.trim().is_empty() {
                        self.warn(
                            SCHEMA_WARNING,
                            "Response",
                            position,
                            "text directly inside <Response> is ignored",
                        );
                    }
                }
                RawNode::Element(element) => {
                    let position = element.position;
                    if let Some(verb) = self.verb(element)? {
                        verbs.push(Located {
                            position,
                            value: verb,
                        });
                    }
                }
            }
        }
        Ok(verbs)
    }

    fn verb(&mut self, mut e: RawElement) -> Result<Option<Verb>, ParseError> {
        let verb = match e.name.as_str() {
            "Say" => Verb::Say(self.say(e)?),
            "Play" => Verb::Play(self.play(e)?),
            "Pause" => Verb::Pause(self.pause(e)?),
            "Gather" => Verb::Gather(self.gather(e)?),
            "Record" => Verb::Record(self.record(e)?),
            "Dial" => Verb::Dial(self.dial(e)?),
            "Hangup" => {
                Attributes::new(&mut e, &mut self.warnings).finish();
                Verb::Hangup(Hangup {
                    parameters: self.parameters_only(e)?,
                })
            }
            "Reject" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let reason = match a
                    .choice("reason", &["rejected", "busy"], "rejected")
                    .as_str()
                {
                    "busy" => RejectReason::Busy,
                    _ => RejectReason::Rejected,
                };
                a.finish();
                Verb::Reject(Reject {
                    reason,
                    parameters: self.parameters_only(e)?,
                })
            }
            "Redirect" => {
                let position = e.position;
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let method = a.method("method");
                a.finish();
                let url = self.text_only(e)?;
                if url.is_empty() {
                    self.warn(
                        SCHEMA_WARNING,
                        "Redirect",
                        position,
                        "<Redirect> has no URL; skipped",
                    );
                    return Ok(None);
                }
                Verb::Redirect(Redirect { url, method })
            }
            "Enqueue" => Verb::Enqueue(self.enqueue(e)?),
            "Leave" => {
                Attributes::new(&mut e, &mut self.warnings).finish();
                self.no_children(e)?;
                Verb::Leave
            }
            "Refer" => Verb::Refer(self.refer(e)?),
            "Connect" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let action = a.string("action");
                let method = a.method("method");
                a.finish();
                Verb::Connect(Connect {
                    action,
                    method,
                    nouns: self.nouns(e, CONNECT_NOUNS)?,
                })
            }
            "Start" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let action = a.string("action");
                let method = a.method("method");
                a.finish();
                Verb::Start(Start {
                    action,
                    method,
                    nouns: self.nouns(e, START_NOUNS)?,
                })
            }
            "Stop" => {
                Attributes::new(&mut e, &mut self.warnings).finish();
                Verb::Stop(Stop {
                    nouns: self.nouns(e, STOP_NOUNS)?,
                })
            }
            "Pay" => Verb::Pay(self.pay(e)?),
            "Sms" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let to = a.string("to");
                let from = a.string("from");
                let action = a.string("action");
                let method = a.method("method");
                let status_callback = a.string("statusCallback");
                a.finish();
                Verb::Sms(Sms {
                    to,
                    from,
                    action,
                    method,
                    status_callback,
                    body: self.text_only(e)?,
                })
            }
            "Echo" => {
                Attributes::new(&mut e, &mut self.warnings).finish();
                self.no_children(e)?;
                Verb::Echo
            }
            other => {
                let message = format!("unknown verb <{other}> skipped");
                self.warn(SCHEMA_WARNING, other, e.position, message);
                // Still reject malformed text inside it: only <Say> gets leniency.
                self.check_strict_texts(e)?;
                return Ok(None);
            }
        };
        Ok(Some(verb))
    }

    /// Fails (12100) on any text below `e` that needed leniency.
    fn check_strict_texts(&mut self, e: RawElement) -> Result<(), ParseError> {
        for child in e.children {
            match child {
                RawNode::Text(text) => {
                    text.strict()?;
                }
                RawNode::Element(element) => self.check_strict_texts(element)?,
            }
        }
        Ok(())
    }

    /// The trimmed text body of an element that takes no child elements.
    fn text_only(&mut self, e: RawElement) -> Result<String, ParseError> {
        let mut out = String::new();
        for child in e.children {
            match child {
                RawNode::Text(text) => out.push_str(&text.strict()?),
                RawNode::Element(child) => {
                    let message =
                        format!("<{}> is not allowed in <{}>; ignored", child.name, e.name);
                    self.warn(SCHEMA_WARNING, &e.name, child.position, message);
                    self.check_strict_texts(child)?;
                }
            }
        }
        Ok(out.trim().to_owned())
    }

    fn no_children(&mut self, e: RawElement) -> Result<(), ParseError> {
        let name = e.name.clone();
        let position = e.position;
        if !self.text_only(e)?.is_empty() {
            self.warn(
                SCHEMA_WARNING,
                &name,
                position,
                format!("<{name}> takes no text; ignored"),
            );
        }
        Ok(())
    }

    /// `<Parameter name value/>` children; anything else is warned about.
    fn parameters_only(&mut self, e: RawElement) -> Result<Vec<Parameter>, ParseError> {
        let mut out = Vec::new();
        for child in e.children {
            match child {
                RawNode::Text(text) => {
                    let position = text.position;
                    if !text.strict()?.trim().is_empty() {
                        self.warn(
                            SCHEMA_WARNING,
                            &e.name,
                            position,
                            format!("<{}> takes no text; ignored", e.name),
                        );
                    }
                }
                RawNode::Element(child) if child.name == "Parameter" => {
                    if let Some(p) = self.parameter(child)? {
                        out.push(p);
                    }
                }
                RawNode::Element(child) => {
                    let message =
                        format!("<{}> is not allowed in <{}>; ignored", child.name, e.name);
                    self.warn(SCHEMA_WARNING, &e.name, child.position, message);
                    self.check_strict_texts(child)?;
                }
            }
        }
        Ok(out)
    }

    fn parameter(&mut self, mut e: RawElement) -> Result<Option<Parameter>, ParseError> {
        let position = e.position;
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let name = a.string("name");
        let value = a.take("value").unwrap_or_default();
        a.finish();
        self.no_children(e)?;
        match name {
            Some(name) => Ok(Some(Parameter { name, value })),
            None => {
                self.warn(
                    SCHEMA_WARNING,
                    "Parameter",
                    position,
                    "<Parameter> without a name; ignored",
                );
                Ok(None)
            }
        }
    }

    // --- Say and SSML -----------------------------------------------------------------

    fn say(&mut self, mut e: RawElement) -> Result<Say, ParseError> {
        let position = e.position;
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let voice = a.string("voice");
        let language = a.string("language");
        let loops = a.uint("loop", 1, 0, u32::MAX, SCHEMA_WARNING);
        a.finish();
        let content = self.ssml_children(e.children, "Say")?;
        let say = Say {
            voice,
            language,
            loops,
            content,
        };
        let length = say.text().chars().count();
        if length > 4096 {
            self.warn(
                SCHEMA_WARNING,
                "Say",
                position,
                format!("text is {length} characters; Twilio's limit is 4096"),
            );
        }
        Ok(say)
    }

    fn ssml_children(
        &mut self,
        children: Vec<RawNode>,
        parent: &str,
    ) -> Result<Vec<SsmlNode>, ParseError> {
        let mut out = Vec::new();
        for child in children {
            match child {
                RawNode::Text(text) => {
                    if let Some((position, message)) = &text.lenient_issue {
                        let message = format!("{message}; kept as literal text");
                        self.warn(SCHEMA_WARNING, "Say", *position, message);
                    }
                    out.push(SsmlNode::Text(text.text));
                }
                RawNode::Element(element) => {
                    if let Some(node) = self.ssml_element(element, parent)? {
                        out.push(node);
                    }
                }
            }
        }
        Ok(out)
    }

    fn ssml_element(
        &mut self,
        mut e: RawElement,
        parent: &str,
    ) -> Result<Option<SsmlNode>, ParseError> {
        let kind = match e.name.as_str() {
            "break" => SsmlKind::Break,
            "emphasis" => SsmlKind::Emphasis,
            "lang" => SsmlKind::Lang,
            "p" => SsmlKind::P,
            "phoneme" => SsmlKind::Phoneme,
            "prosody" => SsmlKind::Prosody,
            "s" => SsmlKind::S,
            "say-as" => SsmlKind::SayAs,
            "sub" => SsmlKind::Sub,
            "w" => SsmlKind::W,
            other => {
                let message = format!("<{other}> is not allowed in <{parent}>; its text is kept");
                self.warn(SCHEMA_WARNING, parent, e.position, message);
                // Keep the words: dropping speech silently would be worse than odd markup.
                let children = self.ssml_children(e.children, parent)?;
                return Ok(Some(SsmlNode::Element(SsmlElement {
                    kind: SsmlKind::S,
                    attributes: Vec::new(),
                    children,
                })));
            }
        };
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let mut attributes = Vec::new();
        let mut keep = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                attributes.push((name.to_owned(), value));
            }
        };
        match kind {
            SsmlKind::Break => {
                let strength = a.opt_choice(
                    "strength",
                    &["none", "x-weak", "weak", "medium", "strong", "x-strong"],
                );
                keep("strength", strength);
                let time = a.take("time");
                let time = match time {
                    Some(t) if valid_break_time(&t) => Some(t),
                    Some(t) => {
                        a.warn(
                            SCHEMA_WARNING,
                            format!("time={t:?} should be like 2s or 500ms; ignored"),
                        );
                        None
                    }
                    None => None,
                };
                keep("time", time);
            }
            SsmlKind::Emphasis => {
                let level = a.opt_choice("level", &["strong", "moderate", "reduced"]);
                keep("level", level);
            }
            SsmlKind::Lang => {
                let lang = a.string("xml:lang");
                keep("xml:lang", lang);
            }
            SsmlKind::P | SsmlKind::S => {}
            SsmlKind::Phoneme => {
                let alphabet = a.opt_choice(
                    "alphabet",
                    &[
                        "ipa",
                        "x-sampa",
                        "x-amazon-jyutping",
                        "x-amazon-pinyin",
                        "x-amazon-pron-kana",
                        "x-amazon-yomigana",
                    ],
                );
                keep("alphabet", alphabet);
                let ph = a.take("ph");
                keep("ph", ph);
            }
            SsmlKind::Prosody => {
                for (name, words) in [
                    (
                        "volume",
                        &[
                            "default", "silent", "x-soft", "soft", "medium", "loud", "x-loud",
                        ][..],
                    ),
                    ("rate", &["x-slow", "slow", "medium", "fast", "x-fast"][..]),
                    (
                        "pitch",
                        &["default", "x-low", "low", "medium", "high", "x-high"][..],
                    ),
                ] {
                    if let Some(value) = a.take(name) {
                        if words.contains(&value.as_str()) || valid_prosody_value(name, &value) {
                            keep(name, Some(value));
                        } else {
                            a.warn(
                                SCHEMA_WARNING,
                                format!("{name}={value:?} is not a valid prosody {name}; ignored"),
                            );
                        }
                    }
                }
            }
            SsmlKind::SayAs => {
                let interpret_as = a.opt_choice(
                    "interpret-as",
                    &[
                        "character",
                        "spell-out",
                        "cardinal",
                        "number",
                        "ordinal",
                        "digits",
                        "fraction",
                        "unit",
                        "date",
                        "time",
                        "address",
                        "expletive",
                        "telephone",
                    ],
                );
                keep("interpret-as", interpret_as);
                let format = a.opt_choice(
                    "format",
                    &[
                        "mdy", "dmy", "ymd", "md", "dm", "ym", "my", "d", "m", "y", "yyyymmdd",
                    ],
                );
                keep("format", format);
            }
            SsmlKind::Sub => {
                let alias = a.take("alias");
                keep("alias", alias);
            }
            SsmlKind::W => {
                let role = a.string("role");
                keep("role", role);
            }
        }
        a.finish();
        if matches!(
            kind,
            SsmlKind::Emphasis
                | SsmlKind::Lang
                | SsmlKind::Phoneme
                | SsmlKind::Prosody
                | SsmlKind::W
        ) {
            // Dialtone's speech engine renders breaks, say-as and sub; the rest is spoken
            // as its plain text, which the application should know.
            let message = format!("SSML <{}> is spoken as plain text", kind.tag());
            self.warn(SCHEMA_WARNING, parent, e.position, message);
        }
        let children = if kind == SsmlKind::Break {
            self.no_children(e)?;
            Vec::new()
        } else {
            self.ssml_children(e.children, parent)?
        };
        Ok(Some(SsmlNode::Element(SsmlElement {
            kind,
            attributes,
            children,
        })))
    }

    // --- Play, Pause, prompts -----------------------------------------------------------

    fn play(&mut self, mut e: RawElement) -> Result<Play, ParseError> {
        let position = e.position;
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let loops = a.uint("loop", 1, 0, u32::MAX, SCHEMA_WARNING);
        let digits = match a.string("digits") {
            Some(d)
                if d.chars()
                    .all(|c| DTMF_KEYS.contains(c) || c == 'w' || c == 'W') =>
            {
                Some(d)
            }
            Some(d) => {
                a.warn(
                    SCHEMA_WARNING,
                    format!("digits={d:?} may only hold 0-9, *, # and w; ignored"),
                );
                None
            }
            None => None,
        };
        a.finish();
        let url = Some(self.text_only(e)?).filter(|u| !u.is_empty());
        if url.is_none() && digits.is_none() {
            self.warn(
                SCHEMA_WARNING,
                "Play",
                position,
                "<Play> has neither a URL nor digits",
            );
        }
        Ok(Play { loops, digits, url })
    }

    fn pause(&mut self, mut e: RawElement) -> Result<Pause, ParseError> {
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let length = a.uint("length", 1, 1, 86_400, SCHEMA_WARNING);
        a.finish();
        self.no_children(e)?;
        Ok(Pause { length })
    }

    /// `<Say>`, `<Play>` and `<Pause>` children (of `<Gather>` or `<Prompt>`).
    fn prompts(&mut self, e: RawElement) -> Result<Vec<Located<Prompt>>, ParseError> {
        let parent = e.name.clone();
        let mut out = Vec::new();
        for child in e.children {
            match child {
                RawNode::Text(text) => {
                    let position = text.position;
                    if !text.strict()?.trim().is_empty() {
                        let message = format!("text directly inside <{parent}> is ignored");
                        self.warn(SCHEMA_WARNING, &parent, position, message);
                    }
                }
                RawNode::Element(child) => {
                    let position = child.position;
                    let prompt = match child.name.as_str() {
                        "Say" => Prompt::Say(self.say(child)?),
                        "Play" => Prompt::Play(self.play(child)?),
                        "Pause" => Prompt::Pause(self.pause(child)?),
                        other => {
                            let message =
                                format!("<{other}> cannot be nested in <{parent}>; skipped");
                            self.warn(SCHEMA_WARNING, &parent, position, message);
                            self.check_strict_texts(child)?;
                            continue;
                        }
                    };
                    out.push(Located {
                        position,
                        value: prompt,
                    });
                }
            }
        }
        Ok(out)
    }

    // --- Gather, Record ---------------------------------------------------------------

    fn gather(&mut self, mut e: RawElement) -> Result<Gather, ParseError> {
        let defaults = Gather::default();
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let action = a.string("action");
        let method = a.method("method");
        let input = match a.take("input") {
            None => defaults.input,
            Some(value) => {
                let mut input = GatherInput {
                    dtmf: false,
                    speech: false,
                };
                let mut bad = false;
                for word in value.split_whitespace() {
                    match word {
                        "dtmf" => input.dtmf = true,
                        "speech" => input.speech = true,
                        _ => bad = true,
                    }
                }
                if bad || !(input.dtmf || input.speech) {
                    a.warn(
                        SCHEMA_WARNING,
                        format!(
                            "input={value:?} should be dtmf, speech or \"dtmf speech\"; using dtmf"
                        ),
                    );
                    defaults.input
                } else {
                    input
                }
            }
        };
        let timeout = a.uint("timeout", 5, 1, 3600, GATHER_INVALID_TIMEOUT);
        let finish_on_key = match a.take("finishOnKey") {
            None => defaults.finish_on_key,
            Some(value) => {
                let mut chars = value.chars();
                match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(c), None) if DTMF_KEYS.contains(c) => Some(c),
                    _ => {
                        a.warn(
                            GATHER_INVALID_FINISH_ON_KEY,
                            format!(
                                "finishOnKey={value:?} must be one of 0-9, #, * or empty; using \"#\""
                            ),
                        );
                        defaults.finish_on_key
                    }
                }
            }
        };
        let num_digits = a.opt_uint("numDigits", 1, u32::MAX, SCHEMA_WARNING);
        let speech_timeout = match a.take("speechTimeout") {
            None => None,
            Some(v) if v.trim() == "auto" => Some(SpeechTimeout::Auto),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) => Some(SpeechTimeout::Seconds(n)),
                Err(_) => {
                    a.warn(
                        SCHEMA_WARNING,
                        format!("speechTimeout={v:?} is not a number or auto; ignored"),
                    );
                    None
                }
            },
        };
        let max_speech_time = a.uint("maxSpeechTime", 60, 1, 3600, SCHEMA_WARNING);
        let language = a.string("language");
        let hints = a.string("hints");
        let profanity_filter = a.bool("profanityFilter", true);
        let barge_in = a.bool("bargeIn", true);
        let partial_result_callback = a.string("partialResultCallback");
        let partial_result_callback_method = a.method("partialResultCallbackMethod");
        let action_on_empty_result = a.bool("actionOnEmptyResult", false);
        let speech_model = a.string("speechModel");
        let enhanced = a.bool("enhanced", false);
        let debug = a.bool("debug", false);
        // Dialtone extensions (see the field docs).
        let min_digits = a.opt_uint("minDigits", 1, u32::MAX, SCHEMA_WARNING);
        let max_digits = a.opt_uint("maxDigits", 1, u32::MAX, SCHEMA_WARNING);
        let valid_digits = match a.take("validDigits") {
            Some(v) if !v.is_empty() && v.chars().all(|c| DTMF_KEYS.contains(c)) => Some(v),
            Some(v) => {
                a.warn(
                    SCHEMA_WARNING,
                    format!("validDigits={v:?} may only hold 0-9, * and #; ignored"),
                );
                None
            }
            None => None,
        };
        let inter_digit_timeout = a.opt_uint("interDigitTimeout", 1, 3600, SCHEMA_WARNING);
        a.finish();
        let prompts = self.prompts(e)?;
        Ok(Gather {
            action,
            method,
            input,
            timeout,
            finish_on_key,
            num_digits,
            speech_timeout,
            max_speech_time,
            language,
            hints,
            profanity_filter,
            barge_in,
            partial_result_callback,
            partial_result_callback_method,
            action_on_empty_result,
            speech_model,
            enhanced,
            debug,
            min_digits,
            max_digits,
            valid_digits,
            inter_digit_timeout,
            prompts,
        })
    }

    fn record(&mut self, mut e: RawElement) -> Result<Record, ParseError> {
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let action = a.string("action");
        let method = a.method("method");
        let timeout = a.uint("timeout", 5, 0, 3600, SCHEMA_WARNING);
        let finish_on_key = match a.take("finishOnKey") {
            None => Record::default().finish_on_key,
            Some(v) if v.chars().all(|c| DTMF_KEYS.contains(c)) => v,
            Some(v) => {
                a.warn(
                    SCHEMA_WARNING,
                    format!("finishOnKey={v:?} may only hold 0-9, # and *; using any key"),
                );
                Record::default().finish_on_key
            }
        };
        let max_length = a.uint("maxLength", 3600, 1, 86_400, SCHEMA_WARNING);
        let play_beep = a.bool("playBeep", true);
        let trim = a.trim(Trim::TrimSilence);
        let recording_status_callback = a.string("recordingStatusCallback");
        let recording_status_callback_method = a.method("recordingStatusCallbackMethod");
        let recording_status_callback_event = a.word_set(
            "recordingStatusCallbackEvent",
            RECORDING_EVENTS,
            &["completed"],
        );
        let transcribe = a.bool("transcribe", false);
        let transcribe_callback = a.string("transcribeCallback");
        let recording_configuration_id = a.string("recordingConfigurationId");
        a.finish();
        self.no_children(e)?;
        Ok(Record {
            action,
            method,
            timeout,
            finish_on_key,
            max_length,
            play_beep,
            trim,
            recording_status_callback,
            recording_status_callback_method,
            recording_status_callback_event,
            transcribe,
            transcribe_callback,
            recording_configuration_id,
        })
    }

    // --- Dial ---------------------------------------------------------------------------

    fn dial(&mut self, mut e: RawElement) -> Result<Dial, ParseError> {
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let action = a.string("action");
        let method = a.method("method");
        let timeout = a.uint("timeout", 30, 5, 600, SCHEMA_WARNING);
        let hangup_on_star = a.bool("hangupOnStar", false);
        let time_limit = a.uint("timeLimit", 14400, 1, 86_400, SCHEMA_WARNING);
        let caller_id = a.string("callerId");
        let record = match a
            .choice(
                "record",
                &[
                    "do-not-record",
                    "record-from-answer",
                    "record-from-ringing",
                    "record-from-answer-dual",
                    "record-from-ringing-dual",
                    "true",
                    "false",
                ],
                "do-not-record",
            )
            .as_str()
        {
            "record-from-answer" | "true" => DialRecord::RecordFromAnswer,
            "record-from-ringing" => DialRecord::RecordFromRinging,
            "record-from-answer-dual" => DialRecord::RecordFromAnswerDual,
            "record-from-ringing-dual" => DialRecord::RecordFromRingingDual,
            _ => DialRecord::DoNotRecord,
        };
        let trim = a
            .opt_choice("trim", &["trim-silence", "do-not-trim"])
            .map(|t| {
                if t == "do-not-trim" {
                    Trim::DoNotTrim
                } else {
                    Trim::TrimSilence
                }
            });
        let recording_status_callback = a.string("recordingStatusCallback");
        let recording_status_callback_method = a.method("recordingStatusCallbackMethod");
        let recording_status_callback_event = a.word_set(
            "recordingStatusCallbackEvent",
            RECORDING_EVENTS,
            &["completed"],
        );
        let recording_track = match a
            .choice("recordingTrack", &["inbound", "outbound", "both"], "both")
            .as_str()
        {
            "inbound" => RecordingTrack::Inbound,
            "outbound" => RecordingTrack::Outbound,
            _ => RecordingTrack::Both,
        };
        let answer_on_bridge = a.bool("answerOnBridge", false);
        let ring_tone = a.string("ringTone");
        let call_reason = a.string("callReason");
        if call_reason.as_ref().is_some_and(|r| r.chars().count() > 50) {
            a.warn(
                SCHEMA_WARNING,
                "callReason is longer than 50 characters".to_owned(),
            );
        }
        let sequential = a.bool("sequential", false);
        let refer_url = a.string("referUrl");
        let refer_method = a.method("referMethod");
        let recording_configuration_id = a.string("recordingConfigurationId");
        let events = a.string("events");
        let passports = a.string("passports");
        a.finish();

        let mut targets = Vec::new();
        let mut bare_number = String::new();
        let mut bare_position = e.position;
        for child in std::mem::take(&mut e.children) {
            match child {
                RawNode::Text(text) => {
                    let position = text.position;
                    let text = text.strict()?;
                    if !text.trim().is_empty() {
                        if bare_number.is_empty() {
                            bare_position = position;
                        }
                        bare_number.push_str(text.trim());
                    }
                }
                RawNode::Element(child) => {
                    let position = child.position;
                    if let Some(target) = self.dial_target(child)? {
                        targets.push(Located {
                            position,
                            value: target,
                        });
                    }
                }
            }
        }
        if !bare_number.is_empty() {
            if targets.is_empty() {
                targets.push(Located {
                    position: bare_position,
                    value: DialTarget::Number(DialNumber {
                        number: bare_number,
                        ..DialNumber::default()
                    }),
                });
            } else {
                self.warn(
                    SCHEMA_WARNING,
                    "Dial",
                    bare_position,
                    "text next to nouns in <Dial> is ignored",
                );
            }
        }
        if targets.is_empty() {
            self.warn(
                SCHEMA_WARNING,
                "Dial",
                e.position,
                "<Dial> has nothing to dial",
            );
        }
        if targets.len() > 10 {
            self.warn(
                SCHEMA_WARNING,
                "Dial",
                e.position,
                "<Dial> rings at most 10 parties",
            );
        }
        Ok(Dial {
            action,
            method,
            timeout,
            hangup_on_star,
            time_limit,
            caller_id,
            record,
            trim,
            recording_status_callback,
            recording_status_callback_method,
            recording_status_callback_event,
            recording_track,
            answer_on_bridge,
            ring_tone,
            call_reason,
            sequential,
            refer_url,
            refer_method,
            recording_configuration_id,
            events,
            passports,
            targets,
        })
    }

    fn leg_callbacks(a: &mut Attributes<'_>) -> LegCallbacks {
        LegCallbacks {
            url: a.string("url"),
            method: a.method("method"),
            status_callback: a.string("statusCallback"),
            status_callback_method: a.method("statusCallbackMethod"),
            status_callback_event: a.word_set("statusCallbackEvent", LEG_EVENTS, &["completed"]),
        }
    }

    fn machine_detection(a: &mut Attributes<'_>) -> MachineDetection {
        MachineDetection {
            mode: a.opt_choice("machineDetection", &["Enable", "DetectMessageEnd"]),
            timeout: a.uint("machineDetectionTimeout", 30, 3, 60, SCHEMA_WARNING),
            speech_threshold: a.uint(
                "machineDetectionSpeechThreshold",
                2400,
                1000,
                6000,
                SCHEMA_WARNING,
            ),
            speech_end_threshold: a.uint(
                "machineDetectionSpeechEndThreshold",
                1200,
                500,
                5000,
                SCHEMA_WARNING,
            ),
            silence_timeout: a.uint(
                "machineDetectionSilenceTimeout",
                5000,
                2000,
                10000,
                SCHEMA_WARNING,
            ),
            status_callback: a.string("amdStatusCallback"),
            status_callback_method: a.method("amdStatusCallbackMethod"),
        }
    }

    fn dial_target(&mut self, mut e: RawElement) -> Result<Option<DialTarget>, ParseError> {
        let position = e.position;
        let name = e.name.clone();
        let target = match name.as_str() {
            "Number" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let send_digits = match a.string("sendDigits") {
                    Some(d)
                        if d.chars()
                            .all(|c| DTMF_KEYS.contains(c) || c == 'w' || c == 'W') =>
                    {
                        Some(d)
                    }
                    Some(d) => {
                        a.warn(
                            SCHEMA_WARNING,
                            format!("sendDigits={d:?} may only hold 0-9, *, # and w; ignored"),
                        );
                        None
                    }
                    None => None,
                };
                let byoc = a.string("byoc");
                let callbacks = Self::leg_callbacks(&mut a);
                let machine_detection = Self::machine_detection(&mut a);
                a.finish();
                DialTarget::Number(DialNumber {
                    number: self.text_only(e)?,
                    send_digits,
                    byoc,
                    callbacks,
                    machine_detection,
                })
            }
            "Sip" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let username = a.string("username");
                let password = a.string("password");
                let callbacks = Self::leg_callbacks(&mut a);
                let machine_detection = Self::machine_detection(&mut a);
                a.finish();
                let mut sip = DialSip {
                    username,
                    password,
                    callbacks,
                    machine_detection,
                    ..DialSip::default()
                };
                let mut uri = String::new();
                for child in std::mem::take(&mut e.children) {
                    match child {
                        RawNode::Text(text) => uri.push_str(&text.strict()?),
                        RawNode::Element(mut child) if child.name == "Uri" => {
                            let mut a = Attributes::new(&mut child, &mut self.warnings);
                            let priority = a.opt_uint("priority", 0, u32::MAX, SCHEMA_WARNING);
                            let weight = a.opt_uint("weight", 0, u32::MAX, SCHEMA_WARNING);
                            let username = a.string("username");
                            let password = a.string("password");
                            a.finish();
                            sip.uris.push(SipUri {
                                uri: self.text_only(child)?,
                                priority,
                                weight,
                                username,
                                password,
                            });
                        }
                        RawNode::Element(child) if child.name == "Headers" => {
                            for header in child.children {
                                match header {
                                    RawNode::Element(mut h) if h.name == "Header" => {
                                        let mut a = Attributes::new(&mut h, &mut self.warnings);
                                        let name = a.string("name");
                                        let value = a.take("value").unwrap_or_default();
                                        a.finish();
                                        self.no_children(h)?;
                                        if let Some(name) = name {
                                            sip.headers.push((name, value));
                                        }
                                    }
                                    RawNode::Element(other) => {
                                        let message = format!(
                                            "<{}> is not allowed in <Headers>; ignored",
                                            other.name
                                        );
                                        self.warn(
                                            SCHEMA_WARNING,
                                            "Headers",
                                            other.position,
                                            message,
                                        );
                                        self.check_strict_texts(other)?;
                                    }
                                    RawNode::Text(text) => {
                                        text.strict()?;
                                    }
                                }
                            }
                        }
                        RawNode::Element(other) => {
                            let message =
                                format!("<{}> is not allowed in <Sip>; ignored", other.name);
                            self.warn(SCHEMA_WARNING, "Sip", other.position, message);
                            self.check_strict_texts(other)?;
                        }
                    }
                }
                sip.uri = uri.trim().to_owned();
                if sip.uri.is_empty() {
                    if let Some(first) = sip.uris.first() {
                        sip.uri = first.uri.clone();
                    }
                }
                DialTarget::Sip(sip)
            }
            "Client" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let callbacks = Self::leg_callbacks(&mut a);
                a.finish();
                let mut client = DialClient {
                    callbacks,
                    ..DialClient::default()
                };
                let mut identity = String::new();
                for child in std::mem::take(&mut e.children) {
                    match child {
                        RawNode::Text(text) => identity.push_str(&text.strict()?),
                        RawNode::Element(child) if child.name == "Identity" => {
                            let mut child = child;
                            Attributes::new(&mut child, &mut self.warnings).finish();
                            identity.push_str(&self.text_only(child)?);
                        }
                        RawNode::Element(child) if child.name == "Parameter" => {
                            if let Some(p) = self.parameter(child)? {
                                client.parameters.push(p);
                            }
                        }
                        RawNode::Element(other) => {
                            let message =
                                format!("<{}> is not allowed in <Client>; ignored", other.name);
                            self.warn(SCHEMA_WARNING, "Client", other.position, message);
                            self.check_strict_texts(other)?;
                        }
                    }
                }
                client.identity = identity.trim().to_owned();
                DialTarget::Client(client)
            }
            "Conference" => {
                let d = DialConference::default();
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let conference = DialConference {
                    name: String::new(),
                    muted: a.bool("muted", false),
                    beep: a.choice("beep", &["true", "false", "onEnter", "onExit"], "true"),
                    start_conference_on_enter: a.bool("startConferenceOnEnter", true),
                    end_conference_on_exit: a.bool("endConferenceOnExit", false),
                    wait_url: a.string_keep_empty("waitUrl"),
                    wait_method: a.method("waitMethod"),
                    max_participants: a.uint("maxParticipants", 250, 2, 250, SCHEMA_WARNING),
                    record: a.choice(
                        "record",
                        &["do-not-record", "record-from-start"],
                        "do-not-record",
                    ),
                    region: a.opt_choice(
                        "region",
                        &["us1", "us2", "ie1", "de1", "sg1", "br1", "au1", "jp1"],
                    ),
                    coach: a.string("coach"),
                    trim: a.trim(Trim::TrimSilence),
                    status_callback_event: a.word_set(
                        "statusCallbackEvent",
                        &[
                            "start",
                            "end",
                            "join",
                            "leave",
                            "mute",
                            "hold",
                            "modify",
                            "speaker",
                            "announcement",
                        ],
                        &[],
                    ),
                    status_callback: a.string("statusCallback"),
                    status_callback_method: a.method("statusCallbackMethod"),
                    recording_status_callback: a.string("recordingStatusCallback"),
                    recording_status_callback_method: a.method("recordingStatusCallbackMethod"),
                    recording_status_callback_event: a.word_set(
                        "recordingStatusCallbackEvent",
                        RECORDING_EVENTS,
                        &["completed"],
                    ),
                    event_callback_url: a.string("eventCallbackUrl"),
                    jitter_buffer_size: a.choice(
                        "jitterBufferSize",
                        &["large", "medium", "small", "off"],
                        &d.jitter_buffer_size,
                    ),
                    participant_label: a.string("participantLabel"),
                    recording_configuration_id: a.string("recordingConfigurationId"),
                };
                a.finish();
                DialTarget::Conference(DialConference {
                    name: self.text_only(e)?,
                    ..conference
                })
            }
            "Queue" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let queue = DialQueue {
                    name: String::new(),
                    url: a.string("url"),
                    method: a.method("method"),
                    reservation_sid: a.string("reservationSid"),
                    post_work_activity_sid: a.string("postWorkActivitySid"),
                };
                a.finish();
                DialTarget::Queue(DialQueue {
                    name: self.text_only(e)?,
                    ..queue
                })
            }
            "Application" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let callbacks = Self::leg_callbacks(&mut a);
                let customer_id = a.string("customerId");
                let copy_parent_to = a.bool("copyParentTo", false);
                a.finish();
                let mut application = DialApplication {
                    callbacks,
                    customer_id,
                    copy_parent_to,
                    ..DialApplication::default()
                };
                let mut sid = String::new();
                for child in std::mem::take(&mut e.children) {
                    match child {
                        RawNode::Text(text) => sid.push_str(&text.strict()?),
                        RawNode::Element(mut child) if child.name == "ApplicationSid" => {
                            Attributes::new(&mut child, &mut self.warnings).finish();
                            sid.push_str(&self.text_only(child)?);
                        }
                        RawNode::Element(child) if child.name == "Parameter" => {
                            if let Some(p) = self.parameter(child)? {
                                application.parameters.push(p);
                            }
                        }
                        RawNode::Element(other) => {
                            let message = format!(
                                "<{}> is not allowed in <Application>; ignored",
                                other.name
                            );
                            self.warn(SCHEMA_WARNING, "Application", other.position, message);
                            self.check_strict_texts(other)?;
                        }
                    }
                }
                application.application_sid = sid.trim().to_owned();
                DialTarget::Application(application)
            }
            "Sim" => {
                Attributes::new(&mut e, &mut self.warnings).finish();
                DialTarget::Sim(self.text_only(e)?)
            }
            "WhatsApp" => {
                let mut a = Attributes::new(&mut e, &mut self.warnings);
                let callbacks = Self::leg_callbacks(&mut a);
                a.finish();
                DialTarget::WhatsApp(DialWhatsApp {
                    number: self.text_only(e)?,
                    callbacks,
                })
            }
            other => {
                let message = format!("<{other}> is not a <Dial> noun; skipped");
                self.warn(SCHEMA_WARNING, "Dial", position, message);
                self.check_strict_texts(e)?;
                return Ok(None);
            }
        };
        Ok(Some(target))
    }

    // --- Enqueue, Refer, Pay ------------------------------------------------------------

    fn enqueue(&mut self, mut e: RawElement) -> Result<Enqueue, ParseError> {
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let mut enqueue = Enqueue {
            action: a.string("action"),
            method: a.method("method"),
            wait_url: a.string("waitUrl"),
            wait_url_method: a.method("waitUrlMethod"),
            max_queue_size: a.opt_uint("maxQueueSize", 1, u32::MAX, SCHEMA_WARNING),
            workflow_sid: a.string("workflowSid"),
            ..Enqueue::default()
        };
        a.finish();
        let mut name = String::new();
        for child in std::mem::take(&mut e.children) {
            match child {
                RawNode::Text(text) => name.push_str(&text.strict()?),
                RawNode::Element(mut child) if child.name == "Task" => {
                    let mut a = Attributes::new(&mut child, &mut self.warnings);
                    let priority = a.opt_uint("priority", 0, u32::MAX, SCHEMA_WARNING);
                    let timeout = a.opt_uint("timeout", 0, u32::MAX, SCHEMA_WARNING);
                    a.finish();
                    enqueue.task = Some(EnqueueTask {
                        attributes_json: self.text_only(child)?,
                        priority,
                        timeout,
                    });
                }
                RawNode::Element(other) => {
                    let message = format!("<{}> is not allowed in <Enqueue>; ignored", other.name);
                    self.warn(SCHEMA_WARNING, "Enqueue", other.position, message);
                    self.check_strict_texts(other)?;
                }
            }
        }
        enqueue.queue_name = name.trim().to_owned();
        Ok(enqueue)
    }

    fn refer(&mut self, mut e: RawElement) -> Result<Refer, ParseError> {
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let mut refer = Refer {
            action: a.string("action"),
            method: a.method("method"),
            target: None,
        };
        a.finish();
        for child in std::mem::take(&mut e.children) {
            match child {
                RawNode::Text(text) => {
                    let position = text.position;
                    if !text.strict()?.trim().is_empty() {
                        self.warn(
                            SCHEMA_WARNING,
                            "Refer",
                            position,
                            "text in <Refer> is ignored; use <Sip>",
                        );
                    }
                }
                RawNode::Element(mut child) if child.name == "Sip" => {
                    Attributes::new(&mut child, &mut self.warnings).finish();
                    refer.target = Some(self.text_only(child)?);
                }
                RawNode::Element(other) => {
                    let message = format!("<{}> is not allowed in <Refer>; ignored", other.name);
                    self.warn(SCHEMA_WARNING, "Refer", other.position, message);
                    self.check_strict_texts(other)?;
                }
            }
        }
        Ok(refer)
    }

    fn pay(&mut self, mut e: RawElement) -> Result<Pay, ParseError> {
        let d = Pay::default();
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let mut pay = Pay {
            input: a.choice("input", &["dtmf"], "dtmf"),
            action: a.string("action"),
            bank_account_type: a.choice(
                "bankAccountType",
                &[
                    "consumer-checking",
                    "consumer-savings",
                    "commercial-checking",
                    "commercial-savings",
                ],
                &d.bank_account_type,
            ),
            status_callback: a.string("statusCallback"),
            status_callback_method: a.method("statusCallbackMethod"),
            timeout: a.uint("timeout", 5, 1, 3600, SCHEMA_WARNING),
            max_attempts: a.uint("maxAttempts", 1, 1, 3, SCHEMA_WARNING),
            security_code: a.bool("securityCode", true),
            postal_code: a.string("postalCode").unwrap_or(d.postal_code),
            min_postal_code_length: a.opt_uint("minPostalCodeLength", 0, 100, SCHEMA_WARNING),
            payment_connector: a.string("paymentConnector").unwrap_or(d.payment_connector),
            payment_method: a.choice(
                "paymentMethod",
                &["credit-card", "ach-debit"],
                &d.payment_method,
            ),
            token_type: a.choice(
                "tokenType",
                &["reusable", "one-time", "payment-method"],
                &d.token_type,
            ),
            charge_amount: a.string("chargeAmount"),
            currency: a.string("currency").unwrap_or(d.currency),
            description: a.string("description"),
            valid_card_types: a.word_set(
                "validCardTypes",
                &[
                    "visa",
                    "mastercard",
                    "amex",
                    "maestro",
                    "discover",
                    "optima",
                    "jcb",
                    "diners-club",
                    "enroute",
                ],
                &["visa", "mastercard", "amex"],
            ),
            language: a.string("language"),
            prompts: Vec::new(),
            parameters: Vec::new(),
        };
        a.finish();
        for child in std::mem::take(&mut e.children) {
            match child {
                RawNode::Text(text) => {
                    let position = text.position;
                    if !text.strict()?.trim().is_empty() {
                        self.warn(SCHEMA_WARNING, "Pay", position, "text in <Pay> is ignored");
                    }
                }
                RawNode::Element(child) if child.name == "Parameter" => {
                    if let Some(p) = self.parameter(child)? {
                        pay.parameters.push(p);
                    }
                }
                RawNode::Element(mut child) if child.name == "Prompt" => {
                    let mut a = Attributes::new(&mut child, &mut self.warnings);
                    let for_step = a.opt_choice(
                        "for",
                        &[
                            "payment-card-number",
                            "expiration-date",
                            "security-code",
                            "postal-code",
                            "bank-routing-number",
                            "bank-account-number",
                            "payment-processing",
                        ],
                    );
                    let error_type = a.word_set(
                        "errorType",
                        &[
                            "timeout",
                            "invalid-card-number",
                            "invalid-card-type",
                            "invalid-date",
                            "invalid-security-code",
                            "invalid-postal-code",
                            "invalid-bank-routing-number",
                            "invalid-bank-account-number",
                            "input-matching-failed",
                        ],
                        &[],
                    );
                    let card_type = a
                        .string("cardType")
                        .map(|s| s.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default();
                    let attempt = a
                        .string("attempt")
                        .map(|s| {
                            s.split_whitespace()
                                .filter_map(|n| n.parse::<u32>().ok())
                                .collect()
                        })
                        .unwrap_or_default();
                    let require_matching_inputs = a.bool("requireMatchingInputs", false);
                    a.finish();
                    pay.prompts.push(PayPrompt {
                        for_step,
                        error_type,
                        card_type,
                        attempt,
                        require_matching_inputs,
                        prompts: self.prompts(child)?,
                    });
                }
                RawNode::Element(other) => {
                    let message = format!("<{}> is not allowed in <Pay>; ignored", other.name);
                    self.warn(SCHEMA_WARNING, "Pay", other.position, message);
                    self.check_strict_texts(other)?;
                }
            }
        }
        Ok(pay)
    }

    // --- generic nouns (Connect, Start, Stop) -------------------------------------------

    fn nouns(&mut self, e: RawElement, specs: &[NounSpec]) -> Result<Vec<Noun>, ParseError> {
        let parent = e.name.clone();
        let mut out = Vec::new();
        for child in e.children {
            match child {
                RawNode::Text(text) => {
                    let position = text.position;
                    if !text.strict()?.trim().is_empty() {
                        let message = format!("text in <{parent}> is ignored");
                        self.warn(SCHEMA_WARNING, &parent, position, message);
                    }
                }
                RawNode::Element(child) => match specs.iter().find(|s| s.name == child.name) {
                    Some(spec) => out.push(self.noun(child, spec)?),
                    None => {
                        let message =
                            format!("<{}> is not allowed in <{parent}>; skipped", child.name);
                        self.warn(SCHEMA_WARNING, &parent, child.position, message);
                        self.check_strict_texts(child)?;
                    }
                },
            }
        }
        Ok(out)
    }

    fn noun(&mut self, mut e: RawElement, spec: &NounSpec) -> Result<Noun, ParseError> {
        let mut a = Attributes::new(&mut e, &mut self.warnings);
        let attributes = a.known(spec.attributes);
        a.finish();
        let mut text = String::new();
        let mut children = Vec::new();
        for child in std::mem::take(&mut e.children) {
            match child {
                RawNode::Text(t) => text.push_str(&t.strict()?),
                RawNode::Element(child) => {
                    match spec.children.iter().find(|s| s.name == child.name) {
                        Some(child_spec) => children.push(self.noun(child, child_spec)?),
                        None => {
                            let message = format!(
                                "<{}> is not allowed in <{}>; skipped",
                                child.name, spec.name
                            );
                            self.warn(SCHEMA_WARNING, spec.name, child.position, message);
                            self.check_strict_texts(child)?;
                        }
                    }
                }
            }
        }
        let text = text.trim();
        Ok(Noun {
            name: spec.name.to_owned(),
            attributes,
            text: (!text.is_empty()).then(|| text.to_owned()),
            children,
            position: e.position,
        })
    }
}

fn valid_break_time(value: &str) -> bool {
    let digits = value
        .strip_suffix("ms")
        .or_else(|| value.strip_suffix('s'))
        .unwrap_or("");
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

/// `+ndB`/`-ndB` volumes, `n%` rates and `+n%`/`-n%` pitches.
fn valid_prosody_value(name: &str, value: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    match name {
        "volume" => value
            .strip_suffix("dB")
            .and_then(|v| v.strip_prefix('+').or_else(|| v.strip_prefix('-')))
            .is_some_and(number),
        "rate" => value.strip_suffix('%').is_some_and(number),
        "pitch" => value
            .strip_suffix('%')
            .and_then(|v| v.strip_prefix('+').or_else(|| v.strip_prefix('-')))
            .is_some_and(number),
        _ => false,
    }
}

/// The attributes and children Twilio knows for a generic noun.
struct NounSpec {
    name: &'static str,
    attributes: &'static [&'static str],
    children: &'static [NounSpec],
}

const PARAMETER: NounSpec = NounSpec {
    name: "Parameter",
    attributes: &["name", "value"],
    children: &[],
};
const CONFIG: NounSpec = NounSpec {
    name: "Config",
    attributes: &["name", "value"],
    children: &[],
};

const STREAM_ATTRIBUTES: &[&str] = &[
    "url",
    "name",
    "track",
    "statusCallback",
    "statusCallbackMethod",
    "connectorName",
    "audioFormat",
    "sampleRate",
];

const CONNECT_NOUNS: &[NounSpec] = &[
    NounSpec {
        name: "Stream",
        attributes: STREAM_ATTRIBUTES,
        children: &[PARAMETER],
    },
    NounSpec {
        name: "Room",
        attributes: &["participantIdentity"],
        children: &[],
    },
    NounSpec {
        name: "Conversation",
        attributes: &[
            "serviceInstanceSid",
            "inboundAutocreation",
            "routingAssignmentTimeout",
            "inboundTimeout",
            "url",
            "method",
            "record",
            "trim",
            "recordingStatusCallback",
            "recordingStatusCallbackMethod",
            "recordingStatusCallbackEvent",
            "statusCallback",
            "statusCallbackMethod",
            "statusCallbackEvent",
        ],
        children: &[],
    },
    NounSpec {
        name: "VirtualAgent",
        attributes: &[
            "connectorName",
            "language",
            "sentimentAnalysis",
            "statusCallback",
            "statusCallbackMethod",
        ],
        children: &[CONFIG, PARAMETER],
    },
    NounSpec {
        name: "ConversationRelay",
        attributes: &[
            "url",
            "language",
            "ttsLanguage",
            "transcriptionLanguage",
            "ttsProvider",
            "voice",
            "transcriptionProvider",
            "speechModel",
            "profanityFilter",
            "dtmfDetection",
            "welcomeGreeting",
            "welcomeGreetingInterruptible",
            "partialPrompts",
            "interruptible",
            "interruptByDtmf",
            "interruptSensitivity",
            "preemptible",
            "hints",
            "intelligenceService",
            "reportInputDuringAgentSpeech",
            "elevenlabsTextNormalization",
            "debug",
            "speechTimeout",
            "deepgramSmartFormat",
            "events",
            "customParameters",
            "ttsVoice",
            "transcriptionModel",
            "ttsModel",
            "sttProvider",
            "statusCallback",
            "statusCallbackMethod",
            "maxSessionDuration",
            "ttsEngine",
            "transcriptionEngine",
        ],
        children: &[
            NounSpec {
                name: "Language",
                attributes: &[
                    "code",
                    "ttsProvider",
                    "voice",
                    "transcriptionProvider",
                    "speechModel",
                ],
                children: &[],
            },
            PARAMETER,
        ],
    },
    NounSpec {
        name: "AiSession",
        attributes: &["aiConnector", "aiSessionConfiguration"],
        children: &[],
    },
    NounSpec {
        name: "ConversationRelaySession",
        attributes: &["connector", "sessionConfiguration"],
        children: &[],
    },
    NounSpec {
        name: "Autopilot",
        attributes: &[],
        children: &[PARAMETER],
    },
];

const START_NOUNS: &[NounSpec] = &[
    NounSpec {
        name: "Stream",
        attributes: STREAM_ATTRIBUTES,
        children: &[PARAMETER],
    },
    NounSpec {
        name: "Siprec",
        attributes: &[
            "name",
            "connectorName",
            "track",
            "statusCallback",
            "statusCallbackMethod",
        ],
        children: &[PARAMETER],
    },
    NounSpec {
        name: "Transcription",
        attributes: &[
            "name",
            "track",
            "statusCallbackUrl",
            "statusCallbackMethod",
            "inboundTrackLabel",
            "outboundTrackLabel",
            "partialResults",
            "languageCode",
            "transcriptionEngine",
            "profanityFilter",
            "speechModel",
            "hints",
            "enableAutomaticPunctuation",
            "intelligenceService",
        ],
        children: &[CONFIG, PARAMETER],
    },
    NounSpec {
        name: "Recording",
        attributes: &[
            "recordingStatusCallback",
            "recordingStatusCallbackMethod",
            "recordingStatusCallbackEvent",
            "trim",
            "track",
            "channels",
            "recordingConfigurationId",
        ],
        children: &[],
    },
];

const STOP_NOUNS: &[NounSpec] = &[
    NounSpec {
        name: "Stream",
        attributes: STREAM_ATTRIBUTES,
        children: &[PARAMETER],
    },
    NounSpec {
        name: "Siprec",
        attributes: &["name"],
        children: &[],
    },
    NounSpec {
        name: "Transcription",
        attributes: &["name"],
        children: &[],
    },
];

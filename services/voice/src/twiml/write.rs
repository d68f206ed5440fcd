//! Emitting TwiML with quick-xml's writer: a tiny element builder, mostly for tests and
//! for generating documents (escaping is always right, unlike string formatting).

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use super::{SsmlKind, SsmlNode};

/// An XML element to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Content>,
}

/// Content of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            attributes: Vec::new(),
            children: Vec::new(),
        }
    }

    /// `<Response>` with these verbs.
    pub fn response(verbs: impl IntoIterator<Item = Element>) -> Self {
        let mut response = Element::new("Response");
        for verb in verbs {
            response = response.child(verb);
        }
        response
    }

    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Content::Text(text.into()));
        self
    }

    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Content::Element(child));
        self
    }

    /// The element as a standalone document with an XML declaration.
    pub fn to_document(&self) -> String {
        let mut writer = Writer::new(Vec::new());
        // Writing into a Vec cannot fail.
        let _ = writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        self.write_into(&mut writer);
        String::from_utf8(writer.into_inner()).unwrap_or_default()
    }

    /// The element alone (no declaration).
    pub fn to_xml(&self) -> String {
        let mut writer = Writer::new(Vec::new());
        self.write_into(&mut writer);
        String::from_utf8(writer.into_inner()).unwrap_or_default()
    }

    fn write_into(&self, writer: &mut Writer<Vec<u8>>) {
        let mut start = BytesStart::new(self.name.as_str());
        for (name, value) in &self.attributes {
            start.push_attribute((name.as_str(), value.as_str()));
        }
        if self.children.is_empty() {
            let _ = writer.write_event(Event::Empty(start));
            return;
        }
        let _ = writer.write_event(Event::Start(start));
        for child in &self.children {
            match child {
                Content::Element(element) => element.write_into(writer),
                Content::Text(text) => {
                    let _ = writer.write_event(Event::Text(BytesText::new(text)));
                }
            }
        }
        let _ = writer.write_event(Event::End(BytesEnd::new(self.name.as_str())));
    }
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_document())
    }
}

fn ssml_element(node: &SsmlNode) -> Content {
    match node {
        SsmlNode::Text(text) => Content::Text(text.clone()),
        SsmlNode::Element(e) => {
            let mut element = Element::new(match e.kind {
                SsmlKind::SayAs => "say-as",
                other => other.tag(),
            });
            for (name, value) in &e.attributes {
                element = element.attr(name.clone(), value.clone());
            }
            for child in &e.children {
                element.children.push(ssml_element(child));
            }
            Content::Element(element)
        }
    }
}

/// Appends `node` as SSML markup.
pub(super) fn ssml_markup(node: &SsmlNode, out: &mut String) {
    match ssml_element(node) {
        Content::Text(text) => {
            out.push_str(&quick_xml::escape::escape(text.as_str()));
        }
        Content::Element(element) => out.push_str(&element.to_xml()),
    }
}

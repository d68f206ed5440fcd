//! Character classes of the RFC 3261 grammar and a small byte cursor used by the header
//! parsers. Everything here works on `&str` that has already been unfolded (LWS made into
//! plain spaces) by the message lexer.

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Whitespace inside a header value once folding is undone.
pub(crate) fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Characters that may appear in a host name. `_` is not in the grammar but real
/// deployments use it, and refusing a call for it helps nobody.
pub(crate) fn is_hostname_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
}

/// Characters allowed inside an IPv6 reference between the brackets.
pub(crate) fn is_ipv6_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || matches!(c, b':' | b'.')
}

/// Visible ASCII, no space.
pub(crate) fn is_visible(c: u8) -> bool {
    (0x21..=0x7e).contains(&c)
}

/// Percent-decodes `s` (`%HH` → byte). Malformed escapes are kept literally: the parser is
/// tolerant and a stray `%` in a user part must not make a call fail.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Percent-decodes into a `String`, replacing invalid UTF-8 (e.g. `%00` stays a NUL, which
/// is valid UTF-8; `%FF` becomes U+FFFD).
pub fn percent_decode_str(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    String::from_utf8_lossy(&percent_decode(s)).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits a header value into its comma-separated elements, ignoring commas inside quoted
/// strings and inside `<...>`. Elements are trimmed. Empty elements are kept (as empty
/// strings) so that callers can reject them where the grammar forbids them.
pub fn split_list(value: &str) -> Vec<&str> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_quotes {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_quotes = false;
            }
        } else {
            match c {
                b'"' => in_quotes = true,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    out.push(value[start..i].trim_matches(|c: char| c == ' ' || c == '\t'));
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    let last = value
        .get(start..)
        .unwrap_or("")
        .trim_matches(|c: char| c == ' ' || c == '\t');
    out.push(last);
    out
}

/// A forward-only cursor over a header value.
pub(crate) struct Cursor<'a> {
    pub(crate) s: &'a str,
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    /// Skips spaces and tabs; returns whether any were skipped.
    pub(crate) fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_ws(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.pos > start
    }

    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Takes bytes while `pred` holds. Only ASCII predicates are used, so the slice always
    /// ends on a char boundary.
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if pred(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        &self.s[start..self.pos]
    }

    pub(crate) fn token(&mut self) -> Option<&'a str> {
        let t = self.take_while(is_token_char);
        if t.is_empty() {
            None
        } else {
            Some(t)
        }
    }

    /// Parses a quoted string starting at the opening quote; returns the raw text including
    /// quotes. `None` when the closing quote is missing.
    pub(crate) fn quoted_raw(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        let b = self.s.as_bytes();
        while self.pos < b.len() {
            match b[self.pos] {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return self.s.get(start..self.pos);
                }
                _ => self.pos += 1,
            }
        }
        self.pos = b.len();
        None
    }
}

/// Removes the quotes and quoted-pair escapes of a raw quoted string.
pub(crate) fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes `s` as a quoted-string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_list_respects_quotes_and_angles() {
        assert_eq!(
            split_list(r#""a,b" <sip:x@y;p=1,2>;q=1, <sip:z>"#),
            vec![r#""a,b" <sip:x@y;p=1,2>;q=1"#, "<sip:z>"]
        );
        assert_eq!(split_list("a,,b"), vec!["a", "", "b"]);
    }

    #[test]
    fn percent_decoding_is_tolerant() {
        assert_eq!(percent_decode_str("%75se%72"), "user");
        assert_eq!(percent_decode_str("100%"), "100%");
        assert_eq!(percent_decode_str("%Z%45"), "%ZE");
        assert_eq!(percent_decode(" null-%00-null"), b" null-\0-null".to_vec());
    }

    #[test]
    fn unquote_handles_escapes() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(quote(r#"a"b\"#), r#""a\"b\\""#);
    }
}

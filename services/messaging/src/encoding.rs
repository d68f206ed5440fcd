//! GSM 03.38 and UCS-2: which one a body needs, and the bytes of each.
//!
//! GSM-7 text is kept *unpacked* here (one septet per byte), as SMPP carries it with
//! `data_coding` 0; a character of the extension table costs two septets (escape, code).
//! UCS-2 is UTF-16 big-endian (`data_coding` 8); characters outside the Basic Multilingual
//! Plane (emoji) take two units, as on every handset.

/// The escape septet that introduces a character of the extension table.
pub const ESCAPE: u8 = 0x1B;

/// `data_coding` of SMPP 3.4 for each encoding.
pub const DATA_CODING_GSM7: u8 = 0x00;
pub const DATA_CODING_UCS2: u8 = 0x08;

/// The GSM 03.38 default alphabet, by septet (0x1B is the escape, never a character).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (septet after the escape, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How a body goes on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    /// SMPP's `data_coding`.
    pub fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => DATA_CODING_GSM7,
            Encoding::Ucs2 => DATA_CODING_UCS2,
        }
    }

    /// Twilio's name for it (the `encoding` of a message's status callbacks).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

/// The septets of `c`: one for the default alphabet, escape + code for the extension table,
/// none when GSM-7 cannot carry it.
pub fn gsm7_septets(c: char) -> Option<&'static [u8]> {
    // Septet values as one-byte slices, so callers need not allocate.
    const SEPTETS: [u8; 128] = {
        let mut table = [0u8; 128];
        let mut i = 0;
        while i < 128 {
            table[i] = i as u8;
            i += 1;
        }
        table
    };
    const ESCAPED: [[u8; 2]; 10] = [
        [ESCAPE, 0x0A],
        [ESCAPE, 0x14],
        [ESCAPE, 0x28],
        [ESCAPE, 0x29],
        [ESCAPE, 0x2F],
        [ESCAPE, 0x3C],
        [ESCAPE, 0x3D],
        [ESCAPE, 0x3E],
        [ESCAPE, 0x40],
        [ESCAPE, 0x65],
    ];
    if c != '\u{1B}' {
        if let Some(septet) = BASIC.iter().position(|b| *b == c) {
            return Some(&SEPTETS[septet..septet + 1]);
        }
    }
    EXTENSION
        .iter()
        .position(|(_, e)| *e == c)
        .map(|i| &ESCAPED[i][..])
}

/// The encoding Twilio picks: GSM-7 when every character has a GSM-7 form, else UCS-2.
pub fn encoding_for(body: &str) -> Encoding {
    if body.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The unpacked septets of a GSM-7 body, or `None` if a character has no GSM-7 form.
pub fn to_gsm7(body: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    for c in body.chars() {
        out.extend_from_slice(gsm7_septets(c)?);
    }
    Some(out)
}

/// UTF-16 big-endian.
pub fn to_ucs2(body: &str) -> Vec<u8> {
    body.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Why received bytes are not text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("septet {0:#04x} is not GSM-7 (a septet is 0x00–0x7F)")]
    NotASeptet(u8),
    #[error("an odd number of bytes ({0}) is not UCS-2")]
    OddUcs2(usize),
    #[error(
        "data_coding {0:#04x} is not one Dialtone reads (0 GSM-7, 1 IA5/ASCII, 3 Latin-1, 8 UCS-2)"
    )]
    UnsupportedCoding(u8),
}

/// Text from unpacked GSM-7 septets. An escape before a code the extension table lacks
/// reads as the default-alphabet character (GSM 03.38's fallback); a trailing escape as a
/// space.
pub fn from_gsm7(septets: &[u8]) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(septets.len());
    let mut bytes = septets.iter().copied();
    while let Some(septet) = bytes.next() {
        if septet > 0x7F {
            return Err(DecodeError::NotASeptet(septet));
        }
        if septet != ESCAPE {
            out.push(BASIC[usize::from(septet)]);
            continue;
        }
        match bytes.next() {
            None => out.push(' '),
            Some(code) if code > 0x7F => return Err(DecodeError::NotASeptet(code)),
            Some(code) => match EXTENSION.iter().find(|(e, _)| *e == code) {
                Some((_, c)) => out.push(*c),
                None => out.push(BASIC[usize::from(code)]),
            },
        }
    }
    Ok(out)
}

/// Text from UTF-16 big-endian; unpaired surrogates become U+FFFD.
pub fn from_ucs2(bytes: &[u8]) -> Result<String, DecodeError> {
    if bytes.len() % 2 == 1 {
        return Err(DecodeError::OddUcs2(bytes.len()));
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// Text from an SMPP `short_message` in `data_coding`.
pub fn decode(data_coding: u8, bytes: &[u8]) -> Result<String, DecodeError> {
    match data_coding {
        DATA_CODING_GSM7 => from_gsm7(bytes),
        // IA5 (ASCII) and Latin-1: one byte a character.
        0x01 | 0x03 => Ok(bytes.iter().map(|b| char::from(*b)).collect()),
        DATA_CODING_UCS2 => from_ucs2(bytes),
        other => Err(DecodeError::UnsupportedCoding(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_round_trips_and_the_extension_costs_two_septets() {
        let every: String = BASIC
            .iter()
            .filter(|c| **c != '\u{1B}')
            .chain(EXTENSION.iter().map(|(_, c)| c))
            .collect();
        assert_eq!(encoding_for(&every), Encoding::Gsm7);
        let septets = to_gsm7(&every).unwrap();
        assert_eq!(septets.len(), 127 + 2 * 10);
        assert_eq!(from_gsm7(&septets).unwrap(), every);
        assert_eq!(to_gsm7("€").unwrap(), [ESCAPE, 0x65]);
        assert_eq!(to_gsm7("@$").unwrap(), [0x00, 0x02]);
    }

    #[test]
    fn anything_outside_gsm7_makes_the_body_ucs2() {
        assert_eq!(encoding_for("Your order is on its way"), Encoding::Gsm7);
        assert_eq!(encoding_for("Grüße aus Köln, señor"), Encoding::Gsm7);
        assert_eq!(
            encoding_for("Ñandú"),
            Encoding::Ucs2,
            "ú is not GSM-7 (ù is)"
        );
        assert_eq!(encoding_for("Delivered 📦"), Encoding::Ucs2);
        assert_eq!(encoding_for("Çа"), Encoding::Ucs2, "Cyrillic а");
        assert_eq!(
            encoding_for("`"),
            Encoding::Ucs2,
            "the backtick is not GSM-7"
        );
        assert_eq!(to_gsm7("📦"), None);
        let ucs2 = to_ucs2("A📦");
        assert_eq!(ucs2, [0x00, 0x41, 0xD8, 0x3D, 0xDC, 0xE6]);
        assert_eq!(from_ucs2(&ucs2).unwrap(), "A📦");
    }

    #[test]
    fn received_bytes_decode_by_their_data_coding() {
        assert_eq!(decode(0, &[0x48, 0x69, ESCAPE, 0x65]).unwrap(), "Hi€");
        assert_eq!(decode(1, b"plain").unwrap(), "plain");
        assert_eq!(decode(8, &[0x00, 0xE9]).unwrap(), "é");
        assert_eq!(decode(0, &[0x80]), Err(DecodeError::NotASeptet(0x80)));
        assert_eq!(decode(8, &[0x00]), Err(DecodeError::OddUcs2(1)));
        assert_eq!(decode(4, b"x"), Err(DecodeError::UnsupportedCoding(4)));
        // An escape before an unknown code falls back to the basic character.
        assert_eq!(decode(0, &[ESCAPE, 0x41]).unwrap(), "A");
    }
}

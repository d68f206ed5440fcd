//! Segments: a body longer than one SMS goes as several, each carrying a concatenation
//! header (UDH) that numbers it, and the handset joins them. Counted exactly as Twilio's
//! `num_segments`: one GSM-7 segment holds 160 septets, a concatenated one 153 (the header
//! takes the rest); UCS-2, 70 and 67 UTF-16 units. A character is never split across
//! segments (an extension-table escape and its code, a surrogate pair stay together).
//!
//! Inbound, [`Reassembly`] joins the parts of a concatenated message as they arrive (in any
//! order), and gives up on parts that wait too long for the rest.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::encoding::{self, encoding_for, gsm7_septets, Encoding};

pub const GSM7_SINGLE: usize = 160;
pub const GSM7_CONCATENATED: usize = 153;
pub const UCS2_SINGLE: usize = 70;
pub const UCS2_CONCATENATED: usize = 67;
/// SMPP `esm_class` bit: the short message starts with a user data header.
pub const ESM_CLASS_UDHI: u8 = 0x40;

/// A body as the carrier gets it: its encoding and each segment's payload (GSM-7 septets
/// unpacked, or UCS-2 big-endian), without headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmented {
    pub encoding: Encoding,
    pub parts: Vec<Vec<u8>>,
}

/// Splits `body` into units (what one character costs) and packs them greedily.
fn pack(units: &[(usize, Vec<u8>)], single: usize, concatenated: usize) -> Vec<Vec<u8>> {
    let total: usize = units.iter().map(|(n, _)| n).sum();
    if total <= single {
        return vec![units.iter().flat_map(|(_, b)| b.iter().copied()).collect()];
    }
    let mut parts = Vec::new();
    let (mut part, mut used) = (Vec::new(), 0);
    for (cost, bytes) in units {
        if used + cost > concatenated {
            parts.push(std::mem::take(&mut part));
            used = 0;
        }
        part.extend_from_slice(bytes);
        used += cost;
    }
    parts.push(part);
    parts
}

/// `body` in the encoding Twilio would pick, cut into segments.
pub fn segment(body: &str) -> Segmented {
    let encoding = encoding_for(body);
    let units: Vec<(usize, Vec<u8>)> = match encoding {
        Encoding::Gsm7 => body
            .chars()
            .map(|c| {
                let septets = gsm7_septets(c).unwrap_or_default();
                (septets.len(), septets.to_vec())
            })
            .collect(),
        Encoding::Ucs2 => body
            .chars()
            .map(|c| {
                let bytes = encoding::to_ucs2(c.encode_utf8(&mut [0; 4]));
                (bytes.len() / 2, bytes)
            })
            .collect(),
    };
    let parts = match encoding {
        Encoding::Gsm7 => pack(&units, GSM7_SINGLE, GSM7_CONCATENATED),
        Encoding::Ucs2 => pack(&units, UCS2_SINGLE, UCS2_CONCATENATED),
    };
    Segmented { encoding, parts }
}

/// Twilio's `num_segments` of `body`.
pub fn num_segments(body: &str) -> usize {
    segment(body).parts.len()
}

/// Where a part sits in its concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concatenation {
    pub reference: u16,
    pub total: u8,
    /// From 1.
    pub sequence: u8,
}

/// The user data header of part `sequence` of `total` (8-bit reference, IE 0x00).
pub fn concatenation_header(reference: u8, total: u8, sequence: u8) -> [u8; 6] {
    [0x05, 0x00, 0x03, reference, total, sequence]
}

/// Why a user data header does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the user data header is longer ({length} bytes) than the message ({available})")]
    TooLong { length: usize, available: usize },
    #[error("a concatenation element is malformed")]
    BadConcatenation,
}

/// Splits a `short_message` sent with [`ESM_CLASS_UDHI`] into its concatenation element
/// (8- or 16-bit reference; `None` when the header holds none) and the text after the
/// header. Other elements are skipped.
pub fn split_header(message: &[u8]) -> Result<(Option<Concatenation>, &[u8]), HeaderError> {
    let Some((&length, rest)) = message.split_first() else {
        return Ok((None, message));
    };
    let length = usize::from(length);
    if length > rest.len() {
        return Err(HeaderError::TooLong {
            length,
            available: rest.len(),
        });
    }
    let (mut header, text) = rest.split_at(length);
    let mut concatenation = None;
    while let [id, size, tail @ ..] = header {
        let size = usize::from(*size);
        if size > tail.len() {
            return Err(HeaderError::TooLong {
                length: size,
                available: tail.len(),
            });
        }
        let (value, next) = tail.split_at(size);
        concatenation = match (id, value) {
            (0x00, [reference, total, sequence]) => Some(Concatenation {
                reference: u16::from(*reference),
                total: *total,
                sequence: *sequence,
            }),
            (0x08, [high, low, total, sequence]) => Some(Concatenation {
                reference: u16::from_be_bytes([*high, *low]),
                total: *total,
                sequence: *sequence,
            }),
            (0x00 | 0x08, _) => return Err(HeaderError::BadConcatenation),
            _ => concatenation,
        };
        header = next;
    }
    match concatenation {
        Some(c) if c.total == 0 || c.sequence == 0 || c.sequence > c.total => {
            Err(HeaderError::BadConcatenation)
        }
        other => Ok((other, text)),
    }
}

struct Pending {
    data_coding: u8,
    total: u8,
    parts: BTreeMap<u8, Vec<u8>>,
    first_seen: Instant,
}

/// A message assembled from its parts (or what came of it before it was given up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub sender: String,
    pub data_coding: u8,
    /// The parts' payloads joined in order.
    pub payload: Vec<u8>,
    pub parts: usize,
    /// All parts arrived.
    pub complete: bool,
}

/// Joins inbound concatenated messages, per sender and reference. Pure: fed with parts and
/// the time.
pub struct Reassembly {
    pending: HashMap<(String, u16), Pending>,
    timeout: Duration,
}

impl Reassembly {
    /// Parts of one message wait at most `timeout` for the others.
    pub fn new(timeout: Duration) -> Reassembly {
        Reassembly {
            pending: HashMap::new(),
            timeout,
        }
    }

    /// A part arrived; the whole message once its last part is in. A repeated part replaces
    /// the earlier copy (an SMSC retry).
    pub fn push(
        &mut self,
        sender: &str,
        data_coding: u8,
        concatenation: Concatenation,
        payload: &[u8],
        now: Instant,
    ) -> Option<Assembled> {
        let key = (sender.to_owned(), concatenation.reference);
        let pending = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            data_coding,
            total: concatenation.total,
            parts: BTreeMap::new(),
            first_seen: now,
        });
        pending
            .parts
            .insert(concatenation.sequence, payload.to_vec());
        if pending.parts.len() < usize::from(pending.total) {
            return None;
        }
        let pending = self.pending.remove(&key)?;
        Some(assemble(key.0, pending, true))
    }

    /// The messages whose parts waited longer than the timeout, with what arrived.
    pub fn expire(&mut self, now: Instant) -> Vec<Assembled> {
        let timeout = self.timeout;
        let expired: Vec<(String, u16)> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.first_seen) >= timeout)
            .map(|(key, _)| key.clone())
            .collect();
        let mut out: Vec<Assembled> = expired
            .into_iter()
            .filter_map(|key| {
                let pending = self.pending.remove(&key)?;
                Some(assemble(key.0, pending, false))
            })
            .collect();
        out.sort_by(|a, b| a.sender.cmp(&b.sender));
        out
    }

    /// When the oldest waiting message expires, if any waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.first_seen + self.timeout)
            .min()
    }
}

fn assemble(sender: String, pending: Pending, complete: bool) -> Assembled {
    Assembled {
        sender,
        data_coding: pending.data_coding,
        parts: pending.parts.len(),
        payload: pending.parts.into_values().flatten().collect(),
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{decode, from_gsm7, from_ucs2, ESCAPE};

    #[test]
    fn segments_are_counted_like_twilio() {
        assert_eq!(num_segments(&"a".repeat(160)), 1);
        assert_eq!(num_segments(&"a".repeat(161)), 2);
        assert_eq!(num_segments(&"a".repeat(200)), 2);
        assert_eq!(num_segments(&"a".repeat(306)), 2);
        assert_eq!(num_segments(&"a".repeat(307)), 3);
        // An extension character costs two septets: 80 euros fill one segment.
        assert_eq!(num_segments(&"€".repeat(80)), 1);
        assert_eq!(num_segments(&"€".repeat(81)), 2);
        assert_eq!(num_segments(&"é".repeat(70)), 1, "é is GSM-7");
        assert_eq!(num_segments(&"ж".repeat(70)), 1);
        assert_eq!(num_segments(&"ж".repeat(71)), 2);
        assert_eq!(num_segments(&"ж".repeat(134)), 2);
        assert_eq!(num_segments(&"ж".repeat(135)), 3);
        // An emoji is two UTF-16 units: 35 fill one segment.
        assert_eq!(num_segments(&"📦".repeat(35)), 1);
        assert_eq!(num_segments(&"📦".repeat(36)), 2);
    }

    #[test]
    fn no_character_is_split_across_segments() {
        // 152 septets then a euro (2): the euro moves whole to the second segment.
        let body = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let segmented = segment(&body);
        assert_eq!(segmented.parts.len(), 2);
        assert_eq!(segmented.parts[0].len(), 152);
        assert_eq!(segmented.parts[1][..2], [ESCAPE, 0x65]);
        let joined: Vec<u8> = segmented.parts.concat();
        assert_eq!(from_gsm7(&joined).unwrap(), body);
        // 66 units then an emoji (2 units): the pair stays together.
        let body = format!("{}📦{}", "ж".repeat(66), "ж".repeat(10));
        let segmented = segment(&body);
        assert_eq!(segmented.encoding, Encoding::Ucs2);
        assert_eq!(segmented.parts.len(), 2);
        assert_eq!(segmented.parts[0].len(), 66 * 2);
        assert_eq!(
            from_ucs2(&segmented.parts[1]).unwrap(),
            format!("📦{}", "ж".repeat(10))
        );
    }

    #[test]
    fn a_header_carries_the_part_and_reads_back() {
        let mut message = concatenation_header(0x2A, 3, 2).to_vec();
        message.extend_from_slice(b"hello");
        let (concatenation, text) = split_header(&message).unwrap();
        assert_eq!(
            concatenation,
            Some(Concatenation {
                reference: 0x2A,
                total: 3,
                sequence: 2
            })
        );
        assert_eq!(text, b"hello");
        // A 16-bit reference, after an element we do not know.
        let message = [
            0x09, 0x24, 0x01, 0x00, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01, b'x',
        ];
        let (concatenation, text) = split_header(&message).unwrap();
        assert_eq!(concatenation.map(|c| c.reference), Some(0x1234));
        assert_eq!(text, b"x");
        assert!(matches!(
            split_header(&[0x09, 0x00, 0x03]),
            Err(HeaderError::TooLong { .. })
        ));
        assert_eq!(
            split_header(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x03]),
            Err(HeaderError::BadConcatenation),
            "part 3 of 2"
        );
        assert_eq!(
            split_header(&[0x04, 0x00, 0x02, 0x01, 0x02]),
            Err(HeaderError::BadConcatenation)
        );
    }

    #[test]
    fn parts_join_in_order_whatever_order_they_come_in() {
        let t0 = Instant::now();
        let mut reassembly = Reassembly::new(Duration::from_secs(60));
        let part = |sequence| Concatenation {
            reference: 7,
            total: 3,
            sequence,
        };
        assert_eq!(reassembly.push("+1415", 0, part(3), b"c", t0), None);
        assert_eq!(reassembly.push("+1415", 0, part(1), b"a", t0), None);
        // Another sender's message with the same reference is another message.
        assert_eq!(reassembly.push("+1212", 0, part(1), b"x", t0), None);
        let done = reassembly.push("+1415", 0, part(2), b"b", t0).unwrap();
        assert!(done.complete);
        assert_eq!(decode(done.data_coding, &done.payload).unwrap(), "abc");
        assert_eq!(
            reassembly.next_deadline(),
            Some(t0 + Duration::from_secs(60))
        );
        // The other one never completes: given up with what came.
        assert!(reassembly.expire(t0 + Duration::from_secs(59)).is_empty());
        let expired = reassembly.expire(t0 + Duration::from_secs(60));
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].sender.as_str(), expired[0].complete),
            ("+1212", false)
        );
        assert_eq!(reassembly.next_deadline(), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::encoding::decode;

    proptest! {
        /// Every body comes back whole from its segments, none over its limit.
        #[test]
        fn segments_rejoin_into_the_body(body in "[a-z €{}é\\n]{0,400}|[a-zж📦 ]{0,200}") {
            let segmented = segment(&body);
            let (single, part) = match segmented.encoding {
                Encoding::Gsm7 => (GSM7_SINGLE, GSM7_CONCATENATED),
                Encoding::Ucs2 => (UCS2_SINGLE * 2, UCS2_CONCATENATED * 2),
            };
            let limit = if segmented.parts.len() == 1 { single } else { part };
            prop_assert!(segmented.parts.iter().all(|p| p.len() <= limit));
            let joined = segmented.parts.concat();
            prop_assert_eq!(decode(segmented.encoding.data_coding(), &joined).unwrap(), body);
        }
    }
}

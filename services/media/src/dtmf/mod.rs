//! DTMF: RFC 4733 telephone-events (send and receive) and in-band tone detection (Goertzel).

pub mod goertzel;
pub mod rfc4733;

pub use dialtone_events::payload::DtmfSource;

/// The 16 DTMF keys in RFC 4733 event-code order (0-9, *, #, A-D).
pub const DTMF_KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// Row (low group) frequencies in Hz.
pub const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies in Hz.
pub const COL_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// A detected key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub digit: char,
    pub duration_ms: u32,
}

/// The RFC 4733 event code of a key (accepts lowercase a-d).
pub fn event_code(key: char) -> Option<u8> {
    let key = key.to_ascii_uppercase();
    DTMF_KEYS.iter().position(|k| *k == key).map(|p| p as u8)
}

/// The key of an RFC 4733 event code (0-15).
pub fn key_of_event(code: u8) -> Option<char> {
    DTMF_KEYS.get(usize::from(code)).copied()
}

/// The (row, column) frequencies of a key.
pub fn key_frequencies(key: char) -> Option<(f32, f32)> {
    let key = key.to_ascii_uppercase();
    for (r, row) in KEYPAD.iter().enumerate() {
        for (c, k) in row.iter().enumerate() {
            if *k == key {
                return Some((ROW_HZ[r], COL_HZ[c]));
            }
        }
    }
    None
}

pub(crate) fn key_at(row: usize, col: usize) -> char {
    KEYPAD[row][col]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes() {
        assert_eq!(event_code('0'), Some(0));
        assert_eq!(event_code('9'), Some(9));
        assert_eq!(event_code('*'), Some(10));
        assert_eq!(event_code('#'), Some(11));
        assert_eq!(event_code('d'), Some(15));
        assert_eq!(event_code('x'), None);
        for code in 0..16u8 {
            assert_eq!(event_code(key_of_event(code).unwrap()), Some(code));
        }
        assert_eq!(key_of_event(16), None);
    }

    #[test]
    fn keypad_frequencies() {
        assert_eq!(key_frequencies('1'), Some((697.0, 1209.0)));
        assert_eq!(key_frequencies('0'), Some((941.0, 1336.0)));
        assert_eq!(key_frequencies('#'), Some((941.0, 1477.0)));
        assert_eq!(key_frequencies('D'), Some((941.0, 1633.0)));
        assert_eq!(key_frequencies('w'), None);
    }
}

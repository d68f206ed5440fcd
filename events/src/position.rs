//! Resumable positions as opaque tokens, for clients of the event stream API and the CLI.
//!
//! A token names a [`Cursor`]: resuming "after" it delivers exactly the events the cursor has
//! not passed, with no gap and no duplicate. The two backends write different tokens, so a
//! token from one is refused by the other with a clear error instead of silently meaning
//! something else:
//!
//! - **SQLite**: the decimal position of the last event passed (`1234`), the number an
//!   auditor also sees in the `position` column of `events.db`; `0` is the beginning.
//! - **Kafka**: `k` followed by the base64url (unpadded) of the next offset of every partition
//!   of the log, in topic and partition order, as LEB128 varints after their count. The count
//!   ties a token to the log's shape: a token of a log with other partitions is refused.
//!
//! `0` means the beginning on both.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::log::Cursor;

/// Why a position token cannot be used with this log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("{token:?} is not a position: expected {expected}")]
    Malformed {
        token: String,
        expected: &'static str,
    },
    #[error("{token:?} is a position of the {other} event log; this server runs on {this}")]
    OtherBackend {
        token: String,
        other: &'static str,
        this: &'static str,
    },
    #[error("{token:?} names {found} partitions; this event log has {expected}")]
    OtherTopology {
        token: String,
        found: usize,
        expected: usize,
    },
}

/// The token of the beginning of either log.
pub const START_TOKEN: &str = "0";

/// SQLite: the last position `cursor` has passed in `partition`.
pub fn sqlite_token(cursor: &Cursor, partition: &str) -> String {
    cursor.next_offset(partition).saturating_sub(1).to_string()
}

/// SQLite: the cursor just past position `token`.
pub fn parse_sqlite_token(token: &str, partition: &str) -> Result<Cursor, PositionError> {
    if token.starts_with('k') {
        return Err(PositionError::OtherBackend {
            token: token.to_owned(),
            other: "kafka",
            this: "sqlite",
        });
    }
    let malformed = || PositionError::Malformed {
        token: token.to_owned(),
        expected: "a decimal event position such as 1234 (0 for the beginning)",
    };
    if token.is_empty() || token.len() > 20 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let last: u64 = token.parse().map_err(|_| malformed())?;
    let mut cursor = Cursor::start();
    if last > 0 {
        cursor.0.insert(partition.to_owned(), last + 1);
    }
    Ok(cursor)
}

/// Kafka: the token of `cursor` over `partitions` (every partition of the log, in order).
pub fn kafka_token(cursor: &Cursor, partitions: &[String]) -> String {
    let mut bytes = Vec::with_capacity(2 + partitions.len() * 3);
    push_varint(&mut bytes, partitions.len() as u64);
    for partition in partitions {
        push_varint(&mut bytes, cursor.next_offset(partition));
    }
    let mut token = String::with_capacity(1 + bytes.len() * 4 / 3 + 2);
    token.push('k');
    URL_SAFE_NO_PAD.encode_string(&bytes, &mut token);
    token
}

/// Kafka: the cursor named by `token` over `partitions`.
pub fn parse_kafka_token(token: &str, partitions: &[String]) -> Result<Cursor, PositionError> {
    if token == START_TOKEN {
        return Ok(Cursor::start());
    }
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PositionError::OtherBackend {
            token: token.to_owned(),
            other: "sqlite",
            this: "kafka",
        });
    }
    let malformed = || PositionError::Malformed {
        token: token.to_owned(),
        expected: "a Kafka position token (k…) as sent in an event's id",
    };
    let encoded = token.strip_prefix('k').ok_or_else(malformed)?;
    if encoded.len() > 16 * 1024 {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
    let mut input = bytes.as_slice();
    let count = read_varint(&mut input).ok_or_else(malformed)?;
    if count != partitions.len() as u64 {
        return Err(PositionError::OtherTopology {
            token: token.to_owned(),
            found: usize::try_from(count).unwrap_or(usize::MAX),
            expected: partitions.len(),
        });
    }
    let mut cursor = Cursor::start();
    for partition in partitions {
        let next = read_varint(&mut input).ok_or_else(malformed)?;
        if next > 0 {
            cursor.0.insert(partition.clone(), next);
        }
    }
    if !input.is_empty() {
        return Err(malformed());
    }
    Ok(cursor)
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions() -> Vec<String> {
        (0..12).map(|i| format!("dialtone.calls/{i}")).collect()
    }

    #[test]
    fn sqlite_tokens_are_the_last_position() {
        let cursor = parse_sqlite_token("1234", "log").unwrap();
        assert_eq!(cursor.next_offset("log"), 1235);
        assert_eq!(sqlite_token(&cursor, "log"), "1234");
        assert_eq!(parse_sqlite_token("0", "log").unwrap(), Cursor::start());
        assert_eq!(sqlite_token(&Cursor::start(), "log"), "0");
        for bad in ["", "-1", "12a", "1.5", "99999999999999999999999"] {
            assert!(
                matches!(
                    parse_sqlite_token(bad, "log"),
                    Err(PositionError::Malformed { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_sqlite_token("kAQI", "log"),
            Err(PositionError::OtherBackend { other: "kafka", .. })
        ));
    }

    #[test]
    fn kafka_tokens_round_trip() {
        let parts = partitions();
        let mut cursor = Cursor::start();
        cursor.0.insert(parts[0].clone(), 5);
        cursor.0.insert(parts[7].clone(), 1_000_000_007);
        let token = kafka_token(&cursor, &parts);
        assert!(token.starts_with('k'));
        assert_eq!(parse_kafka_token(&token, &parts).unwrap(), cursor);
        assert_eq!(parse_kafka_token("0", &parts).unwrap(), Cursor::start());
        assert_eq!(
            parse_kafka_token(&kafka_token(&Cursor::start(), &parts), &parts).unwrap(),
            Cursor::start()
        );
    }

    #[test]
    fn kafka_tokens_refuse_other_logs() {
        let parts = partitions();
        let token = kafka_token(&Cursor::start(), &parts[..3]);
        assert!(matches!(
            parse_kafka_token(&token, &parts),
            Err(PositionError::OtherTopology {
                found: 3,
                expected: 12,
                ..
            })
        ));
        assert!(matches!(
            parse_kafka_token("1234", &parts),
            Err(PositionError::OtherBackend {
                other: "sqlite",
                ..
            })
        ));
        for bad in ["", "x", "k!!", "k", "kAP____"] {
            assert!(
                matches!(
                    parse_kafka_token(bad, &parts),
                    Err(PositionError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }
}

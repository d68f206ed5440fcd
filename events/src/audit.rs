//! Integrity checks over the log: gap-free sequences and an unbroken hash chain per stream.

use std::collections::HashMap;

use crate::envelope::{Event, GENESIS_HASH};
use crate::log::{Cursor, EventLog, LogError};

/// The first integrity failure found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub stream: String,
    pub sequence: u64,
    pub reason: String,
}

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyReport {
    Ok { streams: u64, events: u64 },
    Broken(Broken),
}

/// Checks events fed in per-stream order (streams may interleave).
#[derive(Default)]
pub struct Verifier {
    heads: HashMap<String, (u64, String)>,
    pub events: u64,
}

impl Verifier {
    /// Checks the next event of its stream. `stored_hash` is the hash the backend recorded
    /// for the event, if it keeps one (it catches an edit of a stream's last event).
    pub fn check(&mut self, event: &Event, stored_hash: Option<&str>) -> Result<(), Broken> {
        let broken = |reason: String| Broken {
            stream: event.subject.clone(),
            sequence: event.sequence,
            reason,
        };
        let (last_sequence, last_hash) = self
            .heads
            .get(&event.subject)
            .map(|(s, h)| (*s, h.as_str()))
            .unwrap_or((0, GENESIS_HASH));
        if event.sequence != last_sequence + 1 {
            return Err(broken(format!(
                "sequence {} follows {}",
                event.sequence, last_sequence
            )));
        }
        if event.prevhash != last_hash {
            return Err(broken(format!(
                "prevhash {} does not match the previous event's hash {}",
                event.prevhash, last_hash
            )));
        }
        let hash = event.hash();
        if let Some(stored) = stored_hash {
            if stored != hash {
                return Err(broken(format!(
                    "content hash {hash} does not match the stored hash {stored}"
                )));
            }
        }
        self.events += 1;
        self.heads
            .insert(event.subject.clone(), (event.sequence, hash));
        Ok(())
    }

    pub fn finish(self) -> VerifyReport {
        VerifyReport::Ok {
            streams: self.heads.len() as u64,
            events: self.events,
        }
    }
}

/// Verifies any log by reading it from the start (per-stream order is log order).
pub async fn verify_log(
    log: &dyn EventLog,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, LogError> {
    let mut cursor = Cursor::start();
    let head = log.head().await?;
    let mut verifier = Verifier::default();
    loop {
        let page = log.read_all(&cursor, 5_000).await?;
        if page.is_empty() {
            break;
        }
        for recorded in &page {
            cursor.advance(&recorded.position);
            if let Err(broken) = verifier.check(&recorded.event, None) {
                return Ok(VerifyReport::Broken(broken));
            }
        }
        progress(verifier.events);
        if head
            .0
            .iter()
            .all(|(p, next)| cursor.next_offset(p) >= *next)
        {
            break;
        }
    }
    Ok(verifier.finish())
}

//! Recordings: metadata and media location, from `call.recording.*` events.

use dialtone_events::{Payload, RecordedEvent};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::{Date, OffsetDateTime};

use crate::calls::DateFilter;
use crate::paging::{created_sort_key, read_page, ListQuery, Order, Page, PageRequest, SortKey};
use crate::projection::{decode, load_time, sql, store_time, Projection, ProjectionError};

/// A recording as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    pub sid: String,
    pub account_sid: String,
    pub call_sid: String,
    /// `in-progress`, `completed`, `absent`, `deleted`.
    pub status: String,
    pub source: String,
    pub channels: u8,
    pub duration_ms: Option<u64>,
    /// WAV path relative to the data dir, once completed.
    pub path: Option<String>,
    pub error_code: Option<u32>,
    pub start_time: OffsetDateTime,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS recordings (
    sid          TEXT PRIMARY KEY,
    account_sid  TEXT NOT NULL,
    call_sid     TEXT NOT NULL,
    status       TEXT NOT NULL,
    source       TEXT NOT NULL,
    channels     INTEGER NOT NULL,
    duration_ms  INTEGER,
    path         TEXT,
    error_code   INTEGER,
    start_time   TEXT NOT NULL,
    date_created TEXT NOT NULL,
    date_updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_by_account ON recordings (account_sid, date_created, sid);
CREATE INDEX IF NOT EXISTS recordings_by_call ON recordings (call_sid);
";

const COLUMNS: &str = "sid, account_sid, call_sid, status, source, channels, duration_ms, path,
    error_code, start_time, date_created, date_updated";

type RawRecording = (
    (String, String, String, String, String, u8),
    (Option<u64>, Option<String>, Option<u32>),
    (String, String, String),
);

fn read_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecording> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ),
        (r.get(6)?, r.get(7)?, r.get(8)?),
        (r.get(9)?, r.get(10)?, r.get(11)?),
    ))
}

fn to_row(raw: RawRecording) -> Result<RecordingRow, ProjectionError> {
    let (
        (sid, account_sid, call_sid, status, source, channels),
        (duration_ms, path, error_code),
        (start, created, updated),
    ) = raw;
    Ok(RecordingRow {
        sid,
        account_sid,
        call_sid,
        status,
        source,
        channels,
        duration_ms,
        path,
        error_code,
        start_time: load_time("recordings", &start)?,
        date_created: load_time("recordings", &created)?,
        date_updated: load_time("recordings", &updated)?,
    })
}

/// A recording by SID if it belongs to `account_sid` (deleted ones included: their
/// `status` is `deleted`).
pub fn get_recording(
    conn: &Connection,
    account_sid: &str,
    sid: &str,
) -> Result<Option<RecordingRow>, ProjectionError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM recordings WHERE sid = ?1 AND account_sid = ?2"
    ))
    .and_then(|mut s| s.query_row([sid, account_sid], read_raw).optional())
    .map_err(sql("reading a recording"))?
    .map(to_row)
    .transpose()
}

/// Filters of the Recordings list.
#[derive(Debug, Clone, Default)]
pub struct RecordingFilter {
    pub call_sid: Option<String>,
    /// Twilio's `DateCreated`, `DateCreated<`, `DateCreated>` (UTC days, inclusive).
    pub date_created: DateFilter,
    /// Twilio's `IncludeSoftDeleted`: list deleted recordings too.
    pub include_deleted: bool,
}

/// `YYYY-MM-DD`: as a prefix of stored times it sorts before every time of that day.
fn day_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The account's recordings, newest first.
pub fn list_recordings(
    conn: &Connection,
    account_sid: &str,
    filter: &RecordingFilter,
    page: &PageRequest,
) -> Result<Page<RecordingRow>, ProjectionError> {
    let mut conditions = vec!["account_sid = ?".to_owned()];
    let mut values = vec![Value::Text(account_sid.to_owned())];
    if let Some(call_sid) = &filter.call_sid {
        conditions.push("call_sid = ?".to_owned());
        values.push(Value::Text(call_sid.clone()));
    }
    if !filter.include_deleted {
        conditions.push("status <> 'deleted'".to_owned());
    }
    let dates = &filter.date_created;
    for (from, through) in [
        (dates.on, dates.on),
        (dates.on_or_after, dates.on_or_before),
    ] {
        if let Some(from) = from {
            conditions.push("date_created >= ?".to_owned());
            values.push(Value::Text(day_text(from)));
        }
        // Before the start of the next day (no upper bound at the end of time).
        if let Some(next) = through.and_then(|d| d.next_day()) {
            conditions.push("date_created < ?".to_owned());
            values.push(Value::Text(day_text(next)));
        }
    }
    let list = ListQuery {
        select: &format!("SELECT {COLUMNS} FROM recordings"),
        order: Order::Descending,
        primary_col: "date_created",
        sid_col: "sid",
        context: "listing recordings",
    };
    read_page(conn, &list, conditions, values, page, read_raw, to_row)
}

/// The sort key of a recording in its list.
pub fn recording_sort_key(row: &RecordingRow) -> SortKey {
    created_sort_key(row.date_created, &row.sid)
}

/// Projects recording events into `recordings`.
#[derive(Default)]
pub struct RecordingsProjection;

impl RecordingsProjection {
    pub fn new() -> RecordingsProjection {
        RecordingsProjection
    }
}

impl Projection for RecordingsProjection {
    fn name(&self) -> &'static str {
        "recordings"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["recordings"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating recordings"))
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type.starts_with("dialtone.call.recording.")
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let time = store_time(event.time);
        match decode(recorded) {
            Some(Payload::RecordingStarted(started)) => {
                tx.prepare_cached(
                    "INSERT INTO recordings (sid, account_sid, call_sid, status, source, channels,
                        start_time, date_created, date_updated)
                     VALUES (?1, ?2, ?3, 'in-progress', ?4, ?5, ?6, ?6, ?6)
                     ON CONFLICT (sid) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        started.recording_sid.as_str(),
                        event.accountsid,
                        event.subject,
                        started.source,
                        started.channels,
                        time
                    ])
                })
                .map_err(sql("inserting a recording"))?;
            }
            Some(Payload::RecordingCompleted(done)) => {
                // Upsert: a recording may complete without a `started` (e.g. older logs).
                tx.prepare_cached(
                    "INSERT INTO recordings (sid, account_sid, call_sid, status, source, channels,
                        duration_ms, path, error_code, start_time, date_created, date_updated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)
                     ON CONFLICT (sid) DO UPDATE SET status = excluded.status,
                        channels = excluded.channels, duration_ms = excluded.duration_ms,
                        path = excluded.path, error_code = excluded.error_code,
                        date_updated = excluded.date_updated",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        done.recording_sid.as_str(),
                        event.accountsid,
                        event.subject,
                        done.status,
                        done.source,
                        done.channels,
                        done.duration_ms,
                        done.path,
                        done.error_code,
                        time
                    ])
                })
                .map_err(sql("completing a recording"))?;
            }
            Some(Payload::RecordingDeleted(deleted)) => {
                tx.prepare_cached(
                    "UPDATE recordings SET status = 'deleted', date_updated = ?2 WHERE sid = ?1",
                )
                .and_then(|mut s| s.execute(params![deleted.recording_sid.as_str(), time]))
                .map_err(sql("deleting a recording"))?;
            }
            _ => {}
        }
        Ok(())
    }
}

//! Calls: the Call resource, from the `call.initiated/ringing/answered/rejected/completed`
//! events. The state machine ([`CallRow::initiated`], [`CallRow::apply`]) is pure; the
//! projection loads a row, applies the event and writes it back.
//!
//! A call's price is not on this table: the billing projection owns it (`billing_legs`) so
//! that re-rating rebuilds only billing. Queries join the two ([`get_call`], [`list_calls`]).

use std::collections::HashMap;

use dialtone_events::payload::{CallInitiated, CallStatus, Direction};
use dialtone_events::{Payload, RecordedEvent};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::{Date, OffsetDateTime};

use crate::paging::{created_sort_key, read_page, ListQuery, Order, Page, PageRequest, SortKey};
use crate::projection::{
    decode, load_time, load_time_opt, sql, store_time, Projection, ProjectionError,
};

/// Parses a direction as stored (`inbound`, `outbound-api`, `outbound-dial`).
pub fn parse_direction(value: &str) -> Option<Direction> {
    match value {
        "inbound" => Some(Direction::Inbound),
        "outbound-api" => Some(Direction::OutboundApi),
        "outbound-dial" => Some(Direction::OutboundDial),
        _ => None,
    }
}

/// Parses a Twilio call status.
pub fn parse_status(value: &str) -> Option<CallStatus> {
    [
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Canceled,
    ]
    .into_iter()
    .find(|s| s.as_str() == value)
}

/// One call leg as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    pub sid: String,
    pub account_sid: String,
    pub parent_call_sid: Option<String>,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub forwarded_from: Option<String>,
    pub phone_number_sid: Option<String>,
    pub owner_node: String,
    pub status: CallStatus,
    /// When the call was answered (Twilio's `start_time`).
    pub start_time: Option<OffsetDateTime>,
    pub end_time: Option<OffsetDateTime>,
    /// Whole seconds answered; `None` unless the call was answered and has ended.
    pub duration_s: Option<u64>,
    /// Exact answered milliseconds, from `call.completed`.
    pub answered_ms: Option<u64>,
    /// Milliseconds an outbound call waited in `queued`.
    pub queue_time_ms: u64,
    pub hangup_by: Option<String>,
    pub sip_code: Option<u16>,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

fn millis_between(from: OffsetDateTime, to: OffsetDateTime) -> u64 {
    u64::try_from((to - from).whole_milliseconds()).unwrap_or(0)
}

impl CallRow {
    /// The row a `call.initiated` creates. Inbound calls start `ringing` (Twilio's status on
    /// the first voice-URL request); outbound legs start `queued`.
    pub fn initiated(
        sid: &str,
        account_sid: &str,
        time: OffsetDateTime,
        initiated: &CallInitiated,
    ) -> CallRow {
        CallRow {
            sid: sid.to_owned(),
            account_sid: account_sid.to_owned(),
            parent_call_sid: initiated.parent_call_sid.as_ref().map(|s| s.to_string()),
            direction: initiated.direction,
            from: initiated.from.clone(),
            to: initiated.to.clone(),
            forwarded_from: initiated.forwarded_from.clone(),
            phone_number_sid: initiated.phone_number_sid.as_ref().map(|s| s.to_string()),
            owner_node: initiated.owner_node.clone(),
            status: match initiated.direction {
                Direction::Inbound => CallStatus::Ringing,
                Direction::OutboundApi | Direction::OutboundDial => CallStatus::Queued,
            },
            start_time: None,
            end_time: None,
            duration_s: None,
            answered_ms: None,
            queue_time_ms: 0,
            hangup_by: None,
            sip_code: None,
            date_created: time,
            date_updated: time,
        }
    }

    /// Leaving `queued` ends the queue time.
    fn leave_queue(&mut self, time: OffsetDateTime) {
        if self.status == CallStatus::Queued {
            self.queue_time_ms = millis_between(self.date_created, time);
        }
    }

    /// Applies a later call event at `time`; returns whether the row changed. Once a call
    /// has a final status only `call.completed` may change it (it carries the final truth).
    pub fn apply(&mut self, payload: &Payload, time: OffsetDateTime) -> bool {
        match payload {
            Payload::CallRinging(_) if !self.status.is_final() => {
                if matches!(self.status, CallStatus::Queued | CallStatus::Ringing) {
                    self.leave_queue(time);
                    self.status = CallStatus::Ringing;
                }
            }
            Payload::CallAnswered(_) if !self.status.is_final() => {
                self.leave_queue(time);
                self.status = CallStatus::InProgress;
                self.start_time.get_or_insert(time);
            }
            Payload::CallRejected(rejected) if !self.status.is_final() => {
                self.leave_queue(time);
                self.status = if rejected.reason == "busy" {
                    CallStatus::Busy
                } else {
                    CallStatus::Failed
                };
                self.sip_code = Some(rejected.sip_code);
                self.end_time = Some(time);
            }
            Payload::CallCompleted(completed) => {
                self.leave_queue(time);
                if self.start_time.is_none() {
                    self.start_time = completed.answered_at;
                }
                let answered = self.start_time.is_some() || completed.answered_ms > 0;
                self.status = completed.status;
                self.end_time = Some(time);
                self.duration_s = answered.then_some(completed.duration_s);
                self.answered_ms = answered.then_some(completed.answered_ms);
                self.hangup_by = Some(completed.hangup_by.clone());
                if completed.sip_code.is_some() {
                    self.sip_code = completed.sip_code;
                }
            }
            _ => return false,
        }
        self.date_updated = time;
        true
    }
}

/// A call with its price, as queries return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call: CallRow,
    /// Positive amount charged, in micro-units of `price_unit`; `None` until rated, and for
    /// calls that were never answered.
    pub price_micros: Option<i64>,
    /// ISO 4217, uppercase, once the leg is rated or closed.
    pub price_unit: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    sid              TEXT PRIMARY KEY,
    account_sid      TEXT NOT NULL,
    parent_call_sid  TEXT,
    direction        TEXT NOT NULL,
    from_number      TEXT NOT NULL,
    to_number        TEXT NOT NULL,
    forwarded_from   TEXT,
    phone_number_sid TEXT,
    owner_node       TEXT NOT NULL,
    status           TEXT NOT NULL,
    start_time       TEXT,
    end_time         TEXT,
    duration_s       INTEGER,
    answered_ms      INTEGER,
    queue_time_ms    INTEGER NOT NULL,
    hangup_by        TEXT,
    sip_code         INTEGER,
    date_created     TEXT NOT NULL,
    date_updated     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_account ON calls (account_sid, date_created, sid);
CREATE INDEX IF NOT EXISTS calls_by_parent ON calls (parent_call_sid) WHERE parent_call_sid IS NOT NULL;
";

const COLUMNS: &str = "c.sid, c.account_sid, c.parent_call_sid, c.direction, c.from_number,
    c.to_number, c.forwarded_from, c.phone_number_sid, c.owner_node, c.status, c.start_time,
    c.end_time, c.duration_s, c.answered_ms, c.queue_time_ms, c.hangup_by, c.sip_code,
    c.date_created, c.date_updated";

/// The raw columns of a row, converted to a [`CallRow`] outside rusqlite's closure so that
/// conversion errors carry our context.
struct RawCall {
    text: [Option<String>; 13],
    duration_s: Option<u64>,
    answered_ms: Option<u64>,
    queue_time_ms: u64,
    sip_code: Option<u16>,
}

fn read_raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawCall> {
    Ok(RawCall {
        text: [
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?,
            row.get(15)?,
        ],
        duration_s: row.get(12)?,
        answered_ms: row.get(13)?,
        queue_time_ms: row.get(14)?,
        sip_code: row.get(16)?,
    })
}

fn read_times(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String)> {
    Ok((row.get(17)?, row.get(18)?))
}

fn corrupt(message: String) -> ProjectionError {
    ProjectionError::CorruptRow {
        table: "calls",
        message,
    }
}

fn to_row(raw: RawCall, (created, updated): (String, String)) -> Result<CallRow, ProjectionError> {
    let [sid, account_sid, parent, direction, from, to, forwarded, pn, owner, status, start, end, hangup_by] =
        raw.text;
    let required =
        |v: Option<String>, name: &str| v.ok_or_else(|| corrupt(format!("{name} is null")));
    let direction = required(direction, "direction")?;
    let status = required(status, "status")?;
    Ok(CallRow {
        sid: required(sid, "sid")?,
        account_sid: required(account_sid, "account_sid")?,
        parent_call_sid: parent,
        direction: parse_direction(&direction)
            .ok_or_else(|| corrupt(format!("unknown direction {direction:?}")))?,
        from: required(from, "from_number")?,
        to: required(to, "to_number")?,
        forwarded_from: forwarded,
        phone_number_sid: pn,
        owner_node: required(owner, "owner_node")?,
        status: parse_status(&status)
            .ok_or_else(|| corrupt(format!("unknown status {status:?}")))?,
        start_time: load_time_opt("calls", start)?,
        end_time: load_time_opt("calls", end)?,
        duration_s: raw.duration_s,
        answered_ms: raw.answered_ms,
        queue_time_ms: raw.queue_time_ms,
        hangup_by,
        sip_code: raw.sip_code,
        date_created: load_time("calls", &created)?,
        date_updated: load_time("calls", &updated)?,
    })
}

fn load_row(tx: &Connection, sid: &str) -> Result<Option<CallRow>, ProjectionError> {
    let raw = tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM calls c WHERE c.sid = ?1"))
        .and_then(|mut s| {
            s.query_row([sid], |row| Ok((read_raw(row)?, read_times(row)?)))
                .optional()
        })
        .map_err(sql("reading a call"))?;
    raw.map(|(raw, times)| to_row(raw, times)).transpose()
}

fn store_row(tx: &Connection, row: &CallRow) -> Result<(), ProjectionError> {
    tx.prepare_cached(
        "INSERT INTO calls (sid, account_sid, parent_call_sid, direction, from_number, to_number,
            forwarded_from, phone_number_sid, owner_node, status, start_time, end_time, duration_s,
            answered_ms, queue_time_ms, hangup_by, sip_code, date_created, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (sid) DO UPDATE SET
            status = excluded.status, start_time = excluded.start_time,
            end_time = excluded.end_time, duration_s = excluded.duration_s,
            answered_ms = excluded.answered_ms, queue_time_ms = excluded.queue_time_ms,
            hangup_by = excluded.hangup_by, sip_code = excluded.sip_code,
            date_updated = excluded.date_updated",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.sid,
            row.account_sid,
            row.parent_call_sid,
            row.direction.as_str(),
            row.from,
            row.to,
            row.forwarded_from,
            row.phone_number_sid,
            row.owner_node,
            row.status.as_str(),
            row.start_time.map(store_time),
            row.end_time.map(store_time),
            row.duration_s,
            row.answered_ms,
            row.queue_time_ms,
            row.hangup_by,
            row.sip_code,
            store_time(row.date_created),
            store_time(row.date_updated),
        ])
    })
    .map_err(sql("writing a call"))?;
    Ok(())
}

/// Projects call events into `calls`. Rows touched in a batch stay in memory until
/// [`Projection::before_commit`], so each call is read and written once per batch.
#[derive(Default)]
pub struct CallsProjection {
    /// Rows of this batch in first-touch order, with whether they changed.
    staged: Vec<(CallRow, bool)>,
    index: HashMap<String, usize>,
}

impl CallsProjection {
    pub fn new() -> CallsProjection {
        CallsProjection::default()
    }

    /// The staged row of `sid`, loading it from the table on first touch.
    fn staged_row(&mut self, tx: &Connection, sid: &str) -> Result<Option<usize>, ProjectionError> {
        if let Some(i) = self.index.get(sid) {
            return Ok(Some(*i));
        }
        Ok(load_row(tx, sid)?.map(|row| self.stage(row, false)))
    }

    fn stage(&mut self, row: CallRow, dirty: bool) -> usize {
        let i = self.staged.len();
        self.index.insert(row.sid.clone(), i);
        self.staged.push((row, dirty));
        i
    }

    fn clear(&mut self) {
        self.staged.clear();
        self.index.clear();
    }
}

const CALL_TYPES: &[&str] = &[
    "dialtone.call.initiated",
    "dialtone.call.ringing",
    "dialtone.call.answered",
    "dialtone.call.rejected",
    "dialtone.call.completed",
];

impl Projection for CallsProjection {
    fn name(&self) -> &'static str {
        "calls"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["calls"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating calls"))
    }

    fn wants(&self, event_type: &str) -> bool {
        CALL_TYPES.contains(&event_type)
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let Some(payload) = decode(recorded) else {
            return Ok(());
        };
        let staged = self.staged_row(tx, &event.subject)?;
        match (&payload, staged) {
            (Payload::CallInitiated(initiated), None) => {
                let row =
                    CallRow::initiated(&event.subject, &event.accountsid, event.time, initiated);
                self.stage(row, true);
            }
            (Payload::CallInitiated(_), Some(_)) => {}
            (_, Some(i)) => {
                let (row, dirty) = &mut self.staged[i];
                if row.apply(&payload, event.time) {
                    *dirty = true;
                }
            }
            (_, None) => tracing::warn!(
                call = %event.subject,
                event_type = %event.event_type,
                "call event before call.initiated; ignored"
            ),
        }
        Ok(())
    }

    fn before_commit(&mut self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        let result = self
            .staged
            .iter()
            .filter(|(_, dirty)| *dirty)
            .try_for_each(|(row, _)| store_row(tx, row));
        self.clear();
        result
    }

    fn after_rollback(&mut self) {
        self.clear();
    }
}

/// Twilio's date filters on a time column (`StartTime`, `StartTime<`, `StartTime>`), in UTC
/// days; bounds are inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateFilter {
    pub on: Option<Date>,
    pub on_or_before: Option<Date>,
    pub on_or_after: Option<Date>,
}

/// Filters of the Calls list.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub to: Option<String>,
    pub from: Option<String>,
    pub status: Option<CallStatus>,
    pub parent_call_sid: Option<String>,
    pub start_time: DateFilter,
    pub end_time: DateFilter,
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

fn push_date_filter(
    column: &str,
    filter: &DateFilter,
    conditions: &mut Vec<String>,
    values: &mut Vec<Value>,
) {
    let mut range = |from: Option<Date>, through: Option<Date>| {
        if let Some(from) = from {
            conditions.push(format!("{column} >= ?"));
            values.push(Value::Text(day_text(from)));
        }
        if let Some(through) = through {
            // Before the start of the next day (or no upper bound at the end of time).
            if let Some(next) = through.next_day() {
                conditions.push(format!("{column} < ?"));
                values.push(Value::Text(day_text(next)));
            }
        }
    };
    range(filter.on, filter.on);
    range(filter.on_or_after, filter.on_or_before);
}

fn select_with_price() -> String {
    format!(
        "SELECT {COLUMNS}, b.price_micros, b.currency
         FROM calls c LEFT JOIN billing_legs b ON b.call_sid = c.sid"
    )
}

/// A call row with its billing columns (price micros, currency).
type RawRecord = (RawCall, (String, String), Option<i64>, Option<String>);

fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok((read_raw(row)?, read_times(row)?, row.get(19)?, row.get(20)?))
}

fn to_record(
    (raw, times, price_micros, price_unit): RawRecord,
) -> Result<CallRecord, ProjectionError> {
    Ok(CallRecord {
        call: to_row(raw, times)?,
        price_micros,
        price_unit,
    })
}

/// The call `sid` if it belongs to `account_sid`.
pub fn get_call(
    conn: &Connection,
    account_sid: &str,
    sid: &str,
) -> Result<Option<CallRecord>, ProjectionError> {
    conn.prepare_cached(&format!(
        "{} WHERE c.sid = ?1 AND c.account_sid = ?2",
        select_with_price()
    ))
    .and_then(|mut s| s.query_row([sid, account_sid], read_record).optional())
    .map_err(sql("reading a call"))?
    .map(to_record)
    .transpose()
}

/// The calls `owner_node` owns that have not ended (queued, ringing, in progress), any
/// account: what must be ended when the node is lost.
pub fn live_calls_of(conn: &Connection, owner_node: &str) -> Result<Vec<String>, ProjectionError> {
    conn.prepare_cached(
        "SELECT sid FROM calls WHERE owner_node = ?1
         AND status IN ('queued', 'ringing', 'in-progress') ORDER BY sid",
    )
    .and_then(|mut s| s.query_map([owner_node], |r| r.get(0))?.collect())
    .map_err(sql("listing a node's live calls"))
}

/// The account's calls, newest first.
pub fn list_calls(
    conn: &Connection,
    account_sid: &str,
    filter: &CallFilter,
    page: &PageRequest,
) -> Result<Page<CallRecord>, ProjectionError> {
    let mut conditions = vec!["c.account_sid = ?".to_owned()];
    let mut values = vec![Value::Text(account_sid.to_owned())];
    let mut exact = |column: &str, value: &Option<String>| {
        if let Some(value) = value {
            conditions.push(format!("{column} = ?"));
            values.push(Value::Text(value.clone()));
        }
    };
    exact("c.to_number", &filter.to);
    exact("c.from_number", &filter.from);
    exact("c.parent_call_sid", &filter.parent_call_sid);
    exact("c.status", &filter.status.map(|s| s.as_str().to_owned()));
    push_date_filter(
        "c.start_time",
        &filter.start_time,
        &mut conditions,
        &mut values,
    );
    push_date_filter("c.end_time", &filter.end_time, &mut conditions, &mut values);
    let list = ListQuery {
        select: &select_with_price(),
        order: Order::Descending,
        primary_col: "c.date_created",
        sid_col: "c.sid",
        context: "listing calls",
    };
    read_page(
        conn,
        &list,
        conditions,
        values,
        page,
        read_record,
        to_record,
    )
}

/// The sort key of a call in its list.
pub fn call_sort_key(record: &CallRecord) -> SortKey {
    created_sort_key(record.call.date_created, &record.call.sid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_events::payload::{CallAnswered, CallCompleted, CallRejected, CallRinging};
    use time::Duration;

    fn start() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn initiated(direction: Direction) -> CallInitiated {
        CallInitiated {
            direction,
            from: "+14155550100".into(),
            to: "+14155550199".into(),
            owner_node: "n1".into(),
            sip_call_id: None,
            source_addr: None,
            phone_number_sid: None,
            parent_call_sid: None,
            forwarded_from: None,
            application: Default::default(),
        }
    }

    fn completed(status: CallStatus, answered_ms: u64) -> Payload {
        Payload::CallCompleted(CallCompleted {
            status,
            duration_s: answered_ms / 1000,
            answered_ms,
            answered_at: None,
            hangup_by: "caller".into(),
            sip_code: None,
        })
    }

    #[test]
    fn inbound_call_walks_ringing_in_progress_completed() {
        let t0 = start();
        let mut row = CallRow::initiated("CA1", "AC1", t0, &initiated(Direction::Inbound));
        assert_eq!(row.status, CallStatus::Ringing);
        assert!(row.apply(
            &Payload::CallAnswered(CallAnswered::default()),
            t0 + Duration::seconds(1)
        ));
        assert_eq!(row.status, CallStatus::InProgress);
        assert_eq!(row.start_time, Some(t0 + Duration::seconds(1)));
        assert!(row.apply(
            &completed(CallStatus::Completed, 15_400),
            t0 + Duration::seconds(16)
        ));
        assert_eq!(row.status, CallStatus::Completed);
        assert_eq!(row.duration_s, Some(15));
        assert_eq!(row.end_time, Some(t0 + Duration::seconds(16)));
        assert_eq!(row.queue_time_ms, 0);
        // A late ringing does not reopen a finished call.
        assert!(!row.apply(
            &Payload::CallRinging(CallRinging::default()),
            t0 + Duration::seconds(17)
        ));
        assert_eq!(row.status, CallStatus::Completed);
    }

    #[test]
    fn outbound_call_measures_queue_time() {
        let t0 = start();
        let mut row = CallRow::initiated("CA1", "AC1", t0, &initiated(Direction::OutboundApi));
        assert_eq!(row.status, CallStatus::Queued);
        row.apply(
            &Payload::CallRinging(CallRinging::default()),
            t0 + Duration::milliseconds(1500),
        );
        assert_eq!((row.status, row.queue_time_ms), (CallStatus::Ringing, 1500));
    }

    #[test]
    fn rejected_call_is_busy_or_failed_and_has_no_duration() {
        for (reason, status) in [("busy", CallStatus::Busy), ("rejected", CallStatus::Failed)] {
            let t0 = start();
            let mut row = CallRow::initiated("CA1", "AC1", t0, &initiated(Direction::Inbound));
            row.apply(
                &Payload::CallRejected(CallRejected {
                    reason: reason.into(),
                    sip_code: 486,
                }),
                t0 + Duration::seconds(1),
            );
            assert_eq!(row.status, status);
            assert_eq!(row.duration_s, None);
            assert!(row.end_time.is_some());
        }
    }
}

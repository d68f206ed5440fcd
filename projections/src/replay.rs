//! Read models as they stood at a point of the log: the same projections, replayed from the
//! log into a private in-memory database, ignoring every event after that point. As-of
//! queries, a call's charge in its history, re-rating and reconciliation all read from such a
//! replay, never from today's read models.

use dialtone_events::{Cursor, EventLog, RecordedEvent};
use rusqlite::Connection;
use time::OffsetDateTime;

use crate::billing::{BillingProjection, RateTable};
use crate::calls::{get_call, CallRecord, CallsProjection};
use crate::db::ReadModels;
use crate::projection::{sql, Projection, ProjectionError};

/// Events read per page when a replay scans the log.
const PAGE: usize = 5_000;

/// Up to which point of the log a replay goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// Every event in the log now.
    Now,
    /// Events whose envelope time is at or before this.
    Time(OffsetDateTime),
    /// Events this cursor has passed (a position token's cursor).
    Cursor(Cursor),
}

impl Until {
    pub fn includes(&self, recorded: &RecordedEvent) -> bool {
        match self {
            Until::Now => true,
            Until::Time(t) => recorded.event.time <= *t,
            Until::Cursor(cursor) => cursor.has_passed(&recorded.position),
        }
    }
}

/// Projections applied to a private in-memory database.
pub struct Replay {
    conn: Connection,
    projections: Vec<Box<dyn Projection>>,
}

impl Replay {
    pub fn new(projections: Vec<Box<dyn Projection>>) -> Result<Replay, ProjectionError> {
        let mut conn = Connection::open_in_memory().map_err(sql("opening a replay"))?;
        let tx = conn.transaction().map_err(sql("opening a replay"))?;
        for projection in &projections {
            projection.init(&tx)?;
        }
        tx.commit().map_err(sql("opening a replay"))?;
        Ok(Replay { conn, projections })
    }

    /// Applies `events` (in log order) in one transaction.
    pub fn apply<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a RecordedEvent>,
    ) -> Result<(), ProjectionError> {
        let tx = self.conn.transaction().map_err(sql("replaying"))?;
        for recorded in events {
            for projection in &mut self.projections {
                if projection.wants(&recorded.event.event_type) {
                    projection.apply(recorded, &tx)?;
                }
            }
        }
        for projection in &mut self.projections {
            projection.before_commit(&tx)?;
        }
        tx.commit().map_err(sql("replaying"))?;
        for projection in &mut self.projections {
            projection.after_commit();
        }
        Ok(())
    }

    /// The replayed tables, for the read models' own queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Every rate event in the log up to `until`: the streams the billing read model knows of
/// (`billing_rates`), read from the log itself; without read models, a scan of the log.
pub async fn rate_events(
    log: &dyn EventLog,
    read_models: Option<&ReadModels>,
    until: &Until,
) -> Result<Vec<RecordedEvent>, ProjectionError> {
    let mut events = Vec::new();
    match read_models {
        Some(read_models) => {
            let streams: Vec<String> = read_models
                .read(|c| {
                    let mut stmt = c
                        .prepare("SELECT DISTINCT rate_sid FROM billing_rates ORDER BY rate_sid")
                        .map_err(sql("listing rate tables"))?;
                    let rows = stmt
                        .query_map([], |r| r.get(0))
                        .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
                        .map_err(sql("listing rate tables"));
                    rows
                })
                .await?;
            for stream in streams {
                events.extend(
                    log.read_stream(&stream, 1)
                        .await?
                        .into_iter()
                        .filter(|r| until.includes(r)),
                );
            }
        }
        None => {
            scan(
                log,
                until,
                |r| r.event.event_type.starts_with("dialtone.rate."),
                |page| {
                    events.extend(page);
                    Ok(())
                },
                |_| {},
            )
            .await?;
        }
    }
    Ok(events)
}

/// Puts events gathered from several streams back in log order, as the live projections saw
/// them: by position on a log with one partition (SQLite), else by time (Kafka orders only
/// within a partition).
pub fn sort_log_order(events: &mut [RecordedEvent]) {
    let one_partition = events
        .windows(2)
        .all(|w| w[0].position.partition == w[1].position.partition);
    if one_partition {
        events.sort_by_key(|r| r.position.offset);
    } else {
        events.sort_by(|a, b| (a.event.time, &a.position).cmp(&(b.event.time, &b.position)));
    }
}

/// Reads the whole log (as it is now) page by page, handing `visit` the events `until`
/// includes and `keep` wants. `progress` gets the count of events read.
pub async fn scan(
    log: &dyn EventLog,
    until: &Until,
    keep: impl Fn(&RecordedEvent) -> bool,
    mut visit: impl FnMut(Vec<RecordedEvent>) -> Result<(), ProjectionError>,
    mut progress: impl FnMut(u64),
) -> Result<(), ProjectionError> {
    let head = log.head().await?;
    let mut cursor = Cursor::start();
    let mut read = 0u64;
    loop {
        let page = log.read_all(&cursor, PAGE).await?;
        if page.is_empty() {
            break;
        }
        read += page.len() as u64;
        for recorded in &page {
            cursor.advance(&recorded.position);
        }
        visit(
            page.into_iter()
                .filter(|r| until.includes(r) && keep(r))
                .collect(),
        )?;
        progress(read);
        // Stop at the head the scan started from: later events are after any `until`.
        if head
            .0
            .iter()
            .all(|(partition, next)| cursor.next_offset(partition) >= *next)
        {
            break;
        }
    }
    Ok(())
}

/// The Call resource of `call_sid` as it stood at `until`, priced with the rates then in
/// force; `None` if the call did not exist yet (or belongs to another account).
pub async fn call_as_of(
    log: &dyn EventLog,
    read_models: &ReadModels,
    config: &RateTable,
    account_sid: &str,
    call_sid: &str,
    until: &Until,
) -> Result<Option<CallRecord>, ProjectionError> {
    let mut events = rate_events(log, Some(read_models), until).await?;
    events.extend(
        log.read_stream(call_sid, 1)
            .await?
            .into_iter()
            .filter(|r| until.includes(r)),
    );
    sort_log_order(&mut events);
    let config = config.clone();
    let (account, sid) = (account_sid.to_owned(), call_sid.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut replay = Replay::new(vec![
            Box::new(CallsProjection::new()),
            Box::new(BillingProjection::new(config)),
        ])?;
        replay.apply(&events)?;
        get_call(replay.connection(), &account, &sid)
    })
    .await
    .map_err(|e| ProjectionError::Task(e.to_string()))?
}

/// Billing (legs, usage, rates) as it stood at `until`, for one account or all: a scan of the
/// whole log.
pub async fn billing_as_of(
    log: &dyn EventLog,
    config: &RateTable,
    account_sid: Option<&str>,
    until: &Until,
    progress: impl FnMut(u64),
) -> Result<Replay, ProjectionError> {
    let mut replay = Replay::new(vec![Box::new(BillingProjection::new(config.clone()))])?;
    let probe = BillingProjection::new(config.clone());
    let account = account_sid.map(str::to_owned);
    scan(
        log,
        until,
        |r| {
            probe.wants(&r.event.event_type)
                && (r.event.event_type.starts_with("dialtone.rate.")
                    // Heartbeats move the log's clock (rentals fall due by it).
                    || r.event.event_type.starts_with("dialtone.node.")
                    || account.as_deref().is_none_or(|a| a == r.event.accountsid))
        },
        |page| replay.apply(&page),
        progress,
    )
    .await?;
    Ok(replay)
}

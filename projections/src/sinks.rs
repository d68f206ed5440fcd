//! Sinks and subscriptions (Event Streams), from the `sink` family: the configuration the API
//! serves, and each sink's delivery progress, from which its deliverer resumes after a
//! restart (`delivered_cursor`).

use dialtone_events::payload::{SubscribedType, SubscriptionCreated};
use dialtone_events::{Cursor, Payload, RecordedEvent};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::OffsetDateTime;

use crate::projection::{
    decode, load_time, load_time_opt, sql, store_time, Projection, ProjectionError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sinks (
    sid                TEXT PRIMARY KEY,
    account_sid        TEXT    NOT NULL,
    description        TEXT    NOT NULL,
    sink_type          TEXT    NOT NULL,
    destination        TEXT    NOT NULL,
    method             TEXT    NOT NULL,
    batch_events       INTEGER NOT NULL,
    deleted            INTEGER NOT NULL DEFAULT 0,
    version            INTEGER NOT NULL,
    date_created       TEXT    NOT NULL,
    date_updated       TEXT    NOT NULL,
    delivered_cursor   TEXT,
    deliveries_version INTEGER NOT NULL DEFAULT 0,
    delivered_events   INTEGER NOT NULL DEFAULT 0,
    failed_events      INTEGER NOT NULL DEFAULT 0,
    last_delivery_at   TEXT,
    last_status        INTEGER,
    last_error         TEXT
);
CREATE INDEX IF NOT EXISTS sinks_by_account ON sinks (account_sid, date_created, sid);
CREATE TABLE IF NOT EXISTS sink_subscriptions (
    sid          TEXT PRIMARY KEY,
    account_sid  TEXT    NOT NULL,
    sink_sid     TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    types        TEXT    NOT NULL,
    start_cursor TEXT    NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL,
    date_created TEXT    NOT NULL,
    date_updated TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS sink_subscriptions_by_sink ON sink_subscriptions (sink_sid);
CREATE INDEX IF NOT EXISTS sink_subscriptions_by_account ON sink_subscriptions (account_sid, date_created, sid);
";

/// A sink as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRow {
    pub sid: String,
    pub account_sid: String,
    pub description: String,
    pub sink_type: String,
    pub destination: String,
    pub method: String,
    pub batch_events: bool,
    /// Sequence of the sink's `DG…` stream (for the API's version checks).
    pub version: u64,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
    /// Where delivery resumes; `None` until the first batch was delivered or given up.
    pub delivered_cursor: Option<Cursor>,
    /// Sequence of the sink's `DD…` stream.
    pub deliveries_version: u64,
    pub delivered_events: u64,
    pub failed_events: u64,
    pub last_delivery_at: Option<OffsetDateTime>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Live subscriptions of the sink.
    pub subscriptions: u64,
}

/// A subscription as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub sid: String,
    pub account_sid: String,
    pub sink_sid: String,
    pub description: String,
    pub types: Vec<SubscribedType>,
    pub start: Cursor,
    pub version: u64,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

const SINK_COLUMNS: &str = "s.sid, s.account_sid, s.description, s.sink_type, s.destination,
    s.method, s.batch_events, s.version, s.date_created, s.date_updated, s.delivered_cursor,
    s.deliveries_version, s.delivered_events, s.failed_events, s.last_delivery_at,
    s.last_status, s.last_error,
    (SELECT COUNT(*) FROM sink_subscriptions t WHERE t.sink_sid = s.sid AND t.deleted = 0)";

fn corrupt(table: &'static str, message: String) -> ProjectionError {
    ProjectionError::CorruptRow { table, message }
}

fn read_sink(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SinkRow, ProjectionError>> {
    let created: String = r.get(8)?;
    let updated: String = r.get(9)?;
    let cursor: Option<String> = r.get(10)?;
    let last_at: Option<String> = r.get(14)?;
    let partial = (
        r.get::<_, String>(0)?,
        r.get::<_, String>(1)?,
        r.get::<_, String>(2)?,
        r.get::<_, String>(3)?,
        r.get::<_, String>(4)?,
        r.get::<_, String>(5)?,
        r.get::<_, bool>(6)?,
        r.get::<_, u64>(7)?,
    );
    let counts = (
        r.get::<_, u64>(11)?,
        r.get::<_, u64>(12)?,
        r.get::<_, u64>(13)?,
        r.get::<_, Option<u16>>(15)?,
        r.get::<_, Option<String>>(16)?,
        r.get::<_, u64>(17)?,
    );
    Ok((|| {
        let (sid, account_sid, description, sink_type, destination, method, batch_events, version) =
            partial;
        let (
            deliveries_version,
            delivered_events,
            failed_events,
            last_status,
            last_error,
            subscriptions,
        ) = counts;
        Ok(SinkRow {
            sid,
            account_sid,
            description,
            sink_type,
            destination,
            method,
            batch_events,
            version,
            date_created: load_time("sinks", &created)?,
            date_updated: load_time("sinks", &updated)?,
            delivered_cursor: cursor
                .map(|c| Cursor::from_json(&c).map_err(|e| corrupt("sinks", e.to_string())))
                .transpose()?,
            deliveries_version,
            delivered_events,
            failed_events,
            last_delivery_at: load_time_opt("sinks", last_at)?,
            last_status,
            last_error,
            subscriptions,
        })
    })())
}

const SUBSCRIPTION_COLUMNS: &str = "sid, account_sid, sink_sid, description, types, start_cursor,
    version, date_created, date_updated";

fn read_subscription(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<SubscriptionRow, ProjectionError>> {
    let raw = (
        r.get::<_, String>(0)?,
        r.get::<_, String>(1)?,
        r.get::<_, String>(2)?,
        r.get::<_, String>(3)?,
        r.get::<_, String>(4)?,
        r.get::<_, String>(5)?,
        r.get::<_, u64>(6)?,
        r.get::<_, String>(7)?,
        r.get::<_, String>(8)?,
    );
    Ok((|| {
        let (sid, account_sid, sink_sid, description, types, start, version, created, updated) =
            raw;
        Ok(SubscriptionRow {
            sid,
            account_sid,
            sink_sid,
            description,
            types: serde_json::from_str(&types)
                .map_err(|e| corrupt("sink_subscriptions", e.to_string()))?,
            start: Cursor::from_json(&start)
                .map_err(|e| corrupt("sink_subscriptions", e.to_string()))?,
            version,
            date_created: load_time("sink_subscriptions", &created)?,
            date_updated: load_time("sink_subscriptions", &updated)?,
        })
    })())
}

fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, ProjectionError>>>,
    context: &'static str,
) -> Result<Vec<T>, ProjectionError> {
    rows.map(|r| r.map_err(sql(context))?).collect()
}

/// A live sink of `account_sid`.
pub fn get_sink(
    conn: &Connection,
    account_sid: &str,
    sid: &str,
) -> Result<Option<SinkRow>, ProjectionError> {
    conn.prepare_cached(&format!(
        "SELECT {SINK_COLUMNS} FROM sinks s WHERE s.sid = ?1 AND s.account_sid = ?2 AND s.deleted = 0"
    ))
    .and_then(|mut s| s.query_row([sid, account_sid], read_sink).optional())
    .map_err(sql("reading a sink"))?
    .transpose()
}

/// The account's live sinks, oldest first.
pub fn list_sinks(conn: &Connection, account_sid: &str) -> Result<Vec<SinkRow>, ProjectionError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SINK_COLUMNS} FROM sinks s WHERE s.account_sid = ?1 AND s.deleted = 0
             ORDER BY s.date_created, s.sid"
        ))
        .map_err(sql("listing sinks"))?;
    let rows = stmt
        .query_map([account_sid], read_sink)
        .map_err(sql("listing sinks"))?;
    collect(rows, "listing sinks")
}

/// Every live sink of every account, with its live subscriptions: what the deliverer runs.
pub fn active_sinks(
    conn: &Connection,
) -> Result<Vec<(SinkRow, Vec<SubscriptionRow>)>, ProjectionError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SINK_COLUMNS} FROM sinks s WHERE s.deleted = 0 ORDER BY s.date_created, s.sid"
        ))
        .map_err(sql("listing sinks"))?;
    let sinks = collect(
        stmt.query_map([], read_sink)
            .map_err(sql("listing sinks"))?,
        "listing sinks",
    )?;
    sinks
        .into_iter()
        .map(|sink| {
            let subscriptions = list_subscriptions(conn, &sink.account_sid, Some(&sink.sid))?;
            Ok((sink, subscriptions))
        })
        .collect()
}

/// A live subscription of `account_sid`.
pub fn get_subscription(
    conn: &Connection,
    account_sid: &str,
    sid: &str,
) -> Result<Option<SubscriptionRow>, ProjectionError> {
    conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM sink_subscriptions
         WHERE sid = ?1 AND account_sid = ?2 AND deleted = 0"
    ))
    .and_then(|mut s| {
        s.query_row([sid, account_sid], read_subscription)
            .optional()
    })
    .map_err(sql("reading a subscription"))?
    .transpose()
}

/// The account's live subscriptions (of one sink, if given), oldest first.
pub fn list_subscriptions(
    conn: &Connection,
    account_sid: &str,
    sink_sid: Option<&str>,
) -> Result<Vec<SubscriptionRow>, ProjectionError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM sink_subscriptions
             WHERE account_sid = ?1 AND deleted = 0 AND (?2 IS NULL OR sink_sid = ?2)
             ORDER BY date_created, sid"
        ))
        .map_err(sql("listing subscriptions"))?;
    let rows = stmt
        .query_map(params![account_sid, sink_sid], read_subscription)
        .map_err(sql("listing subscriptions"))?;
    collect(rows, "listing subscriptions")
}

/// Projects the sink family into `sinks` and `sink_subscriptions`.
#[derive(Default)]
pub struct SinksProjection;

impl SinksProjection {
    pub fn new() -> SinksProjection {
        SinksProjection
    }
}

fn subscription_created(
    tx: &Transaction<'_>,
    recorded: &RecordedEvent,
    created: &SubscriptionCreated,
) -> Result<(), ProjectionError> {
    let event = &recorded.event;
    let time = store_time(event.time);
    let types = serde_json::to_string(&created.types).unwrap_or_else(|_| "[]".to_owned());
    tx.prepare_cached(
        "INSERT INTO sink_subscriptions (sid, account_sid, sink_sid, description, types,
            start_cursor, version, date_created, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) ON CONFLICT (sid) DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.subject,
            event.accountsid,
            created.sink_sid.as_str(),
            created.description,
            types,
            created.start.to_json(),
            event.sequence,
            time
        ])
    })
    .map_err(sql("inserting a subscription"))?;
    Ok(())
}

impl Projection for SinksProjection {
    fn name(&self) -> &'static str {
        "sinks"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sinks", "sink_subscriptions"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating sinks"))
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type.starts_with("dialtone.sink.") || event_type.starts_with("dialtone.subscription.")
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let time = store_time(event.time);
        let update = |statement: &str, context: &'static str, values: &[&dyn rusqlite::ToSql]| {
            tx.prepare_cached(statement)
                .and_then(|mut s| s.execute(values))
                .map(|_| ())
                .map_err(sql(context))
        };
        match decode(recorded) {
            Some(Payload::SinkCreated(created)) => update(
                "INSERT INTO sinks (sid, account_sid, description, sink_type, destination, method,
                    batch_events, version, date_created, date_updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) ON CONFLICT (sid) DO NOTHING",
                "inserting a sink",
                params![
                    event.subject,
                    event.accountsid,
                    created.description,
                    created.sink_type,
                    created.destination,
                    created.method.as_str(),
                    created.batch_events,
                    event.sequence,
                    time
                ],
            )?,
            Some(Payload::SinkUpdated(updated)) => update(
                "UPDATE sinks SET description = ?2, version = ?3, date_updated = ?4 WHERE sid = ?1",
                "updating a sink",
                params![event.subject, updated.description, event.sequence, time],
            )?,
            Some(Payload::SinkDeleted(_)) => {
                update(
                    "UPDATE sinks SET deleted = 1, version = ?2, date_updated = ?3 WHERE sid = ?1",
                    "deleting a sink",
                    params![event.subject, event.sequence, time],
                )?;
                update(
                    "UPDATE sink_subscriptions SET deleted = 1, date_updated = ?2 WHERE sink_sid = ?1",
                    "deleting a sink's subscriptions",
                    params![event.subject, time],
                )?;
            }
            Some(Payload::SubscriptionCreated(created)) => {
                subscription_created(tx, recorded, &created)?
            }
            Some(Payload::SubscriptionUpdated(updated)) => {
                if let Some(description) = &updated.description {
                    update(
                        "UPDATE sink_subscriptions SET description = ?2 WHERE sid = ?1",
                        "updating a subscription",
                        params![event.subject, description],
                    )?;
                }
                if let Some(types) = &updated.types {
                    let types = serde_json::to_string(types).unwrap_or_else(|_| "[]".to_owned());
                    update(
                        "UPDATE sink_subscriptions SET types = ?2 WHERE sid = ?1",
                        "updating a subscription",
                        params![event.subject, types],
                    )?;
                }
                update(
                    "UPDATE sink_subscriptions SET version = ?2, date_updated = ?3 WHERE sid = ?1",
                    "updating a subscription",
                    params![event.subject, event.sequence, time],
                )?;
            }
            Some(Payload::SubscriptionDeleted(_)) => update(
                "UPDATE sink_subscriptions SET deleted = 1, version = ?2, date_updated = ?3
                 WHERE sid = ?1",
                "deleting a subscription",
                params![event.subject, event.sequence, time],
            )?,
            Some(Payload::SinkDelivered(delivered)) => update(
                "UPDATE sinks SET delivered_cursor = ?2, deliveries_version = ?3,
                    delivered_events = delivered_events + ?4, last_delivery_at = ?5,
                    last_status = ?6, last_error = NULL
                 WHERE sid = ?1",
                "recording a delivery",
                params![
                    delivered.sink_sid.as_str(),
                    delivered.cursor.to_json(),
                    event.sequence,
                    delivered.events,
                    time,
                    delivered.status
                ],
            )?,
            Some(Payload::SinkFailed(failed)) => update(
                "UPDATE sinks SET delivered_cursor = ?2, deliveries_version = ?3,
                    failed_events = failed_events + ?4, last_delivery_at = ?5, last_error = ?6
                 WHERE sid = ?1",
                "recording a failed delivery",
                params![
                    failed.sink_sid.as_str(),
                    failed.cursor.to_json(),
                    event.sequence,
                    failed.events,
                    time,
                    failed.error
                ],
            )?,
            _ => {}
        }
        Ok(())
    }
}

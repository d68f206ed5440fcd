//! Conferences and their live participants (Twilio's Conference and Participant
//! resources), from the `conference.*` events of the rooms' `CF…` streams.
//!
//! A conference is `init` when its room opens, `in-progress` once a join begins the mixing
//! (`conference_started`), `completed` when it ends (with Twilio's
//! `reason_conference_ended` and `call_sid_ending_conference`). As on Twilio, the
//! participants table holds the participants connected now: a leave deletes the row.

use dialtone_events::{Payload, RecordedEvent};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::OffsetDateTime;

use crate::paging::{created_sort_key, read_page, ListQuery, Order, Page, PageRequest, SortKey};
use crate::projection::{decode, load_time, sql, store_time, Projection, ProjectionError};

/// A conference as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceRow {
    pub sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    /// `init`, `in-progress`, `completed`.
    pub status: String,
    pub reason_conference_ended: Option<String>,
    pub call_sid_ending_conference: Option<String>,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

/// A participant connected to a conference now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRow {
    pub conference_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    pub muted: bool,
    pub hold: bool,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    pub date_created: OffsetDateTime,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conferences (
    sid                        TEXT PRIMARY KEY,
    account_sid                TEXT NOT NULL,
    friendly_name              TEXT NOT NULL,
    status                     TEXT NOT NULL,
    reason_conference_ended    TEXT,
    call_sid_ending_conference TEXT,
    date_created               TEXT NOT NULL,
    date_updated               TEXT NOT NULL,
    owner_node                 TEXT
);
CREATE INDEX IF NOT EXISTS conferences_by_account ON conferences (account_sid, date_created, sid);
CREATE INDEX IF NOT EXISTS conferences_by_name ON conferences (account_sid, friendly_name, status);
CREATE TABLE IF NOT EXISTS conference_participants (
    conference_sid            TEXT    NOT NULL,
    call_sid                  TEXT    NOT NULL,
    account_sid               TEXT    NOT NULL,
    muted                     INTEGER NOT NULL,
    hold                      INTEGER NOT NULL DEFAULT 0,
    start_conference_on_enter INTEGER NOT NULL,
    end_conference_on_exit    INTEGER NOT NULL,
    date_created              TEXT    NOT NULL,
    PRIMARY KEY (conference_sid, call_sid)
);
";

const CONFERENCE_COLUMNS: &str = "sid, account_sid, friendly_name, status, reason_conference_ended,
    call_sid_ending_conference, date_created, date_updated";
const PARTICIPANT_COLUMNS: &str = "conference_sid, call_sid, account_sid, muted, hold,
    start_conference_on_enter, end_conference_on_exit, date_created";

type RawConference = (
    (String, String, String, String),
    (Option<String>, Option<String>, String, String),
);

fn read_conference(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawConference> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
        (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
    ))
}

fn to_conference(raw: RawConference) -> Result<ConferenceRow, ProjectionError> {
    let ((sid, account_sid, friendly_name, status), (reason, ending, created, updated)) = raw;
    Ok(ConferenceRow {
        sid,
        account_sid,
        friendly_name,
        status,
        reason_conference_ended: reason,
        call_sid_ending_conference: ending,
        date_created: load_time("conferences", &created)?,
        date_updated: load_time("conferences", &updated)?,
    })
}

type RawParticipant = (String, String, String, (bool, bool, bool, bool), String);

fn read_participant(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawParticipant> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
        r.get(7)?,
    ))
}

fn to_participant(raw: RawParticipant) -> Result<ParticipantRow, ProjectionError> {
    let (conference_sid, call_sid, account_sid, (muted, hold, start, end), created) = raw;
    Ok(ParticipantRow {
        conference_sid,
        call_sid,
        account_sid,
        muted,
        hold,
        start_conference_on_enter: start,
        end_conference_on_exit: end,
        date_created: load_time("conference_participants", &created)?,
    })
}

/// A conference by SID if it belongs to `account_sid`.
pub fn get_conference(
    conn: &Connection,
    account_sid: &str,
    sid: &str,
) -> Result<Option<ConferenceRow>, ProjectionError> {
    conn.prepare_cached(&format!(
        "SELECT {CONFERENCE_COLUMNS} FROM conferences WHERE sid = ?1 AND account_sid = ?2"
    ))
    .and_then(|mut s| s.query_row([sid, account_sid], read_conference).optional())
    .map_err(sql("reading a conference"))?
    .map(to_conference)
    .transpose()
}

/// The node holding the account's open room `friendly_name` (not `completed`), newest
/// first; `Some(None)` for a room whose events name no owner, `None` when no room is open.
pub fn open_room_owner(
    conn: &Connection,
    account_sid: &str,
    friendly_name: &str,
) -> Result<Option<Option<String>>, ProjectionError> {
    conn.prepare_cached(
        "SELECT owner_node FROM conferences
         WHERE account_sid = ?1 AND friendly_name = ?2 AND status != 'completed'
         ORDER BY date_created DESC, sid DESC LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row([account_sid, friendly_name], |r| r.get(0))
            .optional()
    })
    .map_err(sql("finding a conference's owner"))
}

/// Filters of the Conferences list.
#[derive(Debug, Clone, Default)]
pub struct ConferenceFilter {
    pub friendly_name: Option<String>,
    pub status: Option<String>,
}

/// The account's conferences, newest first.
pub fn list_conferences(
    conn: &Connection,
    account_sid: &str,
    filter: &ConferenceFilter,
    page: &PageRequest,
) -> Result<Page<ConferenceRow>, ProjectionError> {
    let mut conditions = vec!["account_sid = ?".to_owned()];
    let mut values = vec![Value::Text(account_sid.to_owned())];
    for (column, value) in [
        ("friendly_name", &filter.friendly_name),
        ("status", &filter.status),
    ] {
        if let Some(value) = value {
            conditions.push(format!("{column} = ?"));
            values.push(Value::Text(value.clone()));
        }
    }
    let list = ListQuery {
        select: &format!("SELECT {CONFERENCE_COLUMNS} FROM conferences"),
        order: Order::Descending,
        primary_col: "date_created",
        sid_col: "sid",
        context: "listing conferences",
    };
    read_page(
        conn,
        &list,
        conditions,
        values,
        page,
        read_conference,
        to_conference,
    )
}

/// The sort key of a conference in its list.
pub fn conference_sort_key(row: &ConferenceRow) -> SortKey {
    created_sort_key(row.date_created, &row.sid)
}

/// The participants connected to a conference now, in the order they joined.
pub fn list_participants(
    conn: &Connection,
    conference_sid: &str,
) -> Result<Vec<ParticipantRow>, ProjectionError> {
    let raws = conn
        .prepare_cached(&format!(
            "SELECT {PARTICIPANT_COLUMNS} FROM conference_participants
             WHERE conference_sid = ?1 ORDER BY date_created, call_sid"
        ))
        .and_then(|mut s| {
            s.query_map([conference_sid], read_participant)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql("listing participants"))?;
    raws.into_iter().map(to_participant).collect()
}

/// Projects the rooms' events into `conferences` and `conference_participants`.
#[derive(Default)]
pub struct ConferencesProjection;

impl ConferencesProjection {
    pub fn new() -> ConferencesProjection {
        ConferencesProjection
    }
}

impl Projection for ConferencesProjection {
    fn name(&self) -> &'static str {
        "conferences"
    }

    fn version(&self) -> u32 {
        // 2: participants on hold. 3: the room's owning node.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &["conferences", "conference_participants"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA)
            .map_err(sql("creating conferences"))
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type.starts_with("dialtone.conference.")
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let conference = event.subject.as_str();
        let time = store_time(event.time);
        let execute = |query: &str, values: &[&dyn rusqlite::ToSql], context: &'static str| {
            tx.prepare_cached(query)
                .and_then(|mut s| s.execute(values))
                .map(|_| ())
                .map_err(sql(context))
        };
        match decode(recorded) {
            Some(Payload::ConferenceStarted(started)) => execute(
                "INSERT INTO conferences (sid, account_sid, friendly_name, status, date_created,
                    date_updated, owner_node)
                 VALUES (?1, ?2, ?3, 'init', ?4, ?4, ?5)
                 ON CONFLICT (sid) DO NOTHING",
                params![
                    conference,
                    event.accountsid,
                    started.friendly_name,
                    time,
                    started.owner_node
                ],
                "opening a conference",
            ),
            Some(Payload::ParticipantJoined(joined)) => {
                execute(
                    "INSERT INTO conference_participants (conference_sid, call_sid, account_sid,
                        muted, start_conference_on_enter, end_conference_on_exit, date_created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (conference_sid, call_sid) DO NOTHING",
                    params![
                        conference,
                        joined.call_sid.as_str(),
                        event.accountsid,
                        joined.muted,
                        joined.start_conference_on_enter,
                        joined.end_conference_on_exit,
                        time
                    ],
                    "adding a participant",
                )?;
                let status = if joined.conference_started {
                    "in-progress"
                } else {
                    "init"
                };
                // `init` only touches the update time; a started conference stays started.
                execute(
                    "UPDATE conferences SET date_updated = ?2,
                        status = CASE WHEN status = 'init' THEN ?3 ELSE status END
                     WHERE sid = ?1",
                    params![conference, time, status],
                    "starting a conference",
                )
            }
            Some(Payload::ParticipantLeft(left)) => {
                execute(
                    "DELETE FROM conference_participants WHERE conference_sid = ?1 AND call_sid = ?2",
                    params![conference, left.call_sid.as_str()],
                    "removing a participant",
                )?;
                execute(
                    "UPDATE conferences SET date_updated = ?2 WHERE sid = ?1",
                    params![conference, time],
                    "updating a conference",
                )
            }
            Some(Payload::ParticipantUpdated(updated)) => execute(
                "UPDATE conference_participants SET muted = ?3, hold = ?4
                 WHERE conference_sid = ?1 AND call_sid = ?2",
                params![
                    conference,
                    updated.call_sid.as_str(),
                    updated.muted,
                    updated.hold
                ],
                "updating a participant",
            ),
            Some(Payload::ConferenceEnded(ended)) => {
                execute(
                    "DELETE FROM conference_participants WHERE conference_sid = ?1",
                    params![conference],
                    "removing the participants",
                )?;
                execute(
                    "UPDATE conferences SET status = 'completed', reason_conference_ended = ?2,
                        call_sid_ending_conference = ?3, date_updated = ?4
                     WHERE sid = ?1",
                    params![
                        conference,
                        ended.reason,
                        ended
                            .call_sid_ending_conference
                            .as_ref()
                            .map(|c| c.as_str()),
                        time
                    ],
                    "ending a conference",
                )
            }
            _ => Ok(()),
        }
    }
}

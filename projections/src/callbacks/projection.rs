//! [`CallbacksProjection`]: call, recording and conference events into trackers and outbox
//! rows.

use std::collections::HashMap;

use dialtone_events::{Payload, RecordedEvent};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use time::OffsetDateTime;

use super::*;
use crate::projection::{decode, sql, store_time, Projection, ProjectionError};

/// A tracker touched in the current batch.
struct StagedTracker {
    tracker: Option<CallbackTracker>,
    dirty: bool,
}

impl StagedTracker {
    /// Shows a later call event to the call's tracker, if it has one; marks it to be written
    /// when it changed. The callback the event causes, if any.
    fn apply(
        &mut self,
        payload: &Payload,
        sequence: u64,
        time: OffsetDateTime,
    ) -> Option<PlannedCallback> {
        let tracker = self.tracker.as_mut()?;
        let before = tracker.clone();
        let planned = tracker.apply(payload, sequence, time);
        self.dirty |= *tracker != before;
        planned
    }
}

/// Projects call events into the status-callback outbox.
#[derive(Default)]
pub struct CallbacksProjection {
    /// Trackers of this batch by call SID (`None`: the call has no status callback).
    staged: HashMap<String, StagedTracker>,
}

impl CallbacksProjection {
    pub fn new() -> CallbacksProjection {
        CallbacksProjection::default()
    }

    fn staged(
        &mut self,
        tx: &Connection,
        call_sid: &str,
    ) -> Result<&mut StagedTracker, ProjectionError> {
        if !self.staged.contains_key(call_sid) {
            let stored: Option<String> = tx
                .prepare_cached("SELECT tracker FROM callback_calls WHERE call_sid = ?1")
                .and_then(|mut s| s.query_row([call_sid], |r| r.get(0)).optional())
                .map_err(sql("reading a callback tracker"))?;
            let tracker = stored
                .map(|json| {
                    serde_json::from_str::<CallbackTracker>(&json).map_err(|e| {
                        ProjectionError::CorruptRow {
                            table: "callback_calls",
                            message: format!("tracker of {call_sid}: {e}"),
                        }
                    })
                })
                .transpose()?;
            self.staged.insert(
                call_sid.to_owned(),
                StagedTracker {
                    tracker,
                    dirty: false,
                },
            );
        }
        self.staged
            .get_mut(call_sid)
            .ok_or_else(|| ProjectionError::Task("staged tracker vanished".to_owned()))
    }
}

/// Where an outbox row goes: the call and its owner.
struct RowTarget<'a> {
    call_sid: &'a str,
    account_sid: &'a str,
    owner_node: &'a str,
}

/// Inserts a planned callback as the call's next outbox row: its `sequence_number` follows
/// every row the call has (call progress and recording callbacks share one order), and its
/// idempotency token derives from it. A second insert for the same call event and outbox
/// event is ignored.
fn insert_planned(
    tx: &Transaction<'_>,
    target: &RowTarget<'_>,
    planned: &PlannedCallback,
    time: OffsetDateTime,
) -> Result<(), ProjectionError> {
    let params_json = serde_json::to_string(&planned.params)
        .map_err(|e| corrupt(format!("cannot encode params: {e}")))?;
    let sequence_number: u32 = tx
        .prepare_cached(
            "SELECT COALESCE(MAX(sequence_number) + 1, 0) FROM callback_outbox WHERE call_sid = ?1",
        )
        .and_then(|mut s| s.query_row([target.call_sid], |r| r.get(0)))
        .map_err(sql("numbering a callback"))?;
    let token = idempotency_token(target.call_sid, sequence_number);
    let time = store_time(time);
    tx.prepare_cached(
        "INSERT INTO callback_outbox (call_sid, sequence_number, account_sid, owner_node, event,
            for_sequence, url, method, params, idempotency_token, event_time, state, date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?11)
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            target.call_sid,
            sequence_number,
            target.account_sid,
            target.owner_node,
            planned.event.as_str(),
            planned.for_sequence,
            planned.url,
            planned.method.as_str(),
            params_json,
            token,
            time,
        ])
    })
    .map_err(sql("inserting a callback"))?;
    Ok(())
}

/// A conference room's event: keeps the room's [`ConferenceCallbacks`] in
/// `callback_conferences` (until the room ends) and writes the callbacks it plans as outbox
/// rows of the room.
fn apply_conference(recorded: &RecordedEvent, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
    let event = &recorded.event;
    let conference_sid = event.subject.as_str();
    let Some(payload) = decode(recorded) else {
        return Ok(());
    };
    let corrupt_state = |e: serde_json::Error| ProjectionError::CorruptRow {
        table: "callback_conferences",
        message: format!("state of {conference_sid}: {e}"),
    };
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM callback_conferences WHERE conference_sid = ?1")
        .and_then(|mut s| s.query_row([conference_sid], |r| r.get(0)).optional())
        .map_err(sql("reading a conference's callbacks"))?;
    let mut room = match (stored, &payload) {
        (_, Payload::ConferenceStarted(started)) => ConferenceCallbacks::opened(
            conference_sid,
            &event.accountsid,
            writer_node(&event.source),
            &started.friendly_name,
        ),
        (Some(json), _) => serde_json::from_str(&json).map_err(corrupt_state)?,
        (None, _) => return Ok(()), // the room ended, or opened before this projection
    };
    let (planned, ended) = match &payload {
        Payload::ParticipantJoined(joined) => {
            (room.joined(joined, event.sequence, event.time), false)
        }
        Payload::ParticipantLeft(left) => (
            room.left(left, event.sequence, event.time)
                .into_iter()
                .collect(),
            false,
        ),
        Payload::ParticipantUpdated(updated) => {
            (room.updated(updated, event.sequence, event.time), false)
        }
        Payload::ConferenceEnded(end) => (
            room.ended(end, event.sequence, event.time)
                .into_iter()
                .collect(),
            true,
        ),
        _ => (Vec::new(), false),
    };
    let target = RowTarget {
        call_sid: conference_sid,
        account_sid: &room.account_sid,
        owner_node: &room.owner_node,
    };
    for planned in &planned {
        insert_planned(tx, &target, planned, event.time)?;
    }
    if ended {
        tx.prepare_cached("DELETE FROM callback_conferences WHERE conference_sid = ?1")
            .and_then(|mut s| s.execute([conference_sid]))
            .map_err(sql("deleting a conference's callbacks"))?;
    } else {
        let json = serde_json::to_string(&room).map_err(corrupt_state)?;
        tx.prepare_cached(
            "INSERT INTO callback_conferences (conference_sid, state) VALUES (?1, ?2)
             ON CONFLICT (conference_sid) DO UPDATE SET state = excluded.state",
        )
        .and_then(|mut s| s.execute(params![conference_sid, json]))
        .map_err(sql("writing a conference's callbacks"))?;
    }
    Ok(())
}

/// The node an event's envelope names as its writer (`dialtone://<node>`).
fn writer_node(source: &str) -> &str {
    source.strip_prefix("dialtone://").unwrap_or(source)
}

const WANTED: &[&str] = &[
    "dialtone.call.initiated",
    "dialtone.call.ringing",
    "dialtone.call.answered",
    "dialtone.call.rejected",
    "dialtone.call.completed",
    "dialtone.call.recording.started",
    "dialtone.call.recording.completed",
    "dialtone.call.callback.delivered",
    "dialtone.call.callback.failed",
    "dialtone.call.adopted",
    "dialtone.conference.started",
    "dialtone.conference.participant.joined",
    "dialtone.conference.participant.left",
    "dialtone.conference.participant.updated",
    "dialtone.conference.ended",
];

impl Projection for CallbacksProjection {
    fn name(&self) -> &'static str {
        "callbacks"
    }

    fn replicated(&self) -> bool {
        // The outbox is the delivering node's work queue, not a read model anyone queries.
        false
    }

    fn version(&self) -> u32 {
        // 2: recording status callbacks; outbox rows numbered over all of a call's callbacks.
        // 3: conference status callbacks.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "callback_outbox",
            "callback_calls",
            "callback_recordings",
            "callback_conferences",
        ]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA)
            .map_err(sql("creating the callback outbox"))
    }

    fn wants(&self, event_type: &str) -> bool {
        WANTED.contains(&event_type)
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let call_sid = event.subject.as_str();
        match event.event_type.as_str() {
            "dialtone.call.callback.delivered" | "dialtone.call.callback.failed" => {
                let (event_name, for_sequence, state, attempts, status, error) =
                    match decode(recorded) {
                        Some(Payload::CallbackDelivered(d)) => (
                            d.event,
                            d.for_sequence,
                            DeliveryState::Delivered,
                            d.attempts,
                            Some(d.status),
                            None,
                        ),
                        Some(Payload::CallbackFailed(f)) => (
                            f.event,
                            f.for_sequence,
                            DeliveryState::Failed,
                            f.attempts,
                            None,
                            Some(f.error),
                        ),
                        _ => return Ok(()),
                    };
                tx.prepare_cached(
                    "UPDATE callback_outbox
                     SET state = ?4, attempts = ?5, http_status = ?6, error = ?7, date_updated = ?8
                     WHERE call_sid = ?1 AND for_sequence = ?2 AND event = ?3",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        call_sid,
                        for_sequence,
                        event_name,
                        state.as_str(),
                        attempts,
                        status,
                        error,
                        store_time(event.time),
                    ])
                })
                .map_err(sql("recording a callback outcome"))?;
                Ok(())
            }
            "dialtone.call.recording.started" => {
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let staged = self.staged(tx, call_sid)?;
                // The call's tracker notes a Record=true recording for its `completed`.
                staged.apply(&payload, event.sequence, event.time);
                let Payload::RecordingStarted(started) = payload else {
                    return Ok(());
                };
                if started.status_callback.is_none() {
                    return Ok(());
                }
                // The call's owner delivers; a call without status callbacks of its own has
                // no tracker, and then the writer of this event (the recording node, which
                // owns the call) says who it is.
                let owner_node = match &staged.tracker {
                    Some(tracker) => tracker.owner_node.clone(),
                    None => writer_node(&event.source).to_owned(),
                };
                let Some((subscription, planned)) = RecordingCallbacks::start(
                    call_sid,
                    &event.accountsid,
                    &owner_node,
                    &started,
                    event.sequence,
                    event.time,
                ) else {
                    return Ok(());
                };
                let json = serde_json::to_string(&subscription)
                    .map_err(|e| corrupt(format!("cannot encode a recording subscription: {e}")))?;
                tx.prepare_cached(
                    "INSERT INTO callback_recordings (recording_sid, call_sid, state)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (recording_sid) DO UPDATE SET call_sid = excluded.call_sid,
                        state = excluded.state",
                )
                .and_then(|mut s| s.execute(params![subscription.recording_sid, call_sid, json]))
                .map_err(sql("writing a recording subscription"))?;
                if let Some(planned) = planned {
                    let target = RowTarget {
                        call_sid,
                        account_sid: &subscription.account_sid,
                        owner_node: &subscription.owner_node,
                    };
                    insert_planned(tx, &target, &planned, event.time)?;
                }
                Ok(())
            }
            "dialtone.call.adopted" => {
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let Payload::CallAdopted(adopted) = &payload else {
                    return Ok(());
                };
                self.staged(tx, call_sid)?
                    .apply(&payload, event.sequence, event.time);
                // Callbacks the lost owner had not delivered go out from the adopter.
                tx.prepare_cached(
                    "UPDATE callback_outbox SET owner_node = ?2
                     WHERE call_sid = ?1 AND state = 'pending'",
                )
                .and_then(|mut s| s.execute(params![call_sid, adopted.by_node]))
                .map_err(sql("handing callbacks to the adopting node"))?;
                Ok(())
            }
            "dialtone.conference.started"
            | "dialtone.conference.participant.joined"
            | "dialtone.conference.participant.left"
            | "dialtone.conference.participant.updated"
            | "dialtone.conference.ended" => apply_conference(recorded, tx),
            "dialtone.call.recording.completed" => {
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let staged = self.staged(tx, call_sid)?;
                staged.apply(&payload, event.sequence, event.time);
                let Payload::RecordingCompleted(completed) = payload else {
                    return Ok(());
                };
                let recording_sid = completed.recording_sid.as_str();
                let stored: Option<String> = tx
                    .prepare_cached(
                        "SELECT state FROM callback_recordings
                         WHERE recording_sid = ?1 AND call_sid = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![recording_sid, call_sid], |r| r.get(0))
                            .optional()
                    })
                    .map_err(sql("reading a recording subscription"))?;
                let Some(json) = stored else {
                    return Ok(()); // nobody subscribed
                };
                let subscription: RecordingCallbacks =
                    serde_json::from_str(&json).map_err(|e| ProjectionError::CorruptRow {
                        table: "callback_recordings",
                        message: format!("subscription of {recording_sid}: {e}"),
                    })?;
                tx.prepare_cached("DELETE FROM callback_recordings WHERE recording_sid = ?1")
                    .and_then(|mut s| s.execute([recording_sid]))
                    .map_err(sql("deleting a recording subscription"))?;
                if let Some(planned) = subscription.complete(&completed, event.sequence) {
                    let target = RowTarget {
                        call_sid,
                        account_sid: &subscription.account_sid,
                        owner_node: &subscription.owner_node,
                    };
                    insert_planned(tx, &target, &planned, event.time)?;
                }
                Ok(())
            }
            _ => {
                let is_initiated = event.event_type == "dialtone.call.initiated";
                if is_initiated && event.sequence == 1 {
                    // The first event of a stream: no tracker can exist yet, skip the lookup.
                    self.staged
                        .entry(call_sid.to_owned())
                        .or_insert(StagedTracker {
                            tracker: None,
                            dirty: false,
                        });
                }
                let staged = self.staged(tx, call_sid)?;
                // Most calls have no status callback: skip decoding their events.
                if staged.tracker.is_none() && !is_initiated {
                    return Ok(());
                }
                let Some(payload) = decode(recorded) else {
                    return Ok(());
                };
                let planned = match (&payload, staged.tracker.is_some()) {
                    (Payload::CallInitiated(initiated), false) => {
                        match CallbackTracker::start(
                            call_sid,
                            &event.accountsid,
                            initiated,
                            event.sequence,
                            event.time,
                        ) {
                            Some((tracker, planned)) => {
                                staged.tracker = Some(tracker);
                                staged.dirty = true;
                                planned
                            }
                            None => None,
                        }
                    }
                    (Payload::CallInitiated(_), true) => None,
                    (_, _) => staged.apply(&payload, event.sequence, event.time),
                };
                if let (Some(planned), Some(tracker)) = (planned, staged.tracker.as_ref()) {
                    let target = RowTarget {
                        call_sid: &tracker.call_sid,
                        account_sid: &tracker.account_sid,
                        owner_node: &tracker.owner_node,
                    };
                    insert_planned(tx, &target, &planned, event.time)?;
                }
                Ok(())
            }
        }
    }

    fn before_commit(&mut self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        let staged = std::mem::take(&mut self.staged);
        for (call_sid, entry) in staged {
            if !entry.dirty {
                continue;
            }
            match entry.tracker {
                // A call that ended needs no state any more: its outbox rows carry everything.
                Some(tracker) if tracker.ended => {
                    tx.prepare_cached("DELETE FROM callback_calls WHERE call_sid = ?1")
                        .and_then(|mut s| s.execute([&call_sid]))
                        .map_err(sql("deleting a callback tracker"))?;
                }
                Some(tracker) => {
                    let json = serde_json::to_string(&tracker)
                        .map_err(|e| corrupt(format!("cannot encode tracker: {e}")))?;
                    tx.prepare_cached(
                        "INSERT INTO callback_calls (call_sid, tracker) VALUES (?1, ?2)
                         ON CONFLICT (call_sid) DO UPDATE SET tracker = excluded.tracker",
                    )
                    .and_then(|mut s| s.execute(params![call_sid, json]))
                    .map_err(sql("writing a callback tracker"))?;
                }
                None => {}
            }
        }
        Ok(())
    }

    fn after_rollback(&mut self) {
        self.staged.clear();
    }
}

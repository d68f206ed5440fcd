//! Conference rooms of this node: who is in which room, the room's `CF…` stream, and
//! `endConferenceOnExit`. Audio mixing is the media runtime's; this keeps the facts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dialtone_events::payload::{
    ConferenceEnded, ConferenceStarted, HttpMethod, ParticipantJoined, ParticipantLeft,
    ParticipantUpdated, RecordingCompleted, RecordingStarted,
};
use dialtone_events::sid::{CallSid, ConferenceSid, RecordingSid};
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_media::conference::{ConferenceRoom, Participant, ParticipantOptions};
use dialtone_media::outcome::MediaOutcome;
use dialtone_media::runtime::{MediaRuntime, MediaSession};
use tokio::sync::mpsc;

use crate::roles::registry::{CallControl, CallRegistry};

struct Room {
    sid: ConferenceSid,
    media: ConferenceRoom,
    /// Participants and whether they end the conference when they leave.
    members: HashMap<CallSid, bool>,
    /// Audio has been mixed between participants (`conference_started` was logged).
    mixing_began: bool,
    /// The room is being recorded.
    recorded: bool,
}

/// What a participant's `<Conference>` asks of the room. The first participant to ask for
/// a status callback subscribes the room (see the callbacks projection); the first to ask
/// for a recording starts it.
#[derive(Debug, Clone, Default)]
pub struct RoomRequests {
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub status_callback_events: Vec<String>,
    /// `record="record-from-start"`.
    pub recording: Option<RoomRecording>,
}

/// Where a room's recording goes.
#[derive(Debug, Clone)]
pub struct RoomRecording {
    pub sid: RecordingSid,
    /// The WAV file.
    pub path: std::path::PathBuf,
    /// The same, relative to the data dir (as recording events store it).
    pub relative_path: String,
    /// Its `RecordingUrl` (without extension).
    pub url: String,
    /// `trim="trim-silence"` (Twilio's default for conferences).
    pub trim_silence: bool,
    /// `recordingStatusCallback` (absolute), its method and events.
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub status_callback_events: Vec<String>,
}

/// `source` of a conference recording.
const CONFERENCE_SOURCE: &str = "Conference";

/// Rooms by `AC…/name`. Cheap to clone.
#[derive(Clone, Default)]
pub struct Conferences {
    /// This node, which holds these rooms (named in their `conference.started`).
    node_id: Arc<str>,
    rooms: Arc<Mutex<HashMap<String, Room>>>,
    /// Held from deciding a join's or leave's events until they are appended, so that a
    /// room's stream records them in the order they happened (two leaves racing must not
    /// log the room's end before the other leave).
    log_order: Arc<tokio::sync::Mutex<()>>,
}

/// A call's place in a room; leave with [`Conferences::leave`].
pub struct Membership {
    pub key: String,
    pub sid: ConferenceSid,
    pub participant: Participant,
    pub muted: bool,
    /// On hold (hearing its own hold music, not the room).
    pub held: bool,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the conference is full")]
    Full,
    #[error("media: {0}")]
    Media(#[from] dialtone_media::error::MediaError),
}

impl Conferences {
    /// The rooms node `node_id` holds.
    pub fn new(node_id: &str) -> Conferences {
        Conferences {
            node_id: Arc::from(node_id),
            ..Conferences::default()
        }
    }

    /// Whether this node holds `account`'s room `name` now.
    pub fn is_open(&self, account: &str, name: &str) -> bool {
        let key = format!("{account}/{name}");
        self.rooms
            .lock()
            .map(|rooms| rooms.contains_key(&key))
            .unwrap_or(false)
    }

    /// Joins `call` (of `account`) to room `name`; appends `conference.started` for a new
    /// room and `participant.joined`. Returns the membership and whether the caller has to
    /// wait (alone, or the room not started yet); those already waiting are told when the
    /// room starts.
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        log: &Arc<dyn EventLog>,
        registry: &CallRegistry,
        media: &Arc<MediaRuntime>,
        account: &str,
        name: &str,
        call: &CallSid,
        session: &MediaSession,
        options: ParticipantOptions,
        end_on_exit: bool,
        requests: RoomRequests,
    ) -> Result<(Membership, bool), JoinError> {
        let key = format!("{account}/{name}");
        let _in_order = self.log_order.lock().await;
        let mut events = Vec::new();
        let mut waiting_others = Vec::new();
        let (sid, participant, waiting, began, recording) = {
            let mut rooms = self.rooms.lock().map_err(|_| JoinError::Full)?;
            let room = rooms.entry(key.clone()).or_insert_with(|| {
                let sid = ConferenceSid::generate();
                events.push(Payload::from(ConferenceStarted {
                    friendly_name: name.to_owned(),
                    owner_node: Some(self.node_id.to_string()).filter(|n| !n.is_empty()),
                }));
                Room {
                    sid,
                    media: media.conference(&key),
                    members: HashMap::new(),
                    mixing_began: false,
                    recorded: false,
                }
            });
            let participant = match room.media.join(session, options) {
                Ok(participant) => participant,
                Err(dialtone_media::error::MediaError::ConferenceFull { .. }) => {
                    return Err(JoinError::Full)
                }
                Err(error) => return Err(error.into()),
            };
            room.members.insert(call.clone(), end_on_exit);
            let started = room.media.is_started() && room.members.len() > 1;
            let began = started && !std::mem::replace(&mut room.mixing_began, true);
            if started {
                waiting_others = room
                    .members
                    .keys()
                    .filter(|m| *m != call)
                    .cloned()
                    .collect();
            }
            let recording = requests.recording.as_ref().filter(|_| !room.recorded);
            let recording = recording.map(|recording| {
                room.recorded = true;
                let (tx, outcomes) = mpsc::unbounded_channel();
                room.media
                    .record(&recording.path, recording.trim_silence, tx);
                (recording.clone(), outcomes)
            });
            (room.sid.clone(), participant, !started, began, recording)
        };
        events.push(
            ParticipantJoined {
                call_sid: call.clone(),
                muted: options.muted,
                start_conference_on_enter: options.start_conference_on_enter,
                end_conference_on_exit: end_on_exit,
                conference_started: began,
                status_callback: requests.status_callback,
                status_callback_method: requests.status_callback_method,
                status_callback_events: requests.status_callback_events,
            }
            .into(),
        );
        if let Some((recording, outcomes)) = recording {
            events.push(
                RecordingStarted {
                    url: Some(recording.url.clone()),
                    status_callback: recording.status_callback.clone(),
                    status_callback_method: recording.status_callback_method,
                    status_callback_events: recording.status_callback_events.clone(),
                    ..RecordingStarted::new(recording.sid.clone(), CONFERENCE_SOURCE, 1)
                }
                .into(),
            );
            tokio::spawn(finish_recording(
                log.clone(),
                sid.clone(),
                account.to_owned(),
                recording,
                outcomes,
            ));
        }
        append(log.as_ref(), &sid, account, events).await;
        for other in waiting_others {
            registry.send(&other, CallControl::ConferenceStarted);
        }
        Ok((
            Membership {
                key,
                sid,
                participant,
                muted: options.muted,
                held: false,
            },
            waiting,
        ))
    }

    /// Leaves the room; with `endConferenceOnExit`, ends it for everyone (their calls are
    /// told through the registry). Appends `participant.left` (for everyone, when the room
    /// ends with this leave) and, when the room empties, `conference.ended`.
    pub async fn leave(
        &self,
        log: &dyn EventLog,
        registry: &CallRegistry,
        account: &str,
        call: &CallSid,
        membership: Membership,
    ) {
        let Membership {
            key,
            sid,
            participant,
            ..
        } = membership;
        let _in_order = self.log_order.lock().await;
        drop(participant);
        let mut events: Vec<Payload> = Vec::new();
        let mut others = Vec::new();
        if let Ok(mut rooms) = self.rooms.lock() {
            if let Some(room) = rooms.get_mut(&key) {
                // Not a member any more: the room ended and logged this call's leave then.
                if let Some(ends) = room.members.remove(call) {
                    events.push(
                        ParticipantLeft {
                            call_sid: call.clone(),
                        }
                        .into(),
                    );
                    let reason = if ends {
                        room.media.end();
                        others = room.members.drain().map(|(sid, _)| sid).collect();
                        // Everyone leaves with the room, before it ends (as Twilio reports).
                        events.extend(others.iter().map(|other| {
                            Payload::from(ParticipantLeft {
                                call_sid: other.clone(),
                            })
                        }));
                        Some("participant-with-end-conference-on-exit-left")
                    } else {
                        room.members.is_empty().then_some("last-participant-left")
                    };
                    if let Some(reason) = reason {
                        events.push(
                            ConferenceEnded {
                                reason: reason.into(),
                                call_sid_ending_conference: Some(call.clone()),
                            }
                            .into(),
                        );
                    }
                }
                if room.members.is_empty() {
                    rooms.remove(&key);
                }
            }
        }
        append(log, &sid, account, events).await;
        for other in others {
            registry.send(&other, CallControl::ConferenceEnded);
        }
    }
}

impl Conferences {
    /// Mutes or unmutes a participant, puts it on hold or takes it off (`None`: unchanged),
    /// and logs `participant.updated` with its state afterwards.
    pub async fn update_participant(
        &self,
        log: &dyn EventLog,
        account: &str,
        call: &CallSid,
        membership: &mut Membership,
        muted: Option<bool>,
        held: Option<bool>,
    ) {
        let _in_order = self.log_order.lock().await;
        if let Some(muted) = muted {
            membership.participant.set_muted(muted);
            membership.muted = muted;
        }
        if let Some(held) = held {
            membership.participant.set_held(held);
            membership.held = held;
        }
        let updated = ParticipantUpdated {
            call_sid: call.clone(),
            muted: membership.muted,
            hold: membership.held,
        };
        append(log, &membership.sid, account, vec![updated.into()]).await;
    }

    /// Ends the room `key` for everyone (REST `Status=completed`): every participant leaves
    /// (their calls are told through the registry and go on after their `<Dial>`), then
    /// `conference.ended` with `conference-ended-via-api`.
    pub async fn end(&self, log: &dyn EventLog, registry: &CallRegistry, account: &str, key: &str) {
        let _in_order = self.log_order.lock().await;
        let room = self
            .rooms
            .lock()
            .ok()
            .and_then(|mut rooms| rooms.remove(key));
        let Some(room) = room else {
            return;
        };
        room.media.end();
        let members: Vec<CallSid> = room.members.into_keys().collect();
        let mut events: Vec<Payload> = members
            .iter()
            .map(|call| {
                Payload::from(ParticipantLeft {
                    call_sid: call.clone(),
                })
            })
            .collect();
        events.push(
            ConferenceEnded {
                reason: "conference-ended-via-api".into(),
                call_sid_ending_conference: None,
            }
            .into(),
        );
        append(log, &room.sid, account, events).await;
        for member in members {
            registry.send(&member, CallControl::ConferenceEnded);
        }
    }
}

/// Waits for the room's recording to be written (the room has ended) and logs its
/// `recording.completed` on the room's stream.
async fn finish_recording(
    log: Arc<dyn EventLog>,
    conference: ConferenceSid,
    account: String,
    recording: RoomRecording,
    mut outcomes: mpsc::UnboundedReceiver<MediaOutcome>,
) {
    while let Some(outcome) = outcomes.recv().await {
        let (status, duration_ms) = match outcome {
            MediaOutcome::BridgeRecordingFinished { duration_ms, .. } => ("completed", duration_ms),
            MediaOutcome::Failed { error, .. } => {
                tracing::warn!(%conference, %error, "the conference recording failed");
                ("failed", 0)
            }
            _ => continue,
        };
        let completed = RecordingCompleted {
            recording_sid: recording.sid,
            status: status.into(),
            duration_ms,
            path: recording.relative_path,
            channels: 1,
            source: CONFERENCE_SOURCE.into(),
            digits: None,
            error_code: None,
        };
        append(log.as_ref(), &conference, &account, vec![completed.into()]).await;
        return;
    }
}

async fn append(log: &dyn EventLog, sid: &ConferenceSid, account: &str, events: Vec<Payload>) {
    if events.is_empty() {
        return;
    }
    let events = events
        .into_iter()
        .map(|p| NewEvent::new(account, p))
        .collect();
    if let Err(error) = log.append(sid.as_str(), ExpectedVersion::Any, events).await {
        tracing::error!(conference = %sid, %error, "cannot append conference events");
    }
}

//! Conference rooms (Twilio `<Dial><Conference>`): N-party mixing.
//!
//! ```text
//! let room = media.conference("AC123/standup");
//! let me = room.join(&session, ParticipantOptions { muted: false, ..Default::default() })?;
//! if room.participants() == 1 { session.play(wait music, loops 0) }   // waitUrl while alone
//! // when someone else joins (the shell sees it through its own join calls): stop_playback
//! me.set_muted(true);
//! drop(me);            // or me.leave(); or session.close(); endConferenceOnExit: room.end()
//! ```
//!
//! Every 20 ms each participant hears the sum of the others (N-1 mix, clipped), plus the
//! join/leave beeps; muted participants are heard by nobody but still hear everyone. A
//! participant alone hears silence. Conference audio is **summed** with the participant's own
//! playback, so wait music or announcements are played with the normal commands (`Play`,
//! `Say`) and stopped with `stop_playback`. Keys pressed are reported as `Dtmf` on the
//! participant's own session and not relayed to the others.
//!
//! A room is "started" once a participant joins with `start_conference_on_enter` (or on
//! `start()`); before that nobody hears anybody (only beeps), as with Twilio's
//! `startConferenceOnEnter=false` participants waiting for the moderator.

use std::sync::Arc;

use crate::error::MediaError;
use crate::mixer::{JoinSpec, MixerHandle};
use crate::runtime::{MediaRuntime, MediaSession};

/// How a participant joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantOptions {
    /// Heard by nobody (Twilio `muted`).
    pub muted: bool,
    /// Everyone hears a rising beep when this participant joins (Twilio `beep` true/onEnter).
    pub beep_on_enter: bool,
    /// Everyone hears a falling beep when this participant leaves (Twilio `beep` true/onExit).
    pub beep_on_exit: bool,
    /// Joining starts the conference (Twilio `startConferenceOnEnter`, default true).
    pub start_conference_on_enter: bool,
    /// Refuse the join when the room already has this many participants (Twilio
    /// `maxParticipants`, at most 250).
    pub max_participants: Option<usize>,
}

impl Default for ParticipantOptions {
    fn default() -> ParticipantOptions {
        ParticipantOptions {
            muted: false,
            beep_on_enter: true,
            beep_on_exit: true,
            start_conference_on_enter: true,
            max_participants: Some(250),
        }
    }
}

/// A named conference room (cheap to clone; the room itself exists while it has
/// participants).
#[derive(Clone)]
pub struct ConferenceRoom {
    runtime: Arc<MediaRuntime>,
    key: Arc<str>,
}

impl std::fmt::Debug for ConferenceRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceRoom")
            .field("key", &self.key)
            .finish()
    }
}

impl ConferenceRoom {
    pub(crate) fn new(runtime: Arc<MediaRuntime>, key: Arc<str>) -> ConferenceRoom {
        ConferenceRoom { runtime, key }
    }

    fn mixer(&self) -> &Arc<MixerHandle> {
        &self.runtime.mixer
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Adds a session. Fails when the session is closed, already in a bridge or room, from
    /// another runtime, or when the room is full. The session's playback goes on (summed).
    pub fn join(
        &self,
        session: &MediaSession,
        options: ParticipantOptions,
    ) -> Result<Participant, MediaError> {
        if !Arc::ptr_eq(session.runtime(), &self.runtime) {
            return Err(MediaError::ForeignSession);
        }
        if session.is_closed() {
            return Err(MediaError::SessionClosed);
        }
        let link = session.leg_link();
        let key = link.key;
        let membership = self.mixer().join(
            &self.key,
            link,
            JoinSpec {
                muted: options.muted,
                beep_on_enter: options.beep_on_enter,
                beep_on_exit: options.beep_on_exit,
                start_conference: options.start_conference_on_enter,
                max_participants: options.max_participants,
            },
        )?;
        Ok(Participant {
            mixer: self.mixer().clone(),
            room: self.key.clone(),
            key,
            membership,
        })
    }

    /// Participants in the room now.
    pub fn participants(&self) -> usize {
        self.mixer().room_size(&self.key)
    }

    /// Whether the conference has started (participants hear each other).
    pub fn is_started(&self) -> bool {
        self.mixer().room_started(&self.key)
    }

    /// Starts the conference (a moderator joined by other means); no effect on an empty room.
    pub fn start(&self) {
        self.mixer().start_room(&self.key);
    }

    /// Records the room (Twilio `record="record-from-start"`): one mono WAV at `path` of
    /// everything said in the room (every unmuted participant, summed, and the beeps) while
    /// the conference is started, until the room ends (its last participant leaves, or
    /// [`end`](Self::end)); with `trim_silence`, without leading and trailing silence.
    /// `outcomes` gets `RecordingStarted`, then `BridgeRecordingFinished` (or `Failed`: the
    /// room is empty or recorded already) with the returned id.
    pub fn record(
        &self,
        path: impl Into<std::path::PathBuf>,
        trim_silence: bool,
        outcomes: tokio::sync::mpsc::UnboundedSender<crate::outcome::MediaOutcome>,
    ) -> crate::playout::CommandId {
        let id = self.runtime.next_command_id();
        let plan = crate::mixer::RecordingPlan {
            id,
            path: path.into(),
            channels: 1,
            from_ringing: false,
            trim_silence,
        };
        self.mixer().record_room(&self.key, plan, outcomes);
        id
    }

    /// Ends the conference (Twilio `endConferenceOnExit`): every participant leaves at once,
    /// without beeps, and goes back to plain playout.
    pub fn end(&self) {
        self.mixer().end_room(&self.key);
    }
}

/// A session in a room; dropping it leaves the room.
pub struct Participant {
    mixer: Arc<MixerHandle>,
    room: Arc<str>,
    key: u64,
    membership: u64,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("room", &self.room)
            .field("key", &self.key)
            .finish()
    }
}

impl Participant {
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Mutes or unmutes (Twilio participant `muted` update).
    pub fn set_muted(&self, muted: bool) {
        self.mixer
            .set_muted(&self.room, self.key, self.membership, muted);
    }

    /// Puts on hold or takes off hold (Twilio participant `hold`): on hold, nobody hears the
    /// participant and it hears nobody, only its own playback (the hold music the shell
    /// plays).
    pub fn set_held(&self, held: bool) {
        self.mixer
            .set_held(&self.room, self.key, self.membership, held);
    }

    /// Whether the participant is still in the room (not left, room not ended, session open).
    pub fn is_active(&self) -> bool {
        self.mixer.participant_active(self.key, self.membership)
    }

    /// Leaves the room (with the exit beep if asked at join); the session goes back to plain
    /// playout.
    pub fn leave(self) {
        // Drop does it.
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.mixer.leave(&self.room, self.key, self.membership);
    }
}

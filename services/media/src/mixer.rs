//! The mixer: bridges and conference rooms, on their own thread ticking every 20 ms.
//!
//! Audio flows in three hops, each through a small buffer owned by the leg ([`LegMix`]):
//!
//! ```text
//! receive thread ──push──▶ input jitter buffer ──pop (mixer tick)──▶ mix ──▶ output queue
//!                                                           engine tick ◀──pop──┘
//! ```
//!
//! The receive thread decodes each packet of a joined leg into its input buffer; the mixer
//! takes one frame per leg per tick, computes what every leg hears (the other leg of a
//! bridge; the N-1 sum of a room), records bridges, and queues the result on each leg's
//! output; the leg's playout engine thread takes one frame per tick, sums it with the leg's
//! own playback and sends it with the leg's own SSRC, sequence numbers and timestamps, in the
//! leg's codec. The legs of one bridge may live on different engine threads: only the small
//! buffers are shared.
//!
//! Membership (which session is in which bridge or room) is kept in a registry updated
//! synchronously by the API (so that joins can fail, e.g. on a full room), and mirrored by
//! commands to the mixer thread, sent in the same order under the registry lock.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::dtmf::rfc4733::TelephoneEvent;
use crate::error::MediaError;
use crate::mix::{
    add_frames, mix_minus_one, BeepQueue, Frame, JitterBuffer, RelayedEvent, ENTER_BEEP, EXIT_BEEP,
    SILENT_FRAME,
};
use crate::outcome::MediaOutcome;
use crate::pcm::FRAME_SAMPLES;
use crate::playout::CommandId;
use crate::writer::{RecordingKind, RecordingWriter};

const FRAME: Duration = Duration::from_millis(20);
/// Further behind than this, the mixer skips ticks rather than bursting to catch up.
const MAX_LAG: Duration = Duration::from_millis(200);
/// Frames waiting for the engine at most; beyond, the oldest is dropped (bounded delay).
const MAX_OUTPUT_FRAMES: usize = 3;
/// Event packets buffered per leg at most.
const MAX_EVENTS: usize = 64;
/// Frames of a bridge recording handed to the writer at once (1 s).
const RECORDING_CHUNK_FRAMES: usize = 50;

#[derive(Default)]
struct LegInput {
    jitter: JitterBuffer,
    events: VecDeque<RelayedEvent>,
}

#[derive(Default)]
struct LegOutput {
    frames: VecDeque<Frame>,
    events: VecDeque<RelayedEvent>,
}

/// The buffers between a session's receive side, the mixer and its send side. Idle (two
/// relaxed atomic loads per packet and per frame) while the session is in no bridge or room.
/// It also carries the received audio of a call recording from the receive thread to the
/// engine thread (a jitter buffer of its own, so that a bridge taking the same audio does not
/// interfere), idle while no call recording runs.
#[derive(Default)]
pub(crate) struct LegMix {
    receiving: AtomicBool,
    input: Mutex<LegInput>,
    sending: AtomicBool,
    output: Mutex<LegOutput>,
    recording: AtomicBool,
    recorded: Mutex<JitterBuffer>,
}

impl LegMix {
    pub(crate) fn new() -> Arc<LegMix> {
        Arc::new(LegMix::default())
    }

    /// Whether the receive thread should hand this leg's audio to the mixer.
    pub(crate) fn is_receiving(&self) -> bool {
        self.receiving.load(Ordering::Acquire)
    }

    /// Received audio (receive thread).
    pub(crate) fn push_audio(&self, timestamp: u32, samples: &[i16]) {
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        input.jitter.push(timestamp, samples);
    }

    /// A received telephone-event packet (receive thread).
    pub(crate) fn push_event(&self, timestamp: u32, event: TelephoneEvent) {
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        if input.events.len() >= MAX_EVENTS {
            input.events.pop_front();
        }
        input.events.push_back(RelayedEvent { timestamp, event });
    }

    /// Whether the receive thread should hand this leg's audio to a call recording.
    pub(crate) fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Acquire)
    }

    /// Received audio for the call recording (receive thread).
    pub(crate) fn push_recorded(&self, timestamp: u32, samples: &[i16]) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        recorded.push(timestamp, samples);
    }

    /// This tick's received frame for the call recording, if one is ready (engine thread).
    pub(crate) fn pop_recorded(&self) -> Option<Frame> {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        recorded.pop()
    }

    /// A call recording starts or stops taking the received audio (engine thread).
    pub(crate) fn set_recording(&self, on: bool) {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.recording.store(on, Ordering::Release);
    }

    /// Whether the engine should send the mixer's audio for this leg.
    pub(crate) fn is_sending(&self) -> bool {
        self.sending.load(Ordering::Acquire)
    }

    /// This tick's frame for the leg (silence when the mixer has none ready), handing the
    /// relayed events to `relay` (engine thread).
    pub(crate) fn take_output(&self, mut relay: impl FnMut(RelayedEvent)) -> Frame {
        let mut output = self.output.lock().unwrap_or_else(|p| p.into_inner());
        for ev in output.events.drain(..) {
            relay(ev);
        }
        output.frames.pop_front().unwrap_or(SILENT_FRAME)
    }

    fn pop_input(&self, events: &mut Vec<RelayedEvent>) -> Option<Frame> {
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        events.extend(input.events.drain(..));
        input.jitter.pop()
    }

    fn push_output(&self, frame: Frame, events: &[RelayedEvent]) {
        let mut output = self.output.lock().unwrap_or_else(|p| p.into_inner());
        if output.frames.len() >= MAX_OUTPUT_FRAMES {
            output.frames.pop_front();
        }
        output.frames.push_back(frame);
        for ev in events {
            if output.events.len() >= MAX_EVENTS {
                output.events.pop_front();
            }
            output.events.push_back(*ev);
        }
    }

    /// Joins a group: fresh buffers, then the flags.
    fn attach(&self, send: bool) {
        self.clear();
        self.receiving.store(true, Ordering::Release);
        self.sending.store(send, Ordering::Release);
    }

    fn set_sending(&self, send: bool) {
        if send && !self.is_sending() {
            let mut output = self.output.lock().unwrap_or_else(|p| p.into_inner());
            output.frames.clear();
            output.events.clear();
        }
        self.sending.store(send, Ordering::Release);
    }

    /// Leaves the group: the engine goes back to plain playout at its next frame.
    fn detach(&self) {
        self.receiving.store(false, Ordering::Release);
        self.sending.store(false, Ordering::Release);
        self.clear();
    }

    fn clear(&self) {
        {
            let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
            input.jitter.clear();
            input.events.clear();
        }
        let mut output = self.output.lock().unwrap_or_else(|p| p.into_inner());
        output.frames.clear();
        output.events.clear();
    }
}

/// What the mixer needs of a session.
#[derive(Clone)]
pub(crate) struct LegLink {
    pub key: u64,
    pub mix: Arc<LegMix>,
    pub outcomes: UnboundedSender<MediaOutcome>,
}

/// A bridge recording to make.
#[derive(Debug, Clone)]
pub(crate) struct RecordingPlan {
    pub id: CommandId,
    pub path: PathBuf,
    pub channels: u16,
    pub from_ringing: bool,
    pub trim_silence: bool,
}

enum MixerCommand {
    Bridge {
        id: u64,
        a: LegLink,
        b: LegLink,
        connected: bool,
        recording: Option<RecordingPlan>,
    },
    Connect {
        id: u64,
    },
    EndBridge {
        id: u64,
    },
    Join {
        room: Arc<str>,
        leg: LegLink,
        muted: bool,
        beep: bool,
    },
    Leave {
        room: Arc<str>,
        key: u64,
        beep: bool,
    },
    Mute {
        room: Arc<str>,
        key: u64,
        muted: bool,
    },
    Hold {
        room: Arc<str>,
        key: u64,
        held: bool,
    },
    StartRoom {
        room: Arc<str>,
    },
    EndRoom {
        room: Arc<str>,
    },
    RecordRoom {
        room: Arc<str>,
        plan: RecordingPlan,
        outcomes: UnboundedSender<MediaOutcome>,
    },
    Shutdown,
}

/// Options of a participant, as the registry needs them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinSpec {
    pub muted: bool,
    pub beep_on_enter: bool,
    pub beep_on_exit: bool,
    pub start_conference: bool,
    pub max_participants: Option<usize>,
}

enum Group {
    Bridge(u64),
    Room(Arc<str>),
}

struct Membership {
    id: u64,
    group: Group,
}

struct BridgeBook {
    a: u64,
    b: u64,
    connected: bool,
}

struct ParticipantBook {
    beep_on_exit: bool,
}

#[derive(Default)]
struct RoomBook {
    started: bool,
    participants: HashMap<u64, ParticipantBook>,
}

#[derive(Default)]
struct Registry {
    legs: HashMap<u64, Membership>,
    bridges: HashMap<u64, BridgeBook>,
    rooms: HashMap<Arc<str>, RoomBook>,
}

/// The API side of the mixer: the registry and the command channel.
pub(crate) struct MixerHandle {
    tx: Sender<MixerCommand>,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl MixerHandle {
    /// Starts the mixer thread; bridge recordings go to `writer`.
    pub(crate) fn start(writer: RecordingWriter) -> Result<Arc<MixerHandle>, MediaError> {
        let (tx, rx) = mpsc::channel();
        let name = "media-mixer".to_string();
        let join = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || MixerThread::new(rx, writer).run())
            .map_err(|source| MediaError::Thread { name, source })?;
        Ok(Arc::new(MixerHandle {
            tx,
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            join: Mutex::new(Some(join)),
        }))
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, cmd: MixerCommand) {
        if self.tx.send(cmd).is_err() {
            tracing::debug!("the media mixer has stopped");
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a bridge between two free legs; returns its id.
    pub(crate) fn bridge(
        &self,
        a: LegLink,
        b: LegLink,
        connected: bool,
        recording: Option<RecordingPlan>,
    ) -> Result<u64, MediaError> {
        if a.key == b.key {
            return Err(MediaError::BridgeWithItself);
        }
        let mut reg = self.registry();
        if reg.legs.contains_key(&a.key) || reg.legs.contains_key(&b.key) {
            return Err(MediaError::AlreadyJoined);
        }
        let id = self.next_id();
        for key in [a.key, b.key] {
            reg.legs.insert(
                key,
                Membership {
                    id,
                    group: Group::Bridge(id),
                },
            );
        }
        reg.bridges.insert(
            id,
            BridgeBook {
                a: a.key,
                b: b.key,
                connected,
            },
        );
        self.send(MixerCommand::Bridge {
            id,
            a,
            b,
            connected,
            recording,
        });
        Ok(id)
    }

    /// Connects a bridge still in early media; false when it is gone or already connected.
    pub(crate) fn connect(&self, id: u64) -> bool {
        let mut reg = self.registry();
        match reg.bridges.get_mut(&id) {
            Some(book) if !book.connected => {
                book.connected = true;
                self.send(MixerCommand::Connect { id });
                true
            }
            _ => false,
        }
    }

    pub(crate) fn bridge_state(&self, id: u64) -> Option<bool> {
        self.registry().bridges.get(&id).map(|b| b.connected)
    }

    pub(crate) fn end_bridge(&self, id: u64) {
        let mut reg = self.registry();
        Self::end_bridge_locked(&mut reg, id, self);
    }

    fn end_bridge_locked(reg: &mut Registry, id: u64, handle: &MixerHandle) {
        if let Some(book) = reg.bridges.remove(&id) {
            reg.legs.remove(&book.a);
            reg.legs.remove(&book.b);
            handle.send(MixerCommand::EndBridge { id });
        }
    }

    /// Adds a participant to a room (created on first join); returns the membership id.
    pub(crate) fn join(
        &self,
        room: &Arc<str>,
        leg: LegLink,
        spec: JoinSpec,
    ) -> Result<u64, MediaError> {
        let mut reg = self.registry();
        if reg.legs.contains_key(&leg.key) {
            return Err(MediaError::AlreadyJoined);
        }
        let size = reg.rooms.get(room).map_or(0, |r| r.participants.len());
        if let Some(max) = spec.max_participants {
            if size >= max {
                return Err(MediaError::ConferenceFull {
                    room: room.to_string(),
                    max,
                });
            }
        }
        let id = self.next_id();
        reg.legs.insert(
            leg.key,
            Membership {
                id,
                group: Group::Room(room.clone()),
            },
        );
        let book = reg.rooms.entry(room.clone()).or_default();
        book.participants.insert(
            leg.key,
            ParticipantBook {
                beep_on_exit: spec.beep_on_exit,
            },
        );
        let start = spec.start_conference && !book.started;
        if start {
            book.started = true;
        }
        self.send(MixerCommand::Join {
            room: room.clone(),
            leg,
            muted: spec.muted,
            beep: spec.beep_on_enter,
        });
        if start {
            self.send(MixerCommand::StartRoom { room: room.clone() });
        }
        Ok(id)
    }

    /// Removes a participant (if `membership` is still its current one).
    pub(crate) fn leave(&self, room: &Arc<str>, key: u64, membership: u64) {
        let mut reg = self.registry();
        if reg.legs.get(&key).is_some_and(|m| m.id == membership) {
            Self::leave_locked(&mut reg, room, key, self);
        }
    }

    fn leave_locked(reg: &mut Registry, room: &Arc<str>, key: u64, handle: &MixerHandle) {
        reg.legs.remove(&key);
        let Some(book) = reg.rooms.get_mut(room) else {
            return;
        };
        let beep = book
            .participants
            .remove(&key)
            .is_some_and(|p| p.beep_on_exit);
        if book.participants.is_empty() {
            reg.rooms.remove(room);
        }
        handle.send(MixerCommand::Leave {
            room: room.clone(),
            key,
            beep,
        });
    }

    pub(crate) fn participant_active(&self, key: u64, membership: u64) -> bool {
        self.registry()
            .legs
            .get(&key)
            .is_some_and(|m| m.id == membership)
    }

    pub(crate) fn set_muted(&self, room: &Arc<str>, key: u64, membership: u64, muted: bool) {
        let reg = self.registry();
        if reg.legs.get(&key).is_some_and(|m| m.id == membership) {
            self.send(MixerCommand::Mute {
                room: room.clone(),
                key,
                muted,
            });
        }
    }

    pub(crate) fn set_held(&self, room: &Arc<str>, key: u64, membership: u64, held: bool) {
        let reg = self.registry();
        if reg.legs.get(&key).is_some_and(|m| m.id == membership) {
            self.send(MixerCommand::Hold {
                room: room.clone(),
                key,
                held,
            });
        }
    }

    pub(crate) fn room_size(&self, room: &Arc<str>) -> usize {
        self.registry()
            .rooms
            .get(room)
            .map_or(0, |r| r.participants.len())
    }

    pub(crate) fn room_started(&self, room: &Arc<str>) -> bool {
        self.registry().rooms.get(room).is_some_and(|r| r.started)
    }

    pub(crate) fn start_room(&self, room: &Arc<str>) {
        let mut reg = self.registry();
        if let Some(book) = reg.rooms.get_mut(room) {
            if !book.started {
                book.started = true;
                self.send(MixerCommand::StartRoom { room: room.clone() });
            }
        }
    }

    /// Records the room's mix (see [`crate::conference::ConferenceRoom::record`]).
    pub(crate) fn record_room(
        &self,
        room: &Arc<str>,
        plan: RecordingPlan,
        outcomes: UnboundedSender<MediaOutcome>,
    ) {
        self.send(MixerCommand::RecordRoom {
            room: room.clone(),
            plan,
            outcomes,
        });
    }

    pub(crate) fn end_room(&self, room: &Arc<str>) {
        let mut reg = self.registry();
        if let Some(book) = reg.rooms.remove(room) {
            for key in book.participants.keys() {
                reg.legs.remove(key);
            }
            self.send(MixerCommand::EndRoom { room: room.clone() });
        }
    }

    /// The session closed: its bridge ends (the other leg goes back to plain playout), or it
    /// leaves its room (with its exit beep).
    pub(crate) fn leg_closed(&self, key: u64) {
        let mut reg = self.registry();
        let group = match reg.legs.get(&key) {
            Some(Membership {
                group: Group::Bridge(id),
                ..
            }) => Group::Bridge(*id),
            Some(Membership {
                group: Group::Room(room),
                ..
            }) => Group::Room(room.clone()),
            None => return,
        };
        match group {
            Group::Bridge(id) => Self::end_bridge_locked(&mut reg, id, self),
            Group::Room(room) => Self::leave_locked(&mut reg, &room, key, self),
        }
    }

    /// Stops the mixer: bridges end, recordings are completed.
    pub(crate) fn shutdown(&self) {
        self.send(MixerCommand::Shutdown);
        let join = self.join.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(j) = join {
            if j.join().is_err() {
                tracing::error!("the media mixer thread panicked");
            }
        }
    }
}

struct ActiveRecording {
    plan: RecordingPlan,
    outcomes: UnboundedSender<MediaOutcome>,
    started: bool,
    chunk: Vec<i16>,
}

impl ActiveRecording {
    fn start(&mut self, writer: &RecordingWriter) {
        if self.started {
            return;
        }
        self.started = true;
        writer.open(
            self.plan.id,
            self.plan.path.clone(),
            self.plan.channels,
            RecordingKind::Bridge,
            self.plan.trim_silence,
            self.outcomes.clone(),
        );
        let _ = self
            .outcomes
            .send(MediaOutcome::RecordingStarted { id: self.plan.id });
    }

    fn push(&mut self, a: &Frame, b: &Frame, writer: &RecordingWriter) {
        if !self.started {
            return;
        }
        if self.plan.channels == 2 {
            for (x, y) in a.iter().zip(b) {
                self.chunk.push(*x);
                self.chunk.push(*y);
            }
        } else {
            self.chunk.extend_from_slice(&add_frames(a, b));
        }
        self.flush_full(writer);
    }

    /// A mono frame (a conference room's mix).
    fn push_mono(&mut self, frame: &Frame, writer: &RecordingWriter) {
        if !self.started {
            return;
        }
        self.chunk.extend_from_slice(frame);
        self.flush_full(writer);
    }

    fn flush_full(&mut self, writer: &RecordingWriter) {
        let full = RECORDING_CHUNK_FRAMES * FRAME_SAMPLES * usize::from(self.plan.channels);
        if self.chunk.len() >= full {
            writer.write(self.plan.id, std::mem::take(&mut self.chunk));
        }
    }

    fn finish(mut self, writer: &RecordingWriter) {
        if !self.started {
            return;
        }
        if !self.chunk.is_empty() {
            writer.write(self.plan.id, std::mem::take(&mut self.chunk));
        }
        writer.close(self.plan.id);
    }
}

struct BridgeGroup {
    a: LegLink,
    b: LegLink,
    connected: bool,
    recording: Option<ActiveRecording>,
}

struct Member {
    leg: LegLink,
    muted: bool,
    /// On hold: neither heard nor hearing the room (its own playback, e.g. hold music, goes
    /// on).
    held: bool,
}

#[derive(Default)]
struct Room {
    members: Vec<Member>,
    started: bool,
    beeps: BeepQueue,
    /// The room's recording: written while the room is started, finished when it ends.
    recording: Option<ActiveRecording>,
}

impl Room {
    fn close(self, writer: &RecordingWriter) {
        for m in self.members {
            m.leg.mix.detach();
        }
        if let Some(rec) = self.recording {
            rec.finish(writer);
        }
    }
}

struct MixerThread {
    ctrl: Receiver<MixerCommand>,
    writer: RecordingWriter,
    bridges: HashMap<u64, BridgeGroup>,
    rooms: HashMap<Arc<str>, Room>,
    events_a: Vec<RelayedEvent>,
    events_b: Vec<RelayedEvent>,
    inputs: Vec<Option<Frame>>,
    outputs: Vec<Frame>,
}

impl MixerThread {
    fn new(ctrl: Receiver<MixerCommand>, writer: RecordingWriter) -> MixerThread {
        MixerThread {
            ctrl,
            writer,
            bridges: HashMap::new(),
            rooms: HashMap::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut base = Instant::now();
        let mut tick: u32 = 0;
        loop {
            if self.bridges.is_empty() && self.rooms.is_empty() {
                match self.ctrl.recv_timeout(Duration::from_millis(100)) {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                base = Instant::now();
                tick = 0;
                continue;
            }
            let due = base + FRAME * tick;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else if now - due > MAX_LAG {
                tracing::warn!("media mixer fell behind; skipping ticks");
                base = now;
                tick = 0;
            }
            if !self.drain() {
                break;
            }
            self.tick();
            tick = tick.wrapping_add(1);
            if tick >= 50 * 60 {
                // rebase every minute so the multiplication never overflows
                base += FRAME * tick;
                tick = 0;
            }
        }
        for (_, group) in self.bridges.drain() {
            end_bridge(group, &self.writer);
        }
        for (_, room) in self.rooms.drain() {
            room.close(&self.writer);
        }
        // The runtime stops the writer once the engine threads, which write call
        // recordings, have stopped too.
    }

    /// Handles pending commands; false when the thread must stop.
    fn drain(&mut self) -> bool {
        loop {
            match self.ctrl.try_recv() {
                Ok(cmd) => {
                    if !self.handle(cmd) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle(&mut self, cmd: MixerCommand) -> bool {
        match cmd {
            MixerCommand::Bridge {
                id,
                a,
                b,
                connected,
                recording,
            } => {
                // A hears B from the start (early media); B hears A once connected.
                a.mix.attach(true);
                b.mix.attach(connected);
                let mut recording = recording.map(|plan| ActiveRecording {
                    outcomes: a.outcomes.clone(),
                    plan,
                    started: false,
                    chunk: Vec::new(),
                });
                if let Some(rec) = recording.as_mut() {
                    if connected || rec.plan.from_ringing {
                        rec.start(&self.writer);
                    }
                }
                self.bridges.insert(
                    id,
                    BridgeGroup {
                        a,
                        b,
                        connected,
                        recording,
                    },
                );
            }
            MixerCommand::Connect { id } => {
                if let Some(group) = self.bridges.get_mut(&id) {
                    group.connected = true;
                    group.b.mix.set_sending(true);
                    if let Some(rec) = group.recording.as_mut() {
                        rec.start(&self.writer);
                    }
                }
            }
            MixerCommand::EndBridge { id } => {
                if let Some(group) = self.bridges.remove(&id) {
                    end_bridge(group, &self.writer);
                }
            }
            MixerCommand::Join {
                room,
                leg,
                muted,
                beep,
            } => {
                leg.mix.attach(true);
                let room = self.rooms.entry(room).or_default();
                if beep {
                    room.beeps.push(ENTER_BEEP.clone());
                }
                room.members.retain(|m| m.leg.key != leg.key);
                room.members.push(Member {
                    leg,
                    muted,
                    held: false,
                });
            }
            MixerCommand::Leave { room, key, beep } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    if let Some(pos) = r.members.iter().position(|m| m.leg.key == key) {
                        let m = r.members.swap_remove(pos);
                        m.leg.mix.detach();
                        if beep {
                            r.beeps.push(EXIT_BEEP.clone());
                        }
                    }
                    if r.members.is_empty() {
                        if let Some(r) = self.rooms.remove(&room) {
                            r.close(&self.writer);
                        }
                    }
                }
            }
            MixerCommand::Mute { room, key, muted } => {
                if let Some(m) = self
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.members.iter_mut().find(|m| m.leg.key == key))
                {
                    m.muted = muted;
                }
            }
            MixerCommand::Hold { room, key, held } => {
                if let Some(m) = self
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.members.iter_mut().find(|m| m.leg.key == key))
                {
                    m.held = held;
                }
            }
            MixerCommand::StartRoom { room } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.started = true;
                }
            }
            MixerCommand::EndRoom { room } => {
                if let Some(r) = self.rooms.remove(&room) {
                    r.close(&self.writer);
                }
            }
            MixerCommand::RecordRoom {
                room,
                plan,
                outcomes,
            } => match self.rooms.get_mut(&room) {
                Some(r) if r.recording.is_none() => {
                    let mut recording = ActiveRecording {
                        plan,
                        outcomes,
                        started: false,
                        chunk: Vec::new(),
                    };
                    recording.start(&self.writer);
                    r.recording = Some(recording);
                }
                _ => {
                    let _ = outcomes.send(MediaOutcome::Failed {
                        id: plan.id,
                        error: Arc::new(MediaError::ConferenceNotRecordable),
                    });
                }
            },
            MixerCommand::Shutdown => return false,
        }
        true
    }

    fn tick(&mut self) {
        let MixerThread {
            writer,
            bridges,
            rooms,
            events_a,
            events_b,
            inputs,
            outputs,
            ..
        } = self;
        for group in bridges.values_mut() {
            events_a.clear();
            events_b.clear();
            let a = group.a.mix.pop_input(events_a).unwrap_or(SILENT_FRAME);
            let b = group.b.mix.pop_input(events_b).unwrap_or(SILENT_FRAME);
            if group.connected {
                group.b.mix.push_output(a, events_a);
            }
            group.a.mix.push_output(b, events_b);
            if let Some(rec) = group.recording.as_mut() {
                rec.push(&a, &b, writer);
            }
        }
        for room in rooms.values_mut() {
            inputs.clear();
            for m in &room.members {
                events_a.clear();
                // Keys pressed in a conference are not relayed to the others.
                let frame = m.leg.mix.pop_input(events_a);
                inputs.push(if m.muted || m.held || !room.started {
                    None
                } else {
                    frame
                });
            }
            let beep = room.beeps.next_frame();
            mix_minus_one(inputs, beep.as_ref(), outputs);
            for (m, out) in room.members.iter().zip(outputs.iter()) {
                let out = if m.held { &SILENT_FRAME } else { out };
                m.leg.mix.push_output(*out, &[]);
            }
            if let (Some(rec), true) = (room.recording.as_mut(), room.started) {
                // Everyone: the sum of every input and the beeps.
                let mut mix = beep.unwrap_or(SILENT_FRAME);
                for frame in inputs.iter().flatten() {
                    mix = add_frames(&mix, frame);
                }
                rec.push_mono(&mix, writer);
            }
        }
    }
}

fn end_bridge(group: BridgeGroup, writer: &RecordingWriter) {
    group.a.mix.detach();
    group.b.mix.detach();
    if let Some(rec) = group.recording {
        rec.finish(writer);
    }
}

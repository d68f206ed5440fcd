//! The playout engine: a few threads, each owning many streams, sending every stream's next
//! frame every 20 ms on an absolute schedule.
//!
//! Each 20 ms frame is split into [`SLOTS`] slots of 1 ms; a stream is placed in the least
//! loaded slot of the least loaded thread, and its packets are due at `frame * 20 ms + slot`.
//! Spreading the streams this way keeps each burst of sends short, so a stream's packet leaves
//! close to its own due time instead of queueing behind every other stream's. The schedule is
//! absolute (`due = base + n * 20 ms`), so there is no drift. Each stream sends from its own
//! session socket (symmetric RTP: the remote sees packets come from the port it sends to), so
//! sends cannot be batched with `sendmmsg` (one socket per message); instead each slot is a
//! tight loop of non-blocking `send_to`, with no allocation per packet and no timer per stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use rtp_rs::RtpReader;

use crate::call_recording::{CallRecordingMix, CallRecordingOptions, RecordingTrack};
use crate::codec::Codec;
use crate::error::MediaError;
use crate::mix::{Frame, SILENT_FRAME};
use crate::mixer::LegMix;
use crate::outcome::{MediaOutcome, SessionCounters};
use crate::pcm::FRAME_SAMPLES;
use crate::playout::{CommandId, PlayoutEvent, QueuedItem, StreamPlayout};
use crate::rtp::MAX_PACKET;
use crate::rx::{RxCommand, RxHandle};
use crate::writer::{RecordingKind, RecordingWriter};

/// Slots per 20 ms frame (1 ms apart).
pub const SLOTS: u32 = 20;
const FRAME_US: u64 = 20_000;
const SLOT_US: u64 = FRAME_US / SLOTS as u64;
/// Further behind than this, the engine skips frames rather than bursting to catch up.
const MAX_LAG: Duration = Duration::from_millis(200);
/// Frames of a call recording handed to the writer at once (1 s).
const RECORDING_CHUNK_FRAMES: usize = 50;

/// A histogram of send lateness (actual send time minus due time) in 10 µs buckets up to
/// 100 ms; no allocation when recording.
#[derive(Clone)]
pub struct JitterHistogram {
    buckets: Box<[u64]>,
    overflow: u64,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

const BUCKET_US: u64 = 10;
const BUCKETS: usize = 10_000;

impl Default for JitterHistogram {
    fn default() -> JitterHistogram {
        JitterHistogram {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            overflow: 0,
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl std::fmt::Debug for JitterHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitterHistogram")
            .field("count", &self.count)
            .field("p50_us", &self.percentile_us(50.0))
            .field("p99_us", &self.percentile_us(99.0))
            .field("max_us", &self.max_us)
            .finish()
    }
}

impl JitterHistogram {
    pub fn record(&mut self, us: u64) {
        let i = (us / BUCKET_US) as usize;
        match self.buckets.get_mut(i) {
            Some(b) => *b += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &JitterHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += *b;
        }
        self.overflow += other.overflow;
        self.count += other.count;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    pub fn mean_us(&self) -> u64 {
        self.sum_us.checked_div(self.count).unwrap_or(0)
    }

    /// The `p`th percentile (upper edge of its bucket), in µs.
    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return ((i as u64 + 1) * BUCKET_US).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// Counters of the engine since start or the last reset.
#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    pub threads: usize,
    pub streams: usize,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub send_errors: u64,
    /// Frames skipped because a thread fell more than 200 ms behind.
    pub skipped_frames: u64,
    pub jitter: JitterHistogram,
    /// CPU time of the engine threads (summed).
    pub cpu: Duration,
    /// Wall time covered (the longest of the threads).
    pub wall: Duration,
}

impl EngineStats {
    fn merge(&mut self, other: EngineStats) {
        self.threads += other.threads;
        self.streams += other.streams;
        self.packets_sent += other.packets_sent;
        self.bytes_sent += other.bytes_sent;
        self.send_errors += other.send_errors;
        self.skipped_frames += other.skipped_frames;
        self.jitter.merge(&other.jitter);
        self.cpu += other.cpu;
        self.wall = self.wall.max(other.wall);
    }
}

pub(crate) struct NewStream {
    pub key: u64,
    pub socket: Arc<crate::runtime::RtpSocket>,
    pub playout: StreamPlayout,
    pub outcomes: UnboundedSender<MediaOutcome>,
    pub counters: Arc<SessionCounters>,
    pub rx: RxHandle,
    pub mix: Arc<LegMix>,
}

pub(crate) enum EngineCommand {
    Add(Box<NewStream>),
    SetRemote {
        key: u64,
        remote: SocketAddr,
    },
    SetMedia {
        key: u64,
        codec: Codec,
        telephone_event_pt: Option<u8>,
    },
    Enqueue {
        key: u64,
        generation: u64,
        items: Vec<QueuedItem>,
    },
    Clear {
        key: u64,
        generation: u64,
    },
    Remove {
        key: u64,
    },
    /// Starts recording both directions of the stream (ends one already running).
    StartCallRecording {
        key: u64,
        id: CommandId,
        options: CallRecordingOptions,
        outcomes: UnboundedSender<MediaOutcome>,
    },
    /// Ends the stream's call recording `id`, if it still runs.
    StopCallRecording {
        key: u64,
        id: CommandId,
    },
    Stats {
        reset: bool,
        reply: SyncSender<EngineStats>,
    },
    Shutdown,
}

struct ThreadHandle {
    tx: Sender<EngineCommand>,
    join: Mutex<Option<JoinHandle<()>>>,
    streams: AtomicUsize,
}

/// Handle to the engine threads.
pub(crate) struct Engine {
    threads: Vec<ThreadHandle>,
}

impl Engine {
    /// Starts the threads; call recordings go to `writer`.
    pub(crate) fn start(
        threads: usize,
        realtime_priority: Option<u8>,
        writer: RecordingWriter,
    ) -> Result<Engine, MediaError> {
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel();
            let name = format!("media-engine-{i}");
            let writer = writer.clone();
            let join = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    if let Some(priority) = realtime_priority {
                        set_realtime_priority(priority);
                    }
                    EngineThread::new(rx, writer).run()
                })
                .map_err(|source| MediaError::Thread { name, source })?;
            handles.push(ThreadHandle {
                tx,
                join: Mutex::new(Some(join)),
                streams: AtomicUsize::new(0),
            });
        }
        Ok(Engine { threads: handles })
    }

    /// The thread with the fewest streams; counts the new stream on it.
    pub(crate) fn assign_thread(&self) -> usize {
        let (i, t) = self
            .threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.streams.load(Ordering::Relaxed))
            .unwrap_or((0, &self.threads[0]));
        t.streams.fetch_add(1, Ordering::Relaxed);
        i
    }

    pub(crate) fn release_thread(&self, thread: usize) {
        if let Some(t) = self.threads.get(thread) {
            t.streams.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn sender(&self, thread: usize) -> Sender<EngineCommand> {
        self.threads[thread.min(self.threads.len() - 1)].tx.clone()
    }

    /// Counters of all threads (and resets them when `reset`).
    pub(crate) fn stats(&self, reset: bool) -> Result<EngineStats, MediaError> {
        let mut total = EngineStats::default();
        let mut replies = Vec::new();
        for t in &self.threads {
            let (reply, rx) = mpsc::sync_channel(1);
            t.tx.send(EngineCommand::Stats { reset, reply })
                .map_err(|_| MediaError::Shutdown)?;
            replies.push(rx);
        }
        for rx in replies {
            let s = rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| MediaError::Shutdown)?;
            total.merge(s);
        }
        Ok(total)
    }

    pub(crate) fn shutdown(&self) {
        for t in &self.threads {
            let _ = t.tx.send(EngineCommand::Shutdown);
        }
        for t in &self.threads {
            let join = t.join.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(j) = join {
                if j.join().is_err() {
                    tracing::error!("a media engine thread panicked");
                }
            }
        }
    }
}

struct EngineStream {
    key: u64,
    socket: Arc<crate::runtime::RtpSocket>,
    remote: Option<SocketAddr>,
    playout: StreamPlayout,
    outcomes: UnboundedSender<MediaOutcome>,
    counters: Arc<SessionCounters>,
    rx: RxHandle,
    slot: usize,
    /// What the mixer has for this leg while it is in a bridge or conference.
    mix: Arc<LegMix>,
    /// Whether the last frame was mixed (to reset the event relay when it stops).
    mixing: bool,
    /// The call recording running on this stream, if any.
    call_recording: Option<Box<CallRecordingTap>>,
}

/// A call recording in progress: the engine's side (see [`crate::call_recording`]).
struct CallRecordingTap {
    id: CommandId,
    mix: CallRecordingMix,
    /// Samples not yet handed to the writer.
    chunk: Vec<i16>,
}

impl CallRecordingTap {
    /// Records engine frame `frame`: what the stream just sent (`sent`, the packet, or
    /// nothing) and what the remote party said.
    fn on_frame(
        &mut self,
        frame: u64,
        sent: Option<&[u8]>,
        mix: &LegMix,
        writer: &RecordingWriter,
    ) {
        let outbound = sent.map_or(SILENT_FRAME, sent_audio);
        let inbound = mix.pop_recorded().unwrap_or(SILENT_FRAME);
        self.mix.push(frame, &inbound, &outbound, &mut self.chunk);
        let full = RECORDING_CHUNK_FRAMES * FRAME_SAMPLES * usize::from(self.mix.channels());
        if self.chunk.len() >= full {
            writer.write(self.id, std::mem::take(&mut self.chunk));
        }
    }

    /// Hands the rest to the writer and completes the file.
    fn finish(mut self, mix: &LegMix, writer: &RecordingWriter) {
        mix.set_recording(false);
        if !self.chunk.is_empty() {
            writer.write(self.id, std::mem::take(&mut self.chunk));
        }
        writer.close(self.id);
    }
}

/// The audio of a packet the stream sent: G.711 decoded; a telephone-event (or anything not
/// audio) is silence.
fn sent_audio(packet: &[u8]) -> Frame {
    let mut frame = SILENT_FRAME;
    if let Ok(rtp) = RtpReader::new(packet) {
        if let Some(codec) = Codec::from_payload_type(rtp.payload_type()) {
            for (sample, byte) in frame.iter_mut().zip(rtp.payload()) {
                *sample = codec.decode_sample(*byte);
            }
        }
    }
    frame
}

#[derive(PartialEq)]
enum Flow {
    Continue,
    Stop,
}

struct EngineThread {
    ctrl: Receiver<EngineCommand>,
    writer: RecordingWriter,
    streams: Vec<Option<EngineStream>>,
    free: Vec<usize>,
    by_key: HashMap<u64, usize>,
    slots: Vec<Vec<usize>>,
    count: usize,
    events: Vec<PlayoutEvent>,
    buf: [u8; MAX_PACKET],
    packets_sent: u64,
    bytes_sent: u64,
    send_errors: u64,
    skipped_frames: u64,
    jitter: JitterHistogram,
    stats_since: Instant,
    cpu_at_reset: Duration,
}

impl EngineThread {
    fn new(ctrl: Receiver<EngineCommand>, writer: RecordingWriter) -> EngineThread {
        EngineThread {
            ctrl,
            writer,
            streams: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            slots: vec![Vec::new(); SLOTS as usize],
            count: 0,
            events: Vec::with_capacity(16),
            buf: [0; MAX_PACKET],
            packets_sent: 0,
            bytes_sent: 0,
            send_errors: 0,
            skipped_frames: 0,
            jitter: JitterHistogram::default(),
            stats_since: Instant::now(),
            cpu_at_reset: thread_cpu_time(),
        }
    }

    fn run(mut self) {
        reduce_timer_slack();
        let mut base = Instant::now();
        let mut base_frame: u64 = 0;
        let mut frame: u64 = 0;
        let mut slot: u32 = 0;
        loop {
            if self.count == 0 {
                // Nothing to send: wait for commands instead of ticking.
                match self.ctrl.recv_timeout(Duration::from_millis(100)) {
                    Ok(cmd) => {
                        if self.handle(cmd) == Flow::Stop {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if self.drain() == Flow::Stop {
                    return;
                }
                // Restart the schedule now; frame numbers keep increasing.
                frame += 1;
                slot = 0;
                base = Instant::now();
                base_frame = frame;
                continue;
            }
            let due = base
                + Duration::from_micros(
                    (frame - base_frame) * FRAME_US + u64::from(slot) * SLOT_US,
                );
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else if now - due > MAX_LAG {
                let behind = ((now - due).as_micros() / u128::from(FRAME_US)) as u64;
                tracing::warn!(frames = behind, "media engine fell behind; skipping frames");
                frame += behind.max(1);
                self.skipped_frames += behind.max(1);
                slot = 0;
                continue;
            }
            if self.drain() == Flow::Stop {
                return;
            }
            self.send_slot(frame, slot as usize, due);
            slot += 1;
            if slot == SLOTS {
                slot = 0;
                frame += 1;
            }
        }
    }

    fn drain(&mut self) -> Flow {
        loop {
            match self.ctrl.try_recv() {
                Ok(cmd) => {
                    if self.handle(cmd) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            }
        }
    }

    fn stream_mut(&mut self, key: u64) -> Option<&mut EngineStream> {
        let idx = *self.by_key.get(&key)?;
        self.streams.get_mut(idx)?.as_mut()
    }

    fn handle(&mut self, cmd: EngineCommand) -> Flow {
        match cmd {
            EngineCommand::Add(new) => self.add(*new),
            EngineCommand::SetRemote { key, remote } => {
                if let Some(s) = self.stream_mut(key) {
                    s.remote = Some(remote);
                }
            }
            EngineCommand::SetMedia {
                key,
                codec,
                telephone_event_pt,
            } => {
                if let Some(s) = self.stream_mut(key) {
                    s.playout.set_media(codec, telephone_event_pt);
                }
            }
            EngineCommand::Enqueue {
                key,
                generation,
                items,
            } => {
                let mut events = std::mem::take(&mut self.events);
                if let Some(s) = self.stream_mut(key) {
                    s.playout.enqueue(generation, items, &mut events);
                    dispatch(s, &mut events);
                } else {
                    tracing::debug!(key, "enqueue for an unknown stream");
                }
                self.events = events;
            }
            EngineCommand::Clear { key, generation } => {
                let mut events = std::mem::take(&mut self.events);
                if let Some(s) = self.stream_mut(key) {
                    s.playout.clear(generation, &mut events);
                    dispatch(s, &mut events);
                }
                self.events = events;
            }
            EngineCommand::Remove { key } => self.remove(key),
            EngineCommand::StartCallRecording {
                key,
                id,
                options,
                outcomes,
            } => self.start_call_recording(key, id, options, outcomes),
            EngineCommand::StopCallRecording { key, id } => {
                let writer = self.writer.clone();
                if let Some(s) = self.stream_mut(key) {
                    if s.call_recording.as_ref().is_some_and(|t| t.id == id) {
                        if let Some(tap) = s.call_recording.take() {
                            tap.finish(&s.mix, &writer);
                        }
                    }
                }
            }
            EngineCommand::Stats { reset, reply } => {
                let now = Instant::now();
                let cpu = thread_cpu_time();
                let stats = EngineStats {
                    threads: 1,
                    streams: self.count,
                    packets_sent: self.packets_sent,
                    bytes_sent: self.bytes_sent,
                    send_errors: self.send_errors,
                    skipped_frames: self.skipped_frames,
                    jitter: self.jitter.clone(),
                    cpu: cpu.saturating_sub(self.cpu_at_reset),
                    wall: now - self.stats_since,
                };
                if reset {
                    self.packets_sent = 0;
                    self.bytes_sent = 0;
                    self.send_errors = 0;
                    self.skipped_frames = 0;
                    self.jitter = JitterHistogram::default();
                    self.stats_since = now;
                    self.cpu_at_reset = cpu;
                }
                let _ = reply.send(stats);
            }
            EngineCommand::Shutdown => {
                for key in self.by_key.keys().copied().collect::<Vec<_>>() {
                    self.remove(key);
                }
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn add(&mut self, new: NewStream) {
        if self.by_key.contains_key(&new.key) {
            return;
        }
        let slot = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.len())
            .map(|(i, _)| i)
            .unwrap_or(0);
        let stream = EngineStream {
            key: new.key,
            socket: new.socket,
            remote: None,
            playout: new.playout,
            outcomes: new.outcomes,
            counters: new.counters,
            rx: new.rx,
            slot,
            mix: new.mix,
            mixing: false,
            call_recording: None,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.streams[i] = Some(stream);
                i
            }
            None => {
                self.streams.push(Some(stream));
                self.streams.len() - 1
            }
        };
        self.by_key.insert(new.key, idx);
        self.slots[slot].push(idx);
        self.count += 1;
    }

    fn remove(&mut self, key: u64) {
        let Some(idx) = self.by_key.remove(&key) else {
            return;
        };
        let Some(mut stream) = self.streams.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let mut events = std::mem::take(&mut self.events);
        stream.playout.interrupt_all(&mut events);
        dispatch(&mut stream, &mut events);
        self.events = events;
        // The session closed: its call recording ends with it.
        if let Some(tap) = stream.call_recording.take() {
            tap.finish(&stream.mix, &self.writer);
        }
        if let Some(pos) = self.slots[stream.slot].iter().position(|i| *i == idx) {
            self.slots[stream.slot].swap_remove(pos);
        }
        self.free.push(idx);
        self.count -= 1;
    }

    fn start_call_recording(
        &mut self,
        key: u64,
        id: CommandId,
        options: CallRecordingOptions,
        outcomes: UnboundedSender<MediaOutcome>,
    ) {
        let writer = self.writer.clone();
        let Some(s) = self.stream_mut(key) else {
            let _ = outcomes.send(MediaOutcome::Failed {
                id,
                error: Arc::new(MediaError::SessionClosed),
            });
            return;
        };
        if let Some(previous) = s.call_recording.take() {
            previous.finish(&s.mix, &writer);
        }
        let mix = CallRecordingMix::new(&options);
        writer.open(
            id,
            options.path,
            mix.channels(),
            RecordingKind::Call,
            options.trim_silence,
            outcomes.clone(),
        );
        // An outbound-only recording needs nothing from the receive side.
        s.mix
            .set_recording(options.track != RecordingTrack::Outbound);
        s.call_recording = Some(Box::new(CallRecordingTap {
            id,
            mix,
            chunk: Vec::new(),
        }));
        let _ = outcomes.send(MediaOutcome::RecordingStarted { id });
    }

    fn send_slot(&mut self, frame: u64, slot: usize, due: Instant) {
        let EngineThread {
            slots,
            streams,
            events,
            buf,
            packets_sent,
            bytes_sent,
            send_errors,
            jitter,
            writer,
            ..
        } = self;
        for &idx in &slots[slot] {
            let Some(stream) = streams.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            // Playout waits until the session knows where to send.
            let Some(remote) = stream.remote else {
                if let Some(tap) = stream.call_recording.as_mut() {
                    tap.on_frame(frame, None, &stream.mix, writer);
                }
                continue;
            };
            let sent = if stream.mix.is_sending() {
                stream.mixing = true;
                let playout = &mut stream.playout;
                let mixed = stream.mix.take_output(|ev| playout.relay_event(ev));
                playout.on_frame_mixed(frame, buf, events, &mixed)
            } else {
                if stream.mixing {
                    stream.mixing = false;
                    stream.playout.reset_relay();
                }
                stream.playout.on_frame(frame, buf, events)
            };
            if let Some(len) = sent {
                match stream.socket.send_to(&buf[..len], remote) {
                    Ok(_) => {
                        *packets_sent += 1;
                        *bytes_sent += len as u64;
                        stream.counters.tx_packets.fetch_add(1, Ordering::Relaxed);
                        stream
                            .counters
                            .tx_bytes
                            .fetch_add(len as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *send_errors += 1;
                        let n = stream.counters.tx_errors.fetch_add(1, Ordering::Relaxed);
                        if n.is_power_of_two() {
                            tracing::debug!(key = stream.key, %remote, error = %e, errors = n + 1, "RTP send failed");
                        }
                    }
                }
                let late = Instant::now().saturating_duration_since(due);
                jitter.record(late.as_micros() as u64);
            }
            if let Some(tap) = stream.call_recording.as_mut() {
                let packet = sent.and_then(|len| buf.get(..len));
                tap.on_frame(frame, packet, &stream.mix, writer);
            }
            if !events.is_empty() {
                dispatch(stream, events);
            }
        }
    }
}

fn dispatch(stream: &mut EngineStream, events: &mut Vec<PlayoutEvent>) {
    for ev in events.drain(..) {
        // A closed outcome channel only means nobody listens any more.
        match ev {
            PlayoutEvent::Finished(id) => {
                let _ = stream.outcomes.send(MediaOutcome::Finished { id });
            }
            PlayoutEvent::Interrupted(id) => {
                let _ = stream.outcomes.send(MediaOutcome::Interrupted { id });
            }
            PlayoutEvent::StartRecording { command, request } => {
                stream.rx.send(RxCommand::StartRecording {
                    key: stream.key,
                    command,
                    request,
                });
            }
        }
    }
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Puts the calling thread in the SCHED_FIFO class at `priority` (1-99), as audio servers
/// do for their timing threads, so that ordinary processes (a compiler, a log shipper) do not
/// delay packets. Needs CAP_SYS_NICE; the kernel's real-time throttling still leaves other
/// threads 5 % of each CPU, and the engine skips frames rather than spin when overloaded.
pub(crate) fn set_realtime_priority(priority: u8) {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.clamp(1, 99)),
    };
    // SAFETY: pthread_self is always valid; sched_param is a plain struct we own.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc != 0 {
        tracing::warn!(
            priority,
            error = %std::io::Error::from_raw_os_error(rc),
            "cannot give the media engine thread real-time priority; it runs at normal priority"
        );
    }
}

/// Asks the kernel to wake this thread within 10 µs of its deadline rather than the default
/// 50 µs timer slack: the engine's sleeps are its schedule.
fn reduce_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and only affects the calling thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 10_000 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!("cannot reduce the timer slack of the media engine thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles() {
        let mut h = JitterHistogram::default();
        assert_eq!(h.percentile_us(99.0), 0);
        for us in 0..1000u64 {
            h.record(us);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.percentile_us(50.0), 500);
        assert_eq!(h.percentile_us(99.0), 990);
        assert_eq!(h.max_us(), 999);
        h.record(500_000);
        assert_eq!(h.max_us(), 500_000);
        assert_eq!(h.percentile_us(100.0), 500_000);
        let mut other = JitterHistogram::default();
        other.record(5);
        h.merge(&other);
        assert_eq!(h.count(), 1002);
    }
}

//! The media runtime and its per-call sessions: the API the rest of Dialtone uses.
//!
//! ```text
//! let media = MediaRuntime::start(MediaConfig::default())?;      // inside a tokio runtime
//! let mut session = media.open_session()?;                      // allocates an RTP port
//! let port = session.local_port();                              // goes into the SDP answer
//! session.set_remote(remote_addr, Codec::Pcmu, Some(101));      // from the SDP offer
//! let mut outcomes = session.outcomes().expect("first call");
//! let id = session.play(MediaCommand::say("Hello", None, None));
//! // outcomes yields Finished { id } when the prompt has been sent, Dtmf { .. } on key presses
//! session.stop_playback();                                      // barge-in
//! session.close();                                              // frees the port
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};

use crate::bridge::{BridgeHandle, BridgeOptions};
use crate::call_recording::CallRecordingOptions;
use crate::codec::Codec;
use crate::conference::ConferenceRoom;
use crate::dtmf::event_code;
use crate::engine::{Engine, EngineCommand, EngineStats, NewStream};
use crate::error::MediaError;
use crate::fetch::{AudioFetcher, FetchConfig};
use crate::mixer::{LegLink, LegMix, MixerHandle, RecordingPlan};
use crate::outcome::{MediaOutcome, SessionCounters, SessionStats};
use crate::pcm::Pcm;
use crate::playout::{AudioItem, CommandId, QueuedItem, RecordingRequest, StreamPlayout};
use crate::recorder::RecorderConfig;
use crate::rx::{self, RxCommand, RxHandle, RxSessionInit};
use crate::tts::{EspeakConfig, EspeakTts, Tts};
use crate::writer::WriterThread;

/// Duration of each key of `Digits` (RFC 4733 event or in-band tone).
pub const DIGIT_TONE_MS: u32 = 100;
/// Silence after each key of `Digits`.
pub const DIGIT_GAP_MS: u32 = 100;
/// `w` in `Digits` waits half a second (`W` a whole one).
pub const DIGIT_WAIT_MS: u32 = 500;
/// The beep before a recording.
pub const BEEP_HZ: f32 = 1000.0;
pub const BEEP_MS: u32 = 250;

/// Settings of the media runtime.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address the RTP sockets bind to (and that goes into SDP, unless it is unspecified).
    pub bind_ip: IpAddr,
    /// RTP ports; even ports of the range are used (the odd ones are left to RTCP).
    pub rtp_ports: RangeInclusive<u16>,
    /// Where synthesised speech is kept across restarts, if anywhere.
    pub tts_cache_dir: Option<PathBuf>,
    /// Memory budget of the speech cache.
    pub tts_memory_cache_bytes: usize,
    /// The espeak-ng program.
    pub espeak_program: PathBuf,
    /// Downloads of `Play` URLs.
    pub fetch: FetchConfig,
    /// Playout threads (each owns a share of the streams). Default: one per CPU, at most 4.
    pub engine_threads: usize,
    /// Run the playout threads with real-time scheduling (SCHED_FIFO at this priority, 1-99)
    /// so that other processes cannot delay packets. Needs CAP_SYS_NICE (root); off by
    /// default.
    pub engine_realtime_priority: Option<u8>,
    /// Send silence packets while nothing plays (keeps NAT bindings and the remote's jitter
    /// buffer alive, like Twilio does). When off, idle streams send nothing and the first
    /// packet after a pause carries the marker bit.
    pub idle_silence: bool,
    /// Latch the remote address on the first RTP packet received (for callers behind NAT).
    pub symmetric_rtp: bool,
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            rtp_ports: 20000..=29999,
            tts_cache_dir: None,
            tts_memory_cache_bytes: 64 << 20,
            espeak_program: PathBuf::from("espeak-ng"),
            fetch: FetchConfig::default(),
            engine_threads: std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(1),
            engine_realtime_priority: None,
            idle_silence: true,
            symmetric_rtp: true,
        }
    }
}

/// What a session can be told to do. Commands play in the order given.
#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Speak `text` (espeak-ng) with a Twilio voice and language; `loops` 0 repeats until
    /// stopped.
    Say {
        text: String,
        voice: Option<String>,
        language: Option<String>,
        loops: u32,
    },
    /// Play audio from a URL (WAV, MP3, μ-law); `loops` 0 repeats until stopped.
    Play { url: String, loops: u32 },
    /// Play audio already in memory.
    PlayAudio { pcm: Arc<Pcm>, loops: u32 },
    /// Silence.
    Pause { ms: u32 },
    /// Send keys (`0-9 * # A-D`, `w` = 0.5 s wait, `W` = 1 s): RFC 4733 events when
    /// telephone-event was negotiated, in-band tones otherwise.
    Digits { digits: String },
    /// Record the remote party (after an optional beep, in queue order).
    Record(RecordOptions),
    /// A country's ringback tone (`us`, `uk`, `de`, ... see [`crate::ringback`]), repeated
    /// until `stop_playback`; an unknown country fails the command.
    Ringback { country: String },
    /// The built-in hold music ([`crate::hold_music`]), repeated until `stop_playback`.
    HoldMusic,
}

impl MediaCommand {
    pub fn say(
        text: impl Into<String>,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> MediaCommand {
        MediaCommand::Say {
            text: text.into(),
            voice: voice.map(str::to_string),
            language: language.map(str::to_string),
            loops: 1,
        }
    }

    pub fn play(url: impl Into<String>) -> MediaCommand {
        MediaCommand::Play {
            url: url.into(),
            loops: 1,
        }
    }
}

/// A recording: where to write it and how (Twilio `<Record>` semantics in `recorder`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordOptions {
    /// The WAV file to write (8 kHz mono 16-bit); its directory is created.
    pub path: PathBuf,
    /// Play a beep first (Twilio `playBeep`, default true).
    pub beep: bool,
    pub recorder: RecorderConfig,
}

impl RecordOptions {
    pub fn new(path: impl Into<PathBuf>) -> RecordOptions {
        RecordOptions {
            path: path.into(),
            beep: true,
            recorder: RecorderConfig::default(),
        }
    }
}

/// Hands out even ports of the configured range, round robin (a port just freed is not
/// reused at once, so late packets of an old call do not reach a new one).
struct PortAllocator {
    first: u16,
    last: u16,
    next: u16,
    in_use: std::collections::HashSet<u16>,
}

impl PortAllocator {
    fn new(range: &RangeInclusive<u16>) -> PortAllocator {
        let first = range.start().saturating_add(range.start() % 2);
        PortAllocator {
            first,
            last: *range.end(),
            next: first,
            in_use: Default::default(),
        }
    }

    fn candidates(&mut self) -> impl Iterator<Item = u16> + '_ {
        let count = if self.last >= self.first {
            usize::from((self.last - self.first) / 2 + 1)
        } else {
            0
        };
        let (first, start) = (self.first, self.next);
        let span = count as u32 * 2;
        (0..count as u32).map(move |i| {
            let offset = (u32::from(start - first) + i * 2) % span.max(1);
            first + offset as u16
        })
    }

    fn bind(&mut self, ip: IpAddr) -> Result<UdpSocket, MediaError> {
        let candidates: Vec<u16> = self.candidates().collect();
        for port in candidates {
            if self.in_use.contains(&port) {
                continue;
            }
            match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(socket) => {
                    self.in_use.insert(port);
                    let next = u32::from(port) + 2;
                    self.next = if next > u32::from(self.last) {
                        self.first
                    } else {
                        next as u16
                    };
                    return Ok(socket);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(source) => {
                    return Err(MediaError::Bind {
                        addr: SocketAddr::new(ip, port),
                        source,
                    })
                }
            }
        }
        Err(MediaError::PortsExhausted {
            ip,
            first: self.first,
            last: self.last,
        })
    }

    fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }
}

/// A session's RTP socket. Its port returns to the allocator when the last holder (session,
/// engine thread, receive thread) lets go, i.e. when the socket is really closed.
pub(crate) struct RtpSocket {
    socket: UdpSocket,
    port: u16,
    ports: Arc<Mutex<PortAllocator>>,
}

impl std::ops::Deref for RtpSocket {
    type Target = UdpSocket;
    fn deref(&self) -> &UdpSocket {
        &self.socket
    }
}

impl Drop for RtpSocket {
    fn drop(&mut self) {
        self.ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(self.port);
    }
}

/// The media runtime: playout threads, the receive thread, port allocation, speech and
/// audio fetching. Cheap to share (`Arc`).
pub struct MediaRuntime {
    config: MediaConfig,
    engine: Engine,
    rx: RxHandle,
    rx_join: Mutex<Option<JoinHandle<()>>>,
    pub(crate) mixer: Arc<MixerHandle>,
    /// Writes bridge and call recordings; stopped after the mixer and the engine.
    writer: WriterThread,
    ports: Arc<Mutex<PortAllocator>>,
    tts: Arc<dyn Tts>,
    fetcher: Arc<AudioFetcher>,
    handle: tokio::runtime::Handle,
    next_key: AtomicU64,
    next_command: Arc<AtomicU64>,
}

impl MediaRuntime {
    /// Starts the runtime with espeak-ng for speech. Must run inside a tokio runtime.
    pub fn start(config: MediaConfig) -> Result<Arc<MediaRuntime>, MediaError> {
        let tts = Arc::new(EspeakTts::new(EspeakConfig {
            program: config.espeak_program.clone(),
            cache_dir: config.tts_cache_dir.clone(),
            memory_cache_bytes: config.tts_memory_cache_bytes,
            ..Default::default()
        }));
        MediaRuntime::start_with_tts(config, tts)
    }

    /// Starts the runtime with another speech engine.
    pub fn start_with_tts(
        config: MediaConfig,
        tts: Arc<dyn Tts>,
    ) -> Result<Arc<MediaRuntime>, MediaError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoTokioRuntime)?;
        if config.rtp_ports.is_empty() || *config.rtp_ports.end() < 2 {
            return Err(MediaError::Config(format!(
                "empty RTP port range {:?}",
                config.rtp_ports
            )));
        }
        raise_fd_limit();
        let fetcher = Arc::new(AudioFetcher::new(config.fetch.clone())?);
        let writer = WriterThread::start()?;
        let engine = Engine::start(
            config.engine_threads,
            config.engine_realtime_priority,
            writer.handle(),
        )?;
        let (rx, rx_join) = rx::start(handle.clone())?;
        let mixer = MixerHandle::start(writer.handle())?;
        Ok(Arc::new(MediaRuntime {
            mixer,
            writer,
            ports: Arc::new(Mutex::new(PortAllocator::new(&config.rtp_ports))),
            config,
            engine,
            rx,
            rx_join: Mutex::new(Some(rx_join)),
            tts,
            fetcher,
            handle,
            next_key: AtomicU64::new(1),
            next_command: Arc::new(AtomicU64::new(1)),
        }))
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    pub fn tts(&self) -> &Arc<dyn Tts> {
        &self.tts
    }

    pub fn fetcher(&self) -> &Arc<AudioFetcher> {
        &self.fetcher
    }

    /// Counters of the playout engine (send jitter, packets, CPU); `reset` starts a new
    /// measurement period. Blocks briefly: call it off the async executor's hot path.
    pub fn engine_stats(&self, reset: bool) -> Result<EngineStats, MediaError> {
        self.engine.stats(reset)
    }

    /// Opens a session: binds an RTP port and registers its stream (silent until
    /// `set_remote`).
    pub fn open_session(self: &Arc<Self>) -> Result<MediaSession, MediaError> {
        let socket = self
            .ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bind(self.config.bind_ip)?;
        let local_addr = socket
            .local_addr()
            .map_err(|e| MediaError::io("RTP socket", e));
        let socket = RtpSocket {
            port: match &local_addr {
                Ok(a) => a.port(),
                Err(_) => 0,
            },
            socket,
            ports: self.ports.clone(),
        };
        let local_addr = local_addr?;
        socket
            .set_nonblocking(true)
            .map_err(|e| MediaError::io("RTP socket", e))?;
        let socket = Arc::new(socket);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(SessionCounters::default());
        let thread = self.engine.assign_thread();
        let engine = self.engine.sender(thread);
        let playout = StreamPlayout::new(Codec::Pcmu, None, self.config.idle_silence);
        let mix = LegMix::new();
        let sent = engine.send(EngineCommand::Add(Box::new(NewStream {
            key,
            socket: socket.clone(),
            playout,
            outcomes: outcomes_tx.clone(),
            counters: counters.clone(),
            rx: self.rx.clone(),
            mix: mix.clone(),
        })));
        if sent.is_err() {
            self.engine.release_thread(thread);
            return Err(MediaError::Shutdown);
        }
        self.rx.send(RxCommand::Add(Box::new(RxSessionInit {
            key,
            socket,
            counters: counters.clone(),
            outcomes: outcomes_tx.clone(),
            engine: engine.clone(),
            symmetric_rtp: self.config.symmetric_rtp,
            mix: mix.clone(),
        })));
        let (generation_tx, generation_rx) = watch::channel(0u64);
        let codec = Arc::new(AtomicU8::new(Codec::Pcmu.payload_type()));
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let preparer = Preparer {
            key,
            tts: self.tts.clone(),
            fetcher: self.fetcher.clone(),
            engine: engine.clone(),
            outcomes: outcomes_tx.clone(),
            generation: generation_rx,
            codec: codec.clone(),
        };
        self.handle.spawn(preparer.run(jobs_rx));
        Ok(MediaSession {
            key,
            runtime: self.clone(),
            local_addr,
            thread,
            engine,
            jobs: jobs_tx,
            generation: Arc::new(generation_tx),
            codec,
            mix,
            counters,
            outcomes_rx: Some(outcomes_rx),
            outcomes_tx,
            call_recording: AtomicU64::new(0),
            closed: false,
        })
    }

    /// Bridges two sessions (Twilio `<Dial>`): each hears the other, transcoded when their
    /// codecs differ, sent with its own SSRC, sequence numbers and timestamps; telephone-events
    /// are relayed (see [`crate::bridge`]). With `early_media`, only B is heard by A until
    /// [`BridgeHandle::connect`]. Connecting stops both sessions' playback (what plays or is
    /// queued reports `Interrupted`, e.g. the ringback); commands played afterwards are mixed
    /// with the bridged audio. The bridge ends when the handle is dropped or `unbridge`d, or
    /// when either session closes; both sessions then go back to plain playout.
    pub fn bridge(
        self: &Arc<Self>,
        a: &MediaSession,
        b: &MediaSession,
        options: BridgeOptions,
    ) -> Result<BridgeHandle, MediaError> {
        for s in [a, b] {
            if !Arc::ptr_eq(&s.runtime, self) {
                return Err(MediaError::ForeignSession);
            }
            if s.closed {
                return Err(MediaError::SessionClosed);
            }
        }
        let recording = options.record.map(|r| RecordingPlan {
            id: self.next_command_id(),
            path: r.path,
            channels: r.channels.count(),
            from_ringing: r.from_ringing,
            trim_silence: r.trim_silence,
        });
        let recording_id = recording.as_ref().map(|r| r.id);
        let connected = !options.early_media;
        let id = self
            .mixer
            .bridge(a.leg_link(), b.leg_link(), connected, recording)?;
        let stoppers = [a.playback_stopper(), b.playback_stopper()];
        if connected {
            for s in &stoppers {
                s.stop();
            }
        }
        Ok(BridgeHandle::new(
            self.mixer.clone(),
            id,
            stoppers,
            recording_id,
        ))
    }

    /// The conference room named `room` (Twilio `<Conference>`; the shell makes the name
    /// unique per account, e.g. `AC…/name`). Rooms exist while they have participants.
    pub fn conference(self: &Arc<Self>, room: &str) -> ConferenceRoom {
        ConferenceRoom::new(self.clone(), Arc::from(room))
    }

    pub(crate) fn next_command_id(&self) -> CommandId {
        CommandId(self.next_command.fetch_add(1, Ordering::Relaxed))
    }

    /// Stops the threads. Sessions still open stop playing (their commands are interrupted).
    pub fn shutdown(&self) {
        self.mixer.shutdown();
        self.engine.shutdown();
        // Last: the mixer and the engine complete their recordings as they stop.
        self.writer.shutdown();
        self.rx.send(RxCommand::Shutdown);
        let join = self
            .rx_join
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(j) = join {
            if j.join().is_err() {
                tracing::error!("the media receive thread panicked");
            }
        }
    }
}

impl Drop for MediaRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One call's media: an RTP port, its outbound stream and inbound processing.
pub struct MediaSession {
    key: u64,
    runtime: Arc<MediaRuntime>,
    local_addr: SocketAddr,
    thread: usize,
    engine: std::sync::mpsc::Sender<EngineCommand>,
    jobs: mpsc::UnboundedSender<Job>,
    generation: Arc<watch::Sender<u64>>,
    codec: Arc<AtomicU8>,
    mix: Arc<LegMix>,
    counters: Arc<SessionCounters>,
    outcomes_rx: Option<mpsc::UnboundedReceiver<MediaOutcome>>,
    outcomes_tx: mpsc::UnboundedSender<MediaOutcome>,
    /// Id of the running call recording (0: none).
    call_recording: AtomicU64,
    closed: bool,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("key", &self.key)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl MediaSession {
    pub fn local_port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where to send, with which codec and telephone-event payload type (from the SDP
    /// negotiation). Playback starts only once this is known. With symmetric RTP the address
    /// may still be replaced by the source of the first packet received.
    pub fn set_remote(&self, addr: SocketAddr, codec: Codec, telephone_event_pt: Option<u8>) {
        self.codec.store(codec.payload_type(), Ordering::Relaxed);
        self.counters.set_remote(addr);
        let _ = self.engine.send(EngineCommand::SetMedia {
            key: self.key,
            codec,
            telephone_event_pt,
        });
        let _ = self.engine.send(EngineCommand::SetRemote {
            key: self.key,
            remote: addr,
        });
        self.runtime.rx.send(RxCommand::SetMedia {
            key: self.key,
            remote: addr,
            telephone_event_pt,
        });
    }

    /// Queues a command; its outcome will carry the returned id. Speech synthesis and
    /// downloads happen in the background, in order.
    pub fn play(&self, command: MediaCommand) -> CommandId {
        let id = CommandId(self.runtime.next_command.fetch_add(1, Ordering::Relaxed));
        if self.closed {
            let _ = self.outcomes_tx.send(MediaOutcome::Failed {
                id,
                error: Arc::new(MediaError::SessionClosed),
            });
            return id;
        }
        let job = Job {
            id,
            generation: *self.generation.borrow(),
            command,
        };
        if self.jobs.send(job).is_err() {
            let _ = self.outcomes_tx.send(MediaOutcome::Failed {
                id,
                error: Arc::new(MediaError::Shutdown),
            });
        }
        id
    }

    /// Barge-in: stops what is playing and everything queued or being prepared, at once.
    /// Each of those commands reports `Interrupted`.
    pub fn stop_playback(&self) {
        self.playback_stopper().stop();
    }

    pub(crate) fn playback_stopper(&self) -> PlaybackStopper {
        PlaybackStopper {
            key: self.key,
            generation: self.generation.clone(),
            engine: self.engine.clone(),
        }
    }

    pub(crate) fn leg_link(&self) -> LegLink {
        LegLink {
            key: self.key,
            mix: self.mix.clone(),
            outcomes: self.outcomes_tx.clone(),
        }
    }

    pub(crate) fn runtime(&self) -> &Arc<MediaRuntime> {
        &self.runtime
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Ends the current recording now (it reports `RecordingFinished` with `Stopped`).
    pub fn stop_recording(&self) {
        self.runtime
            .rx
            .send(RxCommand::StopRecording { key: self.key });
    }

    /// Starts recording the whole session, both directions (Twilio REST `Record=true`; see
    /// [`crate::call_recording`]): what the remote party says and everything sent to it
    /// (speech, prompts, tones, bridged or conference audio), as it is sent. Independent of
    /// `Record` commands, bridges and conferences, which go on as usual. Outcomes carry the
    /// returned id: `RecordingStarted` at once, then `CallRecordingFinished` when
    /// [`stop_call_recording`](Self::stop_call_recording) is called or the session closes (or
    /// `Failed` if the file cannot be written). One at a time per session.
    pub fn start_call_recording(
        &self,
        options: CallRecordingOptions,
    ) -> Result<CommandId, MediaError> {
        if self.closed {
            return Err(MediaError::SessionClosed);
        }
        let id = self.runtime.next_command_id();
        if self
            .call_recording
            .compare_exchange(0, id.0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(MediaError::CallRecordingInProgress);
        }
        let sent = self.engine.send(EngineCommand::StartCallRecording {
            key: self.key,
            id,
            options,
            outcomes: self.outcomes_tx.clone(),
        });
        if sent.is_err() {
            self.call_recording.store(0, Ordering::Release);
            return Err(MediaError::Shutdown);
        }
        Ok(id)
    }

    /// Ends the call recording, if one runs; its `CallRecordingFinished` follows. Returns its
    /// id.
    pub fn stop_call_recording(&self) -> Option<CommandId> {
        let id = self.call_recording.swap(0, Ordering::AcqRel);
        if id == 0 {
            return None;
        }
        let id = CommandId(id);
        let _ = self
            .engine
            .send(EngineCommand::StopCallRecording { key: self.key, id });
        Some(id)
    }

    /// The id of the call recording that runs, if one does.
    pub fn call_recording(&self) -> Option<CommandId> {
        match self.call_recording.load(Ordering::Acquire) {
            0 => None,
            id => Some(CommandId(id)),
        }
    }

    /// The outcome stream; the first call returns it, later calls `None`.
    pub fn outcomes(&mut self) -> Option<mpsc::UnboundedReceiver<MediaOutcome>> {
        self.outcomes_rx.take()
    }

    pub fn stats(&self) -> SessionStats {
        self.counters.snapshot()
    }

    /// Stops the stream (queued commands report `Interrupted`, a recording in progress
    /// finishes with `Hangup`); the port is free again once the media threads have let go of
    /// the socket (within a few milliseconds).
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.runtime.mixer.leg_closed(self.key);
        let _ = self.engine.send(EngineCommand::Remove { key: self.key });
        self.runtime.rx.send(RxCommand::Remove { key: self.key });
        self.runtime.engine.release_thread(self.thread);
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.close_inner();
    }
}

/// Stops a session's playback (`stop_playback`), from a bridge handle too.
pub(crate) struct PlaybackStopper {
    key: u64,
    generation: Arc<watch::Sender<u64>>,
    engine: std::sync::mpsc::Sender<EngineCommand>,
}

impl PlaybackStopper {
    pub(crate) fn stop(&self) {
        let mut generation = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        let _ = self.engine.send(EngineCommand::Clear {
            key: self.key,
            generation,
        });
    }
}

struct Job {
    id: CommandId,
    generation: u64,
    command: MediaCommand,
}

/// Turns a session's commands into queue items, in order, off the engine thread.
struct Preparer {
    key: u64,
    tts: Arc<dyn Tts>,
    fetcher: Arc<AudioFetcher>,
    engine: std::sync::mpsc::Sender<EngineCommand>,
    outcomes: mpsc::UnboundedSender<MediaOutcome>,
    generation: watch::Receiver<u64>,
    codec: Arc<AtomicU8>,
}

impl Preparer {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            if *self.generation.borrow() > job.generation {
                let _ = self.outcomes.send(MediaOutcome::Interrupted { id: job.id });
                continue;
            }
            let mut generation = self.generation.clone();
            let stopped = async {
                // Resolves when stop_playback moves past this job's generation (or never,
                // when the session is gone and the sender dropped).
                if generation.wait_for(|g| *g > job.generation).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let prepared = tokio::select! {
                r = self.prepare(job.id, job.command) => Some(r),
                _ = stopped => None,
            };
            match prepared {
                None => {
                    let _ = self.outcomes.send(MediaOutcome::Interrupted { id: job.id });
                }
                Some(Err(e)) => {
                    tracing::debug!(key = self.key, id = %job.id, error = %e, "media command failed");
                    let _ = self.outcomes.send(MediaOutcome::Failed {
                        id: job.id,
                        error: Arc::new(e),
                    });
                }
                Some(Ok(items)) => {
                    let sent = self.engine.send(EngineCommand::Enqueue {
                        key: self.key,
                        generation: job.generation,
                        items,
                    });
                    if sent.is_err() {
                        let _ = self.outcomes.send(MediaOutcome::Interrupted { id: job.id });
                    }
                }
            }
        }
    }

    fn codec(&self) -> Codec {
        Codec::from_payload_type(self.codec.load(Ordering::Relaxed)).unwrap_or(Codec::Pcmu)
    }

    async fn prepare(
        &self,
        id: CommandId,
        command: MediaCommand,
    ) -> Result<Vec<QueuedItem>, MediaError> {
        let items = match command {
            MediaCommand::Say {
                text,
                voice,
                language,
                loops,
            } => {
                let pcm = self
                    .tts
                    .synthesize(&text, voice.as_deref(), language.as_deref())
                    .await?;
                vec![self.prompt(pcm, loops)]
            }
            MediaCommand::Play { url, loops } => {
                let pcm = self.fetcher.fetch(&url).await?;
                vec![self.prompt(pcm, loops)]
            }
            MediaCommand::PlayAudio { pcm, loops } => vec![self.prompt(pcm, loops)],
            MediaCommand::Pause { ms } => vec![AudioItem::Silence { ms }],
            MediaCommand::Digits { digits } => digit_items(&digits)?,
            MediaCommand::Record(options) => {
                let mut items = Vec::new();
                if options.beep {
                    items.push(self.prompt(Arc::new(beep()), 1));
                }
                items.push(AudioItem::StartRecording(Box::new(RecordingRequest {
                    path: options.path,
                    config: options.recorder,
                })));
                items
            }
            MediaCommand::Ringback { country } => {
                vec![self.prompt(crate::ringback::ringback(&country)?, 0)]
            }
            MediaCommand::HoldMusic => vec![self.prompt(crate::hold_music::hold_music(), 0)],
        };
        let count = items.len();
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, item)| QueuedItem {
                item,
                command: id,
                last_of_command: i + 1 == count,
            })
            .collect())
    }

    /// A prompt item, encoded here for the session's codec so that the engine only copies.
    fn prompt(&self, pcm: Arc<Pcm>, loops: u32) -> AudioItem {
        pcm.encoded(self.codec());
        AudioItem::Pcm { pcm, loops }
    }
}

/// The beep played before a recording.
pub fn beep() -> Pcm {
    Pcm::tone(&[BEEP_HZ], BEEP_MS, 8000.0)
}

/// The queue items of a `Digits` command.
pub fn digit_items(digits: &str) -> Result<Vec<AudioItem>, MediaError> {
    let mut items = Vec::new();
    for c in digits.chars() {
        match c {
            'w' => items.push(AudioItem::Silence { ms: DIGIT_WAIT_MS }),
            'W' => items.push(AudioItem::Silence {
                ms: 2 * DIGIT_WAIT_MS,
            }),
            c if event_code(c).is_some() => {
                items.push(AudioItem::Key {
                    key: c.to_ascii_uppercase(),
                    duration_ms: DIGIT_TONE_MS,
                });
                items.push(AudioItem::Silence { ms: DIGIT_GAP_MS });
            }
            other => {
                return Err(MediaError::InvalidDigit {
                    digit: other,
                    digits: digits.to_string(),
                })
            }
        }
    }
    Ok(items)
}

/// Raises the soft limit of open files to the hard limit: each session holds a socket, and
/// the default soft limit (often 1024) is far below thousands of calls.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!("cannot raise the open files limit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_become_keys_gaps_and_waits() {
        let items = digit_items("1w#").unwrap();
        assert_eq!(items.len(), 5);
        assert!(matches!(
            items[0],
            AudioItem::Key {
                key: '1',
                duration_ms: 100
            }
        ));
        assert!(matches!(items[1], AudioItem::Silence { ms: 100 }));
        assert!(matches!(items[2], AudioItem::Silence { ms: 500 }));
        assert!(matches!(items[3], AudioItem::Key { key: '#', .. }));
        assert!(matches!(
            digit_items("12x"),
            Err(MediaError::InvalidDigit { digit: 'x', .. })
        ));
        assert!(digit_items("").unwrap().is_empty());
    }

    #[test]
    fn ports_are_even_round_robin_and_skip_busy_ones() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Hold an even port so that the allocator must skip it.
        let busy = (0..200)
            .map(|_| UdpSocket::bind((ip, 0)).unwrap())
            .find(|s| s.local_addr().unwrap().port() % 2 == 0)
            .unwrap();
        let base = busy.local_addr().unwrap().port();
        let mut ports = PortAllocator::new(&(base..=base + 5));
        let a = ports.bind(ip);
        let b = ports.bind(ip);
        let c = ports.bind(ip);
        let got: Vec<u16> = [&a, &b, &c]
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert!(got
            .iter()
            .all(|p| p % 2 == 0 && (base..=base + 5).contains(p)));
        assert!(!got.contains(&base), "the busy port was skipped");
        let taken: std::collections::HashSet<u16> = got.iter().copied().collect();
        assert_eq!(taken.len(), got.len());
        // the range has 3 even ports, one busy: the third bind fails cleanly
        assert!(matches!(c, Err(MediaError::PortsExhausted { .. })));
        // releasing makes a port available again
        ports.release(got[0]);
        drop(a);
        let again = ports.bind(ip).unwrap();
        assert_eq!(again.local_addr().unwrap().port(), got[0]);
    }
}

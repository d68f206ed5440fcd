//! The receive thread: one epoll loop (mio) over every session socket. It counts inbound
//! RTP, latches the remote address (symmetric RTP), detects DTMF (RFC 4733 events, or
//! in-band tones when telephone-event was not negotiated) and feeds active recordings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rtp_rs::RtpReader;
use tokio::sync::mpsc::UnboundedSender;

use crate::codec::Codec;
use crate::dtmf::goertzel::GoertzelDetector;
use crate::dtmf::rfc4733::{Rfc4733Receiver, TelephoneEvent};
use crate::dtmf::{DtmfDigit, DtmfSource};
use crate::engine::EngineCommand;
use crate::error::MediaError;
use crate::mixer::LegMix;
use crate::outcome::{MediaOutcome, SessionCounters};
use crate::playout::{CommandId, RecordingRequest};
use crate::recorder::{write_wav, Recorder, RecordingEnd};

const WAKER: Token = Token(usize::MAX);
/// Datagrams read from one socket before turning to the others (fairness under floods).
const READS_PER_TURN: usize = 64;
/// Period of the timers (DTMF end timeouts, recording silence and length).
const HOUSEKEEPING: Duration = Duration::from_millis(20);
/// Largest gap (lost or suppressed packets) filled with silence in a recording.
const MAX_GAP_SAMPLES: u32 = 8000 * 5;

pub(crate) struct RxSessionInit {
    pub key: u64,
    pub socket: Arc<crate::runtime::RtpSocket>,
    pub counters: Arc<SessionCounters>,
    pub outcomes: UnboundedSender<MediaOutcome>,
    pub engine: Sender<EngineCommand>,
    pub symmetric_rtp: bool,
    pub mix: Arc<LegMix>,
}

pub(crate) enum RxCommand {
    Add(Box<RxSessionInit>),
    SetMedia {
        key: u64,
        remote: SocketAddr,
        telephone_event_pt: Option<u8>,
    },
    StartRecording {
        key: u64,
        command: CommandId,
        request: Box<RecordingRequest>,
    },
    StopRecording {
        key: u64,
    },
    Remove {
        key: u64,
    },
    Shutdown,
}

/// Sends commands to the receive thread and wakes it.
#[derive(Clone)]
pub(crate) struct RxHandle {
    tx: Sender<RxCommand>,
    waker: Arc<Waker>,
}

impl RxHandle {
    pub(crate) fn send(&self, cmd: RxCommand) {
        if self.tx.send(cmd).is_ok() {
            if let Err(e) = self.waker.wake() {
                tracing::error!(error = %e, "cannot wake the media receive thread");
            }
        }
    }
}

pub(crate) fn start(
    runtime: tokio::runtime::Handle,
) -> Result<(RxHandle, JoinHandle<()>), MediaError> {
    let name = "media-rx".to_string();
    let thread_err = |source| MediaError::Thread {
        name: name.clone(),
        source,
    };
    let poll = Poll::new().map_err(thread_err)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(thread_err)?);
    let (tx, rx) = mpsc::channel();
    let join = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || RxThread::new(poll, rx, runtime).run())
        .map_err(thread_err)?;
    Ok((RxHandle { tx, waker }, join))
}

struct ActiveRecording {
    command: CommandId,
    path: PathBuf,
    recorder: Recorder,
    /// RTP timestamp expected next, to fill gaps with silence.
    next_timestamp: Option<u32>,
}

struct RxSession {
    key: u64,
    socket: Arc<crate::runtime::RtpSocket>,
    counters: Arc<SessionCounters>,
    outcomes: UnboundedSender<MediaOutcome>,
    engine: Sender<EngineCommand>,
    symmetric_rtp: bool,
    remote: Option<SocketAddr>,
    latched: bool,
    telephone_event_pt: Option<u8>,
    rfc4733: Rfc4733Receiver,
    goertzel: Option<Box<GoertzelDetector>>,
    recording: Option<ActiveRecording>,
    /// Where received audio goes while the session is in a bridge or conference.
    mix: Arc<LegMix>,
}

struct RxThread {
    poll: Poll,
    ctrl: Receiver<RxCommand>,
    runtime: tokio::runtime::Handle,
    sessions: Vec<Option<RxSession>>,
    free: Vec<usize>,
    by_key: HashMap<u64, usize>,
    started: Instant,
    buf: Vec<u8>,
    pcm: Vec<i16>,
    digits: Vec<DtmfDigit>,
}

impl RxThread {
    fn new(poll: Poll, ctrl: Receiver<RxCommand>, runtime: tokio::runtime::Handle) -> RxThread {
        RxThread {
            poll,
            ctrl,
            runtime,
            sessions: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            started: Instant::now(),
            buf: vec![0; 2048],
            pcm: Vec::with_capacity(2048),
            digits: Vec::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut ready: Vec<usize> = Vec::new();
        let mut again: Vec<usize> = Vec::new();
        let mut last_housekeeping = Instant::now();
        loop {
            let timeout = if again.is_empty() {
                HOUSEKEEPING
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media receive poll failed");
                    std::thread::sleep(HOUSEKEEPING);
                }
                continue;
            }
            let mut commands = false;
            ready.clear();
            ready.append(&mut again);
            for ev in events.iter() {
                if ev.token() == WAKER {
                    commands = true;
                } else {
                    ready.push(ev.token().0);
                }
            }
            if commands && self.drain() {
                return;
            }
            for idx in ready.drain(..) {
                if self.read_socket(idx) && !again.contains(&idx) {
                    again.push(idx);
                }
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = Instant::now();
                self.housekeeping();
            }
        }
    }

    /// Handles pending commands; true when the thread must stop.
    fn drain(&mut self) -> bool {
        loop {
            match self.ctrl.try_recv() {
                Ok(RxCommand::Shutdown) | Err(TryRecvError::Disconnected) => {
                    for key in self.by_key.keys().copied().collect::<Vec<_>>() {
                        self.remove(key);
                    }
                    return true;
                }
                Ok(cmd) => self.handle(cmd),
                Err(TryRecvError::Empty) => return false,
            }
        }
    }

    fn handle(&mut self, cmd: RxCommand) {
        match cmd {
            RxCommand::Add(init) => self.add(*init),
            RxCommand::SetMedia {
                key,
                remote,
                telephone_event_pt,
            } => {
                if let Some(s) = self.session_mut(key) {
                    s.remote = Some(remote);
                    s.latched = false;
                    s.telephone_event_pt = telephone_event_pt;
                }
            }
            RxCommand::StartRecording {
                key,
                command,
                request,
            } => {
                let now = self.now_ms();
                let Some(idx) = self.by_key.get(&key).copied() else {
                    return;
                };
                if let Some(Some(s)) = self.sessions.get_mut(idx) {
                    if s.recording.is_some() {
                        finish_recording(s, RecordingEnd::Stopped, &self.runtime);
                    }
                    let RecordingRequest { path, config } = *request;
                    s.recording = Some(ActiveRecording {
                        command,
                        path,
                        recorder: Recorder::new(config, now),
                        next_timestamp: None,
                    });
                    let _ = s
                        .outcomes
                        .send(MediaOutcome::RecordingStarted { id: command });
                }
            }
            RxCommand::StopRecording { key } => {
                let Some(idx) = self.by_key.get(&key).copied() else {
                    return;
                };
                if let Some(Some(s)) = self.sessions.get_mut(idx) {
                    finish_recording(s, RecordingEnd::Stopped, &self.runtime);
                }
            }
            RxCommand::Remove { key } => self.remove(key),
            RxCommand::Shutdown => {}
        }
    }

    fn session_mut(&mut self, key: u64) -> Option<&mut RxSession> {
        let idx = *self.by_key.get(&key)?;
        self.sessions.get_mut(idx)?.as_mut()
    }

    fn add(&mut self, init: RxSessionInit) {
        if self.by_key.contains_key(&init.key) {
            return;
        }
        let idx = self.free.pop().unwrap_or(self.sessions.len());
        let fd = init.socket.as_raw_fd();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(idx), Interest::READABLE)
        {
            tracing::error!(error = %e, key = init.key, "cannot watch the session socket");
            if idx < self.sessions.len() {
                self.free.push(idx);
            }
            return;
        }
        let session = RxSession {
            key: init.key,
            socket: init.socket,
            counters: init.counters,
            outcomes: init.outcomes,
            engine: init.engine,
            symmetric_rtp: init.symmetric_rtp,
            remote: None,
            latched: false,
            telephone_event_pt: None,
            rfc4733: Rfc4733Receiver::new(),
            goertzel: None,
            recording: None,
            mix: init.mix,
        };
        if idx == self.sessions.len() {
            self.sessions.push(Some(session));
        } else {
            self.sessions[idx] = Some(session);
        }
        self.by_key.insert(init.key, idx);
    }

    fn remove(&mut self, key: u64) {
        let Some(idx) = self.by_key.remove(&key) else {
            return;
        };
        let Some(mut s) = self.sessions.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let fd = s.socket.as_raw_fd();
        if let Err(e) = self.poll.registry().deregister(&mut SourceFd(&fd)) {
            tracing::debug!(error = %e, key, "cannot unwatch the session socket");
        }
        finish_recording(&mut s, RecordingEnd::Hangup, &self.runtime);
        self.free.push(idx);
    }

    /// Reads what the socket has; true when it may have more (turn limit reached).
    fn read_socket(&mut self, idx: usize) -> bool {
        let now_ms = self.now_ms();
        let RxThread {
            sessions,
            buf,
            pcm,
            digits,
            runtime,
            ..
        } = self;
        let Some(Some(s)) = sessions.get_mut(idx) else {
            return false;
        };
        for _ in 0..READS_PER_TURN {
            match s.socket.recv_from(buf) {
                Ok((n, src)) => {
                    handle_packet(s, &buf[..n], src, now_ms, pcm, digits, runtime);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // e.g. an ICMP error queued on the socket: not fatal for the session.
                    tracing::debug!(key = s.key, error = %e, "RTP receive error");
                    return false;
                }
            }
        }
        true
    }

    fn housekeeping(&mut self) {
        let now_ms = self.now_ms();
        let RxThread {
            sessions,
            digits,
            runtime,
            ..
        } = self;
        for s in sessions.iter_mut().flatten() {
            if s.rfc4733.has_open_event() {
                s.rfc4733.poll(now_ms, digits);
                report_digits(s, digits, DtmfSource::Rfc4733, runtime);
            }
            if let Some(rec) = s.recording.as_mut() {
                if let Some(end) = rec.recorder.on_time(now_ms) {
                    finish_recording(s, end, runtime);
                }
            }
        }
    }
}

fn handle_packet(
    s: &mut RxSession,
    data: &[u8],
    src: SocketAddr,
    now_ms: u64,
    pcm: &mut Vec<i16>,
    digits: &mut Vec<DtmfDigit>,
    runtime: &tokio::runtime::Handle,
) {
    s.counters.rx_packets.fetch_add(1, Ordering::Relaxed);
    s.counters
        .rx_bytes
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    // RTCP multiplexed on the RTP port (RFC 5761): packet types 200-204.
    if data.len() >= 2 && (200..=204).contains(&data[1]) {
        return;
    }
    let Ok(rtp) = RtpReader::new(data) else {
        s.counters.rx_invalid.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if s.symmetric_rtp && !s.latched {
        s.latched = true;
        if s.remote != Some(src) {
            tracing::debug!(key = s.key, from = ?s.remote, to = %src, "latching the RTP remote address");
            s.remote = Some(src);
            s.counters.set_remote(src);
            let _ = s.engine.send(EngineCommand::SetRemote {
                key: s.key,
                remote: src,
            });
        }
    }
    let pt = rtp.payload_type();
    s.counters
        .rx_last_pt
        .store(u32::from(pt) + 1, Ordering::Relaxed);
    let payload = rtp.payload();
    if Some(pt) == s.telephone_event_pt {
        if s.mix.is_receiving() {
            if let Some(event) = TelephoneEvent::parse(payload) {
                s.mix.push_event(rtp.timestamp(), event);
            }
        }
        s.rfc4733
            .on_packet(rtp.timestamp(), payload, now_ms, digits);
        report_digits(s, digits, DtmfSource::Rfc4733, runtime);
        return;
    }
    let Some(codec) = Codec::from_payload_type(pt) else {
        return; // comfort noise and others: nothing to decode
    };
    pcm.clear();
    codec.decode_append(payload, pcm);
    if s.mix.is_receiving() {
        s.mix.push_audio(rtp.timestamp(), pcm);
    }
    if s.mix.is_recording() {
        s.mix.push_recorded(rtp.timestamp(), pcm);
    }
    if s.telephone_event_pt.is_none() {
        let detector = s.goertzel.get_or_insert_with(Default::default);
        detector.push(pcm, digits);
        report_digits(s, digits, DtmfSource::Inband, runtime);
    }
    if let Some(rec) = s.recording.as_mut() {
        let ts = rtp.timestamp();
        if let Some(expected) = rec.next_timestamp {
            let gap = ts.wrapping_sub(expected) as i32;
            if gap < 0 {
                return; // a duplicate or a late packet
            }
            let gap = gap as u32;
            if gap > 0 && gap <= MAX_GAP_SAMPLES {
                let silence = vec![0i16; gap as usize];
                rec.recorder.on_audio(&silence, now_ms);
            }
        }
        rec.next_timestamp = Some(ts.wrapping_add(pcm.len() as u32));
        if let Some(end) = rec.recorder.on_audio(pcm, now_ms) {
            finish_recording(s, end, runtime);
        }
    }
}

fn report_digits(
    s: &mut RxSession,
    digits: &mut Vec<DtmfDigit>,
    source: DtmfSource,
    runtime: &tokio::runtime::Handle,
) {
    for d in digits.drain(..) {
        let _ = s.outcomes.send(MediaOutcome::Dtmf {
            digit: d.digit,
            source,
            duration_ms: d.duration_ms,
        });
        if let Some(rec) = s.recording.as_mut() {
            if let Some(end) = rec.recorder.on_key(d.digit) {
                finish_recording(s, end, runtime);
            }
        }
    }
}

/// Ends the session's recording, if any: the WAV file is written off this thread, then the
/// outcome is reported.
fn finish_recording(s: &mut RxSession, end: RecordingEnd, runtime: &tokio::runtime::Handle) {
    let Some(rec) = s.recording.take() else {
        return;
    };
    let audio = rec.recorder.finish(end);
    let outcomes = s.outcomes.clone();
    let (id, path) = (rec.command, rec.path);
    runtime.spawn_blocking(move || {
        let outcome = match write_wav(&path, &audio.samples) {
            Ok(()) => MediaOutcome::RecordingFinished {
                id,
                path,
                duration_ms: audio.duration_ms,
                empty: audio.empty,
                silent: audio.silent,
                end: audio.end,
            },
            Err(e) => MediaOutcome::Failed {
                id,
                error: Arc::new(e),
            },
        };
        let _ = outcomes.send(outcome);
    });
}

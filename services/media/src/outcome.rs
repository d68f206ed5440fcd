//! What sessions report back (outcomes) and their counters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::dtmf::DtmfSource;
use crate::error::MediaError;
use crate::playout::CommandId;
use crate::recorder::RecordingEnd;

/// An outcome of a session: a command ended, a key was pressed, a recording finished.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MediaOutcome {
    /// The command's audio was all sent.
    Finished { id: CommandId },
    /// The command was stopped (`stop_playback`, or the session closed) before its end.
    Interrupted { id: CommandId },
    /// The command could not run (speech synthesis, download or decoding failed, bad
    /// digits); nothing of it was played.
    Failed {
        id: CommandId,
        error: Arc<MediaError>,
    },
    /// A key press from the remote party.
    Dtmf {
        digit: char,
        source: DtmfSource,
        duration_ms: u32,
    },
    /// A `Record` command started capturing (after its beep), a bridge recording started,
    /// or a call recording started.
    RecordingStarted { id: CommandId },
    /// A `Record` command ended; the WAV file (8 kHz mono 16-bit) is written at `path`, even
    /// when `empty`.
    RecordingFinished {
        id: CommandId,
        path: PathBuf,
        duration_ms: u64,
        /// Nothing was kept (no audio, or only silence that was trimmed).
        empty: bool,
        /// No frame rose above the voice threshold.
        silent: bool,
        end: RecordingEnd,
    },
    /// The recording of a bridge ended (the bridge ended, or a leg hung up); the WAV file
    /// (8 kHz 16-bit; mono mix, or left = leg A and right = leg B) is written at `path`.
    /// Reported on leg A. A failure to write it is reported as `Failed` with the same id.
    BridgeRecordingFinished {
        id: CommandId,
        path: PathBuf,
        duration_ms: u64,
        /// 1 (mono mix) or 2 (dual channel).
        channels: u16,
    },
    /// A call recording (`MediaSession::start_call_recording`) ended: stopped, or the session
    /// closed. The WAV file (8 kHz 16-bit; mono, or left = received and right = sent) is
    /// written at `path`. A failure to write it is reported as `Failed` with the same id.
    CallRecordingFinished {
        id: CommandId,
        path: PathBuf,
        duration_ms: u64,
        /// 1 (mono, or a single track) or 2 (dual channel).
        channels: u16,
    },
}

impl MediaOutcome {
    /// The command this outcome ends or belongs to, if any.
    pub fn command(&self) -> Option<CommandId> {
        match self {
            MediaOutcome::Finished { id }
            | MediaOutcome::Interrupted { id }
            | MediaOutcome::Failed { id, .. }
            | MediaOutcome::RecordingStarted { id }
            | MediaOutcome::RecordingFinished { id, .. }
            | MediaOutcome::BridgeRecordingFinished { id, .. }
            | MediaOutcome::CallRecordingFinished { id, .. } => Some(*id),
            MediaOutcome::Dtmf { .. } => None,
        }
    }
}

/// Counters of a session, updated by the media threads.
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_invalid: AtomicU64,
    /// Last payload type received + 1 (0: none yet).
    pub rx_last_pt: AtomicU32,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_errors: AtomicU64,
    pub remote: Mutex<Option<SocketAddr>>,
}

impl SessionCounters {
    pub(crate) fn set_remote(&self, addr: SocketAddr) {
        *self.remote.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        let last = self.rx_last_pt.load(Ordering::Relaxed);
        SessionStats {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            rx_invalid: self.rx_invalid.load(Ordering::Relaxed),
            rx_last_payload_type: if last == 0 {
                None
            } else {
                u8::try_from(last - 1).ok()
            },
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            tx_errors: self.tx_errors.load(Ordering::Relaxed),
            remote: *self.remote.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// A snapshot of a session's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Datagrams that were not RTP.
    pub rx_invalid: u64,
    pub rx_last_payload_type: Option<u8>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Sends that failed (including a full socket buffer).
    pub tx_errors: u64,
    /// Where the session sends (set by `set_remote`, or latched from the first packet).
    pub remote: Option<SocketAddr>,
}

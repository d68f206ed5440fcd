//! The recording writer: one thread that streams the recordings made on the real-time
//! threads (bridge recordings on the mixer, call recordings on the playout engine) to WAV
//! files, so that disk latency never delays a tick. One thread for all of them: recordings
//! last as long as calls and are written a second at a time.
//!
//! Each file is written to `<path>.partial` and renamed to `<path>` when complete; then its
//! outcome (`BridgeRecordingFinished` or `CallRecordingFinished`, with the duration written)
//! goes to the session that owns it. A file that cannot be created or written is reported as
//! `Failed` with the recording's id, once, and the partial file is removed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc::UnboundedSender;

use crate::error::MediaError;
use crate::outcome::MediaOutcome;
use crate::playout::CommandId;
use crate::recorder::WavFileWriter;
use crate::trim::SilenceTrimmer;

/// RMS level from which a frame counts as voice when trimming (as `<Record>`'s default).
const VOICE_THRESHOLD_RMS: f64 = 300.0;

/// Which outcome a completed file reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordingKind {
    /// A bridge recording: `BridgeRecordingFinished`.
    Bridge,
    /// A call recording (one session, both directions): `CallRecordingFinished`.
    Call,
}

enum WriterCommand {
    Open {
        id: CommandId,
        path: PathBuf,
        channels: u16,
        kind: RecordingKind,
        trim_silence: bool,
        outcomes: UnboundedSender<MediaOutcome>,
    },
    Write {
        id: CommandId,
        samples: Vec<i16>,
    },
    Close {
        id: CommandId,
    },
    Shutdown,
}

/// Sends work to the writer thread; cheap to clone (one per real-time thread).
#[derive(Clone)]
pub(crate) struct RecordingWriter {
    tx: Sender<WriterCommand>,
}

impl RecordingWriter {
    /// Opens `path` for a recording of `channels` (interleaved) channels; with
    /// `trim_silence`, leading and trailing silence is left out ([`crate::trim`]).
    pub(crate) fn open(
        &self,
        id: CommandId,
        path: PathBuf,
        channels: u16,
        kind: RecordingKind,
        trim_silence: bool,
        outcomes: UnboundedSender<MediaOutcome>,
    ) {
        let _ = self.tx.send(WriterCommand::Open {
            id,
            path,
            channels,
            kind,
            trim_silence,
            outcomes,
        });
    }

    /// Appends samples (interleaved when stereo).
    pub(crate) fn write(&self, id: CommandId, samples: Vec<i16>) {
        let _ = self.tx.send(WriterCommand::Write { id, samples });
    }

    /// Completes the file and reports its outcome.
    pub(crate) fn close(&self, id: CommandId) {
        let _ = self.tx.send(WriterCommand::Close { id });
    }
}

/// The writer thread. Stopped last, after every thread that writes to it, so that the
/// recordings they complete while stopping are written.
pub(crate) struct WriterThread {
    writer: RecordingWriter,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl WriterThread {
    pub(crate) fn start() -> Result<WriterThread, MediaError> {
        let (tx, rx) = mpsc::channel();
        let name = "media-recorder".to_string();
        let join = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run_writer(rx))
            .map_err(|source| MediaError::Thread { name, source })?;
        Ok(WriterThread {
            writer: RecordingWriter { tx },
            join: Mutex::new(Some(join)),
        })
    }

    pub(crate) fn handle(&self) -> RecordingWriter {
        self.writer.clone()
    }

    /// Completes every open file, then stops the thread. Idempotent.
    pub(crate) fn shutdown(&self) {
        let join = self.join.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(j) = join {
            let _ = self.writer.tx.send(WriterCommand::Shutdown);
            if j.join().is_err() {
                tracing::error!("the media recorder thread panicked");
            }
        }
    }
}

struct OpenFile {
    file: Option<WavFileWriter>,
    trimmer: Option<SilenceTrimmer>,
    channels: u16,
    kind: RecordingKind,
    outcomes: UnboundedSender<MediaOutcome>,
}

fn fail(id: CommandId, outcomes: &UnboundedSender<MediaOutcome>, error: MediaError) {
    tracing::warn!(%id, %error, "recording failed");
    let _ = outcomes.send(MediaOutcome::Failed {
        id,
        error: Arc::new(error),
    });
}

/// Appends to an open file; a failure is reported once and the file abandoned.
fn write(id: CommandId, f: &mut OpenFile, samples: &[i16]) {
    if let Some(file) = f.file.as_mut() {
        if let Err(e) = file.write(samples) {
            f.file = None;
            fail(id, &f.outcomes, e);
        }
    }
}

fn close(id: CommandId, mut f: OpenFile) {
    if let Some(trimmer) = f.trimmer.take() {
        write(id, &mut f, &trimmer.finish());
    }
    let Some(file) = f.file else {
        return; // its failure was reported already
    };
    let path = file.path().to_path_buf();
    match file.finish() {
        Ok(duration_ms) => {
            let outcome = match f.kind {
                RecordingKind::Bridge => MediaOutcome::BridgeRecordingFinished {
                    id,
                    path,
                    duration_ms,
                    channels: f.channels,
                },
                RecordingKind::Call => MediaOutcome::CallRecordingFinished {
                    id,
                    path,
                    duration_ms,
                    channels: f.channels,
                },
            };
            let _ = f.outcomes.send(outcome);
        }
        Err(e) => fail(id, &f.outcomes, e),
    }
}

fn run_writer(rx: Receiver<WriterCommand>) {
    let mut files: HashMap<CommandId, OpenFile> = HashMap::new();
    loop {
        match rx.recv() {
            Ok(WriterCommand::Open {
                id,
                path,
                channels,
                kind,
                trim_silence,
                outcomes,
            }) => {
                let file = match WavFileWriter::create(&path, channels) {
                    Ok(file) => Some(file),
                    Err(e) => {
                        fail(id, &outcomes, e);
                        None
                    }
                };
                files.insert(
                    id,
                    OpenFile {
                        file,
                        trimmer: trim_silence
                            .then(|| SilenceTrimmer::new(channels, VOICE_THRESHOLD_RMS)),
                        channels: channels.max(1),
                        kind,
                        outcomes,
                    },
                );
            }
            Ok(WriterCommand::Write { id, samples }) => {
                if let Some(f) = files.get_mut(&id) {
                    let samples = match f.trimmer.as_mut() {
                        Some(trimmer) => trimmer.push(&samples),
                        None => samples,
                    };
                    write(id, f, &samples);
                }
            }
            Ok(WriterCommand::Close { id }) => {
                if let Some(f) = files.remove(&id) {
                    close(id, f);
                }
            }
            Ok(WriterCommand::Shutdown) | Err(_) => {
                for (id, f) in files.drain() {
                    close(id, f);
                }
                return;
            }
        }
    }
}

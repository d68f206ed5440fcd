//! Errors of the media runtime, each carrying the context needed to act on it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in the media runtime.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media runtime must be started inside a tokio runtime")]
    NoTokioRuntime,

    #[error("invalid media configuration: {0}")]
    Config(String),

    #[error("no free RTP port in {first}-{last} on {ip}")]
    PortsExhausted {
        ip: std::net::IpAddr,
        first: u16,
        last: u16,
    },

    #[error("cannot bind UDP socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start media thread {name}: {source}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the media runtime has shut down")]
    Shutdown,

    #[error("the media session is closed")]
    SessionClosed,

    #[error("cannot build RTP packet: {0}")]
    RtpBuild(String),

    #[error("cannot resample audio from {from_hz} Hz to {to_hz} Hz: {reason}")]
    Resample {
        from_hz: u32,
        to_hz: u32,
        reason: String,
    },

    #[error("cannot decode audio ({format}): {reason}")]
    Decode {
        format: &'static str,
        reason: String,
    },

    #[error("unsupported audio format (content type {content_type:?}, first bytes {magic})")]
    UnsupportedAudio {
        content_type: Option<String>,
        magic: String,
    },

    #[error("audio is too long: more than {limit_secs} s")]
    AudioTooLong { limit_secs: u64 },

    #[error("text-to-speech with {program} failed: {reason}")]
    Tts { program: String, reason: String },

    #[error("text-to-speech with {program} timed out after {secs} s")]
    TtsTimeout { program: String, secs: u64 },

    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },

    #[error("fetching {url} returned HTTP {status}")]
    FetchStatus { url: String, status: u16 },

    #[error("{url} is larger than {limit} bytes")]
    FetchTooLarge { url: String, limit: u64 },

    #[error("invalid audio URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("invalid DTMF digit {digit:?} in {digits:?}")]
    InvalidDigit { digit: char, digits: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write WAV file {path}: {reason}")]
    WavWrite { path: PathBuf, reason: String },

    #[error("background task failed: {0}")]
    Task(String),

    #[error("no ringback tone for country {country:?}")]
    UnknownRingTone { country: String },

    #[error("the media session is already in a bridge or a conference")]
    AlreadyJoined,

    #[error("a call recording already runs on this media session")]
    CallRecordingInProgress,

    #[error("cannot bridge a media session with itself")]
    BridgeWithItself,

    #[error("the media session belongs to another media runtime")]
    ForeignSession,

    #[error("conference {room:?} is full ({max} participants)")]
    ConferenceFull { room: String, max: usize },

    #[error("the conference has no participants or is recorded already")]
    ConferenceNotRecordable,
}

impl MediaError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> MediaError {
        MediaError::Io {
            path: path.into(),
            source,
        }
    }
}

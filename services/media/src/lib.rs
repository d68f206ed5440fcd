//! Dialtone's media runtime: RTP in and out for many calls, G.711, prompts (espeak-ng speech,
//! audio by URL), DTMF in and out (RFC 4733 and in-band), and recording.
//!
//! The protocol logic is sans-IO and tested with simulated time: RTP packetisation
//! ([`rtp`]), per-stream playout ([`playout`]), the RFC 4733 receiver and the Goertzel
//! detector ([`dtmf`]), the recorder ([`recorder`]). The shell is [`runtime`]: a playout
//! engine (a few threads ticking every 20 ms for thousands of streams), a receive thread
//! (epoll over every session socket), and tokio tasks that synthesise and fetch prompts.
//!
//! A session can also be recorded as a whole, both directions ([`call_recording`]): the
//! engine thread records what it sends and what the remote party said, every frame.
//!
//! Bridges and conferences ([`bridge`], [`conference`]) run on a mixer thread ticking every
//! 20 ms: each leg's received audio is jitter-buffered and decoded ([`mix`]), mixed, and handed
//! to the leg's playout stream, which sums it with its own playback and sends it with its own
//! RTP identity and codec.
//!
//! This crate knows nothing of SIP or TwiML: it receives [`MediaCommand`]s and reports
//! [`MediaOutcome`]s.

pub mod bench;
pub mod bridge;
mod cache;
pub mod call_recording;
pub mod codec;
pub mod conference;
pub mod decode;
pub mod dtmf;
mod engine;
pub mod error;
pub mod fetch;
pub mod hold_music;
pub mod mix;
mod mixer;
pub mod outcome;
pub mod pcm;
pub mod playout;
pub mod recorder;
pub mod ringback;
pub mod rtp;
pub mod runtime;
mod rx;
pub mod trim;
pub mod tts;
mod writer;

pub use bench::{run_playout_bench, run_playout_bench_with, BenchOptions, BenchResult};
pub use bridge::{BridgeHandle, BridgeOptions, BridgeRecording, RecordingChannels};
pub use cache::CacheStats;
pub use call_recording::{CallRecordingOptions, RecordingTrack};
pub use codec::Codec;
pub use conference::{ConferenceRoom, Participant, ParticipantOptions};
pub use dtmf::{DtmfDigit, DtmfSource};
pub use engine::{EngineStats, JitterHistogram};
pub use error::MediaError;
pub use fetch::{AudioFetcher, FetchConfig, FetchStats};
pub use outcome::{MediaOutcome, SessionStats};
pub use pcm::Pcm;
pub use playout::CommandId;
pub use recorder::{RecorderConfig, RecordingEnd};
pub use runtime::{MediaCommand, MediaConfig, MediaRuntime, MediaSession, RecordOptions};
pub use tts::{espeak_voice, EspeakConfig, EspeakTts, Tts};

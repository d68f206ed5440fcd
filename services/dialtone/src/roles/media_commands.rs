//! The interpreter's media commands (`Say`, `Play`, `Pause`, `Record`) in the media
//! runtime's terms, for a call's own program and for side programs alike.

use dialtone_events::payload::RecordingStarted;
use dialtone_media::recorder::RecorderConfig;
use dialtone_media::runtime::{MediaCommand as MediaRuntimeCommand, RecordOptions};
use dialtone_voice::interpreter::{MediaCommand, MediaDone};

use crate::roles::node::recording_url;

/// The media runtime's form of an interpreter media command, and the recording it makes.
pub fn runtime_command(
    command: MediaCommand,
    recordings_dir: &std::path::Path,
    api_base_url: &str,
    account: &str,
) -> Result<(MediaRuntimeCommand, Option<RecordingStarted>), MediaDone> {
    Ok(match command {
        MediaCommand::Say(say) => (
            MediaRuntimeCommand::Say {
                // The SSML rendering when there is one (breaks, say-as), else plain text.
                text: say.ssml.unwrap_or(say.text),
                voice: Some(say.voice),
                language: Some(say.language),
                loops: say.loops,
            },
            None,
        ),
        MediaCommand::Play(play) => match (play.digits, play.url) {
            (Some(digits), _) => (MediaRuntimeCommand::Digits { digits }, None),
            (None, Some(url)) => (
                MediaRuntimeCommand::Play {
                    url,
                    loops: play.loops,
                },
                None,
            ),
            (None, None) => return Err(MediaDone::Failed("Play without a URL or digits".into())),
        },
        MediaCommand::Pause(pause) => (
            MediaRuntimeCommand::Pause {
                ms: u32::try_from(pause.length_ms).unwrap_or(u32::MAX),
            },
            None,
        ),
        MediaCommand::Record(record) => {
            let path = recordings_dir.join(format!("{}.wav", record.recording_sid));
            let options = RecordOptions {
                path,
                beep: record.play_beep,
                recorder: RecorderConfig {
                    silence_timeout_ms: u32::try_from(record.silence_timeout_ms)
                        .unwrap_or(u32::MAX),
                    max_length_ms: u32::try_from(record.max_length_ms).unwrap_or(u32::MAX),
                    finish_on_keys: record.finish_on_key.clone(),
                    trim_silence: record.trim,
                    ..RecorderConfig::default()
                },
            };
            let started = RecordingStarted {
                url: Some(recording_url(api_base_url, account, &record.recording_sid)),
                status_callback: record.status_callback.clone(),
                status_callback_method: record.status_callback_method,
                status_callback_events: record.status_callback_events.clone(),
                ..RecordingStarted::new(record.recording_sid.clone(), "RecordVerb", 1)
            };
            (MediaRuntimeCommand::Record(options), Some(started))
        }
    })
}

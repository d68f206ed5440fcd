//! Side programs: TwiML that runs beside a call's own program without being it (the
//! whisper on a `<Dial>` callee, the conference `waitUrl` music). Their media commands play
//! on a session that is not necessarily the call's.

use std::collections::HashMap;
use std::time::Instant;

use dialtone_media::playout::CommandId as MediaCommandId;
use dialtone_media::runtime::MediaSession;
use dialtone_voice::interpreter::{Action, CommandId, Interpreter, MediaDone};

use crate::roles::media_commands::runtime_command;
use crate::roles::node::Node;

/// Plays a media command of a side program (a whisper on the callee, the conference wait
/// music on the caller) on `media`; when it cannot run, returns the program's next actions.
pub fn play_side_command(
    node: &Node,
    account: &str,
    media: Option<&MediaSession>,
    interpreter: &mut Interpreter,
    commands: &mut HashMap<MediaCommandId, CommandId>,
    command_id: CommandId,
    command: dialtone_voice::interpreter::MediaCommand,
) -> Vec<Action> {
    let now = Instant::now();
    let converted = runtime_command(
        command,
        &node.recordings_dir,
        &node.interpreter.api_base_url,
        account,
    );
    match (media, converted) {
        (Some(media), Ok((command, _))) => {
            commands.insert(media.play(command), command_id);
            Vec::new()
        }
        (_, Err(done)) => interpreter.on_media_done(command_id, done, now),
        (None, Ok(_)) => interpreter.on_media_done(command_id, MediaDone::Interrupted, now),
    }
}

//! What a call's helpers report to its task: the child legs of a `<Dial>` and the link
//! that carries a conference participant to the room's node. The task's loop reads them
//! and hands each to the module that placed the leg.

use dialtone_events::sid::CallSid;
use dialtone_media::outcome::MediaOutcome;
use dialtone_sip::endpoint::{CallEvent, CallHandle};
use dialtone_voice::interpreter::dial::DialId;

pub enum Signal {
    /// A child leg's INVITE went out (or could not).
    Placed {
        dial_id: DialId,
        child: CallSid,
        result: Result<CallHandle, String>,
    },
    ChildSip {
        dial_id: DialId,
        child: CallSid,
        event: CallEvent,
    },
    ChildMedia {
        dial_id: DialId,
        child: CallSid,
        outcome: MediaOutcome,
    },
    /// The INVITE of a room link (to the node holding the conference) went out, or not.
    LinkPlaced {
        dial_id: DialId,
        result: Result<CallHandle, String>,
    },
    /// What happens on a room link.
    Link { dial_id: DialId, event: CallEvent },
}

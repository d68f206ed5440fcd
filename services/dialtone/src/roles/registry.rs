//! The live calls this node owns, so that commands (shutdown, REST updates) reach them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialtone_events::sid::CallSid;
use tokio::sync::{mpsc, Notify};

/// The answer to a live update: `Err` carries why it was refused.
pub type Reply = tokio::sync::oneshot::Sender<Result<(), String>>;

/// A command for a live call's task.
#[derive(Debug)]
pub enum CallControl {
    /// End the call now (node shutdown).
    Hangup,
    /// End the call now (REST `Status=completed` or `canceled`).
    HangupByApi,
    /// Run the TwiML at `url` instead of what runs now (REST `Url`).
    Redirect {
        url: String,
        method: dialtone_events::payload::HttpMethod,
        reply: Reply,
    },
    /// Run this TwiML instead of what runs now (REST `Twiml`).
    Twiml { twiml: String, reply: Reply },
    /// The conference this call is in was ended by another participant.
    ConferenceEnded,
    /// The conference this call waits in has started (another participant joined).
    ConferenceStarted,
    /// Mute or unmute the call in its conference, put it on hold or take it off (REST
    /// participant update; `None`: unchanged).
    ConferenceUpdate {
        muted: Option<bool>,
        hold: Option<bool>,
        reply: Reply,
    },
    /// Take the call out of its conference; its TwiML goes on (REST participant delete).
    ConferenceKick { reply: Reply },
    /// End the call's conference for everyone (REST conference `Status=completed`).
    ConferenceEnd { reply: Reply },
}

#[derive(Default)]
struct Inner {
    calls: Mutex<HashMap<CallSid, mpsc::Sender<CallControl>>>,
    emptied: Notify,
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct CallRegistry(Arc<Inner>);

impl CallRegistry {
    /// Registers a new call; its task reads commands from the returned receiver.
    pub fn register(&self, sid: CallSid) -> mpsc::Receiver<CallControl> {
        let (tx, rx) = mpsc::channel(8);
        if let Ok(mut calls) = self.0.calls.lock() {
            calls.insert(sid, tx);
        }
        rx
    }

    pub fn remove(&self, sid: &CallSid) {
        if let Ok(mut calls) = self.0.calls.lock() {
            calls.remove(sid);
            if calls.is_empty() {
                self.0.emptied.notify_waiters();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn contains(&self, sid: &CallSid) -> bool {
        self.0
            .calls
            .lock()
            .map(|c| c.contains_key(sid))
            .unwrap_or(false)
    }

    /// Waits (up to `limit`) until the call has ended here.
    pub async fn wait_until_gone(&self, sid: &CallSid, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.contains(sid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `command` to a live call; false when the call is not live here.
    pub fn send(&self, sid: &CallSid, command: CallControl) -> bool {
        let sender = self.0.calls.lock().ok().and_then(|c| c.get(sid).cloned());
        sender.is_some_and(|s| s.try_send(command).is_ok())
    }

    /// Tells every live call to hang up and waits (up to `grace`) until all have ended.
    /// Returns how many were still live when the grace period ran out.
    pub async fn hang_up_all(&self, grace: Duration) -> usize {
        let senders: Vec<_> = self
            .0
            .calls
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        for sender in senders {
            let _ = sender.try_send(CallControl::Hangup);
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.0.emptied.notified();
            if self.len() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.len();
            }
        }
    }
}

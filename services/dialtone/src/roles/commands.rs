//! Commands for live calls travel through the log (`CM…` streams): the API appends a
//! `command.call.update` naming the node that owns the call; that node's listener carries
//! it out and appends `command.completed`. One node or many, it is the same path.

use std::sync::Arc;
use std::time::Duration;

use dialtone_events::payload::{
    CallControlAction, CallControlRequested, CommandCompleted, Payload,
};
use dialtone_events::sid::{CallSid, CommandSid};
use dialtone_events::{EventLog, ExpectedVersion, Filter, NewEvent};

use crate::roles::node::Node;
use crate::roles::registry::CallControl;

/// `command.completed`'s error for a call that is not live (Twilio 21220).
pub const INVALID_STATE: &str = "invalid-state";
/// How long a hangup waits for the call to write `call.completed`, so that the API's
/// answer shows the final status.
const HANGUP_WAIT: Duration = Duration::from_secs(5);

/// Listens for commands addressed to this node, from now on.
pub async fn listen(
    node: Arc<Node>,
) -> Result<tokio::task::JoinHandle<()>, dialtone_events::LogError> {
    let from = node.log.head().await?;
    let filter = Filter {
        type_prefixes: vec!["dialtone.command.call.update".into()],
        ..Filter::all()
    };
    let mut subscription = node.log.subscribe(from, filter).await?;
    Ok(tokio::spawn(async move {
        while let Some(next) = subscription.next().await {
            let recorded = match next {
                Ok(recorded) => recorded,
                Err(error) => {
                    tracing::warn!(%error, "unreadable command");
                    continue;
                }
            };
            let Ok(Payload::CallControlRequested(request)) = recorded.event.payload() else {
                continue;
            };
            if request.owner_node != node.node_id {
                continue;
            }
            let node = node.clone();
            let stream = recorded.event.subject.clone();
            let account = recorded.event.accountsid.clone();
            tokio::spawn(async move {
                let outcome = execute(&node, &account, &request).await;
                let completed = CommandCompleted {
                    node: node.node_id.clone(),
                    ok: outcome.is_ok(),
                    error: outcome.err(),
                };
                let event = NewEvent::new(account, completed);
                if let Err(error) = node
                    .log
                    .append(&stream, ExpectedVersion::Exact(1), vec![event])
                    .await
                {
                    tracing::error!(command = %stream, %error, "cannot record a command's outcome");
                }
            });
        }
    }))
}

/// Carries a command out on a call of this node.
async fn execute(
    node: &Arc<Node>,
    account: &str,
    request: &CallControlRequested,
) -> Result<(), String> {
    let registry = &node.registry;
    let call = &request.call_sid;
    let ask = |control: CallControl| {
        if registry.send(call, control) {
            Ok(())
        } else {
            Err(INVALID_STATE.to_owned())
        }
    };
    match &request.action {
        CallControlAction::Hangup | CallControlAction::Cancel => {
            ask(CallControl::HangupByApi)?;
            registry.wait_until_gone(call, HANGUP_WAIT).await;
            Ok(())
        }
        CallControlAction::Redirect { url, method } => {
            let (reply, answer) = tokio::sync::oneshot::channel();
            ask(CallControl::Redirect {
                url: url.clone(),
                method: *method,
                reply,
            })?;
            answer
                .await
                .map_err(|_| INVALID_STATE.to_owned())?
                .map_err(|_| INVALID_STATE.to_owned())
        }
        CallControlAction::Twiml { twiml } => {
            let (reply, answer) = tokio::sync::oneshot::channel();
            ask(CallControl::Twiml {
                twiml: twiml.clone(),
                reply,
            })?;
            answer.await.map_err(|_| INVALID_STATE.to_owned())?
        }
        CallControlAction::ConferenceUpdate { muted, hold } => {
            let (reply, answer) = tokio::sync::oneshot::channel();
            ask(CallControl::ConferenceUpdate {
                muted: *muted,
                hold: *hold,
                reply,
            })?;
            answer.await.map_err(|_| INVALID_STATE.to_owned())?
        }
        CallControlAction::ConferenceKick => {
            let (reply, answer) = tokio::sync::oneshot::channel();
            ask(CallControl::ConferenceKick { reply })?;
            answer.await.map_err(|_| INVALID_STATE.to_owned())?
        }
        CallControlAction::ConferenceEnd => {
            let (reply, answer) = tokio::sync::oneshot::channel();
            ask(CallControl::ConferenceEnd { reply })?;
            answer.await.map_err(|_| INVALID_STATE.to_owned())?
        }
        CallControlAction::Originate(options) => {
            crate::roles::outbound::dial_created(node.clone(), account, call, options).await
        }
    }
}

/// Why a command did not complete.
#[derive(Debug)]
pub enum CommandError {
    /// The owner refused it: `invalid-state`, or the TwiML error.
    Refused(String),
    /// No answer from the owner in time (it may be down).
    NoAnswer {
        owner: String,
    },
    Log(dialtone_events::LogError),
}

/// Sends `action` to the node that owns `call` and waits for its answer.
pub async fn send(
    log: &dyn EventLog,
    account: &str,
    call: &CallSid,
    action: CallControlAction,
    wait: Duration,
) -> Result<(), CommandError> {
    let history = log
        .read_stream(call.as_str(), 1)
        .await
        .map_err(CommandError::Log)?;
    let owner = history
        .first()
        .and_then(|r| match r.event.payload() {
            Ok(Payload::CallInitiated(initiated)) => Some(initiated.owner_node),
            _ => None,
        })
        .ok_or_else(|| CommandError::Refused(INVALID_STATE.to_owned()))?;
    send_to(log, account, call, &owner, action, wait).await
}

/// Sends `action` for `call` to node `owner` (which holds the call, or its seat in a room)
/// and waits for its answer.
pub async fn send_to(
    log: &dyn EventLog,
    account: &str,
    call: &CallSid,
    owner: &str,
    action: CallControlAction,
    wait: Duration,
) -> Result<(), CommandError> {
    let owner = owner.to_owned();
    let command = CommandSid::generate();
    let request = CallControlRequested {
        call_sid: call.clone(),
        owner_node: owner.clone(),
        action,
    };
    log.append(
        command.as_str(),
        ExpectedVersion::NoStream,
        vec![NewEvent::new(account, request)],
    )
    .await
    .map_err(CommandError::Log)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let answer = log
            .read_stream(command.as_str(), 2)
            .await
            .map_err(CommandError::Log)?;
        if let Some(Ok(Payload::CommandCompleted(done))) = answer.first().map(|r| r.event.payload())
        {
            return if done.ok {
                Ok(())
            } else {
                Err(CommandError::Refused(done.error.unwrap_or_default()))
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CommandError::NoAnswer { owner });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

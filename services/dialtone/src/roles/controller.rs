//! The REST API's handle on calls: creating them here (on a node with the voice role), and
//! sending live updates to the node that owns each call through the log (see
//! [`crate::roles::commands`]), from any node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dialtone_api::{
    CallAction, CallController, ControlError, CreateCall, ParticipantAction, UpdateCall,
};
use dialtone_events::payload::CallControlAction;
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::EventLog;

use crate::roles::commands::{self, CommandError, INVALID_STATE};
use crate::roles::node::Node;

/// How long an update waits for the owner's answer (a hangup waits up to 5 s itself).
const COMMAND_WAIT: Duration = Duration::from_secs(10);

pub struct NodeController {
    log: Arc<dyn EventLog>,
    /// This node's calls, when it runs the voice role: outbound calls start here.
    voice: Option<Arc<Node>>,
}

impl NodeController {
    /// On a node with the voice role.
    pub fn voice(node: Arc<Node>) -> NodeController {
        NodeController {
            log: node.log.clone(),
            voice: Some(node),
        }
    }

    /// On a node without it: live updates still reach every call's owner through the log.
    pub fn commands_only(log: Arc<dyn EventLog>) -> NodeController {
        NodeController { log, voice: None }
    }
}

#[async_trait]
impl CallController for NodeController {
    async fn create_call(
        &self,
        account: &AccountSid,
        request: CreateCall,
    ) -> Result<CallSid, ControlError> {
        match &self.voice {
            Some(node) => {
                crate::roles::outbound::originate(node.clone(), account.clone(), request).await
            }
            None => Err(ControlError::Unavailable(
                "this node does not run the voice role: place outbound calls through a node started with --roles voice (or all)".into(),
            )),
        }
    }

    async fn update_call(
        &self,
        account: &AccountSid,
        call: &CallSid,
        update: UpdateCall,
    ) -> Result<(), ControlError> {
        let Some(action) = update.action else {
            // Callback or time-limit changes alone: accepted, not applied to a live call yet.
            return Ok(());
        };
        let twiml = matches!(action, CallAction::Twiml(_));
        let action = match action {
            CallAction::Hangup => CallControlAction::Hangup,
            CallAction::Cancel => CallControlAction::Cancel,
            CallAction::Redirect { url, method, .. } => CallControlAction::Redirect { url, method },
            CallAction::Twiml(twiml) => CallControlAction::Twiml { twiml },
        };
        self.send(account, call, action, twiml).await
    }

    async fn update_participant(
        &self,
        account: &AccountSid,
        call: &CallSid,
        action: ParticipantAction,
    ) -> Result<(), ControlError> {
        let action = match action {
            ParticipantAction::Update { muted, hold } => {
                CallControlAction::ConferenceUpdate { muted, hold }
            }
            ParticipantAction::Kick => CallControlAction::ConferenceKick,
            ParticipantAction::EndConference => CallControlAction::ConferenceEnd,
        };
        self.send(account, call, action, false).await
    }
}

impl NodeController {
    /// Sends a command to the node that owns `call`; `twiml` says a refusal other than
    /// `invalid-state` is the new TwiML's error (12100).
    async fn send(
        &self,
        account: &AccountSid,
        call: &CallSid,
        action: CallControlAction,
        twiml: bool,
    ) -> Result<(), ControlError> {
        match commands::send(
            self.log.as_ref(),
            account.as_str(),
            call,
            action,
            COMMAND_WAIT,
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(CommandError::Refused(reason)) if reason == INVALID_STATE || !twiml => {
                Err(ControlError::InvalidState)
            }
            Err(CommandError::Refused(message)) => Err(ControlError::InvalidParameter {
                code: 12100,
                message,
            }),
            Err(CommandError::NoAnswer { owner }) => Err(ControlError::Unavailable(format!(
                "node {owner}, which owns the call, did not answer"
            ))),
            Err(CommandError::Log(error)) => Err(ControlError::Unavailable(error.to_string())),
        }
    }
}

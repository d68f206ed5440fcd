//! The REST API's handle on calls: creating them here, and sending live updates to the node
//! that owns each call through the log (see [`crate::roles::commands`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dialtone_api::{
    CallAction, CallController, ControlError, CreateCall, ParticipantAction, UpdateCall,
};
use dialtone_events::payload::CallControlAction;
use dialtone_events::sid::{AccountSid, CallSid};

use crate::roles::commands::{self, CommandError, INVALID_STATE};
use crate::roles::node::Node;

/// How long an update waits for the owner's answer (a hangup waits up to 5 s itself).
const COMMAND_WAIT: Duration = Duration::from_secs(10);

pub struct NodeController(pub Arc<Node>);

#[async_trait]
impl CallController for NodeController {
    async fn create_call(
        &self,
        account: &AccountSid,
        request: CreateCall,
    ) -> Result<CallSid, ControlError> {
        crate::roles::outbound::originate(self.0.clone(), account.clone(), request).await
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
            self.0.log.as_ref(),
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

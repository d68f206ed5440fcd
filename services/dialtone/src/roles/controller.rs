//! The REST API's handle on live calls (`POST …/Calls.json` and `…/Calls/{CA}.json`). On one
//! node every call is local; in a cluster a command for a call owned by another node would be
//! forwarded to it (not implemented yet: such updates answer 503).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dialtone_api::{CallAction, CallController, ControlError, CreateCall, UpdateCall};
use dialtone_events::sid::{AccountSid, CallSid};

use crate::roles::node::Node;
use crate::roles::registry::CallControl;

/// How long an update waits for a hung-up call to write `call.completed`, so that the
/// response shows its final status.
const HANGUP_WAIT: Duration = Duration::from_secs(5);

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
        _account: &AccountSid,
        call: &CallSid,
        update: UpdateCall,
    ) -> Result<(), ControlError> {
        let Some(action) = update.action else {
            // Callback or time-limit changes alone: accepted, not applied to a live call yet.
            return Ok(());
        };
        let registry = &self.0.registry;
        if !registry.contains(call) {
            return Err(ControlError::InvalidState);
        }
        match action {
            CallAction::Hangup | CallAction::Cancel => {
                if !registry.send(call, CallControl::HangupByApi) {
                    return Err(ControlError::InvalidState);
                }
                registry.wait_until_gone(call, HANGUP_WAIT).await;
                Ok(())
            }
            CallAction::Redirect { url, method, .. } => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                if !registry.send(call, CallControl::Redirect { url, method, reply }) {
                    return Err(ControlError::InvalidState);
                }
                answer
                    .await
                    .map_err(|_| ControlError::InvalidState)?
                    .map_err(|_| ControlError::InvalidState)
            }
            CallAction::Twiml(twiml) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                if !registry.send(call, CallControl::Twiml { twiml, reply }) {
                    return Err(ControlError::InvalidState);
                }
                answer
                    .await
                    .map_err(|_| ControlError::InvalidState)?
                    .map_err(|message| ControlError::InvalidParameter {
                        code: 12100,
                        message,
                    })
            }
        }
    }
}

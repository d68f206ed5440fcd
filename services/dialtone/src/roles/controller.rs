//! The REST API's handle on calls: creating them here (on a node with the voice role), and
//! sending live updates to the node that owns each call through the log (see
//! [`crate::roles::commands`]), from any node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dialtone_api::{
    CallAction, CallController, ControlError, CreateCall, ParticipantAction, UpdateCall,
};
use std::sync::atomic::{AtomicUsize, Ordering};

use dialtone_events::payload::{CallControlAction, CallStatus};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::{EventLog, ExpectedVersion, NewEvent};
use dialtone_projections::nodes::list_nodes;
use dialtone_projections::ReadModels;
use time::OffsetDateTime;

use crate::roles::call::completed_unanswered;

use crate::roles::commands::{self, CommandError, INVALID_STATE};
use crate::roles::node::Node;

/// How long an update waits for the owner's answer (a hangup waits up to 5 s itself).
const COMMAND_WAIT: Duration = Duration::from_secs(10);

pub struct NodeController {
    log: Arc<dyn EventLog>,
    /// This node's calls, when it runs the voice role: outbound calls start here.
    voice: Option<Arc<Node>>,
    /// Without it: the nodes read model, to hand outbound calls to live voice nodes in turn.
    nodes: Option<(ReadModels, AtomicUsize)>,
}

impl NodeController {
    /// On a node with the voice role.
    pub fn voice(node: Arc<Node>) -> NodeController {
        NodeController {
            log: node.log.clone(),
            voice: Some(node),
            nodes: None,
        }
    }

    /// On a node without it: outbound calls go to a live voice node, live updates to each
    /// call's owner, both through the log.
    pub fn remote(log: Arc<dyn EventLog>, read_models: ReadModels) -> NodeController {
        NodeController {
            log,
            voice: None,
            nodes: Some((read_models, AtomicUsize::new(0))),
        }
    }

    /// A live node with the voice role, round-robin.
    async fn voice_node(&self) -> Result<String, ControlError> {
        let Some((read_models, turn)) = &self.nodes else {
            return Err(ControlError::Unavailable("no voice role here".into()));
        };
        let nodes = read_models
            .read(list_nodes)
            .await
            .map_err(|error| ControlError::Unavailable(error.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let live: Vec<String> = nodes
            .into_iter()
            .filter(|n| n.serves("voice", now))
            .map(|n| n.node_id)
            .collect();
        if live.is_empty() {
            return Err(ControlError::Unavailable(
                "no live node with the voice role to place the call".into(),
            ));
        }
        Ok(live[turn.fetch_add(1, Ordering::Relaxed) % live.len()].clone())
    }

    /// Creates the call for a voice node (`call.initiated` naming it the owner) and hands it
    /// over with an `Originate` command.
    async fn originate_remotely(
        &self,
        account: &AccountSid,
        request: CreateCall,
    ) -> Result<CallSid, ControlError> {
        if request.sip_auth_password.is_some() {
            return Err(ControlError::Unavailable(
                "SIP credentials are never written to the log: place calls with SipAuthPassword through a node with the voice role".into(),
            ));
        }
        let owner = self.voice_node().await?;
        let sid =
            crate::roles::outbound::record_created(self.log.as_ref(), account, &request, &owner)
                .await?;
        let handed = commands::send(
            self.log.as_ref(),
            account.as_str(),
            &sid,
            CallControlAction::Originate(request.originate_options()),
            COMMAND_WAIT,
        )
        .await;
        match handed {
            Ok(()) => Ok(sid),
            // The owner heartbeats but has not answered yet: the call is queued on it (and
            // ended by liveness should that node be lost).
            Err(CommandError::NoAnswer { owner }) => {
                tracing::warn!(call = %sid, %owner, "the voice node has not confirmed the call yet");
                Ok(sid)
            }
            Err(error) => {
                // Refused (it will not write the stream): end the call here, failed.
                let failed = completed_unanswered(CallStatus::Failed, 500, "api");
                let _ = self
                    .log
                    .append(
                        sid.as_str(),
                        ExpectedVersion::Exact(1),
                        vec![NewEvent::new(account.as_str(), failed)],
                    )
                    .await;
                Err(ControlError::Unavailable(format!(
                    "node {owner} did not take the call: {error:?}"
                )))
            }
        }
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
            None => self.originate_remotely(account, request).await,
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

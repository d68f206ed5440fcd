//! Calls placed through the REST API (`POST …/Calls.json`, direction `outbound-api`): queued
//! under the account's CPS pacing, dialed through the trunk (or straight to a `sip:` URI),
//! and handed to an ordinary call task with its TwiML once the callee answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_api::{ControlError, CreateCall};
use dialtone_events::payload::{
    CallAnswered, CallInitiated, CallRinging, CallStatus, Direction, OriginateOptions,
    RecordingStarted,
};
use dialtone_events::sid::{AccountSid, CallSid, RecordingSid};
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_media::runtime::MediaCommand as MediaRuntimeCommand;
use dialtone_media::{CallRecordingOptions, RecordingChannels, RecordingTrack};
use dialtone_sip::endpoint::CallEvent;
use dialtone_sip::sdp::{self, LocalMedia};
use dialtone_voice::interpreter::{CallContext, Interpreter};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::roles::call::{self, codec_name, completed_unanswered, media_codec, CallSetup};
use crate::roles::legs::{self, LegTarget};
use crate::roles::node::Node;
use crate::roles::registry::CallControl;

/// Records the new call (`queued`) and starts placing it; returns its SID at once.
pub async fn originate(
    node: Arc<Node>,
    account: AccountSid,
    request: CreateCall,
) -> Result<CallSid, ControlError> {
    if node.accounts.get(account.as_str()).is_none() {
        return Err(ControlError::NotFound);
    }
    let sid = record_created(node.log.as_ref(), &account, &request, &node.node_id).await?;
    let control = node.registry.register(sid.clone());
    tokio::spawn(run(node, account, sid.clone(), request, control));
    Ok(sid)
}

/// Records a REST-created call that `owner_node` places (its `call.initiated`, durably);
/// returns its new SID.
pub async fn record_created(
    log: &dyn EventLog,
    account: &AccountSid,
    request: &CreateCall,
    owner_node: &str,
) -> Result<CallSid, ControlError> {
    let sid = CallSid::generate();
    log.append(
        sid.as_str(),
        ExpectedVersion::NoStream,
        vec![NewEvent::new(
            account.as_str(),
            initiated_by_api(request, owner_node),
        )],
    )
    .await
    .map_err(|error| ControlError::Unavailable(error.to_string()))?;
    Ok(sid)
}

/// The first event of a REST-created call that `owner_node` places.
fn initiated_by_api(request: &CreateCall, owner_node: &str) -> CallInitiated {
    CallInitiated {
        direction: Direction::OutboundApi,
        from: request.from.clone(),
        to: request.to.clone(),
        owner_node: owner_node.to_owned(),
        sip_call_id: None,
        source_addr: None,
        phone_number_sid: None,
        parent_call_sid: None,
        forwarded_from: None,
        application: request.application(),
    }
}

/// Places an outbound call another node created for this one (an API node without the voice
/// role wrote its `call.initiated` naming this node the owner, then the `Originate`
/// command): the same as [`originate`] from the queue on. Refuses (`invalid-state`) a call
/// that is not a fresh outbound call of this node, or one already placed.
pub async fn dial_created(
    node: Arc<Node>,
    account: &str,
    sid: &CallSid,
    options: &OriginateOptions,
) -> Result<(), String> {
    const REFUSED: &str = crate::roles::commands::INVALID_STATE;
    let account = AccountSid::parse(account).map_err(|_| REFUSED.to_owned())?;
    let history = node
        .log
        .read_stream(sid.as_str(), 1)
        .await
        .map_err(|error| error.to_string())?;
    let initiated = match history.as_slice() {
        [only] => match only.event.payload() {
            Ok(Payload::CallInitiated(initiated))
                if initiated.owner_node == node.node_id
                    && initiated.direction == Direction::OutboundApi =>
            {
                initiated
            }
            _ => return Err(REFUSED.to_owned()),
        },
        _ => return Err(REFUSED.to_owned()),
    };
    if node.registry.contains(sid) {
        return Err(REFUSED.to_owned());
    }
    let request = CreateCall::from_log(
        &initiated.to,
        &initiated.from,
        &initiated.application,
        options,
    );
    let control = node.registry.register(sid.clone());
    tokio::spawn(run(node, account, sid.clone(), request, control));
    Ok(())
}

async fn append(node: &Node, account: &AccountSid, sid: &CallSid, payload: impl Into<Payload>) {
    let event = NewEvent::new(account.as_str(), payload);
    if let Err(error) = node
        .log
        .append(sid.as_str(), ExpectedVersion::Any, vec![event])
        .await
    {
        tracing::error!(call = %sid, %error, "cannot append call events");
    }
}

/// Ends a call that never connected.
async fn give_up(
    node: &Node,
    account: &AccountSid,
    sid: &CallSid,
    status: CallStatus,
    sip_code: u16,
    by: &str,
) {
    append(
        node,
        account,
        sid,
        completed_unanswered(status, sip_code, by),
    )
    .await;
    node.registry.remove(sid);
    metrics::counter!("dialtone_calls_completed_total", "status" => status.as_str()).increment(1);
}

async fn run(
    node: Arc<Node>,
    account: AccountSid,
    sid: CallSid,
    request: CreateCall,
    mut control: mpsc::Receiver<CallControl>,
) {
    // Queued: wait for the account's CPS slot (a REST cancel or hangup ends it here).
    tokio::select! {
        waited = node.pacer.wait(account.as_str()) => {
            if waited > Duration::from_millis(1) {
                tracing::debug!(call = %sid, waited_ms = waited.as_millis() as u64, "left the queue");
            }
        }
        _ = control.recv() => {
            give_up(&node, &account, &sid, CallStatus::Canceled, 487, "api").await;
            return;
        }
    }
    // What the account can pay for: nothing left fails the call before it rings.
    let allowance = crate::roles::allowance::of_call(
        &node,
        account.as_str(),
        Direction::OutboundApi,
        &request.to,
    )
    .await;
    if allowance == crate::roles::allowance::Allowance::Exhausted {
        tracing::info!(call = %sid, "the account has no balance left: the call fails");
        give_up(&node, &account, &sid, CallStatus::Failed, 402, "dialtone").await;
        return;
    }
    let invited_at = Instant::now();
    let media = match node.media.open_session() {
        Ok(media) => media,
        Err(error) => {
            tracing::warn!(call = %sid, %error, "no media session for an outbound call");
            give_up(&node, &account, &sid, CallStatus::Failed, 503, "dialtone").await;
            return;
        }
    };
    let local = LocalMedia::new(node.public_ip, media.local_port());
    let target = LegTarget::from_rest(
        &request.to,
        request.sip_auth_username.clone(),
        request.sip_auth_password.clone(),
    );
    let caller_id = request
        .caller_id
        .clone()
        .unwrap_or_else(|| request.from.clone());
    let ring_timeout = Duration::from_secs(u64::from(request.timeout_s.clamp(1, 600)));
    let mut placed =
        match legs::place(&node, &target, &caller_id, sdp::offer(&local), ring_timeout).await {
            Ok(placed) => placed,
            Err(error) => {
                tracing::info!(call = %sid, %error, "outbound call could not be placed");
                media.close();
                give_up(&node, &account, &sid, CallStatus::Failed, 500, "dialtone").await;
                return;
            }
        };
    tracing::info!(call = %sid, to = %request.to, "outbound call");

    // Ringing until answered, refused, timed out or cancelled.
    let mut ringing = false;
    let mut cancelled = false;
    let negotiated = loop {
        tokio::select! {
            event = placed.events.recv() => match event {
                Some(CallEvent::Progress { status, .. }) => {
                    if !std::mem::replace(&mut ringing, true) {
                        append(&node, &account, &sid, CallRinging { sip_code: Some(status) }).await;
                    }
                }
                Some(CallEvent::Answered { sdp }) => {
                    match sdp.as_deref().map(|s| sdp::accept_answer(s, &local)) {
                        Some(Ok(negotiated)) => break negotiated,
                        _ => {
                            tracing::warn!(call = %sid, "the callee's SDP answer is unusable; hanging up");
                            let _ = placed.call.hangup().await;
                            media.close();
                            give_up(&node, &account, &sid, CallStatus::Failed, 488, "dialtone").await;
                            return;
                        }
                    }
                }
                Some(CallEvent::Terminated { reason }) => {
                    let status = if cancelled { "canceled" } else { reason.twilio_status() };
                    let status = match status {
                        "busy" => CallStatus::Busy,
                        "no-answer" => CallStatus::NoAnswer,
                        "canceled" => CallStatus::Canceled,
                        _ => CallStatus::Failed,
                    };
                    let code = match reason {
                        dialtone_sip::endpoint::TerminationReason::Rejected { status } => status,
                        dialtone_sip::endpoint::TerminationReason::Failed { status, .. } => status,
                        dialtone_sip::endpoint::TerminationReason::TimedOut => 408,
                        _ => 487,
                    };
                    media.close();
                    give_up(&node, &account, &sid, status, code, if cancelled { "api" } else { "callee" }).await;
                    return;
                }
                Some(_) => {}
                None => {
                    media.close();
                    give_up(&node, &account, &sid, CallStatus::Failed, 500, "dialtone").await;
                    return;
                }
            },
            command = control.recv() => match command {
                Some(CallControl::Hangup | CallControl::HangupByApi) => {
                    cancelled = true;
                    let call = placed.call.clone();
                    tokio::spawn(async move { let _ = call.hangup().await; });
                }
                Some(
                    CallControl::Redirect { reply, .. }
                    | CallControl::Twiml { reply, .. }
                    | CallControl::ConferenceUpdate { reply, .. }
                    | CallControl::ConferenceKick { reply }
                    | CallControl::ConferenceEnd { reply },
                ) => {
                    let _ = reply.send(Err("the call is not in progress yet".into()));
                }
                Some(CallControl::ConferenceEnded | CallControl::ConferenceStarted) | None => {}
            },
        }
    };

    // Answered: the TwiML is fetched now (Twilio's CallStatus=in-progress).
    media.set_remote(
        negotiated.remote_rtp,
        media_codec(negotiated.codec),
        negotiated.telephone_event_pt,
    );
    if let Some(digits) = request.send_digits.clone().filter(|d| !d.is_empty()) {
        media.play(MediaRuntimeCommand::Digits { digits });
    }
    let now = Instant::now();
    append(
        &node,
        &account,
        &sid,
        CallAnswered {
            codec: Some(codec_name(negotiated.codec).into()),
        },
    )
    .await;
    let Some(webhooks) = node.webhook_session(account.as_str()) else {
        tracing::error!(call = %sid, "the account disappeared");
        let _ = placed.call.hangup().await;
        media.close();
        return;
    };
    let context = CallContext {
        call_sid: sid.clone(),
        account_sid: account.clone(),
        from: request.from.clone(),
        to: request.to.clone(),
        direction: Direction::OutboundApi,
        call_status: CallStatus::InProgress,
        parent_call_sid: None,
        forwarded_from: None,
        caller_name: None,
        application: request.application(),
        extra_params: Vec::new(),
    };
    let call_recording = request
        .record
        .then(|| start_recording(&node, &account, &media, &request))
        .flatten();
    let mut interpreter = Interpreter::new(context, node.interpreter.clone());
    let first = interpreter.start(now);
    let setup = CallSetup {
        node: node.clone(),
        sid,
        account,
        sip: placed.call,
        sip_events: placed.events,
        media,
        negotiated,
        sdp_answer: None,
        answered: Some((now, OffsetDateTime::now_utc())),
        interpreter,
        webhooks,
        control,
        invited_at,
        call_recording,
        max_duration: allowance.limit(),
    };
    call::run(setup, first).await;
}

/// REST `Record=true`: records both directions of the call from the answer.
fn start_recording(
    node: &Node,
    account: &AccountSid,
    media: &dialtone_media::runtime::MediaSession,
    request: &CreateCall,
) -> Option<(dialtone_media::playout::CommandId, RecordingStarted)> {
    let sid = RecordingSid::generate();
    let options = CallRecordingOptions {
        path: node.recordings_dir.join(format!("{sid}.wav")),
        channels: if request.recording_channels == 2 {
            RecordingChannels::Dual
        } else {
            RecordingChannels::Mono
        },
        track: RecordingTrack::Both,
        trim_silence: request.recording_trim_silence,
    };
    let channels = u8::try_from(options.file_channels()).unwrap_or(1);
    match media.start_call_recording(options) {
        Ok(id) => {
            let started = RecordingStarted {
                url: Some(crate::roles::node::recording_url(
                    &node.interpreter.api_base_url,
                    account.as_str(),
                    &sid,
                )),
                track: Some(RecordingTrack::Both.as_str().to_owned()),
                status_callback: request.recording_status_callback.clone(),
                status_callback_method: request.recording_status_callback_method,
                status_callback_events: request.recording_status_callback_events.clone(),
                ..RecordingStarted::new(sid, "OutboundAPI", channels)
            };
            Some((id, started))
        }
        Err(error) => {
            tracing::warn!(%error, "cannot record the call");
            None
        }
    }
}

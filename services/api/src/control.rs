//! Call control: what the REST API asks of the part of Dialtone that places and runs calls.
//!
//! The API validates `POST …/Calls.json` and `POST …/Calls/{Sid}.json` into [`CreateCall`] and
//! [`UpdateCall`] and hands them to a [`CallController`] (implemented by the `dialtone`
//! binary, which routes each command to the call's owner node). The controller writes the
//! call's events; the API then waits for the projections and answers with the Call resource.

use async_trait::async_trait;
use dialtone_events::payload::{CallApplication, HttpMethod, OriginateOptions};
use dialtone_events::sid::{AccountSid, CallSid};

/// A validated outbound call request (`POST …/Calls.json`).
///
/// Exactly one of `url` and `twiml` is `Some` (when both were sent, `Url` wins and `twiml` is
/// `None`, as Twilio documents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    /// Whom to call: E.164 (`+14155550100`, normalised) or a `sip:`/`sips:` URI (as sent,
    /// trimmed).
    pub to: String,
    /// Caller ID: E.164 (normalised); when `to` is a SIP URI, any caller identity Twilio
    /// would accept there (a SIP URI or a user-part string).
    pub from: String,
    /// Where to fetch the TwiML once the call is answered.
    pub url: Option<String>,
    /// Method for `url` (default POST).
    pub method: HttpMethod,
    /// Inline TwiML (at most 4000 characters), used instead of fetching `url`.
    pub twiml: Option<String>,
    pub fallback_url: Option<String>,
    pub fallback_method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    /// Subset of `initiated ringing answered completed`, in the order first named, without
    /// duplicates; empty means `completed` only.
    pub status_callback_events: Vec<String>,
    /// Seconds to let the far end ring before giving up (`no-answer`): 1–600, default 60.
    pub timeout_s: u32,
    /// Record the whole call (`Record=true`).
    pub record: bool,
    /// 1 (`mono`, default) or 2 (`dual`).
    pub recording_channels: u8,
    /// `Trim`: leave out the recording's leading and trailing silence (`trim-silence`, the
    /// default) or not (`do-not-trim`).
    pub recording_trim_silence: bool,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: HttpMethod,
    /// Subset of `in-progress completed absent`; empty means `completed` only.
    pub recording_status_callback_events: Vec<String>,
    /// DTMF to send once answered: at most 32 of `0-9 A-D # * w W` (`w` = 0.5 s pause,
    /// `W` = 1 s).
    pub send_digits: Option<String>,
    /// Maximum call length in seconds once answered (1–86400); `None`: Twilio's default of
    /// 4 hours applies.
    pub time_limit_s: Option<u32>,
    /// Digest credentials for a `sip:` target.
    pub sip_auth_username: Option<String>,
    pub sip_auth_password: Option<String>,
    /// Display identity for a SIP target (Twilio's `CallerId`).
    pub caller_id: Option<String>,
}

impl CreateCall {
    /// The dialing options another node needs to place this call (`command` `Originate`):
    /// everything but the parties and the application, which `call.initiated` holds, and the
    /// SIP digest credentials, which never go into the log.
    pub fn originate_options(&self) -> OriginateOptions {
        OriginateOptions {
            timeout_s: self.timeout_s,
            record: self.record,
            recording_channels: self.recording_channels,
            recording_trim_silence: self.recording_trim_silence,
            recording_status_callback: self.recording_status_callback.clone(),
            recording_status_callback_method: self.recording_status_callback_method,
            recording_status_callback_events: self.recording_status_callback_events.clone(),
            send_digits: self.send_digits.clone(),
            time_limit_s: self.time_limit_s,
            caller_id: self.caller_id.clone(),
        }
    }

    /// The request back from a call's `call.initiated` and its `Originate` options (the
    /// inverse of [`CreateCall::application`] and [`CreateCall::originate_options`]).
    pub fn from_log(
        to: &str,
        from: &str,
        application: &CallApplication,
        options: &OriginateOptions,
    ) -> CreateCall {
        CreateCall {
            to: to.to_owned(),
            from: from.to_owned(),
            url: application.url.clone(),
            method: application.method,
            twiml: application.twiml.clone(),
            fallback_url: application.fallback_url.clone(),
            fallback_method: application.fallback_method,
            status_callback: application.status_callback.clone(),
            status_callback_method: application.status_callback_method,
            status_callback_events: application.status_callback_events.clone(),
            timeout_s: options.timeout_s,
            record: options.record,
            recording_channels: options.recording_channels,
            recording_trim_silence: options.recording_trim_silence,
            recording_status_callback: options.recording_status_callback.clone(),
            recording_status_callback_method: options.recording_status_callback_method,
            recording_status_callback_events: options.recording_status_callback_events.clone(),
            send_digits: options.send_digits.clone(),
            time_limit_s: options.time_limit_s,
            sip_auth_username: None,
            sip_auth_password: None,
            caller_id: options.caller_id.clone(),
        }
    }

    /// The `application` of the call's `call.initiated` event: where its TwiML comes from
    /// and where its status callbacks go.
    pub fn application(&self) -> CallApplication {
        CallApplication {
            url: self.url.clone(),
            method: self.method,
            twiml: self.twiml.clone(),
            fallback_url: self.fallback_url.clone(),
            fallback_method: self.fallback_method,
            status_callback: self.status_callback.clone(),
            status_callback_method: self.status_callback_method,
            status_callback_events: self.status_callback_events.clone(),
        }
    }
}

/// What an update does to the running call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAction {
    /// `Url` (+`Method`, `FallbackUrl`, `FallbackMethod`): stop the current verb and continue
    /// with the TwiML fetched from `url`.
    Redirect {
        url: String,
        method: HttpMethod,
        fallback_url: Option<String>,
        fallback_method: HttpMethod,
    },
    /// `Twiml`: stop the current verb and continue with this document.
    Twiml(String),
    /// `Status=completed`: hang up, whatever the call's state.
    Hangup,
    /// `Status=canceled`: end a call that is still queued or ringing.
    Cancel,
}

/// A validated live-call update (`POST …/Calls/{Sid}.json`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateCall {
    /// `None` when the update only changes callbacks or the time limit. When several were
    /// sent, `Status` wins over `Url`, which wins over `Twiml`.
    pub action: Option<CallAction>,
    /// New status-callback URL for the rest of the call (`None`: unchanged).
    pub status_callback: Option<String>,
    /// New status-callback method (`None`: unchanged).
    pub status_callback_method: Option<HttpMethod>,
    /// New maximum length of the call in seconds, counted from answer (`None`: unchanged).
    pub time_limit_s: Option<u32>,
}

impl UpdateCall {
    /// Whether the update asks for nothing at all (the API then just answers the call).
    pub fn is_empty(&self) -> bool {
        self == &UpdateCall::default()
    }
}

/// Why a controller refused a command. The API maps these to Twilio error bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such call for this account (404, code 20404).
    #[error("no such call")]
    NotFound,
    /// The call has ended, or is in a state the action does not apply to (400, code 21220).
    #[error("the call is not in a valid state for this command")]
    InvalidState,
    /// A parameter the API could not check itself, e.g. a From the account may not use
    /// (400 with `code`; `message` is shown to the client).
    #[error("invalid parameter ({code}): {message}")]
    InvalidParameter { code: u32, message: String },
    /// The command could not be carried out now: the owner node is unreachable, no trunk is
    /// configured, … (503, code 20503; the reason is shown to the client).
    #[error("call control unavailable: {0}")]
    Unavailable(String),
}

/// What a REST request does to a conference participant (through its call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantAction {
    /// `POST …/Participants/{CallSid}.json` with `Muted` and/or `Hold` (`None`: unchanged).
    Update {
        muted: Option<bool>,
        hold: Option<bool>,
    },
    /// `DELETE …/Participants/{CallSid}.json`: out of the conference; the call goes on after
    /// its `<Dial>`.
    Kick,
    /// `POST …/Conferences/{Sid}.json` with `Status=completed`, sent through one of the
    /// participants: the conference ends for everyone.
    EndConference,
}

/// Places and steers calls. Implemented by the `dialtone` binary; given to the API with
/// [`crate::ApiState::with_call_controller`].
#[async_trait]
pub trait CallController: Send + Sync + 'static {
    /// Starts an outbound call for `account` and returns its SID.
    ///
    /// Contract: return only once the call's stream (`CA…`, the returned SID) holds its
    /// `call.initiated` as the first event, durably: direction `outbound-api`, `from`/`to`
    /// as in `request`, `application` = [`CreateCall::application`], and the owner node.
    /// Dialing continues asynchronously (`queued` → `ringing` → …). The API answers 201 with
    /// the call as that event describes it (status `queued`).
    async fn create_call(
        &self,
        account: &AccountSid,
        request: CreateCall,
    ) -> Result<CallSid, ControlError>;

    /// Applies `update` to `call` of `account`.
    ///
    /// The API has already checked that the call exists for the account and, from the read
    /// model, that it has not ended and that `Cancel` targets a queued or ringing call; the
    /// controller has the last word (the read model may lag): `NotFound` for a call it does
    /// not know for this account, `InvalidState` for one that ended or does not admit the
    /// action. Events the update causes that are durable when this returns (e.g. the
    /// `call.completed` of a hang-up) show in the API's answer.
    async fn update_call(
        &self,
        account: &AccountSid,
        call: &CallSid,
        update: UpdateCall,
    ) -> Result<(), ControlError>;

    /// Applies `action` to `call`, a participant of one of `account`'s conferences:
    /// `InvalidState` when the call is not in a conference (any more).
    async fn update_participant(
        &self,
        account: &AccountSid,
        call: &CallSid,
        action: ParticipantAction,
    ) -> Result<(), ControlError> {
        let _ = (account, call, action);
        Err(ControlError::Unavailable(
            "conference control is not available".into(),
        ))
    }
}

//! Typed event payloads, one struct per event type, and the catalogue that maps type names
//! to them. `docs/events.md` documents every type listed in [`Payload::TYPES`]; a test keeps
//! the two in step.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::sid::{CallSid, PhoneNumberSid, RecordingSid};

mod node;
pub use node::{CallAdopted, NodeHeartbeat, NodeStopped, OriginateOptions};
mod sink;
pub use sink::{
    SinkCreated, SinkDeleted, SinkDelivered, SinkFailed, SinkUpdated, SubscribedType,
    SubscriptionCreated, SubscriptionDeleted, SubscriptionUpdated,
};

/// Twilio's call statuses (`status` of the Call resource, `CallStatus` of webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    /// Whether the call has ended in this status.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Canceled
        )
    }
}

/// Twilio's call directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Inbound,
    OutboundApi,
    OutboundDial,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::OutboundApi => "outbound-api",
            Direction::OutboundDial => "outbound-dial",
        }
    }
}

/// HTTP method of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }

    /// Parses Twilio's `GET`/`POST` (case-insensitive).
    pub fn parse(value: &str) -> Option<HttpMethod> {
        if value.eq_ignore_ascii_case("GET") {
            Some(HttpMethod::Get)
        } else if value.eq_ignore_ascii_case("POST") {
            Some(HttpMethod::Post)
        } else {
            None
        }
    }
}

/// Where a call's TwiML comes from and where its status callbacks go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CallApplication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub method: HttpMethod,
    /// Inline TwiML (REST `Twiml`), used instead of fetching `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twiml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<String>,
    #[serde(default)]
    pub fallback_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub status_callback_method: HttpMethod,
    /// Subset of `initiated ringing answered completed`; empty means `completed` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_callback_events: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// call family (stream `CA…`)

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInitiated {
    pub direction: Direction,
    pub from: String,
    pub to: String,
    /// Node that owns the call for its lifetime (SIP dialog, RTP ports, interpreter).
    pub owner_node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_sid: Option<PhoneNumberSid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_call_sid: Option<CallSid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<String>,
    #[serde(default)]
    pub application: CallApplication,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CallRinging {
    /// SIP code that signalled ringing (180/183) on outbound legs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CallAnswered {
    /// Negotiated codec (`PCMU`/`PCMA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
}

/// Why a webhook was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookPurpose {
    Voice,
    Fallback,
    Action,
    Redirect,
    StatusCallback,
    RecordingStatusCallback,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequested {
    /// Identifies the request within the call; `webhook.responded` refers to it.
    pub request_id: u32,
    pub purpose: WebhookPurpose,
    pub method: HttpMethod,
    pub url: String,
    /// The form parameters, in the order sent.
    pub params: Vec<(String, String)>,
    #[serde(default = "one")]
    pub attempt: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookResponded {
    pub request_id: u32,
    /// HTTP status; absent when no response arrived (connect error, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body (the TwiML document), truncated to 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Transport failure, when there was no response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwimlFailed {
    /// Twilio error code: 11200 (HTTP), 11205 (connect), 11210 (DNS), 12100 (parse),
    /// 12300 (content type), …
    pub code: u32,
    /// The concrete failure class: `dns`, `connect`, `tls`, `http-status`, `timeout`,
    /// `content-type`, `parse`, `loop`.
    pub class: String,
    pub url: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwimlWarning {
    /// Twilio warning code, e.g. 12200 (schema) for a verb Dialtone cannot execute.
    pub code: u32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerbStarted {
    /// Position of the verb in its document (0-based).
    pub index: u32,
    pub verb: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerbFinished {
    pub index: u32,
    pub verb: String,
    /// How the verb ended: `done`, `interrupted`, `hangup`, `input`, `no-input`, …
    pub outcome: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DtmfSource {
    Rfc4733,
    Inband,
    SipInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtmfReceived {
    pub digit: String,
    pub source: DtmfSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatherCompleted {
    pub digits: String,
    /// The finish key pressed, or empty.
    pub finished_on_key: String,
    /// `num-digits`, `finish-key`, `timeout`, `no-input`, `hangup`.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingStarted {
    pub recording_sid: RecordingSid,
    /// `RecordVerb`, `DialVerb`, `OutboundAPI`, `Conference`.
    pub source: String,
    pub channels: u8,
    /// Twilio's `RecordingUrl`:
    /// `{public base}/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}`. Written by
    /// the node that records, which knows its public base URL (projections do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `inbound`, `outbound` or `both` (Twilio's `RecordingTrack`), when it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// `recordingStatusCallback` / REST `RecordingStatusCallback` (absolute URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(default, skip_serializing_if = "is_post")]
    pub status_callback_method: HttpMethod,
    /// Subset of `in-progress completed absent`; empty means `completed` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_callback_events: Vec<String>,
}

impl RecordingStarted {
    /// A started recording without URL, track or status callback (fill those in with struct
    /// update syntax).
    pub fn new(recording_sid: RecordingSid, source: impl Into<String>, channels: u8) -> Self {
        RecordingStarted {
            recording_sid,
            source: source.into(),
            channels,
            url: None,
            track: None,
            status_callback: None,
            status_callback_method: HttpMethod::Post,
            status_callback_events: Vec::new(),
        }
    }
}

fn is_post(method: &HttpMethod) -> bool {
    *method == HttpMethod::Post
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingCompleted {
    pub recording_sid: RecordingSid,
    /// `completed` or `absent` (too short / silent).
    pub status: String,
    pub duration_ms: u64,
    /// Path of the WAV file, relative to the data dir.
    pub path: String,
    pub channels: u8,
    pub source: String,
    /// The key that ended the recording, or `hangup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingDeleted {
    pub recording_sid: RecordingSid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialStarted {
    pub child_call_sids: Vec<CallSid>,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialAnswered {
    pub child_call_sid: CallSid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialCompleted {
    /// `completed`, `answered`, `busy`, `no-answer`, `failed`, `canceled`.
    pub dial_call_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_call_sid: Option<CallSid>,
    pub duration_s: u64,
    pub bridged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRedirected {
    pub url: String,
    pub method: HttpMethod,
    /// `twiml` (the `<Redirect>` verb) or `api` (a REST update).
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRejected {
    /// `rejected` or `busy`.
    pub reason: String,
    pub sip_code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCompleted {
    pub status: CallStatus,
    /// Seconds from answer to end (0 when never answered).
    pub duration_s: u64,
    /// Exact answered time in milliseconds, the basis of billing.
    pub answered_ms: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub answered_at: Option<OffsetDateTime>,
    /// `caller`, `callee`, `dialtone`, `api`, `error`.
    pub hangup_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackDelivered {
    /// `initiated`, `ringing`, `answered`, `completed`, `recording`.
    pub event: String,
    pub url: String,
    pub sequence_number: u32,
    pub status: u16,
    pub attempts: u32,
    /// Sequence of the call event that caused this callback.
    pub for_sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackFailed {
    pub event: String,
    pub url: String,
    pub sequence_number: u32,
    pub attempts: u32,
    pub error: String,
    pub for_sequence: u64,
}

// ---------------------------------------------------------------------------------------
// media commands (in the call's stream)

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaSay {
    /// What is said, as plain text.
    pub text: String,
    pub voice: String,
    pub language: String,
    #[serde(default = "one")]
    pub loops: u32,
    /// The `<speak>` document the speech engine renders when the TwiML had SSML (breaks,
    /// say-as); absent for plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssml: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaPlay {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<String>,
    #[serde(default = "one")]
    pub loops: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaPause {
    pub length_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaGather {
    pub timeout_ms: u64,
    pub finish_on_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_digits: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub recording_sid: RecordingSid,
    pub max_length_ms: u64,
    pub silence_timeout_ms: u64,
    pub finish_on_key: String,
    pub play_beep: bool,
    pub trim: bool,
    /// `recordingStatusCallback`, resolved to an absolute URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(default, skip_serializing_if = "is_post")]
    pub status_callback_method: HttpMethod,
    /// Subset of `in-progress completed absent`; empty means `completed` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_callback_events: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaBridge {
    pub other_call_sid: CallSid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MediaHangup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MediaStop {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------
// number family (stream `PN…`)

/// The voice configuration of an incoming phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberConfig {
    pub phone_number: String,
    pub friendly_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_url: Option<String>,
    #[serde(default)]
    pub voice_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_fallback_url: Option<String>,
    #[serde(default)]
    pub voice_fallback_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub status_callback_method: HttpMethod,
    /// A TwiML Application (`AP…`) of the account: when set, its voice URLs and status
    /// callback are used instead of the number's own (Twilio's `VoiceApplicationSid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_application_sid: Option<String>,
    /// Where messages to the number go (Twilio's `SmsUrl`, …); absent in events of before
    /// numbers had them.
    #[serde(flatten, default)]
    pub sms: NumberSms,
}

/// The messaging configuration of an incoming phone number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberSms {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_url: Option<String>,
    #[serde(default)]
    pub sms_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_fallback_url: Option<String>,
    #[serde(default)]
    pub sms_fallback_method: HttpMethod,
    /// A TwiML Application (`AP…`) whose `SmsUrl` replaces the number's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_application_sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberProvisioned {
    #[serde(flatten)]
    pub config: NumberConfig,
    /// The monthly rental of an inventory number at its purchase (micro-units of the
    /// billing currency): charged now and each month until the number is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_price_micros: Option<i64>,
}

/// The whole new configuration (not a diff), so a reader needs only the latest event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberUpdated {
    #[serde(flatten)]
    pub config: NumberConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberReleased {
    pub phone_number: String,
}

/// The operator put a number its carriers assigned into the inventory that accounts buy
/// from (or changed what it says of one), on the number's inventory stream
/// ([`crate::sid::PhoneNumberSid::of_inventory`]). Written by the operator (no account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberStocked {
    /// E.164.
    pub phone_number: String,
    /// ISO 3166-1 alpha-2, uppercase.
    pub iso_country: String,
    /// `local`, `toll-free` or `mobile`.
    pub number_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    pub voice: bool,
    pub sms: bool,
    /// The monthly rental, in micro-units of the billing currency.
    pub monthly_price_micros: i64,
}

// ---------------------------------------------------------------------------------------
// account family (stream `AC…`)

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreated {
    pub friendly_name: String,
    /// The parent account of a subaccount: its credentials reach this one (never the
    /// reverse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_account_sid: Option<String>,
    /// Hex SHA-256 of the auth token. The token itself is never in the log.
    pub token_sha256: String,
    /// Public salt from which the token is derived with the node secret.
    pub token_salt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTokenRotated {
    pub token_sha256: String,
    pub token_salt: String,
}

/// REST `POST /Accounts/{AC}.json`: what changed (absent: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// `active`, `suspended` or `closed` (closed is final).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The operator recorded a payment or a credit for the account (`dialtone billing credit`,
/// `POST /v1/Accounts/{AC}/Credits`); a negative amount takes money back. Its balance is
/// the sum of these less its charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCredited {
    pub amount_micros: i64,
    /// ISO 4217, uppercase: the account's billing currency.
    pub currency: String,
    /// The operator's reference (a payment id, an invoice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// How the account pays: `prepaid` (calls need a positive balance and end when it runs
/// out) or `postpaid` (billed later; with a credit limit, calls need the balance above
/// minus it). Accounts without one are postpaid without a limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBillingPlanSet {
    pub plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_limit_micros: Option<i64>,
}

/// An API key of the account (`SK…`). Its secret was shown once, at creation; the log keeps
/// only its SHA-256 (a random 32-character secret: no salt needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub key_sid: String,
    pub friendly_name: String,
    pub secret_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyUpdated {
    pub key_sid: String,
    pub friendly_name: String,
}

/// The key no longer authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyDeleted {
    pub key_sid: String,
}

/// A TwiML Application's settings (the whole of them in every event).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationConfig {
    pub friendly_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_url: Option<String>,
    #[serde(default)]
    pub voice_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_fallback_url: Option<String>,
    #[serde(default)]
    pub voice_fallback_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub status_callback_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_url: Option<String>,
    #[serde(default)]
    pub sms_method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_fallback_url: Option<String>,
    #[serde(default)]
    pub sms_fallback_method: HttpMethod,
}

/// A TwiML Application (`AP…`) of the account, on the account's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationCreated {
    pub application_sid: String,
    #[serde(flatten)]
    pub config: ApplicationConfig,
}

/// The application's whole new configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationUpdated {
    pub application_sid: String,
    #[serde(flatten)]
    pub config: ApplicationConfig,
}

/// Numbers pointing at it fall back to their own URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationDeleted {
    pub application_sid: String,
}

// ---------------------------------------------------------------------------------------
// rate family (stream `RT…`)

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePrice {
    /// Usage category, e.g. `calls-inbound`.
    pub category: String,
    /// Price of one started minute in micro-units of `currency`.
    pub per_minute_micros: i64,
    /// Only legs whose destination (the dialed number; the called number for inbound legs)
    /// starts with this E.164 prefix (`+44`); the longest matching prefix wins, and an entry
    /// without one is the category's price for every other destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePublished {
    #[serde(with = "time::serde::rfc3339")]
    pub effective_from: OffsetDateTime,
    /// ISO 4217, uppercase.
    pub currency: String,
    pub prices: Vec<RatePrice>,
}

// ---------------------------------------------------------------------------------------
// conference family (stream `CF…`)

/// The room opened (its first participant arrived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceStarted {
    pub friendly_name: String,
    /// The node that holds the room (mixes its audio): participants whose calls live on
    /// other nodes join it through a SIP link to this node. Absent in events of before
    /// rooms spanned nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantJoined {
    pub call_sid: CallSid,
    #[serde(default)]
    pub muted: bool,
    #[serde(default = "default_true")]
    pub start_conference_on_enter: bool,
    #[serde(default)]
    pub end_conference_on_exit: bool,
    /// This join started the conference: audio is mixed between the participants from now
    /// on (Twilio's `conference-start`).
    #[serde(default)]
    pub conference_started: bool,
    /// The participant's `<Conference statusCallback>` (absolute URL); the first one in a
    /// room subscribes the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub status_callback_method: HttpMethod,
    /// `statusCallbackEvent` as written (`start end join leave …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_callback_events: Vec<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantLeft {
    pub call_sid: CallSid,
}

/// A participant was muted or unmuted, put on hold or taken off it (REST participant
/// update); the participant's state afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantUpdated {
    pub call_sid: CallSid,
    pub muted: bool,
    #[serde(default)]
    pub hold: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceEnded {
    /// `last-participant-left`, `participant-with-end-conference-on-exit-left`, …
    pub reason: String,
    /// The participant whose leaving ended it (Twilio's `CallSidEndingConference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_sid_ending_conference: Option<CallSid>,
}

// ---------------------------------------------------------------------------------------
// command family (stream `CM…`, one per command)

/// What a live-call command asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CallControlAction {
    /// REST `Status=completed`.
    Hangup,
    /// REST `Status=canceled`.
    Cancel,
    /// REST `Url` (+`Method`).
    Redirect { url: String, method: HttpMethod },
    /// REST `Twiml`.
    Twiml { twiml: String },
    /// REST participant update `Muted` / `Hold`: mute or unmute the call in its conference,
    /// put it on hold or take it off (absent: unchanged).
    ConferenceUpdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        muted: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<bool>,
    },
    /// REST participant delete: take the call out of its conference (its TwiML goes on after
    /// the `<Dial>`).
    ConferenceKick,
    /// REST conference update `Status=completed`: end the call's conference for everyone.
    ConferenceEnd,
    /// REST `POST …/Calls.json` on a node without the voice role: the owner (a voice node
    /// named in the call's `call.initiated`) dials the call.
    Originate(OriginateOptions),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallControlRequested {
    pub call_sid: CallSid,
    /// The node that owns the call and carries the command out.
    pub owner_node: String,
    pub action: CallControlAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCompleted {
    /// The node that carried it out.
    pub node: String,
    pub ok: bool,
    /// Why it was refused: `invalid-state`, or the TwiML error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------------------------------
// the catalogue

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode the data of a {event_type} event: {source}")]
pub struct DecodeError {
    pub event_type: String,
    #[source]
    pub source: serde_json::Error,
}

macro_rules! catalogue {
    ($($variant:ident($ty:ty) = $name:literal;)*) => {
        /// A typed event payload. Types this binary does not know decode to
        /// [`Payload::Unknown`], so older binaries can read logs written by newer ones.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Payload {
            $($variant($ty),)*
            Unknown { event_type: String, data: serde_json::Value },
        }

        impl Payload {
            /// Every event type this binary knows.
            pub const TYPES: &'static [&'static str] = &[$($name,)*];

            /// The CloudEvents `type`.
            pub fn event_type(&self) -> &str {
                match self {
                    $(Payload::$variant(_) => $name,)*
                    Payload::Unknown { event_type, .. } => event_type,
                }
            }

            /// The `data` member as compact JSON.
            pub fn to_raw(&self) -> Box<RawValue> {
                let raw = match self {
                    $(Payload::$variant(p) => serde_json::value::to_raw_value(p),)*
                    Payload::Unknown { data, .. } => serde_json::value::to_raw_value(data),
                };
                // Serializing these plain structs cannot fail: no maps with non-string keys.
                raw.unwrap_or_else(|_| RawValue::NULL.to_owned())
            }

            /// Decodes `data` of an event of type `event_type`.
            pub fn decode(event_type: &str, data: &RawValue) -> Result<Payload, DecodeError> {
                let wrap = |source| DecodeError { event_type: event_type.to_owned(), source };
                Ok(match event_type {
                    $($name => Payload::$variant(serde_json::from_str(data.get()).map_err(wrap)?),)*
                    other => Payload::Unknown {
                        event_type: other.to_owned(),
                        data: serde_json::from_str(data.get()).map_err(wrap)?,
                    },
                })
            }
        }

        $(
            impl From<$ty> for Payload {
                fn from(p: $ty) -> Payload {
                    Payload::$variant(p)
                }
            }
        )*
    };
}

catalogue! {
    CallInitiated(CallInitiated) = "dialtone.call.initiated";
    CallRinging(CallRinging) = "dialtone.call.ringing";
    CallAnswered(CallAnswered) = "dialtone.call.answered";
    WebhookRequested(WebhookRequested) = "dialtone.call.webhook.requested";
    WebhookResponded(WebhookResponded) = "dialtone.call.webhook.responded";
    TwimlFailed(TwimlFailed) = "dialtone.call.twiml.failed";
    TwimlWarning(TwimlWarning) = "dialtone.call.twiml.warning";
    VerbStarted(VerbStarted) = "dialtone.call.verb.started";
    VerbFinished(VerbFinished) = "dialtone.call.verb.finished";
    DtmfReceived(DtmfReceived) = "dialtone.call.dtmf.received";
    GatherCompleted(GatherCompleted) = "dialtone.call.gather.completed";
    RecordingStarted(RecordingStarted) = "dialtone.call.recording.started";
    RecordingCompleted(RecordingCompleted) = "dialtone.call.recording.completed";
    RecordingDeleted(RecordingDeleted) = "dialtone.call.recording.deleted";
    DialStarted(DialStarted) = "dialtone.call.dial.started";
    DialAnswered(DialAnswered) = "dialtone.call.dial.answered";
    DialCompleted(DialCompleted) = "dialtone.call.dial.completed";
    CallRedirected(CallRedirected) = "dialtone.call.redirected";
    CallRejected(CallRejected) = "dialtone.call.rejected";
    CallCompleted(CallCompleted) = "dialtone.call.completed";
    CallbackDelivered(CallbackDelivered) = "dialtone.call.callback.delivered";
    CallbackFailed(CallbackFailed) = "dialtone.call.callback.failed";
    MediaSay(MediaSay) = "dialtone.media.say";
    MediaPlay(MediaPlay) = "dialtone.media.play";
    MediaPause(MediaPause) = "dialtone.media.pause";
    MediaGather(MediaGather) = "dialtone.media.gather";
    MediaRecord(MediaRecord) = "dialtone.media.record";
    MediaBridge(MediaBridge) = "dialtone.media.bridge";
    MediaHangup(MediaHangup) = "dialtone.media.hangup";
    MediaStop(MediaStop) = "dialtone.media.stop";
    NumberProvisioned(NumberProvisioned) = "dialtone.number.provisioned";
    NumberUpdated(NumberUpdated) = "dialtone.number.updated";
    NumberReleased(NumberReleased) = "dialtone.number.released";
    NumberStocked(NumberStocked) = "dialtone.number.stocked";
    AccountCreated(AccountCreated) = "dialtone.account.created";
    AccountTokenRotated(AccountTokenRotated) = "dialtone.account.token.rotated";
    AccountUpdated(AccountUpdated) = "dialtone.account.updated";
    AccountCredited(AccountCredited) = "dialtone.account.credited";
    AccountBillingPlanSet(AccountBillingPlanSet) = "dialtone.account.billing_plan.set";
    ApiKeyCreated(ApiKeyCreated) = "dialtone.account.key.created";
    ApiKeyUpdated(ApiKeyUpdated) = "dialtone.account.key.updated";
    ApiKeyDeleted(ApiKeyDeleted) = "dialtone.account.key.deleted";
    ApplicationCreated(ApplicationCreated) = "dialtone.account.application.created";
    ApplicationUpdated(ApplicationUpdated) = "dialtone.account.application.updated";
    ApplicationDeleted(ApplicationDeleted) = "dialtone.account.application.deleted";
    RatePublished(RatePublished) = "dialtone.rate.published";
    ConferenceStarted(ConferenceStarted) = "dialtone.conference.started";
    ParticipantJoined(ParticipantJoined) = "dialtone.conference.participant.joined";
    ParticipantLeft(ParticipantLeft) = "dialtone.conference.participant.left";
    ParticipantUpdated(ParticipantUpdated) = "dialtone.conference.participant.updated";
    ConferenceEnded(ConferenceEnded) = "dialtone.conference.ended";
    CallControlRequested(CallControlRequested) = "dialtone.command.call.update";
    CommandCompleted(CommandCompleted) = "dialtone.command.completed";
    SinkCreated(SinkCreated) = "dialtone.sink.created";
    SinkUpdated(SinkUpdated) = "dialtone.sink.updated";
    SinkDeleted(SinkDeleted) = "dialtone.sink.deleted";
    SubscriptionCreated(SubscriptionCreated) = "dialtone.subscription.created";
    SubscriptionUpdated(SubscriptionUpdated) = "dialtone.subscription.updated";
    SubscriptionDeleted(SubscriptionDeleted) = "dialtone.subscription.deleted";
    SinkDelivered(SinkDelivered) = "dialtone.sink.delivered";
    SinkFailed(SinkFailed) = "dialtone.sink.failed";
    CallAdopted(CallAdopted) = "dialtone.call.adopted";
    NodeHeartbeat(NodeHeartbeat) = "dialtone.node.heartbeat";
    NodeStopped(NodeStopped) = "dialtone.node.stopped";
}

#[cfg(test)]
mod tests;

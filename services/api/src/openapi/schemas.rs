//! The shapes of the API's JSON, as OpenAPI schemas. Each mirrors one JSON builder of the
//! handlers (`call_json`, `number_json`, …); the contract test (`tests/openapi.rs`) checks
//! every response the API gives against these, so the two cannot drift apart. Fields, names
//! and types follow Twilio's own description of the 2010-04-01 and Events v1 APIs.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// Twilio's error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Twilio error code, e.g. 20404 (not found), 20003 (authentication), 20001 (invalid
    /// parameter), 21205 (invalid URL), 21422 (number not available).
    pub code: u32,
    pub message: String,
    /// `https://www.twilio.com/docs/errors/<code>`.
    pub more_info: String,
    /// The HTTP status.
    pub status: u16,
}

/// The paging members of a 2010-04-01 list.
#[derive(Serialize, ToSchema)]
pub struct PageMembers {
    pub first_page_uri: String,
    pub next_page_uri: Option<String>,
    pub previous_page_uri: Option<String>,
    pub page: u64,
    pub page_size: u64,
    pub start: u64,
    pub end: u64,
    pub uri: String,
}

/// The paging members of an Events v1 list.
#[derive(Serialize, ToSchema)]
pub struct Meta {
    pub page: u64,
    pub page_size: u64,
    pub first_page_url: String,
    pub previous_page_url: Option<String>,
    pub url: String,
    pub next_page_url: Option<String>,
    pub key: String,
}

/// A call leg (`CA…`).
#[derive(Serialize, ToSchema)]
pub struct Call {
    pub account_sid: String,
    pub annotation: Option<String>,
    pub answered_by: Option<String>,
    pub api_version: String,
    pub caller_name: Option<String>,
    /// RFC 2822.
    pub date_created: String,
    pub date_updated: String,
    /// `inbound`, `outbound-api`, `outbound-dial`.
    pub direction: String,
    /// Whole seconds, once ended.
    pub duration: Option<String>,
    pub end_time: Option<String>,
    pub forwarded_from: Option<String>,
    pub from: String,
    pub from_formatted: String,
    pub group_sid: Option<String>,
    pub parent_call_sid: Option<String>,
    pub phone_number_sid: Option<String>,
    /// Negative, 5 decimals (`-0.00850`), once billed.
    pub price: Option<String>,
    pub price_unit: String,
    pub queue_time: String,
    pub sid: String,
    pub start_time: Option<String>,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`, `no-answer`,
    /// `canceled`.
    pub status: String,
    pub subresource_uris: BTreeMap<String, String>,
    pub to: String,
    pub to_formatted: String,
    pub trunk_sid: Option<String>,
    pub uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct CallList {
    pub calls: Vec<Call>,
    #[serde(flatten)]
    pub page: PageMembers,
}

#[derive(Serialize, ToSchema)]
pub struct Capabilities {
    pub fax: bool,
    pub mms: bool,
    pub sms: bool,
    pub voice: bool,
}

/// A provisioned number (`PN…`).
#[derive(Serialize, ToSchema)]
pub struct IncomingPhoneNumber {
    pub account_sid: String,
    pub address_requirements: String,
    pub address_sid: Option<String>,
    pub api_version: String,
    pub beta: bool,
    pub bundle_sid: Option<String>,
    pub capabilities: Capabilities,
    pub date_created: String,
    pub date_updated: String,
    pub emergency_address_sid: Option<String>,
    pub emergency_address_status: String,
    pub emergency_status: String,
    pub friendly_name: String,
    pub identity_sid: Option<String>,
    pub origin: String,
    /// E.164.
    pub phone_number: String,
    pub sid: String,
    pub sms_application_sid: String,
    pub sms_fallback_method: String,
    pub sms_fallback_url: String,
    pub sms_method: String,
    pub sms_url: String,
    pub status: String,
    pub status_callback: String,
    pub status_callback_method: String,
    pub subresource_uris: BTreeMap<String, String>,
    pub trunk_sid: Option<String>,
    pub uri: String,
    pub voice_application_sid: Option<String>,
    pub voice_caller_id_lookup: bool,
    pub voice_fallback_method: String,
    pub voice_fallback_url: String,
    pub voice_method: String,
    pub voice_receive_mode: String,
    pub voice_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct IncomingPhoneNumberList {
    pub incoming_phone_numbers: Vec<IncomingPhoneNumber>,
    #[serde(flatten)]
    pub page: PageMembers,
}

/// Capabilities of an available number (Twilio spells SMS and MMS in capitals here).
#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct AvailableCapabilities {
    pub voice: bool,
    pub SMS: bool,
    pub MMS: bool,
    pub fax: bool,
}

/// A number of the inventory that no account holds.
#[derive(Serialize, ToSchema)]
pub struct AvailablePhoneNumber {
    pub address_requirements: String,
    pub beta: bool,
    pub capabilities: AvailableCapabilities,
    pub friendly_name: String,
    pub iso_country: String,
    pub lata: Option<String>,
    pub latitude: Option<String>,
    pub locality: Option<String>,
    pub longitude: Option<String>,
    pub phone_number: String,
    pub postal_code: Option<String>,
    pub rate_center: Option<String>,
    pub region: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AvailablePhoneNumberList {
    pub available_phone_numbers: Vec<AvailablePhoneNumber>,
    #[serde(flatten)]
    pub page: PageMembers,
}

/// Twilio's Balance: the operator's credits less the account's charges.
#[derive(Serialize, ToSchema)]
pub struct Balance {
    pub account_sid: String,
    /// A decimal string (`"9.99150"`), negative when the account owes.
    pub balance: String,
    pub currency: String,
}

/// `POST /v1/Accounts/{AC}/Credits`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CreditForm {
    /// An exact decimal in the account's currency (at most its minor digits); negative
    /// takes money back.
    pub amount: String,
    /// The operator's reference (a payment id).
    pub reference: Option<String>,
}

/// `POST /v1/Accounts/{AC}/BillingPlan`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BillingPlanForm {
    /// `prepaid` or `postpaid`.
    pub plan: String,
    /// Postpaid: how far below zero the balance may go (an exact decimal).
    pub credit_limit: Option<String>,
}

/// A recording (`RE…`) of a call or a conference.
#[derive(Serialize, ToSchema)]
pub struct Recording {
    pub account_sid: String,
    pub api_version: String,
    pub call_sid: Option<String>,
    pub channels: u8,
    pub conference_sid: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    /// Whole seconds; `-1` while in progress.
    pub duration: String,
    pub encryption_details: Option<String>,
    pub error_code: Option<u32>,
    /// Where the audio is (`….wav`).
    pub media_url: String,
    pub price: Option<String>,
    pub price_unit: String,
    pub sid: String,
    /// `RecordVerb`, `DialVerb`, `OutboundAPI`, `Conference`.
    pub source: String,
    pub start_time: String,
    /// `in-progress`, `completed`, `absent`, `deleted`.
    pub status: String,
    pub subresource_uris: BTreeMap<String, String>,
    pub track: String,
    pub uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecordingList {
    pub recordings: Vec<Recording>,
    #[serde(flatten)]
    pub page: PageMembers,
}

/// A conference (`CF…`).
#[derive(Serialize, ToSchema)]
pub struct Conference {
    pub account_sid: String,
    pub api_version: String,
    pub call_sid_ending_conference: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub friendly_name: String,
    pub reason_conference_ended: Option<String>,
    pub region: String,
    pub sid: String,
    /// `init`, `in-progress`, `completed`.
    pub status: String,
    pub subresource_uris: BTreeMap<String, String>,
    pub uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConferenceList {
    pub conferences: Vec<Conference>,
    #[serde(flatten)]
    pub page: PageMembers,
}

/// A participant connected to a conference now.
#[derive(Serialize, ToSchema)]
pub struct Participant {
    pub account_sid: String,
    pub api_version: String,
    pub call_sid: String,
    pub call_sid_to_coach: Option<String>,
    pub coaching: bool,
    pub conference_sid: String,
    pub date_created: String,
    pub date_updated: String,
    pub end_conference_on_exit: bool,
    pub hold: bool,
    pub label: Option<String>,
    pub muted: bool,
    pub queue_time: Option<String>,
    pub start_conference_on_enter: bool,
    pub status: String,
    pub uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct ParticipantList {
    pub participants: Vec<Participant>,
    #[serde(flatten)]
    pub page: PageMembers,
}

/// Usage of one category over one period.
#[derive(Serialize, ToSchema)]
pub struct UsageRecord {
    pub account_sid: String,
    pub api_version: String,
    pub as_of: String,
    /// `calls`, `calls-inbound`, `calls-outbound`.
    pub category: String,
    pub count: String,
    pub count_unit: String,
    pub description: String,
    /// `YYYY-MM-DD`.
    pub end_date: String,
    /// Positive, 5 decimals.
    pub price: String,
    pub price_unit: String,
    pub start_date: String,
    pub subresource_uris: BTreeMap<String, String>,
    pub uri: String,
    pub usage: String,
    pub usage_unit: String,
}

#[derive(Serialize, ToSchema)]
pub struct UsageRecordList {
    pub usage_records: Vec<UsageRecord>,
    #[serde(flatten)]
    pub page: PageMembers,
}

/// An event: CloudEvents 1.0, structured JSON, exactly as stored (docs/events.md).
#[derive(Serialize, ToSchema)]
pub struct CloudEvent {
    pub specversion: String,
    /// UUIDv7.
    pub id: String,
    /// `dialtone.<family>.<event>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `dialtone://<node>`.
    pub source: String,
    /// The stream: `CA…`, `PN…`, `AC…`, `RT…`, `CF…`, `CM…`, `DG…`, `DF…`, `DD…`.
    pub subject: String,
    /// RFC 3339, microseconds, UTC.
    pub time: String,
    pub datacontenttype: String,
    pub accountsid: String,
    /// 1-based, gap-free within the stream.
    pub sequence: u64,
    /// SHA-256 (hex) of the previous event of the stream.
    pub prevhash: String,
    /// The payload of the type (docs/events.md).
    pub data: serde_json::Value,
}

/// Delivery counters of a sink (a Dialtone extension of Twilio's Sink).
#[derive(Serialize, ToSchema)]
pub struct SinkDelivery {
    pub delivered_events: u64,
    pub failed_events: u64,
    pub last_delivery_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SinkConfiguration {
    pub destination: String,
    pub method: String,
    pub batch_events: bool,
}

/// An event sink (`DG…`).
#[derive(Serialize, ToSchema)]
pub struct Sink {
    pub account_sid: String,
    /// ISO 8601.
    pub date_created: String,
    pub date_updated: String,
    pub description: String,
    pub sid: String,
    pub sink_configuration: SinkConfiguration,
    /// `webhook`.
    pub sink_type: String,
    /// `active`.
    pub status: String,
    pub url: String,
    pub links: BTreeMap<String, String>,
    pub delivery: SinkDelivery,
}

#[derive(Serialize, ToSchema)]
pub struct SinkList {
    pub sinks: Vec<Sink>,
    pub meta: Meta,
}

/// A subscription (`DF…`) of event types to a sink.
#[derive(Serialize, ToSchema)]
pub struct Subscription {
    pub account_sid: String,
    pub date_created: String,
    pub date_updated: String,
    pub description: String,
    pub sid: String,
    pub sink_sid: String,
    pub url: String,
    pub links: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<Subscription>,
    pub meta: Meta,
}

#[derive(Serialize, ToSchema)]
pub struct SubscribedEvent {
    pub account_sid: String,
    /// Exact, or a family such as `dialtone.call.*`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub subscription_sid: String,
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubscribedEventList {
    pub types: Vec<SubscribedEvent>,
    pub meta: Meta,
}

#[derive(Serialize, ToSchema)]
pub struct RatePrice {
    pub category: String,
    /// An E.164 prefix; none: every other destination.
    pub prefix: Option<String>,
    /// Decimal, 6 places.
    pub per_minute: String,
    pub per_minute_micros: i64,
}

/// A published rate table (`RT…`).
#[derive(Serialize, ToSchema)]
pub struct RateTable {
    pub sid: String,
    pub version: u64,
    /// None for an operator-wide table.
    pub account_sid: Option<String>,
    /// `account` or `operator`.
    pub scope: String,
    pub effective_from: String,
    pub currency: String,
    pub prices: Vec<RatePrice>,
    pub date_created: String,
}

#[derive(Serialize, ToSchema)]
pub struct RateTableList {
    pub rate_tables: Vec<RateTable>,
}

// ---------------------------------------------------------------------------------------
// request bodies (application/x-www-form-urlencoded, Twilio's parameter names)

/// `POST …/IncomingPhoneNumbers.json`, and the fields an update may change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct NumberForm {
    /// E.164 (create only): a number of the inventory (or any number, unless the operator
    /// sells only the inventory). Create needs it or `AreaCode`.
    pub phone_number: Option<String>,
    /// Create only: the first available inventory number of this NANP area code (21452
    /// when there is none).
    pub area_code: Option<String>,
    pub friendly_name: Option<String>,
    pub voice_url: Option<String>,
    /// `GET` or `POST`.
    pub voice_method: Option<String>,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: Option<String>,
    /// An `AP…` of the account whose voice URLs replace the number's.
    pub voice_application_sid: Option<String>,
    /// Where messages to the number go (stored; messaging itself is still to come).
    pub sms_url: Option<String>,
    pub sms_method: Option<String>,
    pub sms_fallback_url: Option<String>,
    pub sms_fallback_method: Option<String>,
    /// An `AP…` of the account whose `SmsUrl` replaces the number's.
    pub sms_application_sid: Option<String>,
}

/// `POST …/Calls.json`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CreateCallForm {
    /// E.164, `sip:` URI.
    pub to: String,
    pub from: String,
    /// One of `Url`, `Twiml`, `ApplicationSid` is required.
    pub url: Option<String>,
    pub method: Option<String>,
    pub twiml: Option<String>,
    pub application_sid: Option<String>,
    pub fallback_url: Option<String>,
    pub fallback_method: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: Option<String>,
    /// Repeated: `initiated`, `ringing`, `answered`, `completed`.
    pub status_callback_event: Option<String>,
    pub send_digits: Option<String>,
    /// Seconds to ring.
    pub timeout: Option<u32>,
    /// Seconds the call may last.
    pub time_limit: Option<u32>,
    pub record: Option<bool>,
    pub recording_channels: Option<String>,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: Option<String>,
    pub recording_status_callback_event: Option<String>,
    pub trim: Option<String>,
    pub sip_auth_username: Option<String>,
    pub sip_auth_password: Option<String>,
    pub caller_id: Option<String>,
    pub machine_detection: Option<String>,
    pub async_amd: Option<bool>,
}

/// `POST …/Calls/{Sid}.json`: live control.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateCallForm {
    pub url: Option<String>,
    pub method: Option<String>,
    pub twiml: Option<String>,
    /// `completed` or `canceled`.
    pub status: Option<String>,
    pub fallback_url: Option<String>,
    pub fallback_method: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: Option<String>,
    pub time_limit: Option<u32>,
}

/// `POST …/Conferences/{Sid}.json`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConferenceForm {
    /// `completed` ends the conference for everyone.
    pub status: Option<String>,
}

/// `POST …/Participants/{CallSid}.json`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateParticipantForm {
    pub muted: Option<bool>,
    pub hold: Option<bool>,
}

/// `POST /v1/Accounts/{AC}/Sinks`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SinkForm {
    pub description: String,
    /// `webhook`.
    pub sink_type: Option<String>,
    /// JSON: `{"destination":"https://…","method":"POST","batch_events":true}`.
    pub sink_configuration: Option<String>,
}

/// `POST /v1/Accounts/{AC}/Subscriptions[/{Sid}]`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriptionForm {
    pub description: Option<String>,
    pub sink_sid: Option<String>,
    /// Repeated: `{"type":"dialtone.call.*","schema_version":1}` or a bare type.
    pub types: Option<String>,
}

/// `POST /v1/Accounts/{AC}/RateTables`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RateTableForm {
    /// RFC 3339; default now.
    pub effective_from: Option<String>,
    /// ISO 4217; default the configured currency.
    pub currency: Option<String>,
    /// Repeated: `category:price` or `category:+prefix:price`, exact decimals.
    pub price: String,
}

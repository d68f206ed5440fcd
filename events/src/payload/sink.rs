//! The sink family: event sinks (`DG…` streams), subscriptions (`DF…`) and each sink's
//! delivery record (`DD…`, the sink's hex digits). Twilio Event Streams' model: a sink is a
//! destination, a subscription picks the event types sent to it.
//!
//! A sink's configuration is written by the API and its deliveries by the one node that
//! delivers it, so the two live on separate streams: each stream keeps a single writer.

use serde::{Deserialize, Serialize};

use super::HttpMethod;
use crate::log::Cursor;
use crate::sid::SinkSid;

/// A sink was created: where its events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkCreated {
    pub description: String,
    /// `webhook` (the only type Dialtone delivers).
    pub sink_type: String,
    /// The http(s) URL batches are sent to.
    pub destination: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// Several events per request (a JSON array either way).
    #[serde(default = "yes")]
    pub batch_events: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkUpdated {
    pub description: String,
}

/// The sink is gone; its subscriptions with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SinkDeleted {}

/// One subscribed event type: exact (`dialtone.call.completed`) or a family prefix
/// (`dialtone.call.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribedType {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub schema_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionCreated {
    pub sink_sid: SinkSid,
    pub description: String,
    pub types: Vec<SubscribedType>,
    /// The log's head when the subscription was made: a sink that has delivered nothing yet
    /// starts after it.
    #[serde(default)]
    pub start: Cursor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubscriptionUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<SubscribedType>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubscriptionDeleted {}

/// A batch reached the sink (a 2xx answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDelivered {
    pub sink_sid: SinkSid,
    /// Events in the batch.
    pub events: u32,
    pub first_event_id: String,
    pub last_event_id: String,
    /// Where delivery resumes: the log cursor just past the batch.
    pub cursor: Cursor,
    pub status: u16,
    pub attempts: u32,
    pub latency_ms: u64,
}

/// A batch was given up after its last attempt; delivery goes on after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkFailed {
    pub sink_sid: SinkSid,
    pub events: u32,
    pub first_event_id: String,
    pub last_event_id: String,
    pub cursor: Cursor,
    pub attempts: u32,
    /// The last attempt's failure (`HTTP 503`, `timeout`, …).
    pub error: String,
}

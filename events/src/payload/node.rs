//! The node family (`ND…` streams, one per node id): liveness. Every node appends a heartbeat
//! every few seconds while it runs and `stopped` when it shuts down cleanly; a node whose
//! lease (the time since its last heartbeat) expired is lost, and a surviving node takes over
//! its live calls to end them ([`CallAdopted`], on the call's stream).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A node is alive (its process `instance`), and promises another heartbeat within
/// `lease_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHeartbeat {
    pub node: String,
    /// A UUID per process start: two processes with one node id are told apart.
    pub instance: String,
    pub lease_ms: u64,
    /// The role groups it runs (`voice`, `api`, …): an API node places outbound calls on a
    /// live node with `voice`. Absent in heartbeats of before roles existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Where a voice node takes SIP (`host:port`): other nodes link their callers to the
    /// conference rooms it holds there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<String>,
}

/// The node shut down cleanly: nothing of it needs recovering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStopped {
    pub node: String,
    pub instance: String,
}

/// On a call's stream: `by_node` took the call over from its lost owner (to end it, deliver
/// its status callbacks and bill it up to the owner's last heartbeat). From here on `by_node`
/// is the stream's writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAdopted {
    pub owner_node: String,
    pub by_node: String,
    /// `node-failure` (another node ended it) or `node-restart` (the owner, restarted).
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat: OffsetDateTime,
}

/// What a command `Originate` tells a voice node about an outbound call another node (an API
/// node without the voice role) created: the REST request's dialing options. The call's
/// `call.initiated` holds its parties and application. No SIP digest password: credentials
/// never go into the log (such calls are placed on a voice node's own API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginateOptions {
    pub timeout_s: u32,
    #[serde(default)]
    pub record: bool,
    pub recording_channels: u8,
    pub recording_trim_silence: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: crate::payload::HttpMethod,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recording_status_callback_events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_digits: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
}

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

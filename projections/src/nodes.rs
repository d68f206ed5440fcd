//! Nodes: each node's last heartbeat, from the `node` family; which nodes are lost (their
//! lease expired without a clean stop). With [`crate::calls::live_calls_of`], what a
//! surviving node needs to end a lost node's calls.

use dialtone_events::{Payload, RecordedEvent};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::{Duration, OffsetDateTime};

use crate::projection::{decode, load_time, sql, store_time, Projection, ProjectionError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (
    node_id        TEXT PRIMARY KEY,
    instance       TEXT    NOT NULL,
    last_heartbeat TEXT    NOT NULL,
    lease_ms       INTEGER NOT NULL,
    stopped        INTEGER NOT NULL,
    roles          TEXT    NOT NULL DEFAULT '',
    sip            TEXT
);
";

/// A node as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node_id: String,
    pub instance: String,
    pub last_heartbeat: OffsetDateTime,
    pub lease_ms: u64,
    /// It shut down cleanly after its last heartbeat.
    pub stopped: bool,
    /// Its role groups, as its last heartbeat named them.
    pub roles: Vec<String>,
    /// Where it takes SIP (`host:port`), for a voice node.
    pub sip: Option<String>,
}

impl NodeRow {
    /// Whether the node promised a heartbeat by `now` and has not sent it.
    pub fn lost_at(&self, now: OffsetDateTime) -> bool {
        !self.stopped && self.last_heartbeat + Duration::milliseconds(self.lease_ms as i64) < now
    }

    /// Running (its lease holds, it has not stopped) with role group `role`.
    pub fn serves(&self, role: &str, now: OffsetDateTime) -> bool {
        !self.stopped && !self.lost_at(now) && self.roles.iter().any(|r| r == role)
    }
}

type RawNode = (String, String, String, u64, bool, String, Option<String>);

const COLUMNS: &str = "node_id, instance, last_heartbeat, lease_ms, stopped, roles, sip";

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawNode> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_row(raw: RawNode) -> Result<NodeRow, ProjectionError> {
    let (node_id, instance, last, lease_ms, stopped, roles, sip) = raw;
    Ok(NodeRow {
        node_id,
        instance,
        last_heartbeat: load_time("nodes", &last)?,
        lease_ms,
        stopped,
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        sip,
    })
}

pub fn get_node(conn: &Connection, node_id: &str) -> Result<Option<NodeRow>, ProjectionError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM nodes WHERE node_id = ?1"))
        .and_then(|mut s| s.query_row([node_id], read).optional())
        .map_err(sql("reading a node"))?
        .map(to_row)
        .transpose()
}

/// Every node known, by id.
pub fn list_nodes(conn: &Connection) -> Result<Vec<NodeRow>, ProjectionError> {
    let raw = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM nodes ORDER BY node_id"))
        .and_then(|mut s| s.query_map([], read)?.collect::<Result<Vec<_>, _>>())
        .map_err(sql("listing nodes"))?;
    raw.into_iter().map(to_row).collect()
}

/// Projects heartbeats and clean stops into `nodes`.
#[derive(Default)]
pub struct NodesProjection;

impl NodesProjection {
    pub fn new() -> NodesProjection {
        NodesProjection
    }
}

impl Projection for NodesProjection {
    fn name(&self) -> &'static str {
        "nodes"
    }

    fn version(&self) -> u32 {
        // 3: voice nodes' SIP addresses.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &["nodes"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating nodes"))
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type.starts_with("dialtone.node.")
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let time = store_time(recorded.event.time);
        match decode(recorded) {
            Some(Payload::NodeHeartbeat(beat)) => {
                tx.prepare_cached(
                    "INSERT INTO nodes (node_id, instance, last_heartbeat, lease_ms, stopped, roles,
                        sip)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
                     ON CONFLICT (node_id) DO UPDATE SET instance = excluded.instance,
                        last_heartbeat = excluded.last_heartbeat, lease_ms = excluded.lease_ms,
                        stopped = 0, roles = excluded.roles, sip = excluded.sip
                     WHERE excluded.last_heartbeat >= nodes.last_heartbeat",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        beat.node,
                        beat.instance,
                        time,
                        beat.lease_ms,
                        beat.roles.join(","),
                        beat.sip
                    ])
                })
                .map_err(sql("recording a heartbeat"))?;
            }
            Some(Payload::NodeStopped(stopped)) => {
                tx.prepare_cached(
                    "UPDATE nodes SET stopped = 1 WHERE node_id = ?1 AND instance = ?2",
                )
                .and_then(|mut s| s.execute(params![stopped.node, stopped.instance]))
                .map_err(sql("recording a clean stop"))?;
            }
            _ => {}
        }
        Ok(())
    }
}

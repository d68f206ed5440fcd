//! Node liveness: every node heartbeats on its `ND…` stream; a node whose lease expired
//! without a clean stop is lost, and a surviving node ends the lost node's live calls in the
//! log (`call.adopted` then `call.completed` with `hangup_by: node-failure`, billed up to the
//! node's last sign of life), so call state, status callbacks and billing never stay stuck.
//! A node that restarts with the same id first ends its own calls of before the crash the
//! same way (`node-restart`), and a node refuses to start under the id of one still alive.
//!
//! The guarantee, and its limit: every call of a lost node reaches a final state within the
//! lease plus one check interval after its last heartbeat (as long as one node runs); the
//! minutes between that heartbeat and the crash are not billed. The media of such a call is
//! gone with its node: the caller hears the line drop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dialtone_events::payload::{
    CallAdopted, CallCompleted, CallStatus, NodeHeartbeat, NodeStopped,
};
use dialtone_events::sid::NodeSid;
use dialtone_events::{EventLog, ExpectedVersion, LogError, NewEvent, Payload, RecordedEvent};
use dialtone_projections::calls::live_calls_of;
use dialtone_projections::nodes::{get_node, list_nodes, NodeRow};
use dialtone_projections::{ReadModels, RunnerHandle};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

/// How often nodes heartbeat and how long a heartbeat vouches for them.
#[derive(Debug, Clone, Copy)]
pub struct LivenessConfig {
    pub heartbeat: Duration,
    pub lease: Duration,
    /// How often lost nodes are looked for.
    pub check: Duration,
    /// Whether this node ends the calls of lost nodes (voice nodes do: the adopter delivers
    /// the adopted calls' status callbacks).
    pub adopt: bool,
}

/// Why a call stream is ended on its owner's behalf.
pub const NODE_FAILURE: &str = "node-failure";
pub const NODE_RESTART: &str = "node-restart";

/// The events that end a call whose owner is gone, and the stream version they follow; `None`
/// when the call has ended already (or has no events). Pure.
///
/// The call is billed up to the later of the owner's last heartbeat and the call's last
/// event (both prove the node was alive then); unanswered calls end `failed`.
pub fn orphan_ending(
    events: &[RecordedEvent],
    by_node: &str,
    reason: &str,
    last_heartbeat: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<(u64, Vec<NewEvent>)> {
    let first = events.first()?;
    let last = events.last()?;
    let mut owner = String::new();
    let mut answered_at = None;
    for recorded in events {
        match recorded.event.payload() {
            Ok(Payload::CallCompleted(_)) => return None,
            Ok(Payload::CallInitiated(initiated)) => owner = initiated.owner_node,
            Ok(Payload::CallAnswered(_)) => answered_at = answered_at.or(Some(recorded.event.time)),
            _ => {}
        }
    }
    let until = last_heartbeat.max(last.event.time);
    let answered_ms = answered_at
        .map(|at| u64::try_from((until - at).whole_milliseconds()).unwrap_or(0))
        .unwrap_or(0);
    let account = first.event.accountsid.clone();
    let adopted = NewEvent::new(
        account.clone(),
        CallAdopted {
            owner_node: owner,
            by_node: by_node.to_owned(),
            reason: reason.to_owned(),
            last_heartbeat,
        },
    )
    .at(now);
    let completed = NewEvent::new(
        account,
        CallCompleted {
            status: if answered_at.is_some() {
                CallStatus::Completed
            } else {
                CallStatus::Failed
            },
            duration_s: answered_ms / 1000,
            answered_ms,
            answered_at,
            hangup_by: NODE_FAILURE.to_owned(),
            sip_code: None,
        },
    )
    .at(until.max(answered_at.unwrap_or(until)));
    Some((last.event.sequence, vec![adopted, completed]))
}

/// Ends `owner`'s live calls on its behalf; how many this node ended.
async fn end_calls_of(
    log: &dyn EventLog,
    read_models: &ReadModels,
    owner: &str,
    by_node: &str,
    reason: &str,
    last_heartbeat: OffsetDateTime,
) -> anyhow::Result<usize> {
    let owner_id = owner.to_owned();
    let calls = read_models
        .read(move |c| live_calls_of(c, &owner_id))
        .await?;
    let mut ended = 0;
    for call in calls {
        let events = log.read_stream(&call, 1).await?;
        let Some((version, ending)) = orphan_ending(
            &events,
            by_node,
            reason,
            last_heartbeat,
            OffsetDateTime::now_utc(),
        ) else {
            continue;
        };
        match log
            .append(&call, ExpectedVersion::Exact(version), ending)
            .await
        {
            Ok(_) => {
                ended += 1;
                tracing::warn!(call = %call, owner, reason, "ended a call of a lost node");
            }
            // Another survivor ended it first, or the owner wrote after all.
            Err(LogError::VersionConflict { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if ended > 0 {
        metrics::counter!("dialtone_calls_adopted_total", "reason" => reason.to_owned())
            .increment(ended as u64);
    }
    Ok(ended)
}

/// This node's liveness: its heartbeat and the watch for lost nodes.
pub struct Liveness {
    log: Arc<dyn EventLog>,
    /// What every heartbeat of this process says.
    beat: NodeHeartbeat,
    tasks: Vec<JoinHandle<()>>,
}

impl Liveness {
    /// Before this node takes calls: refuses an id another live process holds, ends this
    /// node's own calls left from before a crash, then starts heartbeating and watching.
    pub async fn start(
        log: Arc<dyn EventLog>,
        read_models: ReadModels,
        projections: RunnerHandle,
        node_id: &str,
        roles: Vec<String>,
        sip: Option<String>,
        config: LivenessConfig,
    ) -> anyhow::Result<Liveness> {
        let instance = uuid::Uuid::now_v7().to_string();
        let id = node_id.to_owned();
        let read = |read_models: &ReadModels| {
            let (read_models, id) = (read_models.clone(), id.clone());
            async move { read_models.read(move |c| get_node(c, &id)).await }
        };
        let before = read(&read_models).await?;
        if let Some(previous) = before
            .as_ref()
            .filter(|p| !p.lost_at(OffsetDateTime::now_utc()))
        {
            if !previous.stopped {
                // Alive, or crashed within its lease: a live process heartbeats again soon.
                tokio::time::sleep(config.heartbeat * 2 + Duration::from_millis(500)).await;
                projections.catch_up(log.as_ref()).await?;
                let now = read(&read_models).await?;
                if let Some(now) = now.filter(|n| n.last_heartbeat > previous.last_heartbeat) {
                    anyhow::bail!(
                        "node id {node_id:?} is alive: process {} heartbeat {:.1} s ago; give this node another --node-id",
                        now.instance,
                        (OffsetDateTime::now_utc() - now.last_heartbeat).as_seconds_f64()
                    );
                }
            }
        }
        if let Some(previous) = before.filter(|p| !p.stopped) {
            let ended = end_calls_of(
                log.as_ref(),
                &read_models,
                node_id,
                node_id,
                NODE_RESTART,
                previous.last_heartbeat,
            )
            .await
            .context("ending this node's calls of before its restart")?;
            if ended > 0 {
                tracing::warn!(ended, "ended this node's calls left from before a crash");
            }
        }
        let mut liveness = Liveness {
            log: log.clone(),
            beat: NodeHeartbeat {
                node: node_id.to_owned(),
                instance,
                lease_ms: config.lease.as_millis() as u64,
                roles,
                sip,
            },
            tasks: Vec::new(),
        };
        append_heartbeat(log.as_ref(), &liveness.beat)
            .await
            .context("writing the first heartbeat")?;
        liveness.tasks.push(tokio::spawn(heartbeat(
            log.clone(),
            liveness.beat.clone(),
            config,
        )));
        if config.adopt {
            liveness.tasks.push(tokio::spawn(watch(
                log,
                read_models,
                node_id.to_owned(),
                config,
            )));
        }
        Ok(liveness)
    }

    /// Stops heartbeating and says the node stopped cleanly.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        let stopped = NewEvent::new(
            "",
            NodeStopped {
                node: self.beat.node.clone(),
                instance: self.beat.instance.clone(),
            },
        );
        if let Err(error) = self
            .log
            .append(
                NodeSid::of(&self.beat.node).as_str(),
                ExpectedVersion::Any,
                vec![stopped],
            )
            .await
        {
            tracing::warn!(%error, "could not record the clean stop");
        }
    }
}

async fn append_heartbeat(log: &dyn EventLog, beat: &NodeHeartbeat) -> Result<(), LogError> {
    let stream = NodeSid::of(&beat.node);
    let beat = NewEvent::new("", beat.clone());
    log.append(stream.as_str(), ExpectedVersion::Any, vec![beat])
        .await
        .map(|_| ())
}

async fn heartbeat(log: Arc<dyn EventLog>, beat: NodeHeartbeat, config: LivenessConfig) {
    let mut tick = tokio::time::interval(config.heartbeat);
    loop {
        tick.tick().await;
        if let Err(error) = append_heartbeat(log.as_ref(), &beat).await {
            tracing::warn!(%error, "heartbeat failed; other nodes may take this node's calls over");
        }
    }
}

/// Looks for lost nodes and ends their calls.
async fn watch(
    log: Arc<dyn EventLog>,
    read_models: ReadModels,
    node_id: String,
    config: LivenessConfig,
) {
    let mut tick = tokio::time::interval(config.check);
    loop {
        tick.tick().await;
        let nodes: Vec<NodeRow> = match read_models.read(list_nodes).await {
            Ok(nodes) => nodes,
            Err(error) => {
                tracing::warn!(%error, "cannot read the nodes");
                continue;
            }
        };
        let now = OffsetDateTime::now_utc();
        for lost in nodes
            .iter()
            .filter(|n| n.node_id != node_id && n.lost_at(now))
        {
            if let Err(error) = end_calls_of(
                log.as_ref(),
                &read_models,
                &lost.node_id,
                &node_id,
                NODE_FAILURE,
                lost.last_heartbeat,
            )
            .await
            {
                tracing::warn!(%error, node = %lost.node_id, "cannot end a lost node's calls");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_events::envelope::GENESIS_HASH;
    use dialtone_events::payload::{CallAnswered, CallApplication, CallInitiated, Direction};
    use dialtone_events::{Event, Position};
    use serde_json::value::RawValue;
    use time::macros::datetime;

    fn recorded(sequence: u64, payload: Payload, time: OffsetDateTime) -> RecordedEvent {
        RecordedEvent {
            position: Position {
                partition: "log".into(),
                offset: sequence,
            },
            event: Event {
                id: uuid::Uuid::now_v7(),
                event_type: payload.event_type().to_owned(),
                source: "dialtone://node-2".into(),
                subject: "CA0123456789abcdef0123456789abcdef".into(),
                time,
                accountsid: "AC0123456789abcdef0123456789abcdef".into(),
                sequence,
                prevhash: GENESIS_HASH.into(),
                data: RawValue::from_string(payload.to_raw().get().to_owned()).unwrap(),
            },
        }
    }

    fn initiated() -> Payload {
        CallInitiated {
            direction: Direction::Inbound,
            from: "+1".into(),
            to: "+2".into(),
            owner_node: "node-2".into(),
            sip_call_id: None,
            source_addr: None,
            phone_number_sid: None,
            parent_call_sid: None,
            forwarded_from: None,
            application: CallApplication::default(),
        }
        .into()
    }

    fn completed_of(ending: &[NewEvent]) -> CallCompleted {
        match &ending[1].payload {
            Payload::CallCompleted(c) => c.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answered_call_is_billed_up_to_the_last_sign_of_life() {
        let t0 = datetime!(2026-12-01 10:00:00 UTC);
        let events = vec![
            recorded(1, initiated(), t0),
            recorded(
                2,
                CallAnswered { codec: None }.into(),
                t0 + time::Duration::seconds(1),
            ),
        ];
        let beat = t0 + time::Duration::seconds(31);
        let (version, ending) = orphan_ending(&events, "node-1", NODE_FAILURE, beat, beat).unwrap();
        assert_eq!(version, 2);
        match &ending[0].payload {
            Payload::CallAdopted(a) => {
                assert_eq!(
                    (a.owner_node.as_str(), a.by_node.as_str()),
                    ("node-2", "node-1")
                )
            }
            other => panic!("{other:?}"),
        }
        let completed = completed_of(&ending);
        assert_eq!(completed.status, CallStatus::Completed);
        assert_eq!((completed.answered_ms, completed.duration_s), (30_000, 30));
        assert_eq!(completed.hangup_by, NODE_FAILURE);
        assert_eq!(ending[1].time, Some(beat));
    }

    #[test]
    fn unanswered_calls_fail_and_ended_calls_are_left_alone() {
        let t0 = datetime!(2026-12-01 10:00:00 UTC);
        let events = vec![recorded(1, initiated(), t0)];
        let (_, ending) = orphan_ending(&events, "n", NODE_FAILURE, t0, t0).unwrap();
        let completed = completed_of(&ending);
        assert_eq!(
            (completed.status, completed.answered_ms),
            (CallStatus::Failed, 0)
        );
        let done = vec![
            recorded(1, initiated(), t0),
            recorded(2, completed.into(), t0),
        ];
        assert!(orphan_ending(&done, "n", NODE_FAILURE, t0, t0).is_none());
        assert!(orphan_ending(&[], "n", NODE_FAILURE, t0, t0).is_none());
    }

    #[test]
    fn a_heartbeat_before_the_last_event_does_not_shorten_the_call() {
        let t0 = datetime!(2026-12-01 10:00:00 UTC);
        let events = vec![
            recorded(1, initiated(), t0),
            recorded(2, CallAnswered { codec: None }.into(), t0),
            recorded(
                3,
                CallAnswered { codec: None }.into(),
                t0 + time::Duration::seconds(20),
            ),
        ];
        let (_, ending) = orphan_ending(
            &events,
            "n",
            NODE_FAILURE,
            t0 + time::Duration::seconds(5),
            t0,
        )
        .unwrap();
        assert_eq!(completed_of(&ending).answered_ms, 20_000);
    }
}

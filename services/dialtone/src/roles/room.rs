//! A call's seat in a conference room (`<Dial><Conference>`).
//!
//! A room is held by one node, its owner, named in the room's `conference.started`: that
//! node mixes the room's audio and writes its `CF…` stream. A caller whose call lives on the
//! owner joins directly; a caller on another node joins through a *room link*, a SIP call
//! from its node to the owner (see [`crate::roles::room_link`]) whose audio is bridged to the
//! caller's. Which node holds a room that is not open yet is decided without asking anyone:
//! every node ranks the live voice nodes for the room's name the same way (rendezvous
//! hashing), so callers who arrive at once on different nodes meet on one.
//!
//! Also here: the waiting music (`waitUrl`) of a caller waiting alone in a room of this
//! node, REST participant updates (forwarded to the owner for a linked seat), and leaving.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dialtone_events::payload::{CallControlAction, CallStatus, HttpMethod};
use dialtone_media::bridge::{BridgeHandle, BridgeOptions};
use dialtone_media::playout::CommandId as MediaCommandId;
use dialtone_media::runtime::{MediaCommand as MediaRuntimeCommand, MediaSession};
use dialtone_projections::conferences::open_room_owner;
use dialtone_projections::nodes::{list_nodes, NodeRow};
use dialtone_sip::endpoint::{CallEvent, CallHandle};
use dialtone_sip::sdp::{self, LocalMedia};
use dialtone_voice::interpreter::dial::{DialCallStatus, DialEvent, DialId, WhisperResult};
use dialtone_voice::interpreter::{Action, CommandId, Interpreter, MediaDone};
use dialtone_voice::twiml::DialConference;
use dialtone_voice::webhook::{requested_payload, responded_payload, FetchResult};
use time::OffsetDateTime;

use crate::roles::call::{media_codec, CallTask, FetchFor};
use crate::roles::commands::{self, CommandError, INVALID_STATE};
use crate::roles::conference::Membership;
use crate::roles::legs::{self, LegTarget};
use crate::roles::node::Node;
use crate::roles::registry::Reply;
use crate::roles::room_link::{self, is_audio_url, LinkRequest};
use crate::roles::side_program::play_side_command;
use crate::roles::signal::Signal;

/// How long a room link may ring before the caller joins a room here instead.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a participant update forwarded to the room's node may take.
const FORWARD_WAIT: Duration = Duration::from_secs(10);

/// A call in a conference.
pub struct RoomRun {
    dial_id: DialId,
    joined: Instant,
    seat: Seat,
    /// The `waitUrl` program while the caller waits alone in a room here.
    wait: Option<WaitRun>,
    /// What the caller asked for: it joins here with it if the room's node cannot be
    /// reached.
    conference: DialConference,
}

enum Seat {
    /// In a room this node holds.
    Here(Membership),
    /// In a room of another node, through a link.
    Linked(Box<RoomLink>),
}

struct RoomLink {
    owner_node: String,
    call: Option<CallHandle>,
    media: Option<MediaSession>,
    local: LocalMedia,
    bridge: Option<BridgeHandle>,
    answered: bool,
}

/// The conference `waitUrl` program, played to a participant while it waits alone (or for
/// the moderator). It runs like a whisper program (its end does not hang up) on the
/// caller's own media, and starts again when it ends, until the conference starts.
struct WaitRun {
    interpreter: Interpreter,
    commands: HashMap<MediaCommandId, CommandId>,
    url: String,
    method: HttpMethod,
    started: Instant,
}

/// Where a room is held, as far as this node can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomHost {
    Here,
    Node { node_id: String, sip: String },
}

/// Where `room` (`AC…/name`) is held: with its owner when it is open on a live voice node
/// (`open_owner`), else on the live voice node that ranks highest for its name (this node
/// counts as live). Pure.
pub fn room_host(
    room: &str,
    here: &str,
    open_owner: Option<&str>,
    nodes: &[NodeRow],
    now: OffsetDateTime,
) -> RoomHost {
    let reachable = |node: &&NodeRow| node.serves("voice", now) && node.sip.is_some();
    let host = |node: &NodeRow| RoomHost::Node {
        node_id: node.node_id.clone(),
        sip: node.sip.clone().unwrap_or_default(),
    };
    if let Some(owner) = open_owner {
        if owner == here {
            return RoomHost::Here;
        }
        if let Some(node) = nodes.iter().filter(reachable).find(|n| n.node_id == owner) {
            return host(node);
        }
    }
    let best = nodes
        .iter()
        .filter(reachable)
        .filter(|n| n.node_id != here)
        .max_by_key(|n| (rank(room, &n.node_id), n.node_id.clone()));
    match best {
        Some(node)
            if (rank(room, &node.node_id), node.node_id.as_str()) > (rank(room, here), here) =>
        {
            host(node)
        }
        _ => RoomHost::Here,
    }
}

/// A node's rank for a room: FNV-1a of both names (stable across nodes and releases).
fn rank(room: &str, node: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in room.bytes().chain([0]).chain(node.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Where the account's room `name` is held now.
async fn locate(node: &Node, account: &str, name: &str) -> RoomHost {
    if node.conferences.is_open(account, name) {
        return RoomHost::Here;
    }
    let (owned_account, owned_name) = (account.to_owned(), name.to_owned());
    let read = node
        .read_models
        .read(move |c| {
            Ok((
                open_room_owner(c, &owned_account, &owned_name)?,
                list_nodes(c)?,
            ))
        })
        .await;
    match read {
        Ok((owner, nodes)) => room_host(
            &format!("{account}/{name}"),
            &node.node_id,
            owner.flatten().as_deref(),
            &nodes,
            OffsetDateTime::now_utc(),
        ),
        Err(error) => {
            tracing::warn!(%error, room = %name, "cannot tell where the room is held; holding it here");
            RoomHost::Here
        }
    }
}

fn completed(status: DialCallStatus, duration_s: u64) -> DialEvent {
    DialEvent::Completed {
        child: None,
        status,
        duration_s,
        recording_duration_ms: None,
    }
}

/// `<Dial><Conference>`: seats the caller in the room, here or through a link.
pub async fn join(task: &mut CallTask, dial_id: DialId, conference: DialConference) -> Vec<Action> {
    match locate(&task.node, task.account.as_str(), &conference.name).await {
        RoomHost::Here => join_here(task, dial_id, conference).await,
        RoomHost::Node { node_id, sip } => link(task, dial_id, conference, node_id, sip),
    }
}

async fn join_here(
    task: &mut CallTask,
    dial_id: DialId,
    conference: DialConference,
) -> Vec<Action> {
    let now = Instant::now();
    let Some(media) = task.media.as_ref() else {
        return task
            .interpreter
            .on_dial_event(dial_id, completed(DialCallStatus::Failed, 0), now);
    };
    let joined = task
        .node
        .conferences
        .join(
            &task.node.log,
            &task.node.registry,
            &task.node.media,
            task.account.as_str(),
            &conference.name,
            &task.sid,
            media,
            room_link::participant_options(&conference),
            conference.end_conference_on_exit,
            room_link::room_requests(&task.node, task.account.as_str(), &conference),
        )
        .await;
    match joined {
        Ok((membership, waiting)) => {
            let (wait_url, wait_method) = (conference.wait_url.clone(), conference.wait_method);
            task.room = Some(RoomRun {
                dial_id,
                joined: now,
                seat: Seat::Here(membership),
                wait: None,
                conference,
            });
            if waiting {
                start_wait(task, wait_url.as_deref(), wait_method);
            }
            Vec::new()
        }
        Err(error) => {
            tracing::info!(call = %task.sid, room = %conference.name, %error, "cannot join the conference");
            task.interpreter
                .on_dial_event(dial_id, completed(DialCallStatus::Failed, 0), now)
        }
    }
}

/// Calls the room's node for a seat; the caller hears nothing until the link answers.
fn link(
    task: &mut CallTask,
    dial_id: DialId,
    conference: DialConference,
    owner_node: String,
    sip: String,
) -> Vec<Action> {
    let media = match task.node.media.open_session() {
        Ok(media) => media,
        Err(error) => {
            tracing::warn!(call = %task.sid, %error, "no media for a room link");
            return task.interpreter.on_dial_event(
                dial_id,
                completed(DialCallStatus::Failed, 0),
                Instant::now(),
            );
        }
    };
    tracing::info!(call = %task.sid, room = %conference.name, owner = %owner_node, "joining a room of another node");
    let local = LocalMedia::new(task.node.public_ip, media.local_port());
    let offer = sdp::offer(&local);
    let request = LinkRequest::new(task.account.as_str(), &task.sid, &conference);
    let target = LegTarget::Sip {
        uri: format!("sip:{}@{sip}", room_link::ROOM_USER),
        username: None,
        password: None,
        headers: vec![(
            room_link::ROOM_HEADER.to_owned(),
            room_link::sign(&task.node.secret, &request),
        )],
    };
    task.room = Some(RoomRun {
        dial_id,
        joined: Instant::now(),
        seat: Seat::Linked(Box::new(RoomLink {
            owner_node,
            call: None,
            media: Some(media),
            local,
            bridge: None,
            answered: false,
        })),
        wait: None,
        conference,
    });
    let (node, signals, caller) = (
        task.node.clone(),
        task.signals_tx.clone(),
        task.sid.to_string(),
    );
    tokio::spawn(async move {
        match legs::place(&node, &target, &caller, offer, LINK_TIMEOUT).await {
            Ok(mut placed) => {
                let _ = signals.send(Signal::LinkPlaced {
                    dial_id,
                    result: Ok(placed.call),
                });
                while let Some(event) = placed.events.recv().await {
                    if signals.send(Signal::Link { dial_id, event }).is_err() {
                        break;
                    }
                }
            }
            Err(error) => {
                let _ = signals.send(Signal::LinkPlaced {
                    dial_id,
                    result: Err(error.to_string()),
                });
            }
        }
    });
    Vec::new()
}

fn hang_up(call: Option<CallHandle>) {
    if let Some(call) = call {
        tokio::spawn(async move {
            let _ = call.hangup().await;
        });
    }
}

/// The room link's progress.
pub async fn on_link_signal(task: &mut CallTask, signal: Signal) -> Vec<Action> {
    let dial_id = match &signal {
        Signal::LinkPlaced { dial_id, .. } | Signal::Link { dial_id, .. } => *dial_id,
        _ => return Vec::new(),
    };
    let link = task
        .room
        .as_mut()
        .filter(|r| r.dial_id == dial_id)
        .and_then(|r| match &mut r.seat {
            Seat::Linked(link) => Some(link),
            Seat::Here(_) => None,
        });
    let Some(link) = link else {
        // A link of a seat given up already: make sure it goes away.
        if let Signal::LinkPlaced {
            result: Ok(call), ..
        } = signal
        {
            hang_up(Some(call));
        }
        return Vec::new();
    };
    match signal {
        Signal::LinkPlaced {
            result: Ok(call), ..
        } => {
            link.call = Some(call);
            Vec::new()
        }
        Signal::LinkPlaced {
            result: Err(error), ..
        } => {
            tracing::warn!(call = %task.sid, owner = %link.owner_node, %error, "cannot reach the room's node; holding the room here");
            join_here_instead(task).await
        }
        Signal::Link {
            event: CallEvent::Answered { sdp },
            ..
        } => {
            let negotiated = sdp
                .as_deref()
                .and_then(|s| sdp::accept_answer(s, &link.local).ok());
            let (Some(negotiated), Some(link_media), Some(parent)) =
                (negotiated, link.media.as_ref(), task.media.as_ref())
            else {
                tracing::warn!(call = %task.sid, "the room link's answer is unusable; leaving");
                return leave(task).await;
            };
            link_media.set_remote(
                negotiated.remote_rtp,
                media_codec(negotiated.codec),
                negotiated.telephone_event_pt,
            );
            match task
                .node
                .media
                .bridge(parent, link_media, BridgeOptions::default())
            {
                Ok(bridge) => {
                    link.bridge = Some(bridge);
                    link.answered = true;
                    metrics::counter!("dialtone_room_links_total", "result" => "linked")
                        .increment(1);
                    Vec::new()
                }
                Err(error) => {
                    tracing::warn!(call = %task.sid, %error, "cannot bridge the room link; leaving");
                    leave(task).await
                }
            }
        }
        Signal::Link {
            event: CallEvent::Terminated { reason },
            ..
        } => {
            if link.answered {
                // The room let the caller go (it ended, or the caller was removed).
                leave(task).await
            } else {
                tracing::warn!(call = %task.sid, owner = %link.owner_node, ?reason, "the room's node refused the link; holding the room here");
                join_here_instead(task).await
            }
        }
        _ => Vec::new(),
    }
}

/// The room's node could not be reached: the caller joins a room of the same name here.
async fn join_here_instead(task: &mut CallTask) -> Vec<Action> {
    let Some(run) = task.room.take() else {
        return Vec::new();
    };
    if let Seat::Linked(link) = run.seat {
        close_link(link);
    }
    join_here(task, run.dial_id, run.conference).await
}

fn close_link(mut link: Box<RoomLink>) {
    drop(link.bridge.take());
    hang_up(link.call.take());
    if let Some(media) = link.media.take() {
        media.close();
    }
}

/// Leaves the room (the caller hung up, the dial ends, the room ended or let the caller
/// go); the `<Dial>` completes `answered`.
pub async fn leave(task: &mut CallTask) -> Vec<Action> {
    let Some(run) = task.room.take() else {
        return Vec::new();
    };
    match run.seat {
        Seat::Here(membership) => {
            task.node
                .conferences
                .leave(
                    task.node.log.as_ref(),
                    &task.node.registry,
                    task.account.as_str(),
                    &task.sid,
                    membership,
                )
                .await;
        }
        Seat::Linked(link) => close_link(link),
    }
    let duration_s = run.joined.elapsed().as_secs();
    task.interpreter.on_dial_event(
        run.dial_id,
        completed(DialCallStatus::Answered, duration_s),
        Instant::now(),
    )
}

/// Whether the call's conference is the dial `dial_id`.
pub fn is_dial(task: &CallTask, dial_id: DialId) -> bool {
    task.room.as_ref().is_some_and(|r| r.dial_id == dial_id)
}

/// `Ok` when the call is in a conference now, else `invalid-state`.
pub fn in_conference(task: &CallTask) -> Result<(), String> {
    match task.room {
        Some(_) => Ok(()),
        None => Err(INVALID_STATE.to_owned()),
    }
}

/// Sends a participant command to the room's node, which holds the linked seat, and
/// replies with its answer (without holding up the call meanwhile).
fn forward(task: &CallTask, owner: &str, action: CallControlAction, reply: Reply) {
    let (log, account, call, owner) = (
        task.node.log.clone(),
        task.account.to_string(),
        task.sid.clone(),
        owner.to_owned(),
    );
    tokio::spawn(async move {
        let answer = commands::send_to(log.as_ref(), &account, &call, &owner, action, FORWARD_WAIT)
            .await
            .map_err(|error| match error {
                CommandError::Refused(reason) => reason,
                other => {
                    tracing::warn!(%call, %owner, error = ?other, "the room's node did not answer");
                    INVALID_STATE.to_owned()
                }
            });
        let _ = reply.send(answer);
    });
}

/// REST participant update: mutes or unmutes the call in its conference, puts it on hold
/// (it hears the built-in hold music) or takes it off.
pub async fn conference_update(
    task: &mut CallTask,
    muted: Option<bool>,
    held: Option<bool>,
    reply: Reply,
) {
    let Some(run) = task.room.as_mut() else {
        let _ = reply.send(Err(INVALID_STATE.to_owned()));
        return;
    };
    let membership = match &mut run.seat {
        Seat::Here(membership) => membership,
        Seat::Linked(link) => {
            let owner = link.owner_node.clone();
            let action = CallControlAction::ConferenceUpdate { muted, hold: held };
            forward(task, &owner, action, reply);
            return;
        }
    };
    let was_held = membership.held;
    task.node
        .conferences
        .update_participant(
            task.node.log.as_ref(),
            task.account.as_str(),
            &task.sid,
            membership,
            muted,
            held,
        )
        .await;
    if let (Some(held), Some(media)) = (held.filter(|h| *h != was_held), task.media.as_ref()) {
        if held {
            media.play(MediaRuntimeCommand::HoldMusic);
        } else {
            media.stop_playback();
        }
    }
    let _ = reply.send(Ok(()));
}

/// REST conference update `Status=completed`: ends the call's conference for everyone
/// (this call included: it is told like the others and leaves).
pub async fn end_conference(task: &mut CallTask, reply: Reply) {
    let key = match task.room.as_ref().map(|r| &r.seat) {
        None => {
            let _ = reply.send(Err(INVALID_STATE.to_owned()));
            return;
        }
        Some(Seat::Linked(link)) => {
            let owner = link.owner_node.clone();
            forward(task, &owner, CallControlAction::ConferenceEnd, reply);
            return;
        }
        Some(Seat::Here(membership)) => membership.key.clone(),
    };
    task.node
        .conferences
        .end(
            task.node.log.as_ref(),
            &task.node.registry,
            task.account.as_str(),
            &key,
        )
        .await;
    let _ = reply.send(Ok(()));
}

/// The room ended, or let this call go (another participant with `endConferenceOnExit`
/// left, a REST kick): this call leaves.
pub async fn conference_ended(task: &mut CallTask) -> Vec<Action> {
    leave(task).await
}

/// Starts the `waitUrl` program for a participant waiting in a conference: without a
/// `waitUrl`, the built-in hold music (Twilio plays its own); `waitUrl=""` is silence.
fn start_wait(task: &mut CallTask, url: Option<&str>, method: HttpMethod) {
    let Some(url) = url else {
        if let Some(media) = &task.media {
            media.play(MediaRuntimeCommand::HoldMusic);
        }
        return;
    };
    if url.is_empty() {
        return;
    }
    let url = url.to_owned();
    if is_audio_url(&url) {
        if let Some(media) = &task.media {
            media.play(MediaRuntimeCommand::Play { url, loops: 0 });
        }
        return;
    }
    let mut context = task.interpreter.context().clone();
    context.application = dialtone_events::payload::CallApplication {
        url: Some(url.clone()),
        method,
        ..Default::default()
    };
    context.call_status = CallStatus::InProgress;
    let mut interpreter = Interpreter::whisper(context, task.node.interpreter.clone());
    let now = Instant::now();
    let first = interpreter.start(now);
    if let Some(run) = task.room.as_mut() {
        run.wait = Some(WaitRun {
            interpreter,
            commands: HashMap::new(),
            url,
            method,
            started: now,
        });
    }
    run_wait(task, first);
}

/// Carries out the wait program's actions on the caller's own media; its events go to the
/// caller's stream.
pub fn run_wait(task: &mut CallTask, mut actions: Vec<Action>) {
    while !actions.is_empty() {
        let mut more = Vec::new();
        for action in actions {
            let Some(wait) = task.room.as_mut().and_then(|r| r.wait.as_mut()) else {
                return;
            };
            match action {
                Action::Fetch {
                    request_id,
                    request,
                } => {
                    task.push_event(requested_payload(&request, request_id, 1));
                    let session = task.webhooks.clone();
                    task.fetches.spawn(async move {
                        let result = session.fetch(&request).await;
                        (FetchFor::Wait, request_id, result)
                    });
                }
                Action::Media {
                    command_id,
                    command,
                } => {
                    more.extend(play_side_command(
                        &task.node,
                        task.account.as_str(),
                        task.media.as_ref(),
                        &mut wait.interpreter,
                        &mut wait.commands,
                        command_id,
                        command,
                    ));
                }
                Action::StopMedia { .. } => {
                    if let Some(media) = &task.media {
                        media.stop_playback();
                    }
                }
                Action::Emit(payload) => task.push_event(payload),
                Action::Completed => {
                    let connect = wait.interpreter.whisper_result() == Some(WhisperResult::Connect);
                    // Loop the program while waiting, unless it ended at once (nothing to
                    // play) or hung up: then wait in silence.
                    let again = connect && wait.started.elapsed() >= Duration::from_secs(1);
                    let (url, method) = (wait.url.clone(), wait.method);
                    if let Some(run) = task.room.as_mut() {
                        run.wait = None;
                    }
                    if again {
                        start_wait(task, Some(&url), method);
                    }
                    return;
                }
                // Answer is moot, Hangup/Reject end the waiting music, Dial is not allowed.
                _ => {}
            }
        }
        actions = more;
    }
}

/// A media outcome of the wait program, if it was one of its commands.
pub fn wait_media_done(task: &mut CallTask, media_id: MediaCommandId, done: MediaDone) -> bool {
    let Some(wait) = task.room.as_mut().and_then(|r| r.wait.as_mut()) else {
        return false;
    };
    let Some(command) = wait.commands.remove(&media_id) else {
        return false;
    };
    let actions = wait
        .interpreter
        .on_media_done(command, done, Instant::now());
    run_wait(task, actions);
    true
}

/// A wait program's webhook answered.
pub fn on_wait_fetched(task: &mut CallTask, request_id: u32, result: FetchResult) {
    task.push_event(responded_payload(request_id, &result));
    let Some(wait) = task.room.as_mut().and_then(|r| r.wait.as_mut()) else {
        return;
    };
    let actions = wait
        .interpreter
        .on_fetched(request_id, result, Instant::now());
    run_wait(task, actions);
}

/// The conference this caller waits in has started (someone else joined): stop the waiting
/// music.
pub fn conference_started(task: &mut CallTask) {
    let Some(run) = task.room.as_mut() else {
        return;
    };
    run.wait = None;
    if let (Seat::Here(_), Some(media)) = (&run.seat, &task.media) {
        // Also ends the hold music or a plain audio waitUrl, which have no program.
        media.stop_playback();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, sip: Option<&str>, roles: &[&str], lost: bool) -> NodeRow {
        let now = OffsetDateTime::now_utc();
        NodeRow {
            node_id: id.into(),
            instance: "i".into(),
            last_heartbeat: if lost {
                now - time::Duration::minutes(5)
            } else {
                now
            },
            lease_ms: 10_000,
            stopped: false,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            sip: sip.map(str::to_owned),
        }
    }

    fn at(host: &RoomHost) -> &str {
        match host {
            RoomHost::Here => "here",
            RoomHost::Node { node_id, .. } => node_id,
        }
    }

    #[test]
    fn every_node_picks_the_same_host_for_a_new_room() {
        let nodes = vec![
            node("voice-1", Some("127.0.0.2:5060"), &["voice"], false),
            node("voice-2", Some("127.0.0.3:5060"), &["voice"], false),
            node("voice-3", Some("127.0.0.4:5060"), &["voice"], false),
        ];
        let now = OffsetDateTime::now_utc();
        let mut hosts = std::collections::HashSet::new();
        for room in (0..40).map(|i| format!("AC1/room-{i}")) {
            let chosen: Vec<String> = ["voice-1", "voice-2", "voice-3"]
                .iter()
                .map(|here| match room_host(&room, here, None, &nodes, now) {
                    RoomHost::Here => here.to_string(),
                    RoomHost::Node { node_id, .. } => node_id,
                })
                .collect();
            assert!(chosen.iter().all(|c| c == &chosen[0]), "{room}: {chosen:?}");
            hosts.insert(chosen[0].clone());
        }
        // Rooms spread over the nodes.
        assert_eq!(hosts.len(), 3, "{hosts:?}");
    }

    #[test]
    fn an_open_room_stays_with_its_live_owner() {
        let now = OffsetDateTime::now_utc();
        let nodes = vec![
            node("voice-1", Some("127.0.0.2:5060"), &["voice"], false),
            node("voice-2", Some("127.0.0.3:5060"), &["voice"], false),
        ];
        for here in ["voice-1", "voice-2"] {
            let host = room_host("AC1/x", here, Some("voice-2"), &nodes, now);
            let expected = if here == "voice-2" { "here" } else { "voice-2" };
            assert_eq!(at(&host), expected);
        }
        let host = room_host("AC1/x", "voice-1", Some("voice-2"), &nodes, now);
        assert_eq!(
            host,
            RoomHost::Node {
                node_id: "voice-2".into(),
                sip: "127.0.0.3:5060".into()
            }
        );
    }

    #[test]
    fn lost_nodes_and_nodes_without_voice_or_sip_hold_no_rooms() {
        let now = OffsetDateTime::now_utc();
        let nodes = vec![
            node("dead", Some("127.0.0.9:5060"), &["voice"], true),
            node("api", Some("127.0.0.8:5060"), &["api"], false),
            node("nosip", None, &["voice"], false),
        ];
        for room in (0..20).map(|i| format!("AC1/{i}")) {
            assert_eq!(room_host(&room, "me", None, &nodes, now), RoomHost::Here);
            // An open room of a dead owner moves to a live node.
            assert_eq!(
                room_host(&room, "me", Some("dead"), &nodes, now),
                RoomHost::Here
            );
        }
        // Alone (one embedded node): always here.
        assert_eq!(room_host("AC1/x", "me", None, &[], now), RoomHost::Here);
    }
}

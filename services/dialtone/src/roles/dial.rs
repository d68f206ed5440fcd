//! `<Dial>` on the parent call's task: placing the child legs (in parallel or one after the
//! other), racing them, running a whisper program on the answering leg, bridging its audio,
//! recording the bridge, and ending it all (a `<Conference>` is [`crate::roles::room`]'s).
//! Child legs are calls of their own
//! (`CA…` streams with `parent_call_sid`), written by this task.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use dialtone_events::payload::{
    CallAnswered, CallInitiated, CallRinging, CallStatus, Direction, Payload, RecordingStarted,
};
use dialtone_events::sid::{CallSid, RecordingSid};
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_media::bridge::{BridgeHandle, BridgeOptions, BridgeRecording, RecordingChannels};
use dialtone_media::call_recording::{CallRecordingOptions, RecordingTrack as SessionTrack};
use dialtone_media::outcome::MediaOutcome;
use dialtone_media::playout::CommandId as MediaCommandId;
use dialtone_media::runtime::{MediaCommand as MediaRuntimeCommand, MediaSession};
use dialtone_sip::endpoint::{CallEvent, CallHandle, TerminationReason};
use dialtone_sip::sdp::{self, LocalMedia};
use dialtone_voice::interpreter::dial::{
    DialCallStatus, DialDestination, DialEndReason, DialEvent, DialId, DialParty, DialPlan,
    DialRecording, WhisperResult,
};
use dialtone_voice::interpreter::{Action, CommandId, Interpreter, MediaDone};
use dialtone_voice::twiml::Trim;
use dialtone_voice::webhook::{requested_payload, responded_payload, FetchResult};
use time::OffsetDateTime;

use crate::roles::call::{
    codec_name, completed_answered, completed_unanswered, media_codec, CallTask, FetchFor,
};
use crate::roles::legs::{self, LegTarget};
use crate::roles::side_program::play_side_command;
use crate::roles::signal::Signal;

struct ChildLeg {
    party: DialParty,
    call: Option<CallHandle>,
    media: Option<MediaSession>,
    local: LocalMedia,
    ringing: bool,
    answered: Option<(Instant, OffsetDateTime)>,
    ended: bool,
    /// We cancelled it (another party answered, or the dial ended).
    cancelled_by_us: bool,
}

struct WhisperRun {
    child: CallSid,
    interpreter: Interpreter,
    commands: HashMap<MediaCommandId, CommandId>,
}

/// The recording of a dial (it belongs to the parent call).
pub struct DialRecordingState {
    pub sid: RecordingSid,
    pub media_id: Option<MediaCommandId>,
    /// `record-from-ringing*`: a recording of the parent's session (what the caller says and
    /// hears: ringback, then the callee), started when the first party rings and stopped
    /// when the dial ends. Otherwise the bridge's own recording, from the answer.
    pub of_parent_session: bool,
}

/// A `<Dial>` in progress.
pub struct DialRun {
    id: DialId,
    plan: DialPlan,
    legs: HashMap<CallSid, ChildLeg>,
    /// Parties of a `sequential` dial still to ring.
    queue: VecDeque<DialParty>,
    winner: Option<CallSid>,
    bridge: Option<BridgeHandle>,
    ringback: Option<MediaCommandId>,
    pub recording: Option<DialRecordingState>,
    whisper: Option<WhisperRun>,
    ending: bool,
    /// The dial's end, held back until the bridge recording is written.
    awaiting_recording: Option<DialEvent>,
    failures: Vec<CallStatus>,
}

impl DialRun {
    fn new(id: DialId, plan: DialPlan) -> DialRun {
        DialRun {
            id,
            plan,
            legs: HashMap::new(),
            queue: VecDeque::new(),
            winner: None,
            bridge: None,
            ringback: None,
            recording: None,
            whisper: None,
            ending: false,
            awaiting_recording: None,
            failures: Vec::new(),
        }
    }

    /// When the whisper program wants its timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.whisper
            .as_ref()
            .and_then(|w| w.interpreter.poll_timeout())
    }

    /// Whether `id` is this dial's recording (which then failed).
    pub fn recording_failed(&mut self, id: MediaCommandId) -> bool {
        let failed = self
            .recording
            .as_ref()
            .is_some_and(|r| r.media_id == Some(id));
        if failed {
            self.recording = None;
        }
        failed
    }

    /// Stops this dial's recording, if one runs: drops the bridge (whose recording then
    /// finishes) or stops the parent session's recording. Whether a recording's file is
    /// still to come.
    pub fn stop_recording(&mut self, parent: Option<&MediaSession>) -> bool {
        let Some(recording) = &self.recording else {
            return false;
        };
        if recording.of_parent_session {
            if let Some(media) = parent {
                media.stop_call_recording();
            }
        }
        drop(self.bridge.take());
        true
    }

    /// Holds back the end of the dial until its recording is written (so that the action
    /// gets `RecordingUrl` and `recording.completed` precedes it), or gives it back when
    /// nothing is recording.
    fn hold_for_recording(
        &mut self,
        parent: Option<&MediaSession>,
        event: DialEvent,
    ) -> Option<DialEvent> {
        if self.stop_recording(parent) {
            self.awaiting_recording = Some(event);
            None
        } else {
            Some(event)
        }
    }

    /// The recording is written: the held-back end of the dial, if any, with its
    /// length.
    pub fn recording_done(&mut self, duration_ms: Option<u64>) -> Option<(DialId, DialEvent)> {
        let mut event = self.awaiting_recording.take()?;
        if let DialEvent::Completed {
            recording_duration_ms,
            ..
        } = &mut event
        {
            *recording_duration_ms = duration_ms;
        }
        Some((self.id, event))
    }
}

fn completed(child: Option<CallSid>, status: DialCallStatus, duration_s: u64) -> DialEvent {
    DialEvent::Completed {
        child,
        status,
        duration_s,
        recording_duration_ms: None,
    }
}

/// Starts a dial: joins the conference, or places the first (or every) party.
pub async fn start(task: &mut CallTask, dial_id: DialId, plan: DialPlan) -> Vec<Action> {
    if let DialDestination::Conference(conference) = &plan.destination {
        let conference = (**conference).clone();
        return crate::roles::room::join(task, dial_id, conference).await;
    }
    let parties = plan.parties().to_vec();
    if parties.is_empty() {
        return task.interpreter.on_dial_event(
            dial_id,
            completed(None, DialCallStatus::Failed, 0),
            Instant::now(),
        );
    }
    let mut run = DialRun::new(dial_id, plan.clone());
    let first = if plan.sequential {
        run.queue = parties[1..].iter().cloned().collect();
        vec![parties[0].clone()]
    } else {
        parties
    };
    if task.answered.is_some() && !plan.answer_on_bridge {
        if let Some(media) = &task.media {
            let country = plan.ring_tone.clone().unwrap_or_else(|| "us".to_owned());
            run.ringback = Some(media.play(MediaRuntimeCommand::Ringback { country }));
        }
    }
    task.dial = Some(run);
    let mut actions = Vec::new();
    for party in first {
        actions.extend(place_party(task, dial_id, party).await);
    }
    actions
}

async fn append_child(
    task: &CallTask,
    child: &CallSid,
    expected: ExpectedVersion,
    payloads: Vec<Payload>,
) {
    let events = payloads
        .into_iter()
        .map(|p| NewEvent::new(task.account.as_str(), p))
        .collect();
    if let Err(error) = task.node.log.append(child.as_str(), expected, events).await {
        tracing::error!(call = %child, %error, "cannot append child-leg events");
    }
}

/// Writes the child's `call.initiated`, opens its media and sends the INVITE.
async fn place_party(task: &mut CallTask, dial_id: DialId, party: DialParty) -> Vec<Action> {
    let Some(plan) = task.dial.as_ref().map(|d| d.plan.clone()) else {
        return Vec::new();
    };
    let child = party.child_call_sid.clone();
    let initiated = CallInitiated {
        direction: Direction::OutboundDial,
        from: plan.caller_id.clone(),
        to: party.address.to().to_owned(),
        owner_node: task.node.node_id.clone(),
        sip_call_id: None,
        source_addr: None,
        phone_number_sid: None,
        parent_call_sid: Some(task.sid.clone()),
        forwarded_from: None,
        application: party.child_application(),
    };
    append_child(
        task,
        &child,
        ExpectedVersion::NoStream,
        vec![initiated.into()],
    )
    .await;
    let mut media = match task.node.media.open_session() {
        Ok(media) => media,
        Err(error) => {
            tracing::warn!(call = %task.sid, %child, %error, "no media for the child leg");
            append_child(
                task,
                &child,
                ExpectedVersion::Any,
                vec![completed_unanswered(CallStatus::Failed, 503, "dialtone").into()],
            )
            .await;
            let mut leg = new_leg(&task.node, party, None);
            leg.ended = true;
            if let Some(run) = task.dial.as_mut() {
                run.legs.insert(child.clone(), leg);
                run.failures.push(CallStatus::Failed);
            }
            return Box::pin(after_leg_ended(task)).await;
        }
    };
    if let Some(mut outcomes) = media.outcomes() {
        let (signals, child) = (task.signals_tx.clone(), child.clone());
        tokio::spawn(async move {
            while let Some(outcome) = outcomes.recv().await {
                if signals
                    .send(Signal::ChildMedia {
                        dial_id,
                        child: child.clone(),
                        outcome,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let leg = new_leg(&task.node, party.clone(), Some(media));
    let offer = sdp::offer(&leg.local);
    if let Some(run) = task.dial.as_mut() {
        run.legs.insert(child.clone(), leg);
    }
    let node = task.node.clone();
    let signals = task.signals_tx.clone();
    let target = LegTarget::from_party(&party.address);
    let ring_timeout = std::time::Duration::from_secs(u64::from(plan.timeout_s));
    tokio::spawn(async move {
        match legs::place(&node, &target, &plan.caller_id, offer, ring_timeout).await {
            Ok(mut placed) => {
                let _ = signals.send(Signal::Placed {
                    dial_id,
                    child: child.clone(),
                    result: Ok(placed.call),
                });
                while let Some(event) = placed.events.recv().await {
                    if signals
                        .send(Signal::ChildSip {
                            dial_id,
                            child: child.clone(),
                            event,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            }
            Err(error) => {
                let _ = signals.send(Signal::Placed {
                    dial_id,
                    child,
                    result: Err(error.to_string()),
                });
            }
        }
    });
    Vec::new()
}

fn new_leg(
    node: &crate::roles::node::Node,
    party: DialParty,
    media: Option<MediaSession>,
) -> ChildLeg {
    let port = media.as_ref().map(|m| m.local_port()).unwrap_or(0);
    ChildLeg {
        party,
        call: None,
        media,
        local: LocalMedia::new(node.public_ip, port),
        ringing: false,
        answered: None,
        ended: false,
        cancelled_by_us: false,
    }
}

fn hang_up(call: Option<&CallHandle>) {
    if let Some(call) = call.cloned() {
        tokio::spawn(async move {
            let _ = call.hangup().await;
        });
    }
}

/// Feeds a child leg's report into the dial.
pub async fn on_signal(task: &mut CallTask, signal: Signal) -> Vec<Action> {
    let (dial_id, child) = match &signal {
        Signal::Placed { dial_id, child, .. }
        | Signal::ChildSip { dial_id, child, .. }
        | Signal::ChildMedia { dial_id, child, .. } => (*dial_id, child.clone()),
        // The room's link (see `call.rs`, which hands those to the room).
        Signal::LinkPlaced { .. } | Signal::Link { .. } => return Vec::new(),
    };
    let current = task
        .dial
        .as_ref()
        .is_some_and(|d| d.id == dial_id && d.legs.contains_key(&child));
    if !current {
        // A leg of a dial that is over: make sure it goes away.
        if let Signal::Placed {
            result: Ok(call), ..
        } = &signal
        {
            hang_up(Some(call));
        }
        return Vec::new();
    }
    match signal {
        Signal::Placed {
            result: Ok(call), ..
        } => {
            let Some(run) = task.dial.as_mut() else {
                return Vec::new();
            };
            let ending = run.ending;
            if let Some(leg) = run.legs.get_mut(&child) {
                if ending {
                    leg.cancelled_by_us = true;
                    hang_up(Some(&call));
                }
                leg.call = Some(call);
            }
            Vec::new()
        }
        Signal::Placed {
            result: Err(error), ..
        } => {
            tracing::info!(call = %task.sid, %child, %error, "child leg could not be placed");
            leg_ended(task, &child, CallStatus::Failed, 500, "dialtone").await
        }
        Signal::ChildSip { event, .. } => match event {
            CallEvent::Progress { status, .. } => {
                let newly = task
                    .dial
                    .as_mut()
                    .and_then(|d| d.legs.get_mut(&child))
                    .is_some_and(|leg| !std::mem::replace(&mut leg.ringing, true));
                if !newly {
                    return Vec::new();
                }
                append_child(
                    task,
                    &child,
                    ExpectedVersion::Any,
                    vec![CallRinging {
                        sip_code: Some(status),
                    }
                    .into()],
                )
                .await;
                start_recording_from_ringing(task);
                task.report_dial(dial_id, DialEvent::Ringing { child })
            }
            CallEvent::Answered { sdp } => child_answered(task, dial_id, &child, sdp).await,
            CallEvent::Terminated { reason } => {
                let (status, code, by) = termination(&reason);
                leg_ended(task, &child, status, code, by).await
            }
            _ => Vec::new(),
        },
        Signal::ChildMedia { outcome, .. } => {
            let now = Instant::now();
            let Some(whisper) = task
                .dial
                .as_mut()
                .and_then(|d| d.whisper.as_mut())
                .filter(|w| w.child == child)
            else {
                return Vec::new();
            };
            let actions = match outcome {
                MediaOutcome::Finished { id } => {
                    whisper_media_done(whisper, id, MediaDone::Finished, now)
                }
                MediaOutcome::Interrupted { id } => {
                    whisper_media_done(whisper, id, MediaDone::Interrupted, now)
                }
                MediaOutcome::Failed { id, error } => {
                    whisper_media_done(whisper, id, MediaDone::Failed(error.to_string()), now)
                }
                MediaOutcome::Dtmf { digit, .. } => whisper.interpreter.on_dtmf(digit, now),
                _ => Vec::new(),
            };
            run_whisper(task, actions).await
        }
        Signal::LinkPlaced { .. } | Signal::Link { .. } => Vec::new(),
    }
}

fn whisper_media_done(
    whisper: &mut WhisperRun,
    id: MediaCommandId,
    done: MediaDone,
    now: Instant,
) -> Vec<Action> {
    match whisper.commands.remove(&id) {
        Some(command) => whisper.interpreter.on_media_done(command, done, now),
        None => Vec::new(),
    }
}

/// Twilio's status, the SIP code and who hung up, from how a child's SIP call ended.
fn termination(reason: &TerminationReason) -> (CallStatus, u16, &'static str) {
    let status = match reason.twilio_status() {
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "no-answer" => CallStatus::NoAnswer,
        "canceled" => CallStatus::Canceled,
        _ => CallStatus::Failed,
    };
    let code = match reason {
        TerminationReason::Rejected { status } | TerminationReason::Failed { status, .. } => {
            *status
        }
        TerminationReason::TimedOut => 408,
        TerminationReason::Cancelled | TerminationReason::LocalCancel => 487,
        _ => 200,
    };
    let by = match reason {
        TerminationReason::RemoteBye => "callee",
        _ => "dialtone",
    };
    (status, code, by)
}

async fn child_answered(
    task: &mut CallTask,
    dial_id: DialId,
    child: &CallSid,
    sdp: Option<String>,
) -> Vec<Action> {
    let Some(run) = task.dial.as_mut() else {
        return Vec::new();
    };
    let Some(leg) = run.legs.get_mut(child) else {
        return Vec::new();
    };
    if run.winner.is_some() || run.ending {
        leg.cancelled_by_us = true;
        hang_up(leg.call.as_ref());
        return Vec::new();
    }
    let negotiated = sdp
        .as_deref()
        .and_then(|s| sdp::accept_answer(s, &leg.local).ok());
    let Some(negotiated) = negotiated else {
        tracing::warn!(%child, "the callee's SDP answer is unusable; hanging up");
        hang_up(leg.call.as_ref());
        return Vec::new();
    };
    if let Some(media) = &leg.media {
        media.set_remote(
            negotiated.remote_rtp,
            media_codec(negotiated.codec),
            negotiated.telephone_event_pt,
        );
        if let PartyAddress::Number {
            send_digits: Some(digits),
            ..
        } = &leg.party.address
        {
            media.play(MediaRuntimeCommand::Digits {
                digits: digits.clone(),
            });
        }
    }
    leg.answered = Some((Instant::now(), OffsetDateTime::now_utc()));
    let whisper = leg.party.whisper.is_some().then(|| leg.party.clone());
    run.winner = Some(child.clone());
    run.queue.clear();
    for (sid, other) in run.legs.iter_mut() {
        if sid != child && !other.ended {
            other.cancelled_by_us = true;
            hang_up(other.call.as_ref());
        }
    }
    let plan_caller = run.plan.caller_id.clone();
    append_child(
        task,
        child,
        ExpectedVersion::Any,
        vec![CallAnswered {
            codec: Some(codec_name(negotiated.codec).into()),
        }
        .into()],
    )
    .await;
    let mut actions = task.report_dial(
        dial_id,
        DialEvent::Answered {
            child: child.clone(),
        },
    );
    if let Some(party) = whisper {
        let context = party.child_context(task.interpreter.context(), &plan_caller);
        let mut interpreter = Interpreter::whisper(context, task.node.interpreter.clone());
        let first = interpreter.start(Instant::now());
        if let Some(run) = task.dial.as_mut() {
            run.whisper = Some(WhisperRun {
                child: child.clone(),
                interpreter,
                commands: HashMap::new(),
            });
        }
        actions.extend(run_whisper(task, first).await);
    }
    actions
}

use dialtone_voice::interpreter::dial::PartyAddress;

/// Carries out a whisper program's actions on the child leg; returns the parent's actions.
async fn run_whisper(task: &mut CallTask, mut actions: Vec<Action>) -> Vec<Action> {
    let mut parent = Vec::new();
    let mut child_events: Vec<Payload> = Vec::new();
    while !actions.is_empty() {
        let mut more = Vec::new();
        for action in actions {
            let Some(run) = task.dial.as_mut() else {
                return parent;
            };
            let Some(whisper) = run.whisper.as_mut() else {
                return parent;
            };
            let child = whisper.child.clone();
            match action {
                Action::Fetch {
                    request_id,
                    request,
                } => {
                    child_events.push(requested_payload(&request, request_id, 1).into());
                    let session = task.webhooks.clone();
                    let tag = FetchFor::Whisper(child.clone());
                    task.fetches.spawn(async move {
                        let result = session.fetch(&request).await;
                        (tag, request_id, result)
                    });
                }
                Action::Media {
                    command_id,
                    command,
                } => {
                    let media = run.legs.get(&child).and_then(|l| l.media.as_ref());
                    more.extend(play_side_command(
                        &task.node,
                        task.account.as_str(),
                        media,
                        &mut whisper.interpreter,
                        &mut whisper.commands,
                        command_id,
                        command,
                    ));
                }
                Action::StopMedia { .. } => {
                    if let Some(media) = run.legs.get(&child).and_then(|l| l.media.as_ref()) {
                        media.stop_playback();
                    }
                }
                Action::Emit(payload) => child_events.push(payload),
                Action::Completed => {
                    let result = whisper.interpreter.whisper_result();
                    run.whisper = None;
                    match result {
                        Some(WhisperResult::Connect) => parent.extend(
                            task.report_dial(run_id(task), DialEvent::WhisperFinished { child }),
                        ),
                        _ => hang_up(run.legs.get(&child).and_then(|l| l.call.as_ref())),
                    }
                }
                // Hangup and Reject refuse the bridge (whisper_result says so at the end);
                // Answer is moot (the callee answered); Dial is not allowed in a whisper.
                _ => {}
            }
        }
        actions = more;
    }
    if !child_events.is_empty() {
        let child = task.dial.as_ref().and_then(|d| d.winner.clone());
        if let Some(child) = child {
            append_child(task, &child, ExpectedVersion::Any, child_events).await;
        }
    }
    parent
}

fn run_id(task: &CallTask) -> DialId {
    task.dial.as_ref().map(|d| d.id).unwrap_or_default()
}

/// A whisper webhook answered.
pub async fn on_whisper_fetched(
    task: &mut CallTask,
    child: &CallSid,
    request_id: u32,
    result: FetchResult,
) -> Vec<Action> {
    append_child(
        task,
        child,
        ExpectedVersion::Any,
        vec![responded_payload(request_id, &result).into()],
    )
    .await;
    let Some(whisper) = task
        .dial
        .as_mut()
        .and_then(|d| d.whisper.as_mut())
        .filter(|w| &w.child == child)
    else {
        return Vec::new();
    };
    let actions = whisper
        .interpreter
        .on_fetched(request_id, result, Instant::now());
    run_whisper(task, actions).await
}

/// The whisper program's timer.
pub async fn on_dial_timer(task: &mut CallTask, now: Instant) -> Vec<Action> {
    let due = task
        .dial
        .as_ref()
        .and_then(DialRun::poll_timeout)
        .is_some_and(|at| at <= now);
    if !due {
        return Vec::new();
    }
    let Some(whisper) = task.dial.as_mut().and_then(|d| d.whisper.as_mut()) else {
        return Vec::new();
    };
    let actions = whisper.interpreter.on_timer(now);
    run_whisper(task, actions).await
}

/// A child leg ended: write its `call.completed`, and end the dial when it was the bridged
/// party or the last one ringing.
async fn leg_ended(
    task: &mut CallTask,
    child: &CallSid,
    status: CallStatus,
    sip_code: u16,
    by: &str,
) -> Vec<Action> {
    let Some(run) = task.dial.as_mut() else {
        return Vec::new();
    };
    let Some(leg) = run.legs.get_mut(child) else {
        return Vec::new();
    };
    if leg.ended {
        return Vec::new();
    }
    leg.ended = true;
    let answered = leg.answered;
    let status = if answered.is_none() && leg.cancelled_by_us {
        CallStatus::Canceled
    } else {
        status
    };
    if let Some(media) = leg.media.take() {
        media.close();
    }
    let is_winner = run.winner.as_ref() == Some(child);
    if run.whisper.as_ref().is_some_and(|w| &w.child == child) {
        run.whisper = None;
    }
    let ending = match answered {
        Some((at, wall)) => completed_answered(at, wall, by),
        None => completed_unanswered(status, sip_code, by),
    };
    let duration_s = ending.duration_s;
    append_child(task, child, ExpectedVersion::Any, vec![ending.into()]).await;
    let Some(run) = task.dial.as_mut() else {
        return Vec::new();
    };
    if is_winner {
        let event = completed(Some(child.clone()), DialCallStatus::Completed, duration_s);
        let Some(event) = run.hold_for_recording(task.media.as_ref(), event) else {
            return Vec::new();
        };
        let id = run.id;
        return task.report_dial(id, event);
    }
    run.failures.push(status);
    after_leg_ended(task).await
}

/// After a losing leg ended: ring the next party (sequential), or report the dial's failure
/// once every leg is over.
async fn after_leg_ended(task: &mut CallTask) -> Vec<Action> {
    let Some(run) = task.dial.as_mut() else {
        return Vec::new();
    };
    if run.winner.is_some() {
        return Vec::new();
    }
    if !run.ending {
        if let Some(next) = run.queue.pop_front() {
            let id = run.id;
            return place_party(task, id, next).await;
        }
    }
    if run.legs.values().any(|l| !l.ended) {
        return Vec::new();
    }
    let status = if run.ending {
        DialCallStatus::Canceled
    } else if run.failures.contains(&CallStatus::NoAnswer)
        || run.failures.contains(&CallStatus::Canceled)
    {
        DialCallStatus::NoAnswer
    } else if run.failures.contains(&CallStatus::Busy) {
        DialCallStatus::Busy
    } else {
        DialCallStatus::Failed
    };
    let child = (run.legs.len() == 1)
        .then(|| run.legs.keys().next().cloned())
        .flatten();
    if let (Some(_ringback), Some(media)) = (run.ringback.take(), task.media.as_ref()) {
        media.stop_playback();
    }
    let id = run.id;
    let event = completed(child, status, 0);
    match run.hold_for_recording(task.media.as_ref(), event) {
        Some(event) => task.report_dial(id, event),
        None => Vec::new(),
    }
}

/// Connects the caller and the answered party.
pub async fn bridge(task: &mut CallTask, dial_id: DialId, child: &CallSid) -> Vec<Action> {
    let Some(run) = task.dial.as_mut().filter(|d| d.id == dial_id) else {
        return Vec::new();
    };
    let (Some(parent), Some(leg)) = (task.media.as_ref(), run.legs.get(child)) else {
        return Vec::new();
    };
    let Some(child_media) = leg.media.as_ref() else {
        return Vec::new();
    };
    // A recording from ringing runs already, on the parent's session.
    let from_answer = run
        .plan
        .recording
        .clone()
        .filter(|_| run.recording.is_none());
    let record = from_answer.as_ref().map(|r| BridgeRecording {
        path: task
            .node
            .recordings_dir
            .join(format!("{}.wav", r.recording_sid)),
        channels: if r.dual_channel {
            RecordingChannels::Dual
        } else {
            RecordingChannels::Mono
        },
        from_ringing: false,
        trim_silence: r.trim == Trim::TrimSilence,
    });
    let channels = record.as_ref().map(|r| r.channels.count());
    match task.node.media.bridge(
        parent,
        child_media,
        BridgeOptions {
            record,
            early_media: false,
        },
    ) {
        Ok(handle) => {
            run.ringback = None;
            let started = match (from_answer, channels) {
                (Some(recording), Some(channels)) => {
                    run.recording = Some(DialRecordingState {
                        sid: recording.recording_sid.clone(),
                        media_id: handle.recording_id(),
                        of_parent_session: false,
                    });
                    Some(recording_started(task, &recording, channels))
                }
                _ => None,
            };
            if let Some(run) = task.dial.as_mut() {
                run.bridge = Some(handle);
            }
            if let Some(started) = started {
                task.push_event(started);
            }
        }
        Err(error) => {
            tracing::warn!(call = %task.sid, %child, %error, "cannot bridge; hanging up the callee");
            hang_up(leg.call.as_ref());
        }
    }
    Vec::new()
}

/// `record-from-ringing*`: when the first party rings, records the parent's session (the
/// caller, and what the caller hears: ringback, then the callee once bridged). When a
/// whole-call recording (REST `Record=true`) holds the session's recorder already, the
/// dial records the bridge from the answer instead.
fn start_recording_from_ringing(task: &mut CallTask) {
    let Some(run) = task.dial.as_mut() else {
        return;
    };
    let Some(plan) = run.plan.recording.clone().filter(|r| r.from_ringing) else {
        return;
    };
    let (None, Some(media)) = (run.recording.as_ref(), task.media.as_ref()) else {
        return;
    };
    let options = CallRecordingOptions {
        path: task
            .node
            .recordings_dir
            .join(format!("{}.wav", plan.recording_sid)),
        channels: if plan.dual_channel {
            RecordingChannels::Dual
        } else {
            RecordingChannels::Mono
        },
        track: SessionTrack::parse(plan.track.as_str()).unwrap_or_default(),
        trim_silence: plan.trim == Trim::TrimSilence,
    };
    let channels = options.file_channels();
    match media.start_call_recording(options) {
        Ok(id) => {
            run.recording = Some(DialRecordingState {
                sid: plan.recording_sid.clone(),
                media_id: Some(id),
                of_parent_session: true,
            });
            let started = recording_started(task, &plan, channels);
            task.push_event(started);
        }
        Err(error) => {
            tracing::info!(call = %task.sid, %error, "recording the dial from the answer instead");
        }
    }
}

/// The `recording.started` of a dial's recording.
fn recording_started(
    task: &CallTask,
    recording: &DialRecording,
    channels: u16,
) -> RecordingStarted {
    RecordingStarted {
        url: Some(crate::roles::node::recording_url(
            &task.node.interpreter.api_base_url,
            task.account.as_str(),
            &recording.recording_sid,
        )),
        track: Some(recording.track.as_str().to_owned()),
        status_callback: recording.status_callback.clone(),
        status_callback_method: recording.status_callback_method,
        status_callback_events: recording.status_callback_events.clone(),
        ..RecordingStarted::new(
            recording.recording_sid.clone(),
            "DialVerb",
            u8::try_from(channels).unwrap_or(1),
        )
    }
}

/// Ends the dial (hangupOnStar, timeLimit, caller hangup, REST redirect): the caller stays.
pub async fn end_dial(task: &mut CallTask, dial_id: DialId, reason: DialEndReason) -> Vec<Action> {
    if crate::roles::room::is_dial(task, dial_id) {
        return crate::roles::room::leave(task).await;
    }
    let Some(run) = task.dial.as_mut().filter(|d| d.id == dial_id) else {
        return Vec::new();
    };
    tracing::debug!(call = %task.sid, reason = reason.as_str(), "ending the dial");
    run.ending = true;
    run.queue.clear();
    if run.ringback.take().is_some() {
        if let Some(media) = &task.media {
            media.stop_playback();
        }
    }
    let mut live = 0;
    for leg in run.legs.values_mut().filter(|l| !l.ended) {
        leg.cancelled_by_us = leg.answered.is_none();
        hang_up(leg.call.as_ref());
        live += 1;
    }
    if live == 0 {
        return after_leg_ended(task).await;
    }
    Vec::new()
}

/// The call is ending with a dial still running: hang up and close every child leg and
/// write their `call.completed` (their own SIP reports will not be read any more).
pub async fn abandon(task: &mut CallTask) {
    if task.room.is_some() {
        let _ = crate::roles::room::leave(task).await;
    }
    let Some(mut run) = task.dial.take() else {
        return;
    };
    drop(run.bridge.take());
    let mut endings = Vec::new();
    for (sid, leg) in run.legs.iter_mut().filter(|(_, l)| !l.ended) {
        hang_up(leg.call.as_ref());
        if let Some(media) = leg.media.take() {
            media.close();
        }
        let completed = match leg.answered {
            Some((at, wall)) => completed_answered(at, wall, "dialtone"),
            None => completed_unanswered(CallStatus::Canceled, 487, "dialtone"),
        };
        endings.push((sid.clone(), completed));
    }
    for (sid, completed) in endings {
        append_child(task, &sid, ExpectedVersion::Any, vec![completed.into()]).await;
    }
}

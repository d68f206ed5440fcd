//! The life of one call on the node that owns it: the imperative shell around the TwiML
//! interpreter. It carries out the interpreter's actions (webhooks, SIP answer/reject/BYE,
//! media commands, dials, events) and feeds every outcome back (webhook results, media
//! outcomes, DTMF, the caller hanging up, child legs, timers). It is the only writer of its
//! call's stream and of the streams of the child legs it dials.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use dialtone_events::payload::{
    CallAnswered, CallCompleted, CallStatus, DtmfReceived, DtmfSource, Payload, RecordingCompleted,
    RecordingStarted,
};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_media::outcome::MediaOutcome;
use dialtone_media::playout::CommandId as MediaCommandId;
use dialtone_media::runtime::MediaSession;
use dialtone_sip::endpoint::{CallEvent, CallHandle, ReofferAnswer};
use dialtone_sip::sdp::Negotiated;
use dialtone_voice::interpreter::dial::{DialEvent, DialId, DialPlan};
use dialtone_voice::interpreter::{
    Action, CommandId, HangupReason, Interpreter, MediaCommand, MediaDone, RecordingOutcome,
};
use dialtone_voice::webhook::{requested_payload, responded_payload, CallSession, FetchResult};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub(crate) use crate::roles::codecs::{codec_name, media_codec};
use crate::roles::dial::DialRun;
pub(crate) use crate::roles::media_commands::runtime_command;
use crate::roles::node::Node;
use crate::roles::registry::CallControl;
use crate::roles::room::RoomRun;
use crate::roles::signal::Signal;

/// Everything a call task needs, prepared by the edge (inbound) or the originator
/// (REST outbound, already answered).
pub struct CallSetup {
    pub node: Arc<Node>,
    pub sid: CallSid,
    pub account: AccountSid,
    pub sip: CallHandle,
    pub sip_events: mpsc::UnboundedReceiver<CallEvent>,
    pub media: MediaSession,
    pub negotiated: Negotiated,
    /// Inbound: the SDP answer to send when the TwiML answers. Outbound: `None`.
    pub sdp_answer: Option<String>,
    /// Outbound calls start answered.
    pub answered: Option<(Instant, OffsetDateTime)>,
    pub interpreter: Interpreter,
    pub webhooks: CallSession,
    pub control: mpsc::Receiver<CallControl>,
    /// When the INVITE arrived (for the INVITE→200 latency metric).
    pub invited_at: Instant,
    /// A recording of the whole call already started (REST `Record=true`): its media id and
    /// the `recording.started` to write.
    pub call_recording: Option<(MediaCommandId, RecordingStarted)>,
    /// The longest the call may last once answered (what the account can pay for).
    pub max_duration: Option<std::time::Duration>,
}

/// Who ended the call, in `call.completed` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndedBy {
    Caller,
    Dialtone,
    Api,
    Error,
}

impl EndedBy {
    fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Dialtone => "dialtone",
            EndedBy::Api => "api",
            EndedBy::Error => "error",
        }
    }
}

/// Whose webhook a fetch belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchFor {
    Call,
    /// A child leg's whisper program.
    Whisper(CallSid),
    /// The conference wait program.
    Wait,
}

pub(crate) struct CallTask {
    pub(crate) node: Arc<Node>,
    pub(crate) sid: CallSid,
    pub(crate) account: AccountSid,
    sip: CallHandle,
    pub(crate) media: Option<MediaSession>,
    negotiated: Negotiated,
    sdp_answer: Option<String>,
    pub(crate) interpreter: Interpreter,
    pub(crate) webhooks: Arc<CallSession>,
    invited_at: Instant,
    /// Events waiting to be appended at the end of the current step.
    pending: Vec<NewEvent>,
    pub(crate) fetches: JoinSet<(FetchFor, u32, FetchResult)>,
    /// Media command ids → interpreter command ids.
    media_commands: HashMap<MediaCommandId, CommandId>,
    /// Media ids of `Record` commands → the recording they make.
    /// Media ids of recordings → the `recording.started` to write when they start.
    recordings: HashMap<MediaCommandId, RecordingStarted>,
    pub(crate) answered: Option<(Instant, OffsetDateTime)>,
    /// The SIP side is gone (BYE, CANCEL, termination): no more SIP or media commands.
    pub(crate) sip_gone: bool,
    ended_by: Option<EndedBy>,
    /// Final status and SIP code when the call ends without having been answered.
    unanswered_end: Option<(CallStatus, u16)>,
    /// The `<Dial>` in progress, if any.
    pub(crate) dial: Option<DialRun>,
    /// The conference this call is in (through a `<Dial><Conference>`), if any.
    pub(crate) room: Option<RoomRun>,
    /// Child legs and whispers report here.
    pub(crate) signals_tx: mpsc::UnboundedSender<Signal>,
    /// The longest the call may last once answered (the account's rated limit).
    max_duration: Option<std::time::Duration>,
}

/// Runs the call until its program completes and `call.completed` is written.
pub async fn run(setup: CallSetup, first_actions: Vec<Action>) {
    let CallSetup {
        node,
        sid,
        account,
        sip,
        mut sip_events,
        mut media,
        negotiated,
        sdp_answer,
        answered,
        interpreter,
        webhooks,
        mut control,
        invited_at,
        call_recording,
        max_duration,
    } = setup;
    let mut media_outcomes = media.outcomes();
    let (signals_tx, mut signals) = mpsc::unbounded_channel();
    let mut task = CallTask {
        node,
        sid: sid.clone(),
        account,
        sip,
        media: Some(media),
        negotiated,
        sdp_answer,
        interpreter,
        webhooks: Arc::new(webhooks),
        invited_at,
        pending: Vec::new(),
        fetches: JoinSet::new(),
        media_commands: HashMap::new(),
        recordings: HashMap::new(),
        answered,
        sip_gone: false,
        ended_by: None,
        unanswered_end: None,
        dial: None,
        room: None,
        signals_tx,
        max_duration,
    };
    if let Some((media_id, started)) = call_recording {
        task.recordings.insert(media_id, started);
    }
    metrics::gauge!("dialtone_calls_active").increment(1.0);
    let mut queue: VecDeque<Action> = first_actions.into();
    let mut control_open = true;
    loop {
        if task.execute(&mut queue).await {
            break;
        }
        task.flush().await;
        let timeout = [
            task.interpreter.poll_timeout(),
            task.dial.as_ref().and_then(DialRun::poll_timeout),
            task.paid_until(),
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = async {
            match timeout {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(joined) = task.fetches.join_next(), if !task.fetches.is_empty() => {
                match joined {
                    Ok((FetchFor::Call, request_id, result)) => {
                        task.pending.push(task.event(responded_payload(request_id, &result)));
                        queue.extend(task.interpreter.on_fetched(request_id, result, Instant::now()));
                    }
                    Ok((FetchFor::Whisper(child), request_id, result)) => {
                        queue.extend(task.on_whisper_fetched(&child, request_id, result).await);
                    }
                    Ok((FetchFor::Wait, request_id, result)) => {
                        crate::roles::room::on_wait_fetched(&mut task, request_id, result);
                    }
                    Err(error) => tracing::error!(call = %task.sid, %error, "webhook task failed"),
                }
            }
            event = sip_events.recv(), if !task.sip_gone => {
                queue.extend(task.on_sip_event(event));
            }
            Some(outcome) = recv_outcome(&mut media_outcomes) => {
                queue.extend(task.on_media_outcome(outcome));
            }
            Some(signal) = signals.recv() => {
                queue.extend(task.on_signal(signal).await);
            }
            _ = sleep => {
                let now = Instant::now();
                if task.paid_until().is_some_and(|until| until <= now) {
                    tracing::info!(call = %task.sid, "the account's balance is used up: hanging up");
                    metrics::counter!("dialtone_calls_cut_off_total").increment(1);
                    queue.extend(task.on_control(CallControl::Hangup).await);
                }
                queue.extend(task.interpreter.on_timer(now));
                queue.extend(task.on_dial_timer(now).await);
            }
            command = control.recv(), if control_open => match command {
                Some(command) => queue.extend(task.on_control(command).await),
                None => control_open = false,
            },
        }
    }
    task.flush().await;
    task.finish_recordings(&mut media_outcomes).await;
    task.finish().await;
    task.node.registry.remove(&sid);
    metrics::gauge!("dialtone_calls_active").decrement(1.0);
}

async fn recv_outcome(
    rx: &mut Option<mpsc::UnboundedReceiver<MediaOutcome>>,
) -> Option<MediaOutcome> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl CallTask {
    /// When the answered call has used up what its account can pay (while it is up).
    fn paid_until(&self) -> Option<Instant> {
        let (answered, _) = self.answered?;
        let limit = self.max_duration?;
        (!self.sip_gone).then_some(answered + limit)
    }

    pub(crate) fn event(&self, payload: impl Into<Payload>) -> NewEvent {
        NewEvent::new(self.account.as_str(), payload)
    }

    pub(crate) fn push_event(&mut self, payload: impl Into<Payload>) {
        let event = self.event(payload);
        self.pending.push(event);
    }

    /// Appends the events of this step, in order. The call task is the stream's only
    /// writer, so `Any` cannot interleave with a foreign write of the same call.
    pub(crate) async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending);
        if let Err(error) = self
            .node
            .log
            .append(self.sid.as_str(), ExpectedVersion::Any, events)
            .await
        {
            tracing::error!(call = %self.sid, %error, "cannot append call events");
        }
    }

    /// Executes queued actions; true once the program is complete.
    async fn execute(&mut self, queue: &mut VecDeque<Action>) -> bool {
        while let Some(action) = queue.pop_front() {
            let now = Instant::now();
            match action {
                Action::Fetch {
                    request_id,
                    request,
                } => {
                    self.push_event(requested_payload(&request, request_id, 1));
                    let session = self.webhooks.clone();
                    self.fetches.spawn(async move {
                        let result = session.fetch(&request).await;
                        (FetchFor::Call, request_id, result)
                    });
                }
                Action::Answer => queue.extend(self.answer(now).await),
                Action::Reject { sip_code, .. } => {
                    if !self.sip_gone {
                        if let Err(error) = self.sip.reject(sip_code, None).await {
                            tracing::warn!(call = %self.sid, %error, "reject failed");
                        }
                        self.sip_gone = true;
                    }
                    let status = if sip_code == 486 {
                        CallStatus::Busy
                    } else {
                        CallStatus::Failed
                    };
                    self.unanswered_end = Some((status, sip_code));
                    self.ended_by.get_or_insert(EndedBy::Dialtone);
                }
                Action::Media {
                    command_id,
                    command,
                } => {
                    if let Some(done) = self.start_media(command_id, command) {
                        queue.extend(self.interpreter.on_media_done(command_id, done, now));
                    }
                }
                Action::StopMedia { .. } => {
                    if let Some(media) = &self.media {
                        media.stop_playback();
                        media.stop_recording();
                    }
                }
                Action::Hangup { reason } => {
                    tracing::debug!(call = %self.sid, ?reason, "hanging up");
                    self.ended_by.get_or_insert(match reason {
                        HangupReason::ApplicationError | HangupReason::LoopDetected => {
                            EndedBy::Error
                        }
                        _ => EndedBy::Dialtone,
                    });
                    self.hangup_sip().await;
                }
                Action::Emit(payload) => self.push_event(payload),
                Action::Dial { dial_id, plan } => {
                    queue.extend(self.start_dial(dial_id, plan).await)
                }
                Action::Bridge {
                    dial_id,
                    child_call_sid,
                } => queue.extend(self.bridge(dial_id, &child_call_sid).await),
                Action::EndDial { dial_id, reason } => {
                    queue.extend(self.end_dial(dial_id, reason).await)
                }
                Action::Completed => return true,
            }
        }
        false
    }

    async fn answer(&mut self, now: Instant) -> Vec<Action> {
        if self.answered.is_some() || self.sip_gone {
            return Vec::new();
        }
        let Some(sdp_answer) = self.sdp_answer.clone() else {
            return Vec::new();
        };
        if let Some(media) = &self.media {
            media.set_remote(
                self.negotiated.remote_rtp,
                media_codec(self.negotiated.codec),
                self.negotiated.telephone_event_pt,
            );
        }
        if let Err(error) = self.sip.answer(sdp_answer).await {
            tracing::warn!(call = %self.sid, %error, "answer failed; treating the caller as gone");
            self.sip_gone = true;
            self.ended_by.get_or_insert(EndedBy::Caller);
            return self.interpreter.on_hangup(now);
        }
        metrics::histogram!("dialtone_invite_to_answer_seconds")
            .record(self.invited_at.elapsed().as_secs_f64());
        self.answered = Some((now, OffsetDateTime::now_utc()));
        let codec = codec_name(self.negotiated.codec);
        self.push_event(CallAnswered {
            codec: Some(codec.to_owned()),
        });
        self.interpreter.on_answered(now)
    }

    /// Starts a media command; returns an immediate outcome when it cannot run.
    fn start_media(&mut self, command_id: CommandId, command: MediaCommand) -> Option<MediaDone> {
        let media = match &self.media {
            Some(media) if !self.sip_gone => media,
            _ => return Some(MediaDone::Interrupted),
        };
        let (runtime_command, recording) = match runtime_command(
            command,
            &self.node.recordings_dir,
            &self.node.interpreter.api_base_url,
            self.account.as_str(),
        ) {
            Ok(converted) => converted,
            Err(done) => return Some(done),
        };
        let media_id = media.play(runtime_command);
        self.media_commands.insert(media_id, command_id);
        if let Some(recording) = recording {
            self.recordings.insert(media_id, recording);
        }
        None
    }

    fn on_media_outcome(&mut self, outcome: MediaOutcome) -> Vec<Action> {
        let now = Instant::now();
        match outcome {
            MediaOutcome::Finished { id } => self.media_done(id, MediaDone::Finished, now),
            MediaOutcome::Interrupted { id } => self.media_done(id, MediaDone::Interrupted, now),
            MediaOutcome::Failed { id, error } => {
                tracing::warn!(call = %self.sid, %error, "media command failed");
                if self.dial.as_mut().is_some_and(|d| d.recording_failed(id)) {
                    return self.dial_recording_finished(None);
                }
                self.media_done(id, MediaDone::Failed(error.to_string()), now)
            }
            MediaOutcome::Dtmf {
                digit,
                source,
                duration_ms,
            } => self.dtmf(digit, source, Some(duration_ms), now),
            MediaOutcome::RecordingStarted { id } => {
                if let Some(started) = self.recordings.get(&id).cloned() {
                    self.push_event(started);
                }
                Vec::new()
            }
            MediaOutcome::RecordingFinished {
                id,
                path,
                duration_ms,
                empty,
                silent,
                end,
            } => {
                let absent = empty || silent;
                if let Some(started) = self.recordings.remove(&id) {
                    let completed = RecordingCompleted {
                        recording_sid: started.recording_sid,
                        status: if absent {
                            "absent".into()
                        } else {
                            "completed".into()
                        },
                        duration_ms,
                        path: self.relative_path(&path),
                        channels: 1,
                        source: "RecordVerb".into(),
                        digits: end.digits(),
                        error_code: match (empty, silent) {
                            (true, _) => Some(16101),
                            (false, true) => Some(16102),
                            _ => None,
                        },
                    };
                    self.push_event(completed);
                }
                let outcome = RecordingOutcome {
                    duration_ms,
                    digits: end.digits(),
                    absent,
                };
                self.media_done(id, MediaDone::Recorded(outcome), now)
            }
            MediaOutcome::BridgeRecordingFinished {
                path,
                duration_ms,
                channels,
                ..
            } => self.dial_recording_written(&path, duration_ms, channels),
            MediaOutcome::CallRecordingFinished {
                id,
                path,
                duration_ms,
                channels,
            } => {
                let of_dial = self
                    .dial
                    .as_ref()
                    .and_then(|d| d.recording.as_ref())
                    .is_some_and(|r| r.media_id == Some(id));
                if of_dial {
                    return self.dial_recording_written(&path, duration_ms, channels);
                }
                if let Some(started) = self.recordings.remove(&id) {
                    // Twilio: a recording under a second is absent (16101).
                    let absent = duration_ms < 1000;
                    let completed = RecordingCompleted {
                        recording_sid: started.recording_sid,
                        status: if absent {
                            "absent".into()
                        } else {
                            "completed".into()
                        },
                        duration_ms,
                        path: self.relative_path(&path),
                        channels: u8::try_from(channels).unwrap_or(1),
                        source: started.source,
                        digits: None,
                        error_code: absent.then_some(16101),
                    };
                    self.push_event(completed);
                }
                Vec::new()
            }
            other => {
                tracing::debug!(call = %self.sid, ?other, "media outcome ignored");
                Vec::new()
            }
        }
    }

    /// A dial's recording is written: its `recording.completed`, then the dial's end if it
    /// was held back for it.
    fn dial_recording_written(
        &mut self,
        path: &std::path::Path,
        duration_ms: u64,
        channels: u16,
    ) -> Vec<Action> {
        let recording = self.dial.as_mut().and_then(|d| d.recording.take());
        if let Some(recording) = recording {
            let completed = RecordingCompleted {
                recording_sid: recording.sid,
                status: "completed".into(),
                duration_ms,
                path: self.relative_path(path),
                channels: u8::try_from(channels).unwrap_or(1),
                source: "DialVerb".into(),
                digits: None,
                error_code: None,
            };
            self.push_event(completed);
        }
        self.dial_recording_finished(Some(duration_ms))
    }

    /// Stops the recordings still running (a dial's, a whole-call one) and waits (briefly)
    /// for their files, so that `recording.completed` precedes `call.completed` even when
    /// the caller hangs up in the middle of a recorded dial.
    async fn finish_recordings(
        &mut self,
        outcomes: &mut Option<mpsc::UnboundedReceiver<MediaOutcome>>,
    ) {
        let Some(media) = &self.media else { return };
        let call_recording = media
            .stop_call_recording()
            .filter(|id| self.recordings.contains_key(id));
        let dial_pending = match self.dial.as_mut() {
            Some(dial) => dial.stop_recording(self.media.as_ref()),
            None => false,
        };
        let pending = |task: &CallTask| {
            call_recording.is_some_and(|id| task.recordings.contains_key(&id))
                || (dial_pending && task.dial.as_ref().is_some_and(|d| d.recording.is_some()))
        };
        if !pending(self) {
            return;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        while pending(self) {
            match tokio::time::timeout_at(deadline, recv_outcome(outcomes)).await {
                Ok(Some(outcome)) => {
                    let _ = self.on_media_outcome(outcome);
                }
                _ => break,
            }
        }
        self.flush().await;
    }

    /// `path` relative to the data dir, as recording events store it.
    pub(crate) fn relative_path(&self, path: &std::path::Path) -> String {
        self.node.relative_path(path)
    }

    fn media_done(
        &mut self,
        media_id: MediaCommandId,
        done: MediaDone,
        now: Instant,
    ) -> Vec<Action> {
        match self.media_commands.remove(&media_id) {
            Some(command_id) => self.interpreter.on_media_done(command_id, done, now),
            None => {
                crate::roles::room::wait_media_done(self, media_id, done);
                Vec::new()
            }
        }
    }

    fn dtmf(
        &mut self,
        digit: char,
        source: DtmfSource,
        duration_ms: Option<u32>,
        now: Instant,
    ) -> Vec<Action> {
        self.push_event(DtmfReceived {
            digit: digit.to_string(),
            source,
            duration_ms,
        });
        self.interpreter.on_dtmf(digit, now)
    }

    fn on_sip_event(&mut self, event: Option<CallEvent>) -> Vec<Action> {
        let now = Instant::now();
        match event {
            Some(CallEvent::Acked { .. })
            | Some(CallEvent::ReInviteAcked { .. })
            | Some(CallEvent::Progress { .. })
            | Some(CallEvent::Answered { .. }) => Vec::new(),
            Some(CallEvent::Info { content_type, body }) => {
                match parse_dtmf_info(content_type.as_deref(), &body) {
                    Some((digit, duration_ms)) => {
                        self.dtmf(digit, DtmfSource::SipInfo, duration_ms, now)
                    }
                    None => Vec::new(),
                }
            }
            Some(CallEvent::ReInvite { .. }) => {
                // Hold/unhold or a refresh: keep our SDP (the SIP layer mirrors the
                // direction of the new offer in the answer).
                let sip = self.sip.clone();
                tokio::spawn(async move {
                    let _ = sip
                        .respond_to_reinvite(ReofferAnswer::Accept { sdp: None })
                        .await;
                });
                Vec::new()
            }
            Some(CallEvent::Cancelled) => {
                self.caller_gone(Some((CallStatus::Canceled, 487)));
                self.interpreter.on_hangup(now)
            }
            Some(CallEvent::ByeReceived)
            | Some(CallEvent::SessionExpired)
            | Some(CallEvent::AckTimeout) => {
                self.caller_gone(None);
                self.interpreter.on_hangup(now)
            }
            Some(CallEvent::Terminated { .. }) | None => {
                let was_gone = self.sip_gone;
                self.caller_gone(None);
                if was_gone {
                    Vec::new()
                } else {
                    self.interpreter.on_hangup(now)
                }
            }
        }
    }

    fn caller_gone(&mut self, unanswered: Option<(CallStatus, u16)>) {
        self.sip_gone = true;
        self.ended_by.get_or_insert(EndedBy::Caller);
        if self.answered.is_none() {
            self.unanswered_end
                .get_or_insert(unanswered.unwrap_or((CallStatus::Canceled, 487)));
        }
        if let Some(media) = &self.media {
            media.stop_playback();
            media.stop_recording();
        }
    }

    async fn on_control(&mut self, command: CallControl) -> Vec<Action> {
        let now = Instant::now();
        match command {
            CallControl::Hangup | CallControl::HangupByApi => {
                let by = if matches!(command, CallControl::HangupByApi) {
                    EndedBy::Api
                } else {
                    EndedBy::Dialtone
                };
                self.ended_by.get_or_insert(by);
                let actions = self.interpreter.on_hangup(now);
                if !self.sip_gone {
                    self.sip_gone = true;
                    if self.answered.is_none() {
                        self.unanswered_end = Some((CallStatus::Canceled, 487));
                    }
                    if let Some(media) = &self.media {
                        media.stop_playback();
                        media.stop_recording();
                    }
                    let sip = self.sip.clone();
                    tokio::spawn(async move {
                        let _ = sip.hangup().await;
                    });
                }
                actions
            }
            CallControl::Redirect { url, method, reply } => {
                let result = self.interpreter.redirect(&url, method, now);
                self.live_update(result, reply)
            }
            CallControl::Twiml { twiml, reply } => {
                let result = self.interpreter.replace_twiml(&twiml, now);
                self.live_update(result, reply)
            }
            CallControl::ConferenceEnded => self.conference_ended(now).await,
            CallControl::ConferenceStarted => {
                crate::roles::room::conference_started(self);
                Vec::new()
            }
            CallControl::ConferenceUpdate { muted, hold, reply } => {
                crate::roles::room::conference_update(self, muted, hold, reply).await;
                Vec::new()
            }
            CallControl::ConferenceKick { reply } => {
                let in_room = crate::roles::room::in_conference(self);
                // Answered once the leave is logged, so the API's answer reflects it.
                let actions = self.conference_ended(now).await;
                let _ = reply.send(in_room);
                actions
            }
            CallControl::ConferenceEnd { reply } => {
                crate::roles::room::end_conference(self, reply).await;
                Vec::new()
            }
        }
    }

    /// A REST update took effect (or not): stop what plays and go on with the new TwiML.
    fn live_update(
        &mut self,
        result: Result<Vec<Action>, dialtone_voice::interpreter::InterpreterError>,
        reply: crate::roles::registry::Reply,
    ) -> Vec<Action> {
        match result {
            Ok(actions) => {
                let _ = reply.send(Ok(()));
                actions
            }
            Err(error) => {
                let reason = match error {
                    dialtone_voice::interpreter::InterpreterError::CallEnded => {
                        crate::roles::commands::INVALID_STATE.to_owned()
                    }
                    other => other.to_string(),
                };
                let _ = reply.send(Err(reason));
                Vec::new()
            }
        }
    }

    pub(crate) async fn hangup_sip(&mut self) {
        if self.sip_gone {
            return;
        }
        self.sip_gone = true;
        if self.answered.is_none() {
            self.unanswered_end.get_or_insert((CallStatus::Failed, 603));
        }
        if let Err(error) = self.sip.hangup().await {
            tracing::debug!(call = %self.sid, %error, "BYE failed");
        }
    }

    /// Writes `call.completed` and frees the media session.
    async fn finish(&mut self) {
        self.hangup_sip().await;
        self.abandon_dial().await;
        if let Some(media) = self.media.take() {
            let stats = media.stats();
            metrics::counter!("dialtone_rtp_packets_received_total").increment(stats.rx_packets);
            metrics::counter!("dialtone_rtp_packets_sent_total").increment(stats.tx_packets);
            tracing::debug!(call = %self.sid, rx = stats.rx_packets, tx = stats.tx_packets, "media closed");
            media.close();
        }
        self.fetches.abort_all();
        let ended_by = self.ended_by.unwrap_or(EndedBy::Dialtone);
        let completed = match self.answered {
            Some((at, wall)) => completed_answered(at, wall, ended_by.as_str()),
            None => {
                let (status, sip_code) = self.unanswered_end.unwrap_or((CallStatus::Failed, 500));
                completed_unanswered(status, sip_code, ended_by.as_str())
            }
        };
        metrics::counter!("dialtone_calls_completed_total", "status" => completed.status.as_str())
            .increment(1);
        self.push_event(completed);
        self.flush().await;
    }

    /// Dial outcomes that finish when the bridge recording is written.
    fn dial_recording_finished(&mut self, duration_ms: Option<u64>) -> Vec<Action> {
        let Some(dial) = self.dial.as_mut() else {
            return Vec::new();
        };
        match dial.recording_done(duration_ms) {
            Some((dial_id, event)) => self.report_dial(dial_id, event),
            None => Vec::new(),
        }
    }

    /// Tells the interpreter how the dial went, once.
    pub(crate) fn report_dial(&mut self, dial_id: DialId, event: DialEvent) -> Vec<Action> {
        if matches!(event, DialEvent::Completed { .. }) {
            self.dial = None;
        }
        self.interpreter
            .on_dial_event(dial_id, event, Instant::now())
    }

    async fn on_signal(&mut self, signal: Signal) -> Vec<Action> {
        match signal {
            Signal::LinkPlaced { .. } | Signal::Link { .. } => {
                crate::roles::room::on_link_signal(self, signal).await
            }
            leg => crate::roles::dial::on_signal(self, leg).await,
        }
    }

    async fn on_whisper_fetched(
        &mut self,
        child: &CallSid,
        request_id: u32,
        result: FetchResult,
    ) -> Vec<Action> {
        crate::roles::dial::on_whisper_fetched(self, child, request_id, result).await
    }

    async fn on_dial_timer(&mut self, now: Instant) -> Vec<Action> {
        crate::roles::dial::on_dial_timer(self, now).await
    }

    async fn bridge(&mut self, dial_id: DialId, child: &CallSid) -> Vec<Action> {
        crate::roles::dial::bridge(self, dial_id, child).await
    }

    async fn end_dial(
        &mut self,
        dial_id: DialId,
        reason: dialtone_voice::interpreter::dial::DialEndReason,
    ) -> Vec<Action> {
        crate::roles::dial::end_dial(self, dial_id, reason).await
    }

    async fn conference_ended(&mut self, _now: Instant) -> Vec<Action> {
        crate::roles::room::conference_ended(self).await
    }

    async fn abandon_dial(&mut self) {
        crate::roles::dial::abandon(self).await
    }

    async fn start_dial(&mut self, dial_id: DialId, plan: DialPlan) -> Vec<Action> {
        if self.sip_gone {
            let event = DialEvent::Completed {
                child: None,
                status: dialtone_voice::interpreter::dial::DialCallStatus::Canceled,
                duration_s: 0,
                recording_duration_ms: None,
            };
            return self
                .interpreter
                .on_dial_event(dial_id, event, Instant::now());
        }
        crate::roles::dial::start(self, dial_id, plan).await
    }
}

/// `call.completed` of an answered leg.
pub(crate) fn completed_answered(
    at: Instant,
    wall: OffsetDateTime,
    hangup_by: &str,
) -> CallCompleted {
    let answered_ms = at.elapsed().as_millis() as u64;
    CallCompleted {
        status: CallStatus::Completed,
        duration_s: duration_seconds(answered_ms),
        answered_ms,
        answered_at: Some(wall),
        hangup_by: hangup_by.to_owned(),
        sip_code: Some(200),
    }
}

/// `call.completed` of a leg that was never answered.
pub(crate) fn completed_unanswered(
    status: CallStatus,
    sip_code: u16,
    hangup_by: &str,
) -> CallCompleted {
    CallCompleted {
        status,
        duration_s: 0,
        answered_ms: 0,
        answered_at: None,
        hangup_by: hangup_by.to_owned(),
        sip_code: Some(sip_code),
    }
}

/// Whole seconds of an answered call: rounded to the nearest second, at least one (Twilio
/// rounds sub-second calls up to one second).
pub fn duration_seconds(answered_ms: u64) -> u64 {
    if answered_ms == 0 {
        0
    } else {
        ((answered_ms + 500) / 1000).max(1)
    }
}

/// A digit from a SIP INFO body: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (`5`).
pub fn parse_dtmf_info(content_type: Option<&str>, body: &[u8]) -> Option<(char, Option<u32>)> {
    let content_type = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    let body = std::str::from_utf8(body).ok()?;
    let valid = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D');
    match content_type.as_str() {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut duration = None;
            for line in body.lines() {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                match key.trim().to_ascii_lowercase().as_str() {
                    "signal" => digit = value.trim().chars().next().map(|c| c.to_ascii_uppercase()),
                    "duration" => duration = value.trim().parse().ok(),
                    _ => {}
                }
            }
            digit.filter(|c| valid(*c)).map(|d| (d, duration))
        }
        "application/dtmf" => {
            let digit = body.trim().chars().next()?.to_ascii_uppercase();
            valid(digit).then_some((digit, None))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_to_seconds_with_a_one_second_minimum() {
        assert_eq!(duration_seconds(0), 0);
        assert_eq!(duration_seconds(200), 1);
        assert_eq!(duration_seconds(3_020), 3);
        assert_eq!(duration_seconds(3_600), 4);
    }

    #[test]
    fn sip_info_dtmf_bodies() {
        assert_eq!(
            parse_dtmf_info(
                Some("application/dtmf-relay"),
                b"Signal=5\r\nDuration=160\r\n"
            ),
            Some(('5', Some(160)))
        );
        assert_eq!(
            parse_dtmf_info(Some("application/dtmf-relay"), b"Signal= #\r\n"),
            Some(('#', None))
        );
        assert_eq!(
            parse_dtmf_info(Some("application/dtmf"), b"7"),
            Some(('7', None))
        );
        assert_eq!(parse_dtmf_info(Some("application/dtmf"), b"x"), None);
        assert_eq!(parse_dtmf_info(Some("text/plain"), b"5"), None);
        assert_eq!(parse_dtmf_info(None, b"5"), None);
    }
}

//! The life of one call on the node that owns it: the imperative shell around the TwiML
//! interpreter. It carries out the interpreter's actions (webhooks, SIP answer/reject/BYE,
//! media commands, events) and feeds every outcome back (webhook results, media outcomes,
//! DTMF, the caller hanging up, timers). It is the call stream's only writer.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use dialtone_events::payload::{
    CallAnswered, CallCompleted, CallStatus, DtmfReceived, DtmfSource, Payload, RecordingCompleted,
    RecordingStarted,
};
use dialtone_events::sid::{AccountSid, CallSid, RecordingSid};
use dialtone_events::{EventLog, ExpectedVersion, NewEvent};
use dialtone_media::outcome::MediaOutcome;
use dialtone_media::playout::CommandId as MediaCommandId;
use dialtone_media::recorder::RecorderConfig;
use dialtone_media::runtime::{MediaCommand as MediaRuntimeCommand, MediaSession, RecordOptions};
use dialtone_sip::endpoint::{CallEvent, CallHandle};
use dialtone_sip::sdp::Negotiated;
use dialtone_voice::interpreter::{
    Action, CommandId, Interpreter, MediaCommand, MediaDone, RecordingOutcome,
};
use dialtone_voice::webhook::{requested_payload, responded_payload, CallSession, FetchResult};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::roles::registry::{CallControl, CallRegistry};

/// Everything a call task needs, prepared by the edge.
pub struct CallSetup {
    pub sid: CallSid,
    pub account: AccountSid,
    pub sip: CallHandle,
    pub sip_events: mpsc::UnboundedReceiver<CallEvent>,
    pub media: MediaSession,
    pub negotiated: Negotiated,
    pub sdp_answer: String,
    pub interpreter: Interpreter,
    pub webhooks: CallSession,
    pub log: Arc<dyn EventLog>,
    pub recordings_dir: PathBuf,
    pub registry: CallRegistry,
    pub control: mpsc::Receiver<CallControl>,
    /// When the INVITE arrived (for the INVITE→200 latency metric).
    pub invited_at: Instant,
}

/// Who ended the call, in `call.completed` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndedBy {
    Caller,
    Dialtone,
    Error,
}

impl EndedBy {
    fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Dialtone => "dialtone",
            EndedBy::Error => "error",
        }
    }
}

struct CallTask {
    sid: CallSid,
    account: AccountSid,
    sip: CallHandle,
    media: Option<MediaSession>,
    negotiated: Negotiated,
    sdp_answer: String,
    interpreter: Interpreter,
    webhooks: Arc<CallSession>,
    log: Arc<dyn EventLog>,
    recordings_dir: PathBuf,
    invited_at: Instant,
    /// Events waiting to be appended at the end of the current step.
    pending: Vec<NewEvent>,
    fetches: JoinSet<(u32, FetchResult)>,
    /// Media command ids → interpreter command ids.
    media_commands: HashMap<MediaCommandId, CommandId>,
    /// Media ids of `Record` commands → the recording they make.
    recordings: HashMap<MediaCommandId, (RecordingSid, PathBuf)>,
    answered: Option<(Instant, OffsetDateTime)>,
    /// The SIP side is gone (BYE, CANCEL, termination): no more SIP or media commands.
    sip_gone: bool,
    ended_by: Option<EndedBy>,
    /// Final status and SIP code when the call ends without having been answered.
    unanswered_end: Option<(CallStatus, u16)>,
    completed_written: bool,
}

/// Runs the call until its program completes and `call.completed` is written.
pub async fn run(setup: CallSetup, first_actions: Vec<Action>) {
    let CallSetup {
        sid,
        account,
        sip,
        mut sip_events,
        mut media,
        negotiated,
        sdp_answer,
        interpreter,
        webhooks,
        log,
        recordings_dir,
        registry,
        mut control,
        invited_at,
    } = setup;
    let mut media_outcomes = media.outcomes();
    let mut task = CallTask {
        sid: sid.clone(),
        account,
        sip,
        media: Some(media),
        negotiated,
        sdp_answer,
        interpreter,
        webhooks: Arc::new(webhooks),
        log,
        recordings_dir,
        invited_at,
        pending: Vec::new(),
        fetches: JoinSet::new(),
        media_commands: HashMap::new(),
        recordings: HashMap::new(),
        answered: None,
        sip_gone: false,
        ended_by: None,
        unanswered_end: None,
        completed_written: false,
    };
    metrics::gauge!("dialtone_calls_active").increment(1.0);
    let mut queue: VecDeque<Action> = first_actions.into();
    let mut control_open = true;
    loop {
        if task.execute(&mut queue).await {
            break;
        }
        task.flush().await;
        let timeout = task.interpreter.poll_timeout();
        let sleep = async {
            match timeout {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(joined) = task.fetches.join_next(), if !task.fetches.is_empty() => {
                let now = Instant::now();
                match joined {
                    Ok((request_id, result)) => {
                        task.pending.push(task.event(responded_payload(request_id, &result)));
                        queue.extend(task.interpreter.on_fetched(request_id, result, now));
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
            _ = sleep => {
                queue.extend(task.interpreter.on_timer(Instant::now()));
            }
            command = control.recv(), if control_open => match command {
                Some(command) => queue.extend(task.on_control(command)),
                None => control_open = false,
            },
        }
    }
    task.flush().await;
    task.finish().await;
    registry.remove(&sid);
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
    fn event(&self, payload: impl Into<Payload>) -> NewEvent {
        NewEvent::new(self.account.as_str(), payload)
    }

    /// Appends the events of this step, in order. The call task is the stream's only
    /// writer, so `Any` cannot interleave with a foreign write of the same call.
    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending);
        if let Err(error) = self
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
                    self.pending
                        .push(self.event(requested_payload(&request, request_id, 1)));
                    let session = self.webhooks.clone();
                    self.fetches.spawn(async move {
                        let result = session.fetch(&request).await;
                        (request_id, result)
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
                        dialtone_voice::interpreter::HangupReason::ApplicationError
                        | dialtone_voice::interpreter::HangupReason::LoopDetected => EndedBy::Error,
                        _ => EndedBy::Dialtone,
                    });
                    self.hangup_sip().await;
                }
                Action::Emit(payload) => self.pending.push(self.event(payload)),
                Action::Completed => return true,
                other => {
                    tracing::warn!(call = %self.sid, ?other, "action not supported on this node yet")
                }
            }
        }
        false
    }

    async fn answer(&mut self, now: Instant) -> Vec<Action> {
        if self.answered.is_some() || self.sip_gone {
            return Vec::new();
        }
        if let Some(media) = &self.media {
            media.set_remote(
                self.negotiated.remote_rtp,
                media_codec(self.negotiated.codec),
                self.negotiated.telephone_event_pt,
            );
        }
        if let Err(error) = self.sip.answer(self.sdp_answer.clone()).await {
            tracing::warn!(call = %self.sid, %error, "answer failed; treating the caller as gone");
            self.sip_gone = true;
            self.ended_by.get_or_insert(EndedBy::Caller);
            return self.interpreter.on_hangup(now);
        }
        metrics::histogram!("dialtone_invite_to_answer_seconds")
            .record(self.invited_at.elapsed().as_secs_f64());
        self.answered = Some((now, OffsetDateTime::now_utc()));
        let codec = match self.negotiated.codec {
            dialtone_sip::sdp::Codec::Pcmu => "PCMU",
            dialtone_sip::sdp::Codec::Pcma => "PCMA",
        };
        self.pending.push(self.event(CallAnswered {
            codec: Some(codec.to_owned()),
        }));
        self.interpreter.on_answered(now)
    }

    /// Starts a media command; returns an immediate outcome when it cannot run.
    fn start_media(&mut self, command_id: CommandId, command: MediaCommand) -> Option<MediaDone> {
        let media = match &self.media {
            Some(media) if !self.sip_gone => media,
            _ => return Some(MediaDone::Interrupted),
        };
        let (runtime_command, recording) = match command {
            MediaCommand::Say(say) => (
                MediaRuntimeCommand::Say {
                    text: say.text,
                    voice: Some(say.voice),
                    language: Some(say.language),
                    loops: say.loops,
                },
                None,
            ),
            MediaCommand::Play(play) => match (play.digits, play.url) {
                (Some(digits), _) => (MediaRuntimeCommand::Digits { digits }, None),
                (None, Some(url)) => (
                    MediaRuntimeCommand::Play {
                        url,
                        loops: play.loops,
                    },
                    None,
                ),
                (None, None) => {
                    return Some(MediaDone::Failed("Play without a URL or digits".into()))
                }
            },
            MediaCommand::Pause(pause) => (
                MediaRuntimeCommand::Pause {
                    ms: u32::try_from(pause.length_ms).unwrap_or(u32::MAX),
                },
                None,
            ),
            MediaCommand::Record(record) => {
                let path = self
                    .recordings_dir
                    .join(format!("{}.wav", record.recording_sid));
                let options = RecordOptions {
                    path: path.clone(),
                    beep: record.play_beep,
                    recorder: RecorderConfig {
                        silence_timeout_ms: u32::try_from(record.silence_timeout_ms)
                            .unwrap_or(u32::MAX),
                        max_length_ms: u32::try_from(record.max_length_ms).unwrap_or(u32::MAX),
                        finish_on_keys: record.finish_on_key.clone(),
                        trim_silence: record.trim,
                        ..RecorderConfig::default()
                    },
                };
                (
                    MediaRuntimeCommand::Record(options),
                    Some((record.recording_sid, path)),
                )
            }
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
                self.media_done(id, MediaDone::Failed(error.to_string()), now)
            }
            MediaOutcome::Dtmf {
                digit,
                source,
                duration_ms,
            } => self.dtmf(digit, source, Some(duration_ms), now),
            MediaOutcome::RecordingStarted { id } => {
                if let Some((sid, _)) = self.recordings.get(&id) {
                    let started = RecordingStarted {
                        recording_sid: sid.clone(),
                        source: "RecordVerb".into(),
                        channels: 1,
                    };
                    self.pending.push(self.event(started));
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
                if let Some((sid, _)) = self.recordings.remove(&id) {
                    let relative = path
                        .strip_prefix(self.recordings_dir.parent().unwrap_or(&self.recordings_dir))
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    let completed = RecordingCompleted {
                        recording_sid: sid,
                        status: if absent {
                            "absent".into()
                        } else {
                            "completed".into()
                        },
                        duration_ms,
                        path: relative,
                        channels: 1,
                        source: "RecordVerb".into(),
                        digits: end.digits(),
                        error_code: match (empty, silent) {
                            (true, _) => Some(16101),
                            (false, true) => Some(16102),
                            _ => None,
                        },
                    };
                    self.pending.push(self.event(completed));
                }
                let outcome = RecordingOutcome {
                    duration_ms,
                    digits: end.digits(),
                    absent,
                };
                self.media_done(id, MediaDone::Recorded(outcome), now)
            }
            other => {
                tracing::debug!(call = %self.sid, ?other, "media outcome ignored");
                Vec::new()
            }
        }
    }

    fn media_done(
        &mut self,
        media_id: MediaCommandId,
        done: MediaDone,
        now: Instant,
    ) -> Vec<Action> {
        match self.media_commands.remove(&media_id) {
            Some(command_id) => self.interpreter.on_media_done(command_id, done, now),
            None => Vec::new(),
        }
    }

    fn dtmf(
        &mut self,
        digit: char,
        source: DtmfSource,
        duration_ms: Option<u32>,
        now: Instant,
    ) -> Vec<Action> {
        self.pending.push(self.event(DtmfReceived {
            digit: digit.to_string(),
            source,
            duration_ms,
        }));
        self.interpreter.on_dtmf(digit, now)
    }

    fn on_sip_event(&mut self, event: Option<CallEvent>) -> Vec<Action> {
        let now = Instant::now();
        match event {
            Some(CallEvent::Acked { .. })
            | Some(CallEvent::ReInviteAcked { .. })
            | Some(CallEvent::Progress { .. }) => Vec::new(),
            Some(CallEvent::Answered { .. }) => Vec::new(),
            Some(CallEvent::Info { content_type, body }) => {
                match parse_dtmf_info(content_type.as_deref(), &body) {
                    Some((digit, duration_ms)) => {
                        self.dtmf(digit, DtmfSource::SipInfo, duration_ms, now)
                    }
                    None => Vec::new(),
                }
            }
            Some(CallEvent::ReInvite { sdp, .. }) => {
                // Hold/unhold or a new media address: answer with our current SDP (the
                // SIP layer adjusts the direction attribute).
                let sip = self.sip.clone();
                let answer = dialtone_sip::endpoint::ReofferAnswer::Accept {
                    sdp: sdp.map(|_| self.sdp_answer.clone()),
                };
                tokio::spawn(async move {
                    let _ = sip.respond_to_reinvite(answer).await;
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

    fn on_control(&mut self, command: CallControl) -> Vec<Action> {
        match command {
            CallControl::Hangup => {
                self.ended_by.get_or_insert(EndedBy::Dialtone);
                let now = Instant::now();
                let actions = self.interpreter.on_hangup(now);
                let sip = self.sip.clone();
                let answered = self.answered.is_some();
                if !self.sip_gone {
                    self.sip_gone = true;
                    if !answered {
                        self.unanswered_end = Some((CallStatus::Canceled, 487));
                    }
                    tokio::spawn(async move {
                        let _ = sip.hangup().await;
                    });
                }
                actions
            }
        }
    }

    async fn hangup_sip(&mut self) {
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
        if let Some(media) = self.media.take() {
            let stats = media.stats();
            metrics::counter!("dialtone_rtp_packets_received_total").increment(stats.rx_packets);
            metrics::counter!("dialtone_rtp_packets_sent_total").increment(stats.tx_packets);
            tracing::debug!(call = %self.sid, rx = stats.rx_packets, tx = stats.tx_packets, "media closed");
            media.close();
        }
        self.fetches.abort_all();
        if self.completed_written {
            return;
        }
        let ended_by = self.ended_by.unwrap_or(EndedBy::Dialtone);
        let completed = match self.answered {
            Some((at, wall)) => {
                let answered_ms = at.elapsed().as_millis() as u64;
                CallCompleted {
                    status: CallStatus::Completed,
                    duration_s: duration_seconds(answered_ms),
                    answered_ms,
                    answered_at: Some(wall),
                    hangup_by: ended_by.as_str().to_owned(),
                    sip_code: Some(200),
                }
            }
            None => {
                let (status, sip_code) = self.unanswered_end.unwrap_or((CallStatus::Failed, 500));
                CallCompleted {
                    status,
                    duration_s: 0,
                    answered_ms: 0,
                    answered_at: None,
                    hangup_by: ended_by.as_str().to_owned(),
                    sip_code: Some(sip_code),
                }
            }
        };
        metrics::counter!("dialtone_calls_completed_total", "status" => completed.status.as_str())
            .increment(1);
        self.pending.push(self.event(completed));
        self.flush().await;
        self.completed_written = true;
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

fn media_codec(codec: dialtone_sip::sdp::Codec) -> dialtone_media::codec::Codec {
    match codec {
        dialtone_sip::sdp::Codec::Pcmu => dialtone_media::codec::Codec::Pcmu,
        dialtone_sip::sdp::Codec::Pcma => dialtone_media::codec::Codec::Pcma,
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

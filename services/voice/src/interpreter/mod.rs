//! The TwiML interpreter: a sans-IO state machine that runs one call's TwiML.
//!
//! It is fed call facts (answered, hung up, DTMF), media outcomes, webhook results and the
//! current time, and answers with [`Action`]s: fetch a document, answer, reject, play media,
//! stop media, hang up, append an event. It does no I/O and reads no clock, so every call
//! flow is testable with scripted inputs and simulated time.
//!
//! Semantics follow Twilio (reference §2): verbs run in order; `<Redirect>`, `<Gather>` with
//! input and `<Record>` with audio hand control to a new document; the end of a document
//! hangs up; relative URLs resolve against the current document's URL; a failed fetch (any
//! transport failure, a non-2xx status, a wrong Content-Type, unparseable TwiML) goes to the
//! call's fallback URL with `ErrorCode` and `ErrorUrl`, and when that fails too the caller
//! hears an application-error prompt and the call ends. Beyond Twilio: identical fetches
//! repeated without caller input are cut off (`twiml.failed`, class `loop`), and `<Gather>`
//! knows `minDigits`, `maxDigits`, `validDigits` and `interDigitTimeout`.
//!
//! ## Events
//!
//! The interpreter emits ([`Action::Emit`]) the events about its own decisions:
//! `twiml.failed`, `twiml.warning`, `verb.started`, `verb.finished`, `gather.completed`,
//! `redirected`, `rejected`, `dial.started`, `dial.answered`, `dial.completed`, and the
//! media commands it issues (`media.say`, `media.play`, `media.pause`, `media.gather`,
//! `media.record`, `media.bridge`, `media.stop`, `media.hangup`), each just before the
//! action it records. The shell emits what only it observes: `webhook.requested` /
//! `webhook.responded` (attempts, latency, status, body: see
//! [`crate::webhook::requested_payload`]), and the edge and media emit the call lifecycle
//! (`call.answered`, `call.completed`, and for `<Dial>` the child legs' own
//! `call.initiated` … `call.completed` in their streams), `dtmf.received` and
//! `recording.*`.
//!
//! ## Driving it
//!
//! Call [`Interpreter::start`], execute the returned actions in order, feed every outcome
//! back (`on_fetched`, `on_media_done`, `on_dtmf`, `on_answered`, `on_hangup`,
//! `on_dial_event`), and call
//! [`Interpreter::on_timer`] when [`Interpreter::poll_timeout`] is due. Stop after
//! [`Action::Completed`]. DTMF should be reported whenever it arrives: the interpreter
//! ignores digits outside `<Gather>`. During `<Record>` the media runtime handles
//! `finishOnKey` itself and reports the key in [`RecordingOutcome::digits`].
//!
//! ## `<Dial>`
//!
//! [`Action::Dial`] hands a [`DialPlan`] to the shell, which places the child calls (or
//! joins the conference) and reports back with [`DialEvent`]s; the interpreter decides
//! when to answer the caller, when to bridge ([`Action::Bridge`]) and when to end the dial
//! ([`Action::EndDial`]: `hangupOnStar`, `timeLimit`, caller hangup, REST update). A
//! `<Number url>` whisper runs in a second interpreter made with [`Interpreter::whisper`].
//! The protocol step by step is in [`dial`].

pub mod dial;
#[cfg(test)]
mod dial_tests;
#[cfg(test)]
mod tests;

pub use dial::{
    DialCallStatus, DialDestination, DialEndReason, DialEvent, DialId, DialParty, DialPlan,
    DialRecording, PartyAddress, Whisper, WhisperResult, MAX_PARTIES,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use dialtone_events::payload::{
    CallApplication, CallRedirected, CallRejected, CallStatus, Direction, GatherCompleted,
    HttpMethod, MediaGather, MediaHangup, MediaPause, MediaPlay, MediaRecord, MediaSay, MediaStop,
    Payload, TwimlFailed, TwimlWarning, VerbFinished, VerbStarted, WebhookPurpose,
};
use dialtone_events::sid::{AccountSid, CallSid, RecordingSid};

use crate::twiml::{
    self, Document, Gather, ParseError, Play, Prompt, Record, RejectReason, Say, Trim, Verb,
    SCHEMA_WARNING,
};
use crate::webhook::{
    check_twiml_response, codes, FailureClass, FetchResult, WebhookFailure, WebhookRequest,
};
use dial::DialRun;

/// Identifies a media command; outcomes refer to it.
pub type CommandId = u64;

/// Twilio's `ApiVersion` parameter.
pub const API_VERSION: &str = "2010-04-01";

/// The call a TwiML program runs for. Everything the standard webhook parameters need.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub call_sid: CallSid,
    pub account_sid: AccountSid,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    /// Status when the interpreter starts: `ringing` for inbound calls (fetched before
    /// answer), `in-progress` for answered outbound calls.
    pub call_status: CallStatus,
    pub parent_call_sid: Option<CallSid>,
    pub forwarded_from: Option<String>,
    /// CNAM, when looked up.
    pub caller_name: Option<String>,
    pub application: CallApplication,
    /// Sent with every TwiML request after the standard ones, e.g. `SipCallId`,
    /// `SipHeader_X-…`, geo fields, custom client parameters.
    pub extra_params: Vec<(String, String)>,
}

/// Platform settings of the interpreter.
#[derive(Debug, Clone)]
pub struct InterpreterConfig {
    /// `<Say>` voice when none is given.
    pub default_voice: String,
    /// `<Say>` language when none is given (`man`/`woman` default to `en`, as on Twilio).
    pub default_language: String,
    /// What the caller hears when the application cannot be reached.
    pub application_error_message: String,
    /// Identical consecutive fetches (same URL, method and parameters) allowed without
    /// caller input; the next one ends the call with `twiml.failed` class `loop`.
    pub max_identical_fetches: u32,
    /// Base of `RecordingUrl`: `{base}/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}`.
    pub api_base_url: String,
    /// How long to wait for the outcome of a `<Record>` interrupted by the caller hanging
    /// up before giving up on its action request.
    pub recording_grace: Duration,
    /// `trim` of `<Dial record>` when the TwiML does not say (Twilio's docs disagree).
    pub dial_recording_trim: Trim,
    /// How long to wait for the shell's report of a dial the interpreter ended
    /// ([`Action::EndDial`]) before assuming its outcome.
    pub dial_end_grace: Duration,
}

impl Default for InterpreterConfig {
    fn default() -> Self {
        InterpreterConfig {
            default_voice: "man".to_owned(),
            default_language: "en-US".to_owned(),
            application_error_message: "We are sorry, an application error has occurred. Goodbye."
                .to_owned(),
            max_identical_fetches: 10,
            api_base_url: "http://localhost:8080".to_owned(),
            recording_grace: Duration::from_secs(10),
            dial_recording_trim: Trim::DoNotTrim,
            dial_end_grace: Duration::from_secs(10),
        }
    }
}

/// A media command for the media runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    Say(MediaSay),
    /// Audio by URL (absolute), or DTMF tones with `digits`.
    Play(MediaPlay),
    Pause(MediaPause),
    /// Record the caller; the outcome is [`MediaDone::Recorded`].
    Record(MediaRecord),
}

impl MediaCommand {
    /// The event that records this command.
    pub fn payload(&self) -> Payload {
        match self {
            MediaCommand::Say(c) => c.clone().into(),
            MediaCommand::Play(c) => c.clone().into(),
            MediaCommand::Pause(c) => c.clone().into(),
            MediaCommand::Record(c) => c.clone().into(),
        }
    }
}

/// Why the interpreter hangs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupReason {
    /// `<Hangup>`.
    HangupVerb,
    /// The last verb finished and nothing took over.
    EndOfDocument,
    /// `<Reject>` on a call that was already answered.
    Rejected,
    /// The application (and its fallback) could not provide TwiML.
    ApplicationError,
    /// Identical fetches without caller input.
    LoopDetected,
}

impl HangupReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupReason::HangupVerb => "hangup-verb",
            HangupReason::EndOfDocument => "end-of-document",
            HangupReason::Rejected => "rejected",
            HangupReason::ApplicationError => "application-error",
            HangupReason::LoopDetected => "loop-detected",
        }
    }
}

/// What the shell must do, in order.
// Actions live for one batch; boxing the event would cost more than the size difference.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a webhook and report the result with [`Interpreter::on_fetched`]. The shell
    /// signs it and emits `webhook.requested`/`webhook.responded`.
    Fetch {
        request_id: u32,
        request: WebhookRequest,
    },
    /// Answer the call (SIP 200 OK) before the media that follows.
    Answer,
    /// Refuse the unanswered call with this SIP final response (603 or 486).
    Reject { reason: RejectReason, sip_code: u16 },
    /// Run a media command; report with [`Interpreter::on_media_done`].
    Media {
        command_id: CommandId,
        command: MediaCommand,
    },
    /// Stop a running media command (barge-in, redirect). Its outcome is then ignored.
    StopMedia { command_id: CommandId },
    /// End the call (BYE).
    Hangup { reason: HangupReason },
    /// Run a `<Dial>`: place the child calls (or join the conference) and report with
    /// [`Interpreter::on_dial_event`]. See [`DialPlan`] and the protocol in [`dial`].
    Dial { dial_id: DialId, plan: DialPlan },
    /// Connect the caller's audio with this answered child leg (`media.bridge` was
    /// emitted just before). Start a `record-from-answer` recording here.
    Bridge {
        dial_id: DialId,
        child_call_sid: CallSid,
    },
    /// End the dial: cancel the parties still ringing, hang up the bridged or whispering
    /// child, leave the conference. The caller stays unless it is the one that hung up.
    /// Then report [`DialEvent::Completed`]. Idempotent.
    EndDial {
        dial_id: DialId,
        reason: DialEndReason,
    },
    /// Append this event to the call's stream.
    Emit(Payload),
    /// The program is over: no more actions will come.
    Completed,
}

/// How a media command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaDone {
    Finished,
    Interrupted,
    Failed(String),
    /// A `Record` command's result.
    Recorded(RecordingOutcome),
}

/// The result of a `<Record>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingOutcome {
    pub duration_ms: u64,
    /// The key that ended the recording, if one did.
    pub digits: Option<String>,
    /// Too short or silent (Twilio: no action request, status `absent`).
    pub absent: bool,
}

/// Why a REST-driven change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpreterError {
    /// Twilio 21220: the call is over.
    #[error("the call has ended")]
    CallEnded,
    #[error("{0:?} is not an absolute http(s) URL")]
    InvalidUrl(String),
    #[error(transparent)]
    Twiml(#[from] ParseError),
}

/// What makes two fetches identical for loop detection: URL, method and parameters.
type FetchKey = (String, HttpMethod, Vec<(String, String)>);

/// A fetch in flight.
#[derive(Debug, Clone)]
struct PendingFetch {
    request_id: u32,
    request: WebhookRequest,
    /// This is the fallback request: a failure goes to the application-error prompt.
    is_fallback: bool,
    /// The caller has hung up; the response is ignored (Record's action after hangup).
    after_hangup: bool,
}

/// The current document and where we are in it.
#[derive(Debug, Clone)]
struct Program {
    document: Arc<Document>,
    /// Base for relative URLs and the default `action`; `None` for inline TwiML.
    url: Option<Url>,
    next: usize,
}

#[derive(Debug, Clone)]
struct GatherRun {
    index: usize,
    gather: Gather,
    prompt_next: usize,
    /// The nested prompt playing now.
    playing: Option<CommandId>,
    digits: String,
    /// Set once the prompts are over (or barged in): input ends at this time.
    deadline: Option<Instant>,
}

#[derive(Debug, Clone)]
struct RecordRun {
    index: usize,
    record: Record,
    command_id: CommandId,
    recording_sid: RecordingSid,
    /// The caller hung up; the outcome is awaited until this time.
    hangup_deadline: Option<Instant>,
}

#[derive(Debug, Clone)]
enum Phase {
    NotStarted,
    /// Between verbs (never observed outside `advance`).
    Ready,
    Fetching(PendingFetch),
    /// A leading `<Pause>` before the call is answered: a timer, no media.
    PreAnswerPause {
        index: usize,
        until: Instant,
    },
    /// `<Say>`, `<Play>` or `<Pause>`.
    Media {
        index: usize,
        command_id: CommandId,
    },
    Gather(Box<GatherRun>),
    Record(Box<RecordRun>),
    /// `<Dial>`: the shell dials; the interpreter waits for its reports.
    Dial(Box<DialRun>),
    /// The application-error prompt.
    ApplicationError {
        command_id: CommandId,
    },
    Done,
}

/// Runs the TwiML of one call. See the module docs.
pub struct Interpreter {
    ctx: CallContext,
    config: InterpreterConfig,
    phase: Phase,
    program: Option<Program>,
    answered: bool,
    hung_up: bool,
    status: CallStatus,
    next_request_id: u32,
    next_command_id: CommandId,
    /// Loop detection: the last fetch and how many times in a row it was made.
    last_fetch: Option<FetchKey>,
    identical_fetches: u32,
    caller_input_since_fetch: bool,
    new_recording_sid: Box<dyn FnMut() -> RecordingSid + Send + Sync>,
    new_call_sid: Box<dyn FnMut() -> CallSid + Send + Sync>,
    next_dial_id: DialId,
    /// A whisper program on a dialed party's leg ([`Interpreter::whisper`]).
    whisper: bool,
    /// The program ended the call itself (`<Hangup>`, end of document, errors).
    hangup_issued: bool,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("call_sid", &self.ctx.call_sid)
            .field("phase", &self.phase)
            .field("answered", &self.answered)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Interpreter {
    pub fn new(ctx: CallContext, config: InterpreterConfig) -> Interpreter {
        let answered = ctx.call_status == CallStatus::InProgress;
        let status = ctx.call_status;
        Interpreter {
            ctx,
            config,
            phase: Phase::NotStarted,
            program: None,
            answered,
            hung_up: false,
            status,
            next_request_id: 1,
            next_command_id: 1,
            last_fetch: None,
            identical_fetches: 0,
            caller_input_since_fetch: false,
            new_recording_sid: Box::new(RecordingSid::generate),
            new_call_sid: Box::new(CallSid::generate),
            next_dial_id: 1,
            whisper: false,
            hangup_issued: false,
        }
    }

    /// Replaces the source of recording SIDs (tests use a deterministic one).
    pub fn set_recording_sid_source(
        &mut self,
        source: impl FnMut() -> RecordingSid + Send + Sync + 'static,
    ) {
        self.new_recording_sid = Box::new(source);
    }

    /// The call this program runs for.
    pub fn context(&self) -> &CallContext {
        &self.ctx
    }

    /// The call's status as sent in `CallStatus`.
    pub fn call_status(&self) -> CallStatus {
        self.status
    }

    pub fn is_completed(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Starts the program: fetches the application URL, or runs inline TwiML.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(self.phase, Phase::NotStarted) {
            return out;
        }
        self.phase = Phase::Ready;
        let app = self.ctx.application.clone();
        if let Some(twiml) = app.twiml.as_deref() {
            match twiml::parse(twiml) {
                Ok(document) => self.run_document(document, None, now, &mut out),
                Err(error) => {
                    let failure =
                        WebhookFailure::new(error.code(), FailureClass::Parse, error.to_string());
                    let params = self.standard_params();
                    self.fetch_failed(failure, "", params, false, now, &mut out);
                }
            }
            return out;
        }
        match app.url.as_deref() {
            Some(url) => match absolute_url(url) {
                Ok(url) => {
                    let params = self.standard_params();
                    self.fetch(
                        WebhookPurpose::Voice,
                        url.to_string(),
                        app.method,
                        params,
                        &mut out,
                    )
                }
                Err(_) => {
                    let failure = WebhookFailure::new(
                        codes::INVALID_URL,
                        FailureClass::Url,
                        format!("{url:?} is not an absolute http(s) URL"),
                    );
                    let params = self.standard_params();
                    self.fetch_failed(failure, url, params, false, now, &mut out);
                }
            },
            None => {
                let failure = WebhookFailure::new(
                    codes::INVALID_URL,
                    FailureClass::Url,
                    "the call has no application URL or TwiML",
                );
                let params = self.standard_params();
                self.fetch_failed(failure, "", params, false, now, &mut out);
            }
        }
        out
    }

    /// The result of a [`Action::Fetch`].
    pub fn on_fetched(
        &mut self,
        request_id: u32,
        result: FetchResult,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let pending = match &self.phase {
            Phase::Fetching(p) if p.request_id == request_id => p.clone(),
            _ => return out, // stale: superseded by a redirect or the call ended
        };
        self.phase = Phase::Ready;
        if pending.after_hangup {
            self.finish(&mut out);
            return out;
        }
        let parsed = result.and_then(|response| {
            let body = check_twiml_response(&response)?;
            let document = twiml::parse(body)
                .map_err(|e| WebhookFailure::new(e.code(), FailureClass::Parse, e.to_string()))?;
            let base = Url::parse(&response.final_url)
                .or_else(|_| Url::parse(&pending.request.url))
                .ok();
            Ok((document, base))
        });
        match parsed {
            Ok((document, base)) => self.run_document(document, base, now, &mut out),
            Err(failure) => {
                self.fetch_failed(
                    failure,
                    &pending.request.url,
                    pending.request.params,
                    pending.is_fallback,
                    now,
                    &mut out,
                );
            }
        }
        out
    }

    /// A media command ended.
    pub fn on_media_done(
        &mut self,
        command_id: CommandId,
        done: MediaDone,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Media {
                index,
                command_id: id,
            } if id == command_id => {
                let outcome = match &done {
                    MediaDone::Finished | MediaDone::Recorded(_) => "done",
                    MediaDone::Interrupted => "interrupted",
                    MediaDone::Failed(_) => "failed",
                };
                if let MediaDone::Failed(message) = &done {
                    tracing::info!(call = %self.ctx.call_sid, %message, "media command failed");
                }
                self.verb_finished(index, outcome, &mut out);
                self.advance(now, &mut out);
            }
            Phase::Gather(mut run) if run.playing == Some(command_id) => {
                run.playing = None;
                self.gather_continue(run, now, &mut out);
            }
            Phase::Record(run) if run.command_id == command_id => {
                let outcome = match done {
                    MediaDone::Recorded(outcome) => outcome,
                    _ => RecordingOutcome {
                        duration_ms: 0,
                        digits: None,
                        absent: true,
                    },
                };
                self.record_done(*run, outcome, now, &mut out);
            }
            Phase::ApplicationError { command_id: id } if id == command_id => {
                self.hangup(HangupReason::ApplicationError, &mut out);
            }
            other => self.phase = other, // stale outcome of a stopped command
        }
        out
    }

    /// The caller pressed a key (RFC 4733, in-band or SIP INFO).
    pub fn on_dtmf(&mut self, digit: char, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Done) {
            return out;
        }
        self.caller_input_since_fetch = true;
        if matches!(self.phase, Phase::Dial(_)) {
            self.dial_dtmf(digit, now, &mut out);
            return out;
        }
        let Phase::Gather(run) = &mut self.phase else {
            return out;
        };
        if !run.gather.input.dtmf || !"0123456789*#".contains(digit) {
            return out;
        }
        let is_finish_key = run.gather.finish_on_key == Some(digit);
        if let Some(valid) = &run.gather.valid_digits {
            if !is_finish_key && !valid.contains(digit) {
                return out;
            }
        }
        // DTMF barge-in: the first key stops the prompt and skips the remaining ones.
        if let Some(playing) = run.playing.take() {
            out.push(Action::Emit(
                MediaStop {
                    reason: Some("barge-in".to_owned()),
                }
                .into(),
            ));
            out.push(Action::StopMedia {
                command_id: playing,
            });
        }
        run.prompt_next = run.gather.prompts.len();
        if is_finish_key {
            let finished_on_key = digit.to_string();
            self.gather_done(GatherEnd::FinishKey(finished_on_key), now, &mut out);
            return out;
        }
        run.digits.push(digit);
        let limit = run.gather.num_digits.or(run.gather.max_digits);
        if limit.is_some_and(|n| run.digits.chars().count() >= n as usize) {
            self.gather_done(GatherEnd::NumDigits, now, &mut out);
            return out;
        }
        let wait = run.gather.inter_digit_timeout.unwrap_or(run.gather.timeout);
        run.deadline = Some(now + Duration::from_secs(u64::from(wait)));
        out
    }

    /// When [`Interpreter::on_timer`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::PreAnswerPause { until, .. } => Some(*until),
            Phase::Gather(run) => run.deadline,
            Phase::Record(run) => run.hangup_deadline,
            Phase::Dial(run) => run.deadline(),
            _ => None,
        }
    }

    /// Time has passed; handles whatever deadline is due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match &self.phase {
            Phase::PreAnswerPause { index, until } if now >= *until => {
                let index = *index;
                self.phase = Phase::Ready;
                self.verb_finished(index, "done", &mut out);
                self.advance(now, &mut out);
            }
            Phase::Gather(run) if run.deadline.is_some_and(|d| now >= d) => {
                self.gather_done(GatherEnd::Timeout, now, &mut out);
            }
            Phase::Record(run) if run.hangup_deadline.is_some_and(|d| now >= d) => {
                tracing::warn!(call = %self.ctx.call_sid, "no recording outcome after hangup");
                self.finish(&mut out);
            }
            Phase::Dial(_) => self.dial_timer(now, &mut out),
            _ => {}
        }
        out
    }

    /// The call was answered (by the edge, e.g. an outbound call). Idempotent.
    pub fn on_answered(&mut self, _now: Instant) -> Vec<Action> {
        if !self.hung_up {
            self.answered = true;
            self.status = CallStatus::InProgress;
        }
        Vec::new()
    }

    /// The caller (or the far end) hung up.
    pub fn on_hangup(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.hung_up || matches!(self.phase, Phase::Done) {
            return out;
        }
        self.hung_up = true;
        self.status = CallStatus::Completed;
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Record(mut run) => {
                // Twilio still requests the Record action (Digits=hangup) and ignores its
                // TwiML; wait for the media runtime to close the file.
                out.push(Action::Emit(
                    MediaStop {
                        reason: Some("hangup".to_owned()),
                    }
                    .into(),
                ));
                out.push(Action::StopMedia {
                    command_id: run.command_id,
                });
                run.hangup_deadline = Some(now + self.config.recording_grace);
                self.phase = Phase::Record(run);
            }
            Phase::Media { index, .. } | Phase::PreAnswerPause { index, .. } => {
                self.verb_finished(index, "hangup", &mut out);
                self.finish(&mut out);
            }
            Phase::Gather(run) => {
                self.verb_finished(run.index, "hangup", &mut out);
                self.finish(&mut out);
            }
            // The dial is ended, and its action still requested (TwiML ignored).
            Phase::Dial(run) => self.dial_caller_hangup(run, now, &mut out),
            _ => self.finish(&mut out),
        }
        out
    }

    /// REST live update with `Url`/`Method`: interrupts the current verb and runs the TwiML
    /// fetched from `url`.
    pub fn redirect(
        &mut self,
        url: &str,
        method: HttpMethod,
        now: Instant,
    ) -> Result<Vec<Action>, InterpreterError> {
        self.check_live()?;
        let url = absolute_url(url).map_err(|_| InterpreterError::InvalidUrl(url.to_owned()))?;
        let mut out = Vec::new();
        self.interrupt(now, &mut out);
        // An outside intervention, not the application looping.
        self.caller_input_since_fetch = true;
        out.push(Action::Emit(
            CallRedirected {
                url: url.to_string(),
                method,
                by: "api".to_owned(),
            }
            .into(),
        ));
        let params = self.standard_params();
        self.fetch(
            WebhookPurpose::Redirect,
            url.to_string(),
            method,
            params,
            &mut out,
        );
        Ok(out)
    }

    /// REST live update with `Twiml`: interrupts the current verb and runs this document.
    pub fn replace_twiml(
        &mut self,
        source: &str,
        now: Instant,
    ) -> Result<Vec<Action>, InterpreterError> {
        self.check_live()?;
        let document = twiml::parse(source)?;
        let mut out = Vec::new();
        self.interrupt(now, &mut out);
        self.caller_input_since_fetch = true;
        self.run_document(document, None, now, &mut out);
        Ok(out)
    }

    // -----------------------------------------------------------------------------------
    // internals

    fn check_live(&self) -> Result<(), InterpreterError> {
        if self.hung_up || matches!(self.phase, Phase::Done | Phase::NotStarted) {
            Err(InterpreterError::CallEnded)
        } else {
            Ok(())
        }
    }

    /// Stops whatever runs now (for a REST update).
    fn interrupt(&mut self, now: Instant, out: &mut Vec<Action>) {
        let stop = |id: CommandId, out: &mut Vec<Action>| {
            out.push(Action::Emit(
                MediaStop {
                    reason: Some("redirected".to_owned()),
                }
                .into(),
            ));
            out.push(Action::StopMedia { command_id: id });
        };
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Media { index, command_id } => {
                stop(command_id, out);
                self.verb_finished(index, "redirected", out);
            }
            Phase::PreAnswerPause { index, .. } => self.verb_finished(index, "redirected", out),
            Phase::Gather(run) => {
                if let Some(id) = run.playing {
                    stop(id, out);
                }
                self.verb_finished(run.index, "redirected", out);
            }
            Phase::Record(run) => {
                stop(run.command_id, out);
                self.verb_finished(run.index, "redirected", out);
            }
            Phase::Dial(run) => self.dial_interrupted(run, now, out),
            Phase::ApplicationError { command_id } => stop(command_id, out),
            _ => {}
        }
    }

    fn standard_params(&self) -> Vec<(String, String)> {
        let c = &self.ctx;
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), c.account_sid.to_string()),
            ("ApiVersion".into(), API_VERSION.into()),
            ("CallSid".into(), c.call_sid.to_string()),
            ("CallStatus".into(), self.status.as_str().into()),
            ("Called".into(), c.to.clone()),
            ("Caller".into(), c.from.clone()),
            ("Direction".into(), c.direction.as_str().into()),
            ("From".into(), c.from.clone()),
            ("To".into(), c.to.clone()),
        ];
        if let Some(name) = &c.caller_name {
            params.push(("CallerName".into(), name.clone()));
        }
        if let Some(forwarded) = &c.forwarded_from {
            params.push(("ForwardedFrom".into(), forwarded.clone()));
        }
        if let Some(parent) = &c.parent_call_sid {
            params.push(("ParentCallSid".into(), parent.to_string()));
        }
        params.extend(c.extra_params.iter().cloned());
        params
    }

    /// Starts a fetch (with loop detection).
    fn fetch(
        &mut self,
        purpose: WebhookPurpose,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
        out: &mut Vec<Action>,
    ) {
        if purpose != WebhookPurpose::Fallback {
            let key = (url.clone(), method, params.clone());
            if self.caller_input_since_fetch || self.last_fetch.as_ref() != Some(&key) {
                self.identical_fetches = 0;
            }
            self.caller_input_since_fetch = false;
            self.identical_fetches += 1;
            self.last_fetch = Some(key);
            if self.identical_fetches > self.config.max_identical_fetches {
                let message = format!(
                    "{} identical requests to {url} without caller input",
                    self.identical_fetches
                );
                tracing::warn!(call = %self.ctx.call_sid, %message, "TwiML loop detected");
                out.push(Action::Emit(
                    TwimlFailed {
                        code: codes::LOOP_DETECTED,
                        class: FailureClass::Loop.as_str().to_owned(),
                        url,
                        message,
                    }
                    .into(),
                ));
                self.hangup(HangupReason::LoopDetected, out);
                return;
            }
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let request = WebhookRequest {
            purpose,
            url,
            method,
            params,
        };
        self.phase = Phase::Fetching(PendingFetch {
            request_id,
            request: request.clone(),
            is_fallback: purpose == WebhookPurpose::Fallback,
            after_hangup: self.hung_up,
        });
        out.push(Action::Fetch {
            request_id,
            request,
        });
    }

    /// A document could not be obtained: record it, then try the fallback URL or give up.
    fn fetch_failed(
        &mut self,
        failure: WebhookFailure,
        url: &str,
        params: Vec<(String, String)>,
        was_fallback: bool,
        _now: Instant,
        out: &mut Vec<Action>,
    ) {
        tracing::info!(call = %self.ctx.call_sid, url, %failure, "TwiML fetch failed");
        out.push(Action::Emit(
            TwimlFailed {
                code: failure.code,
                class: failure.class.as_str().to_owned(),
                url: url.to_owned(),
                message: failure.message.clone(),
            }
            .into(),
        ));
        let fallback = self
            .ctx
            .application
            .fallback_url
            .as_deref()
            .and_then(|f| absolute_url(f).ok());
        match fallback {
            Some(fallback) if !was_fallback => {
                let mut params: Vec<(String, String)> = params
                    .into_iter()
                    .filter(|(name, _)| name != "ErrorCode" && name != "ErrorUrl")
                    .collect();
                params.push(("ErrorCode".into(), failure.code.to_string()));
                params.push(("ErrorUrl".into(), url.to_owned()));
                let method = self.ctx.application.fallback_method;
                self.fetch(
                    WebhookPurpose::Fallback,
                    fallback.to_string(),
                    method,
                    params,
                    out,
                );
            }
            _ => self.application_error(out),
        }
    }

    /// The caller hears the application-error prompt, then the call ends.
    fn application_error(&mut self, out: &mut Vec<Action>) {
        self.ensure_answered(out);
        let command = MediaCommand::Say(MediaSay {
            text: self.config.application_error_message.clone(),
            voice: self.config.default_voice.clone(),
            language: self.default_language_for(&self.config.default_voice),
            loops: 1,
            ssml: None,
        });
        let command_id = self.media(command, out);
        self.phase = Phase::ApplicationError { command_id };
    }

    fn run_document(
        &mut self,
        document: Document,
        url: Option<Url>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        for warning in &document.warnings {
            out.push(Action::Emit(
                TwimlWarning {
                    code: warning.code,
                    message: format!("{}: {}", warning.position, warning.message),
                    verb: Some(warning.element.clone()),
                }
                .into(),
            ));
        }
        self.program = Some(Program {
            document: Arc::new(document),
            url,
            next: 0,
        });
        self.phase = Phase::Ready;
        self.advance(now, out);
    }

    /// Runs verbs until one blocks, control moves elsewhere, or the program ends.
    fn advance(&mut self, now: Instant, out: &mut Vec<Action>) {
        while matches!(self.phase, Phase::Ready) {
            let Some(program) = self.program.as_mut() else {
                self.end_of_document(out);
                return;
            };
            let index = program.next;
            let Some(verb) = program.document.verbs.get(index).map(|v| v.value.clone()) else {
                self.end_of_document(out);
                return;
            };
            program.next += 1;
            self.run_verb(index, verb, now, out);
        }
    }

    fn run_verb(&mut self, index: usize, verb: Verb, now: Instant, out: &mut Vec<Action>) {
        let name = verb.name();
        let supported = matches!(
            verb,
            Verb::Say(_)
                | Verb::Play(_)
                | Verb::Pause(_)
                | Verb::Gather(_)
                | Verb::Record(_)
                | Verb::Hangup(_)
                | Verb::Reject(_)
                | Verb::Redirect(_)
                | Verb::Dial(_)
        );
        if !supported {
            out.push(Action::Emit(
                TwimlWarning {
                    code: SCHEMA_WARNING,
                    message: format!("<{name}> is not supported by Dialtone yet; skipped"),
                    verb: Some(name.to_owned()),
                }
                .into(),
            ));
            return;
        }
        out.push(Action::Emit(
            VerbStarted {
                index: index as u32,
                verb: name.to_owned(),
            }
            .into(),
        ));
        match verb {
            Verb::Say(say) => match self.say_command(&say) {
                Some(command) => {
                    self.ensure_answered(out);
                    let command_id = self.media(command, out);
                    self.phase = Phase::Media { index, command_id };
                }
                None => self.skip(index, "<Say> has no text", out),
            },
            Verb::Play(play) => match self.play_command(&play) {
                Ok(command) => {
                    self.ensure_answered(out);
                    let command_id = self.media(command, out);
                    self.phase = Phase::Media { index, command_id };
                }
                Err(reason) => self.skip(index, &reason, out),
            },
            Verb::Pause(pause) => {
                if self.answered {
                    let command = MediaCommand::Pause(MediaPause {
                        length_ms: u64::from(pause.length) * 1000,
                    });
                    let command_id = self.media(command, out);
                    self.phase = Phase::Media { index, command_id };
                } else {
                    // Twilio waits before answering when <Pause> leads.
                    self.phase = Phase::PreAnswerPause {
                        index,
                        until: now + Duration::from_secs(u64::from(pause.length)),
                    };
                }
            }
            Verb::Gather(gather) => self.gather_start(index, gather, now, out),
            Verb::Record(record) => self.record_start(index, record, out),
            Verb::Dial(dial) => self.dial_start(index, dial, now, out),
            Verb::Hangup(_) => {
                self.verb_finished(index, "done", out);
                self.hangup(HangupReason::HangupVerb, out);
            }
            Verb::Reject(reject) => {
                self.verb_finished(index, "done", out);
                if self.answered {
                    self.hangup(HangupReason::Rejected, out);
                } else {
                    let sip_code = reject.reason.sip_code();
                    out.push(Action::Emit(
                        CallRejected {
                            reason: reject.reason.as_str().to_owned(),
                            sip_code,
                        }
                        .into(),
                    ));
                    out.push(Action::Reject {
                        reason: reject.reason,
                        sip_code,
                    });
                    self.finish(out);
                }
            }
            Verb::Redirect(redirect) => match self.resolve(&redirect.url) {
                Ok(url) => {
                    self.verb_finished(index, "redirect", out);
                    out.push(Action::Emit(
                        CallRedirected {
                            url: url.to_string(),
                            method: redirect.method,
                            by: "twiml".to_owned(),
                        }
                        .into(),
                    ));
                    let params = self.standard_params();
                    self.fetch(
                        WebhookPurpose::Redirect,
                        url.to_string(),
                        redirect.method,
                        params,
                        out,
                    );
                }
                Err(reason) => self.skip(index, &reason, out),
            },
            // Filtered out above.
            _ => {}
        }
    }

    /// A verb that cannot run: a warning, and on to the next.
    fn skip(&mut self, index: usize, reason: &str, out: &mut Vec<Action>) {
        let verb = self.verb_name(index);
        out.push(Action::Emit(
            TwimlWarning {
                code: SCHEMA_WARNING,
                message: format!("{reason}; skipped"),
                verb: Some(verb.to_owned()),
            }
            .into(),
        ));
        self.verb_finished(index, "skipped", out);
    }

    fn verb_name(&self, index: usize) -> &'static str {
        self.program
            .as_ref()
            .and_then(|p| p.document.verbs.get(index))
            .map(|v| v.value.name())
            .unwrap_or("")
    }

    fn verb_finished(&self, index: usize, outcome: &str, out: &mut Vec<Action>) {
        out.push(Action::Emit(
            VerbFinished {
                index: index as u32,
                verb: self.verb_name(index).to_owned(),
                outcome: outcome.to_owned(),
            }
            .into(),
        ));
    }

    fn ensure_answered(&mut self, out: &mut Vec<Action>) {
        if !self.answered {
            self.answered = true;
            self.status = CallStatus::InProgress;
            out.push(Action::Answer);
        }
    }

    fn media(&mut self, command: MediaCommand, out: &mut Vec<Action>) -> CommandId {
        let command_id = self.next_command_id;
        self.next_command_id += 1;
        out.push(Action::Emit(command.payload()));
        out.push(Action::Media {
            command_id,
            command,
        });
        command_id
    }

    /// The last verb finished and nothing took over: hang up, except in a whisper program,
    /// whose end connects the callee to the caller.
    fn end_of_document(&mut self, out: &mut Vec<Action>) {
        if self.whisper {
            self.finish(out);
        } else {
            self.hangup(HangupReason::EndOfDocument, out);
        }
    }

    fn hangup(&mut self, reason: HangupReason, out: &mut Vec<Action>) {
        if self.hung_up {
            self.finish(out);
            return;
        }
        self.hangup_issued = true;
        // Twilio answers before ending a call whose TwiML never rejected it (the call then
        // counts as completed, not failed).
        self.ensure_answered(out);
        out.push(Action::Emit(
            MediaHangup {
                reason: Some(reason.as_str().to_owned()),
            }
            .into(),
        ));
        out.push(Action::Hangup { reason });
        self.finish(out);
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Done) {
            self.phase = Phase::Done;
            out.push(Action::Completed);
        }
    }

    fn default_language_for(&self, voice: &str) -> String {
        if voice == "man" || voice == "woman" {
            "en".to_owned()
        } else {
            self.config.default_language.clone()
        }
    }

    fn say_command(&self, say: &Say) -> Option<MediaCommand> {
        let text = say.text();
        if text.is_empty() {
            return None;
        }
        let voice = say
            .voice
            .clone()
            .unwrap_or_else(|| self.config.default_voice.clone());
        let language = say
            .language
            .clone()
            .unwrap_or_else(|| self.default_language_for(&voice));
        Some(MediaCommand::Say(MediaSay {
            text,
            voice,
            language,
            loops: media_loops(say.loops),
            ssml: say.speech_ssml(),
        }))
    }

    fn play_command(&self, play: &Play) -> Result<MediaCommand, String> {
        let url = match &play.url {
            Some(url) => Some(self.resolve(url)?.to_string()),
            None => None,
        };
        if url.is_none() && play.digits.is_none() {
            return Err("<Play> has neither a URL nor digits".to_owned());
        }
        Ok(MediaCommand::Play(MediaPlay {
            url,
            digits: play.digits.clone(),
            loops: media_loops(play.loops),
        }))
    }

    /// Resolves a URL from the document against the document's URL.
    fn resolve(&self, raw: &str) -> Result<Url, String> {
        let raw = raw.trim();
        let url =
            match Url::parse(raw) {
                Ok(url) => url,
                Err(url::ParseError::RelativeUrlWithoutBase) => {
                    let base = self.program.as_ref().and_then(|p| p.url.as_ref()).ok_or_else(|| {
                    format!("relative URL {raw:?} in TwiML that has no URL to resolve it against")
                })?;
                    base.join(raw)
                        .map_err(|e| format!("URL {raw:?} is invalid: {e}"))?
                }
                Err(e) => return Err(format!("URL {raw:?} is invalid: {e}")),
            };
        if matches!(url.scheme(), "http" | "https") && url.has_host() {
            Ok(url)
        } else {
            Err(format!("URL {raw:?} is not http or https"))
        }
    }

    /// `action`, or the current document's URL when absent.
    fn action_url(&self, action: Option<&str>) -> Result<Url, String> {
        match action {
            Some(action) => self.resolve(action),
            None => self
                .program
                .as_ref()
                .and_then(|p| p.url.clone())
                .ok_or_else(|| "no action URL and the TwiML has no URL of its own".to_owned()),
        }
    }

    // --- Gather ---------------------------------------------------------------------------

    fn gather_start(&mut self, index: usize, gather: Gather, now: Instant, out: &mut Vec<Action>) {
        self.ensure_answered(out);
        if gather.input.speech {
            let message = if gather.input.dtmf {
                "speech recognition is not supported; listening for DTMF only"
            } else {
                "speech recognition is not supported; this <Gather> gets no input"
            };
            out.push(Action::Emit(
                TwimlWarning {
                    code: SCHEMA_WARNING,
                    message: message.to_owned(),
                    verb: Some("Gather".to_owned()),
                }
                .into(),
            ));
        }
        out.push(Action::Emit(
            MediaGather {
                timeout_ms: u64::from(gather.timeout) * 1000,
                finish_on_key: gather.finish_on_key.map(String::from).unwrap_or_default(),
                num_digits: gather.num_digits.or(gather.max_digits),
            }
            .into(),
        ));
        let run = Box::new(GatherRun {
            index,
            gather,
            prompt_next: 0,
            playing: None,
            digits: String::new(),
            deadline: None,
        });
        self.gather_continue(run, now, out);
    }

    /// Plays the next nested prompt, or starts the input timeout after the last one.
    fn gather_continue(&mut self, mut run: Box<GatherRun>, now: Instant, out: &mut Vec<Action>) {
        while run.prompt_next < run.gather.prompts.len() {
            let prompt = run.gather.prompts[run.prompt_next].value.clone();
            run.prompt_next += 1;
            let command = match &prompt {
                Prompt::Say(say) => self.say_command(say),
                Prompt::Play(play) => match self.play_command(play) {
                    Ok(command) => Some(command),
                    Err(reason) => {
                        out.push(Action::Emit(
                            TwimlWarning {
                                code: SCHEMA_WARNING,
                                message: format!("{reason}; prompt skipped"),
                                verb: Some("Play".to_owned()),
                            }
                            .into(),
                        ));
                        None
                    }
                },
                Prompt::Pause(pause) => Some(MediaCommand::Pause(MediaPause {
                    length_ms: u64::from(pause.length) * 1000,
                })),
            };
            if let Some(command) = command {
                run.playing = Some(self.media(command, out));
                self.phase = Phase::Gather(run);
                return;
            }
        }
        // The timeout starts only once the prompts are over.
        if run.deadline.is_none() {
            run.deadline = Some(now + Duration::from_secs(u64::from(run.gather.timeout)));
        }
        self.phase = Phase::Gather(run);
    }

    fn gather_done(&mut self, end: GatherEnd, _now: Instant, out: &mut Vec<Action>) {
        let Phase::Gather(run) = std::mem::replace(&mut self.phase, Phase::Ready) else {
            return;
        };
        if let Some(playing) = run.playing {
            out.push(Action::Emit(
                MediaStop {
                    reason: Some("gather-done".to_owned()),
                }
                .into(),
            ));
            out.push(Action::StopMedia {
                command_id: playing,
            });
        }
        let gather = &run.gather;
        let finished_on_key = match &end {
            GatherEnd::FinishKey(key) => key.clone(),
            _ => String::new(),
        };
        let too_short = gather
            .min_digits
            .is_some_and(|min| run.digits.chars().count() < min as usize);
        let empty = run.digits.is_empty() || too_short;
        let reason = match (&end, run.digits.is_empty()) {
            (GatherEnd::NumDigits, _) => "num-digits",
            (GatherEnd::FinishKey(_), _) => "finish-key",
            (GatherEnd::Timeout, false) => "timeout",
            (GatherEnd::Timeout, true) => "no-input",
        };
        out.push(Action::Emit(
            GatherCompleted {
                digits: run.digits.clone(),
                finished_on_key: finished_on_key.clone(),
                reason: reason.to_owned(),
            }
            .into(),
        ));
        if empty && !gather.action_on_empty_result {
            // No input falls through to the next verb.
            self.verb_finished(run.index, "no-input", out);
            self.advance(_now, out);
            return;
        }
        let digits = if empty {
            String::new()
        } else {
            run.digits.clone()
        };
        self.verb_finished(run.index, if empty { "no-input" } else { "input" }, out);
        match self.action_url(gather.action.as_deref()) {
            Ok(url) => {
                let mut params = self.standard_params();
                params.push(("Digits".into(), digits));
                params.push(("FinishedOnKey".into(), finished_on_key));
                self.fetch(
                    WebhookPurpose::Action,
                    url.to_string(),
                    gather.method,
                    params,
                    out,
                );
            }
            Err(reason) => {
                out.push(Action::Emit(
                    TwimlWarning {
                        code: SCHEMA_WARNING,
                        message: format!("{reason}; continuing with the next verb"),
                        verb: Some("Gather".to_owned()),
                    }
                    .into(),
                ));
                self.advance(_now, out);
            }
        }
    }

    // --- Record ---------------------------------------------------------------------------

    fn record_start(&mut self, index: usize, record: Record, out: &mut Vec<Action>) {
        self.ensure_answered(out);
        let recording_sid = (self.new_recording_sid)();
        // Relative callback URLs resolve against the document, like every other URL; one that
        // cannot be used is dropped with a warning and the recording goes ahead without it.
        let status_callback = record
            .recording_status_callback
            .as_deref()
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
            .and_then(|raw| match self.resolve(raw) {
                Ok(url) => Some(url.to_string()),
                Err(reason) => {
                    out.push(Action::Emit(
                        TwimlWarning {
                            code: SCHEMA_WARNING,
                            message: format!("recordingStatusCallback: {reason}; ignored"),
                            verb: Some("Record".to_owned()),
                        }
                        .into(),
                    ));
                    None
                }
            });
        let (status_callback_method, status_callback_events) = if status_callback.is_some() {
            (
                record.recording_status_callback_method,
                record.recording_status_callback_event.clone(),
            )
        } else {
            (HttpMethod::Post, Vec::new())
        };
        let command = MediaCommand::Record(MediaRecord {
            recording_sid: recording_sid.clone(),
            max_length_ms: u64::from(record.max_length) * 1000,
            // 0 disables silence detection.
            silence_timeout_ms: u64::from(record.timeout) * 1000,
            finish_on_key: record.finish_on_key.clone(),
            play_beep: record.play_beep,
            trim: record.trim == Trim::TrimSilence,
            status_callback,
            status_callback_method,
            status_callback_events,
        });
        let command_id = self.media(command, out);
        self.phase = Phase::Record(Box::new(RecordRun {
            index,
            record,
            command_id,
            recording_sid,
            hangup_deadline: None,
        }));
    }

    fn record_done(
        &mut self,
        run: RecordRun,
        outcome: RecordingOutcome,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let absent = outcome.absent || outcome.duration_ms == 0;
        if absent {
            // Empty or silent: no action request, the next verb runs.
            self.verb_finished(run.index, "absent", out);
            if self.hung_up {
                self.finish(out);
            } else {
                self.advance(now, out);
            }
            return;
        }
        self.caller_input_since_fetch = true;
        self.verb_finished(
            run.index,
            if self.hung_up { "hangup" } else { "recorded" },
            out,
        );
        let digits = if self.hung_up {
            "hangup".to_owned()
        } else {
            outcome.digits.clone().unwrap_or_default()
        };
        match self.action_url(run.record.action.as_deref()) {
            Ok(url) => {
                let mut params = self.standard_params();
                params.push((
                    "RecordingUrl".into(),
                    self.recording_url(&run.recording_sid),
                ));
                params.push((
                    "RecordingDuration".into(),
                    outcome.duration_ms.div_ceil(1000).to_string(),
                ));
                params.push(("RecordingSid".into(), run.recording_sid.to_string()));
                params.push(("Digits".into(), digits));
                self.fetch(
                    WebhookPurpose::Action,
                    url.to_string(),
                    run.record.method,
                    params,
                    out,
                );
            }
            Err(reason) => {
                out.push(Action::Emit(
                    TwimlWarning {
                        code: SCHEMA_WARNING,
                        message: format!("{reason}; continuing with the next verb"),
                        verb: Some("Record".to_owned()),
                    }
                    .into(),
                ));
                if self.hung_up {
                    self.finish(out);
                } else {
                    self.advance(now, out);
                }
            }
        }
    }

    fn recording_url(&self, sid: &RecordingSid) -> String {
        format!(
            "{}/{API_VERSION}/Accounts/{}/Recordings/{sid}",
            self.config.api_base_url.trim_end_matches('/'),
            self.ctx.account_sid
        )
    }
}

enum GatherEnd {
    NumDigits,
    FinishKey(String),
    Timeout,
}

/// Twilio's `loop="0"` means "repeat until hangup", capped at 1000 iterations.
fn media_loops(loops: u32) -> u32 {
    if loops == 0 {
        1000
    } else {
        loops
    }
}

/// Parses an absolute http(s) URL.
fn absolute_url(raw: &str) -> Result<Url, ()> {
    match Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ => Err(()),
    }
}

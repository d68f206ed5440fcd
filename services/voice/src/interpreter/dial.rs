//! `<Dial>`: the interpreter's side of calling other parties and bridging them to the
//! caller (reference §1.7, §2.2, §2.5, §3.3).
//!
//! The interpreter decides *what* to dial and *when* the legs are connected; the shell
//! places the child calls, races them, runs whisper programs and moves the audio. The
//! conversation between the two:
//!
//! 1. [`Action::Dial`] carries a [`DialPlan`]: the parties with a pre-generated child
//!    `CallSid` each (or a conference to join), ring timeout, caller ID, recording. With
//!    `answerOnBridge=false` the interpreter answers the caller first ([`Action::Answer`]
//!    precedes it), as Twilio does; the shell plays ringback while the parties ring.
//! 2. The shell reports [`DialEvent::Ringing`] (informational) and
//!    [`DialEvent::Answered`] for the first party that picks up, after cancelling the
//!    others.
//! 3. A party with a whisper URL (`<Number url>`) runs its own program first: the shell
//!    starts a second interpreter with [`Interpreter::whisper`] for the child leg
//!    ([`DialParty::child_context`]). When it completes with
//!    [`WhisperResult::Connect`], the shell reports [`DialEvent::WhisperFinished`]; when
//!    it hung up (refused), the shell hangs up the child and reports
//!    [`DialEvent::Completed`] (`completed`, never bridged).
//! 4. Once the party is ready, the interpreter answers the caller if it has not yet
//!    (`answerOnBridge=true`) and emits [`Action::Bridge`]; the shell connects the audio.
//! 5. `hangupOnStar` and `timeLimit` are the interpreter's: it emits [`Action::EndDial`],
//!    the shell hangs up the child (the caller stays) and reports [`DialEvent::Completed`].
//!    A caller hangup and a REST redirect also end the dial with [`Action::EndDial`].
//! 6. On [`DialEvent::Completed`] the interpreter requests the `action` URL with
//!    `DialCallStatus`, `DialCallSid`, `DialCallDuration`, `DialBridged` (and the
//!    recording), or goes on with the next verb when there is no `action`.
//!
//! Events: the interpreter emits `dial.started`, `dial.answered`, `media.bridge` (just
//! before [`Action::Bridge`]) and `dial.completed` in the parent's stream. The shell emits
//! the child legs' lifecycle (`call.initiated` with `parent_call_sid`, `call.ringing`,
//! `call.answered`, `call.completed`) in each child's stream, and `recording.*`.

use std::time::{Duration, Instant};

use dialtone_events::payload::{
    CallApplication, CallStatus, DialAnswered, DialCompleted, DialStarted, Direction, HttpMethod,
    MediaBridge, TwimlWarning, WebhookPurpose,
};
use dialtone_events::sid::{CallSid, RecordingSid};

use super::{Action, CallContext, Interpreter, Phase};
use crate::twiml::{
    Dial, DialConference, DialRecord, DialTarget, RecordingTrack, SipUri, Trim, SCHEMA_WARNING,
};

/// Identifies one `<Dial>` of a call; dial inputs and actions refer to it.
pub type DialId = u32;

/// Twilio rings at most this many parties per `<Dial>`.
pub const MAX_PARTIES: usize = 10;

/// What a `<Dial>` asks the shell to do. URLs in it are absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct DialPlan {
    pub destination: DialDestination,
    /// Seconds each party may ring before it counts as `no-answer` (5–600). The shell
    /// enforces it per leg (with `sequential`, each party gets the full timeout).
    pub timeout_s: u32,
    /// `From` of the child legs: `callerId`, or the caller's own number.
    pub caller_id: String,
    /// Longest bridge in seconds. The interpreter enforces it ([`Action::EndDial`]).
    pub time_limit_s: u32,
    /// The caller's `*` drops the callee. The interpreter enforces it; the shell only has
    /// to keep reporting the caller's DTMF during the bridge.
    pub hangup_on_star: bool,
    /// `Some` when `record` asks for a recording of the parent call.
    pub recording: Option<DialRecording>,
    /// The caller stays unanswered (and hears the callee's early media) until the bridge.
    pub answer_on_bridge: bool,
    /// `ringTone`: country code of the ringback the caller hears; `None` = platform default.
    pub ring_tone: Option<String>,
    /// Ring the parties one after another, in order, instead of all at once.
    pub sequential: bool,
    pub call_reason: Option<String>,
}

/// Where the caller goes.
#[derive(Debug, Clone, PartialEq)]
pub enum DialDestination {
    /// Ring these parties (at once, or one by one with `sequential`); the first to answer
    /// is bridged and the others are cancelled.
    Parties(Vec<DialParty>),
    /// Join the caller to this conference room. No child call: the caller is the
    /// participant. URLs (`waitUrl`, callbacks) are resolved; `wait_url: Some("")` means
    /// silence and `None` the platform's hold music.
    Conference(Box<DialConference>),
}

/// One party to ring: a child call.
#[derive(Debug, Clone, PartialEq)]
pub struct DialParty {
    /// The child leg's SID, chosen before dialing so `dial.started` can name it.
    pub child_call_sid: CallSid,
    pub address: PartyAddress,
    /// `url`/`method` of the noun: TwiML run on the child leg after it answers, before
    /// the bridge.
    pub whisper: Option<Whisper>,
    /// The noun's `statusCallback` (absolute), for the child leg's status callbacks.
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    /// Subset of `initiated ringing answered completed`.
    pub status_callback_events: Vec<String>,
}

/// How to reach a party.
#[derive(Debug, Clone, PartialEq)]
pub enum PartyAddress {
    Number {
        number: String,
        /// DTMF to send once the party answers (`w` = half a second pause).
        send_digits: Option<String>,
        /// Trunk to use (`byoc`).
        byoc: Option<String>,
    },
    Sip {
        uri: String,
        username: Option<String>,
        password: Option<String>,
        /// `<Headers>` to add to the INVITE.
        headers: Vec<(String, String)>,
        /// `<Uri>` children: failover targets, tried in priority order.
        failover: Vec<SipUri>,
    },
}

impl PartyAddress {
    /// The child leg's `To`: the number or the SIP URI.
    pub fn to(&self) -> &str {
        match self {
            PartyAddress::Number { number, .. } => number,
            PartyAddress::Sip { uri, .. } => uri,
        }
    }
}

/// A whisper (screening) program for a child leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whisper {
    pub url: String,
    pub method: HttpMethod,
}

/// Recording of a dialed call. The recording belongs to the parent call.
#[derive(Debug, Clone, PartialEq)]
pub struct DialRecording {
    pub recording_sid: RecordingSid,
    /// `record-from-ringing*`: start when the parties start ringing; otherwise at the
    /// bridge.
    pub from_ringing: bool,
    /// `*-dual`: each leg in its own channel.
    pub dual_channel: bool,
    pub track: RecordingTrack,
    pub trim: Trim,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub status_callback_events: Vec<String>,
}

/// `DialCallStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialCallStatus {
    /// The callee answered and the call ended normally.
    Completed,
    /// Twilio's value for a conference the caller joined and left.
    Answered,
    Busy,
    NoAnswer,
    /// Could not be routed, or no party could be dialed.
    Failed,
    /// Ended before anyone answered, by the caller hanging up or a REST update.
    Canceled,
}

impl DialCallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DialCallStatus::Completed => "completed",
            DialCallStatus::Answered => "answered",
            DialCallStatus::Busy => "busy",
            DialCallStatus::NoAnswer => "no-answer",
            DialCallStatus::Failed => "failed",
            DialCallStatus::Canceled => "canceled",
        }
    }
}

/// What the shell reports about a dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialEvent {
    /// A party is ringing (informational).
    Ringing { child: CallSid },
    /// A party answered. The shell has cancelled the other parties and, when the party has
    /// a whisper, started it.
    Answered { child: CallSid },
    /// The answered party's whisper program ended without hanging up: connect it.
    WhisperFinished { child: CallSid },
    /// The dial is over: nobody answered, the bridge ended, or the shell ended it after
    /// [`Action::EndDial`].
    Completed {
        /// The party that answered, or the one whose failure is reported.
        child: Option<CallSid>,
        status: DialCallStatus,
        /// Seconds the child leg was up (answer to hangup); 0 when it never answered.
        duration_s: u64,
        /// Length of the dial's recording, when one was made.
        recording_duration_ms: Option<u64>,
    },
}

/// Why the interpreter ends a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialEndReason {
    /// The caller pressed `*` (`hangupOnStar`).
    HangupOnStar,
    /// The bridge lasted `timeLimit`.
    TimeLimit,
    /// The caller hung up: cancel the ringing parties or hang up the bridged one.
    CallerHungUp,
    /// A REST live update replaced the TwiML.
    Redirected,
}

impl DialEndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DialEndReason::HangupOnStar => "hangup-on-star",
            DialEndReason::TimeLimit => "time-limit",
            DialEndReason::CallerHungUp => "caller-hung-up",
            DialEndReason::Redirected => "redirected",
        }
    }
}

/// How a whisper program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperResult {
    /// It ran to the end: connect the callee.
    Connect,
    /// It hung up (or the callee did): the bridge is refused.
    Refused,
}

impl DialParty {
    /// The child leg's call, for its `call.initiated` and its whisper interpreter:
    /// `outbound-dial`, `ParentCallSid` set, `From` = the dial's caller ID, `in-progress`
    /// (a whisper runs once the party answered).
    pub fn child_context(&self, parent: &CallContext, caller_id: &str) -> CallContext {
        CallContext {
            call_sid: self.child_call_sid.clone(),
            account_sid: parent.account_sid.clone(),
            from: caller_id.to_owned(),
            to: self.address.to().to_owned(),
            direction: Direction::OutboundDial,
            call_status: CallStatus::InProgress,
            parent_call_sid: Some(parent.call_sid.clone()),
            forwarded_from: None,
            caller_name: None,
            application: self.child_application(),
            extra_params: Vec::new(),
        }
    }

    /// The child's application: the whisper URL (if any) and the noun's status callback.
    /// No fallback URL: when the whisper cannot be fetched, the callee hears the
    /// application-error prompt and the bridge is refused.
    pub fn child_application(&self) -> CallApplication {
        CallApplication {
            url: self.whisper.as_ref().map(|w| w.url.clone()),
            method: self
                .whisper
                .as_ref()
                .map(|w| w.method)
                .unwrap_or(HttpMethod::Post),
            twiml: None,
            fallback_url: None,
            fallback_method: HttpMethod::Post,
            status_callback: self.status_callback.clone(),
            status_callback_method: self.status_callback_method,
            status_callback_events: self.status_callback_events.clone(),
        }
    }
}

impl DialPlan {
    /// The parties to ring (empty for a conference).
    pub fn parties(&self) -> &[DialParty] {
        match &self.destination {
            DialDestination::Parties(parties) => parties,
            DialDestination::Conference(_) => &[],
        }
    }

    pub fn party(&self, child: &CallSid) -> Option<&DialParty> {
        self.parties().iter().find(|p| &p.child_call_sid == child)
    }

    pub fn is_conference(&self) -> bool {
        matches!(self.destination, DialDestination::Conference(_))
    }
}

/// A dial in progress.
#[derive(Debug, Clone)]
pub(super) struct DialRun {
    pub(super) index: usize,
    pub(super) dial_id: DialId,
    action: Option<String>,
    method: HttpMethod,
    plan: DialPlan,
    started_at: Instant,
    answered_child: Option<CallSid>,
    answered_at: Option<Instant>,
    /// When the caller was connected (the bridge, or joining the conference).
    bridged_at: Option<Instant>,
    /// Set once the interpreter asked the shell to end the dial: the outcome is awaited
    /// until this time.
    end_deadline: Option<Instant>,
}

impl DialRun {
    /// When the interpreter next has something to do for this dial.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.end_deadline, self.bridged_at) {
            (Some(end), _) => Some(end),
            (None, Some(bridged)) => {
                Some(bridged + Duration::from_secs(u64::from(self.plan.time_limit_s)))
            }
            (None, None) => None,
        }
    }
}

/// The facts of a finished dial, from the shell or made up when it never reported.
struct DialOutcome {
    child: Option<CallSid>,
    status: DialCallStatus,
    duration_s: u64,
    recording_duration_ms: Option<u64>,
}

impl Interpreter {
    /// An interpreter for a child leg's whisper program (`<Number url>`): the callee has
    /// answered (`ctx.call_status` is `in-progress`), the end of the document connects
    /// the callee instead of hanging up, and `<Dial>` is not allowed. Drive it like any
    /// other; after [`Action::Completed`], [`Interpreter::whisper_result`] says whether to
    /// bridge.
    pub fn whisper(ctx: CallContext, config: super::InterpreterConfig) -> Interpreter {
        let mut interpreter = Interpreter::new(ctx, config);
        interpreter.whisper = true;
        interpreter
    }

    /// For a whisper interpreter that has completed: connect or refuse. `None` while it
    /// runs, or for an ordinary interpreter.
    pub fn whisper_result(&self) -> Option<WhisperResult> {
        if !self.whisper || !self.is_completed() {
            return None;
        }
        Some(if self.hung_up || self.hangup_issued {
            WhisperResult::Refused
        } else {
            WhisperResult::Connect
        })
    }

    /// Replaces the source of child call SIDs (tests use a deterministic one).
    pub fn set_call_sid_source(&mut self, source: impl FnMut() -> CallSid + Send + Sync + 'static) {
        self.new_call_sid = Box::new(source);
    }

    /// Something happened to the dial `dial_id`. Reports about other dials are ignored.
    pub fn on_dial_event(
        &mut self,
        dial_id: DialId,
        event: DialEvent,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let mut run = match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Dial(run) if run.dial_id == dial_id => run,
            other => {
                self.phase = other;
                tracing::debug!(call = %self.ctx.call_sid, dial_id, ?event, "stale dial event");
                return out;
            }
        };
        match event {
            DialEvent::Ringing { child } => {
                tracing::debug!(call = %self.ctx.call_sid, %child, "dialed party ringing");
                self.phase = Phase::Dial(run);
            }
            DialEvent::Answered { child } => {
                let known = run.plan.party(&child).cloned();
                match known {
                    Some(party) if run.answered_child.is_none() && run.end_deadline.is_none() => {
                        out.push(Action::Emit(
                            DialAnswered {
                                child_call_sid: child.clone(),
                            }
                            .into(),
                        ));
                        run.answered_child = Some(child.clone());
                        run.answered_at = Some(now);
                        if party.whisper.is_none() {
                            self.dial_connect(&mut run, child, now, &mut out);
                        }
                    }
                    _ => {
                        tracing::warn!(call = %self.ctx.call_sid, %child, "unexpected answer of a dialed party ignored");
                    }
                }
                self.phase = Phase::Dial(run);
            }
            DialEvent::WhisperFinished { child } => {
                if run.answered_child.as_ref() == Some(&child)
                    && run.bridged_at.is_none()
                    && run.end_deadline.is_none()
                {
                    self.dial_connect(&mut run, child, now, &mut out);
                }
                self.phase = Phase::Dial(run);
            }
            DialEvent::Completed {
                child,
                status,
                duration_s,
                recording_duration_ms,
            } => {
                let outcome = DialOutcome {
                    child,
                    status,
                    duration_s,
                    recording_duration_ms,
                };
                self.dial_done(*run, outcome, now, &mut out);
            }
        }
        out
    }

    // --- internals ------------------------------------------------------------------------

    pub(super) fn dial_start(
        &mut self,
        index: usize,
        dial: Dial,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.whisper {
            // Twilio does not allow <Dial> in a whisper program.
            self.skip(index, "<Dial> cannot run on a dialed party's leg", out);
            return;
        }
        let plan = self.dial_plan(&dial, out);
        // Twilio answers as soon as <Dial> runs (billing starts, the caller hears
        // ringback) unless answerOnBridge defers it. Joining a conference answers too.
        if !dial.answer_on_bridge || plan.as_ref().is_some_and(DialPlan::is_conference) {
            self.ensure_answered(out);
        }
        let dial_id = self.next_dial_id;
        self.next_dial_id += 1;
        let Some(plan) = plan else {
            // Nothing dialable: the dial fails at once, and the application learns it.
            let run = DialRun {
                index,
                dial_id,
                action: dial.action,
                method: dial.method,
                plan: DialPlan {
                    destination: DialDestination::Parties(Vec::new()),
                    timeout_s: dial.timeout,
                    caller_id: String::new(),
                    time_limit_s: dial.time_limit,
                    hangup_on_star: false,
                    recording: None,
                    answer_on_bridge: dial.answer_on_bridge,
                    ring_tone: None,
                    sequential: false,
                    call_reason: None,
                },
                started_at: now,
                answered_child: None,
                answered_at: None,
                bridged_at: None,
                end_deadline: None,
            };
            let outcome = DialOutcome {
                child: None,
                status: DialCallStatus::Failed,
                duration_s: 0,
                recording_duration_ms: None,
            };
            self.dial_done(run, outcome, now, out);
            return;
        };
        let (child_call_sids, targets) = match &plan.destination {
            DialDestination::Parties(parties) => (
                parties.iter().map(|p| p.child_call_sid.clone()).collect(),
                parties.iter().map(|p| p.address.to().to_owned()).collect(),
            ),
            DialDestination::Conference(room) => {
                (Vec::new(), vec![format!("conference:{}", room.name)])
            }
        };
        out.push(Action::Emit(
            DialStarted {
                child_call_sids,
                targets,
            }
            .into(),
        ));
        let is_conference = plan.is_conference();
        out.push(Action::Dial {
            dial_id,
            plan: plan.clone(),
        });
        self.phase = Phase::Dial(Box::new(DialRun {
            index,
            dial_id,
            action: dial.action,
            method: dial.method,
            plan,
            started_at: now,
            answered_child: None,
            answered_at: None,
            // The caller is in the room from the start: hangupOnStar and timeLimit apply.
            bridged_at: is_conference.then_some(now),
            end_deadline: None,
        }));
    }

    /// Builds the plan; `None` when nothing can be dialed (warnings say why).
    fn dial_plan(&mut self, dial: &Dial, out: &mut Vec<Action>) -> Option<DialPlan> {
        let mut parties = Vec::new();
        let mut conference: Option<DialConference> = None;
        for target in &dial.targets {
            match &target.value {
                DialTarget::Conference(room) => {
                    if conference.is_some() {
                        self.dial_warning("only one <Conference> per <Dial>; ignored", out);
                    } else {
                        conference = Some(self.resolve_conference(room.clone(), out));
                    }
                }
                DialTarget::Number(number) => {
                    let address = PartyAddress::Number {
                        number: number.number.trim().to_owned(),
                        send_digits: number.send_digits.clone(),
                        byoc: number.byoc.clone(),
                    };
                    if let Some(party) = self.dial_party(address, &number.callbacks, out) {
                        parties.push(party);
                    }
                }
                DialTarget::Sip(sip) => {
                    let address = PartyAddress::Sip {
                        uri: sip.uri.trim().to_owned(),
                        username: sip.username.clone(),
                        password: sip.password.clone(),
                        headers: sip.headers.clone(),
                        failover: sip.uris.clone(),
                    };
                    if let Some(party) = self.dial_party(address, &sip.callbacks, out) {
                        parties.push(party);
                    }
                }
                other => {
                    let noun = match other {
                        DialTarget::Client(_) => "Client",
                        DialTarget::Queue(_) => "Queue",
                        DialTarget::Application(_) => "Application",
                        DialTarget::Sim(_) => "Sim",
                        DialTarget::WhatsApp(_) => "WhatsApp",
                        _ => "noun",
                    };
                    self.dial_warning(
                        &format!("<{noun}> in <Dial> is not supported by Dialtone yet; ignored"),
                        out,
                    );
                }
            }
        }
        let destination = match conference {
            Some(room) => {
                if !parties.is_empty() {
                    self.dial_warning(
                        "a <Dial> with a <Conference> only joins the conference; other nouns ignored",
                        out,
                    );
                }
                DialDestination::Conference(Box::new(room))
            }
            None if parties.is_empty() => {
                self.dial_warning("<Dial> has nothing it can dial", out);
                return None;
            }
            None => {
                // The parser warned already; Twilio rings at most ten.
                parties.truncate(MAX_PARTIES);
                DialDestination::Parties(parties)
            }
        };
        let recording = (dial.record != DialRecord::DoNotRecord).then(|| DialRecording {
            recording_sid: (self.new_recording_sid)(),
            from_ringing: matches!(
                dial.record,
                DialRecord::RecordFromRinging | DialRecord::RecordFromRingingDual
            ),
            dual_channel: matches!(
                dial.record,
                DialRecord::RecordFromAnswerDual | DialRecord::RecordFromRingingDual
            ),
            track: dial.recording_track,
            trim: dial.trim.unwrap_or(self.config.dial_recording_trim),
            status_callback: dial
                .recording_status_callback
                .as_deref()
                .and_then(|url| self.resolve_or_warn(url, "recordingStatusCallback", out)),
            status_callback_method: dial.recording_status_callback_method,
            status_callback_events: dial.recording_status_callback_event.clone(),
        });
        Some(DialPlan {
            destination,
            timeout_s: dial.timeout.clamp(5, 600),
            caller_id: dial
                .caller_id
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| self.ctx.from.clone()),
            time_limit_s: dial.time_limit.max(1),
            hangup_on_star: dial.hangup_on_star,
            recording,
            answer_on_bridge: dial.answer_on_bridge,
            ring_tone: dial.ring_tone.clone(),
            sequential: dial.sequential,
            call_reason: dial.call_reason.clone(),
        })
    }

    fn dial_party(
        &mut self,
        address: PartyAddress,
        callbacks: &crate::twiml::LegCallbacks,
        out: &mut Vec<Action>,
    ) -> Option<DialParty> {
        if address.to().is_empty() {
            self.dial_warning("a party of <Dial> has no number or URI; ignored", out);
            return None;
        }
        let whisper = callbacks
            .url
            .as_deref()
            .and_then(|url| self.resolve_or_warn(url, "url", out))
            .map(|url| Whisper {
                url,
                method: callbacks.method,
            });
        let status_callback = callbacks
            .status_callback
            .as_deref()
            .and_then(|url| self.resolve_or_warn(url, "statusCallback", out));
        Some(DialParty {
            child_call_sid: (self.new_call_sid)(),
            address,
            whisper,
            status_callback,
            status_callback_method: callbacks.status_callback_method,
            status_callback_events: callbacks.status_callback_event.clone(),
        })
    }

    fn resolve_conference(
        &self,
        mut room: DialConference,
        out: &mut Vec<Action>,
    ) -> DialConference {
        room.name = room.name.trim().to_owned();
        room.wait_url = match room.wait_url.take() {
            // Empty waitUrl: silence.
            Some(url) if url.trim().is_empty() => Some(String::new()),
            Some(url) => self.resolve_or_warn(&url, "waitUrl", out),
            None => None,
        };
        for (name, field) in [
            ("statusCallback", &mut room.status_callback),
            (
                "recordingStatusCallback",
                &mut room.recording_status_callback,
            ),
            ("eventCallbackUrl", &mut room.event_callback_url),
        ] {
            *field = field
                .take()
                .and_then(|url| self.resolve_or_warn(&url, name, out));
        }
        room
    }

    /// Resolves a URL of the `<Dial>`; a bad one is dropped with a warning.
    fn resolve_or_warn(&self, raw: &str, attribute: &str, out: &mut Vec<Action>) -> Option<String> {
        match self.resolve(raw) {
            Ok(url) => Some(url.to_string()),
            Err(reason) => {
                self.dial_warning(&format!("{attribute}: {reason}; ignored"), out);
                None
            }
        }
    }

    fn dial_warning(&self, message: &str, out: &mut Vec<Action>) {
        out.push(Action::Emit(
            TwimlWarning {
                code: SCHEMA_WARNING,
                message: message.to_owned(),
                verb: Some("Dial".to_owned()),
            }
            .into(),
        ));
    }

    /// The answered party is ready: answer the caller if still unanswered, then bridge.
    fn dial_connect(
        &mut self,
        run: &mut DialRun,
        child: CallSid,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.ensure_answered(out);
        out.push(Action::Emit(
            MediaBridge {
                other_call_sid: child.clone(),
            }
            .into(),
        ));
        out.push(Action::Bridge {
            dial_id: run.dial_id,
            child_call_sid: child,
        });
        run.bridged_at = Some(now);
    }

    /// Asks the shell to end the dial, and waits a while for its outcome.
    pub(super) fn dial_end(
        &self,
        run: &mut DialRun,
        reason: DialEndReason,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        tracing::debug!(call = %self.ctx.call_sid, reason = reason.as_str(), "ending the dial");
        out.push(Action::EndDial {
            dial_id: run.dial_id,
            reason,
        });
        if run.end_deadline.is_none() {
            run.end_deadline = Some(now + self.config.dial_end_grace);
        }
    }

    /// `*` from the caller: with `hangupOnStar`, drop the callee.
    pub(super) fn dial_dtmf(&mut self, digit: char, now: Instant, out: &mut Vec<Action>) {
        let Phase::Dial(mut run) = std::mem::replace(&mut self.phase, Phase::Ready) else {
            return;
        };
        if digit == '*'
            && run.plan.hangup_on_star
            && run.bridged_at.is_some()
            && run.end_deadline.is_none()
        {
            self.dial_end(&mut run, DialEndReason::HangupOnStar, now, out);
        }
        self.phase = Phase::Dial(run);
    }

    /// A dial deadline: `timeLimit`, or the shell never reported the end of the dial.
    pub(super) fn dial_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Dial(mut run) = std::mem::replace(&mut self.phase, Phase::Ready) else {
            return;
        };
        if run.deadline().is_none_or(|d| now < d) {
            self.phase = Phase::Dial(run);
            return;
        }
        if run.end_deadline.is_some() {
            tracing::warn!(call = %self.ctx.call_sid, dial_id = run.dial_id, "no dial outcome after ending it; assuming one");
            let outcome = self.assumed_outcome(&run, now);
            self.dial_done(*run, outcome, now, out);
        } else {
            self.dial_end(&mut run, DialEndReason::TimeLimit, now, out);
            self.phase = Phase::Dial(run);
        }
    }

    /// The caller hung up during the dial: end it, then still report it to `action`.
    pub(super) fn dial_caller_hangup(
        &mut self,
        mut run: Box<DialRun>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.dial_end(&mut run, DialEndReason::CallerHungUp, now, out);
        self.phase = Phase::Dial(run);
    }

    /// A REST update replaces the TwiML: end the dial and record it at once; its `action`
    /// is not requested (the new TwiML has taken over) and the shell's late outcome is
    /// ignored.
    pub(super) fn dial_interrupted(
        &mut self,
        mut run: Box<DialRun>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.dial_end(&mut run, DialEndReason::Redirected, now, out);
        let outcome = completed_outcome(&run, self.assumed_outcome(&run, now));
        let bridged = was_bridged(&run, &outcome);
        self.dial_completed_event(&run, &outcome, bridged, out);
        self.verb_finished(run.index, "redirected", out);
    }

    /// What a dial ended by the interpreter most likely came to when the shell is silent.
    fn assumed_outcome(&self, run: &DialRun, now: Instant) -> DialOutcome {
        let status = match (run.bridged_at.is_some(), run.plan.is_conference()) {
            (true, true) => DialCallStatus::Answered,
            (true, false) => DialCallStatus::Completed,
            (false, _) => DialCallStatus::Canceled,
        };
        DialOutcome {
            child: run.answered_child.clone(),
            status,
            duration_s: run
                .answered_at
                .or(run.bridged_at)
                .map(|at| now.saturating_duration_since(at).as_secs())
                .unwrap_or(0),
            recording_duration_ms: None,
        }
    }

    fn dial_completed_event(
        &self,
        run: &DialRun,
        outcome: &DialOutcome,
        bridged: bool,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Emit(
            DialCompleted {
                dial_call_status: outcome.status.as_str().to_owned(),
                child_call_sid: outcome.child.clone(),
                duration_s: outcome.duration_s,
                bridged,
            }
            .into(),
        ));
        tracing::debug!(
            call = %self.ctx.call_sid,
            dial_id = run.dial_id,
            status = outcome.status.as_str(),
            ringing_for = ?run.answered_at.unwrap_or(run.started_at).saturating_duration_since(run.started_at),
            "dial completed"
        );
    }

    /// The dial is over: `action`, or the next verb.
    fn dial_done(
        &mut self,
        run: DialRun,
        outcome: DialOutcome,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let outcome = completed_outcome(&run, outcome);
        let bridged = was_bridged(&run, &outcome);
        self.dial_completed_event(&run, &outcome, bridged, out);
        self.verb_finished(run.index, outcome.status.as_str(), out);
        let Some(action) = run.action.as_deref() else {
            if self.hung_up {
                self.finish(out);
            } else {
                self.advance(now, out);
            }
            return;
        };
        match self.resolve(action) {
            Ok(url) => {
                let mut params = self.standard_params();
                params.push(("DialCallStatus".into(), outcome.status.as_str().into()));
                if let Some(child) = &outcome.child {
                    params.push(("DialCallSid".into(), child.to_string()));
                }
                params.push(("DialCallDuration".into(), outcome.duration_s.to_string()));
                params.push(("DialBridged".into(), bridged.to_string()));
                if let (Some(recording), Some(duration_ms)) =
                    (&run.plan.recording, outcome.recording_duration_ms)
                {
                    params.push((
                        "RecordingUrl".into(),
                        self.recording_url(&recording.recording_sid),
                    ));
                    params.push(("RecordingSid".into(), recording.recording_sid.to_string()));
                    params.push((
                        "RecordingDuration".into(),
                        duration_ms.div_ceil(1000).to_string(),
                    ));
                }
                // After a caller hangup the request is still made; its TwiML is ignored.
                self.fetch(
                    WebhookPurpose::Action,
                    url.to_string(),
                    run.method,
                    params,
                    out,
                );
            }
            Err(reason) => {
                self.dial_warning(
                    &format!("action: {reason}; continuing with the next verb"),
                    out,
                );
                if self.hung_up {
                    self.finish(out);
                } else {
                    self.advance(now, out);
                }
            }
        }
    }
}

/// Completes a reported outcome with what the interpreter knows.
fn completed_outcome(run: &DialRun, mut outcome: DialOutcome) -> DialOutcome {
    if run.plan.is_conference() {
        // Twilio reports a conference the caller was in as `answered`.
        if outcome.status == DialCallStatus::Completed {
            outcome.status = DialCallStatus::Answered;
        }
    } else if outcome.child.is_none() {
        // The answered party, or the only one there was.
        outcome.child = run
            .answered_child
            .clone()
            .or_else(|| match run.plan.parties() {
                [only] => Some(only.child_call_sid.clone()),
                _ => None,
            });
    }
    outcome
}

/// `DialBridged`: the caller was connected, and the dial ended normally.
fn was_bridged(run: &DialRun, outcome: &DialOutcome) -> bool {
    run.bridged_at.is_some()
        && matches!(
            outcome.status,
            DialCallStatus::Completed | DialCallStatus::Answered
        )
}

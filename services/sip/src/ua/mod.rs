//! The UA core (RFC 3261 §8, §12–§15, RFC 4028), sans-IO.
//!
//! This module owns: turning datagrams into calls and call events, and app commands into
//! messages. As a UAS it answers `100 Trying` at once, absorbs retransmitted and merged
//! INVITEs, answers OPTIONS (200 with Allow), unknown methods (501) and disallowed ones
//! (405), unknown URI schemes (416), unsupported `Require` (420), bodies it cannot read
//! (415/406), requests outside any dialog (481), glare (491), and session intervals that are
//! too small (422). It retransmits its 2xx until the ACK arrives (giving up after 64*T1 with
//! `AckTimeout` and a BYE), turns CANCEL into 200 + 487, delivers INFO (DTMF), re-INVITE and
//! UPDATE to the app, sends and receives BYE, and keeps RFC 4028 session timers (refreshing
//! with UPDATE or re-INVITE when it is the refresher, sending BYE when the session expires).
//! As a UAC it sends INVITE, handles 1xx/2xx (ACKing every 2xx), CANCEL, and digest
//! authentication challenges.
//!
//! Inputs: [`UserAgent::handle_datagram`], [`UserAgent::handle_timeout`] and the command
//! methods, each with the current time. Outputs: [`UserAgent::poll_output`] (datagrams to
//! send, new calls, call events) and [`UserAgent::poll_timeout`].

mod uac;
mod uas;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::dialog::Dialog;
use crate::message::{
    error_response_from_headers, parse_datagram, response_from_request, validate_request,
    validate_response, HeaderName, Method, NameAddr, ParseFailure, Parsed, Request, Response,
    SipMessage, Uri,
};
use crate::overload::{Load, OverloadConfig, OverloadGuard, RejectReason, Rejection};
use crate::timer::TimerQueue;
use crate::transaction::{
    new_branch, response_destination, stamp_received, TimerConfig, TransactionLayer, Transmit,
    Transport, TxError, TxId, TxNotice,
};

pub use uac::{Credentials, OutgoingInvite};

/// Methods we implement, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
/// Extensions we implement, for `Supported`.
pub const SUPPORTED: &str = "timer";

/// UA core configuration.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// Host (public IP or name) written in our Via and Contact.
    pub contact_host: String,
    /// Port written in our Via and Contact.
    pub contact_port: u16,
    /// User part of our Contact.
    pub contact_user: String,
    pub timers: TimerConfig,
    /// `User-Agent`/`Server` header value.
    pub user_agent: String,
    /// Answer to the source port even when the request's Via has no `rport`.
    pub force_rport: bool,
    /// Our `Min-SE` (RFC 4028): smaller session intervals are answered 422.
    pub min_session_expires: u32,
    /// Session interval we ask for on outgoing INVITEs (0: none).
    pub session_expires: u32,
    /// How long the app has to answer a re-INVITE/UPDATE before we answer 500 for it.
    pub reoffer_timeout: Duration,
    /// Limits beyond which new INVITEs get 503 (calls, server transactions, per-source CPS).
    pub overload: OverloadConfig,
    /// An inbound call neither answered nor rejected by the app within this is answered
    /// 480 (a safety net against an app that lost the call).
    pub unanswered_timeout: Duration,
}

impl Default for UaConfig {
    fn default() -> Self {
        UaConfig {
            contact_host: "127.0.0.1".into(),
            contact_port: 5060,
            contact_user: "dialtone".into(),
            timers: TimerConfig::default(),
            user_agent: concat!("dialtone/", env!("CARGO_PKG_VERSION")).into(),
            force_rport: false,
            min_session_expires: 90,
            session_expires: 1800,
            reoffer_timeout: Duration::from_secs(10),
            overload: OverloadConfig::default(),
            unanswered_timeout: Duration::from_secs(300),
        }
    }
}

/// Identifies a call inside one [`UserAgent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// A new inbound call, already answered `100 Trying`.
#[derive(Debug, Clone)]
pub struct InboundCall {
    pub key: CallKey,
    pub call_id: String,
    pub from: NameAddr,
    pub to: NameAddr,
    pub request_uri: Uri,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// What it came over (responses and in-dialog requests use the same).
    pub transport: Transport,
    /// The SDP offer (also extracted from a multipart body), if any.
    pub sdp_offer: Option<String>,
    /// The INVITE itself, for any other header the app needs (`Diversion`,
    /// `P-Asserted-Identity`, `X-` headers...).
    pub invite: Request,
}

impl InboundCall {
    /// The first `Diversion` entry (RFC 5806): Twilio's `ForwardedFrom`.
    pub fn diversion(&self) -> Option<NameAddr> {
        self.invite
            .headers
            .list(&HeaderName::Diversion)
            .first()
            .and_then(|d| NameAddr::parse(d).ok())
    }

    /// The first `P-Asserted-Identity` entry.
    pub fn asserted_identity(&self) -> Option<NameAddr> {
        self.invite
            .headers
            .list(&HeaderName::PAssertedIdentity)
            .first()
            .and_then(|d| NameAddr::parse(d).ok())
    }

    /// Values of a header of the INVITE by name (e.g. `"X-Account"`).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.invite
            .headers
            .get_all(&HeaderName::parse(name))
            .collect()
    }
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationReason {
    /// The remote side sent BYE.
    RemoteBye,
    /// We sent BYE (`hangup`).
    LocalBye,
    /// The caller cancelled before we answered.
    Cancelled,
    /// We answered with a final error (`reject`, or `hangup` before answering).
    Rejected { status: u16 },
    /// Our 2xx was never ACKed; we sent BYE.
    AckTimeout,
    /// The RFC 4028 session expired; we sent BYE.
    SessionExpired,
    /// Outbound: the INVITE failed with this final status.
    Failed { status: u16, reason: String },
    /// Outbound: no final response (Timer B) or we cancelled it.
    TimedOut,
    /// Outbound: we cancelled the INVITE.
    LocalCancel,
}

/// What happens on a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// The ACK for our 2xx to the INVITE arrived (with the answer if the offer was ours).
    Acked { sdp: Option<String> },
    /// No ACK for our 2xx within 64*T1; a BYE follows.
    AckTimeout,
    /// The remote side hung up.
    ByeReceived,
    /// The caller cancelled before we answered (487 sent).
    Cancelled,
    /// INFO inside the dialog (answered 200), e.g. `application/dtmf-relay`.
    Info {
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// A re-INVITE or UPDATE (hold/unhold, new media); answer with
    /// [`UserAgent::respond_to_reoffer`]. `sdp` is `None` for a re-INVITE without offer
    /// (our 2xx must then carry an offer).
    ReInvite { sdp: Option<String>, method: Method },
    /// The ACK of our 2xx to a re-INVITE (carries the answer when our 2xx had the offer).
    ReInviteAcked { sdp: Option<String> },
    /// The session timer expired without refresh; a BYE follows.
    SessionExpired,
    /// Outbound: a provisional response (180/183...), with early-media SDP if any.
    Progress {
        status: u16,
        reason: String,
        sdp: Option<String>,
    },
    /// Outbound: 2xx received and ACKed.
    Answered { sdp: Option<String> },
    /// The call is over; no more events follow and commands fail.
    Terminated { reason: TerminationReason },
}

/// The app's answer to [`CallEvent::ReInvite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReofferAnswer {
    /// 200 OK, with our (new) SDP.
    Accept { sdp: Option<String> },
    /// A final error, e.g. 488.
    Reject { status: u16, reason: Option<String> },
}

/// How a hangup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HangupOutcome {
    /// Our BYE got a final response.
    ByeAnswered { status: u16 },
    /// Our BYE got no answer within 64*T1.
    ByeTimedOut,
    /// The call was not answered yet: we rejected it with this status.
    Rejected { status: u16 },
    /// Outbound call not answered yet: we sent CANCEL.
    Cancelled,
    /// The remote side's BYE crossed ours.
    RemoteHungUp,
}

/// What the UA core asks the shell to do or know.
#[derive(Debug, Clone)]
pub enum UaOutput {
    Transmit(Transmit),
    IncomingCall(Box<InboundCall>),
    Call {
        key: CallKey,
        event: CallEvent,
    },
    /// A `hangup` finished (the call's `Terminated` event is also emitted).
    HangupDone {
        key: CallKey,
        outcome: HangupOutcome,
    },
}

/// A command the call cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no such call (it has ended)")]
    NoSuchCall,
    #[error("the call has already been answered or rejected")]
    AlreadyFinal,
    #[error("the call is not answered yet")]
    NotAnswered,
    #[error("no re-INVITE/UPDATE is waiting for an answer")]
    NoPendingReoffer,
    #[error("the call is already hanging up")]
    AlreadyTerminating,
    #[error("status {0} is not allowed here")]
    InvalidStatus(u16),
    #[error("this command is for {0} calls only")]
    WrongDirection(&'static str),
    #[error("invalid target or header: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Transaction(#[from] TxError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallDirection {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Inbound: no final response yet. Outbound: INVITE sent, no 2xx yet.
    Early,
    /// Inbound: 2xx sent, waiting for the ACK.
    Answered,
    Confirmed,
    /// BYE sent (or about to be), waiting for its response.
    Terminating,
}

/// A 2xx we retransmit until its ACK arrives (§13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    cseq: u32,
    initial: bool,
    bytes: Bytes,
    dest: SocketAddr,
    transport: Transport,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// An incoming re-INVITE/UPDATE waiting for the app.
#[derive(Debug)]
struct Reoffer {
    tx: TxId,
    request: Request,
    deadline: Instant,
}

/// RFC 4028 state.
#[derive(Debug, Clone)]
struct SessionTimer {
    interval: u32,
    we_refresh: bool,
    /// Refresh (if we refresh) or expiry (if they do).
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientRole {
    Bye,
    /// Our session refresh (UPDATE or re-INVITE).
    Refresh,
    /// Outbound initial INVITE.
    Invite,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CallTimer {
    Retransmit2xx,
    Reoffer,
    Session,
    RefreshRetry,
    /// Outbound: give up on an unanswered INVITE after a provisional (Timer C-like).
    RingTimeout,
    /// Inbound: the app never answered.
    AnswerTimeout,
}

#[derive(Debug)]
struct Call {
    direction: CallDirection,
    phase: Phase,
    dialog: Dialog,
    /// Where the peer talks to us from (fallback next hop; the connection on TCP).
    flow: SocketAddr,
    /// The transport of the dialog: the INVITE's, for every request and response of it.
    transport: Transport,
    /// The initial INVITE (received, or sent).
    invite: Request,
    invite_tx: Option<TxId>,
    local_sdp: Option<String>,
    pending_2xx: Option<Pending2xx>,
    /// `hangup` came while waiting for the ACK: send BYE once it arrives (§15).
    hangup_after_ack: bool,
    hangup_requested: bool,
    termination: Option<TerminationReason>,
    reoffer: Option<Reoffer>,
    bye_tx: Option<TxId>,
    refresh_tx: Option<TxId>,
    refresh_retry_at: Option<Instant>,
    /// Last ACK we sent for a 2xx to one of our INVITEs (resent on 2xx retransmissions).
    last_ack: Option<(u32, Transmit)>,
    session: Option<SessionTimer>,
    /// Remote `Allow` contains UPDATE (choose UPDATE for refreshes).
    remote_allows_update: bool,
    /// Remote said `Supported: timer`.
    remote_supports_timer: bool,
    /// Session interval and refresher agreed in the request being answered (applied when
    /// our 2xx goes out).
    pending_session: Option<(u32, bool)>,
    /// `o=` line of the last remote SDP: an unchanged offer is answered without the app.
    remote_origin: Option<String>,
    /// Inbound: when the unanswered call is given up.
    answer_deadline: Option<Instant>,
    /// Outbound-only state.
    uac: Option<uac::UacState>,
}

impl Call {
    /// Where in-dialog requests go. On a connection-oriented transport: the connection the
    /// dialog was set up on (reused; reopened to the same address if it closed), since a
    /// caller's Contact port is often not one it accepts connections on. On UDP: the
    /// dialog's next hop (route set or remote target, with NAT fallback to the flow).
    fn next_hop(&self) -> SocketAddr {
        if self.transport.is_reliable() {
            self.flow
        } else {
            self.dialog.next_hop(self.flow)
        }
    }

    fn timer_deadline(&self, t: CallTimer) -> Option<Instant> {
        match t {
            CallTimer::Retransmit2xx => self.pending_2xx.as_ref().map(|p| p.next),
            CallTimer::Reoffer => self.reoffer.as_ref().map(|r| r.deadline),
            CallTimer::Session => self.session.as_ref().map(|s| s.deadline),
            CallTimer::RefreshRetry => self.refresh_retry_at,
            CallTimer::RingTimeout => self.uac.as_ref().and_then(|u| u.ring_deadline),
            CallTimer::AnswerTimeout => self.answer_deadline,
        }
    }
}

/// Key of an INVITE as the UAS saw it, to absorb late retransmissions and detect merged
/// requests (§8.2.2.2) after the transaction is gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InviteKey {
    call_id: String,
    from_tag: String,
    cseq: u32,
}

#[derive(Debug)]
struct RecentInvite {
    branch: String,
    expires: Instant,
}

/// Limits warnings about garbage to a few per window; the rest are counted.
#[derive(Debug)]
struct LogLimiter {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    const PER_WINDOW: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(10);

    fn allow(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(s) if now.duration_since(s) < Self::WINDOW => {}
            _ => {
                if self.suppressed > 0 {
                    tracing::warn!(
                        suppressed = self.suppressed,
                        "suppressed SIP garbage warnings"
                    );
                }
                self.window_start = Some(now);
                self.in_window = 0;
                self.suppressed = 0;
            }
        }
        self.in_window += 1;
        if self.in_window <= Self::PER_WINDOW {
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Counters and gauges for diagnostics, tests and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UaStats {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Requests answered with an error before any transaction (400/505).
    pub rejected_stateless: u64,
    /// Responses matching no transaction.
    pub stray_responses: u64,
    /// Retransmitted INVITEs absorbed after their transaction ended.
    pub absorbed_invites: u64,
    /// New INVITEs answered 503 because the endpoint is shutting down.
    pub rejected_shutting_down: u64,
    /// New INVITEs answered 503 at the call limit.
    pub rejected_call_limit: u64,
    /// Requests answered 503 at the server-transaction limit.
    pub rejected_transaction_limit: u64,
    /// New INVITEs answered 503 because their source was over its CPS budget.
    pub rejected_source_rate: u64,
    /// New INVITEs answered 503 because the app's incoming-call queue was full.
    pub rejected_queue_full: u64,
    /// OPTIONS answered without a transaction (at the transaction limit).
    pub stateless_options: u64,
    /// Gauge: live calls.
    pub calls: usize,
    /// Gauge: live transactions (client and server).
    pub transactions: usize,
    /// Gauge: live server transactions.
    pub server_transactions: usize,
    /// Gauge: INVITE keys remembered to absorb late retransmissions.
    pub recent_invites: usize,
    /// Gauge: source IPs tracked by the per-source rate limiter.
    pub tracked_sources: usize,
    /// Gauge: open TCP connections (filled in by the endpoint).
    pub tcp_connections: usize,
}

impl UaStats {
    /// Requests refused for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        match reason {
            RejectReason::ShuttingDown => self.rejected_shutting_down,
            RejectReason::CallLimit => self.rejected_call_limit,
            RejectReason::TransactionLimit => self.rejected_transaction_limit,
            RejectReason::SourceRate => self.rejected_source_rate,
            RejectReason::QueueFull => self.rejected_queue_full,
        }
    }
}

/// The UA core.
#[derive(Debug)]
pub struct UserAgent {
    cfg: UaConfig,
    txl: TransactionLayer,
    accepting: bool,
    next_call: u64,
    calls: HashMap<CallKey, Call>,
    by_dialog: HashMap<(String, String), CallKey>,
    by_server_tx: HashMap<TxId, CallKey>,
    by_client_tx: HashMap<TxId, (CallKey, ClientRole)>,
    recent_invites: HashMap<InviteKey, RecentInvite>,
    recent_order: VecDeque<(Instant, InviteKey)>,
    timers: TimerQueue<(CallKey, CallTimer)>,
    outputs: VecDeque<UaOutput>,
    log_limiter: LogLimiter,
    overload: OverloadGuard,
    /// Warnings about refused INVITEs, rate-limited like garbage warnings.
    overload_log: LogLimiter,
    stats: UaStats,
}

pub(crate) fn random_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl UserAgent {
    pub fn new(cfg: UaConfig) -> Self {
        let txl = TransactionLayer::new(cfg.timers, cfg.force_rport);
        let overload = OverloadGuard::new(cfg.overload.clone());
        UserAgent {
            cfg,
            txl,
            accepting: true,
            next_call: 0,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            by_server_tx: HashMap::new(),
            by_client_tx: HashMap::new(),
            recent_invites: HashMap::new(),
            recent_order: VecDeque::new(),
            timers: TimerQueue::default(),
            outputs: VecDeque::new(),
            log_limiter: LogLimiter {
                window_start: None,
                in_window: 0,
                suppressed: 0,
            },
            overload,
            overload_log: LogLimiter {
                window_start: None,
                in_window: 0,
                suppressed: 0,
            },
            stats: UaStats::default(),
        }
    }

    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    /// Counters, with the gauges filled in.
    pub fn stats(&self) -> UaStats {
        UaStats {
            calls: self.calls.len(),
            transactions: self.txl.len(),
            server_transactions: self.txl.server_count(),
            recent_invites: self.recent_invites.len(),
            tracked_sources: self.overload.tracked_sources(),
            ..self.stats.clone()
        }
    }

    /// Counts a refusal decided outside the core (the shell's full incoming-call queue) in
    /// the stats and in `dialtone_sip_rejected_total`.
    pub fn note_rejection(&mut self, reason: RejectReason) {
        let counter = match reason {
            RejectReason::ShuttingDown => &mut self.stats.rejected_shutting_down,
            RejectReason::CallLimit => &mut self.stats.rejected_call_limit,
            RejectReason::TransactionLimit => &mut self.stats.rejected_transaction_limit,
            RejectReason::SourceRate => &mut self.stats.rejected_source_rate,
            RejectReason::QueueFull => &mut self.stats.rejected_queue_full,
        };
        *counter += 1;
        metrics::counter!("dialtone_sip_rejected_total", "reason" => reason.as_str()).increment(1);
    }

    /// Peers whose dialogs run over `transport` (the shell keeps those TCP connections open
    /// past their idle timeout).
    pub fn flows_in_use(&self, transport: Transport) -> std::collections::HashSet<SocketAddr> {
        self.calls
            .values()
            .filter(|c| c.transport == transport)
            .map(|c| c.flow)
            .collect()
    }

    /// Live calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The Call-ID of a live call.
    pub fn call_id_of(&self, key: CallKey) -> Option<String> {
        self.calls.get(&key).map(|c| c.dialog.id.call_id.clone())
    }

    /// Live transactions (diagnostics).
    pub fn transaction_count(&self) -> usize {
        self.txl.len()
    }

    /// Stop accepting new calls: new INVITEs get 503. Existing calls are untouched.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<UaOutput> {
        if let Some(t) = self.txl.poll_transmit() {
            return Some(UaOutput::Transmit(t));
        }
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.txl.poll_timeout(),
            self.timers.next(),
            self.recent_order.front().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Tells the core that sending for a transaction failed.
    pub fn handle_transport_error(&mut self, now: Instant, tx: TxId) {
        if let Some(n) = self.txl.transport_error(tx) {
            self.on_tx_notice(now, n);
        }
    }

    // -----------------------------------------------------------------------------------
    // Input
    // -----------------------------------------------------------------------------------

    /// A UDP datagram from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.handle_parsed(now, Transport::Udp, source, parse_datagram(data));
    }

    /// A message framed by the shell (from a TCP stream with [`crate::message::parse_stream`],
    /// or a datagram), or the framing failure. After a stream framing failure the shell
    /// closes the connection once the 400 (if any) is written.
    pub fn handle_parsed(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        parsed: Result<Parsed, ParseFailure>,
    ) {
        match parsed {
            Ok(Parsed::KeepAlive) => {}
            Ok(Parsed::Message(SipMessage::Request(req))) => {
                self.on_request(now, transport, source, req)
            }
            Ok(Parsed::Message(SipMessage::Response(resp))) => self.on_response(now, source, resp),
            Err(failure) => self.on_malformed(now, transport, source, failure),
        }
    }

    fn on_malformed(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        failure: ParseFailure,
    ) {
        self.stats.malformed += 1;
        if self.log_limiter.allow(now) {
            tracing::warn!(%source, error = %failure.error, "malformed SIP message");
        }
        let Some(partial) = failure.partial else {
            return;
        };
        if !partial.is_request || partial.method == Some(Method::Ack) {
            return;
        }
        let status = failure.error.status();
        let reason = failure.error.reason();
        let tag = random_tag();
        let Some(mut resp) =
            error_response_from_headers(&partial.headers, status, Some(&reason), Some(&tag))
        else {
            return;
        };
        self.add_server_header(&mut resp);
        let dest = match partial.headers.top_via() {
            Ok(via) => response_destination(&via, source, transport, self.cfg.force_rport),
            Err(_) => source,
        };
        self.stats.rejected_stateless += 1;
        self.transmit(dest, transport, resp.to_bytes(), None);
    }

    fn on_request(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        mut req: Request,
    ) {
        if let Err(rej) = validate_request(&req) {
            self.stats.malformed += 1;
            if self.log_limiter.allow(now) {
                tracing::warn!(%source, method = %req.method, problem = %rej, "invalid SIP request");
            }
            if req.method == Method::Ack {
                return;
            }
            let tag = random_tag();
            let mut resp = response_from_request(&req, rej.status, Some(&rej.reason), Some(&tag));
            self.add_server_header(&mut resp);
            let dest = match req.headers.top_via() {
                Ok(via) => response_destination(&via, source, transport, self.cfg.force_rport),
                Err(_) => source,
            };
            self.stats.rejected_stateless += 1;
            self.transmit(dest, transport, resp.to_bytes(), None);
            return;
        }
        stamp_received(&mut req, source);
        if req.method != Method::Ack
            && !self.txl.matches_server(&req)
            && !self.admit(now, transport, source, &req)
        {
            return;
        }
        let incoming = match self.txl.on_request(now, req, source, transport) {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "request not matched to a transaction");
                return;
            }
        };
        if incoming.request.method == Method::Ack {
            self.on_ack(now, incoming.request);
            return;
        }
        let Some(tx) = incoming.tx else {
            return;
        };
        self.dispatch_request(now, tx, incoming.request, incoming.source, transport);
    }

    /// Overload control for a request that would open a server transaction. New INVITEs go
    /// through the [`OverloadGuard`]; at the server-transaction limit OPTIONS are answered
    /// statelessly and other out-of-dialog requests get 503, while requests inside a live
    /// dialog always get through. A refused request is answered here, without any state.
    fn admit(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        req: &Request,
    ) -> bool {
        let to_tag = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if req.method == Method::Invite && to_tag.is_none() {
            if self.is_recent_invite(req) {
                // A late retransmission of a call we know: absorbed further on.
                return true;
            }
            let load = Load {
                accepting: self.accepting,
                live_calls: self.calls.len(),
                server_transactions: self.txl.server_count(),
            };
            return match self.overload.admit_invite(now, source.ip(), load) {
                Ok(()) => true,
                Err(rejection) => {
                    self.reject_stateless(now, transport, source, req, rejection);
                    false
                }
            };
        }
        if !self.overload.transactions_full(self.txl.server_count()) {
            return true;
        }
        if let Some(tag) = to_tag {
            let call_id = req.headers.call_id().unwrap_or_default().to_owned();
            if self.by_dialog.contains_key(&(call_id, tag)) {
                return true;
            }
        }
        if req.method == Method::Options {
            self.stats.stateless_options += 1;
            let mut resp = response_from_request(req, 200, None, Some(&random_tag()));
            resp.headers.push(HeaderName::Allow, ALLOW);
            resp.headers.push(HeaderName::Accept, "application/sdp");
            resp.headers.push(HeaderName::Supported, SUPPORTED);
            self.add_server_header(&mut resp);
            self.send_stateless(transport, source, req, &resp);
            return false;
        }
        let retry_after_secs = self.overload.config().retry_after_secs.max(1);
        self.reject_stateless(
            now,
            transport,
            source,
            req,
            Rejection {
                reason: RejectReason::TransactionLimit,
                retry_after_secs,
            },
        );
        false
    }

    fn is_recent_invite(&self, req: &Request) -> bool {
        let h = &req.headers;
        let (Ok(from), Ok(cseq), Ok(call_id)) = (h.from(), h.cseq(), h.call_id()) else {
            return false;
        };
        self.recent_invites.contains_key(&InviteKey {
            call_id: call_id.to_owned(),
            from_tag: from.tag().unwrap_or("").to_owned(),
            cseq: cseq.seq,
        })
    }

    /// 503 with `Retry-After`, sent without a transaction (so a flood leaves no state; a
    /// retransmitted request is simply judged again).
    fn reject_stateless(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        req: &Request,
        rejection: Rejection,
    ) {
        self.note_rejection(rejection.reason);
        if self.overload_log.allow(now) {
            tracing::warn!(
                %source,
                method = %req.method,
                reason = rejection.reason.as_str(),
                calls = self.calls.len(),
                "overload: answering 503"
            );
        }
        let mut resp = response_from_request(req, 503, None, Some(&random_tag()));
        resp.headers.push(
            HeaderName::RetryAfter,
            rejection.retry_after_secs.to_string(),
        );
        self.add_server_header(&mut resp);
        self.send_stateless(transport, source, req, &resp);
    }

    fn send_stateless(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        req: &Request,
        resp: &Response,
    ) {
        let dest = match req.headers.top_via() {
            Ok(via) => response_destination(&via, source, transport, self.cfg.force_rport),
            Err(_) => source,
        };
        self.transmit(dest, transport, resp.to_bytes(), None);
    }

    fn on_response(&mut self, now: Instant, source: SocketAddr, resp: Response) {
        if let Err(e) = validate_response(&resp) {
            self.stats.malformed += 1;
            if self.log_limiter.allow(now) {
                tracing::warn!(%source, error = %e, "invalid SIP response dropped");
            }
            return;
        }
        match self.txl.on_response(now, resp.clone()) {
            Some((tx, resp)) => self.on_client_response(now, tx, resp),
            None => self.on_stray_response(now, source, resp),
        }
    }

    /// Runs everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for notice in self.txl.handle_timeout(now) {
            self.on_tx_notice(now, notice);
        }
        while let Some((at, (key, timer))) = self.timers.pop_due(now) {
            let Some(call) = self.calls.get(&key) else {
                continue;
            };
            if call.timer_deadline(timer) != Some(at) {
                continue;
            }
            match timer {
                CallTimer::Retransmit2xx => self.on_retransmit_2xx(now, key),
                CallTimer::Reoffer => self.on_reoffer_timeout(now, key),
                CallTimer::Session => self.on_session_timer(now, key),
                CallTimer::RefreshRetry => {
                    if let Some(c) = self.calls.get_mut(&key) {
                        c.refresh_retry_at = None;
                    }
                    self.send_refresh(now, key);
                }
                CallTimer::RingTimeout => self.on_ring_timeout(now, key),
                CallTimer::AnswerTimeout => {
                    tracing::warn!(call = key.0, "inbound call never answered by the app; 480");
                    let _ = self.reject(now, key, 480, None);
                }
            }
        }
        while let Some((t, _)) = self.recent_order.front() {
            if *t > now {
                break;
            }
            if let Some((_, k)) = self.recent_order.pop_front() {
                if self
                    .recent_invites
                    .get(&k)
                    .is_some_and(|r| r.expires <= now)
                {
                    self.recent_invites.remove(&k);
                }
            }
        }
    }

    fn on_tx_notice(&mut self, now: Instant, notice: TxNotice) {
        let tx = match notice {
            TxNotice::Timeout { tx, .. } | TxNotice::TransportError { tx } => tx,
        };
        let transport_failed = matches!(notice, TxNotice::TransportError { .. });
        if let Some((key, role)) = self.by_client_tx.remove(&tx) {
            match role {
                ClientRole::Bye => self.finish_bye(key, HangupOutcome::ByeTimedOut),
                ClientRole::Refresh => {
                    // RFC 4028 §10: a refresh that times out ends the session.
                    if let Some(c) = self.calls.get_mut(&key) {
                        c.refresh_tx = None;
                    }
                    self.start_bye(now, key, TerminationReason::SessionExpired, false);
                }
                ClientRole::Invite => self.on_invite_timeout(now, key, transport_failed),
                ClientRole::Cancel => {}
            }
        } else {
            self.by_server_tx.remove(&tx);
        }
    }

    // -----------------------------------------------------------------------------------
    // Helpers shared by UAS and UAC code
    // -----------------------------------------------------------------------------------

    fn alloc_call(&mut self) -> CallKey {
        self.next_call += 1;
        CallKey(self.next_call)
    }

    fn emit(&mut self, key: CallKey, event: CallEvent) {
        self.outputs.push_back(UaOutput::Call { key, event });
    }

    fn transmit(&mut self, to: SocketAddr, transport: Transport, data: Vec<u8>, tx: Option<TxId>) {
        self.outputs.push_back(UaOutput::Transmit(Transmit {
            to,
            transport,
            data: Bytes::from(data),
            tx,
        }));
    }

    fn schedule(&mut self, key: CallKey, timer: CallTimer) {
        if let Some(at) = self.calls.get(&key).and_then(|c| c.timer_deadline(timer)) {
            self.timers.schedule(at, (key, timer));
        }
    }

    fn add_server_header(&self, resp: &mut Response) {
        if !self.cfg.user_agent.is_empty() {
            resp.headers
                .push(HeaderName::Server, self.cfg.user_agent.clone());
        }
    }

    /// Our Contact for dialogs over `transport` (`;transport=tcp` so that the peer's
    /// in-dialog requests come back over TCP).
    fn contact(&self, transport: Transport) -> String {
        let param = transport
            .uri_param()
            .map(|p| format!(";transport={p}"))
            .unwrap_or_default();
        format!(
            "<sip:{}@{}:{}{param}>",
            self.cfg.contact_user,
            host_for_uri(&self.cfg.contact_host),
            self.cfg.contact_port
        )
    }

    fn our_via(&self, transport: Transport) -> String {
        format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            transport.via_name(),
            host_for_uri(&self.cfg.contact_host),
            self.cfg.contact_port,
            new_branch()
        )
    }

    /// Sends a response on a server transaction, logging (never failing) when the
    /// transaction is gone.
    fn respond_tx(&mut self, now: Instant, tx: TxId, resp: &Response) {
        if let Err(e) = self.txl.send_response(now, tx, resp) {
            tracing::debug!(error = %e, status = resp.status, "response not sent");
        }
    }

    /// A simple response on `tx` (no dialog tag needed, or the request carried one).
    fn respond_simple(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Request,
        status: u16,
        reason: Option<&str>,
        extra: &[(HeaderName, String)],
    ) {
        let tag = random_tag();
        let mut resp = response_from_request(req, status, reason, Some(&tag));
        for (n, v) in extra {
            resp.headers.push(n.clone(), v.clone());
        }
        self.add_server_header(&mut resp);
        self.respond_tx(now, tx, &resp);
    }

    /// Removes a call and its indexes, emitting `Terminated`.
    fn end_call(&mut self, key: CallKey, reason: TerminationReason) {
        if let Some(call) = self.calls.remove(&key) {
            self.by_dialog.remove(&(
                call.dialog.id.call_id.clone(),
                call.dialog.id.local_tag.clone(),
            ));
            if let Some(tx) = call.invite_tx {
                self.by_server_tx.remove(&tx);
            }
            if let Some(r) = &call.reoffer {
                self.by_server_tx.remove(&r.tx);
            }
            for tx in [call.bye_tx, call.refresh_tx].into_iter().flatten() {
                self.by_client_tx.remove(&tx);
            }
            if let Some(u) = &call.uac {
                for tx in [u.invite_tx, u.cancel_tx].into_iter().flatten() {
                    self.by_client_tx.remove(&tx);
                }
                self.uac_forget(&call);
            }
            self.emit(key, CallEvent::Terminated { reason });
        }
    }

    /// Sends BYE for a call (or defers it until the ACK of our 2xx arrives).
    fn start_bye(
        &mut self,
        now: Instant,
        key: CallKey,
        reason: TerminationReason,
        requested: bool,
    ) {
        let ua = self.cfg.user_agent.clone();
        let Some(transport) = self.calls.get(&key).map(|c| c.transport) else {
            return;
        };
        let via = self.our_via(transport);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.phase == Phase::Terminating {
            return;
        }
        call.phase = Phase::Terminating;
        call.termination = Some(reason.clone());
        call.hangup_requested |= requested;
        call.pending_2xx = None;
        call.session = None;
        call.refresh_retry_at = None;
        let mut bye = call.dialog.new_request(Method::Bye, &via);
        if !ua.is_empty() {
            bye.headers.push(HeaderName::UserAgent, ua);
        }
        let cause = match reason {
            TerminationReason::AckTimeout => Some("SIP;cause=408;text=\"ACK timeout\""),
            TerminationReason::SessionExpired => Some("SIP;cause=408;text=\"Session expired\""),
            _ => None,
        };
        if let Some(c) = cause {
            bye.headers.push(HeaderName::Reason, c);
        }
        let dest = call.next_hop();
        match self.txl.send_request(now, bye, dest, transport) {
            Ok(tx) => {
                if let Some(c) = self.calls.get_mut(&key) {
                    c.bye_tx = Some(tx);
                }
                self.by_client_tx.insert(tx, (key, ClientRole::Bye));
            }
            Err(e) => {
                tracing::warn!(error = %e, "BYE not sent");
                self.finish_bye(key, HangupOutcome::ByeTimedOut);
            }
        }
    }

    fn finish_bye(&mut self, key: CallKey, outcome: HangupOutcome) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let reason = call
            .termination
            .clone()
            .unwrap_or(TerminationReason::LocalBye);
        if call.hangup_requested {
            self.outputs
                .push_back(UaOutput::HangupDone { key, outcome });
        }
        self.end_call(key, reason);
    }

    // -----------------------------------------------------------------------------------
    // Session timers (RFC 4028)
    // -----------------------------------------------------------------------------------

    /// (Re)starts the session timer after a 2xx that carried `interval`.
    fn arm_session(&mut self, now: Instant, key: CallKey, interval: u32, we_refresh: bool) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let secs = if we_refresh {
            (interval / 2).max(1)
        } else {
            // §10: the side that does not refresh sends BYE shortly before expiry.
            interval.saturating_sub((interval / 3).min(32)).max(1)
        };
        call.session = Some(SessionTimer {
            interval,
            we_refresh,
            deadline: now + Duration::from_secs(u64::from(secs)),
        });
        self.schedule(key, CallTimer::Session);
    }

    fn on_session_timer(&mut self, now: Instant, key: CallKey) {
        let Some(s) = self.calls.get(&key).and_then(|c| c.session.clone()) else {
            return;
        };
        if s.we_refresh {
            // The session stays as is (its interval is reused) until the refresh answers.
            self.send_refresh(now, key);
        } else {
            tracing::info!(call = key.0, "session expired without refresh");
            self.emit(key, CallEvent::SessionExpired);
            self.start_bye(now, key, TerminationReason::SessionExpired, false);
        }
    }

    /// Sends our session refresh: UPDATE without body when the peer allows it, else a
    /// re-INVITE with our current SDP.
    fn send_refresh(&mut self, now: Instant, key: CallKey) {
        let Some(transport) = self.calls.get(&key).map(|c| c.transport) else {
            return;
        };
        let via = self.our_via(transport);
        let contact = self.contact(transport);
        let ua = self.cfg.user_agent.clone();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.phase != Phase::Confirmed || call.refresh_tx.is_some() || call.reoffer.is_some() {
            // Busy: try again shortly.
            call.refresh_retry_at = Some(now + Duration::from_secs(2));
            self.schedule(key, CallTimer::RefreshRetry);
            return;
        }
        let interval = call
            .session
            .as_ref()
            .map(|s| s.interval)
            .unwrap_or(self.cfg.session_expires.max(self.cfg.min_session_expires));
        let use_update = call.remote_allows_update || call.local_sdp.is_none();
        let method = if use_update {
            Method::Update
        } else {
            Method::Invite
        };
        let mut req = call.dialog.new_request(method, &via);
        // We are the UAC of this transaction.
        let refresher = "uac";
        req.headers.push(HeaderName::Contact, contact);
        req.headers.push(
            HeaderName::SessionExpires,
            format!("{interval};refresher={refresher}"),
        );
        req.headers.push(HeaderName::Supported, SUPPORTED);
        req.headers.push(HeaderName::Allow, ALLOW);
        if !ua.is_empty() {
            req.headers.push(HeaderName::UserAgent, ua);
        }
        if !use_update {
            if let Some(sdp) = &call.local_sdp {
                req.headers.push(HeaderName::ContentType, "application/sdp");
                req.body = sdp.clone().into_bytes();
            }
        }
        let dest = call.next_hop();
        match self.txl.send_request(now, req, dest, transport) {
            Ok(tx) => {
                if let Some(c) = self.calls.get_mut(&key) {
                    c.refresh_tx = Some(tx);
                }
                self.by_client_tx.insert(tx, (key, ClientRole::Refresh));
            }
            Err(e) => tracing::warn!(error = %e, "session refresh not sent"),
        }
    }

    fn on_refresh_response(&mut self, now: Instant, key: CallKey, tx: TxId, resp: Response) {
        if resp.status < 200 {
            self.by_client_tx.insert(tx, (key, ClientRole::Refresh));
            return;
        }
        let Some(transport) = self.calls.get(&key).map(|c| c.transport) else {
            return;
        };
        let via = self.our_via(transport);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.refresh_tx = None;
        let is_invite = resp
            .headers
            .cseq()
            .map(|c| c.method == Method::Invite)
            .unwrap_or(false);
        if resp.is_success() {
            if is_invite {
                let seq = resp
                    .headers
                    .cseq()
                    .map(|c| c.seq)
                    .unwrap_or(call.dialog.local_seq);
                let ack = call.dialog.ack(seq, &via);
                let t = Transmit {
                    to: call.next_hop(),
                    transport,
                    data: Bytes::from(ack.to_bytes()),
                    tx: None,
                };
                call.last_ack = Some((seq, t.clone()));
                self.outputs.push_back(UaOutput::Transmit(t));
            }
            let call = match self.calls.get_mut(&key) {
                Some(c) => c,
                None => return,
            };
            call.dialog
                .refresh_target(resp.headers.contact_uri().ok().flatten());
            let (interval, we_refresh) = match resp.headers.session_expires() {
                // We are the UAC of the refresh transaction.
                Ok(Some(se)) => (
                    se.delta_seconds,
                    se.refresher.as_deref().is_none_or(|r| r == "uac"),
                ),
                _ => (
                    call.session
                        .as_ref()
                        .map(|s| s.interval)
                        .unwrap_or(self.cfg.session_expires),
                    true,
                ),
            };
            self.arm_session(now, key, interval, we_refresh);
        } else if resp.status == 491 {
            // §14.1: retry after a random delay; 2.1–4 s if we own the Call-ID.
            let owns = call.direction == CallDirection::Outbound;
            let ms = if owns {
                2100 + rand::random::<u64>() % 1900
            } else {
                rand::random::<u64>() % 2000
            };
            call.refresh_retry_at = Some(now + Duration::from_millis(ms));
            self.schedule(key, CallTimer::RefreshRetry);
        } else if resp.status == 422 {
            let min = resp
                .headers
                .min_se()
                .ok()
                .flatten()
                .unwrap_or(self.cfg.min_session_expires);
            let interval = call
                .session
                .as_ref()
                .map(|s| s.interval)
                .unwrap_or(0)
                .max(min);
            call.session = Some(SessionTimer {
                interval,
                we_refresh: true,
                deadline: now,
            });
            call.refresh_retry_at = Some(now);
            self.schedule(key, CallTimer::RefreshRetry);
        } else if resp.status == 408 || resp.status == 481 {
            self.start_bye(now, key, TerminationReason::SessionExpired, false);
        } else {
            // Any other failure: the session goes on (RFC 4028 §10); try again later.
            let interval = call
                .session
                .as_ref()
                .map(|s| s.interval)
                .unwrap_or(self.cfg.session_expires);
            self.arm_session(now, key, interval, true);
        }
    }

    fn on_client_response(&mut self, now: Instant, tx: TxId, resp: Response) {
        let Some((key, role)) = self.by_client_tx.remove(&tx) else {
            return;
        };
        match role {
            ClientRole::Bye => {
                if resp.status < 200 {
                    self.by_client_tx.insert(tx, (key, role));
                } else {
                    self.finish_bye(
                        key,
                        HangupOutcome::ByeAnswered {
                            status: resp.status,
                        },
                    );
                }
            }
            ClientRole::Refresh => self.on_refresh_response(now, key, tx, resp),
            ClientRole::Invite => self.on_invite_response(now, key, tx, resp),
            ClientRole::Cancel => {
                if resp.status < 200 {
                    self.by_client_tx.insert(tx, (key, role));
                }
            }
        }
    }

    /// A response no transaction wanted: a retransmitted 2xx of one of our INVITEs after
    /// its transaction ended is ACKed again (§13.2.2.4); anything else is dropped.
    fn on_stray_response(&mut self, _now: Instant, _source: SocketAddr, resp: Response) {
        self.stats.stray_responses += 1;
        if !resp.is_success() {
            return;
        }
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        if cseq.method != Method::Invite {
            return;
        }
        let (Ok(call_id), Ok(from)) = (resp.headers.call_id(), resp.headers.from()) else {
            return;
        };
        let local_tag = from.tag().unwrap_or("").to_owned();
        let Some(key) = self
            .by_dialog
            .get(&(call_id.to_owned(), local_tag))
            .copied()
        else {
            return;
        };
        if let Some((seq, ack)) = self.calls.get(&key).and_then(|c| c.last_ack.clone()) {
            if seq == cseq.seq {
                self.outputs.push_back(UaOutput::Transmit(ack));
            }
        }
    }
}

/// Brackets an IPv6 literal for use in a URI or Via.
pub(crate) fn host_for_uri(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

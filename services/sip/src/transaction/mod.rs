//! The transaction layer (RFC 3261 §17, RFC 6026), sans-IO.
//!
//! This module owns: the four transaction state machines and their timers A–M, matching
//! incoming requests and responses to transactions (RFC 3261 branch with the `z9hG4bK`
//! cookie, RFC 2543 fallback matching otherwise), matching a CANCEL to the INVITE it
//! cancels, generating the ACK for a non-2xx final response inside the INVITE client
//! transaction, and retransmitting requests and responses.
//!
//! It does no I/O: feed it with `on_request` / `on_response` / `handle_timeout(now)`; it
//! queues datagrams to send ([`TransactionLayer::poll_transmit`]) and returns what the TU
//! (the UA core) must see. `poll_timeout()` says when `handle_timeout` is next needed.

mod fsm;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use fsm::{
    InvalidState, InviteClientState, InviteServerState, NonInviteClientState, NonInviteServerState,
};
use fsm::{InviteClient, InviteServer, NonInviteClient, NonInviteServer, Signal, Step};

use crate::message::{CSeq, HeaderError, HeaderName, Method, Request, Response, Via, MAGIC_COOKIE};
use crate::timer::TimerQueue;

/// RFC 3261 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Maximum duration a message remains in the network (5 s).
    pub t4: Duration,
    /// Wait time for response retransmissions in the INVITE client (≥ 32 s on UDP).
    pub timer_d: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L, M.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Identifies one transaction for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// The transport protocol a message travels on. In configuration: `"udp"` or `"tcp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    #[serde(alias = "UDP")]
    Udp,
    #[serde(alias = "TCP")]
    Tcp,
}

impl Transport {
    /// Reliable transports deliver or fail: no retransmission timers (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The name in a Via header (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// The value of a URI's `transport` parameter (`tcp`), `None` for the UDP default.
    pub fn uri_param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => None,
            Transport::Tcp => Some("tcp"),
        }
    }

    /// From a URI `transport` parameter or a Via transport (case-insensitive); `None` for
    /// transports we do not implement (TLS, SCTP, WS).
    pub fn parse(name: &str) -> Option<Transport> {
        if name.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if name.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.via_name())
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    /// UDP datagram, or a write on the TCP connection with `to` (opened when there is none).
    pub transport: Transport,
    pub data: Bytes,
    /// The transaction it belongs to (for reporting transport errors).
    pub tx: Option<TxId>,
}

/// A request the TU must handle.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The new server transaction; `None` for an ACK that matched none (the ACK for a 2xx).
    /// An ACK that matched an INVITE server transaction in the Accepted state carries it.
    pub tx: Option<TxId>,
    pub request: Request,
    pub source: SocketAddr,
    pub transport: Transport,
}

/// Timer-driven news for the TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxNotice {
    /// Timer B/F (client: no final response) or Timer H (INVITE server: no ACK).
    Timeout { tx: TxId, method: Method },
    /// The transport failed to send for this transaction.
    TransportError { tx: TxId },
}

/// A transaction-layer error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no such transaction {0:?}")]
    NotFound(TxId),
    #[error("transaction is a client transaction")]
    NotServer,
    #[error(transparent)]
    InvalidState(#[from] InvalidState),
    #[error("request has no usable top Via: {0}")]
    Via(#[from] HeaderError),
    #[error("request has no branch parameter in its top Via")]
    NoBranch,
    #[error("ACK is not sent through a transaction")]
    Ack,
}

/// Server transaction key (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 peers: no usable branch, so match on the dialog and request identifiers.
    /// The To tag is left out: the INVITE has none, the ACK carries ours.
    Rfc2543 {
        request_uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        top_via: String,
        method: Method,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Server(ServerKey),
    Client(ClientKey),
}

#[derive(Debug)]
enum Machine {
    InviteClient(InviteClient, Box<Request>),
    NonInviteClient(NonInviteClient),
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
}

impl Machine {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Machine::InviteClient(m, _) => m.next_deadline(),
            Machine::NonInviteClient(m) => m.next_deadline(),
            Machine::InviteServer(m) => m.next_deadline(),
            Machine::NonInviteServer(m) => m.next_deadline(),
        }
    }

    fn on_timer(&mut self, now: Instant, cfg: &TimerConfig) -> Step {
        match self {
            Machine::InviteClient(m, _) => m.on_timer(now, cfg),
            Machine::NonInviteClient(m) => m.on_timer(now, cfg),
            Machine::InviteServer(m) => m.on_timer(now, cfg),
            Machine::NonInviteServer(m) => m.on_timer(now),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::InviteClient(m, _) => m.is_terminated(),
            Machine::NonInviteClient(m) => m.is_terminated(),
            Machine::InviteServer(m) => m.is_terminated(),
            Machine::NonInviteServer(m) => m.is_terminated(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    machine: Machine,
    key: Key,
    dest: SocketAddr,
    transport: Transport,
    method: Method,
    scheduled: Option<Instant>,
}

/// All live transactions of one endpoint.
#[derive(Debug)]
pub struct TransactionLayer {
    cfg: TimerConfig,
    /// Send responses to the source port even without `rport` (RFC 3581 behaviour forced).
    force_rport: bool,
    next_id: u64,
    entries: HashMap<TxId, Entry>,
    keys: HashMap<Key, TxId>,
    /// Live server transactions (the overload limit counts them).
    servers: usize,
    timers: TimerQueue<TxId>,
    transmits: VecDeque<Transmit>,
}

/// Where responses to a request go (RFC 3261 §18.2.2, RFC 3581): back on the connection
/// for a reliable transport; for UDP the source address when `rport` was asked for (or
/// forced), else the source IP and the Via's sent-by port.
pub fn response_destination(
    via: &Via,
    source: SocketAddr,
    transport: Transport,
    force_rport: bool,
) -> SocketAddr {
    if transport.is_reliable() || force_rport || via.rport().is_some() {
        source
    } else {
        SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
    }
}

/// Stamps `received` (and `rport` when asked for) on the top Via of a received request
/// (RFC 3261 §18.2.1, RFC 3581 §4) so that the responses built from it carry them.
pub fn stamp_received(req: &mut Request, source: SocketAddr) {
    let Ok(mut via) = req.headers.top_via() else {
        return;
    };
    let mut changed = false;
    let host_is_source = crate::message::parse_host_ip(&via.host) == Some(source.ip());
    if !host_is_source {
        via.params.set("received", Some(&source.ip().to_string()));
        changed = true;
    }
    if via.rport() == Some(None) {
        via.params.set("rport", Some(&source.port().to_string()));
        if host_is_source {
            via.params.set("received", Some(&source.ip().to_string()));
        }
        changed = true;
    }
    if changed {
        req.headers.replace_top_via(&via);
    }
}

/// A fresh RFC 3261 branch.
pub fn new_branch() -> String {
    format!(
        "{MAGIC_COOKIE}{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

/// The ACK for a non-2xx final response to `invite` (§17.1.1.3): same Request-URI, only
/// the top Via, From, Call-ID, CSeq number; To from the response; the INVITE's Route set.
pub fn ack_for_non_2xx(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Ok(via) = invite.headers.top_via() {
        ack.headers.push(HeaderName::Via, via.to_string());
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            ack.headers.push(name, v);
        }
    }
    if let Some(to) = resp.headers.get(&HeaderName::To) {
        ack.headers.push(HeaderName::To, to);
    }
    if let Ok(cseq) = invite.headers.cseq() {
        ack.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq: cseq.seq,
                method: Method::Ack,
            }
            .to_string(),
        );
    }
    for r in invite.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, r);
    }
    ack
}

fn server_key(req: &Request, via: &Via) -> ServerKey {
    let method = if req.method == Method::Ack {
        Method::Invite
    } else {
        req.method.clone()
    };
    server_key_with_method(req, via, method)
}

fn server_key_with_method(req: &Request, via: &Via, method: Method) -> ServerKey {
    if via.is_rfc3261_branch() {
        ServerKey::Rfc3261 {
            branch: via.branch().unwrap_or_default().to_owned(),
            sent_by: via.sent_by(),
            method,
        }
    } else {
        let from_tag = req
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        // The top Via as received, without what we stamped on it.
        let mut top = via.clone();
        top.params.remove("received");
        top.params.remove("rport");
        ServerKey::Rfc2543 {
            request_uri: req.uri.to_string(),
            from_tag,
            call_id: req.headers.call_id().unwrap_or_default().to_owned(),
            cseq: req.headers.cseq().map(|c| c.seq).unwrap_or(0),
            top_via: top.to_string(),
            method,
        }
    }
}

impl TransactionLayer {
    pub fn new(cfg: TimerConfig, force_rport: bool) -> Self {
        TransactionLayer {
            cfg,
            force_rport,
            next_id: 0,
            entries: HashMap::new(),
            keys: HashMap::new(),
            servers: 0,
            timers: TimerQueue::default(),
            transmits: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of live server transactions.
    pub fn server_count(&self) -> usize {
        self.servers
    }

    /// Whether `req` (validated, Via stamped) belongs to a live server transaction: a
    /// retransmission, or the ACK of a non-2xx final response.
    pub fn matches_server(&self, req: &Request) -> bool {
        req.headers
            .top_via()
            .is_ok_and(|via| self.keys.contains_key(&Key::Server(server_key(req, &via))))
    }

    fn insert(&mut self, id: TxId, entry: Entry) {
        if matches!(
            entry.machine,
            Machine::InviteServer(_) | Machine::NonInviteServer(_)
        ) {
            self.servers += 1;
        }
        self.keys.insert(entry.key.clone(), id);
        self.entries.insert(id, entry);
    }

    fn remove(&mut self, id: TxId) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.keys.remove(&entry.key);
        if matches!(
            entry.machine,
            Machine::InviteServer(_) | Machine::NonInviteServer(_)
        ) {
            self.servers = self.servers.saturating_sub(1);
        }
        Some(entry)
    }

    fn alloc(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    /// A request from the network (already validated, Via stamped). `None` when the
    /// transaction layer absorbed it (a retransmission, or the ACK of a non-2xx final).
    pub fn on_request(
        &mut self,
        now: Instant,
        req: Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Result<Option<Incoming>, TxError> {
        let via = req.headers.top_via()?;
        let key = Key::Server(server_key(&req, &via));
        if let Some(&id) = self.keys.get(&key) {
            let is_ack = req.method == Method::Ack;
            let cfg = self.cfg;
            let Some(entry) = self.entries.get_mut(&id) else {
                return Ok(None);
            };
            let step = match &mut entry.machine {
                Machine::InviteServer(m) => m.on_request(now, is_ack, &cfg),
                Machine::NonInviteServer(m) if !is_ack => m.on_request(),
                _ => Step::default(),
            };
            let pass = matches!(step.signal, Some(Signal::PassAck));
            self.apply(id, step, now);
            return Ok(pass.then_some(Incoming {
                tx: Some(id),
                request: req,
                source,
                transport,
            }));
        }
        if req.method == Method::Ack {
            return Ok(Some(Incoming {
                tx: None,
                request: req,
                source,
                transport,
            }));
        }
        let id = self.alloc();
        let reliable = transport.is_reliable();
        let machine = if req.method == Method::Invite {
            Machine::InviteServer(InviteServer::new(reliable, &self.cfg))
        } else {
            Machine::NonInviteServer(NonInviteServer::new(reliable))
        };
        self.insert(
            id,
            Entry {
                machine,
                key,
                dest: response_destination(&via, source, transport, self.force_rport),
                transport,
                method: req.method.clone(),
                scheduled: None,
            },
        );
        Ok(Some(Incoming {
            tx: Some(id),
            request: req,
            source,
            transport,
        }))
    }

    /// The INVITE server transaction a CANCEL refers to (§9.2).
    pub fn find_invite_for_cancel(&self, cancel: &Request) -> Option<TxId> {
        let via = cancel.headers.top_via().ok()?;
        let key = Key::Server(server_key_with_method(cancel, &via, Method::Invite));
        self.keys.get(&key).copied()
    }

    /// Where this server transaction sends its responses, and on which transport.
    pub fn destination(&self, tx: TxId) -> Option<(SocketAddr, Transport)> {
        self.entries.get(&tx).map(|e| (e.dest, e.transport))
    }

    /// Whether a server transaction has sent its final response (or is gone).
    pub fn has_final(&self, tx: TxId) -> bool {
        match self.entries.get(&tx).map(|e| &e.machine) {
            Some(Machine::InviteServer(m)) => m.has_final(),
            Some(Machine::NonInviteServer(m)) => m.has_final(),
            _ => true,
        }
    }

    /// State of an INVITE server transaction (tests and diagnostics).
    pub fn invite_server_state(&self, tx: TxId) -> Option<InviteServerState> {
        match self.entries.get(&tx).map(|e| &e.machine) {
            Some(Machine::InviteServer(m)) => Some(m.state),
            _ => None,
        }
    }

    /// State of an INVITE client transaction (tests and diagnostics).
    pub fn invite_client_state(&self, tx: TxId) -> Option<InviteClientState> {
        match self.entries.get(&tx).map(|e| &e.machine) {
            Some(Machine::InviteClient(m, _)) => Some(m.state),
            _ => None,
        }
    }

    /// Sends a response on a server transaction.
    pub fn send_response(
        &mut self,
        now: Instant,
        tx: TxId,
        resp: &Response,
    ) -> Result<(), TxError> {
        let cfg = self.cfg;
        let entry = self.entries.get_mut(&tx).ok_or(TxError::NotFound(tx))?;
        let bytes = Bytes::from(resp.to_bytes());
        let step = match &mut entry.machine {
            Machine::InviteServer(m) => m.send_response(now, resp.status, bytes, &cfg)?,
            Machine::NonInviteServer(m) => m.send_response(now, resp.status, bytes, &cfg)?,
            _ => return Err(TxError::NotServer),
        };
        self.apply(tx, step, now);
        Ok(())
    }

    /// Starts a client transaction for `req` (its top Via, with a fresh branch, must be set).
    pub fn send_request(
        &mut self,
        now: Instant,
        req: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<TxId, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::Ack);
        }
        let via = req.headers.top_via()?;
        let branch = via.branch().ok_or(TxError::NoBranch)?.to_owned();
        let key = Key::Client(ClientKey {
            branch,
            method: req.method.clone(),
        });
        let id = self.alloc();
        let bytes = Bytes::from(req.to_bytes());
        let method = req.method.clone();
        let reliable = transport.is_reliable();
        let (machine, step) = if req.method == Method::Invite {
            let (m, s) = InviteClient::new(now, bytes, reliable, &self.cfg);
            (Machine::InviteClient(m, Box::new(req)), s)
        } else {
            let (m, s) = NonInviteClient::new(now, bytes, reliable, &self.cfg);
            (Machine::NonInviteClient(m), s)
        };
        self.insert(
            id,
            Entry {
                machine,
                key,
                dest,
                transport,
                method,
                scheduled: None,
            },
        );
        self.apply(id, step, now);
        Ok(id)
    }

    /// A response from the network. Returns it with its transaction when the TU must see it;
    /// `None` for strays and absorbed retransmissions.
    pub fn on_response(&mut self, now: Instant, resp: Response) -> Option<(TxId, Response)> {
        let via = resp.headers.top_via().ok()?;
        let cseq = resp.headers.cseq().ok()?;
        let key = Key::Client(ClientKey {
            branch: via.branch()?.to_owned(),
            method: cseq.method,
        });
        let id = *self.keys.get(&key)?;
        let cfg = self.cfg;
        let entry = self.entries.get_mut(&id)?;
        let step = match &mut entry.machine {
            Machine::InviteClient(m, invite) => m.on_response(now, resp, &cfg, |r| {
                Bytes::from(ack_for_non_2xx(invite, r).to_bytes())
            }),
            Machine::NonInviteClient(m) => m.on_response(now, resp, &cfg),
            _ => return None,
        };
        let out = match step.signal {
            Some(Signal::Response(ref r)) => Some((id, r.clone())),
            _ => None,
        };
        self.apply(
            id,
            Step {
                send: step.send,
                signal: None,
            },
            now,
        );
        out
    }

    /// Drops a server transaction without answering: the TU decided the request was a
    /// late retransmission to ignore.
    pub fn forget(&mut self, tx: TxId) {
        self.remove(tx);
    }

    /// Reports that sending for `tx` failed: the transaction ends (§17.1.4, §17.2.4).
    pub fn transport_error(&mut self, tx: TxId) -> Option<TxNotice> {
        self.remove(tx)?;
        Some(TxNotice::TransportError { tx })
    }

    /// The next time `handle_timeout` must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxNotice> {
        let mut notices = Vec::new();
        while let Some((at, id)) = self.timers.pop_due(now) {
            let cfg = self.cfg;
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            if entry.scheduled != Some(at) {
                // Stale: the deadline moved and its new entry is queued.
                continue;
            }
            entry.scheduled = None;
            while entry.machine.next_deadline().is_some_and(|d| d <= now) {
                let step = entry.machine.on_timer(now, &cfg);
                if let Some(data) = step.send {
                    self.transmits.push_back(Transmit {
                        to: entry.dest,
                        transport: entry.transport,
                        data,
                        tx: Some(id),
                    });
                }
                if let Some(Signal::Timeout) = step.signal {
                    notices.push(TxNotice::Timeout {
                        tx: id,
                        method: entry.method.clone(),
                    });
                }
            }
            self.settle(id);
        }
        notices
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn apply(&mut self, id: TxId, step: Step, _now: Instant) {
        if let Some(entry) = self.entries.get(&id) {
            if let Some(data) = step.send {
                self.transmits.push_back(Transmit {
                    to: entry.dest,
                    transport: entry.transport,
                    data,
                    tx: Some(id),
                });
            }
        }
        self.settle(id);
    }

    /// Removes a terminated transaction or makes sure its next deadline is queued.
    fn settle(&mut self, id: TxId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.machine.is_terminated() {
            self.remove(id);
            return;
        }
        let next = entry.machine.next_deadline();
        if next != entry.scheduled {
            entry.scheduled = next;
            if let Some(at) = next {
                self.timers.schedule(at, id);
            }
        }
    }

    /// Size of the timer queue (tests check it does not grow without bound).
    pub fn timer_queue_len(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests;

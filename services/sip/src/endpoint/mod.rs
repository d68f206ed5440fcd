//! The imperative shell: one tokio task owns a UDP socket, the TCP connection table and
//! the sans-IO [`UserAgent`], feeds it datagrams, framed TCP messages, commands and the
//! clock, and carries out what it asks (send this, tell the app that). Everything that
//! decides anything lives in [`crate::ua`] and [`crate::overload`].
//!
//! UDP and TCP listen on the same address. TCP messages are framed by `Content-Length`;
//! responses go back on the connection the request came in on; requests to a peer reuse an
//! open connection with it or open one ([`OutgoingInvite::transport`]). See [`TcpConfig`] for
//! the connection limits.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dialtone_sip::endpoint::SipError> {
//! use dialtone_sip::endpoint::{EndpointConfig, SipEndpoint};
//! use dialtone_sip::sdp::{self, LocalMedia};
//! let cfg = EndpointConfig::new("0.0.0.0:5060".parse().unwrap()).public_host("203.0.113.5");
//! let (endpoint, mut incoming) = SipEndpoint::bind(cfg).await?;
//! while let Some(mut call) = incoming.recv().await {
//!     call.call.ringing(None).await?;
//!     let local = LocalMedia::new("203.0.113.5".parse().unwrap(), 40000);
//!     match call.sdp_offer.as_deref().map(|o| sdp::answer(o, &local)) {
//!         Some(Ok((answer, _negotiated))) => call.call.answer(answer).await?,
//!         _ => call.call.reject(488, None).await?,
//!     }
//!     while let Some(event) = call.events.recv().await { /* Acked, ByeReceived, Info... */ }
//! }
//! # drop(endpoint); Ok(()) }
//! ```

mod tcp;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::message::{NameAddr, Request, Uri};
pub use crate::overload::{OverloadConfig, RejectReason};
pub use crate::transaction::Transport;
use crate::transaction::{TimerConfig, Transmit};
pub use crate::ua::{
    CallError, CallEvent, CallKey, Credentials, HangupOutcome, OutgoingInvite, ReofferAnswer,
    TerminationReason, UaStats,
};
use crate::ua::{UaConfig, UaOutput, UserAgent};
pub use tcp::TcpConfig;
use tcp::{TcpEvent, TcpTransport};

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Address to bind (port 0 picks one).
    pub bind: SocketAddr,
    /// Host written in Via and Contact (our public IP or name). Defaults to the bound IP;
    /// required when binding a wildcard address.
    pub public_host: Option<String>,
    /// Port written in Via and Contact. Defaults to the bound port.
    pub public_port: Option<u16>,
    pub timers: TimerConfig,
    pub user_agent: String,
    /// Answer to the source port even without `rport` (NAT'd peers).
    pub force_rport: bool,
    pub min_session_expires: u32,
    /// Session interval asked for on outgoing INVITEs (0: none).
    pub session_expires: u32,
    /// How long the app has to answer a re-INVITE/UPDATE.
    pub reoffer_timeout: Duration,
    /// Limits beyond which new INVITEs get 503 (calls, server transactions, per-source CPS).
    pub overload: OverloadConfig,
    /// New calls waiting for the app; beyond this, INVITEs get 503.
    pub incoming_queue: usize,
    /// TCP listener and connection limits.
    pub tcp: TcpConfig,
    /// Inbound calls neither answered nor rejected within this get 480.
    pub unanswered_timeout: Duration,
}

impl EndpointConfig {
    pub fn new(bind: SocketAddr) -> Self {
        let ua = UaConfig::default();
        EndpointConfig {
            bind,
            public_host: None,
            public_port: None,
            timers: ua.timers,
            user_agent: ua.user_agent,
            force_rport: ua.force_rport,
            min_session_expires: ua.min_session_expires,
            session_expires: ua.session_expires,
            reoffer_timeout: ua.reoffer_timeout,
            overload: ua.overload,
            incoming_queue: 1024,
            tcp: TcpConfig::default(),
            unanswered_timeout: ua.unanswered_timeout,
        }
    }

    pub fn public_host(mut self, host: impl Into<String>) -> Self {
        self.public_host = Some(host.into());
        self
    }
}

/// Endpoint and call-control errors.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot bind UDP socket on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot listen on TCP at {addr} (beside UDP): {source}")]
    BindTcp { addr: SocketAddr, source: io::Error },
    #[error("public_host must be set when binding the wildcard address {0}")]
    NoPublicHost(SocketAddr),
    #[error("the SIP endpoint task has stopped")]
    EndpointGone,
    #[error(transparent)]
    Call(#[from] CallError),
}

/// A new inbound call. `100 Trying` has already been sent.
#[derive(Debug)]
pub struct IncomingCall {
    /// Commands for this call.
    pub call: CallHandle,
    /// Everything that happens on the call, ending with `CallEvent::Terminated`.
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub call_id: String,
    pub from: NameAddr,
    pub to: NameAddr,
    pub request_uri: Uri,
    /// Where the INVITE came from.
    pub remote_addr: SocketAddr,
    /// What it came over.
    pub transport: Transport,
    pub sdp_offer: Option<String>,
    /// First `Diversion` entry (Twilio `ForwardedFrom`).
    pub diversion: Option<NameAddr>,
    /// First `P-Asserted-Identity` entry.
    pub asserted_identity: Option<NameAddr>,
    /// The INVITE, for any other header (`SipHeader_X-...`).
    pub invite: Request,
}

/// An outbound call placed with [`SipEndpoint::invite`].
#[derive(Debug)]
pub struct OutgoingCall {
    pub call: CallHandle,
    /// `Progress`, `Answered`, ..., ending with `Terminated` (see
    /// [`TerminationReason::twilio_status`]).
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub call_id: String,
}

type Reply<T> = oneshot::Sender<Result<T, SipError>>;

enum Command {
    Ringing(CallKey, Option<String>, Reply<()>),
    Answer(CallKey, String, Reply<()>),
    Reject(CallKey, u16, Option<String>, Reply<()>),
    Hangup(CallKey, Reply<HangupOutcome>),
    Reoffer(CallKey, ReofferAnswer, Reply<()>),
    Invite(Box<OutgoingInvite>, Reply<OutgoingCall>),
    Shutdown(Reply<()>),
    Stats(Reply<(UaStats, usize)>),
}

/// Commands for one call. Cheap to clone; every method waits until the endpoint task has
/// carried the command out (`hangup` until the BYE is answered or times out).
#[derive(Debug, Clone)]
pub struct CallHandle {
    key: CallKey,
    cmd: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

async fn ask<T>(
    cmd: &mpsc::UnboundedSender<Command>,
    make: impl FnOnce(Reply<T>) -> Command,
) -> Result<T, SipError> {
    let (tx, rx) = oneshot::channel();
    cmd.send(make(tx)).map_err(|_| SipError::EndpointGone)?;
    rx.await.map_err(|_| SipError::EndpointGone)?
}

impl CallHandle {
    pub fn key(&self) -> CallKey {
        self.key
    }

    /// 180 Ringing, or 183 Session Progress carrying `sdp` (early media).
    pub async fn ringing(&self, sdp: Option<String>) -> Result<(), SipError> {
        ask(&self.cmd, |r| Command::Ringing(self.key, sdp, r)).await
    }

    /// 200 OK with our SDP answer, retransmitted until the ACK (`CallEvent::Acked`).
    pub async fn answer(&self, sdp: String) -> Result<(), SipError> {
        ask(&self.cmd, |r| Command::Answer(self.key, sdp, r)).await
    }

    /// A final error (300–699) to the unanswered call: 486 busy, 603 decline, 404...
    pub async fn reject(&self, status: u16, reason: Option<String>) -> Result<(), SipError> {
        ask(&self.cmd, |r| Command::Reject(self.key, status, reason, r)).await
    }

    /// BYE (or 603 if not answered yet; CANCEL for an unanswered outbound call); returns when
    /// it has been answered or timed out.
    pub async fn hangup(&self) -> Result<HangupOutcome, SipError> {
        ask(&self.cmd, |r| Command::Hangup(self.key, r)).await
    }

    /// Answers the pending `CallEvent::ReInvite`.
    pub async fn respond_to_reinvite(&self, answer: ReofferAnswer) -> Result<(), SipError> {
        ask(&self.cmd, |r| Command::Reoffer(self.key, answer, r)).await
    }
}

/// The SIP endpoint. Cheap to clone. The task ends when every clone and every
/// [`CallHandle`] is dropped.
#[derive(Debug, Clone)]
pub struct SipEndpoint {
    cmd: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
}

impl SipEndpoint {
    /// Binds the UDP socket (and the TCP listener on the same address, unless TCP is off)
    /// and starts the endpoint task. New calls arrive on the returned receiver.
    pub async fn bind(
        config: EndpointConfig,
    ) -> Result<(SipEndpoint, mpsc::Receiver<IncomingCall>), SipError> {
        let (socket, listener, local_addr) = bind_sockets(&config).await?;
        let host = match &config.public_host {
            Some(h) => h.clone(),
            None if local_addr.ip().is_unspecified() => {
                return Err(SipError::NoPublicHost(local_addr))
            }
            None => local_addr.ip().to_string(),
        };
        let ua = UserAgent::new(UaConfig {
            contact_host: host,
            contact_port: config.public_port.unwrap_or(local_addr.port()),
            contact_user: "dialtone".into(),
            timers: config.timers,
            user_agent: config.user_agent.clone(),
            force_rport: config.force_rport,
            min_session_expires: config.min_session_expires,
            session_expires: config.session_expires,
            reoffer_timeout: config.reoffer_timeout,
            overload: config.overload.clone(),
            unanswered_timeout: config.unanswered_timeout,
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(config.incoming_queue.max(1));
        let (tcp_events_tx, tcp_events) = mpsc::channel(1024);
        let tcp_on = listener.is_some();
        if let Some(listener) = listener {
            TcpTransport::spawn_acceptor(listener, tcp_events_tx.clone());
        }
        let task = EndpointTask {
            socket,
            ua,
            tcp: TcpTransport::new(config.tcp.clone(), tcp_events_tx),
            tcp_events,
            tcp_to_close: Vec::new(),
            sweep_every: (config.tcp.idle_timeout() / 4).max(Duration::from_secs(1)),
            cmd_rx,
            cmd_weak: cmd_tx.downgrade(),
            incoming_tx,
            calls: HashMap::new(),
            hangups: HashMap::new(),
            send_errors: 0,
        };
        tokio::spawn(task.run());
        tracing::info!(%local_addr, tcp = tcp_on, "SIP endpoint listening (UDP and TCP)");
        Ok((
            SipEndpoint {
                cmd: cmd_tx,
                local_addr,
            },
            incoming_rx,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting calls: new INVITEs get 503. Existing calls go on (the app can BYE).
    pub async fn shutdown(&self) -> Result<(), SipError> {
        ask(&self.cmd, Command::Shutdown).await
    }

    /// Places an outbound call.
    pub async fn invite(&self, out: OutgoingInvite) -> Result<OutgoingCall, SipError> {
        ask(&self.cmd, |r| Command::Invite(Box::new(out), r)).await
    }

    /// Counters and the number of live calls.
    pub async fn stats(&self) -> Result<(UaStats, usize), SipError> {
        ask(&self.cmd, Command::Stats).await
    }
}

/// Binds UDP, then TCP on the same IP and port. With port 0, a port free for both is
/// looked for (a few tries).
async fn bind_sockets(
    config: &EndpointConfig,
) -> Result<(UdpSocket, Option<TcpListener>, SocketAddr), SipError> {
    let tries = if config.bind.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..tries {
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|source| SipError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| SipError::Bind {
            addr: config.bind,
            source,
        })?;
        if !config.tcp.enabled {
            return Ok((socket, None, local_addr));
        }
        match TcpListener::bind(local_addr).await {
            Ok(listener) => return Ok((socket, Some(listener), local_addr)),
            Err(source) => {
                last_err = Some(SipError::BindTcp {
                    addr: local_addr,
                    source,
                })
            }
        }
    }
    Err(last_err.unwrap_or(SipError::NoPublicHost(config.bind)))
}

struct EndpointTask {
    socket: UdpSocket,
    ua: UserAgent,
    tcp: TcpTransport,
    tcp_events: mpsc::Receiver<TcpEvent>,
    /// Connections to close once the current output (their 400) is flushed.
    tcp_to_close: Vec<tcp::ConnId>,
    sweep_every: Duration,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    /// Weak, so that the task ends once the app has dropped every handle.
    cmd_weak: mpsc::WeakUnboundedSender<Command>,
    incoming_tx: mpsc::Sender<IncomingCall>,
    calls: HashMap<CallKey, mpsc::UnboundedSender<CallEvent>>,
    hangups: HashMap<CallKey, Vec<Reply<HangupOutcome>>>,
    send_errors: u64,
}

impl EndpointTask {
    async fn run(mut self) {
        let mut buf = vec![0u8; 65_535];
        let mut sweep = tokio::time::interval(self.sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.ua.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, src)) => self.ua.handle_datagram(Instant::now(), src, &buf[..n]),
                    Err(e) => {
                        // Linux reports ICMP errors of earlier sends here; nothing to do.
                        tracing::debug!(error = %e, "UDP receive error");
                    }
                },
                c = self.cmd_rx.recv() => match c {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                e = self.tcp_events.recv() => {
                    if let Some(e) = e {
                        self.on_tcp_event(e);
                    }
                }
                _ = sleep => self.ua.handle_timeout(Instant::now()),
                _ = sweep.tick() => {
                    let ua = &self.ua;
                    self.tcp.sweep(Instant::now(), || ua.flows_in_use(Transport::Tcp));
                }
            }
            self.flush().await;
            for conn in self.tcp_to_close.drain(..) {
                self.tcp.close(conn);
            }
        }
        tracing::info!("SIP endpoint task stopped");
    }

    fn on_tcp_event(&mut self, event: TcpEvent) {
        let now = Instant::now();
        match event {
            TcpEvent::Accepted(stream, peer) => self.tcp.accepted(now, stream, peer),
            TcpEvent::Message { conn, peer, parsed } => {
                if parsed.is_err() {
                    // The stream cannot be resynchronised: answer (400) and close.
                    self.tcp_to_close.push(conn);
                } else {
                    self.tcp.touch(conn, now);
                }
                self.ua.handle_parsed(now, Transport::Tcp, peer, parsed);
            }
            TcpEvent::Activity { conn } => self.tcp.touch(conn, now),
            TcpEvent::Closed { conn, peer, unsent } => {
                tracing::debug!(%peer, "TCP connection closed");
                self.tcp.close(conn);
                for tx in unsent {
                    self.ua.handle_transport_error(now, tx);
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Ringing(k, sdp, r) => {
                let _ = r.send(self.ua.ringing(now, k, sdp).map_err(Into::into));
            }
            Command::Answer(k, sdp, r) => {
                let _ = r.send(self.ua.answer(now, k, sdp).map_err(Into::into));
            }
            Command::Reject(k, status, reason, r) => {
                let _ = r.send(
                    self.ua
                        .reject(now, k, status, reason.as_deref())
                        .map_err(Into::into),
                );
            }
            Command::Hangup(k, r) => match self.ua.hangup(now, k) {
                Ok(()) => self.hangups.entry(k).or_default().push(r),
                Err(e) => {
                    let _ = r.send(Err(e.into()));
                }
            },
            Command::Reoffer(k, answer, r) => {
                let _ = r.send(
                    self.ua
                        .respond_to_reoffer(now, k, answer)
                        .map_err(Into::into),
                );
            }
            Command::Invite(out, r) => {
                let reply = match (self.ua.invite(now, *out), self.cmd_weak.upgrade()) {
                    (Ok(key), Some(cmd)) => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        self.calls.insert(key, tx);
                        Ok(OutgoingCall {
                            call: CallHandle { key, cmd },
                            events: rx,
                            call_id: self.ua.call_id_of(key).unwrap_or_default(),
                        })
                    }
                    (Ok(_), None) => Err(SipError::EndpointGone),
                    (Err(e), _) => Err(e.into()),
                };
                let _ = r.send(reply);
            }
            Command::Shutdown(r) => {
                self.ua.stop_accepting();
                let _ = r.send(Ok(()));
            }
            Command::Stats(r) => {
                let stats = UaStats {
                    tcp_connections: self.tcp.len(),
                    ..self.ua.stats()
                };
                let _ = r.send(Ok((stats, self.ua.call_count())));
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(out) = self.ua.poll_output() {
            match out {
                UaOutput::Transmit(t) => self.transmit(t).await,
                UaOutput::IncomingCall(c) => self.deliver_call(*c),
                UaOutput::Call { key, event } => {
                    let last = matches!(event, CallEvent::Terminated { .. });
                    if let Some(tx) = self.calls.get(&key) {
                        let _ = tx.send(event);
                    }
                    if last {
                        self.calls.remove(&key);
                        // A hangup that raced with the call ending another way.
                        for r in self.hangups.remove(&key).unwrap_or_default() {
                            let _ = r.send(Ok(HangupOutcome::RemoteHungUp));
                        }
                    }
                }
                UaOutput::HangupDone { key, outcome } => {
                    for r in self.hangups.remove(&key).unwrap_or_default() {
                        let _ = r.send(Ok(outcome.clone()));
                    }
                }
            }
        }
    }

    async fn transmit(&mut self, t: Transmit) {
        let failed = match t.transport {
            Transport::Udp => match self.socket.send_to(&t.data, t.to).await {
                Ok(_) => false,
                Err(e) => {
                    self.send_errors += 1;
                    if self.send_errors.is_power_of_two() {
                        tracing::warn!(to = %t.to, error = %e, count = self.send_errors, "UDP send failed");
                    }
                    true
                }
            },
            Transport::Tcp => match self.tcp.send(Instant::now(), t.to, t.data, t.tx) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(to = %t.to, problem = ?e, "TCP send failed");
                    true
                }
            },
        };
        if failed {
            if let Some(tx) = t.tx {
                self.ua.handle_transport_error(Instant::now(), tx);
            }
        }
    }

    fn deliver_call(&mut self, c: crate::ua::InboundCall) {
        let key = c.key;
        let Some(cmd) = self.cmd_weak.upgrade() else {
            let _ = self.ua.reject(Instant::now(), key, 503, None);
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let call = IncomingCall {
            call: CallHandle { key, cmd },
            events: rx,
            call_id: c.call_id.clone(),
            diversion: c.diversion(),
            asserted_identity: c.asserted_identity(),
            from: c.from,
            to: c.to,
            request_uri: c.request_uri,
            remote_addr: c.source,
            transport: c.transport,
            sdp_offer: c.sdp_offer,
            invite: c.invite,
        };
        match self.incoming_tx.try_send(call) {
            Ok(()) => {
                self.calls.insert(key, tx);
            }
            Err(e) => {
                tracing::warn!(reason = %e, "no room for a new call; answering 503");
                self.ua.note_rejection(RejectReason::QueueFull);
                let _ = self
                    .ua
                    .reject(Instant::now(), key, 503, Some("Service Unavailable"));
            }
        }
    }
}

//! TCP for the endpoint: one task per connection frames the byte stream with
//! [`parse_stream`] and hands messages to the endpoint task; the endpoint task writes
//! through a bounded per-connection queue. Connections are found by the peer's address, so
//! responses go back on the connection their request came in on and requests to a peer we
//! already have a connection with reuse it (one is opened otherwise).
//!
//! Bounds: a connection limit (new ones beyond it are closed at once), a maximum message
//! size (a peer sending more without completing a message is cut off), a bounded write queue
//! (a peer that does not read is cut off), write and connect timeouts, and an idle timeout
//! for connections that carry no live call. Garbage closes the connection after the 400
//! (if one could be built) is written. Nothing here panics on input.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::message::{parse_stream, ParseError, ParseFailure, Parsed};
use crate::transaction::TxId;

/// TCP settings of the endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// Listen on TCP at the UDP address too.
    pub enabled: bool,
    /// Open connections (both directions); more are refused.
    pub max_connections: usize,
    /// Largest message accepted from a connection, headers and body.
    pub max_message_bytes: usize,
    /// Messages queued for writing on one connection before it is considered stuck.
    pub write_queue: usize,
    /// Connections with no traffic and no live call for this long are closed (seconds).
    pub idle_timeout_secs: u64,
    /// Giving up on connecting to a peer (milliseconds).
    pub connect_timeout_ms: u64,
    /// Giving up on one write to a peer that does not read (milliseconds).
    pub write_timeout_ms: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            enabled: true,
            max_connections: 10_000,
            max_message_bytes: 64 * 1024,
            write_queue: 256,
            idle_timeout_secs: 300,
            connect_timeout_ms: 5_000,
            write_timeout_ms: 5_000,
        }
    }
}

impl TcpConfig {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.max(1))
    }
}

/// Identifies one connection for its lifetime (a peer address may be reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnId(u64);

/// News from the accept task and the connection tasks.
pub(crate) enum TcpEvent {
    Accepted(TcpStream, SocketAddr),
    /// A framed message, or the framing failure after which the connection stops reading.
    Message {
        conn: ConnId,
        peer: SocketAddr,
        parsed: Result<Parsed, ParseFailure>,
    },
    /// A keep-alive (CRLF) arrived: the connection is in use.
    Activity {
        conn: ConnId,
    },
    /// The connection is gone; these transactions' messages were not written.
    Closed {
        conn: ConnId,
        peer: SocketAddr,
        unsent: Vec<TxId>,
    },
}

struct Outgoing {
    data: Bytes,
    tx: Option<TxId>,
}

struct Conn {
    peer: SocketAddr,
    out: mpsc::Sender<Outgoing>,
    last_activity: Instant,
}

/// Why a message could not be handed to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendFailure {
    /// At the connection limit, no new connection for this peer.
    TooManyConnections,
    /// The peer does not read: the connection was closed.
    Stuck,
}

/// The endpoint task's side of TCP: the connection table.
pub(crate) struct TcpTransport {
    cfg: TcpConfig,
    conns: HashMap<ConnId, Conn>,
    /// The newest connection with each peer address.
    by_peer: HashMap<SocketAddr, ConnId>,
    next_id: u64,
    events: mpsc::Sender<TcpEvent>,
    refused: u64,
}

impl TcpTransport {
    pub(crate) fn new(cfg: TcpConfig, events: mpsc::Sender<TcpEvent>) -> Self {
        TcpTransport {
            cfg,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            next_id: 0,
            events,
            refused: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Starts the accept loop (its own task, so that a backoff on accept errors never
    /// stalls the endpoint).
    pub(crate) fn spawn_acceptor(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
        tokio::spawn(async move {
            let mut errors: u64 = 0;
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        if events.send(TcpEvent::Accepted(stream, peer)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        errors += 1;
                        if errors.is_power_of_two() {
                            tracing::warn!(error = %e, count = errors, "TCP accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                if events.is_closed() {
                    break;
                }
            }
        });
    }

    fn alloc(&mut self, peer: SocketAddr, now: Instant) -> (ConnId, mpsc::Receiver<Outgoing>) {
        self.next_id += 1;
        let id = ConnId(self.next_id);
        let (out, rx) = mpsc::channel(self.cfg.write_queue.max(1));
        self.conns.insert(
            id,
            Conn {
                peer,
                out,
                last_activity: now,
            },
        );
        self.by_peer.insert(peer, id);
        (id, rx)
    }

    /// A connection the acceptor took.
    pub(crate) fn accepted(&mut self, now: Instant, stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.cfg.max_connections {
            self.refused += 1;
            if self.refused.is_power_of_two() {
                tracing::warn!(%peer, refused = self.refused, "TCP connection limit reached");
            }
            return; // dropping the stream closes it
        }
        let (id, rx) = self.alloc(peer, now);
        tracing::debug!(%peer, "TCP connection accepted");
        tokio::spawn(run_connection(
            id,
            peer,
            Some(stream),
            rx,
            self.events.clone(),
            self.cfg.clone(),
        ));
    }

    /// Queues `data` for `peer`, on the existing connection or a new one.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        data: Bytes,
        tx: Option<TxId>,
    ) -> Result<(), SendFailure> {
        let mut msg = Outgoing { data, tx };
        if let Some(id) = self.by_peer.get(&peer).copied() {
            if let Some(conn) = self.conns.get_mut(&id) {
                match conn.out.try_send(msg) {
                    Ok(()) => {
                        conn.last_activity = now;
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(%peer, "TCP peer does not read; closing the connection");
                        self.close(id);
                        return Err(SendFailure::Stuck);
                    }
                    // The task has ended; its Closed event is on the way. Open a new one.
                    Err(mpsc::error::TrySendError::Closed(m)) => {
                        msg = m;
                        self.close(id);
                    }
                }
            }
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(SendFailure::TooManyConnections);
        }
        let (id, rx) = self.alloc(peer, now);
        if let Some(conn) = self.conns.get(&id) {
            // A fresh queue has room for one.
            let _ = conn.out.try_send(msg);
        }
        tracing::debug!(%peer, "opening a TCP connection");
        tokio::spawn(run_connection(
            id,
            peer,
            None,
            rx,
            self.events.clone(),
            self.cfg.clone(),
        ));
        Ok(())
    }

    pub(crate) fn touch(&mut self, id: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.last_activity = now;
        }
    }

    /// Forgets a connection: its task writes what is queued, then closes it.
    pub(crate) fn close(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            if self.by_peer.get(&c.peer) == Some(&id) {
                self.by_peer.remove(&c.peer);
            }
        }
    }

    /// Closes connections idle for longer than the idle timeout, except those carrying a
    /// live call (`in_use` is asked only when some connection is idle).
    pub(crate) fn sweep(&mut self, now: Instant, in_use: impl FnOnce() -> HashSet<SocketAddr>) {
        let idle = self.cfg.idle_timeout();
        let stale: Vec<(ConnId, SocketAddr)> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_activity) >= idle)
            .map(|(id, c)| (*id, c.peer))
            .collect();
        if stale.is_empty() {
            return;
        }
        let busy = in_use();
        for (id, peer) in stale {
            if busy.contains(&peer) {
                self.touch(id, now);
            } else {
                tracing::debug!(%peer, "closing idle TCP connection");
                self.close(id);
            }
        }
    }
}

/// Runs one connection: connects first when `stream` is `None`, then reads and frames
/// messages and writes what the endpoint queues, until either side closes.
async fn run_connection(
    id: ConnId,
    peer: SocketAddr,
    stream: Option<TcpStream>,
    mut out: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<TcpEvent>,
    cfg: TcpConfig,
) {
    let mut unsent = Vec::new();
    let stream = match stream {
        Some(s) => Some(s),
        None => match tokio::time::timeout(cfg.connect_timeout(), TcpStream::connect(peer)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "TCP connect failed");
                None
            }
            Err(_) => {
                tracing::info!(%peer, "TCP connect timed out");
                None
            }
        },
    };
    if let Some(stream) = stream {
        let _ = stream.set_nodelay(true);
        serve_connection(id, peer, stream, &mut out, &events, &cfg, &mut unsent).await;
    }
    out.close();
    while let Ok(o) = out.try_recv() {
        unsent.extend(o.tx);
    }
    let _ = events
        .send(TcpEvent::Closed {
            conn: id,
            peer,
            unsent,
        })
        .await;
}

/// What framing the buffer gave.
enum Framed {
    /// Keep reading.
    More,
    /// Stop reading (garbage or oversize); linger to write the answer, then close.
    Stop,
    /// The endpoint is gone.
    Gone,
}

async fn serve_connection(
    id: ConnId,
    peer: SocketAddr,
    stream: TcpStream,
    out: &mut mpsc::Receiver<Outgoing>,
    events: &mpsc::Sender<TcpEvent>,
    cfg: &TcpConfig,
    unsent: &mut Vec<TxId>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let max = cfg.max_message_bytes.max(1024);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut reading = true;
    // After a framing error: how long to wait for the endpoint to write its 400.
    let linger = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(linger);
    loop {
        tokio::select! {
            r = rd.read_buf(&mut buf), if reading => match r {
                Ok(0) => break,
                Ok(_) => {
                    let mut pong = false;
                    match frame(id, peer, &mut buf, max, events, &mut pong).await {
                        Framed::More => {}
                        Framed::Stop => {
                            reading = false;
                            linger
                                .as_mut()
                                .reset(tokio::time::Instant::now() + Duration::from_secs(2));
                        }
                        Framed::Gone => break,
                    }
                    if pong {
                        // RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
                        let w = tokio::time::timeout(cfg.write_timeout(), wr.write_all(b"\r\n"));
                        if !matches!(w.await, Ok(Ok(()))) {
                            break;
                        }
                    }
                    if buf.capacity() - buf.len() < 4096 {
                        buf.reserve(8 * 1024);
                    }
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TCP read failed");
                    break;
                }
            },
            o = out.recv() => match o {
                Some(o) => {
                    let w = tokio::time::timeout(cfg.write_timeout(), wr.write_all(&o.data));
                    if !matches!(w.await, Ok(Ok(()))) {
                        tracing::info!(%peer, "TCP write failed or timed out; closing");
                        unsent.extend(o.tx);
                        break;
                    }
                }
                // The endpoint closed the connection (idle, garbage, or shutting down).
                None => break,
            },
            _ = &mut linger, if !reading => break,
        }
    }
    let _ = wr.shutdown().await;
}

/// Frames every complete message at the front of `buf` and hands them over.
async fn frame(
    id: ConnId,
    peer: SocketAddr,
    buf: &mut BytesMut,
    max: usize,
    events: &mpsc::Sender<TcpEvent>,
    pong: &mut bool,
) -> Framed {
    loop {
        let parsed = match parse_stream(buf) {
            Ok(Some((Parsed::KeepAlive, n))) => {
                *pong |= n >= 4;
                buf.advance(n);
                if events.send(TcpEvent::Activity { conn: id }).await.is_err() {
                    return Framed::Gone;
                }
                continue;
            }
            Ok(Some((_, n))) if n > max => Err(ParseFailure {
                error: ParseError::TooLarge,
                partial: None,
            }),
            Ok(Some((p, n))) => {
                buf.advance(n);
                Ok(p)
            }
            Ok(None) if buf.len() > max => Err(ParseFailure {
                error: ParseError::TooLarge,
                partial: None,
            }),
            Ok(None) => return Framed::More,
            Err(f) => Err(f),
        };
        let stop = parsed.is_err();
        if events
            .send(TcpEvent::Message {
                conn: id,
                peer,
                parsed,
            })
            .await
            .is_err()
        {
            return Framed::Gone;
        }
        if stop {
            buf.clear();
            return Framed::Stop;
        }
    }
}

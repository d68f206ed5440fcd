//! The four transaction state machines of RFC 3261 §17, with the RFC 6026 changes (INVITE
//! client "Accepted" state with Timer M; INVITE server "Accepted" state with Timer L, where
//! 2xx retransmission is the UAS core's job).
//!
//! Each machine is fed events with the current time and returns a [`Step`]: at most one
//! message to (re)transmit to the transaction's peer and at most one signal for the TU.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::TimerConfig;
use crate::message::Response;

/// What a machine asks for after an event.
#[derive(Debug, Default)]
pub(crate) struct Step {
    pub(crate) send: Option<Bytes>,
    pub(crate) signal: Option<Signal>,
}

impl Step {
    fn send(b: &Bytes) -> Step {
        Step {
            send: Some(b.clone()),
            signal: None,
        }
    }

    fn signal(s: Signal) -> Step {
        Step {
            send: None,
            signal: Some(s),
        }
    }
}

#[derive(Debug)]
pub(crate) enum Signal {
    /// Client: a response for the TU.
    Response(Response),
    /// Client: Timer B/F; server: Timer H (no ACK).
    Timeout,
    /// Server INVITE in Accepted: an ACK (for the 2xx) for the TU.
    PassAck,
}

/// Earliest of some optional deadlines.
fn earliest(ts: &[Option<Instant>]) -> Option<Instant> {
    ts.iter().flatten().min().copied()
}

fn due(t: Option<Instant>, now: Instant) -> bool {
    t.is_some_and(|t| t <= now)
}

// ---------------------------------------------------------------------------------------
// INVITE client (§17.1.1, RFC 6026 §8.4)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct InviteClient {
    pub(crate) state: InviteClientState,
    bytes: Bytes,
    reliable: bool,
    timer_a: Option<Instant>,
    a_interval: Duration,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    timer_m: Option<Instant>,
    /// ACK for a non-2xx final, resent for every retransmission of that final.
    ack: Option<Bytes>,
}

impl InviteClient {
    pub(crate) fn new(
        now: Instant,
        bytes: Bytes,
        reliable: bool,
        cfg: &TimerConfig,
    ) -> (Self, Step) {
        let m = InviteClient {
            state: InviteClientState::Calling,
            bytes: bytes.clone(),
            reliable,
            timer_a: (!reliable).then(|| now + cfg.t1),
            a_interval: cfg.t1,
            timer_b: Some(now + cfg.t1 * 64),
            timer_d: None,
            timer_m: None,
            ack: None,
        };
        (m, Step::send(&bytes))
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_a, self.timer_b, self.timer_d, self.timer_m])
    }

    pub(crate) fn on_timer(&mut self, now: Instant, _cfg: &TimerConfig) -> Step {
        if due(self.timer_b, now) {
            self.state = InviteClientState::Terminated;
            self.clear();
            return Step::signal(Signal::Timeout);
        }
        if let Some(a) = self.timer_a.filter(|a| *a <= now) {
            // Timer A doubles without a cap; Timer B ends it.
            self.a_interval *= 2;
            self.timer_a = Some(a + self.a_interval);
            return Step::send(&self.bytes);
        }
        if due(self.timer_d, now) || due(self.timer_m, now) {
            self.state = InviteClientState::Terminated;
            self.clear();
        }
        Step::default()
    }

    fn clear(&mut self) {
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
    }

    /// `ack` builds the ACK for a non-2xx final (only called when one is needed).
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        resp: Response,
        cfg: &TimerConfig,
        ack: impl FnOnce(&Response) -> Bytes,
    ) -> Step {
        use InviteClientState::*;
        match self.state {
            Calling | Proceeding => {
                if resp.status < 200 {
                    self.state = Proceeding;
                    self.timer_a = None;
                    self.timer_b = None;
                    Step::signal(Signal::Response(resp))
                } else if resp.status < 300 {
                    self.state = Accepted;
                    self.clear();
                    self.timer_m = Some(now + cfg.t1 * 64);
                    Step::signal(Signal::Response(resp))
                } else {
                    let ack = ack(&resp);
                    self.ack = Some(ack.clone());
                    self.clear();
                    if self.reliable {
                        self.state = Terminated;
                    } else {
                        self.state = Completed;
                        self.timer_d = Some(now + cfg.timer_d);
                    }
                    Step {
                        send: Some(ack),
                        signal: Some(Signal::Response(resp)),
                    }
                }
            }
            Completed if resp.status >= 300 => Step {
                send: self.ack.clone(),
                signal: None,
            },
            // 2xx retransmissions (and forked 2xx) go to the TU, which ACKs them.
            Accepted if (200..300).contains(&resp.status) => Step::signal(Signal::Response(resp)),
            _ => Step::default(),
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }
}

// ---------------------------------------------------------------------------------------
// Non-INVITE client (§17.1.2)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct NonInviteClient {
    pub(crate) state: NonInviteClientState,
    bytes: Bytes,
    reliable: bool,
    timer_e: Option<Instant>,
    e_interval: Duration,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
}

impl NonInviteClient {
    pub(crate) fn new(
        now: Instant,
        bytes: Bytes,
        reliable: bool,
        cfg: &TimerConfig,
    ) -> (Self, Step) {
        let m = NonInviteClient {
            state: NonInviteClientState::Trying,
            bytes: bytes.clone(),
            reliable,
            timer_e: (!reliable).then(|| now + cfg.t1),
            e_interval: cfg.t1,
            timer_f: Some(now + cfg.t1 * 64),
            timer_k: None,
        };
        (m, Step::send(&bytes))
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_e, self.timer_f, self.timer_k])
    }

    pub(crate) fn on_timer(&mut self, now: Instant, cfg: &TimerConfig) -> Step {
        if due(self.timer_f, now) {
            self.state = NonInviteClientState::Terminated;
            self.timer_e = None;
            self.timer_f = None;
            return Step::signal(Signal::Timeout);
        }
        if let Some(e) = self.timer_e.filter(|e| *e <= now) {
            self.e_interval = match self.state {
                NonInviteClientState::Proceeding => cfg.t2,
                _ => (self.e_interval * 2).min(cfg.t2),
            };
            self.timer_e = Some(e + self.e_interval);
            return Step::send(&self.bytes);
        }
        if due(self.timer_k, now) {
            self.state = NonInviteClientState::Terminated;
            self.timer_k = None;
        }
        Step::default()
    }

    pub(crate) fn on_response(&mut self, now: Instant, resp: Response, cfg: &TimerConfig) -> Step {
        use NonInviteClientState::*;
        match self.state {
            Trying | Proceeding if resp.status < 200 => {
                self.state = Proceeding;
                Step::signal(Signal::Response(resp))
            }
            Trying | Proceeding => {
                self.timer_e = None;
                self.timer_f = None;
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Completed;
                    self.timer_k = Some(now + cfg.t4);
                }
                Step::signal(Signal::Response(resp))
            }
            _ => Step::default(),
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }
}

// ---------------------------------------------------------------------------------------
// INVITE server (§17.2.1, RFC 6026 §8.5-8.7)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// A response that the machine's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot send a {status} response in state {state}")]
pub struct InvalidState {
    pub status: u16,
    pub state: &'static str,
}

#[derive(Debug)]
pub(crate) struct InviteServer {
    pub(crate) state: InviteServerState,
    reliable: bool,
    last_provisional: Option<Bytes>,
    last_final: Option<Bytes>,
    timer_g: Option<Instant>,
    g_interval: Duration,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
}

impl InviteServer {
    pub(crate) fn new(reliable: bool, cfg: &TimerConfig) -> Self {
        InviteServer {
            state: InviteServerState::Proceeding,
            reliable,
            last_provisional: None,
            last_final: None,
            timer_g: None,
            g_interval: cfg.t1,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.timer_g, self.timer_h, self.timer_i, self.timer_l])
    }

    /// A retransmitted INVITE or an ACK matching this transaction.
    pub(crate) fn on_request(&mut self, now: Instant, is_ack: bool, cfg: &TimerConfig) -> Step {
        use InviteServerState::*;
        match (self.state, is_ack) {
            (Proceeding, false) => Step {
                send: self.last_provisional.clone(),
                signal: None,
            },
            (Completed, false) => Step {
                send: self.last_final.clone(),
                signal: None,
            },
            (Completed, true) => {
                self.timer_g = None;
                self.timer_h = None;
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Confirmed;
                    self.timer_i = Some(now + cfg.t4);
                }
                Step::default()
            }
            (Accepted, true) => Step::signal(Signal::PassAck),
            _ => Step::default(),
        }
    }

    pub(crate) fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        bytes: Bytes,
        cfg: &TimerConfig,
    ) -> Result<Step, InvalidState> {
        use InviteServerState::*;
        match self.state {
            Proceeding if status < 200 => {
                self.last_provisional = Some(bytes.clone());
                Ok(Step::send(&bytes))
            }
            Proceeding if status < 300 => {
                self.state = Accepted;
                self.timer_l = Some(now + cfg.t1 * 64);
                Ok(Step::send(&bytes))
            }
            Proceeding => {
                self.state = Completed;
                self.last_final = Some(bytes.clone());
                if !self.reliable {
                    self.timer_g = Some(now + cfg.t1);
                    self.g_interval = cfg.t1;
                }
                self.timer_h = Some(now + cfg.t1 * 64);
                Ok(Step::send(&bytes))
            }
            // The UAS core retransmits its 2xx through the transaction while it lives.
            Accepted if (200..300).contains(&status) => Ok(Step::send(&bytes)),
            s => Err(InvalidState {
                status,
                state: match s {
                    Proceeding => "Proceeding",
                    Completed => "Completed",
                    Confirmed => "Confirmed",
                    Accepted => "Accepted",
                    Terminated => "Terminated",
                },
            }),
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant, cfg: &TimerConfig) -> Step {
        if due(self.timer_h, now) {
            self.state = InviteServerState::Terminated;
            self.timer_g = None;
            self.timer_h = None;
            return Step::signal(Signal::Timeout);
        }
        if let Some(g) = self.timer_g.filter(|g| *g <= now) {
            self.g_interval = (self.g_interval * 2).min(cfg.t2);
            self.timer_g = Some(g + self.g_interval);
            return Step {
                send: self.last_final.clone(),
                signal: None,
            };
        }
        if due(self.timer_i, now) || due(self.timer_l, now) {
            self.state = InviteServerState::Terminated;
            self.timer_i = None;
            self.timer_l = None;
        }
        Step::default()
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    pub(crate) fn has_final(&self) -> bool {
        self.state != InviteServerState::Proceeding
    }
}

// ---------------------------------------------------------------------------------------
// Non-INVITE server (§17.2.2)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct NonInviteServer {
    pub(crate) state: NonInviteServerState,
    reliable: bool,
    last: Option<Bytes>,
    timer_j: Option<Instant>,
}

impl NonInviteServer {
    pub(crate) fn new(reliable: bool) -> Self {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            reliable,
            last: None,
            timer_j: None,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timer_j
    }

    pub(crate) fn on_request(&mut self) -> Step {
        match self.state {
            NonInviteServerState::Proceeding | NonInviteServerState::Completed => Step {
                send: self.last.clone(),
                signal: None,
            },
            _ => Step::default(),
        }
    }

    pub(crate) fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        bytes: Bytes,
        cfg: &TimerConfig,
    ) -> Result<Step, InvalidState> {
        use NonInviteServerState::*;
        match self.state {
            Trying | Proceeding => {
                self.last = Some(bytes.clone());
                if status < 200 {
                    self.state = Proceeding;
                } else if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Completed;
                    self.timer_j = Some(now + cfg.t1 * 64);
                }
                Ok(Step::send(&bytes))
            }
            Completed => Err(InvalidState {
                status,
                state: "Completed",
            }),
            Terminated => Err(InvalidState {
                status,
                state: "Terminated",
            }),
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Step {
        if due(self.timer_j, now) {
            self.state = NonInviteServerState::Terminated;
            self.timer_j = None;
        }
        Step::default()
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    pub(crate) fn has_final(&self) -> bool {
        matches!(
            self.state,
            NonInviteServerState::Completed | NonInviteServerState::Terminated
        )
    }
}

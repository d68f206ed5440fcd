//! UAC behaviour of the UA core: outbound INVITE, provisional responses and early media,
//! ACK for every 2xx, CANCEL (on hangup or ring timeout), digest authentication answers
//! to 401/407, and the mapping of final statuses to Twilio call statuses.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::uas::sdp_from_body;
use super::{
    random_tag, Call, CallDirection, CallError, CallEvent, CallKey, CallTimer, ClientRole,
    HangupOutcome, Phase, TerminationReason, UaOutput, UserAgent, ALLOW, SUPPORTED,
};
use crate::auth::Challenge;
use crate::dialog::{Dialog, DialogId, DialogState};
use crate::message::{CSeq, HeaderName, Method, NameAddr, Request, Response, Uri};
use crate::transaction::{Transmit, Transport, TxId};

/// Digest credentials for answering 401/407.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// An outbound call to place.
#[derive(Debug, Clone)]
pub struct OutgoingInvite {
    /// Request-URI (`sip:+15551234567@trunk.example` or a `tel:` URI).
    pub target: Uri,
    /// Where to send the INVITE (trunk or outbound proxy).
    pub destination: SocketAddr,
    /// UDP, or TCP (a connection to `destination` is reused or opened). Every request of
    /// the dialog uses it.
    pub transport: Transport,
    /// Our identity (a tag is added).
    pub from: NameAddr,
    /// Callee identity; `target` when `None`.
    pub to: Option<NameAddr>,
    /// Our SDP offer (required: we do not do delayed offer).
    pub sdp: String,
    /// Extra headers (`P-Asserted-Identity`, `X-...`).
    pub headers: Vec<(String, String)>,
    pub credentials: Option<Credentials>,
    /// Cancel when not answered within this (Twilio's `timeout`).
    pub ring_timeout: Option<Duration>,
}

impl OutgoingInvite {
    /// An INVITE to `target` sent over UDP to `destination`, without credentials, extra
    /// headers or ring timeout (set the public fields for those).
    pub fn new(target: Uri, destination: SocketAddr, from: NameAddr, sdp: String) -> Self {
        OutgoingInvite {
            target,
            destination,
            transport: Transport::Udp,
            from,
            to: None,
            sdp,
            headers: Vec::new(),
            credentials: None,
            ring_timeout: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct UacState {
    pub(crate) invite_tx: Option<TxId>,
    pub(crate) cancel_tx: Option<TxId>,
    pub(crate) ring_deadline: Option<Instant>,
    got_provisional: bool,
    /// CANCEL wanted: sent as soon as a provisional arrives (§9.1).
    cancel_requested: bool,
    cancel_sent: bool,
    credentials: Option<Credentials>,
    auth_attempts: u8,
    destination: SocketAddr,
    transport: Transport,
    /// Remote tag of the dialog our first 2xx established.
    answered_tag: Option<String>,
}

impl UacState {
    pub(crate) fn reinvite_pending(&self) -> bool {
        false
    }
}

impl TerminationReason {
    /// Twilio `CallStatus` for a call that ended this way: `completed`, `busy`,
    /// `no-answer`, `failed` or `canceled`.
    pub fn twilio_status(&self) -> &'static str {
        match self {
            TerminationReason::RemoteBye
            | TerminationReason::LocalBye
            | TerminationReason::AckTimeout
            | TerminationReason::SessionExpired => "completed",
            TerminationReason::Cancelled | TerminationReason::LocalCancel => "canceled",
            TerminationReason::Rejected { .. } => "busy",
            TerminationReason::TimedOut => "no-answer",
            TerminationReason::Failed { status, .. } => match status {
                486 | 600 => "busy",
                408 | 480 | 487 => "no-answer",
                603 => "busy",
                _ => "failed",
            },
        }
    }
}

impl UserAgent {
    /// Sends an INVITE. Events for the call follow as `UaOutput::Call`.
    pub fn invite(&mut self, now: Instant, out: OutgoingInvite) -> Result<CallKey, CallError> {
        let local_tag = random_tag();
        let call_id = format!("{}@{}", random_tag(), self.cfg.contact_host);
        let seq = 1 + (rand::random::<u32>() & 0xffff);
        let mut from = out.from.clone();
        from.params.set("tag", Some(&local_tag));
        let to = out
            .to
            .clone()
            .unwrap_or_else(|| NameAddr::new(out.target.clone()));
        let mut req = Request::new(Method::Invite, out.target.clone());
        let h = &mut req.headers;
        h.push(HeaderName::Via, self.our_via(out.transport));
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, from.to_string());
        h.push(HeaderName::To, to.to_string());
        h.push(HeaderName::CallId, call_id.clone());
        h.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Invite,
            }
            .to_string(),
        );
        h.push(HeaderName::Contact, self.contact(out.transport));
        h.push(HeaderName::Allow, ALLOW);
        h.push(HeaderName::Supported, SUPPORTED);
        if self.cfg.session_expires > 0 {
            h.push(
                HeaderName::SessionExpires,
                self.cfg.session_expires.to_string(),
            );
            h.push(HeaderName::MinSe, self.cfg.min_session_expires.to_string());
        }
        if !self.cfg.user_agent.is_empty() {
            h.push(HeaderName::UserAgent, self.cfg.user_agent.clone());
        }
        for (name, value) in &out.headers {
            if name.is_empty() || !name.bytes().all(crate::message::syntax::is_token_char) {
                return Err(CallError::InvalidRequest(format!("header name {name:?}")));
            }
            h.push(HeaderName::parse(name), value.clone());
        }
        h.push(HeaderName::ContentType, "application/sdp");
        req.body = out.sdp.clone().into_bytes();
        let key = self.alloc_call();
        let tx = self
            .txl
            .send_request(now, req.clone(), out.destination, out.transport)?;
        self.by_client_tx.insert(tx, (key, ClientRole::Invite));
        let dialog = Dialog {
            id: DialogId {
                call_id: call_id.clone(),
                local_tag: local_tag.clone(),
                remote_tag: String::new(),
            },
            state: DialogState::Early,
            local_uri: from.to_string(),
            remote_uri: to.to_string(),
            local_seq: seq,
            remote_seq: None,
            remote_target: None,
            route_set: Vec::new(),
        };
        let ring_deadline = out.ring_timeout.map(|d| now + d);
        self.calls.insert(
            key,
            Call {
                direction: CallDirection::Outbound,
                phase: Phase::Early,
                dialog,
                flow: out.destination,
                transport: out.transport,
                invite: req,
                invite_tx: None,
                local_sdp: Some(out.sdp),
                pending_2xx: None,
                hangup_after_ack: false,
                hangup_requested: false,
                termination: None,
                reoffer: None,
                bye_tx: None,
                refresh_tx: None,
                refresh_retry_at: None,
                last_ack: None,
                session: None,
                remote_allows_update: false,
                remote_supports_timer: false,
                pending_session: None,
                remote_origin: None,
                answer_deadline: None,
                uac: Some(UacState {
                    invite_tx: Some(tx),
                    cancel_tx: None,
                    ring_deadline,
                    got_provisional: false,
                    cancel_requested: false,
                    cancel_sent: false,
                    credentials: out.credentials,
                    auth_attempts: 0,
                    destination: out.destination,
                    transport: out.transport,
                    answered_tag: None,
                }),
            },
        );
        self.by_dialog.insert((call_id, local_tag), key);
        self.schedule(key, CallTimer::RingTimeout);
        Ok(key)
    }

    pub(super) fn uac_forget(&mut self, _call: &Call) {}

    pub(super) fn hangup_outbound(&mut self, now: Instant, key: CallKey) -> Result<(), CallError> {
        let call = self.calls.get_mut(&key).ok_or(CallError::NoSuchCall)?;
        match call.phase {
            Phase::Early => {
                call.hangup_requested = true;
                call.termination = Some(TerminationReason::LocalCancel);
                self.request_cancel(now, key);
                Ok(())
            }
            Phase::Answered | Phase::Confirmed => {
                self.start_bye(now, key, TerminationReason::LocalBye, true);
                Ok(())
            }
            Phase::Terminating => Err(CallError::AlreadyTerminating),
        }
    }

    /// Asks for a CANCEL: sent now if a provisional arrived, else when one does (§9.1).
    fn request_cancel(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(uac) = call.uac.as_mut() else { return };
        uac.cancel_requested = true;
        if uac.got_provisional && !uac.cancel_sent {
            self.send_cancel(now, key);
        }
    }

    fn send_cancel(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(uac) = call.uac.as_mut() else { return };
        uac.cancel_sent = true;
        let inv = &call.invite;
        let mut cancel = Request::new(Method::Cancel, inv.uri.clone());
        if let Ok(via) = inv.headers.top_via() {
            cancel.headers.push(HeaderName::Via, via.to_string());
        }
        cancel.headers.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = inv.headers.get(&name) {
                cancel.headers.push(name, v);
            }
        }
        let seq = inv.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Cancel,
            }
            .to_string(),
        );
        for r in inv.headers.get_all(&HeaderName::Route) {
            cancel.headers.push(HeaderName::Route, r);
        }
        let (dest, transport) = (uac.destination, uac.transport);
        // §9.1: if the INVITE gets no final response within 64*T1 of the CANCEL, give up.
        uac.ring_deadline = Some(now + self.cfg.timers.timeout());
        self.schedule(key, CallTimer::RingTimeout);
        match self.txl.send_request(now, cancel, dest, transport) {
            Ok(tx) => {
                if let Some(u) = self.calls.get_mut(&key).and_then(|c| c.uac.as_mut()) {
                    u.cancel_tx = Some(tx);
                }
                self.by_client_tx.insert(tx, (key, ClientRole::Cancel));
            }
            Err(e) => tracing::warn!(error = %e, "CANCEL not sent"),
        }
    }

    pub(super) fn on_ring_timeout(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.phase != Phase::Early {
            return;
        }
        let Some(u) = call.uac.as_mut() else { return };
        u.ring_deadline = None;
        if u.cancel_sent {
            // The INVITE never got its final response after our CANCEL.
            if let Some(tx) = u.invite_tx {
                self.txl.forget(tx);
                self.by_client_tx.remove(&tx);
            }
            let reason = call
                .termination
                .clone()
                .unwrap_or(TerminationReason::LocalCancel);
            if call.hangup_requested {
                self.outputs.push_back(UaOutput::HangupDone {
                    key,
                    outcome: HangupOutcome::Cancelled,
                });
            }
            self.end_call(key, reason);
            return;
        }
        if call.termination.is_none() {
            call.termination = Some(TerminationReason::TimedOut);
        }
        self.request_cancel(now, key);
    }

    /// No final response (Timer B), or the transport failed to carry the INVITE (treated as
    /// a 503 from the next hop, RFC 3261 §8.1.3.1).
    pub(super) fn on_invite_timeout(
        &mut self,
        _now: Instant,
        key: CallKey,
        transport_failed: bool,
    ) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.phase != Phase::Early {
            return;
        }
        if call.hangup_requested {
            self.outputs.push_back(UaOutput::HangupDone {
                key,
                outcome: HangupOutcome::Cancelled,
            });
        }
        let reason = if transport_failed {
            TerminationReason::Failed {
                status: 503,
                reason: "Service Unavailable (transport error)".into(),
            }
        } else {
            TerminationReason::TimedOut
        };
        self.end_call(key, reason);
    }

    pub(super) fn on_invite_response(
        &mut self,
        now: Instant,
        key: CallKey,
        tx: TxId,
        resp: Response,
    ) {
        // Keep receiving: provisional responses and 2xx retransmissions follow.
        if resp.status < 300 {
            self.by_client_tx.insert(tx, (key, ClientRole::Invite));
        }
        if resp.status < 200 {
            self.on_invite_provisional(now, key, resp);
        } else if resp.status < 300 {
            self.on_invite_2xx(now, key, resp);
        } else {
            self.on_invite_failure(now, key, resp);
        }
    }

    fn on_invite_provisional(&mut self, now: Instant, key: CallKey, resp: Response) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.phase != Phase::Early {
            return;
        }
        let Some(uac) = call.uac.as_mut() else { return };
        uac.got_provisional = true;
        let cancel_now = uac.cancel_requested && !uac.cancel_sent;
        if resp.status > 100 && call.dialog.id.remote_tag.is_empty() {
            if let Ok(d) = Dialog::uac(&call.invite, &resp) {
                call.dialog = d;
            }
        }
        if cancel_now {
            self.send_cancel(now, key);
        }
        if resp.status > 100 {
            let sdp = sdp_from_body(&resp.headers, &resp.body).ok().flatten();
            self.emit(
                key,
                CallEvent::Progress {
                    status: resp.status,
                    reason: resp.reason.clone(),
                    sdp,
                },
            );
        }
    }

    fn on_invite_2xx(&mut self, now: Instant, key: CallKey, resp: Response) {
        let Some(transport) = self.calls.get(&key).map(|c| c.transport) else {
            return;
        };
        let via = self.our_via(transport);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let to_tag = resp
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
            .unwrap_or_default();
        let seq = resp.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let Some(uac) = call.uac.as_mut() else { return };
        match &uac.answered_tag {
            Some(tag) if *tag == to_tag => {
                // Retransmission: ACK again.
                if let Some((s, ack)) = call.last_ack.clone() {
                    if s == seq {
                        self.outputs.push_back(UaOutput::Transmit(ack));
                    }
                }
                return;
            }
            Some(_) => {
                // A second 2xx from another fork: ACK it and hang that leg up (§13.2.2.4).
                if let Ok(mut d) = Dialog::uac(&call.invite, &resp) {
                    let ack = d.ack(seq, &via);
                    let dest = if transport.is_reliable() {
                        uac.destination
                    } else {
                        d.next_hop(uac.destination)
                    };
                    let bye = d.new_request(Method::Bye, &self.our_via(transport));
                    self.transmit(dest, transport, ack.to_bytes(), None);
                    if let Err(e) = self.txl.send_request(now, bye, dest, transport) {
                        tracing::debug!(error = %e, "BYE to extra fork not sent");
                    }
                }
                return;
            }
            None => {}
        }
        uac.answered_tag = Some(to_tag);
        uac.ring_deadline = None;
        let cancel_requested = uac.cancel_requested;
        let Ok(dialog) = Dialog::uac(&call.invite, &resp) else {
            tracing::warn!("2xx without To tag; cannot establish the dialog");
            return;
        };
        call.dialog = dialog;
        let ack = call.dialog.ack(seq, &via);
        let ack = Transmit {
            to: call.next_hop(),
            transport,
            data: Bytes::from(ack.to_bytes()),
            tx: None,
        };
        call.last_ack = Some((seq, ack.clone()));
        call.phase = Phase::Confirmed;
        call.remote_allows_update = resp.headers.list_contains(&HeaderName::Allow, "UPDATE");
        call.remote_supports_timer = resp
            .headers
            .list_contains(&HeaderName::Supported, SUPPORTED)
            || resp.headers.list_contains(&HeaderName::Require, SUPPORTED);
        let sdp = sdp_from_body(&resp.headers, &resp.body).ok().flatten();
        let session = resp.headers.session_expires().ok().flatten();
        self.outputs.push_back(UaOutput::Transmit(ack));
        self.emit(key, CallEvent::Answered { sdp });
        if let Some(se) = session {
            // We are the UAC of the INVITE: refresher=uac means us.
            let we_refresh = se.refresher.as_deref() != Some("uas");
            self.arm_session(now, key, se.delta_seconds, we_refresh);
        }
        if cancel_requested {
            // Our CANCEL lost the race with the 2xx: hang up properly.
            let reason = self
                .calls
                .get(&key)
                .and_then(|c| c.termination.clone())
                .unwrap_or(TerminationReason::LocalBye);
            let requested = self.calls.get(&key).is_some_and(|c| c.hangup_requested);
            self.start_bye(now, key, reason, requested);
        }
    }

    fn on_invite_failure(&mut self, now: Instant, key: CallKey, resp: Response) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.phase != Phase::Early {
            return;
        }
        if (resp.status == 401 || resp.status == 407) && self.retry_with_auth(now, key, &resp) {
            return;
        }
        if resp.status == 422 && self.retry_with_min_se(now, key, &resp) {
            return;
        }
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let reason = match (&call.termination, resp.status) {
            (Some(TerminationReason::LocalCancel), 487) => TerminationReason::LocalCancel,
            (Some(TerminationReason::TimedOut), 487) => TerminationReason::TimedOut,
            _ => TerminationReason::Failed {
                status: resp.status,
                reason: resp.reason.clone(),
            },
        };
        if call.hangup_requested {
            self.outputs.push_back(UaOutput::HangupDone {
                key,
                outcome: HangupOutcome::Cancelled,
            });
        }
        self.end_call(key, reason);
    }

    /// Resends the INVITE with credentials. `false` when we cannot or should not.
    /// RFC 4028 §7.4: a 422 tells the smallest interval the callee accepts; ask again.
    fn retry_with_min_se(&mut self, now: Instant, key: CallKey, resp: &Response) -> bool {
        let Some(min) = resp.headers.min_se().ok().flatten() else {
            return false;
        };
        self.resend_invite(now, key, |req| {
            req.headers.set(HeaderName::SessionExpires, min.to_string());
            req.headers.set(HeaderName::MinSe, min.to_string());
        })
    }

    fn retry_with_auth(&mut self, now: Instant, key: CallKey, resp: &Response) -> bool {
        let Some(creds) = self
            .calls
            .get(&key)
            .and_then(|c| c.uac.as_ref())
            .and_then(|u| u.credentials.clone())
        else {
            return false;
        };
        let (challenge_header, answer_header) = if resp.status == 407 {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let Some(challenge) = Challenge::best(resp.headers.get_all(&challenge_header)) else {
            return false;
        };
        let uri = self
            .calls
            .get(&key)
            .map(|c| c.invite.uri.to_string())
            .unwrap_or_default();
        let cnonce = random_tag();
        let value = challenge.respond("INVITE", &uri, &creds.username, &creds.password, &cnonce, 1);
        self.resend_invite(now, key, |req| req.headers.set(answer_header, value))
    }

    /// Sends the INVITE again (new branch, next CSeq, same Call-ID and tag) after `change`.
    /// At most two retries per call; never once a CANCEL is wanted.
    fn resend_invite(
        &mut self,
        now: Instant,
        key: CallKey,
        change: impl FnOnce(&mut Request),
    ) -> bool {
        let Some(transport) = self.calls.get(&key).map(|c| c.transport) else {
            return false;
        };
        let via = self.our_via(transport);
        let Some(call) = self.calls.get_mut(&key) else {
            return false;
        };
        let Some(uac) = call.uac.as_mut() else {
            return false;
        };
        if uac.auth_attempts >= 2 || uac.cancel_requested {
            return false;
        }
        uac.auth_attempts += 1;
        let destination = uac.destination;
        let mut req = call.invite.clone();
        let seq = req.headers.cseq().map(|c| c.seq + 1).unwrap_or(1);
        req.headers.set(HeaderName::Via, via);
        req.headers.set(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: Method::Invite,
            }
            .to_string(),
        );
        change(&mut req);
        call.dialog.local_seq = seq;
        match self
            .txl
            .send_request(now, req.clone(), destination, transport)
        {
            Ok(tx) => {
                if let Some(c) = self.calls.get_mut(&key) {
                    c.invite = req;
                    if let Some(u) = c.uac.as_mut() {
                        u.invite_tx = Some(tx);
                        u.got_provisional = false;
                    }
                }
                self.by_client_tx.insert(tx, (key, ClientRole::Invite));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "authenticated INVITE not sent");
                false
            }
        }
    }
}

//! UAS behaviour of the UA core: request dispatch and policy checks, new INVITEs, CANCEL,
//! in-dialog requests (BYE, INFO, OPTIONS, re-INVITE, UPDATE), ACK, and the inbound-call
//! commands (`ringing`, `answer`, `reject`, `hangup`, `respond_to_reoffer`).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::Pending2xx;
use super::{
    random_tag, Call, CallDirection, CallError, CallEvent, CallKey, CallTimer, HangupOutcome,
    InboundCall, InviteKey, Phase, RecentInvite, Reoffer, ReofferAnswer, TerminationReason,
    UaOutput, UserAgent, ALLOW, SUPPORTED,
};
use crate::dialog::{Dialog, DialogState};
use crate::message::{
    find_body_part, media_type_of, response_from_request, HeaderName, Method, Request, Response,
    Uri,
};
use crate::sdp::SessionDescription;
use crate::transaction::{Transport, TxId};

/// A request whose body we cannot use: the status and headers to answer with.
pub(super) struct BodyProblem {
    status: u16,
    reason: String,
    headers: Vec<(HeaderName, String)>,
}

/// The SDP of a request or response body (also inside multipart bodies). `Ok(None)` when
/// there is no body.
pub(super) fn sdp_from_body(
    headers: &crate::message::Headers,
    body: &[u8],
) -> Result<Option<String>, BodyProblem> {
    if let Some(enc) = headers.get(&HeaderName::ContentEncoding) {
        if !enc.trim().eq_ignore_ascii_case("identity") {
            return Err(BodyProblem {
                status: 415,
                reason: "Unsupported Content-Encoding".into(),
                headers: vec![(HeaderName::AcceptEncoding, "identity".into())],
            });
        }
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let ct = headers
        .get(&HeaderName::ContentType)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // No Content-Type with a body: accept it if it looks like SDP.
            if body.starts_with(b"v=") {
                "application/sdp".into()
            } else {
                String::new()
            }
        });
    let Some(part) = find_body_part(&ct, body, "application/sdp") else {
        return Err(BodyProblem {
            status: 415,
            reason: format!("Unsupported Media Type ({})", media_type_of(&ct)),
            headers: vec![(HeaderName::Accept, "application/sdp".into())],
        });
    };
    match String::from_utf8(part) {
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(BodyProblem {
            status: 400,
            reason: "Bad Request (SDP is not UTF-8)".into(),
            headers: Vec::new(),
        }),
    }
}

fn accepts_sdp(req: &Request) -> bool {
    let list = req.headers.list(&HeaderName::Accept);
    if !req.headers.contains(&HeaderName::Accept) || list.iter().all(|a| a.is_empty()) {
        return true;
    }
    list.iter().any(|a| {
        let m = media_type_of(a);
        m == "application/sdp" || m == "application/*" || m == "*/*"
    })
}

fn origin_of(sdp: &str) -> Option<String> {
    SessionDescription::parse(sdp).ok().and_then(|s| s.origin)
}

impl UserAgent {
    /// A request that created a server transaction (everything but ACK).
    pub(super) fn dispatch_request(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        // §8.2.1 method inspection.
        match &req.method {
            Method::Invite
            | Method::Bye
            | Method::Cancel
            | Method::Options
            | Method::Info
            | Method::Update => {}
            Method::Extension(_) => {
                self.respond_simple(
                    now,
                    tx,
                    &req,
                    501,
                    None,
                    &[(HeaderName::Allow, ALLOW.into())],
                );
                return;
            }
            _ => {
                self.respond_simple(
                    now,
                    tx,
                    &req,
                    405,
                    None,
                    &[(HeaderName::Allow, ALLOW.into())],
                );
                return;
            }
        }
        // §8.2.2.1 Request-URI scheme.
        if !matches!(req.uri, Uri::Sip(_) | Uri::Tel(_)) {
            self.respond_simple(now, tx, &req, 416, None, &[]);
            return;
        }
        // §8.2.2.3 Require.
        if req.method != Method::Cancel {
            let unsupported: Vec<&str> = req
                .headers
                .list(&HeaderName::Require)
                .into_iter()
                .filter(|o| !o.is_empty() && !o.eq_ignore_ascii_case(SUPPORTED))
                .collect();
            if !unsupported.is_empty() {
                let list = unsupported.join(", ");
                self.respond_simple(now, tx, &req, 420, None, &[(HeaderName::Unsupported, list)]);
                return;
            }
        }
        if req.method == Method::Cancel {
            self.on_cancel(now, tx, req);
            return;
        }
        let to_tag = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if let Some(tag) = to_tag {
            self.on_in_dialog(now, tx, req, tag);
            return;
        }
        match req.method {
            Method::Invite => self.on_new_invite(now, tx, req, source, transport),
            Method::Options => self.respond_options(now, tx, &req),
            _ => self.respond_simple(now, tx, &req, 481, None, &[]),
        }
    }

    fn respond_options(&mut self, now: Instant, tx: TxId, req: &Request) {
        self.respond_simple(
            now,
            tx,
            req,
            200,
            None,
            &[
                (HeaderName::Allow, ALLOW.into()),
                (HeaderName::Accept, "application/sdp".into()),
                (HeaderName::Supported, SUPPORTED.into()),
            ],
        );
    }

    fn respond_problem(&mut self, now: Instant, tx: TxId, req: &Request, p: BodyProblem) {
        self.respond_simple(now, tx, req, p.status, Some(&p.reason), &p.headers);
    }

    fn remember_invite(&mut self, now: Instant, key: InviteKey, branch: String) {
        let expires = now + self.cfg.timers.timeout() * 2;
        self.recent_invites
            .insert(key.clone(), RecentInvite { branch, expires });
        self.recent_order.push_back((expires, key));
    }

    /// Keeps absorbing late copies of a call's INVITE for 64*T1 after its final response.
    fn extend_recent_invite(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let h = &call.invite.headers;
        let (Ok(from), Ok(cseq), Ok(call_id)) = (h.from(), h.cseq(), h.call_id()) else {
            return;
        };
        let ikey = InviteKey {
            call_id: call_id.to_owned(),
            from_tag: from.tag().unwrap_or("").to_owned(),
            cseq: cseq.seq,
        };
        // Twice 64*T1: a UAC gives up retransmitting well before that.
        let expires = now + self.cfg.timers.timeout() * 2;
        if let Some(r) = self.recent_invites.get_mut(&ikey) {
            r.expires = expires;
            self.recent_order.push_back((expires, ikey));
        }
    }

    /// Session parameters (interval, we refresh) asked for by a request, or the 422 to
    /// answer. `current` is kept when a refresh carries no Session-Expires but the peer
    /// supports timers.
    fn session_from_request(
        &self,
        req: &Request,
        current: Option<(u32, bool)>,
    ) -> Result<Option<(u32, bool)>, u32> {
        let supports = req.headers.list_contains(&HeaderName::Supported, SUPPORTED);
        match req.headers.session_expires() {
            Ok(Some(se)) => {
                let min = self
                    .cfg
                    .min_session_expires
                    .max(req.headers.min_se().ok().flatten().unwrap_or(0));
                if se.delta_seconds < self.cfg.min_session_expires {
                    return Err(min);
                }
                // We are the UAS of this transaction: "uac" is the peer.
                let we_refresh = match se.refresher.as_deref() {
                    Some("uas") => true,
                    Some("uac") => false,
                    _ => !supports,
                };
                Ok(Some((se.delta_seconds, we_refresh)))
            }
            Ok(None) | Err(_) => Ok(if supports { current } else { None }),
        }
    }

    fn session_headers(resp: &mut Response, session: Option<(u32, bool)>, peer_supports: bool) {
        if let Some((interval, we_refresh)) = session {
            let who = if we_refresh { "uas" } else { "uac" };
            resp.headers.push(
                HeaderName::SessionExpires,
                format!("{interval};refresher={who}"),
            );
            if peer_supports {
                resp.headers.push(HeaderName::Require, SUPPORTED);
            }
        }
    }

    /// A new INVITE, already admitted by overload control (`UserAgent::admit`).
    fn on_new_invite(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let (Ok(from), Ok(to), Ok(cseq), Ok(call_id), Ok(via)) = (
            req.headers.from(),
            req.headers.to(),
            req.headers.cseq(),
            req.headers.call_id(),
            req.headers.top_via(),
        ) else {
            self.respond_simple(now, tx, &req, 400, None, &[]);
            return;
        };
        let branch = via.branch().unwrap_or("").to_owned();
        let ikey = InviteKey {
            call_id: call_id.to_owned(),
            from_tag: from.tag().unwrap_or("").to_owned(),
            cseq: cseq.seq,
        };
        if let Some(recent) = self.recent_invites.get(&ikey) {
            if recent.branch == branch {
                // A retransmission arriving after its transaction ended: absorb it.
                self.stats.absorbed_invites += 1;
                self.txl.forget(tx);
            } else {
                // §8.2.2.2: the same request reached us twice by different paths.
                self.respond_simple(now, tx, &req, 482, None, &[]);
            }
            return;
        }
        let offer = match sdp_from_body(&req.headers, &req.body) {
            Ok(o) => o,
            Err(p) => {
                self.respond_problem(now, tx, &req, p);
                return;
            }
        };
        if !accepts_sdp(&req) {
            self.respond_simple(
                now,
                tx,
                &req,
                406,
                None,
                &[(
                    HeaderName::Warning,
                    format!(
                        "399 {} \"Incompatible Accept header\"",
                        self.cfg.contact_host
                    ),
                )],
            );
            return;
        }
        let session = match self.session_from_request(&req, None) {
            Ok(s) => s,
            Err(min) => {
                self.respond_simple(
                    now,
                    tx,
                    &req,
                    422,
                    None,
                    &[(HeaderName::MinSe, min.to_string())],
                );
                return;
            }
        };
        let local_tag = random_tag();
        let dialog = match Dialog::uas(&req, &local_tag) {
            Ok(d) => d,
            Err(e) => {
                self.respond_simple(now, tx, &req, 400, Some(&format!("Bad Request ({e})")), &[]);
                return;
            }
        };
        let key = self.alloc_call();
        let call = Call {
            direction: CallDirection::Inbound,
            phase: Phase::Early,
            dialog,
            flow: source,
            transport,
            invite: req.clone(),
            invite_tx: Some(tx),
            local_sdp: None,
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
            remote_allows_update: req.headers.list_contains(&HeaderName::Allow, "UPDATE"),
            remote_supports_timer: req.headers.list_contains(&HeaderName::Supported, SUPPORTED),
            pending_session: session,
            remote_origin: offer.as_deref().and_then(origin_of),
            answer_deadline: Some(now + self.cfg.unanswered_timeout),
            uac: None,
        };
        self.by_dialog.insert((call_id.to_owned(), local_tag), key);
        self.by_server_tx.insert(tx, key);
        self.calls.insert(key, call);
        self.remember_invite(now, ikey, branch);
        self.schedule(key, CallTimer::AnswerTimeout);
        let mut trying = response_from_request(&req, 100, None, None);
        self.add_server_header(&mut trying);
        self.respond_tx(now, tx, &trying);
        self.outputs
            .push_back(UaOutput::IncomingCall(Box::new(InboundCall {
                key,
                call_id: call_id.to_owned(),
                from,
                to,
                request_uri: req.uri.clone(),
                source,
                transport,
                sdp_offer: offer,
                invite: req,
            })));
    }

    /// A response to the initial INVITE of an inbound call, carrying our tag.
    fn invite_response(
        &self,
        call: &Call,
        status: u16,
        reason: Option<&str>,
        sdp: Option<&str>,
    ) -> Response {
        let mut resp = response_from_request(
            &call.invite,
            status,
            reason,
            Some(&call.dialog.id.local_tag),
        );
        if status < 300 {
            for rr in call.invite.headers.get_all(&HeaderName::RecordRoute) {
                resp.headers.push(HeaderName::RecordRoute, rr);
            }
            resp.headers
                .push(HeaderName::Contact, self.contact(call.transport));
            resp.headers.push(HeaderName::Allow, ALLOW);
            resp.headers.push(HeaderName::Supported, SUPPORTED);
        }
        self.add_server_header(&mut resp);
        if let Some(sdp) = sdp {
            resp.headers
                .push(HeaderName::ContentType, "application/sdp");
            resp.body = sdp.as_bytes().to_vec();
        }
        resp
    }

    fn inbound_early(&self, key: CallKey) -> Result<(&Call, TxId), CallError> {
        let call = self.calls.get(&key).ok_or(CallError::NoSuchCall)?;
        if call.direction != CallDirection::Inbound {
            return Err(CallError::WrongDirection("inbound"));
        }
        if call.phase != Phase::Early {
            return Err(CallError::AlreadyFinal);
        }
        let tx = call.invite_tx.ok_or(CallError::AlreadyFinal)?;
        if self.txl.has_final(tx) {
            return Err(CallError::AlreadyFinal);
        }
        Ok((call, tx))
    }

    /// 180 Ringing, or 183 Session Progress with early-media SDP.
    pub fn ringing(
        &mut self,
        now: Instant,
        key: CallKey,
        sdp: Option<String>,
    ) -> Result<(), CallError> {
        let (call, tx) = self.inbound_early(key)?;
        let status = if sdp.is_some() { 183 } else { 180 };
        let resp = self.invite_response(call, status, None, sdp.as_deref());
        self.txl.send_response(now, tx, &resp)?;
        if let Some(c) = self.calls.get_mut(&key) {
            if sdp.is_some() {
                c.local_sdp = sdp;
            }
        }
        Ok(())
    }

    /// 200 OK with our SDP answer; retransmitted until the ACK arrives.
    pub fn answer(&mut self, now: Instant, key: CallKey, sdp: String) -> Result<(), CallError> {
        let (call, tx) = self.inbound_early(key)?;
        let mut resp = self.invite_response(call, 200, None, Some(&sdp));
        self.extend_recent_invite(now, key);
        let call = self.calls.get(&key).ok_or(CallError::NoSuchCall)?;
        Self::session_headers(&mut resp, call.pending_session, call.remote_supports_timer);
        let seq = call.invite.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let session = call.pending_session;
        let (dest, transport) = self
            .txl
            .destination(tx)
            .unwrap_or((call.flow, call.transport));
        self.txl.send_response(now, tx, &resp)?;
        let t1 = self.cfg.timers.t1;
        let give_up = now + self.cfg.timers.timeout();
        if let Some(c) = self.calls.get_mut(&key) {
            c.phase = Phase::Answered;
            c.dialog.state = DialogState::Confirmed;
            c.local_sdp = Some(sdp);
            c.pending_2xx = Some(Pending2xx {
                cseq: seq,
                initial: true,
                bytes: Bytes::from(resp.to_bytes()),
                dest,
                transport,
                interval: t1,
                next: now + t1,
                give_up,
            });
        }
        self.schedule(key, CallTimer::Retransmit2xx);
        if let Some((interval, we_refresh)) = session {
            self.arm_session(now, key, interval, we_refresh);
        }
        Ok(())
    }

    /// A final error (300–699) to an unanswered inbound call.
    pub fn reject(
        &mut self,
        now: Instant,
        key: CallKey,
        status: u16,
        reason: Option<&str>,
    ) -> Result<(), CallError> {
        if !(300..=699).contains(&status) {
            return Err(CallError::InvalidStatus(status));
        }
        let (call, tx) = self.inbound_early(key)?;
        let mut resp = self.invite_response(call, status, reason, None);
        if status == 503 {
            resp.headers.push(HeaderName::RetryAfter, "5");
        }
        self.txl.send_response(now, tx, &resp)?;
        self.extend_recent_invite(now, key);
        self.end_call(key, TerminationReason::Rejected { status });
        Ok(())
    }

    /// Ends an inbound call: BYE when answered (after the ACK if it has not arrived yet),
    /// 603 Decline when not answered yet. Outbound calls: CANCEL or BYE.
    pub fn hangup(&mut self, now: Instant, key: CallKey) -> Result<(), CallError> {
        let call = self.calls.get_mut(&key).ok_or(CallError::NoSuchCall)?;
        if call.direction == CallDirection::Outbound {
            return self.hangup_outbound(now, key);
        }
        match call.phase {
            Phase::Early => {
                self.reject(now, key, 603, None)?;
                self.outputs.push_back(UaOutput::HangupDone {
                    key,
                    outcome: HangupOutcome::Rejected { status: 603 },
                });
                Ok(())
            }
            Phase::Answered => {
                call.hangup_after_ack = true;
                call.hangup_requested = true;
                Ok(())
            }
            Phase::Confirmed => {
                self.start_bye(now, key, TerminationReason::LocalBye, true);
                Ok(())
            }
            Phase::Terminating => Err(CallError::AlreadyTerminating),
        }
    }

    /// Answers the pending re-INVITE/UPDATE.
    pub fn respond_to_reoffer(
        &mut self,
        now: Instant,
        key: CallKey,
        answer: ReofferAnswer,
    ) -> Result<(), CallError> {
        let transport = self.calls.get(&key).ok_or(CallError::NoSuchCall)?.transport;
        let contact = self.contact(transport);
        let call = self.calls.get_mut(&key).ok_or(CallError::NoSuchCall)?;
        if let ReofferAnswer::Reject { status, .. } = &answer {
            if !(300..=699).contains(status) {
                return Err(CallError::InvalidStatus(*status));
            }
        }
        let reoffer = call.reoffer.take().ok_or(CallError::NoPendingReoffer)?;
        let flow = call.flow;
        self.by_server_tx.remove(&reoffer.tx);
        let req = &reoffer.request;
        match answer {
            ReofferAnswer::Accept { sdp } => {
                // No SDP from the app: keep ours, when an SDP is due (an INVITE always needs
                // one in its 2xx; an UPDATE only when it carried an offer).
                let had_offer = !req.body.is_empty();
                let sdp = sdp.or_else(|| {
                    (req.method == Method::Invite || had_offer)
                        .then(|| call.local_sdp.clone())
                        .flatten()
                });
                // An answer to an offer gets the direction the offer allows (hold, unhold)
                // and the right o= version, whatever SDP the app handed us.
                let offer = sdp_from_body(&req.headers, &req.body).ok().flatten();
                let sdp = match (sdp, &offer) {
                    (Some(ours), Some(offer)) => Some(crate::sdp::answer_for_reoffer(
                        offer,
                        &ours,
                        call.local_sdp.as_deref(),
                    )),
                    (sdp, _) => sdp,
                };
                let session = call.pending_session;
                let mut resp = response_from_request(req, 200, None, None);
                resp.headers.push(HeaderName::Contact, contact);
                resp.headers.push(HeaderName::Allow, ALLOW);
                resp.headers.push(HeaderName::Supported, SUPPORTED);
                Self::session_headers(&mut resp, session, call.remote_supports_timer);
                if let Some(sdp) = &sdp {
                    resp.headers
                        .push(HeaderName::ContentType, "application/sdp");
                    resp.body = sdp.as_bytes().to_vec();
                    call.local_sdp = Some(sdp.clone());
                }
                if let Some(offer) = sdp_from_body(&req.headers, &req.body).ok().flatten() {
                    call.remote_origin = origin_of(&offer);
                }
                self.add_server_header(&mut resp);
                let is_invite = req.method == Method::Invite;
                let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
                let (dest, transport) = self
                    .txl
                    .destination(reoffer.tx)
                    .unwrap_or((flow, transport));
                self.txl.send_response(now, reoffer.tx, &resp)?;
                if is_invite {
                    let t1 = self.cfg.timers.t1;
                    let give_up = now + self.cfg.timers.timeout();
                    if let Some(c) = self.calls.get_mut(&key) {
                        c.pending_2xx = Some(Pending2xx {
                            cseq: seq,
                            initial: false,
                            bytes: Bytes::from(resp.to_bytes()),
                            dest,
                            transport,
                            interval: t1,
                            next: now + t1,
                            give_up,
                        });
                    }
                    self.schedule(key, CallTimer::Retransmit2xx);
                }
                match session {
                    Some((interval, we_refresh)) => {
                        self.arm_session(now, key, interval, we_refresh)
                    }
                    None => {
                        if let Some(c) = self.calls.get_mut(&key) {
                            c.session = None;
                        }
                    }
                }
            }
            ReofferAnswer::Reject { status, reason } => {
                let mut resp = response_from_request(req, status, reason.as_deref(), None);
                self.add_server_header(&mut resp);
                self.txl.send_response(now, reoffer.tx, &resp)?;
            }
        }
        Ok(())
    }

    pub(super) fn on_ack(&mut self, now: Instant, req: Request) {
        let (Ok(to), Ok(call_id), Ok(cseq)) =
            (req.headers.to(), req.headers.call_id(), req.headers.cseq())
        else {
            return;
        };
        let Some(tag) = to.tag() else { return };
        let Some(&key) = self.by_dialog.get(&(call_id.to_owned(), tag.to_owned())) else {
            tracing::debug!(call_id, "ACK for no dialog dropped");
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(p) = call.pending_2xx.as_ref() else {
            return;
        };
        if p.cseq != cseq.seq {
            return;
        }
        let initial = p.initial;
        call.pending_2xx = None;
        let sdp = sdp_from_body(&req.headers, &req.body).ok().flatten();
        if let Some(s) = &sdp {
            call.remote_origin = origin_of(s);
        }
        if initial {
            call.phase = Phase::Confirmed;
            let then_bye = call.hangup_after_ack;
            self.emit(key, CallEvent::Acked { sdp });
            if then_bye {
                self.start_bye(now, key, TerminationReason::LocalBye, true);
            }
        } else {
            self.emit(key, CallEvent::ReInviteAcked { sdp });
        }
    }

    pub(super) fn on_retransmit_2xx(&mut self, now: Instant, key: CallKey) {
        let t2 = self.cfg.timers.t2;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(p) = call.pending_2xx.as_mut() else {
            return;
        };
        if now >= p.give_up {
            let initial = p.initial;
            call.pending_2xx = None;
            let requested = call.hangup_after_ack;
            tracing::info!(call = key.0, "no ACK for our 2xx within 64*T1");
            if initial {
                self.emit(key, CallEvent::AckTimeout);
            }
            self.start_bye(now, key, TerminationReason::AckTimeout, requested);
            return;
        }
        let transmit = crate::transaction::Transmit {
            to: p.dest,
            transport: p.transport,
            data: p.bytes.clone(),
            tx: None,
        };
        p.interval = (p.interval * 2).min(t2);
        p.next = (p.next + p.interval).min(p.give_up);
        self.outputs.push_back(UaOutput::Transmit(transmit));
        self.schedule(key, CallTimer::Retransmit2xx);
    }

    pub(super) fn on_reoffer_timeout(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(r) = call.reoffer.take() else { return };
        self.by_server_tx.remove(&r.tx);
        tracing::warn!(
            call = key.0,
            "app did not answer a re-INVITE/UPDATE in time; 500"
        );
        self.respond_simple(
            now,
            r.tx,
            &r.request,
            500,
            Some("Server Internal Error (offer not answered in time)"),
            &[(HeaderName::RetryAfter, "5".into())],
        );
    }

    fn on_cancel(&mut self, now: Instant, tx: TxId, req: Request) {
        let Some(inv_tx) = self.txl.find_invite_for_cancel(&req) else {
            self.respond_simple(now, tx, &req, 481, None, &[]);
            return;
        };
        let key = self.by_server_tx.get(&inv_tx).copied();
        let tag = key
            .and_then(|k| self.calls.get(&k))
            .map(|c| c.dialog.id.local_tag.clone())
            .unwrap_or_else(random_tag);
        let mut ok = response_from_request(&req, 200, None, Some(&tag));
        self.add_server_header(&mut ok);
        self.respond_tx(now, tx, &ok);
        let Some(key) = key else { return };
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.invite_tx == Some(inv_tx)
            && call.phase == Phase::Early
            && !self.txl.has_final(inv_tx)
        {
            let resp = self.invite_response(call, 487, None, None);
            self.respond_tx(now, inv_tx, &resp);
            self.extend_recent_invite(now, key);
            self.emit(key, CallEvent::Cancelled);
            self.end_call(key, TerminationReason::Cancelled);
        } else if call.reoffer.as_ref().is_some_and(|r| r.tx == inv_tx) {
            if let Some(r) = self.calls.get_mut(&key).and_then(|c| c.reoffer.take()) {
                self.by_server_tx.remove(&r.tx);
                self.respond_simple(now, r.tx, &r.request, 487, None, &[]);
            }
        }
    }

    fn on_in_dialog(&mut self, now: Instant, tx: TxId, req: Request, to_tag: String) {
        let call_id = req.headers.call_id().unwrap_or_default().to_owned();
        let from_tag = req
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        let key = self.by_dialog.get(&(call_id, to_tag)).copied();
        let Some(key) = key.filter(|k| {
            self.calls
                .get(k)
                .is_some_and(|c| c.dialog.id.remote_tag == from_tag)
        }) else {
            self.respond_simple(now, tx, &req, 481, None, &[]);
            return;
        };
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Err(e) = call.dialog.check_remote_cseq(seq) {
            self.respond_simple(
                now,
                tx,
                &req,
                500,
                Some(&format!("Server Internal Error ({e})")),
                &[],
            );
            return;
        }
        if call.phase == Phase::Terminating && req.method != Method::Bye {
            self.respond_simple(now, tx, &req, 481, None, &[]);
            return;
        }
        match req.method {
            Method::Bye => self.on_bye(now, tx, key, req),
            Method::Info => {
                self.respond_simple(now, tx, &req, 200, None, &[]);
                let content_type = req.headers.get(&HeaderName::ContentType).map(str::to_owned);
                self.emit(
                    key,
                    CallEvent::Info {
                        content_type,
                        body: req.body,
                    },
                );
            }
            Method::Options => self.respond_options(now, tx, &req),
            Method::Invite | Method::Update => self.on_reoffer(now, tx, key, req),
            _ => self.respond_simple(
                now,
                tx,
                &req,
                501,
                None,
                &[(HeaderName::Allow, ALLOW.into())],
            ),
        }
    }

    fn on_bye(&mut self, now: Instant, tx: TxId, key: CallKey, req: Request) {
        self.respond_simple(now, tx, &req, 200, None, &[]);
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        // §15.1.2: a BYE before our final response ends the INVITE with 487.
        if call.direction == CallDirection::Inbound && call.phase == Phase::Early {
            if let Some(inv_tx) = call.invite_tx {
                let resp = self.invite_response(call, 487, None, None);
                self.respond_tx(now, inv_tx, &resp);
            }
        }
        if let Some(r) = self.calls.get_mut(&key).and_then(|c| c.reoffer.take()) {
            self.by_server_tx.remove(&r.tx);
            self.respond_simple(now, r.tx, &r.request, 487, None, &[]);
        }
        let crossed = self
            .calls
            .get(&key)
            .is_some_and(|c| c.phase == Phase::Terminating && c.hangup_requested);
        if crossed {
            self.outputs.push_back(UaOutput::HangupDone {
                key,
                outcome: HangupOutcome::RemoteHungUp,
            });
        }
        self.emit(key, CallEvent::ByeReceived);
        self.end_call(key, TerminationReason::RemoteBye);
    }

    fn on_reoffer(&mut self, now: Instant, tx: TxId, key: CallKey, req: Request) {
        let retry_after = (rand::random::<u32>() % 10).to_string();
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let is_invite = req.method == Method::Invite;
        if is_invite && call.direction == CallDirection::Inbound && call.phase == Phase::Early {
            // §14.2: a second INVITE before our final response to the first.
            self.respond_simple(
                now,
                tx,
                &req,
                500,
                None,
                &[(HeaderName::RetryAfter, retry_after)],
            );
            return;
        }
        if call.reoffer.is_some() {
            self.respond_simple(
                now,
                tx,
                &req,
                500,
                None,
                &[(HeaderName::RetryAfter, retry_after)],
            );
            return;
        }
        if call.refresh_tx.is_some() || call.uac.as_ref().is_some_and(|u| u.reinvite_pending()) {
            // Glare: our own offer is in progress.
            self.respond_simple(now, tx, &req, 491, None, &[]);
            return;
        }
        let offer = match sdp_from_body(&req.headers, &req.body) {
            Ok(o) => o,
            Err(p) => {
                self.respond_problem(now, tx, &req, p);
                return;
            }
        };
        let current = call.session.as_ref().map(|s| (s.interval, s.we_refresh));
        let session = match self.session_from_request(&req, current) {
            Ok(s) => s,
            Err(min) => {
                self.respond_simple(
                    now,
                    tx,
                    &req,
                    422,
                    None,
                    &[(HeaderName::MinSe, min.to_string())],
                );
                return;
            }
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        // A new INVITE on the dialog means the ACK of our previous 2xx was sent (and lost).
        if is_invite {
            if let Some(p) = call.pending_2xx.take() {
                if p.initial {
                    call.phase = Phase::Confirmed;
                    self.emit(key, CallEvent::Acked { sdp: None });
                }
            }
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.dialog
            .refresh_target(req.headers.contact_uri().ok().flatten());
        call.pending_session = session;
        if req.headers.list_contains(&HeaderName::Supported, SUPPORTED) {
            call.remote_supports_timer = true;
        }
        let unchanged = offer
            .as_deref()
            .and_then(origin_of)
            .is_some_and(|o| call.remote_origin.as_deref() == Some(o.as_str()));
        let deadline = now + self.cfg.reoffer_timeout;
        call.reoffer = Some(Reoffer {
            tx,
            request: req,
            deadline,
        });
        self.by_server_tx.insert(tx, key);
        if offer.is_none() && !is_invite {
            // An UPDATE without body is a pure session refresh.
            let _ = self.respond_to_reoffer(now, key, ReofferAnswer::Accept { sdp: None });
            return;
        }
        if unchanged {
            // Same session version (RFC 3264 §8): a refresh; answer as before.
            let sdp = self.calls.get(&key).and_then(|c| c.local_sdp.clone());
            if sdp.is_some() {
                let _ = self.respond_to_reoffer(now, key, ReofferAnswer::Accept { sdp });
                return;
            }
        }
        self.schedule(key, CallTimer::Reoffer);
        if is_invite {
            if let Some(r) = self.calls.get(&key).and_then(|c| c.reoffer.as_ref()) {
                let mut trying = response_from_request(&r.request, 100, None, None);
                self.add_server_header(&mut trying);
                self.respond_tx(now, tx, &trying);
            }
        }
        let method = if is_invite {
            Method::Invite
        } else {
            Method::Update
        };
        self.emit(key, CallEvent::ReInvite { sdp: offer, method });
    }
}

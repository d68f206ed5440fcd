//! The edge role: turns SIP INVITEs for provisioned numbers into calls. It routes by the
//! dialed number, negotiates media, writes `call.initiated`/`call.ringing`, and starts the
//! call's task on this node (which then owns the call for its lifetime).

use std::sync::Arc;
use std::time::Instant;

use dialtone_events::payload::{
    CallApplication, CallInitiated, CallRinging, CallStatus, Direction,
};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_projections::numbers::normalize_e164;
use dialtone_sip::endpoint::IncomingCall;
use dialtone_sip::message::NameAddr;
use dialtone_sip::sdp::{self, LocalMedia};
use dialtone_voice::interpreter::{CallContext, Interpreter};
use tokio::sync::mpsc;

use crate::roles::call::{self, CallSetup};
use crate::roles::node::Node;

/// The edge: accepts calls for this node.
pub struct Edge {
    pub node: Arc<Node>,
    /// Numbers reachable from any source when inbound trunks are configured.
    pub open_numbers: Vec<String>,
}

impl Edge {
    /// Accepts calls until the endpoint stops.
    pub async fn run(self: Arc<Self>, mut incoming: mpsc::Receiver<IncomingCall>) {
        while let Some(call) = incoming.recv().await {
            let edge = self.clone();
            tokio::spawn(async move { edge.accept(call).await });
        }
    }

    async fn accept(&self, incoming: IncomingCall) {
        let invited_at = Instant::now();
        metrics::counter!("dialtone_sip_invites_total").increment(1);
        // Another node seating its caller in a conference room this node holds.
        if crate::roles::room_link::is_link(&incoming) {
            crate::roles::room_link::accept(self.node.clone(), incoming).await;
            return;
        }
        let dialed = dialed_number(&incoming);
        let Some(route) = dialed.as_deref().and_then(|n| self.node.numbers.lookup(n)) else {
            tracing::info!(to = %incoming.request_uri, from = %incoming.from.uri, "no such number: 404");
            metrics::counter!("dialtone_calls_rejected_total", "reason" => "unknown-number")
                .increment(1);
            let _ = incoming.call.reject(404, None).await;
            return;
        };
        let dialed = route.config.phone_number.clone();
        let node = &self.node;
        if !node.trunks.inbound.is_empty() {
            let open = self.open_numbers.iter().any(|n| n == &dialed);
            if !node
                .trunks
                .check_inbound(incoming.remote_addr.ip(), open)
                .is_allowed()
            {
                tracing::info!(source = %incoming.remote_addr, to = %dialed, "source is not an inbound trunk: 403");
                metrics::counter!("dialtone_calls_rejected_total", "reason" => "forbidden")
                    .increment(1);
                let _ = incoming.call.reject(403, None).await;
                return;
            }
        }
        // A suspended or closed account's numbers take no calls (the caller gets 403).
        let owner = node.accounts.get(&route.account_sid);
        if owner
            .as_ref()
            .is_some_and(|a| a.status != dialtone_projections::accounts::ACTIVE)
        {
            tracing::info!(number = %dialed, account = %route.account_sid, "the number's account is not active: 403");
            metrics::counter!("dialtone_calls_rejected_total", "reason" => "account-inactive")
                .increment(1);
            let _ = incoming.call.reject(403, None).await;
            return;
        }
        // A prepaid account with no money left (or a postpaid one at its credit limit)
        // takes no calls; others get what they can pay for.
        let allowance =
            crate::roles::allowance::of_call(node, &route.account_sid, Direction::Inbound, &dialed)
                .await;
        if allowance == crate::roles::allowance::Allowance::Exhausted {
            tracing::info!(number = %dialed, account = %route.account_sid, "the account has no balance left: 403");
            metrics::counter!("dialtone_calls_rejected_total", "reason" => "no-balance")
                .increment(1);
            let _ = incoming
                .call
                .reject(403, Some("Insufficient Funds".to_owned()))
                .await;
            return;
        }
        let (Some(webhooks), Ok(account)) = (
            node.webhook_session(&route.account_sid),
            AccountSid::parse(&route.account_sid),
        ) else {
            tracing::error!(number = %dialed, account = %route.account_sid, "number's account is unknown");
            let _ = incoming.call.reject(503, None).await;
            return;
        };
        let media = match node.media.open_session() {
            Ok(media) => media,
            Err(error) => {
                tracing::warn!(%error, "no media session available: 503");
                metrics::counter!("dialtone_calls_rejected_total", "reason" => "media")
                    .increment(1);
                let _ = incoming.call.reject(503, None).await;
                return;
            }
        };
        let local = LocalMedia::new(node.public_ip, media.local_port());
        let (sdp_answer, negotiated) = match incoming
            .sdp_offer
            .as_deref()
            .map(|offer| sdp::answer(offer, &local))
        {
            Some(Ok(answer)) => answer,
            Some(Err(error)) => {
                tracing::info!(%error, "unacceptable SDP offer: 488");
                metrics::counter!("dialtone_calls_rejected_total", "reason" => "sdp").increment(1);
                media.close();
                let _ = incoming.call.reject(488, None).await;
                return;
            }
            None => {
                tracing::info!("INVITE without an SDP offer: 488");
                metrics::counter!("dialtone_calls_rejected_total", "reason" => "sdp").increment(1);
                media.close();
                let _ = incoming.call.reject(488, None).await;
                return;
            }
        };

        let sid = CallSid::generate();
        let from = caller_id(&incoming.from);
        let forwarded_from = incoming.diversion.as_ref().map(caller_id);
        let config = &route.config;
        // The number's TwiML Application, when it names one (Twilio's VoiceApplicationSid),
        // replaces its own URLs.
        let app = config
            .voice_application_sid
            .as_deref()
            .and_then(|sid| owner.as_ref()?.application(sid).map(|a| a.config.clone()));
        let application = match app {
            Some(app) => CallApplication {
                url: app.voice_url,
                method: app.voice_method,
                twiml: None,
                fallback_url: app.voice_fallback_url,
                fallback_method: app.voice_fallback_method,
                status_callback: app.status_callback,
                status_callback_method: app.status_callback_method,
                status_callback_events: Vec::new(),
            },
            None => CallApplication {
                url: config.voice_url.clone(),
                method: config.voice_method,
                twiml: None,
                fallback_url: config.voice_fallback_url.clone(),
                fallback_method: config.voice_fallback_method,
                status_callback: config.status_callback.clone(),
                status_callback_method: config.status_callback_method,
                // A number's status callback reports the completed call only (Twilio).
                status_callback_events: Vec::new(),
            },
        };
        let initiated = CallInitiated {
            direction: Direction::Inbound,
            from: from.clone(),
            to: dialed.clone(),
            owner_node: node.node_id.clone(),
            sip_call_id: Some(incoming.call_id.clone()),
            source_addr: Some(incoming.remote_addr.to_string()),
            phone_number_sid: route.sid.parse().ok(),
            parent_call_sid: None,
            forwarded_from: forwarded_from.clone(),
            application: application.clone(),
        };
        let events = vec![
            NewEvent::new(account.as_str(), initiated),
            NewEvent::new(account.as_str(), CallRinging { sip_code: None }),
        ];
        if let Err(error) = node
            .log
            .append(sid.as_str(), ExpectedVersion::NoStream, events)
            .await
        {
            tracing::error!(%error, "cannot record the new call: 503");
            media.close();
            let _ = incoming.call.reject(503, None).await;
            return;
        }
        tracing::info!(call = %sid, %from, to = %dialed, "inbound call");
        let _ = incoming.call.ringing(None).await;

        let context = CallContext {
            call_sid: sid.clone(),
            account_sid: account.clone(),
            from,
            to: dialed,
            direction: Direction::Inbound,
            call_status: CallStatus::Ringing,
            parent_call_sid: None,
            forwarded_from,
            caller_name: incoming.from.display_name.clone(),
            application,
            extra_params: vec![("SipCallId".to_owned(), incoming.call_id.clone())],
        };
        let mut interpreter = Interpreter::new(context, node.interpreter.clone());
        let first_actions = interpreter.start(Instant::now());
        let control = node.registry.register(sid.clone());
        let setup = CallSetup {
            node: node.clone(),
            sid,
            account,
            sip: incoming.call,
            sip_events: incoming.events,
            media,
            negotiated,
            sdp_answer: Some(sdp_answer),
            answered: None,
            interpreter,
            webhooks,
            control,
            invited_at,
            call_recording: None,
            max_duration: allowance.limit(),
        };
        call::run(setup, first_actions).await;
    }
}

/// The dialed number in E.164: the Request-URI's user part, else the To header's.
fn dialed_number(incoming: &IncomingCall) -> Option<String> {
    [incoming.request_uri.user(), incoming.to.uri.user()]
        .into_iter()
        .flatten()
        .find_map(|user| normalize_e164(&user).ok())
}

/// Twilio's `From`: E.164 when the caller's user part is a phone number, else the SIP URI.
fn caller_id(name_addr: &NameAddr) -> String {
    match name_addr.uri.user().map(|u| normalize_e164(&u)) {
        Some(Ok(e164)) => e164,
        _ => {
            let mut uri = name_addr.uri.to_string();
            // Drop URI parameters: `sip:alice@example.com;transport=udp` → `sip:alice@example.com`.
            if let Some(cut) = uri.find(';') {
                uri.truncate(cut);
            }
            uri
        }
    }
}

//! Dialog state (RFC 3261 §12), sans-IO.
//!
//! This module owns: the dialog identifier (Call-ID, local and remote tags), the local and
//! remote CSeq rules (§12.2.1.1, §12.2.2), the route set taken from `Record-Route` (in order
//! for a UAS, reversed for a UAC), the remote target taken from `Contact` (refreshed by
//! re-INVITE/UPDATE), building in-dialog requests with loose or strict routing, and choosing
//! the next hop for them.

use std::net::{IpAddr, SocketAddr};

use crate::message::{
    split_list, CSeq, HeaderError, HeaderName, Method, NameAddr, Request, Response, Uri,
};

/// Identifies a dialog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag (or, for a UAS, by the INVITE).
    Early,
    /// After a 2xx.
    Confirmed,
}

/// Why a request does not fit the dialog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("response has no To tag")]
    NoRemoteTag,
    #[error("CSeq {got} is lower than the last one received ({last})")]
    CSeqOutOfOrder { got: u32, last: u32 },
}

/// One dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Our URI header value, with our tag: `From` of the requests we send.
    pub local_uri: String,
    /// Their URI header value, with their tag: `To` of the requests we send.
    pub remote_uri: String,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    /// Where in-dialog requests go (their Contact).
    pub remote_target: Option<Uri>,
    /// Route set, each entry a name-addr as received.
    pub route_set: Vec<String>,
}

fn with_tag(value: &str, tag: &str) -> String {
    match NameAddr::parse(value) {
        Ok(a) if a.tag().is_some() => value.to_owned(),
        _ => format!("{value};tag={tag}"),
    }
}

fn record_route_entries(headers: &crate::message::Headers) -> Vec<String> {
    headers
        .get_all(&HeaderName::RecordRoute)
        .flat_map(split_list)
        .map(str::to_owned)
        .collect()
}

/// A first local CSeq: random below 2^31 (§8.1.1.5) so that it can grow.
fn initial_cseq() -> u32 {
    rand::random::<u32>() & 0x7fff_ffff
}

impl Dialog {
    /// The dialog a UAS creates for an INVITE it will answer with `local_tag`.
    pub fn uas(invite: &Request, local_tag: &str) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let from = h.from()?;
        h.to()?;
        let cseq = h.cseq()?;
        Ok(Dialog {
            id: DialogId {
                call_id: h.call_id()?.to_owned(),
                local_tag: local_tag.to_owned(),
                // RFC 2543 peers may omit the From tag: the empty tag is the tag.
                remote_tag: from.tag().unwrap_or("").to_owned(),
            },
            state: DialogState::Early,
            local_uri: with_tag(h.get(&HeaderName::To).unwrap_or_default(), local_tag),
            remote_uri: h.get(&HeaderName::From).unwrap_or_default().to_owned(),
            local_seq: initial_cseq(),
            remote_seq: Some(cseq.seq),
            remote_target: h.contact_uri()?,
            route_set: record_route_entries(h),
        })
    }

    /// The dialog a UAC creates from a response (18x with a tag, or 2xx) to its INVITE.
    pub fn uac(invite: &Request, resp: &Response) -> Result<Dialog, DialogError> {
        let to = resp.headers.to()?;
        let remote_tag = to.tag().ok_or(DialogError::NoRemoteTag)?.to_owned();
        let from = invite.headers.from()?;
        let mut route_set = record_route_entries(&resp.headers);
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.headers.call_id()?.to_owned(),
                local_tag: from.tag().unwrap_or("").to_owned(),
                remote_tag,
            },
            state: if resp.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_uri: invite
                .headers
                .get(&HeaderName::From)
                .unwrap_or_default()
                .to_owned(),
            remote_uri: resp
                .headers
                .get(&HeaderName::To)
                .unwrap_or_default()
                .to_owned(),
            local_seq: invite.headers.cseq()?.seq,
            remote_seq: None,
            remote_target: resp.headers.contact_uri()?,
            route_set,
        })
    }

    /// Applies the CSeq rule to a request received in the dialog (§12.2.2): lower than the
    /// last one is out of order (answer 500).
    pub fn check_remote_cseq(&mut self, seq: u32) -> Result<(), DialogError> {
        if let Some(last) = self.remote_seq {
            if seq < last {
                return Err(DialogError::CSeqOutOfOrder { got: seq, last });
            }
        }
        self.remote_seq = Some(seq);
        Ok(())
    }

    /// A target refresh (re-INVITE, UPDATE, or their 2xx) with a Contact replaces the target.
    pub fn refresh_target(&mut self, contact: Option<Uri>) {
        if contact.is_some() {
            self.remote_target = contact;
        }
    }

    /// Builds an in-dialog request (§12.2.1.1) with `via` as its only Via. ACK and CANCEL
    /// reuse the current CSeq; other methods take the next one.
    pub fn new_request(&mut self, method: Method, via: &str) -> Request {
        let seq = match method {
            Method::Ack | Method::Cancel => self.local_seq,
            _ => {
                self.local_seq = self.local_seq.wrapping_add(1);
                self.local_seq
            }
        };
        self.request_with_cseq(method, seq, via)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `seq` (§13.2.2.4).
    pub fn ack(&self, seq: u32, via: &str) -> Request {
        self.request_with_cseq(Method::Ack, seq, via)
    }

    fn request_with_cseq(&self, method: Method, seq: u32, via: &str) -> Request {
        let target = self.remote_target.clone();
        let first_route = self.route_set.first().and_then(|r| NameAddr::parse(r).ok());
        let loose = first_route
            .as_ref()
            .is_some_and(|r| r.uri.params().is_some_and(|p| p.contains("lr")));
        let (uri, routes): (Uri, Vec<String>) = match (&first_route, loose) {
            (Some(first), false) => {
                // Strict routing: the first route becomes the Request-URI and the remote
                // target goes last in the Route set.
                let mut routes: Vec<String> = self.route_set[1..].to_vec();
                if let Some(t) = &target {
                    routes.push(format!("<{t}>"));
                }
                (first.uri.clone(), routes)
            }
            _ => (
                target.unwrap_or_else(|| {
                    NameAddr::parse(&self.remote_uri)
                        .map(|a| a.uri)
                        .unwrap_or(Uri::Other {
                            scheme: "sip".into(),
                            rest: "invalid".into(),
                        })
                }),
                self.route_set.clone(),
            ),
        };
        let mut req = Request::new(method.clone(), uri);
        let h = &mut req.headers;
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, self.local_uri.clone());
        h.push(HeaderName::To, self.remote_uri.clone());
        h.push(HeaderName::CallId, self.id.call_id.clone());
        h.push(HeaderName::CSeq, CSeq { seq, method }.to_string());
        for r in routes {
            h.push(HeaderName::Route, r);
        }
        req
    }

    /// Where to send in-dialog requests: the host of the first route (or of the remote
    /// target) when it is an IP literal; otherwise — a host name we cannot resolve here, a
    /// private address behind NAT while the peer talks to us from a public one, or no
    /// target at all — the address the peer's requests come from (`flow`).
    pub fn next_hop(&self, flow: SocketAddr) -> SocketAddr {
        let uri = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .map(|a| a.uri)
            .or_else(|| self.remote_target.clone());
        let Some(Uri::Sip(sip)) = uri else {
            return flow;
        };
        let maddr_free_host = sip
            .params
            .value("maddr")
            .and_then(crate::message::parse_host_ip)
            .or_else(|| sip.host_ip());
        match maddr_free_host {
            Some(ip) if !is_private(ip) || is_private(flow.ip()) => {
                SocketAddr::new(ip, sip.port_or_default())
            }
            _ => flow,
        }
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_datagram, response_from_request, Parsed, SipMessage};

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:+15550001111@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
From: \"Carrier\" <sip:+15552223333@carrier.example>;tag=abc\r\nTo: <sip:+15550001111@198.51.100.1>\r\n\
Call-ID: c1\r\nCSeq: 10 INVITE\r\nContact: <sip:gw@192.0.2.10:5080>\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()) {
            Ok(Parsed::Message(SipMessage::Request(r))) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uas_dialog_and_loose_routed_bye() {
        let inv = invite("Record-Route: <sip:p1.example;lr>, <sip:192.0.2.20;lr>\r\n");
        let mut d = Dialog::uas(&inv, "ours").unwrap();
        assert_eq!(d.id.remote_tag, "abc");
        assert_eq!(d.local_uri, "<sip:+15550001111@198.51.100.1>;tag=ours");
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example;lr>", "<sip:192.0.2.20;lr>"]
        );
        let start = d.local_seq;
        let bye = d.new_request(Method::Bye, "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKb");
        assert_eq!(bye.uri.to_string(), "sip:gw@192.0.2.10:5080");
        let text = bye.to_string();
        assert!(text.contains("From: <sip:+15550001111@198.51.100.1>;tag=ours\r\n"));
        assert!(text.contains("To: \"Carrier\" <sip:+15552223333@carrier.example>;tag=abc\r\n"));
        assert!(text.contains(&format!("CSeq: {} BYE\r\n", start + 1)));
        assert!(text.contains("Route: <sip:p1.example;lr>\r\nRoute: <sip:192.0.2.20;lr>\r\n"));
        // First route is a host name: fall back to the flow.
        let flow: SocketAddr = "192.0.2.10:5060".parse().unwrap();
        assert_eq!(d.next_hop(flow), flow);
    }

    #[test]
    fn strict_routing_and_next_hop() {
        let inv = invite("Record-Route: <sip:192.0.2.30:5070>\r\n");
        let mut d = Dialog::uas(&inv, "t").unwrap();
        let bye = d.new_request(Method::Bye, "SIP/2.0/UDP x;branch=z9hG4bKs");
        assert_eq!(bye.uri.to_string(), "sip:192.0.2.30:5070");
        assert_eq!(
            bye.headers.get(&HeaderName::Route),
            Some("<sip:gw@192.0.2.10:5080>")
        );
        let flow: SocketAddr = "203.0.113.1:5060".parse().unwrap();
        assert_eq!(d.next_hop(flow), "192.0.2.30:5070".parse().unwrap());
        let d2 = Dialog::uas(&invite(""), "t").unwrap();
        assert_eq!(d2.next_hop(flow), "192.0.2.10:5080".parse().unwrap());
    }

    #[test]
    fn nat_private_contact_uses_flow() {
        let mut inv = invite("");
        inv.headers
            .set(HeaderName::Contact, "<sip:phone@192.168.1.20:5060>");
        let d = Dialog::uas(&inv, "t").unwrap();
        let flow: SocketAddr = "203.0.113.9:34000".parse().unwrap();
        assert_eq!(d.next_hop(flow), flow);
        let lan: SocketAddr = "192.168.1.20:5060".parse().unwrap();
        assert_eq!(d.next_hop(lan), lan);
    }

    #[test]
    fn remote_cseq_rule_and_uac_dialog() {
        let inv = invite("");
        let mut d = Dialog::uas(&inv, "t").unwrap();
        assert!(d.check_remote_cseq(11).is_ok());
        assert!(d.check_remote_cseq(11).is_ok());
        assert_eq!(
            d.check_remote_cseq(9),
            Err(DialogError::CSeqOutOfOrder { got: 9, last: 11 })
        );
        let mut ok = response_from_request(&inv, 200, None, Some("remote"));
        ok.headers
            .push(HeaderName::RecordRoute, "<sip:a;lr>, <sip:b;lr>");
        ok.headers
            .push(HeaderName::Contact, "<sip:callee@192.0.2.99>");
        let u = Dialog::uac(&inv, &ok).unwrap();
        assert_eq!(u.id.local_tag, "abc");
        assert_eq!(u.id.remote_tag, "remote");
        assert_eq!(u.route_set, vec!["<sip:b;lr>", "<sip:a;lr>"]);
        assert_eq!(u.local_seq, 10);
        assert_eq!(u.state, DialogState::Confirmed);
        let ack = u.ack(10, "SIP/2.0/UDP h;branch=z9hG4bKack");
        assert_eq!(ack.headers.get(&HeaderName::CSeq), Some("10 ACK"));
        assert_eq!(ack.uri.to_string(), "sip:callee@192.0.2.99");
        let no_tag = response_from_request(&inv, 200, None, None);
        assert_eq!(Dialog::uac(&inv, &no_tag), Err(DialogError::NoRemoteTag));
    }
}

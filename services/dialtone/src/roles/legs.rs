//! Placing outbound legs: `<Number>` dials through the default outbound trunk, `<Sip>` dials
//! and `sip:` REST targets straight to the URI.

use std::time::Duration;

use dialtone_sip::endpoint::{CallEvent, CallHandle};
use dialtone_sip::trunk::{resolve, DialOptions, SipTarget, TrunkError};
use dialtone_voice::interpreter::dial::PartyAddress;
use tokio::sync::mpsc;

use crate::roles::node::Node;

/// Where an outbound leg goes.
#[derive(Debug, Clone)]
pub enum LegTarget {
    /// A phone number (E.164), through the default outbound trunk.
    Number(String),
    /// A SIP URI, with optional digest credentials.
    Sip {
        uri: String,
        username: Option<String>,
        password: Option<String>,
        headers: Vec<(String, String)>,
    },
}

impl LegTarget {
    /// A REST `To`: `sip:`/`sips:` URIs go straight, anything else is a number.
    pub fn from_rest(to: &str, username: Option<String>, password: Option<String>) -> LegTarget {
        if to.starts_with("sip:") || to.starts_with("sips:") {
            LegTarget::Sip {
                uri: to.to_owned(),
                username,
                password,
                headers: Vec::new(),
            }
        } else {
            LegTarget::Number(to.to_owned())
        }
    }

    pub fn from_party(address: &PartyAddress) -> LegTarget {
        match address {
            PartyAddress::Number { number, .. } => LegTarget::Number(number.clone()),
            PartyAddress::Sip {
                uri,
                username,
                password,
                headers,
                ..
            } => LegTarget::Sip {
                uri: uri.clone(),
                username: username.clone(),
                password: password.clone(),
                headers: headers.clone(),
            },
        }
    }
}

/// Why a leg could not be placed (the call is then `failed`).
#[derive(Debug, thiserror::Error)]
pub enum LegError {
    #[error("routing: {0}")]
    Route(#[from] TrunkError),
    #[error("SIP: {0}")]
    Sip(#[from] dialtone_sip::endpoint::SipError),
}

/// An INVITE on its way.
pub struct PlacedLeg {
    pub call: CallHandle,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
}

/// Sends the INVITE with our SDP `offer`; progress arrives on the returned events.
pub async fn place(
    node: &Node,
    target: &LegTarget,
    caller_id: &str,
    offer: String,
    ring_timeout: Duration,
) -> Result<PlacedLeg, LegError> {
    let invite = match target {
        LegTarget::Number(number) => {
            let trunk = node.trunks.default_outbound()?;
            let destination = resolve(&trunk.host, trunk.port).await?;
            let options = DialOptions {
                sdp: offer,
                headers: Vec::new(),
                ring_timeout: Some(ring_timeout),
            };
            trunk.number_invite(destination, number, caller_id, options)?
        }
        LegTarget::Sip {
            uri,
            username,
            password,
            headers,
        } => {
            let sip = SipTarget::parse(uri)?;
            let destination = resolve(&sip.host, sip.port).await?;
            let options = DialOptions {
                sdp: offer,
                headers: headers.clone(),
                ring_timeout: Some(ring_timeout),
            };
            let caller = caller_id
                .strip_prefix("sip:")
                .map(|c| c.split('@').next().unwrap_or(c))
                .unwrap_or(caller_id);
            sip.invite(
                destination,
                caller,
                &node.public_ip.to_string(),
                username.as_deref(),
                password.as_deref(),
                options,
            )?
        }
    };
    let placed = node.sip.invite(invite).await?;
    Ok(PlacedLeg {
        call: placed.call,
        events: placed.events,
    })
}

//! `dialtone-sip`: Dialtone's SIP stack for the edge role.
//!
//! Layers, bottom up (all sans-IO except the last):
//! - [`message`]: tolerant parser and serializer (RFC 3261 grammar, RFC 4475 torture tests).
//! - [`sdp`]: SDP parsing and the RFC 3264 offer/answer policy for G.711 + telephone-event.
//! - [`transaction`]: the four RFC 3261 §17 transaction machines (+ RFC 6026), timers A–M.
//! - [`dialog`]: dialog state (RFC 3261 §12): tags, CSeq, route set, remote target.
//! - [`auth`]: digest authentication (RFC 2617, RFC 8760 SHA-256) for outbound requests.
//! - [`ua`]: the UA core: UAS and UAC behaviour, CANCEL, BYE, re-INVITE, INFO, session timers.
//! - [`overload`]: admission of new INVITEs (call and transaction limits, per-source CPS).
//! - [`trunk`]: inbound trunks (allowed sources) and outbound trunks (`<Number>` and `<Sip>` dials).
//! - [`endpoint`]: the imperative shell: a tokio task owning the UDP socket and TCP
//!   connections, feeding the core.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod message;
pub mod overload;
pub mod registrar;
pub mod sdp;
mod timer;
pub mod transaction;
pub mod trunk;
pub mod ua;

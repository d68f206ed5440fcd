//! Dialtone's voice application layer: TwiML, the per-call interpreter, webhooks and
//! their signatures. It knows nothing of SIP or RTP: it receives call facts and media
//! outcomes and answers with commands and events.
//!
//! - [`twiml`]: TwiML parser (quick-xml) into a typed verb tree, and a writer.
//! - [`signature`]: `X-Twilio-Signature` (HMAC-SHA1 / HMAC-SHA256, `bodySHA256`).
//! - [`webhook`]: the HTTP client that fetches TwiML and delivers callbacks (imperative shell).
//! - [`interpreter`]: the sans-IO state machine that runs one call's TwiML.
//! - [`callbacks`]: the status-callback deliverer (ordered per call, retried, recorded).

pub mod callbacks;
pub mod interpreter;
pub mod signature;
pub mod twiml;
pub mod webhook;

//! Dialtone's SMS core, sans-IO: what a message body becomes on the air and back.
//!
//! - [`encoding`]: GSM 03.38 (7-bit default alphabet and its extension table) or UCS-2,
//!   chosen as Twilio does (GSM-7 when every character has a GSM-7 form);
//! - [`segments`]: splitting a body into the segments carriers send (160/153 septets,
//!   70/67 UTF-16 units), the concatenation header (UDH) that numbers them, and the
//!   reassembly of the parts of an inbound concatenated message.
//!
//! The carrier connections (SMPP, SIP MESSAGE) and the Messages API build on these.

pub mod encoding;
pub mod segments;

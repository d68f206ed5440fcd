//! Room links, the owner's side: a caller whose call lives on another node joins a room
//! this node holds through a SIP call from that node (`sip:room@<this node>`), which carries
//! the participant in a signed `X-Dialtone-Room` header. This node seats the link's audio in
//! the room under the caller's CallSid, logs the joins and leaves on the room's stream as
//! for any participant, and obeys the room's commands for it (the caller's node forwards
//! REST updates here); the caller's node bridges the link to the caller.
//!
//! Also here: what a `<Conference>` asks of a room, shared by both sides.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use dialtone_events::payload::HttpMethod;
use dialtone_events::sid::{CallSid, RecordingSid};
use dialtone_media::conference::ParticipantOptions;
use dialtone_media::runtime::{MediaCommand as MediaRuntimeCommand, MediaSession};
use dialtone_sip::endpoint::{CallEvent, IncomingCall};
use dialtone_sip::message::HeaderName;
use dialtone_sip::sdp::{self, LocalMedia};
use dialtone_voice::signature::{sign_with, validate_with, Algorithm};
use dialtone_voice::twiml::{DialConference, Trim};
use serde::{Deserialize, Serialize};

use crate::roles::codecs::media_codec;
use crate::roles::commands::INVALID_STATE;
use crate::roles::conference::{RoomRecording, RoomRequests};
use crate::roles::node::{recording_url, Node};
use crate::roles::registry::CallControl;

/// The Request-URI user of a room link.
pub const ROOM_USER: &str = "room";
/// The header that carries a link's [`LinkRequest`].
pub const ROOM_HEADER: &str = "X-Dialtone-Room";
/// How old a link request may be: a captured INVITE cannot be replayed later.
const MAX_AGE: Duration = Duration::from_secs(60);
/// How often a seat checks that its caller's call still lives.
const CALL_CHECK: Duration = Duration::from_secs(5);
/// What the signature covers besides the request.
const SIGNED_URL: &str = "dialtone://room-link";

/// A participant for a room on another node: whose call, which room, and the
/// `<Conference>` attributes the room needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRequest {
    pub account: String,
    pub call_sid: String,
    /// When the caller's node asked (Unix seconds).
    pub issued_at: u64,
    pub room: String,
    pub muted: bool,
    pub beep: String,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    pub max_participants: u32,
    /// `waitUrl`: played here while the caller waits (an audio file; TwiML plays the hold
    /// music instead); `""` is silence, absent the hold music.
    pub wait_url: Option<String>,
    pub record: String,
    pub trim_silence: bool,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub status_callback_events: Vec<String>,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: HttpMethod,
    pub recording_status_callback_events: Vec<String>,
}

impl LinkRequest {
    pub fn new(account: &str, call: &CallSid, conference: &DialConference) -> LinkRequest {
        LinkRequest {
            account: account.to_owned(),
            call_sid: call.to_string(),
            issued_at: unix_now(),
            room: conference.name.clone(),
            muted: conference.muted,
            beep: conference.beep.clone(),
            start_conference_on_enter: conference.start_conference_on_enter,
            end_conference_on_exit: conference.end_conference_on_exit,
            max_participants: conference.max_participants,
            wait_url: conference.wait_url.clone(),
            record: conference.record.clone(),
            trim_silence: conference.trim == Trim::TrimSilence,
            status_callback: conference.status_callback.clone(),
            status_callback_method: conference.status_callback_method,
            status_callback_events: conference.status_callback_event.clone(),
            recording_status_callback: conference.recording_status_callback.clone(),
            recording_status_callback_method: conference.recording_status_callback_method,
            recording_status_callback_events: conference.recording_status_callback_event.clone(),
        }
    }

    /// The `<Conference>` it stands for.
    fn conference(&self) -> DialConference {
        DialConference {
            name: self.room.clone(),
            muted: self.muted,
            beep: self.beep.clone(),
            start_conference_on_enter: self.start_conference_on_enter,
            end_conference_on_exit: self.end_conference_on_exit,
            wait_url: self.wait_url.clone(),
            max_participants: self.max_participants,
            record: self.record.clone(),
            trim: if self.trim_silence {
                Trim::TrimSilence
            } else {
                Trim::DoNotTrim
            },
            status_callback: self.status_callback.clone(),
            status_callback_method: self.status_callback_method,
            status_callback_event: self.status_callback_events.clone(),
            recording_status_callback: self.recording_status_callback.clone(),
            recording_status_callback_method: self.recording_status_callback_method,
            recording_status_callback_event: self.recording_status_callback_events.clone(),
            ..DialConference::default()
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a link was refused (the INVITE gets 403).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("the {ROOM_HEADER} header is not `request.signature`")]
    Malformed,
    #[error("the {ROOM_HEADER} signature does not verify (another cluster's secret?)")]
    BadSignature,
    #[error("the link request does not decode: {0}")]
    Undecodable(String),
    #[error("the link request is {age_s} s old")]
    Expired { age_s: u64 },
}

/// The header value for `request`: its JSON in base64url, a dot, and its HMAC-SHA256 under
/// the cluster's node secret.
pub fn sign(secret: &[u8], request: &LinkRequest) -> String {
    let json = serde_json::to_vec(request).unwrap_or_default();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let signature = sign_with(
        Algorithm::HmacSha256,
        secret,
        SIGNED_URL,
        &[("request", encoded.as_str())],
    );
    format!("{encoded}.{signature}")
}

/// The request in a header value, if it was signed with `secret` less than a minute
/// before `now` (Unix seconds). Pure.
pub fn verify(secret: &[u8], header: &str, now: u64) -> Result<LinkRequest, LinkError> {
    let (encoded, signature) = header.trim().split_once('.').ok_or(LinkError::Malformed)?;
    if !validate_with(
        Algorithm::HmacSha256,
        secret,
        SIGNED_URL,
        &[("request", encoded)],
        signature,
    ) {
        return Err(LinkError::BadSignature);
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| LinkError::Undecodable(e.to_string()))?;
    let request: LinkRequest =
        serde_json::from_slice(&json).map_err(|e| LinkError::Undecodable(e.to_string()))?;
    let age_s = now.saturating_sub(request.issued_at);
    if age_s > MAX_AGE.as_secs() {
        return Err(LinkError::Expired { age_s });
    }
    Ok(request)
}

/// Whether an INVITE is a room link (rather than a call to a number).
pub fn is_link(incoming: &IncomingCall) -> bool {
    incoming.request_uri.user().as_deref() == Some(ROOM_USER)
        && incoming
            .invite
            .headers
            .contains(&HeaderName::from(ROOM_HEADER))
}

/// The participant options a `<Conference>` asks for.
pub fn participant_options(conference: &DialConference) -> ParticipantOptions {
    let beep = conference.beep.to_ascii_lowercase();
    ParticipantOptions {
        muted: conference.muted,
        beep_on_enter: matches!(beep.as_str(), "true" | "onenter"),
        beep_on_exit: matches!(beep.as_str(), "true" | "onexit"),
        start_conference_on_enter: conference.start_conference_on_enter,
        max_participants: Some(conference.max_participants.clamp(2, 250) as usize),
    }
}

/// What a participant's `<Conference>` asks of the room: status callbacks, and a recording
/// (made by the node that holds the room, into its recordings).
pub fn room_requests(node: &Node, account: &str, conference: &DialConference) -> RoomRequests {
    let recording = (conference.record == "record-from-start").then(|| {
        let sid = RecordingSid::generate();
        let path = node.recordings_dir.join(format!("{sid}.wav"));
        RoomRecording {
            relative_path: node.relative_path(&path),
            url: recording_url(&node.interpreter.api_base_url, account, &sid),
            path,
            sid,
            trim_silence: conference.trim == Trim::TrimSilence,
            status_callback: conference.recording_status_callback.clone(),
            status_callback_method: conference.recording_status_callback_method,
            status_callback_events: conference.recording_status_callback_event.clone(),
        }
    });
    RoomRequests {
        status_callback: conference.status_callback.clone(),
        status_callback_method: conference.status_callback_method,
        status_callback_events: conference.status_callback_event.clone(),
        recording,
    }
}

/// Whether a `waitUrl` is an audio file (played as it is) rather than TwiML.
pub fn is_audio_url(url: &str) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    [".mp3", ".wav", ".wave", ".ul", ".ulaw", ".au", ".aiff"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Takes a room link: verifies it, seats it in the room, and serves it until either side
/// leaves.
pub async fn accept(node: Arc<Node>, incoming: IncomingCall) {
    let IncomingCall {
        call,
        mut events,
        invite,
        sdp_offer,
        remote_addr,
        ..
    } = incoming;
    let header = invite
        .headers
        .get(&HeaderName::from(ROOM_HEADER))
        .unwrap_or_default();
    let request = match verify(&node.secret, header, unix_now()) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(source = %remote_addr, %error, "room link refused: 403");
            metrics::counter!("dialtone_room_links_total", "result" => "refused").increment(1);
            let _ = call.reject(403, None).await;
            return;
        }
    };
    let Ok(caller) = CallSid::parse(&request.call_sid) else {
        let _ = call.reject(400, None).await;
        return;
    };
    let media = match node.media.open_session() {
        Ok(media) => media,
        Err(error) => {
            tracing::warn!(%error, "no media session for a room link: 503");
            let _ = call.reject(503, None).await;
            return;
        }
    };
    let local = LocalMedia::new(node.public_ip, media.local_port());
    let Some(Ok((answer, negotiated))) = sdp_offer.as_deref().map(|o| sdp::answer(o, &local))
    else {
        media.close();
        let _ = call.reject(488, None).await;
        return;
    };
    media.set_remote(
        negotiated.remote_rtp,
        media_codec(negotiated.codec),
        negotiated.telephone_event_pt,
    );
    if let Err(error) = call.answer(answer).await {
        tracing::info!(call = %caller, %error, "the room link went away before its answer");
        media.close();
        return;
    }
    let conference = request.conference();
    let mut control = node.registry.register(caller.clone());
    let joined = node
        .conferences
        .join(
            &node.log,
            &node.registry,
            &node.media,
            &request.account,
            &request.room,
            &caller,
            &media,
            participant_options(&conference),
            conference.end_conference_on_exit,
            room_requests(&node, &request.account, &conference),
        )
        .await;
    let (mut membership, waiting) = match joined {
        Ok(joined) => joined,
        Err(error) => {
            tracing::info!(call = %caller, room = %request.room, %error, "cannot seat a room link");
            let _ = call.hangup().await;
            node.registry.remove(&caller);
            media.close();
            return;
        }
    };
    metrics::counter!("dialtone_room_links_total", "result" => "seated").increment(1);
    tracing::info!(call = %caller, room = %request.room, source = %remote_addr, "a caller of another node joined the room");
    if waiting {
        play_wait(&media, conference.wait_url.as_deref());
    }
    // A kick is answered once the leave is logged, so the API's answer reflects it.
    let mut kicked = None;
    // The caller's node may die without a BYE: the log then ends its call (liveness), and
    // the seat goes with it.
    let mut watchdog = tokio::time::interval(CALL_CHECK);
    watchdog.tick().await;
    loop {
        tokio::select! {
            _ = watchdog.tick() => {
                if caller_call_ended(&node, &request.account, &caller).await {
                    tracing::info!(call = %caller, "the linked caller's call ended elsewhere; freeing its seat");
                    let _ = call.hangup().await;
                    break;
                }
            }
            event = events.recv() => match event {
                None | Some(CallEvent::Terminated { .. }) => break,
                Some(_) => {}
            },
            command = control.recv() => match command {
                None => break,
                Some(CallControl::ConferenceStarted) => media.stop_playback(),
                Some(CallControl::ConferenceUpdate { muted, hold, reply }) => {
                    let was_held = membership.held;
                    node.conferences
                        .update_participant(node.log.as_ref(), &request.account, &caller, &mut membership, muted, hold)
                        .await;
                    match hold.filter(|h| *h != was_held) {
                        Some(true) => {
                            media.play(MediaRuntimeCommand::HoldMusic);
                        }
                        Some(false) => media.stop_playback(),
                        None => {}
                    }
                    let _ = reply.send(Ok(()));
                }
                Some(CallControl::ConferenceEnd { reply }) => {
                    node.conferences
                        .end(node.log.as_ref(), &node.registry, &request.account, &membership.key)
                        .await;
                    let _ = reply.send(Ok(()));
                }
                Some(CallControl::ConferenceKick { reply }) => {
                    kicked = Some(reply);
                    break;
                }
                Some(CallControl::Redirect { reply, .. }) | Some(CallControl::Twiml { reply, .. }) => {
                    let _ = reply.send(Err(INVALID_STATE.to_owned()));
                }
                Some(CallControl::ConferenceEnded)
                | Some(CallControl::Hangup)
                | Some(CallControl::HangupByApi) => {
                    let _ = call.hangup().await;
                    break;
                }
            },
        }
    }
    node.conferences
        .leave(
            node.log.as_ref(),
            &node.registry,
            &request.account,
            &caller,
            membership,
        )
        .await;
    if let Some(reply) = kicked {
        let _ = reply.send(Ok(()));
        let _ = call.hangup().await;
    }
    node.registry.remove(&caller);
    media.close();
}

/// Whether the log says the caller's call is over (its node ended it, or another node did
/// when it was lost).
async fn caller_call_ended(node: &Node, account: &str, caller: &CallSid) -> bool {
    let (account, sid) = (account.to_owned(), caller.to_string());
    let call = node
        .read_models
        .read(move |c| dialtone_projections::calls::get_call(c, &account, &sid))
        .await;
    matches!(call, Ok(Some(record)) if record.call.status.is_final())
}

/// The waiting music of a link's caller, played here: an audio `waitUrl` as it is, the hold
/// music for none (or for a TwiML one, whose program runs only where the call lives), and
/// silence for `""`.
fn play_wait(media: &MediaSession, wait_url: Option<&str>) {
    match wait_url {
        Some("") => {}
        Some(url) if is_audio_url(url) => {
            media.play(MediaRuntimeCommand::Play {
                url: url.to_owned(),
                loops: 0,
            });
        }
        _ => {
            media.play(MediaRuntimeCommand::HoldMusic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> LinkRequest {
        let call = CallSid::generate();
        LinkRequest::new(
            "AC0123",
            &call,
            &DialConference {
                name: "standup".into(),
                ..DialConference::default()
            },
        )
    }

    #[test]
    fn a_signed_request_verifies_and_round_trips() {
        let request = request();
        let header = sign(b"cluster-secret-0123456789", &request);
        assert!(!header.contains(' ') && !header.contains('\r'), "{header}");
        let verified = verify(b"cluster-secret-0123456789", &header, request.issued_at + 5);
        assert_eq!(verified, Ok(request.clone()));
        assert_eq!(verified.unwrap().conference().name, "standup");
    }

    #[test]
    fn another_secret_a_tampered_request_or_an_old_one_is_refused() {
        let request = request();
        let header = sign(b"cluster-secret-0123456789", &request);
        assert_eq!(
            verify(b"another-secret-0123456789", &header, request.issued_at),
            Err(LinkError::BadSignature)
        );
        let mut tampered = request.clone();
        tampered.room = "someone-elses-room".into();
        let forged = format!(
            "{}.{}",
            sign(b"x", &tampered).split_once('.').unwrap().0,
            header.split_once('.').unwrap().1
        );
        assert_eq!(
            verify(b"cluster-secret-0123456789", &forged, request.issued_at),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(
                b"cluster-secret-0123456789",
                &header,
                request.issued_at + 61
            ),
            Err(LinkError::Expired { age_s: 61 })
        );
        assert_eq!(
            verify(b"cluster-secret-0123456789", "no-dot", 0),
            Err(LinkError::Malformed)
        );
    }
}

//! SDP (RFC 4566/8866) for G.711 telephony, and the RFC 3264 offer/answer policy.
//!
//! This module owns: a small tolerant SDP parser ([`SessionDescription::parse`]), building
//! an answer to a remote offer ([`answer`]), building an offer ([`offer`]) and reading the
//! answer to our offer ([`accept_answer`]). Policy: the first offered codec we support among
//! PCMU (0) and PCMA (8) wins; `telephone-event` is included with the offer's payload type
//! when offered; direction attributes (and the RFC 2543 `c=0.0.0.0` hold) are mirrored for
//! hold/unhold; every other media stream is rejected with port 0.
//!
//! Why our own parser rather than `sdp-types`: that crate refuses an SDP that lacks `s=` or
//! `t=` or has an unexpected field order, which carriers and old gateways do send (RFC 4475
//! §3.1.2.18 even carries one). We only need `o=`, `c=`, `m=` and a handful of `a=` lines,
//! and we would rather answer a slightly broken offer than refuse the call.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// An SDP that cannot be used, or a negotiation that failed. The UA answers 488 to all of
/// them (`NoOffer`: the caller decides: 488 for a re-INVITE, delayed offer for an INVITE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("no SDP offer")]
    NoOffer,
    #[error("SDP is not UTF-8 text")]
    NotText,
    #[error("malformed SDP line {line}: {detail}")]
    Malformed { line: usize, detail: &'static str },
    #[error("no audio stream in SDP")]
    NoAudio,
    #[error("no common codec (we support PCMU, PCMA); offered: {offered}")]
    NoCommonCodec { offered: String },
    #[error("no connection address for the audio stream")]
    NoConnection,
}

/// G.711 codecs we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static payload type (RFC 3551).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    fn from_rtpmap(name: &str, rate: u32) -> Option<Codec> {
        if rate != 8000 {
            return None;
        }
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }
}

/// Media direction (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Direction> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Our direction in an answer to a stream offered as `self`, given what we want.
    pub fn answer_to(self, wanted: Direction) -> Direction {
        Direction::from_flags(
            wanted.sends() && self.receives(),
            wanted.receives() && self.sends(),
        )
    }

    /// Whether this direction (seen from the remote side) means the remote put us on hold.
    pub fn is_hold(self) -> bool {
        !self.receives()
    }
}

/// One `a=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    /// Media-level `c=` address.
    pub connection: Option<IpAddr>,
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.as_deref())
    }

    /// `a=rtpmap:<pt> <name>/<rate>` for a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<(String, u32)> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, rest) = v.split_once(' ')?;
                if p.trim().parse::<u8>().ok()? != pt {
                    return None;
                }
                let mut it = rest.trim().split('/');
                let name = it.next()?.to_owned();
                let rate = it.next()?.trim().parse().ok()?;
                Some((name, rate))
            })
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, rest) = v.split_once(' ')?;
                (p.trim().parse::<u8>().ok()? == pt).then_some(rest.trim())
            })
    }

    /// The stream's direction attribute, session-level default applied by the caller.
    fn direction_attr(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .find_map(|a| Direction::parse(&a.name.to_ascii_lowercase()))
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` fields: username, session id, version, address (as written).
    pub origin: Option<String>,
    /// Session-level `c=` address.
    pub connection: Option<IpAddr>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

fn parse_connection(v: &str) -> Option<IpAddr> {
    // c=IN IP4 192.0.2.1[/ttl[/n]]
    let mut it = v.split_whitespace();
    let _net = it.next()?;
    let _addrtype = it.next()?;
    let addr = it.next()?.split('/').next()?;
    addr.parse().ok()
}

impl SessionDescription {
    /// Parses tolerantly: unknown and malformed lines other than `m=` are skipped; only a
    /// malformed `m=` line (which would shift the m-line order of an answer) is an error.
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        let mut sd = SessionDescription {
            origin: None,
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.trim_end_matches('\r').trim();
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "o" if sd.media.is_empty() => sd.origin = Some(v.to_owned()),
                "c" => {
                    let addr = parse_connection(v);
                    match sd.media.last_mut() {
                        Some(m) => m.connection = addr.or(m.connection),
                        None => sd.connection = addr,
                    }
                }
                "a" => {
                    let attr = match v.split_once(':') {
                        Some((name, value)) => Attribute {
                            name: name.trim().to_owned(),
                            value: Some(value.trim().to_owned()),
                        },
                        None => Attribute {
                            name: v.to_owned(),
                            value: None,
                        },
                    };
                    match sd.media.last_mut() {
                        Some(m) => m.attributes.push(attr),
                        None => sd.attributes.push(attr),
                    }
                }
                "m" => {
                    let mut it = v.split_whitespace();
                    let media = it.next().ok_or(SdpError::Malformed {
                        line: n + 1,
                        detail: "m= without media",
                    })?;
                    let port_s = it.next().ok_or(SdpError::Malformed {
                        line: n + 1,
                        detail: "m= without port",
                    })?;
                    let port = port_s
                        .split('/')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or(SdpError::Malformed {
                            line: n + 1,
                            detail: "m= port is not a number",
                        })?;
                    let proto = it.next().ok_or(SdpError::Malformed {
                        line: n + 1,
                        detail: "m= without proto",
                    })?;
                    sd.media.push(MediaDescription {
                        media: media.to_owned(),
                        port,
                        proto: proto.to_owned(),
                        formats: it.map(str::to_owned).collect(),
                        connection: None,
                        attributes: Vec::new(),
                    });
                }
                _ => {}
            }
        }
        Ok(sd)
    }

    fn session_direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .find_map(|a| Direction::parse(&a.name.to_ascii_lowercase()))
    }

    /// The effective direction of a stream (media attribute, else session attribute, else
    /// sendrecv; `c=0.0.0.0` means the sender does not want to receive: RFC 2543 hold).
    pub fn stream_direction(&self, m: &MediaDescription) -> Direction {
        let d = m
            .direction_attr()
            .or(self.session_direction())
            .unwrap_or_default();
        let addr = m.connection.or(self.connection);
        if addr.is_some_and(|a| a.is_unspecified()) {
            Direction::from_flags(d.sends(), false)
        } else {
            d
        }
    }
}

/// What we put into our SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address the remote side sends RTP to (our public IP).
    pub ip: IpAddr,
    pub rtp_port: u16,
    /// `o=` session id; keep it for the life of the call.
    pub session_id: u64,
    /// `o=` version; increment it whenever our SDP changes (RFC 3264 §8).
    pub session_version: u64,
    /// Codecs we accept, in our order of preference (used for offers; answers follow the
    /// offerer's order).
    pub codecs: Vec<Codec>,
    /// Payload type we offer for telephone-event (answers reuse the offer's).
    pub telephone_event_pt: u8,
    /// What we want: sendrecv normally, sendonly/inactive to put the remote on hold.
    pub direction: Direction,
    pub ptime_ms: u32,
}

impl LocalMedia {
    pub fn new(ip: IpAddr, rtp_port: u16) -> Self {
        LocalMedia {
            ip,
            rtp_port,
            session_id: rand::random::<u32>() as u64,
            session_version: 1,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event_pt: 101,
            direction: Direction::SendRecv,
            ptime_ms: 20,
        }
    }
}

/// The outcome of an offer/answer exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type the codec uses on the wire (0/8, or the dynamic one offered).
    pub payload_type: u8,
    /// Where to send RTP.
    pub remote_rtp: SocketAddr,
    /// RFC 4733 payload type, when both sides do telephone-event.
    pub telephone_event_pt: Option<u8>,
    /// Our direction for this stream.
    pub direction: Direction,
    /// The remote side's direction (hold detection: `remote_direction.is_hold()`).
    pub remote_direction: Direction,
    /// Remote `a=ptime`, if given.
    pub remote_ptime_ms: Option<u32>,
}

fn ip_fields(ip: IpAddr) -> (&'static str, String) {
    match ip {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    }
}

fn session_header(out: &mut String, local: &LocalMedia) {
    let (at, addr) = ip_fields(local.ip);
    let _ = write!(
        out,
        "v=0\r\no=dialtone {} {} IN {at} {addr}\r\ns=dialtone\r\nc=IN {at} {addr}\r\nt=0 0\r\n",
        local.session_id, local.session_version
    );
}

fn is_rtp_avp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// A chosen codec, its payload type, and telephone-event (payload type, fmtp) if offered.
type Choice = (Codec, u8, Option<(u8, String)>);

/// The codec and telephone-event payload type chosen from one offered audio stream.
fn choose(m: &MediaDescription, supported: &[Codec]) -> Option<Choice> {
    let mut chosen = None;
    let mut te = None;
    for f in &m.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        let codec = match m.rtpmap(pt) {
            Some((name, rate)) => {
                if name.eq_ignore_ascii_case("telephone-event") && rate == 8000 && te.is_none() {
                    te = Some((pt, m.fmtp(pt).unwrap_or("0-16").to_owned()));
                    continue;
                }
                Codec::from_rtpmap(&name, rate)
            }
            None => match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                _ => None,
            },
        };
        if let Some(c) = codec {
            if chosen.is_none() && supported.contains(&c) {
                chosen = Some((c, pt));
            }
        }
    }
    chosen.map(|(c, pt)| (c, pt, te))
}

/// Answers a remote offer (RFC 3264 §6): returns our answer SDP and what was agreed.
pub fn answer(offer_sdp: &str, local: &LocalMedia) -> Result<(String, Negotiated), SdpError> {
    if offer_sdp.trim().is_empty() {
        return Err(SdpError::NoOffer);
    }
    let offer = SessionDescription::parse(offer_sdp)?;
    if !offer
        .media
        .iter()
        .any(|m| m.media.eq_ignore_ascii_case("audio"))
    {
        return Err(SdpError::NoAudio);
    }
    let mut out = String::with_capacity(400);
    session_header(&mut out, local);
    let mut negotiated = None;
    let mut offered_codecs = Vec::new();
    for m in &offer.media {
        let usable = negotiated.is_none()
            && m.media.eq_ignore_ascii_case("audio")
            && m.port != 0
            && is_rtp_avp(&m.proto);
        let choice = if usable {
            choose(m, &local.codecs)
        } else {
            None
        };
        if m.media.eq_ignore_ascii_case("audio") {
            offered_codecs.extend(m.formats.iter().cloned());
        }
        match choice {
            Some((codec, pt, te)) => {
                let remote_ip = m
                    .connection
                    .or(offer.connection)
                    .ok_or(SdpError::NoConnection)?;
                let remote_direction = offer.stream_direction(m);
                let direction = remote_direction.answer_to(local.direction);
                let _ = write!(out, "m=audio {} {} {pt}", local.rtp_port, m.proto);
                if let Some((te_pt, _)) = &te {
                    let _ = write!(out, " {te_pt}");
                }
                let _ = write!(out, "\r\na=rtpmap:{pt} {}/8000\r\n", codec.encoding_name());
                if let Some((te_pt, fmtp)) = &te {
                    let _ = write!(
                        out,
                        "a=rtpmap:{te_pt} telephone-event/8000\r\na=fmtp:{te_pt} {fmtp}\r\n"
                    );
                }
                let _ = write!(
                    out,
                    "a=ptime:{}\r\na={}\r\n",
                    local.ptime_ms,
                    direction.as_str()
                );
                negotiated = Some(Negotiated {
                    codec,
                    payload_type: pt,
                    remote_rtp: SocketAddr::new(remote_ip, m.port),
                    telephone_event_pt: te.map(|(p, _)| p),
                    direction,
                    remote_direction,
                    remote_ptime_ms: m
                        .attribute("ptime")
                        .flatten()
                        .and_then(|p| p.trim().parse().ok()),
                });
            }
            None => {
                // Rejected stream: same media and proto, port 0, at least one format.
                let fmt = m.formats.first().map(String::as_str).unwrap_or("0");
                let _ = write!(out, "m={} 0 {} {fmt}\r\n", m.media, m.proto);
            }
        }
    }
    match negotiated {
        Some(n) => Ok((out, n)),
        None => Err(SdpError::NoCommonCodec {
            offered: offered_codecs.join(" "),
        }),
    }
}

/// Builds an offer with our codecs (in preference order) and telephone-event.
pub fn offer(local: &LocalMedia) -> String {
    let mut out = String::with_capacity(400);
    session_header(&mut out, local);
    let _ = write!(out, "m=audio {} RTP/AVP", local.rtp_port);
    for c in &local.codecs {
        let _ = write!(out, " {}", c.static_payload_type());
    }
    let _ = write!(out, " {}\r\n", local.telephone_event_pt);
    for c in &local.codecs {
        let _ = write!(
            out,
            "a=rtpmap:{} {}/8000\r\n",
            c.static_payload_type(),
            c.encoding_name()
        );
    }
    let te = local.telephone_event_pt;
    let _ = write!(
        out,
        "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=ptime:{}\r\na={}\r\n",
        local.ptime_ms,
        local.direction.as_str()
    );
    out
}

/// Reads the answer to an offer we made with `local`.
pub fn accept_answer(answer_sdp: &str, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    if answer_sdp.trim().is_empty() {
        return Err(SdpError::NoOffer);
    }
    let ans = SessionDescription::parse(answer_sdp)?;
    let m = ans
        .media
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    let (codec, pt, te) = choose(m, &local.codecs).ok_or_else(|| SdpError::NoCommonCodec {
        offered: m.formats.join(" "),
    })?;
    let remote_ip = m
        .connection
        .or(ans.connection)
        .ok_or(SdpError::NoConnection)?;
    let remote_direction = ans.stream_direction(m);
    Ok(Negotiated {
        codec,
        payload_type: pt,
        remote_rtp: SocketAddr::new(remote_ip, m.port),
        telephone_event_pt: te.map(|(p, _)| p),
        direction: remote_direction.answer_to(local.direction),
        remote_direction,
        remote_ptime_ms: m
            .attribute("ptime")
            .flatten()
            .and_then(|p| p.trim().parse().ok()),
    })
}

/// Fits the app's SDP to a re-offer (re-INVITE or UPDATE: hold, unhold, new address):
/// the audio stream's direction becomes what RFC 3264 §6.1 allows for the offered one
/// (`sendonly` is answered `recvonly`, `inactive` with `inactive`, `sendrecv` with what we
/// want), where what we want is the direction in `ours` (sendrecv when it says none). The
/// `o=` version is the one of our `previous` SDP when nothing else changed, and one more
/// when something did (RFC 3264 §8). Anything unparseable is returned unchanged.
pub fn answer_for_reoffer(offer: &str, ours: &str, previous: Option<&str>) -> String {
    let (Ok(offer_sd), Ok(ours_sd)) = (
        SessionDescription::parse(offer),
        SessionDescription::parse(ours),
    ) else {
        return ours.to_owned();
    };
    let is_audio = |m: &&MediaDescription| m.media.eq_ignore_ascii_case("audio") && m.port != 0;
    let (Some(offered), Some(our_audio)) = (
        offer_sd.media.iter().find(is_audio),
        ours_sd.media.iter().find(is_audio),
    ) else {
        return ours.to_owned();
    };
    let wanted = ours_sd.stream_direction(our_audio);
    let direction = offer_sd.stream_direction(offered).answer_to(wanted);
    let newline = if ours.contains("\r\n") { "\r\n" } else { "\n" };
    // When the direction must change: drop every direction attribute, then put the new one
    // at the end of the first audio section.
    let rewrite = direction != wanted;
    let mut lines: Vec<String> = Vec::new();
    let mut in_audio = false;
    let mut placed = !rewrite;
    for line in ours.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if let Some(media) = line.strip_prefix("m=") {
            if in_audio && !placed {
                lines.push(format!("a={}", direction.as_str()));
                placed = true;
            }
            let mut fields = media.split_whitespace();
            in_audio = !placed
                && fields
                    .next()
                    .is_some_and(|m| m.eq_ignore_ascii_case("audio"))
                && fields.next().is_some_and(|port| port != "0");
        }
        let attr = line.strip_prefix("a=").map(str::trim);
        if rewrite && attr.and_then(Direction::parse).is_some() {
            continue;
        }
        lines.push(line.to_owned());
    }
    if in_audio && !placed {
        lines.push(format!("a={}", direction.as_str()));
    }
    // The o= version.
    let origin_index = lines.iter().position(|l| l.starts_with("o="));
    let version_of = |o: &str| {
        o.split_whitespace()
            .nth(2)
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let (Some(i), Some(prev)) = (origin_index, previous) {
        let prev_lines: Vec<&str> = prev
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .collect();
        let prev_origin = prev_lines.iter().find(|l| l.starts_with("o=")).copied();
        let same_body = prev_lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with("o="))
            .eq(lines
                .iter()
                .filter(|l| !l.starts_with("o="))
                .map(String::as_str));
        if let Some(prev_origin) = prev_origin {
            let prev_version = version_of(prev_origin).unwrap_or(0);
            let mine = version_of(&lines[i]).unwrap_or(0);
            let version = if same_body {
                prev_version
            } else {
                mine.max(prev_version.saturating_add(1))
            };
            let fields: Vec<&str> = lines[i].split_whitespace().collect();
            if fields.len() >= 6 {
                let mut f: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
                f[2] = version.to_string();
                lines[i] = f.join(" ");
            }
        }
    }
    let mut out = lines.join(newline);
    out.push_str(newline);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            session_id: 42,
            ..LocalMedia::new("203.0.113.5".parse().unwrap(), 40000)
        }
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 18 8 0 96\r\na=rtpmap:18 G729/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=ptime:30\r\n\
m=video 51372 RTP/AVP 31\r\n";

    #[test]
    fn answers_first_supported_codec_and_keeps_te_pt() {
        let (sdp, n) = answer(OFFER, &local()).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event_pt, Some(96));
        assert_eq!(n.remote_rtp, "192.0.2.10:49170".parse().unwrap());
        assert_eq!(n.direction, Direction::SendRecv);
        assert_eq!(n.remote_ptime_ms, Some(30));
        assert!(sdp.contains("m=audio 40000 RTP/AVP 8 96\r\n"), "{sdp}");
        assert!(sdp.contains("a=fmtp:96 0-15\r\n"));
        assert!(sdp.contains("m=video 0 RTP/AVP 31\r\n"));
        assert!(sdp.contains("c=IN IP4 203.0.113.5\r\n"));
        // Our answer parses back and negotiates the same thing from the offerer's side.
        let back = SessionDescription::parse(&sdp).unwrap();
        assert_eq!(back.media.len(), 2);
    }

    #[test]
    fn hold_directions() {
        for (attr, expect) in [
            ("a=sendonly", Direction::RecvOnly),
            ("a=recvonly", Direction::SendOnly),
            ("a=inactive", Direction::Inactive),
            ("a=sendrecv", Direction::SendRecv),
        ] {
            let o = format!("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n{attr}\r\n");
            let (sdp, n) = answer(&o, &local()).unwrap();
            assert_eq!(n.direction, expect, "{attr}");
            assert!(sdp.contains(&format!("a={}\r\n", expect.as_str())));
        }
        // RFC 2543 hold.
        let o = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let (_, n) = answer(o, &local()).unwrap();
        assert!(n.remote_direction.is_hold());
        assert_eq!(n.direction, Direction::RecvOnly);
        // Session-level direction applies to streams without their own.
        let o = "v=0\r\nc=IN IP4 192.0.2.1\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            answer(o, &local()).unwrap().1.direction,
            Direction::Inactive
        );
    }

    #[test]
    fn errors() {
        assert_eq!(answer("", &local()).unwrap_err(), SdpError::NoOffer);
        let o = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert!(matches!(
            answer(o, &local()),
            Err(SdpError::NoCommonCodec { .. })
        ));
        let o = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 4000 RTP/AVP 31\r\n";
        assert_eq!(answer(o, &local()).unwrap_err(), SdpError::NoAudio);
        let o = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(answer(o, &local()).unwrap_err(), SdpError::NoConnection);
        let o = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/SAVP 0\r\n";
        assert!(matches!(
            answer(o, &local()),
            Err(SdpError::NoCommonCodec { .. })
        ));
        let o = "v=0\r\nm=audio x RTP/AVP 0\r\n";
        assert!(matches!(
            answer(o, &local()),
            Err(SdpError::Malformed { .. })
        ));
    }

    #[test]
    fn dynamic_pcmu_and_sdp_without_s_and_t_lines() {
        // RFC 4475 mismatch02's SDP has no s= or t= line.
        let o = "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n";
        assert_eq!(answer(o, &local()).unwrap().1.codec, Codec::Pcmu);
        let o = "v=0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 97\na=rtpmap:97 pcmu/8000\n";
        let n = answer(o, &local()).unwrap().1;
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 97));
    }

    #[test]
    fn reoffer_answers_follow_hold_and_unhold() {
        let ours =
            "v=0\r\no=dialtone 42 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n";
        let offer = |dir: &str, v: u32| {
            format!("v=0\r\no=c 1 {v} IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n{dir}")
        };
        // Hold: sendonly is answered recvonly, with a new version.
        let held = answer_for_reoffer(&offer("a=sendonly\r\n", 2), ours, Some(ours));
        assert!(held.contains("a=recvonly\r\n"), "{held}");
        assert!(!held.contains("sendrecv"));
        assert!(held.contains("o=dialtone 42 2 IN IP4"), "{held}");
        // Unhold: back to sendrecv, version again one more.
        let back = answer_for_reoffer(&offer("", 3), ours, Some(&held));
        assert!(back.contains("a=sendrecv\r\n"), "{back}");
        assert!(back.contains("o=dialtone 42 3 IN IP4"), "{back}");
        // Same offer again (a refresh): nothing changes, not even the version.
        let again = answer_for_reoffer(&offer("", 3), ours, Some(&back));
        assert_eq!(again, back);
        // Inactive and RFC 2543 hold.
        let idle = answer_for_reoffer(&offer("a=inactive\r\n", 4), ours, Some(&back));
        assert!(idle.contains("a=inactive\r\n"));
        let old_hold = offer("", 5).replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0");
        assert!(answer_for_reoffer(&old_hold, ours, None).contains("a=recvonly"));
        // The app holding the remote (sendonly) stays sendonly against sendrecv.
        let ours_hold = ours.replace("a=sendrecv", "a=sendonly");
        assert!(answer_for_reoffer(&offer("", 6), &ours_hold, None).contains("a=sendonly"));
        // The result still negotiates.
        let local = LocalMedia::new("192.0.2.1".parse().unwrap(), 4000);
        let seen_by_offerer = accept_answer(&held, &local).unwrap();
        assert_eq!(seen_by_offerer.remote_direction, Direction::RecvOnly);
        // Garbage in, ours out.
        assert_eq!(answer_for_reoffer("nonsense", ours, None), ours);
    }

    #[test]
    fn offer_and_accept_answer_roundtrip() {
        let mut ours = local();
        let o = offer(&ours);
        assert!(o.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
        let remote = LocalMedia {
            codecs: vec![Codec::Pcma, Codec::Pcmu],
            ..LocalMedia::new("198.51.100.7".parse().unwrap(), 30000)
        };
        let (ans, n_remote) = answer(&o, &remote).unwrap();
        assert_eq!(
            n_remote.codec,
            Codec::Pcmu,
            "answerer follows the offerer's order"
        );
        let n = accept_answer(&ans, &ours).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote_rtp, "198.51.100.7:30000".parse().unwrap());
        ours.direction = Direction::SendOnly;
        let hold = offer(&ours);
        assert!(hold.contains("a=sendonly"));
        let (_, n) = answer(&hold, &remote).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
    }
}

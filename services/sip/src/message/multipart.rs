//! Finding one part of a body: the SDP of an INVITE that a carrier sends as
//! `multipart/mixed` together with ISUP (SIP-I/SIP-T), for example.

use super::headers::media_type_of;

/// Returns the first body part whose media type is `wanted` (lowercase, e.g.
/// `application/sdp`): the whole body when `content_type` is `wanted`, or the matching part
/// of a `multipart/*` body (one level of nesting is searched too).
pub fn find_body_part(content_type: &str, body: &[u8], wanted: &str) -> Option<Vec<u8>> {
    find(content_type, body, wanted, 2)
}

fn find(content_type: &str, body: &[u8], wanted: &str, depth: u8) -> Option<Vec<u8>> {
    let media = media_type_of(content_type);
    if media == wanted {
        return Some(body.to_vec());
    }
    if depth == 0 || !media.starts_with("multipart/") {
        return None;
    }
    let boundary = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })?;
    if boundary.is_empty() {
        return None;
    }
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut positions = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d && (i == 0 || body[i - 1] == b'\n') {
            positions.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    for w in positions.windows(2) {
        let mut part = &body[w[0] + d.len()..w[1]];
        // Skip the rest of the delimiter line.
        let nl = part.iter().position(|&b| b == b'\n')?;
        part = &part[nl + 1..];
        // The CRLF before the next delimiter belongs to the delimiter.
        part = part.strip_suffix(b"\n").unwrap_or(part);
        part = part.strip_suffix(b"\r").unwrap_or(part);
        let (headers, content) = split_part(part);
        let ct = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                let k = k.trim();
                (k.eq_ignore_ascii_case("content-type") || k.eq_ignore_ascii_case("c"))
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "text/plain".to_owned());
        if let Some(found) = find(&ct, content, wanted, depth - 1) {
            return Some(found);
        }
    }
    None
}

fn split_part(part: &[u8]) -> (String, &[u8]) {
    let mut i = 0;
    while i < part.len() {
        if part[i..].starts_with(b"\r\n\r\n") {
            return (
                String::from_utf8_lossy(&part[..i]).into_owned(),
                &part[i + 4..],
            );
        }
        if part[i..].starts_with(b"\n\n") {
            return (
                String::from_utf8_lossy(&part[..i]).into_owned(),
                &part[i + 2..],
            );
        }
        i += 1;
    }
    // No headers: RFC 2046 allows a part that starts with the blank line directly.
    if let Some(rest) = part.strip_prefix(b"\r\n") {
        return (String::new(), rest);
    }
    (String::new(), part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_sdp_from_multipart_mixed() {
        let body = b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 4 RTP/AVP 0\r\n\r\n--b1\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n\x01\x02\r\n--b1--\r\n";
        let sdp = find_body_part("multipart/mixed;boundary=b1", body, "application/sdp").unwrap();
        assert_eq!(sdp, b"v=0\r\nm=audio 4 RTP/AVP 0\r\n");
        assert!(find_body_part("multipart/mixed;boundary=b1", body, "text/html").is_none());
        assert_eq!(
            find_body_part("Application/SDP", b"v=0", "application/sdp").unwrap(),
            b"v=0"
        );
    }
}

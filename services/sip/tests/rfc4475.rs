//! RFC 4475 torture tests, read from `tests/data/rfc4475/` (extracted from the RFC's text by
//! `extract.py` there, which is tested at the end of this file). Every row of `manifest.tsv` must have an expectation here;
//! each message is fed as a UDP datagram to the sans-IO UA core and what it sends back is
//! checked (status, reason naming the problem, or silence). Semantic details the manifest
//! names are checked on the parsed messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use dialtone_sip::message::{
    parse_datagram, Contact, HeaderName, Parsed, Response, SipMessage, Uri,
};
use dialtone_sip::ua::{UaConfig, UaOutput, UserAgent};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/rfc4475")
}

fn read(name: &str) -> Vec<u8> {
    let p = corpus_dir().join(format!("{name}.dat"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A response with this status; its reason phrase contains the text (case-insensitive).
    Respond(u16, &'static str),
    /// An INVITE accepted: `100 Trying` and one new call.
    NewCall,
    /// Nothing sent, no call.
    Drop,
}

fn expectations() -> HashMap<&'static str, Expect> {
    use Expect::*;
    HashMap::from([
        // §3.1.1 valid. wsinv's To carries a tag, so it is a request inside a dialog we do not
        // have: the normal answer of a UAS is 481 (RFC 3261 §12.2.2).
        ("wsinv", Respond(481, "")),
        ("intmeth", Respond(501, "")),
        ("esc01", NewCall),
        ("escnull", Respond(405, "")),
        ("esc02", Respond(501, "")),
        ("lwsdisp", Respond(200, "")),
        ("longreq", NewCall),
        ("dblreq", Respond(405, "")),
        ("semiuri", Respond(200, "")),
        ("transports", Respond(200, "")),
        ("mpart01", Respond(405, "")),
        ("unreason", Drop),
        ("noreason", Drop),
        // §3.1.2 invalid
        ("badinv01", Respond(400, "Via")),
        ("clerr", Respond(400, "Content-Length")),
        ("ncl", Respond(400, "Content-Length")),
        ("scalar02", Respond(400, "CSeq")),
        ("scalarlg", Drop),
        ("quotbal", Respond(400, "To header")),
        ("ltgtruri", Respond(400, "Request-URI")),
        ("lwsruri", Respond(400, "request line")),
        ("lwsstart", Respond(400, "request line")),
        ("trws", Respond(400, "request line")),
        ("escruri", Respond(400, "Request-URI")),
        ("baddate", Respond(400, "Date")),
        ("regbadct", Respond(400, "Contact")),
        ("badaspec", Respond(400, "To header")),
        ("baddn", Respond(400, "From header")),
        ("badvers", Respond(505, "Version")),
        ("mismatch01", Respond(400, "CSeq method")),
        ("mismatch02", Respond(400, "CSeq method")),
        ("bigcode", Drop),
        // §3.2-3.4 semantic
        ("badbranch", Respond(200, "")),
        ("insuf", Respond(400, "missing")),
        ("unkscm", Respond(416, "")),
        ("novelsc", Respond(416, "")),
        ("unksm2", Respond(405, "")),
        ("bext01", Respond(420, "")),
        ("invut", Respond(415, "")),
        ("regaut01", Respond(405, "")),
        ("multi01", Respond(400, "multiple")),
        ("mcl01", Respond(400, "Content-Length")),
        ("bcast", Drop),
        ("zeromf", Respond(200, "")),
        ("cparam01", Respond(405, "")),
        ("cparam02", Respond(405, "")),
        ("regescrt", Respond(405, "")),
        ("sdp01", Respond(406, "")),
        ("inv2543", NewCall),
        ("test", Drop),
    ])
}

fn source() -> SocketAddr {
    "192.0.2.200:5060".parse().unwrap()
}

/// Feeds one datagram; returns (responses sent, new calls).
fn run(bytes: &[u8]) -> (Vec<(SocketAddr, Response)>, usize) {
    let mut ua = UserAgent::new(UaConfig::default());
    ua.handle_datagram(Instant::now(), source(), bytes);
    let mut responses = Vec::new();
    let mut calls = 0;
    while let Some(out) = ua.poll_output() {
        match out {
            UaOutput::Transmit(t) => match parse_datagram(&t.data) {
                Ok(Parsed::Message(SipMessage::Response(r))) => responses.push((t.to, r)),
                other => panic!("we sent something that is not a response: {other:?}"),
            },
            UaOutput::IncomingCall(_) => calls += 1,
            other => panic!("unexpected output {other:?}"),
        }
    }
    (responses, calls)
}

#[test]
fn every_manifest_row_is_handled_as_the_rfc_says() {
    let manifest = std::fs::read_to_string(corpus_dir().join("manifest.tsv"))
        .expect("manifest.tsv beside the checkout");
    let table = expectations();
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in manifest.lines().skip(1) {
        let name = line.split('\t').next().unwrap_or("");
        if name.is_empty() {
            continue;
        }
        let Some(expect) = table.get(name) else {
            failures.push(format!("{name}: no expectation in this test"));
            continue;
        };
        checked += 1;
        let (responses, calls) = run(&read(name));
        let ok = match *expect {
            Expect::Drop => responses.is_empty() && calls == 0,
            Expect::NewCall => calls == 1 && responses.len() == 1 && responses[0].1.status == 100,
            Expect::Respond(status, reason) => {
                calls == 0
                    && responses.len() == 1
                    && responses[0].1.status == status
                    && responses[0]
                        .1
                        .reason
                        .to_lowercase()
                        .contains(&reason.to_lowercase())
            }
        };
        if !ok {
            let got: Vec<String> = responses
                .iter()
                .map(|(_, r)| format!("{} {}", r.status, r.reason))
                .collect();
            failures.push(format!(
                "{name}: expected {expect:?}, got {got:?} and {calls} call(s)"
            ));
        }
    }
    assert_eq!(checked, table.len(), "manifest rows vs table entries");
    assert!(
        failures.is_empty(),
        "RFC 4475 failures:\n{}",
        failures.join("\n")
    );
}

fn parse_req(name: &str) -> dialtone_sip::message::Request {
    match parse_datagram(&read(name)) {
        Ok(Parsed::Message(SipMessage::Request(r))) => r,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn wsinv_without_its_to_tag_is_a_new_call() {
    let text = String::from_utf8(read("wsinv")).expect("wsinv is UTF-8");
    let (responses, calls) = run(text.replace(";   tag    = 1918181833n", "").as_bytes());
    assert_eq!(calls, 1);
    assert_eq!(responses[0].1.status, 100);
}

#[test]
fn responses_copy_the_request_identifiers_and_go_back_to_the_sender() {
    let (responses, _) = run(&read("lwsdisp"));
    let (to, r) = &responses[0];
    assert_eq!(
        *to,
        "192.0.2.200:5060".parse().unwrap(),
        "Via sent-by port, source IP"
    );
    assert_eq!(
        r.headers.call_id().unwrap(),
        "lwsdisp.1234abcd@funky.example.com"
    );
    assert_eq!(r.headers.cseq().unwrap().seq, 60);
    assert_eq!(r.headers.from().unwrap().tag(), Some("323"));
    assert!(r.headers.to().unwrap().tag().is_some(), "we add a To tag");
    assert!(r.headers.get(&HeaderName::Allow).is_some());
    let via = r.headers.top_via().unwrap();
    assert_eq!(
        via.received(),
        Some("192.0.2.200"),
        "received added: host was a name"
    );

    let (responses, _) = run(&read("bext01"));
    let unsupported = responses[0].1.headers.list(&HeaderName::Unsupported);
    assert_eq!(
        unsupported,
        vec!["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    let (responses, _) = run(&read("invut"));
    assert_eq!(
        responses[0].1.headers.get(&HeaderName::Accept),
        Some("application/sdp")
    );
    let (responses, _) = run(&read("intmeth"));
    assert!(responses[0].1.headers.get(&HeaderName::Allow).is_some());
    let (responses, _) = run(&read("clerr"));
    assert_eq!(
        responses[0].1.headers.call_id().unwrap(),
        "clerr.0ha0isndaksdjweiafasdk3"
    );
}

#[test]
fn valid_messages_parse_to_what_the_rfc_describes() {
    // 3.1.1.1 wsinv: folding, compact names, odd spacing, escaped quotes.
    let r = parse_req("wsinv");
    assert_eq!(r.headers.cseq().unwrap().seq, 9);
    assert_eq!(r.headers.max_forwards().unwrap(), Some(68));
    let to = r.headers.to().unwrap();
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = r.headers.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "192.0.2.2");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host, "192.168.255.111");
    assert_eq!(r.headers.get(&HeaderName::Subject), Some(""));
    assert_eq!(
        r.headers.get(&HeaderName::parse("NewFangledHeader")),
        Some("newfangled value continued newfangled value")
    );
    let contacts = r.headers.contacts().unwrap();
    let Contact::Addr(c) = &contacts[0] else {
        panic!()
    };
    assert_eq!(c.display_name.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(c.params.value("q"), Some("0.33"));
    assert_eq!(r.body.len(), 150);

    // 3.1.1.2 intmeth: exotic method, URI user/password, Call-ID, UTF-8 params.
    let r = parse_req("intmeth");
    assert_eq!(
        r.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    let Uri::Sip(u) = &r.uri else { panic!() };
    assert_eq!(
        u.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.headers.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert!(r
        .headers
        .to()
        .unwrap()
        .display_name
        .unwrap()
        .contains('\u{7}'));

    // 3.1.1.3 esc01: escapes decode.
    let r = parse_req("esc01");
    assert_eq!(r.uri.user().as_deref(), Some("sips:user@example.com"));
    assert_eq!(r.headers.to().unwrap().uri.user().as_deref(), Some("user"));
    assert_eq!(
        r.headers.from().unwrap().uri.user().as_deref(),
        Some("I have spaces")
    );
    let Some(Uri::Sip(c)) = r.headers.contact_uri().unwrap() else {
        panic!()
    };
    assert_eq!(c.user_decoded().as_deref(), Some("caller"));
    assert_eq!(c.params.0[0].name, "%6C%72");

    // 3.1.1.4 escnull: %00 kept, two distinct contacts.
    let r = parse_req("escnull");
    assert_eq!(
        r.headers.to().unwrap().uri.user().as_deref(),
        Some("null-\0-null")
    );
    let users: Vec<String> = r
        .headers
        .contacts()
        .unwrap()
        .into_iter()
        .map(|c| match c {
            Contact::Addr(a) => a.uri.user().unwrap(),
            Contact::Wildcard => panic!(),
        })
        .collect();
    assert_eq!(users, vec!["\0".to_string(), "\0\0".to_string()]);

    // 3.1.1.5 esc02: RE%47IST%45R is not REGISTER; C%6Fntact is not Contact.
    let r = parse_req("esc02");
    assert_eq!(r.method.as_str(), "RE%47IST%45R");
    assert_eq!(r.headers.contacts().unwrap().len(), 2);

    // 3.1.1.7 longreq: 34 Vias across compact and case variants.
    let r = parse_req("longreq");
    assert_eq!(r.headers.vias().unwrap().len(), 34);

    // 3.1.1.8 dblreq: only the REGISTER.
    let r = parse_req("dblreq");
    assert_eq!(r.method.as_str(), "REGISTER");
    assert!(r.body.is_empty());

    // 3.1.1.9 semiuri.
    assert_eq!(
        parse_req("semiuri").uri.user().as_deref(),
        Some("user;par=u@example.net")
    );

    // 3.1.1.10 transports.
    let t: Vec<String> = parse_req("transports")
        .headers
        .vias()
        .unwrap()
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(t, vec!["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);

    // 3.1.1.11 mpart01: binary body framed by Content-Length, NULs intact.
    let r = parse_req("mpart01");
    assert_eq!(r.body.len(), 553);
    assert!(r.body.contains(&0));
    assert!(r.body.ends_with(b"--7a9cbec02ceef655--\r\n"));

    // 3.1.1.12/13: reason phrases.
    for (name, reason) in [
        (
            "unreason",
            "= 2**3 * 5**2 но сто девяносто девять - простое",
        ),
        ("noreason", ""),
    ] {
        match parse_datagram(&read(name)) {
            Ok(Parsed::Message(SipMessage::Response(r))) => {
                assert_eq!(r.reason, reason, "{name}");
            }
            other => panic!("{other:?}"),
        }
    }

    // 3.3.12/13/14: contact params vs URI params, escaped headers in a binding.
    let Contact::Addr(c) = parse_req("cparam01").headers.contacts().unwrap().remove(0) else {
        panic!()
    };
    assert!(c.params.contains("unknownparam"));
    assert!(c.uri.params().unwrap().is_empty());
    let Contact::Addr(c) = parse_req("cparam02").headers.contacts().unwrap().remove(0) else {
        panic!()
    };
    assert!(c.params.is_empty());
    assert!(c.uri.params().unwrap().contains("unknownparam"));
    let Some(Uri::Sip(u)) = parse_req("regescrt").headers.contact_uri().unwrap() else {
        panic!()
    };
    assert_eq!(
        u.headers,
        vec![("Route".to_string(), "%3Csip:sip.example.com%3E".to_string())]
    );

    // 3.4.1 inv2543: no Content-Length over UDP, body to the end of the datagram.
    let r = parse_req("inv2543");
    assert!(r.body.starts_with(b"v=0"));
    assert!(r.headers.from().unwrap().tag().is_none());
}

#[test]
fn serializing_and_reparsing_keeps_every_valid_message_equal() {
    for name in [
        "wsinv",
        "intmeth",
        "esc01",
        "escnull",
        "esc02",
        "lwsdisp",
        "longreq",
        "dblreq",
        "semiuri",
        "transports",
        "mpart01",
        "unreason",
        "noreason",
        "inv2543",
    ] {
        let first = match parse_datagram(&read(name)) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("{name}: {other:?}"),
        };
        let again = match parse_datagram(&first.to_bytes()) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("{name} reparse: {other:?}"),
        };
        // Only Content-Length may differ (it is always written from the body).
        let strip = |m: &SipMessage| {
            let mut h = m.headers().clone();
            h.remove(&HeaderName::ContentLength);
            h
        };
        assert_eq!(strip(&first), strip(&again), "{name}");
        let body = |m: &SipMessage| match m {
            SipMessage::Request(r) => r.body.clone(),
            SipMessage::Response(r) => r.body.clone(),
        };
        assert_eq!(body(&first), body(&again), "{name}");
    }
}

/// `extract.py` finds the archive in the RFC's layout (the decoy marker pair of the RFC's own
/// Perl listing first, page furniture inside the archive) and proves the files identical, or
/// names the message that differs.
#[test]
fn the_extraction_script_reads_the_rfc_layout() {
    const BUILD: &str = r#"
import base64, io, os, sys, tarfile
here, out, alter = sys.argv[1], sys.argv[2], sys.argv[3]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for name in sorted(os.listdir(here)):
        if name.endswith(".dat"):
            data = open(os.path.join(here, name), "rb").read()
            if name == alter:
                data = data.replace(b"SIP/2.0", b"SIP/2.1", 1)
            info = tarfile.TarInfo("torture/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
b64 = base64.b64encode(buf.getvalue()).decode()
lines = [b64[i:i + 68] for i in range(0, len(b64), 68)]
page = ["", "", "Sparks, et al.              Informational                    [Page 47]", "\f",
        "RFC 4475                SIP Torture Test Messages               May 2006", "", ""]
body = []
for i, line in enumerate(lines):
    body.append("   " + line)
    if i % 50 == 49:
        body.extend(page)
text = "\n".join([
    "   if (/-- BEGIN MESSAGE ARCHIVE --/ .. /-- END MESSAGE ARCHIVE --/) {",
    "   }", "", "   -- BEGIN MESSAGE ARCHIVE --"] + body + ["   -- END MESSAGE ARCHIVE --", ""])
open(out, "w", encoding="latin-1").write(text)
"#;
    let here = corpus_dir();
    let dir = std::env::temp_dir().join(format!("rfc4475-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |alter: &str| {
        let text = dir.join(format!("rfc-{alter}.txt"));
        let built = std::process::Command::new("python3")
            .args(["-c", BUILD])
            .arg(&here)
            .arg(&text)
            .arg(alter)
            .status()
            .expect("python3");
        assert!(built.success());
        let output = std::process::Command::new("python3")
            .arg(here.join("extract.py"))
            .arg(&text)
            .arg("--check")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = run("none");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("ok: 50 messages"), "{out}");
    let (code, out) = run("wsinv.dat");
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.trim(), "differ from the RFC: wsinv");
    let _ = std::fs::remove_dir_all(&dir);
}

use dialtone_sip::message::*;
#[test]
fn explore() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/rfc4475");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| { let p = e.unwrap().path(); (p.extension()? == "dat").then_some(p) }).collect();
    names.sort();
    for p in names {
        let b = std::fs::read(&p).unwrap();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        let out = match parse_datagram(&b) {
            Ok(Parsed::Message(SipMessage::Request(r))) => format!("REQ {} -> {:?}", r.method, validate_request(&r).err().map(|e| e.to_string())),
            Ok(Parsed::Message(SipMessage::Response(r))) => format!("RESP {} -> {:?}", r.status, validate_response(&r).err()),
            Ok(Parsed::KeepAlive) => "keepalive".into(),
            Err(f) => format!("ERR {} (partial via={:?})", f.error, f.partial.map(|p| p.headers.contains(&HeaderName::Via))),
        };
        println!("{name:12} {out}");
    }
}

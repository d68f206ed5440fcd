//! `docs/events.md` documents exactly the event types the code knows.

use std::collections::BTreeSet;

use dialtone_events::Payload;

#[test]
fn every_event_type_is_documented_and_every_documented_type_exists() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md");
    let doc = std::fs::read_to_string(path).expect("docs/events.md is readable");
    let documented: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .collect();
    let known: BTreeSet<&str> = Payload::TYPES.iter().copied().collect();
    let undocumented: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        undocumented.is_empty(),
        "types missing from docs/events.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/events.md lists types the code does not know: {unknown:?}"
    );
}

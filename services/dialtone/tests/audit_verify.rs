//! `dialtone audit verify` accepts an intact log and names the first tampered event.

use std::process::Command;

use dialtone_events::conformance::marker;
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion};

fn verify(dir: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn verify_catches_an_event_edited_with_plain_sql() {
    let dir = tempfile::tempdir().unwrap();
    let account = AccountSid::generate();
    let calls: Vec<CallSid> = (0..5).map(|_| CallSid::generate()).collect();
    {
        let log = SqliteLog::open(dir.path().join("events.db"), "test").unwrap();
        for call in &calls {
            let events = (0..4).map(|i| marker(&account, i, "w")).collect();
            log.append(call.as_str(), ExpectedVersion::NoStream, events)
                .await
                .unwrap();
        }
        log.close();
    }
    let (code, out) = verify(dir.path());
    assert_eq!((code, out.trim()), (0, "ok: 5 streams, 20 events"));

    // Tamper with the second event of the third call, as an attacker with the file would.
    let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE events SET data = replace(data, '\"index\":1', '\"index\":7') WHERE stream = ?1 AND sequence = 2",
            [calls[2].as_str()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let (code, out) = verify(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!("broken: stream {} sequence ", calls[2])),
        "{out}"
    );

    // Editing a stream's last event is caught too (by its stored hash).
    let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
    conn.execute(
        "UPDATE events SET data = replace(data, '\"index\":7', '\"index\":1') WHERE stream = ?1",
        [calls[2].as_str()],
    )
    .unwrap();
    conn.execute(
        "UPDATE events SET data = replace(data, '\"index\":3', '\"index\":9') WHERE stream = ?1 AND sequence = 4",
        [calls[4].as_str()],
    )
    .unwrap();
    drop(conn);
    let (code, out) = verify(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!("broken: stream {} sequence 4", calls[4])),
        "{out}"
    );
}

#[test]
fn verify_of_a_missing_log_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path().join("nothing-here"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no event log at"));
}

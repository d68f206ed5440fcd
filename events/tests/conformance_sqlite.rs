//! The log conformance suite against the SQLite backend.

use std::sync::Arc;

use dialtone_events::sqlite::SqliteLog;
use dialtone_events::EventLog;

fn open() -> Arc<dyn EventLog> {
    // The directory lives as long as the test process; each test gets its own.
    let dir = tempfile::tempdir().unwrap().keep();
    Arc::new(SqliteLog::open(dir.join("events.db"), "test-node").unwrap())
}

dialtone_events::conformance_tests!(open());

/// A command run beside the server (`dialtone billing credit`) appends to a stream the
/// server's writer has a cached head for: the server's next append still lands, after it.
#[tokio::test]
async fn appends_from_another_process_do_not_break_the_writers_cached_heads() {
    use dialtone_events::payload::AccountUpdated;
    use dialtone_events::{ExpectedVersion, NewEvent};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let server = SqliteLog::open(&path, "server").unwrap();
    let command = SqliteLog::open(&path, "command").unwrap();
    let update = || {
        vec![NewEvent::new(
            "AC0123",
            AccountUpdated {
                friendly_name: Some("x".into()),
                status: None,
            },
        )]
    };
    let stream = "AC0123";
    server
        .append(stream, ExpectedVersion::Any, update())
        .await
        .unwrap();
    command
        .append(stream, ExpectedVersion::Any, update())
        .await
        .unwrap();
    let third = server
        .append(stream, ExpectedVersion::Any, update())
        .await
        .unwrap();
    assert_eq!(third.first_sequence, 3);
    // A version check made against the stale head is refused, not slipped in.
    command
        .append(stream, ExpectedVersion::Any, update())
        .await
        .unwrap();
    let stale = server
        .append(stream, ExpectedVersion::Exact(3), update())
        .await;
    assert!(
        matches!(
            stale,
            Err(dialtone_events::LogError::VersionConflict { .. })
        ),
        "{stale:?}"
    );
    let events = server.read_stream(stream, 1).await.unwrap();
    assert_eq!(events.len(), 4);
    let report = server.verify(|_| {}).unwrap();
    assert!(
        matches!(report, dialtone_events::audit::VerifyReport::Ok { .. }),
        "{report:?}"
    );
}

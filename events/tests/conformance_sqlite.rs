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

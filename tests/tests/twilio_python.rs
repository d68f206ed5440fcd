//! Twilio's helper library for Python (twilio-python, `./infra/test.sh` installs it) against
//! Dialtone with only its base URL changed: `tests/python/*.py`, each a developer's session.

use dialtone_tests::{Backend, Dialtone};

fn run(script: &str, dialtone: &Dialtone) {
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("DIALTONE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = std::process::Command::new(python)
        .arg(&path)
        .env("DIALTONE_URL", &dialtone.http_url)
        .env("DIALTONE_AC", &dialtone.account_sid)
        .env("DIALTONE_TOKEN", &dialtone.auth_token)
        .output()
        .expect("python with twilio (DIALTONE_PYTHON; ./infra/test.sh installs it)");
    assert!(
        output.status.success(),
        "{script} failed:\n{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        dialtone.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_python_manages_accounts_subaccounts_and_keys() {
    let dialtone = Dialtone::start(Backend::Sqlite).await;
    tokio::task::block_in_place(|| run("accounts.py", &dialtone));
}

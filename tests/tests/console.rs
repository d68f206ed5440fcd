//! The web console in a real browser: Debian's Chromium, headless, driven by Playwright for
//! Python (`tests/console/browser.py`; `./infra/test.sh` installs both), against `dialtone
//! serve`, a TwiML app and a real sipp call that leaves a recording. The browser logs in
//! (after a wrong token), creates a number and points it at the app; sipp calls it; the
//! browser finds the call in the list, opens its timeline, plays its recording, reads the
//! usage chart and its CSV, watches an event arrive live, and checks a phone-sized screen.
//!
//! Screenshots of every page go to `DIALTONE_CONSOLE_SCREENSHOTS` (a temporary directory by
//! default); the README shows the ones in docs/console/.

use dialtone_tests::{eventually, Backend, Dialtone, RtpSink, Sipp, TwimlApp};

const NUMBER: &str = "+14155550177";

fn browser(
    phase: &str,
    dialtone: &Dialtone,
    app: &TwimlApp,
    key: &(String, String),
    shots: &std::path::Path,
) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/console/browser.py");
    let python = std::env::var("DIALTONE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(phase)
        .env("DIALTONE_URL", &dialtone.http_url)
        .env("DIALTONE_AC", &dialtone.account_sid)
        .env("DIALTONE_TOKEN", &dialtone.auth_token)
        .env("DIALTONE_NUMBER", NUMBER)
        .env("DIALTONE_VOICE_URL", app.url("/voice"))
        .env("DIALTONE_SCREENSHOTS", shots)
        .env("DIALTONE_KEY_SID", &key.0)
        .env("DIALTONE_KEY_SECRET", &key.1)
        .output()
        .expect("python with playwright (DIALTONE_PYTHON; ./infra/test.sh installs it)");
    assert!(
        output.status.success(),
        "the browser's {phase} phase failed:\n{}{}\nscreenshots in {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        shots.display(),
        dialtone.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let app = TwimlApp::start().await;
    let dialtone = Dialtone::start(Backend::Sqlite).await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Record timeout="2" playBeep="false" maxLength="30" action="/recorded"/></Response>"#,
    );
    app.twiml("/recorded", "<Response><Hangup/></Response>");
    let temp = tempfile::tempdir().unwrap();
    let shots = std::env::var("DIALTONE_CONSOLE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| temp.path().to_path_buf());

    let (status, created) = dialtone
        .post("Keys.json", &[("FriendlyName", "console")])
        .await;
    assert_eq!(status, 201, "{created}");
    let key = (
        created["sid"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    );
    let phase = {
        let (dialtone, app, key, shots) = (&dialtone, &app, &key, shots.clone());
        move |name: &'static str| {
            let shots = shots.clone();
            tokio::task::block_in_place(move || browser(name, dialtone, app, key, &shots))
        }
    };
    phase("numbers");

    // A real call to the number the browser created: the caller speaks, Dialtone records.
    let rtp = RtpSink::start();
    let run = Sipp::scenario("inbound_record.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp failed", &dialtone);
    let call = dialtone.finished_call().await;
    let sid = call["sid"].as_str().unwrap().to_owned();
    eventually(20, "the call's recording", || async {
        let (_, body) = dialtone.get(&format!("Calls/{sid}/Recordings.json")).await;
        body["recordings"]
            .as_array()
            .and_then(|r| r.first().cloned())
            .filter(|r| r["status"] == "completed")
    })
    .await;
    phase("calls");
}

//! sipp as the SIP peer: runs a committed scenario (`tests/scenarios/*.xml`) as a child
//! process and reports whether every call succeeded.

use std::path::PathBuf;
use std::process::Command;

use crate::free_port;

pub struct Sipp {
    scenario: PathBuf,
    keys: Vec<(String, String)>,
    duration_ms: Option<u64>,
    calls: u32,
    rate: Option<u32>,
    port: u16,
    tcp: bool,
}

/// What sipp did.
#[derive(Debug)]
pub struct SippRun {
    pub success: bool,
    pub output: String,
}

impl SippRun {
    /// Fails the test unless sipp's scenario succeeded, showing sipp's output and the log of
    /// `dialtone` (what a failing call needs to be understood).
    pub fn assert_success(&self, what: &str, dialtone: &crate::Dialtone) {
        assert!(self.success, "{what}:\n{}\n{}", self.output, dialtone.log());
    }
}

impl Sipp {
    /// A scenario from `tests/scenarios/`.
    pub fn scenario(name: &str) -> Sipp {
        let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(name);
        assert!(scenario.exists(), "no scenario {}", scenario.display());
        Sipp {
            scenario,
            keys: Vec::new(),
            duration_ms: None,
            calls: 1,
            rate: None,
            port: crate::free_sip_port(),
            tcp: false,
        }
    }

    /// A `[key]` substitution in the scenario.
    pub fn key(mut self, key: &str, value: impl ToString) -> Sipp {
        self.keys.push((key.to_owned(), value.to_string()));
        self
    }

    /// SIP over TCP (sipp `-t t1`: one connection).
    pub fn over_tcp(mut self) -> Sipp {
        self.tcp = true;
        self
    }

    /// How many calls to make or take (sipp `-m`).
    pub fn calls(mut self, calls: u32) -> Sipp {
        self.calls = calls;
        self
    }

    /// New calls per second (sipp `-r`; sipp's default is 10).
    pub fn rate(mut self, calls_per_second: u32) -> Sipp {
        self.rate = Some(calls_per_second);
        self
    }

    /// How long `<pause/>` lasts (sipp `-d`).
    pub fn pause_ms(mut self, ms: u64) -> Sipp {
        self.duration_ms = Some(ms);
        self
    }

    /// The SIP port sipp listens on (a free one by default); a callee's address is
    /// `127.0.0.1:<port>`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs against `target` (`host:port`) on a blocking thread.
    pub async fn run(self, target: String) -> SippRun {
        tokio::task::spawn_blocking(move || self.run_blocking(Some(&target)))
            .await
            .unwrap()
    }

    /// Runs as a callee (UAS) waiting for one call, in the background.
    pub fn spawn_uas(self) -> tokio::task::JoinHandle<SippRun> {
        tokio::task::spawn_blocking(move || self.run_blocking(None))
    }

    pub fn run_blocking(&self, target: Option<&str>) -> SippRun {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sipp");
        command
            .current_dir(dir.path())
            .arg("-sf")
            .arg(&self.scenario)
            .args([
                "-m",
                &self.calls.to_string(),
                "-i",
                "127.0.0.1",
                "-nostdin",
                "-trace_err",
            ])
            .args(["-p", &self.port.to_string()])
            .args(["-mp", &free_port(true).to_string()])
            .args(["-timeout", "60s", "-timeout_error"]);
        if self.tcp {
            command.args(["-t", "t1"]);
        }
        if let Some(rate) = self.rate {
            command.args(["-r", &rate.to_string()]);
        }
        if let Some(ms) = self.duration_ms {
            command.args(["-d", &ms.to_string()]);
        }
        for (key, value) in &self.keys {
            command.args(["-key", key, value]);
        }
        if let Some(target) = target {
            command.arg(target);
        }
        let output = command
            .output()
            .expect("sipp is installed (apt install sip-tester)");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        for entry in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with("errors.log") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        SippRun {
            success: output.status.success(),
            output: text,
        }
    }
}

//! `dialtone serve` as a child process with its own data dir and ports.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::free_port;

/// Which event log the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Kafka,
}

/// How to start a node.
pub struct NodeOptions {
    pub backend: Backend,
    /// TOML appended to the generated config.
    pub extra_toml: String,
    pub node_id: String,
    /// Kafka topic prefix (a fresh one when `None`).
    pub topic_prefix: Option<String>,
    /// `DIALTONE_SECRET`: the nodes of one cluster share it.
    pub secret: Option<String>,
    /// The account to use when the cluster already has one (the node then prints none).
    pub account: Option<(String, String)>,
    /// `roles = …` (`--roles`); all when `None`.
    pub roles: Option<String>,
    /// Kafka bootstrap servers (default `DIALTONE_KAFKA_BROKERS`, else 127.0.0.1:9092).
    pub brokers: Option<String>,
    /// `read_models = …` (`--read-models`): a `postgres://…` URL shares them there.
    pub read_models: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            backend: Backend::Sqlite,
            extra_toml: String::new(),
            node_id: "e2e".into(),
            topic_prefix: None,
            secret: None,
            account: None,
            roles: None,
            brokers: None,
            read_models: None,
        }
    }
}

impl NodeOptions {
    /// Node `node_id` of the Kafka cluster `cluster` (its topics and secret, unique to this
    /// test process): the account of `first` when the cluster has one already.
    pub fn member(cluster: &str, node_id: &str, first: Option<&Dialtone>) -> NodeOptions {
        NodeOptions {
            backend: Backend::Kafka,
            node_id: node_id.to_owned(),
            topic_prefix: Some(format!("{cluster}-{:08x}", std::process::id())),
            secret: Some(format!("{cluster}-test-secret-0123456789abcdef")),
            account: first.map(|d| (d.account_sid.clone(), d.auth_token.clone())),
            ..NodeOptions::default()
        }
    }
}

/// A running server. Killed (SIGTERM, then SIGKILL) on drop.
pub struct Dialtone {
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub sip_port: u16,
    pub http_url: String,
    pub account_sid: String,
    pub auth_token: String,
    pub backend: Backend,
    stderr_log: PathBuf,
    config_path: PathBuf,
    secret: Option<String>,
    http: reqwest::Client,
}

/// The `dialtone` binary built beside this test binary (`target/<profile>/dialtone`), or
/// `DIALTONE_BIN`.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("DIALTONE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("dialtone");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p dialtone`",
        bin.display()
    );
    bin
}

impl Dialtone {
    /// Starts a server on fresh ports and data dir; waits for `/healthz` and the first
    /// account, which `serve` prints on its first start.
    pub async fn start(backend: Backend) -> Dialtone {
        Self::start_with(backend, "").await
    }

    /// Like [`Dialtone::start`], with extra TOML appended to the config file.
    pub async fn start_with(backend: Backend, extra_toml: &str) -> Dialtone {
        Self::start_node(NodeOptions {
            backend,
            extra_toml: extra_toml.to_owned(),
            ..NodeOptions::default()
        })
        .await
    }

    /// A node with explicit cluster settings (several nodes can share one Kafka log).
    pub async fn start_node(options: NodeOptions) -> Dialtone {
        let NodeOptions {
            backend,
            extra_toml,
            node_id,
            topic_prefix,
            secret,
            account,
            roles,
            brokers,
            read_models,
        } = options;
        let data_dir = tempfile::tempdir().unwrap();
        let sip_port = crate::free_sip_port();
        let http_port = free_port(false);
        let rtp_low = 20_000 + (rand_u16() % 400) * 100;
        let log = match backend {
            Backend::Sqlite => "sqlite".to_owned(),
            Backend::Kafka => format!(
                "kafka://{}",
                brokers.unwrap_or_else(|| std::env::var("DIALTONE_KAFKA_BROKERS")
                    .unwrap_or_else(|_| "127.0.0.1:9092".into()))
            ),
        };
        let topic_prefix =
            topic_prefix.unwrap_or_else(|| format!("e2e-{:04x}{:04x}", rand_u16(), rand_u16()));
        let config = format!(
            "data_dir = {data:?}\nlog = {log:?}\nsip_addr = \"127.0.0.1:{sip_port}\"\nhttp_addr = \"127.0.0.1:{http_port}\"\n\
             rtp_ports = \"{rtp_low}-{rtp_high}\"\npublic_ip = \"127.0.0.1\"\nnode_id = {node_id:?}\nroles = {roles:?}\nread_models = {read_models:?}\n\
             [kafka]\ntopic_prefix = {topic_prefix:?}\npartitions = 2\n\
             [media]\n# Tests listen for Dialtone's RTP where the SDP says, while sipp sends from elsewhere.\nsymmetric_rtp = false\n{extra_toml}\n",
            data = data_dir.path().join("data"),
            rtp_high = rtp_low + 99,
            roles = roles.unwrap_or_else(|| "all".to_owned()),
            read_models = read_models.unwrap_or_else(|| "sqlite".to_owned()),
        );
        let config_path = data_dir.path().join("dialtone.toml");
        std::fs::write(&config_path, config).unwrap();
        let stderr_log = data_dir.path().join("serve.log");
        let mut server = Dialtone {
            child: None,
            data_dir,
            sip_port,
            http_url: format!("http://127.0.0.1:{http_port}"),
            account_sid: String::new(),
            auth_token: String::new(),
            backend,
            stderr_log,
            config_path,
            secret,
            http: reqwest::Client::new(),
        };
        let printed = server.spawn(account.is_none());
        let (account_sid, auth_token) = account.or(printed).expect("an account");
        server.account_sid = account_sid;
        server.auth_token = auth_token;
        server.wait_healthy().await;
        server.check_alive();
        server
    }

    /// Starts `dialtone serve` on this server's config; with `first_start`, reads the account
    /// it prints.
    fn spawn(&mut self, first_start: bool) -> Option<(String, String)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .unwrap();
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info,dialtone=debug")
            .envs(self.secret.clone().map(|s| ("DIALTONE_SECRET", s)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start dialtone serve");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the reader has gone, so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        if !first_start {
            return None;
        }
        let line = rx
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| {
                panic!(
                    "serve printed no account within 90 s; its log:\n{}",
                    self.log()
                )
            });
        let account: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad account line {line:?}: {e}"));
        Some((
            account["account_sid"].as_str().unwrap().to_owned(),
            account["auth_token"].as_str().unwrap().to_owned(),
        ))
    }

    async fn wait_healthy(&mut self) {
        let health = format!("{}/healthz", self.http_url);
        let http = self.http.clone();
        crate::eventually(60, "/healthz", || {
            let (http, health) = (http.clone(), health.clone());
            async move {
                http.get(&health)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        self.check_alive();
    }

    /// Stops the server cleanly (SIGTERM) and starts it again on the same data dir, ports
    /// and account.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn(false);
        self.wait_healthy().await;
    }

    /// Kills the server (SIGKILL: no drain, no clean stop on the log).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same data dir.
    pub async fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn(false);
        self.wait_healthy().await;
    }

    fn check_alive(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dialtone serve exited with {status}; log:\n{}", self.log());
            }
        }
    }

    /// The server's configuration file (for CLI commands that read the same log).
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Runs a `dialtone` command against this server's log and data (`--config` appended).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the dialtone CLI")
    }

    /// The node's own read-model database (`<data dir>/readmodels.db`).
    pub fn read_models_path(&self) -> PathBuf {
        self.data_dir.path().join("data").join("readmodels.db")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn sip_addr(&self) -> String {
        format!("127.0.0.1:{}", self.sip_port)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{}",
            self.http_url, self.account_sid, path
        )
    }

    /// GET a Twilio API path (relative to the account) → (status, JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GET a native API path (relative to `/v1/Accounts/{AC}/`) → (status, JSON).
    pub async fn get_v1(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!(
                "{}/v1/Accounts/{}/{path}",
                self.http_url, self.account_sid
            ))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POST a form to a native API path (relative to `/v1/Accounts/{AC}/`) → (status, JSON).
    pub async fn post_v1(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(format!(
                "{}/v1/Accounts/{}/{path}",
                self.http_url, self.account_sid
            ))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A recording's audio through the API (`Recordings/{sid}.wav`): the 16-bit samples after
    /// the 44-byte WAV header (interleaved when there are two channels).
    pub async fn recording_samples(&self, recording_sid: &str) -> Vec<i16> {
        let response = self
            .http
            .get(self.url(&format!("Recordings/{recording_sid}.wav")))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "audio/x-wav");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        bytes[44..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// DELETE a Twilio API path → status.
    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.url(path))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// POST a form to a Twilio API path → (status, JSON).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Provisions `number` with the given voice URL (and optional fallback).
    pub async fn provision(
        &self,
        number: &str,
        voice_url: &str,
        fallback_url: Option<&str>,
    ) -> Value {
        let mut form = vec![("PhoneNumber", number), ("VoiceUrl", voice_url)];
        if let Some(fallback) = fallback_url {
            form.push(("VoiceFallbackUrl", fallback));
        }
        let (status, body) = self.post("IncomingPhoneNumbers.json", &form).await;
        assert_eq!(status, 201, "provisioning {number}: {body}");
        body
    }

    /// All calls of the account, newest first.
    pub async fn calls(&self) -> Vec<Value> {
        let (status, body) = self.get("Calls.json").await;
        assert_eq!(status, 200, "{body}");
        body["calls"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until a call exists and has a final status; returns it.
    pub async fn finished_call(&self) -> Value {
        crate::eventually(30, "a finished call", || async {
            self.calls().await.into_iter().find(|c| {
                matches!(
                    c["status"].as_str(),
                    Some("completed" | "busy" | "failed" | "no-answer" | "canceled")
                )
            })
        })
        .await
    }

    /// The call's event history (`/v1/…/Events`).
    pub async fn call_events(&self, call_sid: &str) -> Vec<Value> {
        let url = format!(
            "{}/v1/Accounts/{}/Calls/{}/Events",
            self.http_url, self.account_sid, call_sid
        );
        let response = self
            .http
            .get(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "events: {}",
            response.status()
        );
        response.json::<Vec<Value>>().await.unwrap()
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.http_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the server with SIGTERM (a clean drain) and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().unwrap()
    }
}

impl Drop for Dialtone {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("---- dialtone serve log ----\n{}", self.log());
            }
        }
    }
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let pid = std::process::id();
    ((nanos ^ pid.rotate_left(16) ^ (nanos >> 7)) & 0xffff) as u16
}

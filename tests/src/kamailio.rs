//! Kamailio (Debian `kamailio`) as the cluster's SIP load balancer, run as a child process
//! with the repository's configuration (`infra/kamailio/dialtone.cfg`) and a dispatcher list
//! of the given voice nodes.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Kamailio. Stopped (SIGTERM, then SIGKILL) on drop.
pub struct Kamailio {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The repository's Kamailio configuration.
pub fn config_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/kamailio/dialtone.cfg")
        .canonicalize()
        .expect("infra/kamailio/dialtone.cfg")
}

impl Kamailio {
    /// Starts Kamailio on a free port of 127.0.0.1 in front of `nodes` (`host:port` each,
    /// set 1) and waits until it answers OPTIONS.
    pub fn start(nodes: &[String]) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("dispatcher.list");
        let lines: String = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("1 sip:{node} 0 0 duid=voice-{i}\n"))
            .collect();
        std::fs::write(&list, lines).unwrap();
        let port = crate::free_sip_port();
        let stderr = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-f"])
            .arg(config_path())
            .args(["-l", &format!("udp:127.0.0.1:{port}")])
            .args(["-l", &format!("tcp:127.0.0.1:{port}")])
            .args(["-A", &format!("DISPATCHER_LIST=\"{}\"", list.display())])
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-Y")
            .arg(dir.path())
            .args(["-m", "64", "-M", "8"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("kamailio is installed (apt install kamailio)");
        let kamailio = Kamailio {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !kamailio.answers_options() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not start:\n{}",
                kamailio.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        kamailio
    }

    /// `127.0.0.1:<port>`, where callers send.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kamailio's own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }

    /// Whether the proxy answers an OPTIONS addressed to itself with 200.
    pub fn answers_options(&self) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let request = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe{n}\r\n\
             From: <sip:test@{local}>;tag=probe\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{n}@test\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            port = self.port,
            n = local.port(),
        );
        if socket.send_to(request.as_bytes(), self.addr()).is_err() {
            return false;
        }
        let mut buffer = [0u8; 4096];
        matches!(socket.recv(&mut buffer), Ok(n) if buffer[..n].starts_with(b"SIP/2.0 200"))
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..50 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

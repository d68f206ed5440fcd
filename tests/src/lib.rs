//! Helpers for end-to-end tests: run `dialtone serve` as a child process against either log
//! backend, serve TwiML from a real HTTP app that checks Twilio signatures, call with sipp,
//! and catch the RTP Dialtone sends.

pub mod app;
pub mod dialtone;
pub mod kamailio;
pub mod postgres;
pub mod rtp;
pub mod sipp;

pub use app::{AppRequest, TwimlApp};
pub use dialtone::{Backend, Dialtone, NodeOptions};
pub use kamailio::Kamailio;
pub use postgres::Postgres;
pub use rtp::RtpSink;
pub use sipp::{Sipp, SippRun};

/// A free local port (TCP or UDP), as far as one can tell without holding it.
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// A port free for both UDP and TCP (SIP listens on both).
pub fn free_sip_port() -> u16 {
    loop {
        let port = free_port(true);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {seconds} s waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

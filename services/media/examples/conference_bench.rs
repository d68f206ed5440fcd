//! Conference load: N participants in rooms of K, every participant's remote sending a 20 ms
//! G.711 packet every 20 ms (one feeder thread), every participant's mix sent to one sink.
//! Prints the CPU of each media thread over the measured period.
//!
//! `cargo run --release -p dialtone-media --example conference_bench -- 300 5 10`
//! (participants, room size, seconds; the third argument `bridge` mode: pairs of bridges).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_media::{BridgeOptions, Codec, MediaConfig, MediaRuntime, ParticipantOptions};

/// CPU time (user + system, in clock ticks) of each thread of this process, by name.
fn thread_cpu() -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        *out.entry(name).or_insert(0) += ticks;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let participants: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let room_size: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let bridges = args.get(4).is_some_and(|a| a == "bridge");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _guard = rt.enter();
    let media = MediaRuntime::start(MediaConfig {
        bind_ip: "127.0.0.1".parse().expect("ip"),
        rtp_ports: 30000..=49999,
        engine_threads: 2,
        symmetric_rtp: false,
        ..MediaConfig::default()
    })
    .expect("media runtime");
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    sink.set_nonblocking(true).expect("nonblocking");
    let sink_addr = sink.local_addr().expect("sink addr");
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, s) = (received.clone(), stop.clone());
    let sink_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !s.load(Ordering::Relaxed) {
            while sink.recv_from(&mut buf).is_ok() {
                r.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });

    let mut sessions = Vec::new();
    let mut targets: Vec<SocketAddr> = Vec::new();
    for i in 0..participants {
        let s = media.open_session().expect("session");
        let codec = if i % 2 == 0 { Codec::Pcmu } else { Codec::Pcma };
        s.set_remote(sink_addr, codec, Some(101));
        targets.push(SocketAddr::new(
            "127.0.0.1".parse().expect("ip"),
            s.local_port(),
        ));
        sessions.push(s);
    }
    let mut handles = Vec::new();
    let mut bridge_handles = Vec::new();
    if bridges {
        for pair in sessions.chunks(2) {
            if let [a, b] = pair {
                bridge_handles.push(
                    media
                        .bridge(a, b, BridgeOptions::default())
                        .expect("bridge"),
                );
            }
        }
    } else {
        for (i, s) in sessions.iter().enumerate() {
            let room = media.conference(&format!("room-{}", i / room_size.max(1)));
            handles.push(room.join(s, ParticipantOptions::default()).expect("join"));
        }
    }
    // The remotes: one feeder socket sends every session a packet every 20 ms (symmetric RTP
    // is off, so that the sessions keep sending to the sink).
    let feeder_stop = stop.clone();
    let feeder = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("feeder");
        let payload: Vec<u8> = (0..160).map(|i| (i * 7 % 256) as u8).collect();
        let start = Instant::now();
        let mut n: u32 = 0;
        while !feeder_stop.load(Ordering::Relaxed) {
            for (k, t) in targets.iter().enumerate() {
                let packet = rtp_rs::RtpPacketBuilder::new()
                    .payload_type(if k % 2 == 0 { 0 } else { 8 })
                    .sequence(rtp_rs::Seq::from(n as u16))
                    .timestamp(n.wrapping_mul(160))
                    .ssrc(k as u32)
                    .payload(&payload)
                    .build()
                    .expect("packet");
                let _ = socket.send_to(&packet, t);
            }
            n += 1;
            let due = start + Duration::from_millis(20) * n;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let before = thread_cpu();
    let received_before = received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let wall = t0.elapsed().as_secs_f64();
    let after = thread_cpu();
    let packets = received.load(Ordering::Relaxed) - received_before;
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    let _ = sink_thread.join();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut names: Vec<&String> = after.keys().filter(|n| n.starts_with("media")).collect();
    names.sort();
    println!(
        "{} {participants} participants{}: {:.0} packets/s out (expected {})",
        if bridges { "bridges" } else { "rooms" },
        if bridges {
            String::new()
        } else {
            format!(" in rooms of {room_size}")
        },
        packets as f64 / wall,
        participants * 50
    );
    let mut total = 0.0;
    for name in names {
        let ticks = after[name].saturating_sub(*before.get(name).unwrap_or(&0));
        let pct = ticks as f64 / hz / wall * 100.0;
        total += pct;
        println!("  {name:<16} {pct:5.1} % of a core");
    }
    println!("  media threads    {total:5.1} % of a core");
    drop(handles);
    drop(bridge_handles);
    drop(sessions);
    media.shutdown();
}

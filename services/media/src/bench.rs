//! The playout benchmark: N concurrent G.711 streams, each from its own session socket, to a
//! local UDP sink; measures send jitter (actual send time minus due time, per packet) and
//! process CPU. Wired to `dialtone bench media --streams N --seconds S`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::Codec;
use crate::error::MediaError;
use crate::pcm::Pcm;
use crate::runtime::{raise_fd_limit, MediaCommand, MediaConfig, MediaRuntime};

/// Parameters of a benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub streams: usize,
    /// Measured duration.
    pub seconds: u64,
    /// Time given to start all streams before measuring.
    pub warmup: Duration,
    pub engine_threads: usize,
    /// SCHED_FIFO priority for the engine threads (see `MediaConfig::engine_realtime_priority`).
    pub realtime_priority: Option<u8>,
    /// Ports for the streams (away from the default RTP range, so a running server is not
    /// disturbed).
    pub rtp_ports: RangeInclusive<u16>,
}

impl BenchOptions {
    pub fn new(streams: usize, seconds: u64) -> BenchOptions {
        BenchOptions {
            streams,
            seconds,
            warmup: Duration::from_secs(1),
            engine_threads: MediaConfig::default().engine_threads,
            realtime_priority: None,
            rtp_ports: 30000..=49999,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub streams: usize,
    pub seconds: f64,
    pub p50_jitter_us: u64,
    pub p99_jitter_us: u64,
    pub max_jitter_us: u64,
    /// CPU of the whole process (user + system) over wall time, in percent of one core.
    pub cpu_pct: u64,
    /// CPU of the engine threads alone, in percent of one core.
    pub engine_cpu_pct: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub send_errors: u64,
    pub skipped_frames: u64,
}

impl BenchResult {
    /// `streams=<n> p99_jitter_us=<n> cpu_pct=<n>`: the last line of `dialtone bench media`.
    pub fn summary_line(&self) -> String {
        format!(
            "streams={} p99_jitter_us={} cpu_pct={}",
            self.streams, self.p99_jitter_us, self.cpu_pct
        )
    }
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let expected = self.streams as f64 * 50.0 * self.seconds;
        writeln!(
            f,
            "sent {} packets in {:.1} s ({:.1}% of {:.0} expected), received {}, send errors {}, skipped frames {}",
            self.packets_sent,
            self.seconds,
            100.0 * self.packets_sent as f64 / expected.max(1.0),
            expected,
            self.packets_received,
            self.send_errors,
            self.skipped_frames
        )?;
        writeln!(
            f,
            "send jitter p50 {} us, p99 {} us, max {} us; engine cpu {}%",
            self.p50_jitter_us, self.p99_jitter_us, self.max_jitter_us, self.engine_cpu_pct
        )?;
        write!(f, "{}", self.summary_line())
    }
}

/// Runs `streams` streams for `seconds` with the default options.
pub fn run_playout_bench(streams: usize, seconds: u64) -> Result<BenchResult, MediaError> {
    run_playout_bench_with(&BenchOptions::new(streams, seconds))
}

pub fn run_playout_bench_with(options: &BenchOptions) -> Result<BenchResult, MediaError> {
    raise_fd_limit();
    let sink = Sink::start(options.realtime_priority)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("media-bench")
        .build()
        .map_err(|e| MediaError::Task(format!("tokio runtime: {e}")))?;
    let config = MediaConfig {
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtp_ports: options.rtp_ports.clone(),
        engine_threads: options.engine_threads,
        engine_realtime_priority: options.realtime_priority,
        ..MediaConfig::default()
    };
    // A speech-like prompt: three partials, amplitude-modulated, 3 s, looped.
    let prompt = Arc::new(Pcm::new(
        Pcm::tone(&[310.0, 720.0, 1480.0], 3000, 3000.0)
            .samples()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let m = 0.6 + 0.4 * (std::f32::consts::TAU * 3.0 * i as f32 / 8000.0).sin();
                (f32::from(*s) * m) as i16
            })
            .collect(),
    ));
    let (runtime, sessions) = rt.block_on(async {
        let runtime = MediaRuntime::start(config)?;
        let mut sessions = Vec::with_capacity(options.streams);
        for _ in 0..options.streams {
            let mut s = runtime.open_session()?;
            drop(s.outcomes());
            s.set_remote(sink.addr, Codec::Pcmu, None);
            s.play(MediaCommand::PlayAudio {
                pcm: prompt.clone(),
                loops: 0,
            });
            sessions.push(s);
        }
        Ok::<_, MediaError>((runtime, sessions))
    })?;
    std::thread::sleep(options.warmup);
    runtime.engine_stats(true)?;
    let cpu_start = process_cpu_time();
    let received_start = sink.received.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(options.seconds));
    let stats = runtime.engine_stats(true)?;
    let wall = start.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_start);
    let received = sink.received.load(Ordering::Relaxed) - received_start;
    for s in sessions {
        s.close();
    }
    runtime.shutdown();
    drop(runtime);
    drop(rt);
    sink.stop();
    let pct = |d: Duration, of: Duration| {
        (100.0 * d.as_secs_f64() / of.as_secs_f64().max(1e-9)).round() as u64
    };
    Ok(BenchResult {
        streams: options.streams,
        seconds: wall.as_secs_f64(),
        p50_jitter_us: stats.jitter.percentile_us(50.0),
        p99_jitter_us: stats.jitter.percentile_us(99.0),
        max_jitter_us: stats.jitter.max_us(),
        cpu_pct: pct(cpu, wall),
        engine_cpu_pct: pct(stats.cpu, stats.wall),
        packets_sent: stats.packets_sent,
        packets_received: received,
        send_errors: stats.send_errors,
        skipped_frames: stats.skipped_frames,
    })
}

/// User + system CPU time of the process.
fn process_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A UDP socket that counts what it receives, read with `recvmmsg` on its own thread.
struct Sink {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(realtime_priority: Option<u8>) -> Result<Sink, MediaError> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let socket = UdpSocket::bind(addr).map_err(|source| MediaError::Bind { addr, source })?;
        let addr = socket.local_addr().map_err(|e| MediaError::io("sink", e))?;
        set_receive_buffer(&socket, 16 << 20);
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let join = std::thread::Builder::new()
            .name("media-bench-sink".into())
            .spawn(move || {
                if let Some(p) = realtime_priority {
                    crate::engine::set_realtime_priority(p);
                }
                sink_loop(socket, r, s)
            })
            .map_err(|source| MediaError::Thread {
                name: "media-bench-sink".into(),
                source,
            })?;
        Ok(Sink {
            addr,
            received,
            stop,
            join: Some(join),
        })
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn set_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    let fd = socket.as_raw_fd();
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads an int we own for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

fn sink_loop(socket: UdpSocket, received: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    const BATCH: usize = 64;
    const SIZE: usize = 512;
    let mut bufs = vec![[0u8; SIZE]; BATCH];
    let mut iovecs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: SIZE,
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let fd = socket.as_raw_fd();
    // Drain without blocking, then sleep: a reader blocked on the socket would be woken for
    // every datagram, and on loopback that wake-up is paid by the sender (the engine), which
    // is not what is being measured. The receive buffer holds far more than 2 ms of packets.
    while !stop.load(Ordering::Relaxed) {
        loop {
            // SAFETY: the headers point at iovecs and buffers that outlive the call; the
            // kernel writes at most SIZE bytes into each.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    headers.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                break;
            }
            received.fetch_add(n as u64, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(bufs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_sends_and_measures() {
        let mut options = BenchOptions::new(20, 1);
        options.warmup = Duration::from_millis(300);
        options.rtp_ports = 50000..=50999;
        let r = run_playout_bench_with(&options).unwrap();
        // 20 streams x 50 packets/s x ~1 s, give or take scheduling at the edges
        assert!(r.packets_sent >= 800, "{r}");
        assert!(r.packets_received >= 700, "{r}");
        assert!(r.p99_jitter_us >= r.p50_jitter_us);
        assert!(r.summary_line().starts_with("streams=20 p99_jitter_us="));
    }
}

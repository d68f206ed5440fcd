//! `cargo run --release -p dialtone-media --example playout_bench -- <streams> <seconds> [threads] [rt-priority]`
//! (the same measurement as `dialtone bench media`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let streams = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seconds = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut options = dialtone_media::BenchOptions::new(streams, seconds);
    if let Some(t) = args.get(3).and_then(|s| s.parse().ok()) {
        options.engine_threads = t;
    }
    if let Some(p) = args.get(4).and_then(|s| s.parse().ok()) {
        options.realtime_priority = Some(p);
    }
    match dialtone_media::run_playout_bench_with(&options) {
        Ok(result) => println!("{result}"),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

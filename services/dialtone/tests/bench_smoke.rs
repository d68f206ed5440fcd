//! The benchmarks run once at a small size, so that none of them rots (their figures are in
//! docs/performance.md, measured with the full sizes).

use std::process::Command;

fn run(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "dialtone {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn bench_streams_delivers_every_event_to_every_subscriber() {
    let out = run(&[
        "bench",
        "streams",
        "--subscribers",
        "20",
        "--accounts",
        "4",
        "--rate",
        "500",
        "--seconds",
        "1",
        "--writers",
        "4",
    ]);
    assert!(out.contains("machine: "), "{out}");
    assert!(out.contains("delivered=2500 expected=2500"), "{out}");
    assert!(out.contains("p99_ms="), "{out}");
}

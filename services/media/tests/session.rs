//! Sessions over real UDP sockets, with real espeak-ng: what a remote party receives and what
//! it can send. Assertions are on sequence/timestamp arithmetic and counts, not wall-clock
//! jitter.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{rtp, Peer, Received};
use dialtone_media::dtmf::rfc4733::{Rfc4733Receiver, TelephoneEvent};
use dialtone_media::pcm::rms;
use dialtone_media::{
    Codec, DtmfSource, MediaCommand, MediaConfig, MediaOutcome, MediaRuntime, Pcm, RecordOptions,
    RecorderConfig, RecordingEnd,
};
use tokio::sync::mpsc::UnboundedReceiver;

fn config(idle_silence: bool) -> MediaConfig {
    MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        // each test binary gets its own range; tests in it share the allocator
        rtp_ports: 42000..=42999,
        idle_silence,
        ..MediaConfig::default()
    }
}

async fn next_outcome(rx: &mut UnboundedReceiver<MediaOutcome>, secs: u64) -> MediaOutcome {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .expect("an outcome in time")
        .expect("outcome channel open")
}

/// Receives on a blocking thread so the runtime keeps running.
async fn collect_until(
    peer: Arc<Peer>,
    limit: Duration,
    stop: impl FnMut(&[Received]) -> bool + Send + 'static,
) -> Vec<Received> {
    tokio::task::spawn_blocking(move || peer.collect_until(limit, stop))
        .await
        .unwrap()
}

fn assert_continuous(packets: &[Received]) {
    let ssrc = packets[0].ssrc;
    for w in packets.windows(2) {
        assert_eq!(w[1].ssrc, ssrc, "one SSRC");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "consecutive sequence numbers"
        );
        assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 160, "timestamps +160");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn say_reaches_the_remote_as_a_continuous_stream() {
    let media = MediaRuntime::start(config(false)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    assert!(session.outcomes().is_none());
    assert_eq!(session.local_port() % 2, 0);
    assert!((42000..=42999).contains(&session.local_port()));
    session.set_remote(peer.addr(), Codec::Pcmu, Some(101));

    let text = "Welcome to Dialtone. Press one for sales.";
    let expected = media
        .tts()
        .synthesize(text, Some("alice"), Some("en-US"))
        .await
        .unwrap();
    let expected_packets = expected.len().div_ceil(160);
    assert!(
        expected_packets > 50,
        "a real utterance: {} samples",
        expected.len()
    );

    let id = session.play(MediaCommand::Say {
        text: text.into(),
        voice: Some("alice".into()),
        language: Some("en-US".into()),
        loops: 1,
    });
    let packets = collect_until(peer.clone(), Duration::from_secs(20), move |p| {
        p.len() >= expected_packets
    })
    .await;
    match next_outcome(&mut outcomes, 10).await {
        MediaOutcome::Finished { id: done } => assert_eq!(done, id),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(packets.len(), expected_packets);
    assert_continuous(&packets);
    assert!(packets[0].marker, "talkspurt start");
    assert!(packets[1..].iter().all(|p| !p.marker));
    assert!(packets.iter().all(|p| p.pt == 0 && p.payload.len() == 160));
    // the audio is the prompt, not silence
    let mut pcm = Vec::new();
    for p in &packets {
        Codec::Pcmu.decode_append(&p.payload, &mut pcm);
    }
    assert!(rms(&pcm) > 500.0, "rms {}", rms(&pcm));
    // exactly the synthesised prompt, through G.711, then the padding of the last frame
    let through_g711 = Codec::Pcmu.decode(&Codec::Pcmu.encode(expected.samples()));
    assert_eq!(&pcm[..expected.len()], &through_g711[..]);
    // paced by the 20 ms clock: the stream lasted about as long as the audio
    let span = packets.last().unwrap().at - packets[0].at;
    let audio = Duration::from_millis(20 * (expected_packets as u64 - 1));
    assert!(
        span + Duration::from_millis(500) >= audio,
        "span {span:?} audio {audio:?}"
    );
    // with idle silence off, nothing follows the prompt
    assert!(peer.collect_for(Duration::from_millis(200)).is_empty());
    let stats = session.stats();
    assert_eq!(stats.tx_packets, expected_packets as u64);
    assert_eq!(stats.tx_bytes, expected_packets as u64 * 172);
    session.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_silence_keeps_the_stream_going_around_prompts() {
    let media = MediaRuntime::start(config(true)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    session.set_remote(peer.addr(), Codec::Pcma, None);
    let tone = Arc::new(Pcm::tone(&[440.0], 400, 8000.0));
    let first = collect_until(peer.clone(), Duration::from_secs(5), |p| p.len() >= 10).await;
    let id = session.play(MediaCommand::PlayAudio {
        pcm: tone.clone(),
        loops: 2,
    });
    let pause = session.play(MediaCommand::Pause { ms: 200 });
    let mut rest = collect_until(peer.clone(), Duration::from_secs(10), |p| p.len() >= 80).await;
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Finished { id: d } if d == id)
    );
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Finished { id: d } if d == pause)
    );
    let mut all = first;
    all.append(&mut rest);
    assert_continuous(&all);
    assert!(all[0].marker && all[1..].iter().all(|p| !p.marker));
    assert!(all.iter().all(|p| p.pt == 8));
    // the prompt is in there, twice, between silences
    let loud = all
        .iter()
        .filter(|p| p.payload.iter().any(|b| *b != Codec::Pcma.silence_byte()))
        .count();
    assert_eq!(loud, 2 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_go_out_as_rfc4733_events() {
    let media = MediaRuntime::start(config(false)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    session.set_remote(peer.addr(), Codec::Pcmu, Some(101));
    let id = session.play(MediaCommand::Digits {
        digits: "1w2#".into(),
    });
    let packets = collect_until(peer.clone(), Duration::from_secs(10), |p| p.len() >= 21).await;
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Finished { id: d } if d == id)
    );
    assert_eq!(packets.len(), 21, "7 packets per key");
    assert!(packets.iter().all(|p| p.pt == 101));
    for w in packets.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
    }
    let mut rx = Rfc4733Receiver::new();
    let mut keys = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let ev = TelephoneEvent::parse(&p.payload).unwrap();
        assert_eq!(ev.end, i % 7 >= 4);
        assert_eq!(p.marker, i % 7 == 0);
        rx.on_packet(p.ts, &p.payload, i as u64 * 20, &mut keys);
    }
    let keys: String = keys.iter().map(|k| k.digit).collect();
    assert_eq!(keys, "12#");
    // the 'w' wait shows in the timestamps: key 2 starts 140 ms (100 ms of key and its end
    // packet twice more) + 100 ms gap + 500 ms after key 1
    assert_eq!(packets[7].ts.wrapping_sub(packets[0].ts), 8 * 740);

    let bad = session.play(MediaCommand::Digits {
        digits: "12x".into(),
    });
    match next_outcome(&mut outcomes, 5).await {
        MediaOutcome::Failed { id, error } => {
            assert_eq!(id, bad);
            assert!(error.to_string().contains("'x'"), "{error}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn event_packets(key_code: u8, ts: u32, seq: u16, ssrc: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in 1..=5u16 {
        let ev = TelephoneEvent {
            event: key_code,
            end: k == 5,
            volume: 10,
            duration: 160 * k,
        };
        out.push(rtp(101, seq + k - 1, ts, ssrc, k == 1, &ev.to_bytes()));
    }
    // the end packet twice more
    let last = out.last().unwrap().clone();
    out.push(last.clone());
    out.push(last);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_dtmf_rfc4733_and_latching() {
    let media = MediaRuntime::start(config(false)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    // The SDP said a private address; the caller is really behind NAT at the peer's address.
    let sdp_addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    session.set_remote(sdp_addr, Codec::Pcmu, Some(101));
    assert_eq!(session.stats().remote, Some(sdp_addr));
    let target = session.local_addr();
    let target = SocketAddr::new("127.0.0.1".parse().unwrap(), target.port());
    // some audio first, then '5' then '#', with retransmissions
    let mut seq = 100;
    for i in 0..5u32 {
        peer.socket
            .send_to(
                &rtp(0, seq, 8000 + i * 160, 42, i == 0, &[0xFF; 160]),
                target,
            )
            .unwrap();
        seq += 1;
    }
    for p in event_packets(5, 9000, seq, 42) {
        peer.socket.send_to(&p, target).unwrap();
    }
    seq += 5;
    for p in event_packets(11, 12000, seq, 42) {
        peer.socket.send_to(&p, target).unwrap();
    }
    let mut keys = Vec::new();
    while keys.len() < 2 {
        match next_outcome(&mut outcomes, 5).await {
            MediaOutcome::Dtmf {
                digit,
                source,
                duration_ms,
            } => {
                assert_eq!(source, DtmfSource::Rfc4733);
                assert_eq!(duration_ms, 100);
                keys.push(digit);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(keys, vec!['5', '#']);
    // A key is reported on its first end packet; its redundant end packets may still be on
    // their way to the counters.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while session.stats().rx_packets < 5 + 7 + 7 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = session.stats();
    assert_eq!(stats.rx_packets, 5 + 7 + 7);
    assert_eq!(stats.rx_last_payload_type, Some(101));
    assert_eq!(
        stats.remote,
        Some(peer.addr()),
        "latched on the first packet's source"
    );
    // and playback now goes to the latched address
    let id = session.play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[300.0], 100, 5000.0)),
        loops: 1,
    });
    let got = collect_until(peer.clone(), Duration::from_secs(5), |p| p.len() >= 5).await;
    assert_eq!(got.len(), 5);
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Finished { id: d } if d == id)
    );
    // garbage is counted, not fatal
    peer.socket.send_to(b"hello", target).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(session.stats().rx_invalid, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_inband_dtmf_without_telephone_event() {
    let media = MediaRuntime::start(config(false)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    session.set_remote(peer.addr(), Codec::Pcma, None);
    let target = SocketAddr::new("127.0.0.1".parse().unwrap(), session.local_port());
    // '7' for 120 ms between silences, A-law, in 20 ms packets
    let mut pcm = vec![0i16; 800];
    let (low, high) = dialtone_media::dtmf::key_frequencies('7').unwrap();
    pcm.extend(Pcm::tone(&[low, high], 120, 6000.0).samples());
    pcm.extend(vec![0i16; 800]);
    let sender = peer.clone();
    tokio::task::spawn_blocking(move || {
        for (i, chunk) in pcm.chunks(160).enumerate() {
            let payload = Codec::Pcma.encode(chunk);
            sender
                .socket
                .send_to(
                    &rtp(8, i as u16, i as u32 * 160, 7, i == 0, &payload),
                    target,
                )
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap();
    match next_outcome(&mut outcomes, 5).await {
        MediaOutcome::Dtmf {
            digit,
            source,
            duration_ms,
        } => {
            assert_eq!((digit, source), ('7', DtmfSource::Inband));
            assert!((100..=140).contains(&duration_ms), "{duration_ms}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_playback_interrupts_current_queued_and_preparing_commands() {
    let media = MediaRuntime::start(config(false)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    session.set_remote(peer.addr(), Codec::Pcmu, None);
    let forever = session.play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[500.0], 1000, 6000.0)),
        loops: 0,
    });
    let queued = session.play(MediaCommand::say("This is never heard", None, None));
    let got = collect_until(peer.clone(), Duration::from_secs(5), |p| p.len() >= 10).await;
    assert_eq!(got.len(), 10);
    session.stop_playback();
    let mut interrupted = Vec::new();
    while interrupted.len() < 2 {
        match next_outcome(&mut outcomes, 5).await {
            MediaOutcome::Interrupted { id } => interrupted.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    interrupted.sort();
    assert_eq!(interrupted, vec![forever, queued]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.drain();
    assert!(
        peer.collect_for(Duration::from_millis(300)).is_empty(),
        "silent after barge-in"
    );
    // the session still plays what comes next, as a new talkspurt
    let next = session.play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[500.0], 60, 6000.0)),
        loops: 1,
    });
    let got = collect_until(peer.clone(), Duration::from_secs(5), |p| p.len() >= 3).await;
    assert!(got[0].marker);
    assert_eq!(got[1].seq, got[0].seq.wrapping_add(1));
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Finished { id } if id == next)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_with_beep_silence_timeout_and_trim() {
    let media = MediaRuntime::start(config(false)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    session.set_remote(peer.addr(), Codec::Pcmu, Some(101));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recordings/RE1.wav");
    let id = session.play(MediaCommand::Record(RecordOptions {
        path: path.clone(),
        beep: true,
        recorder: RecorderConfig {
            silence_timeout_ms: 1000,
            ..RecorderConfig::default()
        },
    }));
    // the beep arrives first (250 ms = 13 packets)
    let beep = collect_until(peer.clone(), Duration::from_secs(5), |p| p.len() >= 13).await;
    assert_eq!(beep.len(), 13);
    match next_outcome(&mut outcomes, 5).await {
        MediaOutcome::RecordingStarted { id: started } => assert_eq!(started, id),
        other => panic!("unexpected {other:?}"),
    }
    // the caller: 300 ms of quiet, 600 ms of "voice", then quiet until the timeout
    let target = SocketAddr::new("127.0.0.1".parse().unwrap(), session.local_port());
    let mut audio = vec![10i16; 2400];
    audio.extend(Pcm::tone(&[250.0, 900.0], 600, 5000.0).samples());
    audio.extend(vec![10i16; 8 * 3000]);
    let sender = peer.clone();
    let send = tokio::task::spawn_blocking(move || {
        for (i, chunk) in audio.chunks(160).enumerate() {
            let payload = Codec::Pcmu.encode(chunk);
            if sender
                .socket
                .send_to(
                    &rtp(0, i as u16, 5000 + i as u32 * 160, 9, i == 0, &payload),
                    target,
                )
                .is_err()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let outcome = next_outcome(&mut outcomes, 15).await;
    send.await.unwrap();
    match outcome {
        MediaOutcome::RecordingFinished {
            id: done,
            path: p,
            duration_ms,
            empty,
            silent,
            end,
        } => {
            assert_eq!(done, id);
            assert_eq!(p, path);
            assert_eq!(end, RecordingEnd::SilenceTimeout);
            assert!(!empty && !silent);
            // 600 ms of voice plus 100 ms margins; a packet either side for the timing
            assert!((760..=840).contains(&duration_ms), "duration {duration_ms}");
            let reader = hound::WavReader::open(&p).unwrap();
            let spec = reader.spec();
            assert_eq!(
                (spec.sample_rate, spec.channels, spec.bits_per_sample),
                (8000, 1, 16)
            );
            assert_eq!(u64::from(reader.duration()) / 8, duration_ms);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_finishes_on_key_and_on_hangup() {
    let media = MediaRuntime::start(config(false)).unwrap();
    let peer = Arc::new(Peer::new());
    let mut session = media.open_session().unwrap();
    let mut outcomes = session.outcomes().unwrap();
    session.set_remote(peer.addr(), Codec::Pcmu, Some(101));
    let target = SocketAddr::new("127.0.0.1".parse().unwrap(), session.local_port());
    let dir = tempfile::tempdir().unwrap();
    let mut options = RecordOptions::new(dir.path().join("key.wav"));
    options.beep = false;
    options.recorder.finish_on_keys = "#".into();
    let id = session.play(MediaCommand::Record(options));
    assert!(matches!(
        next_outcome(&mut outcomes, 5).await,
        MediaOutcome::RecordingStarted { .. }
    ));
    let voice = Pcm::tone(&[250.0, 900.0], 400, 5000.0);
    for (i, chunk) in voice.samples().chunks(160).enumerate() {
        peer.socket
            .send_to(
                &rtp(
                    0,
                    i as u16,
                    i as u32 * 160,
                    9,
                    false,
                    &Codec::Pcmu.encode(chunk),
                ),
                target,
            )
            .unwrap();
    }
    for p in event_packets(11, 5000, 100, 9) {
        peer.socket.send_to(&p, target).unwrap();
    }
    let mut finished = None;
    for _ in 0..2 {
        match next_outcome(&mut outcomes, 5).await {
            MediaOutcome::Dtmf { digit: '#', .. } => {}
            MediaOutcome::RecordingFinished {
                id: done,
                end,
                duration_ms,
                ..
            } => {
                assert_eq!(done, id);
                finished = Some((end, duration_ms));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (end, duration_ms) = finished.unwrap();
    assert_eq!(end, RecordingEnd::Key('#'));
    assert!((400..=600).contains(&duration_ms), "{duration_ms}");

    // a recording still going when the call ends is kept, ended by hangup
    let mut options = RecordOptions::new(dir.path().join("hangup.wav"));
    options.beep = false;
    let id = session.play(MediaCommand::Record(options));
    assert!(matches!(
        next_outcome(&mut outcomes, 5).await,
        MediaOutcome::RecordingStarted { .. }
    ));
    session.close();
    match next_outcome(&mut outcomes, 5).await {
        MediaOutcome::RecordingFinished {
            id: done,
            end,
            empty,
            path,
            ..
        } => {
            assert_eq!(done, id);
            assert_eq!(end, RecordingEnd::Hangup);
            assert!(empty);
            assert!(path.exists());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_reported_and_ports_come_back() {
    let mut cfg = config(false);
    cfg.rtp_ports = 43000..=43003; // two even ports
    let media = MediaRuntime::start(cfg).unwrap();
    let mut a = media.open_session().unwrap();
    let b = media.open_session().unwrap();
    assert!(matches!(
        media.open_session(),
        Err(dialtone_media::MediaError::PortsExhausted { .. })
    ));
    let mut outcomes = a.outcomes().unwrap();
    let peer = Peer::new();
    a.set_remote(peer.addr(), Codec::Pcmu, None);
    let id = a.play(MediaCommand::play("http://127.0.0.1:9/missing.wav"));
    match next_outcome(&mut outcomes, 10).await {
        MediaOutcome::Failed { id: failed, error } => {
            assert_eq!(failed, id);
            assert!(
                matches!(*error, dialtone_media::MediaError::Fetch { .. }),
                "{error}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let id = a.play(MediaCommand::play("/etc/passwd"));
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Failed { id: f, .. } if f == id)
    );
    // queued commands are interrupted when the session closes
    let long = a.play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[400.0], 2000, 5000.0)),
        loops: 1,
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.close();
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Interrupted { id } if id == long)
    );
    b.close();
    // the ports come back once the media threads have closed the sockets
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = media.open_session().unwrap();
    let d = media.open_session().unwrap();
    assert_ne!(c.local_port(), d.local_port());
}

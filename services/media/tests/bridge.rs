//! Bridges and conferences over real UDP sockets: remote parties send tones (paced RTP) and
//! we check, with Goertzel, what each of them receives. Assertions are on frequencies,
//! energy, sequence/timestamp arithmetic and SSRCs, not on wall-clock jitter.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{rtp, Peer, Received};
use dialtone_media::dtmf::goertzel::GoertzelDetector;
use dialtone_media::dtmf::rfc4733::{Rfc4733Receiver, TelephoneEvent};
use dialtone_media::pcm::rms;
use dialtone_media::{
    BridgeOptions, BridgeRecording, Codec, DtmfSource, MediaCommand, MediaConfig, MediaError,
    MediaOutcome, MediaRuntime, MediaSession, ParticipantOptions, Pcm, RecordingChannels,
};
use tokio::sync::mpsc::UnboundedReceiver;

fn config() -> MediaConfig {
    MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        // this test binary's own range
        rtp_ports: 44000..=44999,
        idle_silence: false,
        ..MediaConfig::default()
    }
}

fn target(session: &MediaSession) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), session.local_port())
}

async fn next_outcome(rx: &mut UnboundedReceiver<MediaOutcome>, secs: u64) -> MediaOutcome {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .expect("an outcome in time")
        .expect("outcome channel open")
}

async fn collect_for(peer: &Arc<Peer>, d: Duration) -> Vec<Received> {
    let peer = peer.clone();
    tokio::task::spawn_blocking(move || peer.collect_for(d))
        .await
        .unwrap()
}

async fn collect_until(
    peer: &Arc<Peer>,
    limit: Duration,
    stop: impl FnMut(&[Received]) -> bool + Send + 'static,
) -> Vec<Received> {
    let peer = peer.clone();
    tokio::task::spawn_blocking(move || peer.collect_until(limit, stop))
        .await
        .unwrap()
}

/// Power at `hz` as a share of the block's total power (a pure tone at `hz` gives ~1).
fn share(samples: &[i16], hz: f32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (std::f64::consts::TAU * f64::from(hz) / 8000.0).cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for x in samples {
        let s0 = f64::from(*x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    if energy == 0.0 {
        return 0.0;
    }
    2.0 * power / (samples.len() as f64 * energy)
}

/// The audio of the packets (decoded with each packet's payload type), without events.
fn audio_of(packets: &[Received]) -> Vec<i16> {
    let mut pcm = Vec::new();
    for p in packets {
        if let Some(codec) = Codec::from_payload_type(p.pt) {
            codec.decode_append(&p.payload, &mut pcm);
        }
    }
    pcm
}

/// The loud part of a block of audio (frames above a low threshold), so that silence from
/// priming or underruns does not dilute the shares.
fn loud(pcm: &[i16]) -> Vec<i16> {
    pcm.chunks(160)
        .filter(|f| rms(f) > 200.0)
        .flatten()
        .copied()
        .collect()
}

fn assert_one_stream(packets: &[Received], ssrc: u32) {
    assert!(!packets.is_empty());
    for p in packets {
        assert_eq!(p.ssrc, ssrc, "the leg's own SSRC");
    }
    for w in packets.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "consecutive sequence numbers"
        );
        if w[0].pt == w[1].pt && Codec::from_payload_type(w[0].pt).is_some() {
            assert!(
                w[1].ts.wrapping_sub(w[0].ts) % 160 == 0 && w[1].ts != w[0].ts,
                "audio timestamps advance by frames"
            );
        }
    }
}

/// A remote party talking: sends a continuous tone as 20 ms RTP packets on an absolute
/// schedule until stopped.
struct ToneSender {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl ToneSender {
    fn start(peer: &Arc<Peer>, to: SocketAddr, codec: Codec, hz: f32, ssrc: u32) -> ToneSender {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let peer = peer.clone();
        let join = std::thread::spawn(move || {
            let start = Instant::now();
            let mut n: u32 = 0;
            while !flag.load(Ordering::Relaxed) {
                let samples: Vec<i16> = (0..160)
                    .map(|i| {
                        let t = (n * 160 + i) as f32 / 8000.0;
                        ((std::f32::consts::TAU * hz * t).sin() * 6000.0) as i16
                    })
                    .collect();
                let packet = rtp(
                    codec.payload_type(),
                    1000u16.wrapping_add(n as u16),
                    50_000u32.wrapping_add(n * 160),
                    ssrc,
                    n == 0,
                    &codec.encode(&samples),
                );
                let _ = peer.socket.send_to(&packet, to);
                n += 1;
                let due = start + Duration::from_millis(20) * n;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        ToneSender {
            stop,
            join: Some(join),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            j.join().unwrap();
        }
    }
}

impl Drop for ToneSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn star_packets(ts: u32, seq: u16, ssrc: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in 1..=5u16 {
        let ev = TelephoneEvent {
            event: 10,
            end: k == 5,
            volume: 10,
            duration: 160 * k,
        };
        out.push(rtp(101, seq + k - 1, ts, ssrc, k == 1, &ev.to_bytes()));
    }
    let last = out.last().unwrap().clone();
    out.push(last.clone());
    out.push(last);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_transcodes_both_ways_with_each_legs_identity_and_records_dual() {
    let media = MediaRuntime::start(config()).unwrap();
    let (peer_a, peer_b) = (Arc::new(Peer::new()), Arc::new(Peer::new()));
    let mut a = media.open_session().unwrap();
    let b = media.open_session().unwrap();
    let mut outcomes_a = a.outcomes().unwrap();
    a.set_remote(peer_a.addr(), Codec::Pcmu, Some(101));
    b.set_remote(peer_b.addr(), Codec::Pcma, Some(101));

    // B plays something first: the bridge must continue B's stream, not start another one
    b.play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[300.0], 100, 5000.0)),
        loops: 1,
    });
    let before_b = collect_until(&peer_b, Duration::from_secs(5), |p| p.len() >= 5).await;
    assert_eq!(before_b.len(), 5);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls/dual.wav");
    let bridge = media
        .bridge(
            &a,
            &b,
            BridgeOptions {
                record: Some(BridgeRecording {
                    path: path.clone(),
                    channels: RecordingChannels::Dual,
                    from_ringing: false,
                    trim_silence: false,
                }),
                early_media: false,
            },
        )
        .unwrap();
    assert!(bridge.is_active() && bridge.is_connected());
    let recording_id = bridge.recording_id().unwrap();
    match next_outcome(&mut outcomes_a, 5).await {
        MediaOutcome::RecordingStarted { id } => assert_eq!(id, recording_id),
        other => panic!("unexpected {other:?}"),
    }
    // a second bridge of a bridged session is refused
    let c = media.open_session().unwrap();
    assert!(matches!(
        media.bridge(&a, &c, BridgeOptions::default()),
        Err(MediaError::AlreadyJoined)
    ));
    assert!(matches!(
        media.bridge(&c, &c, BridgeOptions::default()),
        Err(MediaError::BridgeWithItself)
    ));

    // A's caller says 1000 Hz (μ-law), B's callee 600 Hz (A-law)
    let talk_a = ToneSender::start(&peer_a, target(&a), Codec::Pcmu, 1000.0, 0xA0A0);
    let talk_b = ToneSender::start(&peer_b, target(&b), Codec::Pcma, 600.0, 0xB0B0);
    let (got_a, got_b) = tokio::join!(
        collect_for(&peer_a, Duration::from_millis(1500)),
        collect_for(&peer_b, Duration::from_millis(1500))
    );
    talk_a.stop();
    talk_b.stop();

    // B's remote receives A's tone, in A-law, as the continuation of B's own stream
    assert!(got_b.len() >= 60, "{} packets", got_b.len());
    assert!(got_b.iter().all(|p| p.pt == 8));
    let mut b_stream = before_b.clone();
    b_stream.extend(got_b.iter().cloned());
    assert_one_stream(&b_stream, before_b[0].ssrc);
    assert_ne!(before_b[0].ssrc, 0xA0A0);
    let heard_b = loud(&audio_of(&got_b));
    assert!(heard_b.len() >= 160 * 50, "{} loud samples", heard_b.len());
    assert!(share(&heard_b, 1000.0) > 0.8, "{}", share(&heard_b, 1000.0));
    assert!(share(&heard_b, 600.0) < 0.01, "no echo of B's own voice");
    assert!((rms(&heard_b) - 6000.0 / 2f64.sqrt()).abs() < 600.0);

    // and A's remote receives B's tone, in μ-law, from A's own stream
    assert!(got_a.len() >= 60);
    assert!(got_a.iter().all(|p| p.pt == 0));
    assert_one_stream(&got_a, got_a[0].ssrc);
    assert_ne!(got_a[0].ssrc, before_b[0].ssrc);
    let heard_a = loud(&audio_of(&got_a));
    assert!(heard_a.len() >= 160 * 50);
    assert!(share(&heard_a, 600.0) > 0.8, "{}", share(&heard_a, 600.0));
    assert!(share(&heard_a, 1000.0) < 0.01);

    // ending the bridge completes the recording: left = A's caller, right = B's callee
    bridge.unbridge();
    let (path_done, duration_ms) = match next_outcome(&mut outcomes_a, 5).await {
        MediaOutcome::BridgeRecordingFinished {
            id,
            path,
            duration_ms,
            channels,
        } => {
            assert_eq!(id, recording_id);
            assert_eq!(channels, 2);
            (path, duration_ms)
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(path_done, path);
    assert!(duration_ms >= 1200, "{duration_ms} ms");
    let mut reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    assert_eq!(samples.len() as u64, duration_ms * 16);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let (left, right) = (loud(&left), loud(&right));
    assert!(left.len() >= 160 * 40 && right.len() >= 160 * 40);
    assert!(share(&left, 1000.0) > 0.8 && share(&left, 600.0) < 0.01);
    assert!(share(&right, 600.0) > 0.8 && share(&right, 1000.0) < 0.01);

    // after the bridge, B is back to plain playout: silent (no idle silence), then its own
    // prompts, still the same stream
    let tail = collect_for(&peer_b, Duration::from_millis(300)).await;
    b_stream.extend(tail);
    assert_one_stream(&b_stream, before_b[0].ssrc);
    assert!(collect_for(&peer_b, Duration::from_millis(200))
        .await
        .is_empty());
    b.play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[300.0], 60, 5000.0)),
        loops: 1,
    });
    let after_b = collect_until(&peer_b, Duration::from_secs(5), |p| p.len() >= 3).await;
    assert_eq!(after_b[0].ssrc, before_b[0].ssrc);
    assert_eq!(
        after_b[0].seq,
        b_stream.last().unwrap().seq.wrapping_add(1),
        "sequence continues after the bridge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_relays_telephone_events_and_reports_dtmf_on_the_pressing_leg() {
    let media = MediaRuntime::start(config()).unwrap();
    let (peer_a, peer_b) = (Arc::new(Peer::new()), Arc::new(Peer::new()));
    let mut a = media.open_session().unwrap();
    let mut b = media.open_session().unwrap();
    let mut outcomes_a = a.outcomes().unwrap();
    let mut outcomes_b = b.outcomes().unwrap();
    a.set_remote(peer_a.addr(), Codec::Pcmu, Some(101));
    // B negotiated telephone-event as payload type 96: the relay must rewrite it
    b.set_remote(peer_b.addr(), Codec::Pcma, Some(96));
    let bridge = media.bridge(&a, &b, BridgeOptions::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // the caller presses '*' (RFC 4733, with the usual end retransmissions)
    for p in star_packets(70_000, 300, 0xA1) {
        peer_a.socket.send_to(&p, target(&a)).unwrap();
    }
    match next_outcome(&mut outcomes_a, 5).await {
        MediaOutcome::Dtmf {
            digit,
            source,
            duration_ms,
        } => {
            assert_eq!(
                (digit, source, duration_ms),
                ('*', DtmfSource::Rfc4733, 100)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let got = collect_until(&peer_b, Duration::from_secs(3), |p| {
        p.iter().filter(|p| p.pt == 96).count() >= 7
    })
    .await;
    let events: Vec<&Received> = got.iter().filter(|p| p.pt == 96).collect();
    assert_eq!(events.len(), 7, "every event packet relayed");
    assert!(got.iter().all(|p| p.pt == 96 || p.pt == 8));
    assert_one_stream(&got, got[0].ssrc);
    assert!(events[0].marker && events[1..].iter().all(|p| !p.marker));
    assert!(events.iter().all(|p| p.ts == events[0].ts));
    assert_ne!(events[0].ts, 70_000, "B's own timestamps");
    let mut rx = Rfc4733Receiver::new();
    let mut keys = Vec::new();
    for (i, p) in events.iter().enumerate() {
        let ev = TelephoneEvent::parse(&p.payload).unwrap();
        assert_eq!(ev.event, 10);
        rx.on_packet(p.ts, &p.payload, i as u64 * 20, &mut keys);
    }
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].digit, keys[0].duration_ms), ('*', 100));
    // the key was A's, not B's
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(outcomes_b.try_recv().is_err());
    drop(bridge);

    // B without telephone-event: the key is regenerated as an in-band tone
    b.set_remote(peer_b.addr(), Codec::Pcma, None);
    let bridge = media.bridge(&a, &b, BridgeOptions::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer_b.drain();
    for p in star_packets(90_000, 400, 0xA1) {
        peer_a.socket.send_to(&p, target(&a)).unwrap();
    }
    assert!(matches!(
        next_outcome(&mut outcomes_a, 5).await,
        MediaOutcome::Dtmf { digit: '*', .. }
    ));
    let got = collect_for(&peer_b, Duration::from_millis(500)).await;
    assert!(got.iter().all(|p| p.pt == 8), "no events on B now");
    let mut det = GoertzelDetector::default();
    let mut keys = Vec::new();
    det.push(&audio_of(&got), &mut keys);
    det.flush(&mut keys);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].digit, '*');
    assert!((80..=130).contains(&keys[0].duration_ms), "{:?}", keys[0]);
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_then_connect_and_a_hangup_ends_the_bridge() {
    let media = MediaRuntime::start(config()).unwrap();
    let (peer_a, peer_b) = (Arc::new(Peer::new()), Arc::new(Peer::new()));
    let mut a = media.open_session().unwrap();
    let b = media.open_session().unwrap();
    let mut outcomes_a = a.outcomes().unwrap();
    a.set_remote(peer_a.addr(), Codec::Pcmu, None);
    // the caller hears ringback while the callee rings
    let ringback = a.play(MediaCommand::Ringback {
        country: "uk".into(),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mono.wav");
    let bridge = media
        .bridge(
            &a,
            &b,
            BridgeOptions {
                record: Some(BridgeRecording {
                    path: path.clone(),
                    channels: RecordingChannels::Mono,
                    from_ringing: true,
                    trim_silence: false,
                }),
                early_media: true,
            },
        )
        .unwrap();
    assert!(bridge.is_active() && !bridge.is_connected());
    assert!(matches!(
        next_outcome(&mut outcomes_a, 5).await,
        MediaOutcome::RecordingStarted { .. }
    ));
    // early media: the callee's network plays an announcement (900 Hz), A hears it over the
    // ringback; the callee hears nothing of A yet
    b.set_remote(peer_b.addr(), Codec::Pcma, None);
    let talk_b = ToneSender::start(&peer_b, target(&b), Codec::Pcma, 900.0, 0xB1);
    let talk_a = ToneSender::start(&peer_a, target(&a), Codec::Pcmu, 1300.0, 0xA1);
    let (early_a, early_b) = tokio::join!(
        collect_for(&peer_a, Duration::from_millis(1000)),
        collect_for(&peer_b, Duration::from_millis(1000))
    );
    assert!(early_b.is_empty(), "B hears nothing before answering");
    let heard = audio_of(&early_a);
    assert!(
        share(&heard, 900.0) > 0.2,
        "early media: {}",
        share(&heard, 900.0)
    );
    assert!(
        share(&heard, 400.0) + share(&heard, 450.0) > 0.1,
        "ringback summed"
    );

    // answer: the ringback stops by itself, both hear each other
    bridge.connect();
    match next_outcome(&mut outcomes_a, 5).await {
        MediaOutcome::Interrupted { id } => assert_eq!(id, ringback),
        other => panic!("unexpected {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    peer_a.drain();
    let (got_a, got_b) = tokio::join!(
        collect_for(&peer_a, Duration::from_millis(800)),
        collect_for(&peer_b, Duration::from_millis(800))
    );
    let heard_a = loud(&audio_of(&got_a));
    assert!(share(&heard_a, 900.0) > 0.8, "{}", share(&heard_a, 900.0));
    assert!(
        share(&heard_a, 400.0) + share(&heard_a, 450.0) < 0.01,
        "no ringback"
    );
    let heard_b = loud(&audio_of(&got_b));
    assert!(share(&heard_b, 1300.0) > 0.8);
    assert!(got_b.iter().all(|p| p.pt == 8));

    // the callee hangs up: the bridge ends, A goes back to its own playout
    b.close();
    talk_b.stop();
    assert!(!bridge.is_active());
    match next_outcome(&mut outcomes_a, 5).await {
        MediaOutcome::BridgeRecordingFinished {
            channels,
            duration_ms,
            path: p,
            ..
        } => {
            assert_eq!((channels, p), (1, path.clone()));
            assert!(duration_ms >= 1500, "from ringing: {duration_ms} ms");
        }
        other => panic!("unexpected {other:?}"),
    }
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().channels, 1);
    let mono: Vec<i16> = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    let mono = loud(&mono);
    // the sum of both parties
    assert!(share(&mono, 900.0) > 0.2 && share(&mono, 1300.0) > 0.1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer_a.drain();
    assert!(
        collect_for(&peer_a, Duration::from_millis(200))
            .await
            .is_empty(),
        "plain playout: nothing to send"
    );
    let ssrc_a = got_a[0].ssrc;
    let id = a.play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[500.0], 60, 5000.0)),
        loops: 1,
    });
    let after = collect_until(&peer_a, Duration::from_secs(5), |p| p.len() >= 3).await;
    assert_eq!(after[0].ssrc, ssrc_a);
    assert!(
        matches!(next_outcome(&mut outcomes_a, 5).await, MediaOutcome::Finished { id: d } if d == id)
    );
    talk_a.stop();
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_mixes_everyone_but_yourself_mutes_and_leaves() {
    let media = MediaRuntime::start(config()).unwrap();
    let peers: Vec<Arc<Peer>> = (0..3).map(|_| Arc::new(Peer::new())).collect();
    let codecs = [Codec::Pcmu, Codec::Pcma, Codec::Pcmu];
    let tones = [500.0f32, 1100.0, 1700.0];
    let sessions: Vec<MediaSession> = (0..3).map(|_| media.open_session().unwrap()).collect();
    for i in 0..3 {
        sessions[i].set_remote(peers[i].addr(), codecs[i], Some(101));
    }
    let room = media.conference("AC1/standup");
    let quiet = ParticipantOptions {
        beep_on_enter: false,
        beep_on_exit: false,
        ..ParticipantOptions::default()
    };
    // alone, the first participant hears its own playback (wait music) and nothing else
    let first = room.join(&sessions[0], quiet).unwrap();
    assert_eq!(room.participants(), 1);
    assert!(room.is_started());
    sessions[0].play(MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[300.0], 1000, 5000.0)),
        loops: 0,
    });
    let talkers: Vec<ToneSender> = (0..3)
        .map(|i| {
            ToneSender::start(
                &peers[i],
                target(&sessions[i]),
                codecs[i],
                tones[i],
                0x100 + i as u32,
            )
        })
        .collect();
    let alone = loud(&audio_of(
        &collect_for(&peers[0], Duration::from_millis(600)).await,
    ));
    assert!(share(&alone, 300.0) > 0.9, "wait music only");
    assert!(share(&alone, 500.0) < 0.01);
    sessions[0].stop_playback();

    let mut participants = vec![first];
    for s in &sessions[1..] {
        participants.push(room.join(s, quiet).unwrap());
    }
    assert_eq!(room.participants(), 3);
    assert!(matches!(
        room.join(&sessions[1], quiet),
        Err(MediaError::AlreadyJoined)
    ));

    async fn listen(peers: &[Arc<Peer>]) -> Vec<Vec<i16>> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for p in peers {
            p.drain();
        }
        let got = futures_join(peers).await;
        got.iter().map(|g| loud(&audio_of(g))).collect()
    }
    async fn futures_join(peers: &[Arc<Peer>]) -> Vec<Vec<Received>> {
        let (a, b, c) = tokio::join!(
            collect_for(&peers[0], Duration::from_millis(800)),
            collect_for(&peers[1], Duration::from_millis(800)),
            collect_for(&peers[2], Duration::from_millis(800))
        );
        vec![a, b, c]
    }

    // everyone hears the two others, not themselves
    let heard = listen(&peers).await;
    for (i, audio) in heard.iter().enumerate() {
        assert!(audio.len() >= 160 * 25, "participant {i} hears audio");
        for (j, tone) in tones.iter().enumerate() {
            let s = share(audio, *tone);
            if i == j {
                assert!(s < 0.01, "participant {i} hears itself: {s}");
            } else {
                assert!(s > 0.3, "participant {i} hears {j}: {s}");
            }
        }
    }
    // the audio of each comes in its own codec and its own stream
    let mid = collect_for(&peers[1], Duration::from_millis(200)).await;
    assert!(mid.iter().all(|p| p.pt == 8));
    assert_one_stream(&mid, mid[0].ssrc);

    // participant 2 (1100 Hz) muted: nobody hears it, it still hears everyone
    participants[1].set_muted(true);
    let heard = listen(&peers).await;
    assert!(share(&heard[0], 1100.0) < 0.01 && share(&heard[0], 1700.0) > 0.8);
    assert!(share(&heard[2], 1100.0) < 0.01 && share(&heard[2], 500.0) > 0.8);
    assert!(share(&heard[1], 500.0) > 0.3 && share(&heard[1], 1700.0) > 0.3);
    participants[1].set_muted(false);

    // participant 1 (500 Hz) on hold: nobody hears it, and it hears nobody
    participants[0].set_held(true);
    let heard = listen(&peers).await;
    assert!(share(&heard[1], 500.0) < 0.01 && share(&heard[1], 1700.0) > 0.8);
    assert!(share(&heard[2], 500.0) < 0.01 && share(&heard[2], 1100.0) > 0.8);
    assert!(
        heard[0].is_empty() || (share(&heard[0], 1100.0) < 0.01 && share(&heard[0], 1700.0) < 0.01),
        "a held participant hears the room"
    );
    participants[0].set_held(false);

    // participant 3 leaves: the others stop hearing it, and it gets no conference audio
    let third = participants.pop().unwrap();
    third.leave();
    assert_eq!(room.participants(), 2);
    let heard = listen(&peers).await;
    assert!(share(&heard[0], 1700.0) < 0.01 && share(&heard[0], 1100.0) > 0.8);
    assert!(share(&heard[1], 1700.0) < 0.01 && share(&heard[1], 500.0) > 0.8);
    assert!(heard[2].is_empty(), "plain playout again: nothing to send");

    // closing a session leaves the room; ending the room releases the rest
    let mut sessions = sessions;
    sessions.remove(1).close();
    assert_eq!(room.participants(), 1);
    assert!(!participants[1].is_active());
    room.end();
    assert!(!participants[0].is_active());
    assert_eq!(room.participants(), 0);
    for t in talkers {
        t.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_beeps_limits_and_waiting_for_the_moderator() {
    let media = MediaRuntime::start(config()).unwrap();
    let peers: Vec<Arc<Peer>> = (0..3).map(|_| Arc::new(Peer::new())).collect();
    let sessions: Vec<MediaSession> = (0..3).map(|_| media.open_session().unwrap()).collect();
    for (s, p) in sessions.iter().zip(&peers) {
        s.set_remote(p.addr(), Codec::Pcmu, None);
    }
    let room = media.conference("AC1/moderated");
    let waiting = ParticipantOptions {
        start_conference_on_enter: false,
        max_participants: Some(2),
        beep_on_enter: false,
        ..ParticipantOptions::default()
    };
    let _p0 = room.join(&sessions[0], waiting).unwrap();
    let _p1 = room.join(&sessions[1], waiting).unwrap();
    assert!(!room.is_started());
    match room.join(&sessions[2], waiting) {
        Err(MediaError::ConferenceFull { max, .. }) => assert_eq!(max, 2),
        other => panic!("unexpected {other:?}"),
    }
    // not started: participant 1 talks, participant 0 hears nothing of it
    let talk = ToneSender::start(&peers[1], target(&sessions[1]), Codec::Pcmu, 800.0, 5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    peers[0].drain();
    let before = audio_of(&collect_for(&peers[0], Duration::from_millis(500)).await);
    assert!(
        rms(&before) < 50.0,
        "silence before the start: {}",
        rms(&before)
    );
    // the moderator arrives (limit lifted for this join): the conference starts, with a beep
    let _p2 = room
        .join(
            &sessions[2],
            ParticipantOptions {
                max_participants: None,
                ..ParticipantOptions::default()
            },
        )
        .unwrap();
    assert!(room.is_started());
    let got = audio_of(&collect_for(&peers[0], Duration::from_millis(800)).await);
    let beep_part = &got[..160 * 20.min(got.len() / 160)];
    assert!(
        share(beep_part, 600.0) + share(beep_part, 900.0) > 0.05,
        "enter beep"
    );
    assert!(share(&loud(&got), 800.0) > 0.5, "then participant 1");
    talk.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringback_rings_until_stopped() {
    let media = MediaRuntime::start(config()).unwrap();
    let peer = Arc::new(Peer::new());
    let mut a = media.open_session().unwrap();
    let mut outcomes = a.outcomes().unwrap();
    a.set_remote(peer.addr(), Codec::Pcma, None);
    let id = a.play(MediaCommand::Ringback {
        country: "us".into(),
    });
    // 2 s on, 4 s off: the first 2 s are the tone
    let got = collect_until(&peer, Duration::from_secs(5), |p| p.len() >= 100).await;
    let pcm = audio_of(&got);
    assert!(share(&pcm, 440.0) > 0.4 && share(&pcm, 480.0) > 0.4);
    assert!(rms(&pcm) > 1000.0);
    a.stop_playback();
    assert!(
        matches!(next_outcome(&mut outcomes, 5).await, MediaOutcome::Interrupted { id: d } if d == id)
    );
    let bad = a.play(MediaCommand::Ringback {
        country: "zz".into(),
    });
    match next_outcome(&mut outcomes, 5).await {
        MediaOutcome::Failed { id, error } => {
            assert_eq!(id, bad);
            assert!(matches!(*error, MediaError::UnknownRingTone { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_recording_holds_everyone_until_the_room_ends_trimmed() {
    let media = MediaRuntime::start(config()).unwrap();
    let peers: Vec<Arc<Peer>> = (0..2).map(|_| Arc::new(Peer::new())).collect();
    let sessions: Vec<MediaSession> = (0..2).map(|_| media.open_session().unwrap()).collect();
    for (s, p) in sessions.iter().zip(&peers) {
        s.set_remote(p.addr(), Codec::Pcmu, None);
    }
    let room = media.conference("AC1/recorded");
    let quiet = ParticipantOptions {
        beep_on_enter: false,
        beep_on_exit: false,
        ..ParticipantOptions::default()
    };
    let first = room.join(&sessions[0], quiet).unwrap();
    let second = room.join(&sessions[1], quiet).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("CF1.wav");
    let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let id = room.record(&path, true, tx);
    assert!(matches!(
        next_outcome(&mut outcomes, 5).await,
        MediaOutcome::RecordingStarted { id: started } if started == id
    ));
    // Half a second of silence first: trimmed away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let talkers: Vec<ToneSender> = [(0, 500.0), (1, 1100.0)]
        .into_iter()
        .map(|(i, hz)| {
            ToneSender::start(
                &peers[i],
                target(&sessions[i]),
                Codec::Pcmu,
                hz,
                9 + i as u32,
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // A second recording of the same room is refused.
    let (tx2, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let again = room.record(dir.path().join("again.wav"), false, tx2);
    assert!(matches!(
        next_outcome(&mut refused, 5).await,
        MediaOutcome::Failed { id, .. } if id == again
    ));
    // The first leaves: still recording; the last leaves: the room ends and the file is done.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(second);
    let duration_ms = match next_outcome(&mut outcomes, 5).await {
        MediaOutcome::BridgeRecordingFinished {
            id: done,
            path: written,
            duration_ms,
            channels,
        } => {
            assert_eq!((done, channels), (id, 1));
            assert_eq!(written, path);
            duration_ms
        }
        other => panic!("unexpected {other:?}"),
    };
    assert!((1_300..2_500).contains(&duration_ms), "{duration_ms} ms");
    let mut reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().channels, 1);
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let both = loud(&samples[..8000]);
    assert!(share(&both, 500.0) > 0.3 && share(&both, 1100.0) > 0.3);
    // Trimmed: voice from just after the 100 ms margin.
    assert!(rms(&samples[1200..2400]) > 300.0, "leading silence kept");
    for t in talkers {
        t.stop();
    }
}

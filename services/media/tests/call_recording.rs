//! Call recordings over real UDP sockets: Dialtone plays to a remote party that talks back
//! (paced RTP tones), and we check with Goertzel what each channel of the WAV holds, and
//! that the file lasts as long as the recording ran.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{rtp, Peer, Received};
use dialtone_media::pcm::rms;
use dialtone_media::{
    BridgeOptions, CallRecordingOptions, Codec, CommandId, MediaCommand, MediaConfig, MediaError,
    MediaOutcome, MediaRuntime, MediaSession, Pcm, RecordingChannels, RecordingTrack,
};
use tokio::sync::mpsc::UnboundedReceiver;

fn config() -> MediaConfig {
    MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        // this test binary's own range
        rtp_ports: 46000..=46999,
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

/// The next outcome that ends `id`, skipping the others (prompts finishing, recordings
/// starting, …).
async fn outcome_of(rx: &mut UnboundedReceiver<MediaOutcome>, id: CommandId) -> MediaOutcome {
    loop {
        let outcome = next_outcome(rx, 10).await;
        if outcome.command() == Some(id)
            && !matches!(outcome, MediaOutcome::RecordingStarted { .. })
        {
            return outcome;
        }
    }
}

/// Drains what the peer receives for `d` (the remote party listening).
async fn listen(peer: &Arc<Peer>, d: Duration) -> Vec<Received> {
    let peer = peer.clone();
    tokio::task::spawn_blocking(move || peer.collect_for(d))
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

/// The loud 20 ms frames of a block of audio, so that silence does not dilute the shares.
fn loud(pcm: &[i16]) -> Vec<i16> {
    pcm.chunks(160)
        .filter(|f| rms(f) > 200.0)
        .flatten()
        .copied()
        .collect()
}

/// The frames that hold both tones (the mono mix where both parties sound at once).
fn frames_with_both(pcm: &[i16], a: f32, b: f32) -> usize {
    pcm.chunks(160)
        .filter(|f| f.len() == 160 && share(f, a) > 0.25 && share(f, b) > 0.25)
        .count()
}

/// A WAV file: (channels, sample rate, bits, samples).
fn read_wav(path: &Path) -> (u16, u32, u16, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let samples = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    (
        spec.channels,
        spec.sample_rate,
        spec.bits_per_sample,
        samples,
    )
}

fn split(samples: &[i16]) -> (Vec<i16>, Vec<i16>) {
    (
        samples.iter().step_by(2).copied().collect(),
        samples.iter().skip(1).step_by(2).copied().collect(),
    )
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

/// A session talking to a fresh peer.
fn open(media: &Arc<MediaRuntime>, codec: Codec) -> (MediaSession, Arc<Peer>) {
    let peer = Arc::new(Peer::new());
    let session = media.open_session().unwrap();
    session.set_remote(peer.addr(), codec, Some(101));
    (session, peer)
}

fn tone(hz: f32, ms: u32) -> MediaCommand {
    MediaCommand::PlayAudio {
        pcm: Arc::new(Pcm::tone(&[hz], ms, 5000.0)),
        loops: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_recording_has_the_remote_party_left_and_what_we_play_right() {
    let media = MediaRuntime::start(config()).unwrap();
    let (mut session, peer) = open(&media, Codec::Pcma);
    let mut outcomes = session.outcomes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recordings/RE1.wav");

    let id = session
        .start_call_recording(CallRecordingOptions {
            path: path.clone(),
            channels: RecordingChannels::Dual,
            track: RecordingTrack::Both,
            trim_silence: false,
        })
        .unwrap();
    match next_outcome(&mut outcomes, 5).await {
        MediaOutcome::RecordingStarted { id: started } => assert_eq!(started, id),
        other => panic!("unexpected {other:?}"),
    }
    let started = Instant::now();
    assert_eq!(session.call_recording(), Some(id));
    // One recording at a time.
    assert!(matches!(
        session.start_call_recording(CallRecordingOptions::new(dir.path().join("x.wav"))),
        Err(MediaError::CallRecordingInProgress)
    ));

    // We play 1000 Hz while the remote party says 600 Hz (A-law both ways).
    let talk = ToneSender::start(&peer, target(&session), Codec::Pcma, 600.0, 0x600);
    let prompt = session.play(tone(1000.0, 1500));
    let heard = listen(&peer, Duration::from_millis(1800)).await;
    talk.stop();
    assert!(heard.len() >= 60, "the remote party heard the prompt");
    assert!(matches!(
        outcome_of(&mut outcomes, prompt).await,
        MediaOutcome::Finished { .. }
    ));

    assert_eq!(session.stop_call_recording(), Some(id));
    let elapsed = started.elapsed();
    assert_eq!(session.stop_call_recording(), None, "already stopped");
    let (done_path, duration_ms, channels) = match outcome_of(&mut outcomes, id).await {
        MediaOutcome::CallRecordingFinished {
            path,
            duration_ms,
            channels,
            ..
        } => (path, duration_ms, channels),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(done_path, path);
    assert_eq!(channels, 2);
    // As long as it ran: every 20 ms engine frame is in it, silent or not.
    let elapsed_ms = elapsed.as_millis() as u64;
    assert!(
        duration_ms.abs_diff(elapsed_ms) <= 100,
        "{duration_ms} ms recorded over {elapsed_ms} ms"
    );
    assert!(!path.with_extension("wav.partial").exists());

    let (file_channels, rate, bits, samples) = read_wav(&path);
    assert_eq!((file_channels, rate, bits), (2, 8000, 16));
    assert_eq!(samples.len() as u64, duration_ms * 16);
    let (left, right) = split(&samples);
    let (left, right) = (loud(&left), loud(&right));
    assert!(left.len() >= 160 * 60, "{} loud samples left", left.len());
    assert!(
        right.len() >= 160 * 60,
        "{} loud samples right",
        right.len()
    );
    assert!(share(&left, 600.0) > 0.8, "left: {}", share(&left, 600.0));
    assert!(share(&left, 1000.0) < 0.01, "no prompt on the left");
    assert!(
        share(&right, 1000.0) > 0.8,
        "right: {}",
        share(&right, 1000.0)
    );
    assert!(share(&right, 600.0) < 0.01, "no remote party on the right");
    // The prompt is recorded as sent: level of a 5000-amplitude sine through A-law.
    assert!((rms(&right) - 5000.0 / 2f64.sqrt()).abs() < 500.0);

    // A new recording may start once the last one stopped.
    let again = session
        .start_call_recording(CallRecordingOptions::new(dir.path().join("again.wav")))
        .unwrap();
    assert_ne!(again, id);
    session.close();
    assert!(matches!(
        outcome_of(&mut outcomes, again).await,
        MediaOutcome::CallRecordingFinished { channels: 1, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mono_recording_mixes_both_directions_and_ends_when_the_session_closes() {
    let media = MediaRuntime::start(config()).unwrap();
    let (mut session, peer) = open(&media, Codec::Pcmu);
    let mut outcomes = session.outcomes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mono.wav");

    let id = session
        .start_call_recording(CallRecordingOptions::new(&path))
        .unwrap();
    assert!(matches!(
        next_outcome(&mut outcomes, 5).await,
        MediaOutcome::RecordingStarted { .. }
    ));
    let started = Instant::now();
    // 400 ms of the remote party alone, then both at once for a second.
    let talk = ToneSender::start(&peer, target(&session), Codec::Pcmu, 600.0, 0x601);
    listen(&peer, Duration::from_millis(400)).await;
    session.play(tone(1000.0, 1000));
    listen(&peer, Duration::from_millis(1300)).await;
    talk.stop();

    // Closing the session ends the recording.
    session.close();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (duration_ms, channels) = match outcome_of(&mut outcomes, id).await {
        MediaOutcome::CallRecordingFinished {
            duration_ms,
            channels,
            ..
        } => (duration_ms, channels),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(channels, 1);
    assert!(
        duration_ms.abs_diff(elapsed_ms) <= 100,
        "{duration_ms} ms recorded over {elapsed_ms} ms"
    );
    let (file_channels, rate, _, samples) = read_wav(&path);
    assert_eq!((file_channels, rate), (1, 8000));
    assert_eq!(samples.len() as u64, duration_ms * 8);
    let both = frames_with_both(&samples, 600.0, 1000.0);
    assert!(both >= 40, "{both} frames hold both parties");
    // The first 300 ms after the remote started talking hold it alone.
    let early = loud(&samples[..(8 * 350).min(samples.len())]);
    assert!(!early.is_empty());
    assert!(share(&early, 600.0) > 0.8 && share(&early, 1000.0) < 0.01);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_tracks_keep_one_direction_and_speech_is_recorded_as_sent() {
    let media = MediaRuntime::start(config()).unwrap();
    let (mut session, peer) = open(&media, Codec::Pcmu);
    let mut outcomes = session.outcomes().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Outbound only: our speech, not the remote party.
    let outbound = dir.path().join("outbound.wav");
    let id = session
        .start_call_recording(CallRecordingOptions {
            path: outbound.clone(),
            channels: RecordingChannels::Dual,
            track: RecordingTrack::Outbound,
            trim_silence: false,
        })
        .unwrap();
    let talk = ToneSender::start(&peer, target(&session), Codec::Pcmu, 600.0, 0x602);
    let say = session.play(MediaCommand::say(
        "Thank you for calling. This call is recorded.",
        None,
        None,
    ));
    let listening = {
        let peer = peer.clone();
        tokio::task::spawn_blocking(move || peer.collect_for(Duration::from_secs(8)))
    };
    assert!(matches!(
        outcome_of(&mut outcomes, say).await,
        MediaOutcome::Finished { .. }
    ));
    session.stop_call_recording();
    let heard = listening.await.unwrap();
    match outcome_of(&mut outcomes, id).await {
        MediaOutcome::CallRecordingFinished { channels, .. } => {
            assert_eq!(channels, 1, "a single track is mono")
        }
        other => panic!("unexpected {other:?}"),
    }
    let (channels, _, _, samples) = read_wav(&outbound);
    assert_eq!(channels, 1);
    let speech = loud(&samples);
    assert!(speech.len() >= 160 * 25, "{} loud samples", speech.len());
    assert!(share(&speech, 600.0) < 0.02, "{}", share(&speech, 600.0));
    // What the remote party received is what was recorded (same packets, decoded).
    let sent: Vec<i16> = heard
        .iter()
        .filter(|p| p.pt == 0)
        .flat_map(|p| Codec::Pcmu.decode(&p.payload))
        .collect();
    let sent = loud(&sent);
    assert!((rms(&sent) - rms(&speech)).abs() < rms(&sent) * 0.1);

    // Inbound only: the remote party, not our prompt.
    let inbound = dir.path().join("inbound.wav");
    let id = session
        .start_call_recording(CallRecordingOptions {
            path: inbound.clone(),
            channels: RecordingChannels::Mono,
            track: RecordingTrack::Inbound,
            trim_silence: false,
        })
        .unwrap();
    session.play(tone(1000.0, 800));
    listen(&peer, Duration::from_millis(1000)).await;
    talk.stop();
    session.stop_call_recording();
    assert!(matches!(
        outcome_of(&mut outcomes, id).await,
        MediaOutcome::CallRecordingFinished { channels: 1, .. }
    ));
    let (_, _, _, samples) = read_wav(&inbound);
    let remote = loud(&samples);
    assert!(remote.len() >= 160 * 30);
    assert!(share(&remote, 600.0) > 0.8 && share(&remote, 1000.0) < 0.01);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_audio_is_in_the_outbound_channel() {
    let media = MediaRuntime::start(config()).unwrap();
    let (mut caller, caller_peer) = open(&media, Codec::Pcmu);
    let (callee, callee_peer) = open(&media, Codec::Pcma);
    let mut outcomes = caller.outcomes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridged.wav");

    let id = caller
        .start_call_recording(CallRecordingOptions {
            path: path.clone(),
            channels: RecordingChannels::Dual,
            track: RecordingTrack::Both,
            trim_silence: false,
        })
        .unwrap();
    let bridge = media
        .bridge(&caller, &callee, BridgeOptions::default())
        .unwrap();
    let talk_caller = ToneSender::start(&caller_peer, target(&caller), Codec::Pcmu, 600.0, 0x603);
    let talk_callee = ToneSender::start(&callee_peer, target(&callee), Codec::Pcma, 800.0, 0x803);
    let (_, _) = tokio::join!(
        listen(&caller_peer, Duration::from_millis(1500)),
        listen(&callee_peer, Duration::from_millis(1500))
    );
    talk_caller.stop();
    talk_callee.stop();
    drop(bridge);
    caller.stop_call_recording();
    match outcome_of(&mut outcomes, id).await {
        MediaOutcome::CallRecordingFinished { channels, .. } => assert_eq!(channels, 2),
        other => panic!("unexpected {other:?}"),
    }
    let (_, _, _, samples) = read_wav(&path);
    let (left, right) = split(&samples);
    let (left, right) = (loud(&left), loud(&right));
    assert!(left.len() >= 160 * 50 && right.len() >= 160 * 50);
    assert!(share(&left, 600.0) > 0.8 && share(&left, 800.0) < 0.01);
    assert!(
        share(&right, 800.0) > 0.8 && share(&right, 600.0) < 0.01,
        "the callee, as the caller heard it: {}",
        share(&right, 800.0)
    );
}

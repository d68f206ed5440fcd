//! Fetching prompts from a real HTTP server (a small HTTP/1.1 server on a thread): formats,
//! conditional GET with ETag and Last-Modified, Cache-Control, errors; and local files.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use dialtone_media::pcm::rms;
use dialtone_media::{AudioFetcher, Codec, FetchConfig, MediaError, Pcm};

#[derive(Clone)]
struct Resource {
    body: Vec<u8>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

#[derive(Default)]
struct Log {
    /// (path, request headers) of every request.
    requests: Vec<(String, HashMap<String, String>)>,
}

struct Server {
    addr: SocketAddr,
    resources: Arc<Mutex<HashMap<String, Resource>>>,
    log: Arc<Mutex<Log>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let resources: Arc<Mutex<HashMap<String, Resource>>> = Default::default();
        let log: Arc<Mutex<Log>> = Default::default();
        let (res, lg) = (resources.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                lg.lock()
                    .unwrap()
                    .requests
                    .push((path.clone(), headers.clone()));
                let resource = res.lock().unwrap().get(&path).cloned();
                let response = match resource {
                    None => {
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_vec()
                    }
                    Some(r) => {
                        let etag = r
                            .headers
                            .iter()
                            .find(|(k, _)| *k == "etag")
                            .map(|(_, v)| v.clone());
                        let lm = r
                            .headers
                            .iter()
                            .find(|(k, _)| *k == "last-modified")
                            .map(|(_, v)| v.clone());
                        let not_modified = match (
                            headers.get("if-none-match"),
                            headers.get("if-modified-since"),
                        ) {
                            (Some(inm), _) => etag.as_ref() == Some(inm),
                            (None, Some(ims)) => lm.as_ref() == Some(ims),
                            _ => false,
                        };
                        let mut head = if not_modified {
                            "HTTP/1.1 304 Not Modified\r\n".to_string()
                        } else {
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
                                r.content_type,
                                r.body.len()
                            )
                        };
                        for (k, v) in &r.headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("connection: close\r\n\r\n");
                        let mut out = head.into_bytes();
                        if !not_modified {
                            out.extend_from_slice(&r.body);
                        }
                        out
                    }
                };
                let _ = stream.write_all(&response);
            }
        });
        Server {
            addr,
            resources,
            log,
        }
    }

    fn put(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
    ) {
        self.resources.lock().unwrap().insert(
            path.to_string(),
            Resource {
                body,
                content_type,
                headers,
            },
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn requests_to(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.log
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

fn wav(rate: u32, channels: u16, ms: u32, freq: f32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..(rate * ms / 1000) {
            let v = (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin() * 12000.0;
            for _ in 0..channels {
                w.write_sample(v as i16).unwrap();
            }
        }
        w.finalize().unwrap();
    }
    cursor.into_inner()
}

#[tokio::test]
async fn etag_revalidation_uses_the_cache() {
    let server = Server::start();
    server.put(
        "/a.wav",
        wav(44100, 2, 500, 440.0),
        "audio/wav",
        vec![("etag", "\"v1\"".into())],
    );
    let fetcher = AudioFetcher::new(FetchConfig::default()).unwrap();
    let first = fetcher.fetch(&server.url("/a.wav")).await.unwrap();
    assert!(
        (first.len() as i64 - 4000).abs() <= 4,
        "{} samples",
        first.len()
    );
    assert!(rms(first.samples()) > 5000.0);
    let second = fetcher.fetch(&server.url("/a.wav")).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second), "served from the cache");
    let reqs = server.requests_to("/a.wav");
    assert_eq!(reqs.len(), 2, "revalidated");
    assert_eq!(reqs[0].get("if-none-match"), None);
    assert_eq!(
        reqs[1].get("if-none-match").map(String::as_str),
        Some("\"v1\"")
    );
    let stats = fetcher.stats();
    assert_eq!(
        (stats.requests, stats.not_modified, stats.decodes),
        (2, 1, 1)
    );

    // a new version is downloaded again
    server.put(
        "/a.wav",
        wav(8000, 1, 250, 440.0),
        "audio/wav",
        vec![("etag", "\"v2\"".into())],
    );
    let third = fetcher.fetch(&server.url("/a.wav")).await.unwrap();
    assert_eq!(third.len(), 2000);
    assert_eq!(fetcher.stats().decodes, 2);
}

#[tokio::test]
async fn last_modified_and_max_age() {
    let server = Server::start();
    let lm = "Wed, 21 Oct 2015 07:28:00 GMT".to_string();
    server.put(
        "/lm.wav",
        wav(16000, 1, 200, 300.0),
        "audio/x-wav",
        vec![("last-modified", lm.clone())],
    );
    server.put(
        "/fresh.wav",
        wav(8000, 1, 100, 300.0),
        "audio/wav",
        vec![
            ("cache-control", "public, max-age=300".into()),
            ("etag", "\"f\"".into()),
        ],
    );
    server.put(
        "/nostore.wav",
        wav(8000, 1, 100, 300.0),
        "audio/wav",
        vec![("cache-control", "no-store".into())],
    );
    let fetcher = AudioFetcher::new(FetchConfig::default()).unwrap();
    for _ in 0..3 {
        fetcher.fetch(&server.url("/lm.wav")).await.unwrap();
        fetcher.fetch(&server.url("/fresh.wav")).await.unwrap();
        fetcher.fetch(&server.url("/nostore.wav")).await.unwrap();
    }
    let lm_reqs = server.requests_to("/lm.wav");
    assert_eq!(lm_reqs.len(), 3);
    assert_eq!(lm_reqs[2].get("if-modified-since"), Some(&lm));
    assert_eq!(server.requests_to("/fresh.wav").len(), 1, "fresh for 300 s");
    assert_eq!(server.requests_to("/nostore.wav").len(), 3);
    assert!(server
        .requests_to("/nostore.wav")
        .iter()
        .all(|h| !h.contains_key("if-none-match")));
}

#[tokio::test]
async fn concurrent_plays_of_one_url_share_a_request() {
    let server = Server::start();
    server.put(
        "/shared.wav",
        wav(8000, 1, 300, 500.0),
        "audio/wav",
        vec![("etag", "\"s\"".into())],
    );
    let fetcher = Arc::new(AudioFetcher::new(FetchConfig::default()).unwrap());
    let url = server.url("/shared.wav");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (f, u) = (fetcher.clone(), url.clone());
        tasks.push(tokio::spawn(
            async move { f.fetch(&u).await.unwrap().len() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 2400);
    }
    assert_eq!(server.requests_to("/shared.wav").len(), 1);
}

#[tokio::test]
async fn formats_by_content_type_and_magic() {
    let server = Server::start();
    let tone = Pcm::tone(&[700.0], 400, 9000.0);
    server.put(
        "/ulaw",
        tone.encoded(Codec::Pcmu).to_vec(),
        "audio/basic",
        vec![],
    );
    server.put(
        "/mulaw",
        tone.encoded(Codec::Pcmu).to_vec(),
        "audio/x-mulaw",
        vec![],
    );
    server.put(
        "/prompt.mp3",
        std::fs::read("tests/fixtures/tone-600hz-44k-stereo.mp3").unwrap(),
        "application/octet-stream",
        vec![],
    );
    server.put(
        "/page",
        b"<html>not audio</html>".to_vec(),
        "text/html",
        vec![],
    );
    let fetcher = AudioFetcher::new(FetchConfig::default()).unwrap();
    for path in ["/ulaw", "/mulaw"] {
        let pcm = fetcher.fetch(&server.url(path)).await.unwrap();
        assert_eq!(pcm.len(), 3200, "{path}");
        assert!((rms(pcm.samples()) - tone.rms()).abs() < 300.0, "{path}");
    }
    let mp3 = fetcher.fetch(&server.url("/prompt.mp3")).await.unwrap();
    assert!(mp3.len() >= 6400, "mp3 decoded to {} samples", mp3.len());
    assert!(
        rms(&mp3.samples()[1600..4800]) > 10000.0,
        "mp3 rms {}",
        rms(mp3.samples())
    );
    assert!(matches!(
        fetcher.fetch(&server.url("/page")).await,
        Err(MediaError::UnsupportedAudio { .. })
    ));
    assert!(matches!(
        fetcher.fetch(&server.url("/missing.wav")).await,
        Err(MediaError::FetchStatus { status: 404, .. })
    ));
}

#[tokio::test]
async fn size_limit() {
    let server = Server::start();
    server.put("/big.wav", wav(8000, 1, 2000, 300.0), "audio/wav", vec![]);
    let fetcher = AudioFetcher::new(FetchConfig {
        max_bytes: 10_000,
        ..FetchConfig::default()
    })
    .unwrap();
    assert!(matches!(
        fetcher.fetch(&server.url("/big.wav")).await,
        Err(MediaError::FetchTooLarge { .. })
    ));
}

#[tokio::test]
async fn local_files_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.wav");
    std::fs::write(&path, wav(22050, 1, 300, 440.0)).unwrap();
    let denied = AudioFetcher::new(FetchConfig::default()).unwrap();
    assert!(matches!(
        denied.fetch(path.to_str().unwrap()).await,
        Err(MediaError::InvalidUrl { .. })
    ));
    let fetcher = AudioFetcher::new(FetchConfig {
        allow_files: true,
        ..FetchConfig::default()
    })
    .unwrap();
    let a = fetcher.fetch(path.to_str().unwrap()).await.unwrap();
    assert!((a.len() as i64 - 2400).abs() <= 2);
    let b = fetcher
        .fetch(&format!("file://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(a.len(), b.len());
    let c = fetcher.fetch(path.to_str().unwrap()).await.unwrap();
    assert!(Arc::ptr_eq(&a, &c), "unchanged file served from the cache");
    // a changed file is decoded again
    std::fs::write(&path, wav(8000, 1, 100, 440.0)).unwrap();
    let d = fetcher.fetch(path.to_str().unwrap()).await.unwrap();
    assert_eq!(d.len(), 800);
    let ul = dir.path().join("x.ul");
    std::fs::write(&ul, Pcm::tone(&[400.0], 100, 5000.0).encoded(Codec::Pcmu)).unwrap();
    assert_eq!(
        fetcher.fetch(ul.to_str().unwrap()).await.unwrap().len(),
        800
    );
}

//! Fetching prompt audio by URL (`<Play>`): HTTP(S) with a cache revalidated by conditional
//! GET (`ETag` / `Last-Modified`), `Cache-Control: max-age` / `no-store` honoured, concurrent
//! requests for one URL coalesced; local files when allowed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED,
};
use reqwest::StatusCode;

use crate::decode::decode_audio;
use crate::error::MediaError;
use crate::pcm::Pcm;

/// Settings of the [`AudioFetcher`].
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Largest download accepted.
    pub max_bytes: u64,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Memory budget of the decoded-audio cache.
    pub memory_cache_bytes: usize,
    /// Whether `file://` URLs and absolute paths may be played. Off by default: URLs come
    /// from applications, which must not read the server's files.
    pub allow_files: bool,
}

impl Default for FetchConfig {
    fn default() -> FetchConfig {
        FetchConfig {
            max_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            memory_cache_bytes: 128 << 20,
            allow_files: false,
        }
    }
}

#[derive(Clone)]
struct Cached {
    pcm: Arc<Pcm>,
    etag: Option<String>,
    last_modified: Option<String>,
    /// Served without asking until then (`max-age`).
    fresh_until: Option<Instant>,
    /// When the origin last confirmed this version.
    validated_at: Instant,
    /// For files: modification time and length of the version decoded.
    file_version: Option<(SystemTime, u64)>,
    last_used: u64,
}

struct State {
    entries: HashMap<String, Cached>,
    /// One lock per URL being fetched, so that concurrent plays share a request.
    in_flight: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    bytes: usize,
    clock: u64,
}

/// Counters of the fetcher, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Requests sent (including conditional ones).
    pub requests: u64,
    /// 304 answers (cache revalidated).
    pub not_modified: u64,
    /// Served from the cache without a request.
    pub fresh_hits: u64,
    pub decodes: u64,
}

/// Downloads and decodes prompts, with a cache.
pub struct AudioFetcher {
    client: reqwest::Client,
    config: FetchConfig,
    state: Mutex<State>,
    requests: AtomicU64,
    not_modified: AtomicU64,
    fresh_hits: AtomicU64,
    decodes: AtomicU64,
}

enum Source {
    Http(reqwest::Url),
    File(PathBuf),
}

impl AudioFetcher {
    pub fn new(config: FetchConfig) -> Result<AudioFetcher, MediaError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(concat!("Dialtone/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MediaError::Config(format!("HTTP client: {e}")))?;
        Ok(AudioFetcher {
            client,
            config,
            state: Mutex::new(State {
                entries: HashMap::new(),
                in_flight: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
            requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            fresh_hits: AtomicU64::new(0),
            decodes: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> FetchStats {
        FetchStats {
            requests: self.requests.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            fresh_hits: self.fresh_hits.load(Ordering::Relaxed),
            decodes: self.decodes.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn source(&self, url: &str) -> Result<Source, MediaError> {
        let invalid = |reason: &str| MediaError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        if trimmed.starts_with('/') {
            if !self.config.allow_files {
                return Err(invalid("local files are not allowed"));
            }
            return Ok(Source::File(PathBuf::from(trimmed)));
        }
        let parsed = reqwest::Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
        match parsed.scheme() {
            "http" | "https" => Ok(Source::Http(parsed)),
            "file" => {
                if !self.config.allow_files {
                    return Err(invalid("local files are not allowed"));
                }
                parsed
                    .to_file_path()
                    .map(Source::File)
                    .map_err(|_| invalid("not a local file path"))
            }
            other => Err(invalid(&format!("unsupported scheme {other}"))),
        }
    }

    /// The decoded audio at `url` (http, https, or — when allowed — file URL or path).
    pub async fn fetch(&self, url: &str) -> Result<Arc<Pcm>, MediaError> {
        let source = self.source(url)?;
        let key = url.trim().to_string();
        let started = Instant::now();
        let gate = {
            let mut st = self.lock();
            st.in_flight
                .entry(key.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let result = {
            let _turn = gate.lock().await;
            match &source {
                Source::Http(u) => self.fetch_http(&key, u, started).await,
                Source::File(p) => self.fetch_file(&key, p).await,
            }
        };
        {
            let mut st = self.lock();
            // Only this map and the callers hold the gate: drop it when nobody waits.
            if Arc::strong_count(&gate) == 2 {
                st.in_flight.remove(&key);
            }
        }
        result
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        let mut st = self.lock();
        st.clock += 1;
        let now = st.clock;
        let entry = st.entries.get_mut(key)?;
        entry.last_used = now;
        Some(entry.clone())
    }

    async fn fetch_http(
        &self,
        key: &str,
        url: &reqwest::Url,
        started: Instant,
    ) -> Result<Arc<Pcm>, MediaError> {
        let cached = self.cached(key);
        if let Some(c) = &cached {
            let now = Instant::now();
            // Fresh by max-age, or revalidated by a request that ran while we waited.
            if c.fresh_until.is_some_and(|t| now < t) || c.validated_at >= started {
                self.fresh_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(c.pcm.clone());
            }
        }
        let fetch_err = |reason: String| MediaError::Fetch {
            url: url.to_string(),
            reason,
        };
        let mut request = self.client.get(url.clone());
        if let Some(c) = &cached {
            if let Some(etag) = &c.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &c.last_modified {
                request = request.header(IF_MODIFIED_SINCE, lm);
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut response = request.send().await.map_err(|e| fetch_err(e.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let cache_control = CacheControl::parse(header(CACHE_CONTROL).as_deref());
        if status == StatusCode::NOT_MODIFIED {
            if let Some(c) = cached {
                self.not_modified.fetch_add(1, Ordering::Relaxed);
                let mut st = self.lock();
                if let Some(e) = st.entries.get_mut(key) {
                    e.validated_at = Instant::now();
                    e.fresh_until = cache_control.fresh_until();
                }
                return Ok(c.pcm);
            }
            return Err(fetch_err("304 Not Modified without a cached copy".into()));
        }
        if !status.is_success() {
            return Err(MediaError::FetchStatus {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || MediaError::FetchTooLarge {
            url: url.to_string(),
            limit: self.config.max_bytes,
        };
        if header(CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > self.config.max_bytes)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_err(e.to_string()))?
        {
            if body.len() as u64 + chunk.len() as u64 > self.config.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let content_type = header(CONTENT_TYPE);
        let extension = Path::new(url.path())
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_string);
        let pcm = self.decode(body, content_type, extension).await?;
        if !cache_control.no_store {
            self.store(
                key,
                Cached {
                    pcm: pcm.clone(),
                    etag: header(ETAG),
                    last_modified: header(LAST_MODIFIED),
                    fresh_until: cache_control.fresh_until(),
                    validated_at: Instant::now(),
                    file_version: None,
                    last_used: 0,
                },
            );
        }
        Ok(pcm)
    }

    async fn fetch_file(&self, key: &str, path: &Path) -> Result<Arc<Pcm>, MediaError> {
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| MediaError::io(path, e))?;
        if meta.len() > self.config.max_bytes {
            return Err(MediaError::FetchTooLarge {
                url: path.display().to_string(),
                limit: self.config.max_bytes,
            });
        }
        let version = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if let Some(c) = self.cached(key) {
            if c.file_version == Some(version) {
                self.fresh_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(c.pcm);
            }
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| MediaError::io(path, e))?;
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_string);
        let pcm = self.decode(bytes, None, extension).await?;
        self.store(
            key,
            Cached {
                pcm: pcm.clone(),
                etag: None,
                last_modified: None,
                fresh_until: None,
                validated_at: Instant::now(),
                file_version: Some(version),
                last_used: 0,
            },
        );
        Ok(pcm)
    }

    async fn decode(
        &self,
        bytes: Vec<u8>,
        content_type: Option<String>,
        extension: Option<String>,
    ) -> Result<Arc<Pcm>, MediaError> {
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let pcm = tokio::task::spawn_blocking(move || {
            decode_audio(&bytes, content_type.as_deref(), extension.as_deref())
        })
        .await
        .map_err(|e| MediaError::Task(e.to_string()))??;
        Ok(Arc::new(pcm))
    }

    fn store(&self, key: &str, mut entry: Cached) {
        let mut st = self.lock();
        st.clock += 1;
        entry.last_used = st.clock;
        let size = entry_size(&entry);
        if let Some(old) = st.entries.insert(key.to_string(), entry) {
            st.bytes -= entry_size(&old);
        }
        st.bytes += size;
        while st.bytes > self.config.memory_cache_bytes {
            let victim = st
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(old) = st.entries.remove(&victim) {
                st.bytes -= entry_size(&old);
            }
        }
    }
}

fn entry_size(e: &Cached) -> usize {
    e.pcm.len() * 2 + 128
}

#[derive(Debug, Default, PartialEq, Eq)]
struct CacheControl {
    no_store: bool,
    max_age: Option<u64>,
}

impl CacheControl {
    fn parse(value: Option<&str>) -> CacheControl {
        let mut cc = CacheControl::default();
        for directive in value.unwrap_or("").split(',') {
            let d = directive.trim().to_ascii_lowercase();
            if d == "no-store" {
                cc.no_store = true;
            } else if d == "no-cache" {
                cc.max_age = Some(0);
            } else if let Some(v) = d.strip_prefix("max-age=") {
                if cc.max_age != Some(0) {
                    cc.max_age = v.trim_matches('"').parse().ok();
                }
            }
        }
        cc
    }

    fn fresh_until(&self) -> Option<Instant> {
        self.max_age
            .filter(|s| *s > 0)
            .and_then(|s| Instant::now().checked_add(Duration::from_secs(s.min(86_400 * 365))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_parsing() {
        assert_eq!(CacheControl::parse(None), CacheControl::default());
        assert_eq!(
            CacheControl::parse(Some("public, max-age=60")),
            CacheControl {
                no_store: false,
                max_age: Some(60)
            }
        );
        assert_eq!(
            CacheControl::parse(Some("no-cache, max-age=60")).max_age,
            Some(0)
        );
        assert!(CacheControl::parse(Some("No-Store")).no_store);
        assert!(CacheControl::parse(Some("max-age=0"))
            .fresh_until()
            .is_none());
    }

    #[test]
    fn urls() {
        let f = AudioFetcher::new(FetchConfig::default()).unwrap();
        assert!(matches!(f.source("http://x/a.wav"), Ok(Source::Http(_))));
        assert!(matches!(
            f.source("/etc/passwd"),
            Err(MediaError::InvalidUrl { .. })
        ));
        assert!(matches!(
            f.source("file:///etc/passwd"),
            Err(MediaError::InvalidUrl { .. })
        ));
        assert!(matches!(
            f.source("ftp://x/a"),
            Err(MediaError::InvalidUrl { .. })
        ));
        assert!(matches!(
            f.source("not a url"),
            Err(MediaError::InvalidUrl { .. })
        ));
        let f = AudioFetcher::new(FetchConfig {
            allow_files: true,
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(f.source("/tmp/a.wav"), Ok(Source::File(_))));
        assert!(matches!(f.source("file:///tmp/a.wav"), Ok(Source::File(_))));
    }
}

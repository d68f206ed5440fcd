//! A bounded in-memory cache of decoded prompts with single-flight loading: when a thousand
//! calls ask for the same prompt at once, it is synthesised or fetched once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::MediaError;
use crate::pcm::Pcm;

struct Entry {
    cell: Arc<OnceCell<Arc<Pcm>>>,
    last_used: u64,
    /// Accounted size; 0 until loaded.
    bytes: usize,
}

struct Inner<K> {
    map: HashMap<K, Entry>,
    bytes: usize,
    clock: u64,
}

/// Counters of a cache, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub loads: u64,
}

pub(crate) struct PcmCache<K> {
    inner: Mutex<Inner<K>>,
    budget_bytes: usize,
    hits: std::sync::atomic::AtomicU64,
    loads: std::sync::atomic::AtomicU64,
}

impl<K: Hash + Eq + Clone> PcmCache<K> {
    pub(crate) fn new(budget_bytes: usize) -> PcmCache<K> {
        PcmCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
            budget_bytes,
            hits: Default::default(),
            loads: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        // A panic while holding this lock leaves consistent data (plain map updates).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value, or the result of `load` (run once for concurrent callers of a key).
    pub(crate) async fn get_or_load<F, Fut>(&self, key: K, load: F) -> Result<Arc<Pcm>, MediaError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Pcm>, MediaError>>,
    {
        let cell = {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            let entry = inner.map.entry(key.clone()).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                last_used: now,
                bytes: 0,
            });
            entry.last_used = now;
            entry.cell.clone()
        };
        if let Some(pcm) = cell.get() {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(pcm.clone());
        }
        let result = cell
            .get_or_try_init(|| async {
                self.loads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                load().await
            })
            .await
            .cloned();
        let mut inner = self.lock();
        match &result {
            Ok(pcm) => {
                let size = pcm.len() * 2 + 64;
                let mut added = 0;
                if let Some(e) = inner.map.get_mut(&key) {
                    if Arc::ptr_eq(&e.cell, &cell) && e.bytes == 0 {
                        e.bytes = size;
                        added = size;
                    }
                }
                inner.bytes += added;
                self.evict(&mut inner, &key);
            }
            Err(_) => {
                // Forget the failed load so that the next caller tries again.
                if let Some(e) = inner.map.get(&key) {
                    if Arc::ptr_eq(&e.cell, &cell) && e.cell.get().is_none() {
                        inner.map.remove(&key);
                    }
                }
            }
        }
        result
    }

    /// Drops least recently used loaded entries (never `keep`) until within budget.
    fn evict(&self, inner: &mut Inner<K>, keep: &K) {
        while inner.bytes > self.budget_bytes {
            let victim = inner
                .map
                .iter()
                .filter(|(k, e)| e.bytes > 0 && *k != keep)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(e) = inner.map.remove(&victim) {
                inner.bytes -= e.bytes;
            }
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.map.len(),
            bytes: inner.bytes,
            hits: self.hits.load(std::sync::atomic::Ordering::Relaxed),
            loads: self.loads.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let cache = Arc::new(PcmCache::<String>::new(1 << 20));
        let loads = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let loads = loads.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load("hello".to_string(), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok(Arc::new(Pcm::silence(100)))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().len(), 800);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.loads), (1, 1));
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_budget_evicts_lru() {
        let cache = PcmCache::<u32>::new(3 * (1600 + 64));
        let r = cache
            .get_or_load(1, || async { Err(MediaError::Task("boom".into())) })
            .await;
        assert!(r.is_err());
        assert_eq!(cache.stats().entries, 0);
        for k in 1..=3u32 {
            cache
                .get_or_load(k, || async { Ok(Arc::new(Pcm::silence(100))) })
                .await
                .unwrap();
        }
        // touch 1 so that 2 is the least recently used
        cache
            .get_or_load(1, || async { Err(MediaError::Task("cached".into())) })
            .await
            .unwrap();
        cache
            .get_or_load(4, || async { Ok(Arc::new(Pcm::silence(100))) })
            .await
            .unwrap();
        let stats = cache.stats();
        assert_eq!(stats.entries, 3);
        assert!(stats.bytes <= 3 * (1600 + 64));
        // 2 was evicted: loading it again runs the loader
        let r = cache
            .get_or_load(2, || async { Err(MediaError::Task("evicted".into())) })
            .await;
        assert!(r.is_err());
        assert!(cache
            .get_or_load(1, || async { Err(MediaError::Task("x".into())) })
            .await
            .is_ok());
    }
}

//! The event hub: one subscription to the log, fanned out to any number of subscribers.
//!
//! Every subscriber of the stream API (and every sink) would otherwise be a subscription of
//! its own to the log: a query per commit per subscriber on SQLite, a consumer each on Kafka.
//! The hub reads the log once and keeps, for each account that has subscribers, a ring of
//! that account's latest events ([`HubConfig::buffer`] of them). A subscriber holds only an
//! index into its account's ring, so a thousand subscribers cost a thousand indexes, and a
//! slow one costs nothing but its own place: it is never waited for. A subscriber that falls
//! more than the ring behind has lost its place: the stream API cuts it off with the position
//! to resume from ([`LagPolicy::CutOff`]); a sink goes back to reading the log
//! ([`LagPolicy::CatchUp`]).
//!
//! A subscriber that starts from an earlier position first reads the log itself (catch-up),
//! then joins the ring once its cursor has passed the ring's start, skipping what it already
//! delivered: no gap, no duplicate, per-stream order kept (the log's order).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use dialtone_events::{Cursor, EventLog, Filter, LogError, RecordedEvent};
use futures::FutureExt;
use tokio::sync::watch;

use crate::filter::StreamFilter;
use crate::public::public_json;

/// Tuning of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events kept per account with subscribers: how far a live subscriber may fall behind.
    pub buffer: usize,
    /// Events read per page while a subscriber catches up from the log.
    pub catch_up_page: usize,
    /// Most events handed to a subscriber at once.
    pub max_batch: usize,
    /// Wait before resubscribing after a log error.
    pub retry_backoff: Duration,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            buffer: 10_000,
            catch_up_page: 2_000,
            max_batch: 512,
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// An event as the hub hands it out: shared by every subscriber of its account.
pub struct HubEvent {
    pub recorded: RecordedEvent,
    public: OnceLock<String>,
}

impl HubEvent {
    fn new(recorded: RecordedEvent) -> HubEvent {
        HubEvent {
            recorded,
            public: OnceLock::new(),
        }
    }

    /// The CloudEvent JSON an account's subscribers receive ([`public_json`]), computed once.
    pub fn public_json(&self) -> &str {
        self.public
            .get_or_init(|| public_json(&self.recorded.event))
    }
}

/// One event for one subscriber, with the position just after it (the SSE `id`).
pub struct Delivery {
    pub event: Arc<HubEvent>,
    pub position: String,
}

/// What a subscriber does when it falls more than the ring behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagPolicy {
    /// End with [`SubscribeError::Lagged`] (the stream API: the client resumes).
    CutOff,
    /// Read the missed events from the log, then rejoin (sinks).
    CatchUp,
}

/// Where a subscriber starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// With the next event the hub routes.
    Now,
    /// After every event this cursor has passed.
    After(Cursor),
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("the subscriber fell more than {buffer} events behind; resume after position {resume_after}")]
    Lagged { buffer: usize, resume_after: String },
    #[error("event log error: {0}")]
    Log(#[from] LogError),
}

/// Health of the hub, for `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct HubStatus {
    /// Every event before this has been routed.
    pub cursor: Cursor,
    pub accounts: usize,
    pub subscribers: usize,
    /// The last log error, until the next successful read.
    pub error: Option<String>,
}

/// The hub. Cheap to clone; the reading task stops when the last clone is dropped.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
    _task: Arc<TaskGuard>,
}

struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    log: Arc<dyn EventLog>,
    config: HubConfig,
    state: Mutex<State>,
}

struct State {
    /// Every event before this has been routed.
    cursor: Cursor,
    /// Rings of the accounts with subscribers, and how many each has.
    rings: HashMap<String, (Arc<Ring>, usize)>,
    subscribers: usize,
    error: Option<String>,
}

/// One account's latest events.
struct Ring {
    buffer: RwLock<RingBuffer>,
    /// The sequence the next pushed event gets: subscribers wait on it.
    end: watch::Sender<u64>,
}

struct RingBuffer {
    /// Every event of the account after this cursor is in `events` or not routed yet.
    start: Cursor,
    /// Sequence of `events[0]`.
    first_seq: u64,
    events: VecDeque<Arc<HubEvent>>,
}

impl RingBuffer {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every critical section leaves the state consistent; a panic elsewhere cannot break it.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `cursor` has passed everything `start` has, in every partition.
fn covers(cursor: &Cursor, start: &Cursor) -> bool {
    start
        .0
        .iter()
        .all(|(partition, next)| cursor.next_offset(partition) >= *next)
}

impl EventHub {
    /// Starts reading `log` from its head.
    pub async fn start(log: Arc<dyn EventLog>, config: HubConfig) -> Result<EventHub, LogError> {
        let head = log.head().await?;
        let inner = Arc::new(Inner {
            log,
            config,
            state: Mutex::new(State {
                cursor: head,
                rings: HashMap::new(),
                subscribers: 0,
                error: None,
            }),
        });
        let task = tokio::spawn(run(inner.clone()));
        Ok(EventHub {
            inner,
            _task: Arc::new(TaskGuard(task.abort_handle())),
        })
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.inner.log
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub fn status(&self) -> HubStatus {
        let state = lock(&self.inner.state);
        HubStatus {
            cursor: state.cursor.clone(),
            accounts: state.rings.len(),
            subscribers: state.subscribers,
            error: state.error.clone(),
        }
    }

    /// A subscriber to `account`'s events that `filter` selects.
    pub fn subscribe(
        &self,
        account: &str,
        filter: StreamFilter,
        start: Start,
        lag: LagPolicy,
    ) -> Subscriber {
        let mut state = lock(&self.inner.state);
        let hub_cursor = state.cursor.clone();
        state.subscribers += 1;
        let (ring, count) = state.rings.entry(account.to_owned()).or_insert_with(|| {
            let ring = Arc::new(Ring {
                buffer: RwLock::new(RingBuffer {
                    start: hub_cursor.clone(),
                    first_seq: 0,
                    events: VecDeque::new(),
                }),
                end: watch::channel(0).0,
            });
            (ring, 0)
        });
        *count += 1;
        let ring = ring.clone();
        // Under the state lock no event is routed, so the hub cursor and the ring's end agree.
        let end = ring.buffer.read().map(|b| b.end_seq()).unwrap_or(0);
        let (cursor, mode) = match start {
            Start::Now => (hub_cursor, Mode::Live { next_seq: end }),
            Start::After(cursor) => (cursor, Mode::CatchUp),
        };
        drop(state);
        metrics::gauge!("dialtone_stream_subscribers").increment(1.0);
        Subscriber {
            hub: self.inner.clone(),
            account: account.to_owned(),
            changes: ring.end.subscribe(),
            ring,
            filter,
            cursor,
            mode,
            lag,
        }
    }
}

/// Reads the log and routes each event to its account's ring, resubscribing after errors.
async fn run(inner: Arc<Inner>) {
    loop {
        let from = lock(&inner.state).cursor.clone();
        let mut subscription = match inner.log.subscribe(from, Filter::all()).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(%error, "event hub cannot subscribe to the log; retrying");
                lock(&inner.state).error = Some(error.to_string());
                tokio::time::sleep(inner.config.retry_backoff).await;
                continue;
            }
        };
        loop {
            let first = match subscription.next().await {
                None => return,
                Some(Err(error)) => {
                    tracing::warn!(%error, "event hub lost its log subscription; resubscribing");
                    lock(&inner.state).error = Some(error.to_string());
                    break;
                }
                Some(Ok(recorded)) => recorded,
            };
            let mut batch = vec![first];
            // Take whatever else is ready, without waiting: one wake-up per batch for every
            // subscriber instead of one per event. Unconstrained, or tokio's budget would make
            // the channel look empty after 128 receives.
            tokio::task::unconstrained(async {
                while batch.len() < 4_096 {
                    match subscription.next().now_or_never() {
                        Some(Some(Ok(recorded))) => batch.push(recorded),
                        _ => break,
                    }
                }
            })
            .await;
            inner.route(batch);
        }
        tokio::time::sleep(inner.config.retry_backoff).await;
    }
}

impl Inner {
    fn route(&self, batch: Vec<RecordedEvent>) {
        let mut touched: Vec<Arc<Ring>> = Vec::new();
        {
            let mut state = lock(&self.state);
            state.error = None;
            for recorded in batch {
                if state.cursor.has_passed(&recorded.position) {
                    continue;
                }
                state.cursor.advance(&recorded.position);
                let Some((ring, _)) = state.rings.get(&recorded.event.accountsid) else {
                    continue;
                };
                if let Ok(mut buffer) = ring.buffer.write() {
                    if buffer.events.len() >= self.config.buffer.max(1) {
                        if let Some(evicted) = buffer.events.pop_front() {
                            buffer.start.advance(&evicted.recorded.position);
                            buffer.first_seq += 1;
                        }
                    }
                    buffer.events.push_back(Arc::new(HubEvent::new(recorded)));
                }
                if !touched.iter().any(|t| Arc::ptr_eq(t, ring)) {
                    touched.push(ring.clone());
                }
            }
        }
        for ring in touched {
            let end = ring.buffer.read().map(|b| b.end_seq()).unwrap_or(0);
            ring.end.send_replace(end);
        }
    }
}

enum Mode {
    /// Reading the log until the cursor reaches the ring.
    CatchUp,
    /// Reading the ring from this sequence.
    Live { next_seq: u64 },
}

/// One subscriber: its account's ring, its filter and its own cursor.
pub struct Subscriber {
    hub: Arc<Inner>,
    account: String,
    ring: Arc<Ring>,
    changes: watch::Receiver<u64>,
    filter: StreamFilter,
    cursor: Cursor,
    mode: Mode,
    lag: LagPolicy,
}

impl Subscriber {
    /// Every event before this cursor has been delivered or filtered out.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The position token of [`Subscriber::cursor`].
    pub fn position(&self) -> String {
        self.hub.log.position_token(&self.cursor)
    }

    pub fn filter(&self) -> &StreamFilter {
        &self.filter
    }

    /// The next events (at least one, at most [`HubConfig::max_batch`]); waits for them.
    pub async fn next(&mut self) -> Result<Vec<Delivery>, SubscribeError> {
        loop {
            let found = match self.mode {
                Mode::CatchUp => self.catch_up().await?,
                Mode::Live { .. } => self.live()?,
            };
            if !found.is_empty() {
                return Ok(found);
            }
            if matches!(self.mode, Mode::Live { .. }) {
                // Marked seen in `live` before reading, so nothing pushed since is missed.
                if self.changes.changed().await.is_err() {
                    return Err(SubscribeError::Log(LogError::Closed));
                }
            }
        }
    }

    /// Delivers what the cursor has not passed and the filter wants, advancing the cursor.
    fn deliver(&mut self, events: impl IntoIterator<Item = Arc<HubEvent>>) -> Vec<Delivery> {
        let mut out = Vec::new();
        for event in events {
            let position = &event.recorded.position;
            if self.cursor.has_passed(position) {
                continue;
            }
            self.cursor.advance(position);
            if event.recorded.event.accountsid == self.account
                && self.filter.matches(&event.recorded.event)
            {
                out.push(Delivery {
                    position: self.hub.log.position_token(&self.cursor),
                    event,
                });
            }
        }
        out
    }

    async fn catch_up(&mut self) -> Result<Vec<Delivery>, SubscribeError> {
        if self.try_join(false) {
            return Ok(Vec::new());
        }
        let page = self
            .hub
            .log
            .read_all(&self.cursor, self.hub.config.catch_up_page)
            .await?;
        if page.is_empty() {
            // Nothing after the cursor in the log: nothing lies between it and the ring's
            // start either, so it may jump there.
            self.try_join(true);
            return Ok(Vec::new());
        }
        Ok(self.deliver(page.into_iter().map(|r| Arc::new(HubEvent::new(r)))))
    }

    /// Switches to the ring once the cursor covers its start (or at once with `jump`, moving
    /// the cursor to the start). Whether it switched.
    fn try_join(&mut self, jump: bool) -> bool {
        let Ok(buffer) = self.ring.buffer.read() else {
            return false;
        };
        if !jump && !covers(&self.cursor, &buffer.start) {
            return false;
        }
        if jump {
            for (partition, next) in &buffer.start.0 {
                let here = self.cursor.0.entry(partition.clone()).or_insert(0);
                *here = (*here).max(*next);
            }
        }
        self.mode = Mode::Live {
            next_seq: buffer.first_seq,
        };
        true
    }

    fn live(&mut self) -> Result<Vec<Delivery>, SubscribeError> {
        let Mode::Live { next_seq } = self.mode else {
            return Ok(Vec::new());
        };
        self.changes.borrow_and_update();
        let taken: Vec<Arc<HubEvent>> = {
            let Ok(buffer) = self.ring.buffer.read() else {
                return Err(SubscribeError::Log(LogError::Closed));
            };
            if next_seq < buffer.first_seq {
                drop(buffer);
                metrics::counter!("dialtone_stream_lagged_total").increment(1);
                return match self.lag {
                    LagPolicy::CutOff => Err(SubscribeError::Lagged {
                        buffer: self.hub.config.buffer,
                        resume_after: self.position(),
                    }),
                    LagPolicy::CatchUp => {
                        self.mode = Mode::CatchUp;
                        Ok(Vec::new())
                    }
                };
            }
            let offset = (next_seq - buffer.first_seq) as usize;
            let until = buffer
                .events
                .len()
                .min(offset + self.hub.config.max_batch.max(1));
            buffer.events.range(offset..until).cloned().collect()
        };
        self.mode = Mode::Live {
            next_seq: next_seq + taken.len() as u64,
        };
        let found = self.deliver(taken);
        if found.is_empty() && self.changes.has_changed().unwrap_or(false) {
            // More arrived while filtering: look again before waiting.
            return self.live();
        }
        Ok(found)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        metrics::gauge!("dialtone_stream_subscribers").decrement(1.0);
        let mut state = lock(&self.hub.state);
        state.subscribers = state.subscribers.saturating_sub(1);
        let last = match state.rings.get_mut(&self.account) {
            Some((ring, count)) if Arc::ptr_eq(ring, &self.ring) => {
                *count = count.saturating_sub(1);
                *count == 0
            }
            _ => false,
        };
        if last {
            // Nobody left to read the account's events: stop keeping them.
            state.rings.remove(&self.account);
        }
    }
}

//! Webhook sinks (Twilio Event Streams' model): every live sink with subscriptions gets one
//! delivery task, which reads its account's events from the [`EventHub`] (falling back to
//! the log when it lags, never cut off), and POSTs them as JSON arrays of CloudEvents, signed
//! like Twilio's JSON webhooks (`X-Twilio-Signature` over the URL with `bodySHA256`).
//!
//! - **Order**: strictly the log's order (per stream); batch n+1 leaves only after batch n was
//!   delivered or given up.
//! - **Retries**: a failed batch (connection error, timeout, any non-2xx answer) is retried
//!   with exponential backoff ([`RetryPolicy`]); after the last attempt it is given up and
//!   delivery goes on with the next batch.
//! - **Record**: every batch's outcome is appended to the sink's delivery stream (`DD…`) as
//!   `sink.delivered` or `sink.failed`, carrying the cursor just past the batch; the `sinks`
//!   projection keeps it, and a restarted deliverer resumes exactly there.
//! - **At least once**: a batch delivered but not yet recorded when the node stopped is sent
//!   again after a restart; receivers deduplicate on each CloudEvent's `id`.
//! - **Isolation**: one task per sink, so a slow or failing sink never delays another.
//!
//! Run it on one node of a cluster: each sink's delivery stream has a single writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dialtone_events::payload::{SinkDelivered, SinkFailed};
use dialtone_events::sid::{SinkDeliveriesSid, SinkSid};
use dialtone_events::{Cursor, EventLog, ExpectedVersion, LogError, NewEvent, Payload};
use dialtone_projections::sinks::{active_sinks, SinkRow, SubscriptionRow};
use dialtone_projections::{AccountDirectory, ReadModels, RunnerHandle};
pub use dialtone_voice::callbacks::RetryPolicy;
use dialtone_voice::signature::{sign, url_with_body_sha256, SIGNATURE_HEADER};
use dialtone_voice::webhook::{IDEMPOTENCY_HEADER, USER_AGENT};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::filter::{StreamFilter, TypePattern};
use crate::hub::{Delivery, EventHub, LagPolicy, Start};

/// Settings of the deliverer.
#[derive(Clone)]
pub struct SinkDelivererConfig {
    /// The node secret, to re-derive account auth tokens for signing.
    pub node_secret: Arc<[u8]>,
    pub retry: RetryPolicy,
    /// Events per request at most (with `batch_events`).
    pub max_batch_events: usize,
    /// Bytes per request at most (Twilio caps batches at 64 kB); a single larger event still
    /// goes alone.
    pub max_batch_bytes: usize,
    /// Time limit of one request (Twilio allows a sink 5 s).
    pub timeout: Duration,
    /// How often the sinks read model is looked at for new, changed or deleted sinks.
    pub poll_interval: Duration,
}

impl SinkDelivererConfig {
    /// Defaults: retries 1 s, 2 s, 4 s … up to 5 min between attempts, 10 attempts in all;
    /// 100 events or 64 KiB per request; 5 s per request; sinks re-read every second.
    pub fn new(node_secret: &[u8]) -> SinkDelivererConfig {
        SinkDelivererConfig {
            node_secret: Arc::from(node_secret),
            retry: RetryPolicy {
                initial_delay: Duration::from_secs(1),
                factor: 2.0,
                max_delay: Duration::from_secs(300),
                max_attempts: 10,
            },
            max_batch_events: 100,
            max_batch_bytes: 64 * 1024,
            timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Why the deliverer could not start.
#[derive(Debug, thiserror::Error)]
pub enum DelivererError {
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The running deliverer.
pub struct SinkDeliverer {
    task: JoinHandle<()>,
    wake: Arc<Notify>,
}

impl SinkDeliverer {
    /// Starts delivering every live sink. The read models should be caught up first (as
    /// `serve` does), so each sink resumes after its last recorded batch.
    pub fn start(
        hub: EventHub,
        read_models: ReadModels,
        projections: RunnerHandle,
        accounts: AccountDirectory,
        config: SinkDelivererConfig,
    ) -> Result<SinkDeliverer, DelivererError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()?;
        let shared = Arc::new(Shared {
            hub,
            accounts,
            client,
            config,
        });
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(supervise(shared, read_models, projections, wake.clone()));
        Ok(SinkDeliverer { task, wake })
    }

    /// Makes the deliverer look at the sinks at once (e.g. after a subscription changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops every delivery task. A batch in flight is sent again after the next start.
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

struct Shared {
    hub: EventHub,
    accounts: AccountDirectory,
    client: reqwest::Client,
    config: SinkDelivererConfig,
}

/// Where a sink's delivery stands: shared between its task and the supervisor, so that a
/// task restarted for a configuration change carries on exactly where the old one stopped.
#[derive(Debug, Clone)]
struct Progress {
    cursor: Cursor,
    /// Sequence of the sink's `DD…` stream.
    version: u64,
}

/// What makes a delivery task: restart it when any of this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    account: String,
    destination: String,
    batch_events: bool,
    types: Vec<String>,
}

struct Running {
    shape: Shape,
    progress: Arc<Mutex<Progress>>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The earliest of the subscriptions' start cursors (a partition missing from one counts as
/// its beginning).
fn earliest(subscriptions: &[SubscriptionRow]) -> Cursor {
    let mut iter = subscriptions.iter();
    let Some(first) = iter.next() else {
        return Cursor::start();
    };
    let mut earliest = first.start.clone();
    for other in iter {
        earliest
            .0
            .retain(|partition, _| other.start.0.contains_key(partition));
        for (partition, next) in earliest.0.iter_mut() {
            *next = (*next).min(other.start.next_offset(partition));
        }
    }
    earliest
}

fn shape_of(sink: &SinkRow, subscriptions: &[SubscriptionRow]) -> Shape {
    let mut types: Vec<String> = subscriptions
        .iter()
        .flat_map(|s| s.types.iter().map(|t| t.event_type.clone()))
        .collect();
    types.sort();
    types.dedup();
    Shape {
        account: sink.account_sid.clone(),
        destination: sink.destination.clone(),
        batch_events: sink.batch_events,
        types,
    }
}

/// Keeps one task per live sink with subscriptions, in step with the read model.
async fn supervise(
    shared: Arc<Shared>,
    read_models: ReadModels,
    projections: RunnerHandle,
    wake: Arc<Notify>,
) {
    if let Err(error) = projections.catch_up(shared.hub.log().as_ref()).await {
        tracing::warn!(%error, "sinks start without caught-up read models");
    }
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        match read_models.read(active_sinks).await {
            Ok(sinks) => {
                let mut live = Vec::with_capacity(sinks.len());
                for (sink, subscriptions) in sinks {
                    if subscriptions.is_empty() {
                        continue;
                    }
                    live.push(sink.sid.clone());
                    let shape = shape_of(&sink, &subscriptions);
                    if running.get(&sink.sid).is_some_and(|r| r.shape == shape) {
                        continue;
                    }
                    let progress = match running.remove(&sink.sid) {
                        Some(old) => old.progress.clone(),
                        None => Arc::new(Mutex::new(Progress {
                            cursor: sink
                                .delivered_cursor
                                .clone()
                                .unwrap_or_else(|| earliest(&subscriptions)),
                            version: sink.deliveries_version,
                        })),
                    };
                    tracing::info!(sink = %sink.sid, destination = %sink.destination, types = ?shape.types, "delivering sink");
                    let task = tokio::spawn(deliver_sink(
                        shared.clone(),
                        sink.clone(),
                        shape.clone(),
                        progress.clone(),
                    ));
                    running.insert(
                        sink.sid.clone(),
                        Running {
                            shape,
                            progress,
                            task,
                        },
                    );
                }
                running.retain(|sid, _| live.contains(sid));
                metrics::gauge!("dialtone_sinks_active").set(running.len() as f64);
            }
            Err(error) => tracing::warn!(%error, "cannot read the sinks; retrying"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(shared.config.poll_interval) => {}
        }
    }
}

/// Takes the next request's worth from `pending`: one event without `batch_events`, else up
/// to the event and byte limits (at least one event).
fn take_batch(
    pending: &mut Vec<Delivery>,
    shape: &Shape,
    config: &SinkDelivererConfig,
) -> Vec<Delivery> {
    let limit = if shape.batch_events {
        config.max_batch_events.max(1)
    } else {
        1
    };
    let mut bytes = 2;
    let mut count = 0;
    for delivery in pending.iter() {
        let size = delivery.event.public_json().len() + 1;
        if count >= limit || (count > 0 && bytes + size > config.max_batch_bytes) {
            break;
        }
        bytes += size;
        count += 1;
    }
    pending.drain(..count).collect()
}

/// The JSON array of a batch.
fn batch_body(batch: &[Delivery]) -> String {
    let mut body = String::with_capacity(
        batch
            .iter()
            .map(|d| d.event.public_json().len() + 1)
            .sum::<usize>()
            + 2,
    );
    body.push('[');
    for (i, delivery) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(delivery.event.public_json());
    }
    body.push(']');
    body
}

/// One attempt's outcome: the HTTP status, or why there was none.
async fn attempt(
    shared: &Shared,
    sink: &SinkRow,
    token: &str,
    body: &str,
    idempotency: &str,
) -> Result<u16, String> {
    let url = url_with_body_sha256(&sink.destination, body.as_bytes());
    let signature = sign(token, &url, &[] as &[(&str, &str)]);
    let response = shared
        .client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(IDEMPOTENCY_HEADER, idempotency)
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timeout".to_owned()
            } else if e.is_connect() {
                format!("connection failed: {e}")
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// One sink's delivery loop.
async fn deliver_sink(
    shared: Arc<Shared>,
    sink: SinkRow,
    shape: Shape,
    progress: Arc<Mutex<Progress>>,
) {
    let Ok(sink_sid) = SinkSid::parse(&sink.sid) else {
        return;
    };
    let deliveries = SinkDeliveriesSid::of(&sink_sid);
    let types: Vec<TypePattern> = shape
        .types
        .iter()
        .filter_map(|t| TypePattern::parse(t).ok())
        .collect();
    let filter = StreamFilter {
        types,
        subject: None,
        exclude_deliveries: true,
    };
    let start = progress
        .lock()
        .map(|p| p.cursor.clone())
        .unwrap_or_default();
    let mut subscriber = shared.hub.subscribe(
        &sink.account_sid,
        filter,
        Start::After(start),
        LagPolicy::CatchUp,
    );
    let log = shared.hub.log().clone();
    let mut pending: Vec<Delivery> = Vec::new();
    loop {
        if pending.is_empty() {
            match subscriber.next().await {
                Ok(batch) => pending = batch,
                Err(error) => {
                    tracing::warn!(sink = %sink.sid, %error, "sink delivery cannot read events; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let batch = take_batch(&mut pending, &shape, &shared.config);
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            continue;
        };
        let cursor = match log.parse_position(&last.position) {
            Ok(cursor) => cursor,
            Err(error) => {
                tracing::error!(sink = %sink.sid, %error, "unreadable position; stopping this sink");
                return;
            }
        };
        let first_id = first.event.recorded.event.id.to_string();
        let last_id = last.event.recorded.event.id.to_string();
        let body = batch_body(&batch);
        let idempotency = format!("{}-{first_id}", sink.sid);
        let mut attempts = 0u32;
        let outcome: Payload = loop {
            attempts += 1;
            let Some(account) = shared.accounts.get(&sink.account_sid) else {
                tracing::warn!(sink = %sink.sid, "the sink's account is unknown; waiting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let token = account.auth_token(&shared.config.node_secret);
            let started = Instant::now();
            match attempt(&shared, &sink, &token, &body, &idempotency).await {
                Ok(status) => {
                    metrics::counter!("dialtone_sink_events_delivered_total")
                        .increment(batch.len() as u64);
                    break SinkDelivered {
                        sink_sid: sink_sid.clone(),
                        events: batch.len() as u32,
                        first_event_id: first_id.clone(),
                        last_event_id: last_id.clone(),
                        cursor: cursor.clone(),
                        status,
                        attempts,
                        latency_ms: started.elapsed().as_millis() as u64,
                    }
                    .into();
                }
                Err(error) => {
                    metrics::counter!("dialtone_sink_attempts_failed_total").increment(1);
                    match shared.config.retry.delay_after(attempts) {
                        Some(delay) => {
                            tracing::info!(sink = %sink.sid, attempts, %error, ?delay, "sink delivery failed; retrying");
                            tokio::time::sleep(delay).await;
                        }
                        None => {
                            tracing::warn!(sink = %sink.sid, attempts, %error, events = batch.len(), "sink delivery given up");
                            metrics::counter!("dialtone_sink_events_failed_total")
                                .increment(batch.len() as u64);
                            break SinkFailed {
                                sink_sid: sink_sid.clone(),
                                events: batch.len() as u32,
                                first_event_id: first_id.clone(),
                                last_event_id: last_id.clone(),
                                cursor: cursor.clone(),
                                attempts,
                                error,
                            }
                            .into();
                        }
                    }
                }
            }
        };
        record(
            log.as_ref(),
            &sink,
            deliveries.as_str(),
            &progress,
            outcome,
            cursor,
        )
        .await;
    }
}

/// Appends a batch's outcome to the delivery stream (retrying until the log takes it: an
/// unrecorded batch would be sent again after a restart) and moves the progress past it.
async fn record(
    log: &dyn EventLog,
    sink: &SinkRow,
    stream: &str,
    progress: &Mutex<Progress>,
    outcome: Payload,
    cursor: Cursor,
) {
    loop {
        let version = progress.lock().map(|p| p.version).unwrap_or(0);
        let event = NewEvent::new(sink.account_sid.as_str(), outcome.clone());
        match log
            .append(stream, ExpectedVersion::Exact(version), vec![event])
            .await
        {
            Ok(appended) => {
                if let Ok(mut progress) = progress.lock() {
                    progress.version = appended.last_sequence;
                    progress.cursor = cursor;
                }
                return;
            }
            Err(LogError::VersionConflict { actual, .. }) => {
                // Someone else wrote this sink's deliveries (two deliverers?): take up the
                // stream where it is, and say so.
                tracing::error!(sink = %sink.sid, expected = version, actual, "another writer on this sink's delivery stream; run sink delivery on one node only");
                if let Ok(mut progress) = progress.lock() {
                    progress.version = actual;
                }
            }
            Err(error) => {
                tracing::warn!(sink = %sink.sid, %error, "cannot record a sink delivery; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

//! Status-callback delivery (the `callbacks` role): the imperative shell around the
//! `callbacks` outbox projection (`dialtone_projections::callbacks`).
//!
//! The projection turns call events into outbox rows; [`CallbackDeliverer`] watches the
//! outbox (it polls the read-model database every [`DelivererConfig::poll_interval`], and
//! [`CallbackWaker::wake`] makes it look at once), and for the calls this node owns
//! (`owner_node` of `call.initiated` = [`DelivererConfig::node_id`]: a call's stream has a
//! single writer) delivers each call's callbacks **strictly in order**: callback n+1 leaves
//! only after callback n was delivered or given up. Failures are retried with exponential
//! backoff ([`RetryPolicy`]); a call whose application is slow or failing never holds up
//! other calls (one queue per call, at most [`DelivererConfig::max_in_flight`] requests at
//! once overall, no permit held while waiting to retry). Each outcome is appended to the
//! call's stream as `callback.delivered` (HTTP status, attempts) or `callback.failed`
//! (error, attempts), which marks the outbox row done.
//!
//! Delivery is at least once: a callback whose outcome was not yet in the log when the node
//! stopped is sent again after a restart, with the same `I-Twilio-Idempotency-Token`
//! (derived from call SID and sequence number) so receivers can drop the duplicate.
//!
//! Requests are signed like every Twilio webhook (`X-Twilio-Signature`, keyed with the
//! account's auth token, re-derived from the node secret and the account's salt). The URL
//! fragment overrides `#ct=…&rt=…&tt=…` apply; `rc`/`rp` do not (the retry policy here
//! governs). Redirects are not followed: a 3xx counts as a failed attempt.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dialtone_events::payload::{CallbackDelivered, CallbackFailed, HttpMethod};
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_projections::callbacks::{self, OutboxRow};
use dialtone_projections::{AccountDirectory, ProjectionError, ReadModels, RunnerHandle};
use reqwest::header;
use reqwest::{redirect, Method, Url};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::signature::{self, SIGNATURE_HEADER};
use crate::webhook::{split_overrides, Timeouts, IDEMPOTENCY_HEADER, USER_AGENT};

/// When to try again after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the second attempt.
    pub initial_delay: Duration,
    /// Each further wait is the previous one times this (at least 1).
    pub factor: f64,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
    /// Attempts in all, the first included (at least 1); then the callback is given up.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 1 s, 2 s, 4 s, 8 s, 16 s: six attempts over about half a minute.
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(300),
            max_attempts: 6,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), or `None` when that was the
    /// last attempt.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.initial_delay.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let delay = if seconds.is_finite() {
            Duration::try_from_secs_f64(seconds).unwrap_or(self.max_delay)
        } else {
            self.max_delay
        };
        Some(delay.min(self.max_delay))
    }
}

/// Settings of the deliverer.
#[derive(Clone)]
pub struct DelivererConfig {
    /// This node: only callbacks of calls it owns are delivered here.
    pub node_id: String,
    /// The node secret, to re-derive account auth tokens for signing.
    pub node_secret: Arc<[u8]>,
    /// How often the outbox is read when nothing wakes the deliverer.
    pub poll_interval: Duration,
    /// Outbox rows read per poll at most.
    pub poll_batch: usize,
    /// HTTP requests in flight at most, over all calls.
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
    /// Connect / read / total time limits of one attempt (URL fragments may override).
    pub timeouts: Timeouts,
    pub user_agent: String,
    /// Accept any server certificate (development only).
    pub accept_invalid_certs: bool,
}

impl DelivererConfig {
    /// Defaults: poll every 200 ms, 64 requests in flight, [`RetryPolicy::default`],
    /// Twilio's time limits (connect 5 s, read 15 s, total 15 s).
    pub fn new(node_id: impl Into<String>, node_secret: &[u8]) -> DelivererConfig {
        DelivererConfig {
            node_id: node_id.into(),
            node_secret: Arc::from(node_secret),
            poll_interval: Duration::from_millis(200),
            poll_batch: 1000,
            max_in_flight: 64,
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            user_agent: USER_AGENT.to_owned(),
            accept_invalid_certs: false,
        }
    }
}

impl std::fmt::Debug for DelivererConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelivererConfig")
            .field("node_id", &self.node_id)
            .field("node_secret", &"<redacted>")
            .field("poll_interval", &self.poll_interval)
            .field("poll_batch", &self.poll_batch)
            .field("max_in_flight", &self.max_in_flight)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .field("user_agent", &self.user_agent)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

/// Why the deliverer could not start.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("cannot build the status-callback HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("cannot read the callback outbox: {0}")]
    Outbox(#[from] ProjectionError),
}

/// Per-call queues of pending outbox rows: the ordering core (pure, no I/O).
///
/// A call has a queue while it has work; its single worker takes rows in sequence order,
/// one at a time. Rows seen again (after the outbox was re-read from its start) are
/// dropped if they are in flight, already done or already queued.
#[derive(Debug, Default)]
pub struct DeliveryQueues {
    calls: HashMap<String, CallQueue>,
}

#[derive(Debug, Default)]
struct CallQueue {
    waiting: BTreeMap<u32, OutboxRow>,
    in_flight: Option<u32>,
    done_through: Option<u32>,
}

impl DeliveryQueues {
    /// Queues a pending row. True when the call had no queue: start a worker for it.
    pub fn offer(&mut self, row: OutboxRow) -> bool {
        let sequence = row.sequence_number;
        match self.calls.get_mut(&row.call_sid) {
            Some(queue) => {
                let seen = queue.in_flight == Some(sequence)
                    || queue.done_through.is_some_and(|done| sequence <= done);
                if !seen {
                    queue.waiting.entry(sequence).or_insert(row);
                }
                false
            }
            None => {
                let mut queue = CallQueue::default();
                let call_sid = row.call_sid.clone();
                queue.waiting.insert(sequence, row);
                self.calls.insert(call_sid, queue);
                true
            }
        }
    }

    /// The call's next row, now in flight; `None` (and the queue is dropped) when it has no
    /// more work.
    pub fn take_next(&mut self, call_sid: &str) -> Option<OutboxRow> {
        let queue = self.calls.get_mut(call_sid)?;
        match queue.waiting.pop_first() {
            Some((sequence, row)) => {
                queue.in_flight = Some(sequence);
                Some(row)
            }
            None => {
                self.calls.remove(call_sid);
                None
            }
        }
    }

    /// The call's in-flight row was delivered or given up.
    pub fn finish(&mut self, call_sid: &str, sequence_number: u32) {
        if let Some(queue) = self.calls.get_mut(call_sid) {
            if queue.in_flight == Some(sequence_number) {
                queue.in_flight = None;
            }
            queue.done_through = Some(
                queue
                    .done_through
                    .map_or(sequence_number, |d| d.max(sequence_number)),
            );
        }
    }

    /// Calls with work.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Rows waiting or in flight.
    pub fn rows(&self) -> usize {
        self.calls
            .values()
            .map(|q| q.waiting.len() + usize::from(q.in_flight.is_some()))
            .sum()
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AttemptFailure {
    message: String,
    /// Retrying cannot help (the URL is not an http(s) URL).
    permanent: bool,
}

impl AttemptFailure {
    fn transient(message: impl Into<String>) -> AttemptFailure {
        AttemptFailure {
            message: message.into(),
            permanent: false,
        }
    }
}

/// Wakes the deliverer so it reads the outbox now instead of at its next poll.
#[derive(Clone)]
pub struct CallbackWaker(Arc<Notify>);

impl CallbackWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

struct Shared {
    log: Arc<dyn EventLog>,
    read_models: ReadModels,
    accounts: AccountDirectory,
    config: DelivererConfig,
    queues: Mutex<DeliveryQueues>,
    permits: Semaphore,
    /// reqwest sets connect and read timeouts per client: one per distinct pair.
    clients: Mutex<HashMap<(Duration, Duration), reqwest::Client>>,
    shutdown: watch::Receiver<bool>,
}

/// Delivers status callbacks from the outbox. Dropping it (or [`CallbackDeliverer::shutdown`])
/// stops it; callbacks not delivered yet stay pending in the outbox for the next start.
pub struct CallbackDeliverer {
    shutdown: watch::Sender<bool>,
    waker: CallbackWaker,
    task: Option<JoinHandle<()>>,
}

impl CallbackDeliverer {
    /// Starts delivering. `read_models` and `projections` must belong to a runner that runs
    /// [`dialtone_projections::CallbacksProjection`] (it is in `standard_projections`), and
    /// `accounts` must be kept live by the same runner. Before its first read of the outbox
    /// the deliverer waits until the runner has applied every event that was in the log at
    /// start, so that outcomes recorded before a restart are known and not sent again.
    pub fn start(
        log: Arc<dyn EventLog>,
        read_models: ReadModels,
        projections: RunnerHandle,
        accounts: AccountDirectory,
        config: DelivererConfig,
    ) -> Result<CallbackDeliverer, CallbackError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            log,
            read_models,
            accounts,
            permits: Semaphore::new(config.max_in_flight.max(1)),
            queues: Mutex::new(DeliveryQueues::default()),
            clients: Mutex::new(HashMap::new()),
            shutdown: shutdown_rx,
            config,
        });
        // Build the default client now, so a broken TLS setup shows at startup.
        let defaults = shared.config.timeouts;
        shared
            .client(defaults.connect, defaults.read)
            .map_err(CallbackError::HttpClient)?;
        let task = tokio::spawn(run(shared, projections, wake.clone()));
        Ok(CallbackDeliverer {
            shutdown,
            waker: CallbackWaker(wake),
            task: Some(task),
        })
    }

    /// A handle that makes the deliverer read the outbox at once (e.g. after appending call
    /// events), instead of at its next poll.
    pub fn waker(&self) -> CallbackWaker {
        self.waker.clone()
    }

    /// Stops: requests in flight are abandoned (their callbacks stay pending) and the
    /// workers end. Returns once they have.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for CallbackDeliverer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Resolves once the deliverer is told to stop.
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

impl Shared {
    fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn client(&self, connect: Duration, read: Duration) -> Result<reqwest::Client, reqwest::Error> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(&(connect, read)) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .read_timeout(read)
            .redirect(redirect::Policy::none())
            .tls_danger_accept_invalid_certs(self.config.accept_invalid_certs)
            .build()?;
        clients.insert((connect, read), client.clone());
        Ok(client)
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, DeliveryQueues> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The poll loop: reads new pending rows of this node and hands them to per-call workers.
async fn run(shared: Arc<Shared>, projections: RunnerHandle, wake: Arc<Notify>) {
    let node = shared.config.node_id.clone();
    // Outcomes appended before a restart must be applied before the outbox is trusted.
    match shared.log.head().await {
        Ok(head) => {
            tokio::select! {
                _ = stopped(shared.shutdown.clone()) => return,
                caught_up = projections.wait_until(&head) => {
                    if let Err(error) = caught_up {
                        tracing::error!(%error, "projections stopped; status callbacks are not delivered");
                        return;
                    }
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the log head; delivering from the outbox as it is")
        }
    }
    tracing::info!(node = %node, "status-callback deliverer started");
    let mut workers = JoinSet::new();
    let mut last_id = 0i64;
    loop {
        while workers.try_join_next().is_some() {}
        let batch = shared.config.poll_batch.max(1);
        let after = last_id;
        let owner = node.clone();
        let polled = shared
            .read_models
            .read(move |conn| {
                // A rebuilt outbox numbers its rows from 1 again: read it from the start.
                let head = callbacks::max_outbox_id(conn)?;
                let after = if head < after { 0 } else { after };
                Ok((
                    after,
                    callbacks::pending_for_node(conn, &owner, after, batch)?,
                ))
            })
            .await;
        let mut full_batch = false;
        match polled {
            Ok((after, rows)) => {
                if after < last_id {
                    tracing::info!("the callback outbox was rebuilt; reading it from the start");
                }
                last_id = rows.last().map_or(after, |r| r.id);
                full_batch = rows.len() >= batch;
                let mut queues = shared.lock_queues();
                for row in rows {
                    let call_sid = row.call_sid.clone();
                    if queues.offer(row) {
                        let worker = call_worker(shared.clone(), call_sid.clone())
                            .instrument(tracing::info_span!("status_callbacks", call = %call_sid));
                        workers.spawn(worker);
                    }
                }
                metrics::gauge!("dialtone_callbacks_queued").set(queues.rows() as f64);
            }
            Err(error) => tracing::warn!(%error, "cannot read the callback outbox; retrying"),
        }
        if full_batch {
            continue;
        }
        tokio::select! {
            _ = stopped(shared.shutdown.clone()) => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(shared.config.poll_interval) => {}
        }
    }
    while workers.join_next().await.is_some() {}
    tracing::info!(node = %node, "status-callback deliverer stopped");
}

/// Delivers one call's callbacks in order until its queue is empty.
async fn call_worker(shared: Arc<Shared>, call_sid: String) {
    loop {
        if shared.is_stopping() {
            return;
        }
        let Some(row) = shared.lock_queues().take_next(&call_sid) else {
            return;
        };
        if !deliver(&shared, &row).await {
            // Stopping: the row stays pending in the outbox.
            return;
        }
        shared.lock_queues().finish(&call_sid, row.sequence_number);
    }
}

/// Sends one callback with retries and records the outcome. False if stopped first.
async fn deliver(shared: &Shared, row: &OutboxRow) -> bool {
    let retry = shared.config.retry;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let started = Instant::now();
        let result = tokio::select! {
            _ = stopped(shared.shutdown.clone()) => return false,
            result = attempt_once(shared, row) => result,
        };
        metrics::histogram!("dialtone_callback_attempt_seconds")
            .record(started.elapsed().as_secs_f64());
        let failure = match result {
            Ok(status) => {
                tracing::debug!(
                    sequence = row.sequence_number,
                    event = row.event.as_str(),
                    status,
                    attempt,
                    "status callback delivered"
                );
                metrics::counter!("dialtone_callbacks_delivered_total").increment(1);
                let delivered = CallbackDelivered {
                    event: row.event.as_str().to_owned(),
                    url: row.url.clone(),
                    sequence_number: row.sequence_number,
                    status,
                    attempts: attempt,
                    for_sequence: row.for_sequence,
                };
                return record(shared, row, delivered.into()).await;
            }
            Err(failure) => failure,
        };
        let next = if failure.permanent {
            None
        } else {
            retry.delay_after(attempt)
        };
        match next {
            Some(delay) => {
                tracing::info!(
                    sequence = row.sequence_number,
                    event = row.event.as_str(),
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %failure.message,
                    "status callback failed; will retry"
                );
                metrics::counter!("dialtone_callbacks_retries_total").increment(1);
                tokio::select! {
                    _ = stopped(shared.shutdown.clone()) => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            None => {
                tracing::warn!(
                    sequence = row.sequence_number,
                    event = row.event.as_str(),
                    attempts = attempt,
                    error = %failure.message,
                    "status callback given up"
                );
                metrics::counter!("dialtone_callbacks_failed_total").increment(1);
                let failed = CallbackFailed {
                    event: row.event.as_str().to_owned(),
                    url: row.url.clone(),
                    sequence_number: row.sequence_number,
                    attempts: attempt,
                    error: failure.message,
                    for_sequence: row.for_sequence,
                };
                return record(shared, row, failed.into()).await;
            }
        }
    }
}

/// Appends the outcome to the call's stream, retrying until it is durable: the next
/// callback of the call must not leave before this one's outcome is known. False if
/// stopped first (the callback is then sent again after a restart).
async fn record(shared: &Shared, row: &OutboxRow, outcome: Payload) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        let event = NewEvent::new(row.account_sid.as_str(), outcome.clone());
        match shared
            .log
            .append(&row.call_sid, ExpectedVersion::Any, vec![event])
            .await
        {
            Ok(_) => return true,
            Err(error) => {
                tracing::error!(%error, sequence = row.sequence_number, "cannot record a status-callback outcome; retrying");
                tokio::select! {
                    _ = stopped(shared.shutdown.clone()) => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// One HTTP attempt, holding a concurrency permit. The HTTP status on a 2xx.
async fn attempt_once(shared: &Shared, row: &OutboxRow) -> Result<u16, AttemptFailure> {
    let Ok(_permit) = shared.permits.acquire().await else {
        return Err(AttemptFailure::transient("the deliverer is closing"));
    };
    let account = shared.accounts.get(&row.account_sid).ok_or_else(|| {
        AttemptFailure::transient(format!(
            "account {} is unknown on this node, so the callback cannot be signed",
            row.account_sid
        ))
    })?;
    let auth_token = account.auth_token(&shared.config.node_secret);
    let (url, overrides) = split_overrides(&row.url);
    let timeouts = shared.config.timeouts.with(&overrides);
    let url = match Url::parse(url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => url,
        _ => {
            return Err(AttemptFailure {
                message: format!("{url:?} is not an absolute http(s) URL"),
                permanent: true,
            })
        }
    };
    let client = shared
        .client(timeouts.connect, timeouts.read)
        .map_err(|e| AttemptFailure::transient(format!("HTTP client: {e}")))?;
    let builder = match row.method {
        HttpMethod::Get => {
            let mut with_query = url;
            with_query
                .query_pairs_mut()
                .extend_pairs(row.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let signature = signature::sign::<&str, &str>(&auth_token, with_query.as_str(), &[]);
            client
                .request(Method::GET, with_query)
                .header(SIGNATURE_HEADER, signature)
        }
        HttpMethod::Post => {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(row.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .finish();
            let signature = signature::sign(&auth_token, url.as_str(), &row.params);
            client
                .request(Method::POST, url)
                .header(SIGNATURE_HEADER, signature)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
        }
    };
    let response = builder
        .header(header::USER_AGENT, shared.config.user_agent.as_str())
        .header(IDEMPOTENCY_HEADER, row.idempotency_token.as_str())
        .timeout(timeouts.total)
        .send()
        .await
        .map_err(|e| AttemptFailure::transient(describe_transport(&e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else if status.is_redirection() {
        Err(AttemptFailure::transient(format!(
            "HTTP {} (status callbacks do not follow redirects)",
            status.as_u16()
        )))
    } else {
        Err(AttemptFailure::transient(format!(
            "HTTP {}",
            status.as_u16()
        )))
    }
}

/// A transport error as `class: message chain`.
fn describe_transport(error: &reqwest::Error) -> String {
    let class = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = e.source();
    }
    format!("{class}: {out}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_projections::callbacks::{CallbackEvent, DeliveryState};
    use time::OffsetDateTime;

    fn row(call: &str, sequence_number: u32) -> OutboxRow {
        OutboxRow {
            id: i64::from(sequence_number) + 1,
            call_sid: call.to_owned(),
            sequence_number,
            account_sid: "AC1".into(),
            owner_node: "n1".into(),
            event: CallbackEvent::Completed,
            for_sequence: u64::from(sequence_number) + 1,
            url: "http://x/".into(),
            method: HttpMethod::Post,
            params: Vec::new(),
            idempotency_token: String::new(),
            event_time: OffsetDateTime::UNIX_EPOCH,
            state: DeliveryState::Pending,
            attempts: None,
            http_status: None,
            error: None,
        }
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_cap_and_stops() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(5),
            max_attempts: 5,
        };
        let delays: Vec<_> = (1..=5).map(|a| policy.delay_after(a)).collect();
        assert_eq!(
            delays,
            [
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(5)),
                None
            ]
        );
        let once = RetryPolicy {
            max_attempts: 0,
            ..policy
        };
        assert_eq!(once.delay_after(1), None);
        let defaults = RetryPolicy::default();
        assert_eq!(defaults.delay_after(5), Some(Duration::from_secs(16)));
        assert_eq!(defaults.delay_after(6), None);
        let huge = RetryPolicy {
            factor: 1e308,
            max_attempts: 100,
            ..policy
        };
        assert_eq!(huge.delay_after(50), Some(Duration::from_secs(5)));
    }

    #[test]
    fn queues_hand_out_rows_in_order_one_at_a_time() {
        let mut queues = DeliveryQueues::default();
        assert!(queues.offer(row("CA1", 0)));
        assert!(!queues.offer(row("CA1", 1)));
        assert!(queues.offer(row("CA2", 0)));
        assert_eq!(queues.calls(), 2);
        assert_eq!(queues.take_next("CA1").map(|r| r.sequence_number), Some(0));
        // Seen again while in flight (outbox re-read): ignored.
        assert!(!queues.offer(row("CA1", 0)));
        queues.finish("CA1", 0);
        assert!(!queues.offer(row("CA1", 0)), "already done");
        assert!(!queues.offer(row("CA1", 1)), "already queued");
        assert_eq!(queues.rows(), 2);
        assert_eq!(queues.take_next("CA1").map(|r| r.sequence_number), Some(1));
        queues.finish("CA1", 1);
        assert_eq!(queues.take_next("CA1"), None);
        assert_eq!(queues.calls(), 1, "an idle call's queue is dropped");
        // A later row of a call whose queue was dropped starts a new worker.
        assert!(queues.offer(row("CA1", 2)));
    }
}

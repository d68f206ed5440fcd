//! The clustered event log on Kafka (any broker speaking the Kafka protocol; tested against
//! Tansu, see `infra/kafka.sh`).
//!
//! # Layout
//!
//! One topic per family: `<prefix>.calls`, `<prefix>.numbers`, `<prefix>.accounts`,
//! `<prefix>.rates`, `<prefix>.conferences`, created on [`KafkaLog::open`] with the configured
//! partition count (a topic that already exists keeps its own). Each event is one record:
//!
//! - key: the stream id (the event's `subject`);
//! - value: the canonical structured-mode CloudEvents JSON ([`Event::to_json`]), the very
//!   bytes whose SHA-256 the next event's `prevhash` holds, so any Kafka consumer (kcat, a
//!   Connect sink) reads events without our code and can check the chain;
//! - headers: `content-type: application/cloudevents+json; charset=UTF-8` (structured mode of
//!   the CloudEvents Kafka binding) and `ce_type`, so a consumer can skip types unread.
//!
//! The partition is Kafka's default partitioner applied to the key (murmur2, as Java clients
//! and librdkafka's `murmur2_random` do), computed here so that `read_stream` knows the one
//! partition to read. Positions are `<topic>/<partition>` plus the offset; [`Cursor`] keys
//! are the same strings. The partition count of an existing topic must never change: streams
//! would move to other partitions, away from their earlier events.
//!
//! # One writer per stream
//!
//! Kafka cannot check a version when it accepts a record, so this process assigns each
//! event's `sequence` and `prevhash` itself. That is correct only while **every stream has a
//! single writing process at a time**, which Dialtone guarantees by design: a call is owned
//! by one node for its lifetime; numbers, accounts and rates are written through the API with
//! a version check against the projection. Two processes appending to one stream at once would
//! fork its chain; nothing here can detect that.
//!
//! Within the process, appends to one stream are serialized (sharded async mutexes) so the
//! version check and the produce are atomic; appends to different streams run concurrently
//! and share producer batches. The version check uses an in-memory head index (stream → last
//! sequence and hash). A stream the index does not know, or whose head does not satisfy the
//! expected version, is looked up in the broker: the index reads the stream's partition from
//! where it last stopped up to the current end (the first time: from the beginning), learning
//! the heads of every stream there, and skipping records this process wrote itself. So a
//! restarted node, or a node taking over a stream, learns its true head before appending.
//! The index keeps at most [`KafkaConfig::head_index_limit`] heads; beyond that it forgets the
//! least recently used half, remembering only a 64-bit fingerprint of each forgotten stream,
//! whose next append reads its partition from the beginning.
//!
//! # Durability and atomicity
//!
//! The producer is idempotent with `acks=all`; `append` returns only when every event of the
//! call is acknowledged. An append of several events is not a Kafka transaction (the test
//! broker does not honour read-committed isolation anyway): the events are produced back to
//! back to one partition and normally land in one batch, but if the producer fails part-way,
//! some of them may be in the log. The append then fails, and the stream's head is forgotten
//! so that the next append re-reads it from the broker. Appends run to completion in their own
//! task, so a caller dropping the future (a timeout) cannot leave the index behind the log.
//!
//! # Reading
//!
//! `read_stream`, `read_all` and the head index read with pooled consumers that assign
//! partitions explicitly and read until the broker reports the end of each partition
//! (librdkafka's partition EOF, taken from fetch responses), one topic at a time. They do not
//! stop at a high watermark asked beforehand: Tansu 0.6 answers ListOffsets(latest) with the
//! base offset of the last batch + 1, which would hide the rest of that batch. `head` uses
//! ListOffsets only as a starting point and reads from there to the end.
//!
//! `subscribe` starts a consumer of its own that assigns every partition (no consumer group:
//! groups need seconds to form, and projections keep their own offsets anyway), starts at the
//! cursor and forwards matching events. A record that is not an event is reported as
//! [`LogError::Corrupt`] on the subscription, which goes on past it.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer as RdBaseConsumer, Consumer, ConsumerContext, StreamConsumer as RdStreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::envelope::{micros, Event};
use crate::log::{
    family_of, Appended, Cursor, EventLog, ExpectedVersion, Filter, LogError, NewEvent, Position,
    RecordedEvent, Subscription, FAMILIES,
};
use crate::position::PositionError;

/// `content-type` of every record: structured-mode CloudEvents.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";
/// Header carrying the event type, for consumers that filter without parsing.
pub const TYPE_HEADER: &str = "ce_type";

/// Shards of the per-stream append lock.
const STREAM_LOCK_SHARDS: usize = 1024;
/// Idle consumers kept for reads.
const READER_POOL: usize = 8;
/// Longest single wait of a read for its next record or end of partition.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Events buffered per subscription.
const SUBSCRIBE_BUFFER: usize = 2_000;

/// Where and how to run the log.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Topics are `<topic_prefix>.<family>`.
    pub topic_prefix: String,
    /// Partitions of each topic this process creates.
    pub partitions: i32,
    /// Replication factor of the topics this process creates (1 for a single broker).
    pub replication_factor: i32,
    /// This node's id: events' `source` is `dialtone://<node>`.
    pub node: String,
    /// How long the producer waits to fill a batch (`linger.ms`): more throughput for a little
    /// latency per append.
    pub linger: Duration,
    /// How long an append may wait for its acknowledgements (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Bound on topic creation, metadata and offset requests, and on a read making no
    /// progress.
    pub request_timeout: Duration,
    /// Stream heads kept in memory before the least recently used half is forgotten.
    pub head_index_limit: usize,
    /// How long a subscriber's fetch waits at the end of the log (`fetch.wait.max.ms`).
    /// Kafka answers as soon as a record arrives; Tansu 0.6 holds the fetch this long, so
    /// there it is also the live latency.
    pub subscriber_fetch_wait: Duration,
    /// Extra librdkafka properties for every client (`security.protocol`, `sasl.*`, …);
    /// they override this module's settings.
    pub client_properties: Vec<(String, String)>,
}

impl Default for KafkaConfig {
    fn default() -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            topic_prefix: "dialtone".to_owned(),
            partitions: 6,
            replication_factor: 1,
            node: "node-1".to_owned(),
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            head_index_limit: 1_000_000,
            subscriber_fetch_wait: Duration::from_millis(20),
            client_properties: Vec::new(),
        }
    }
}

impl KafkaConfig {
    /// The defaults, with these brokers and node id.
    pub fn new(brokers: impl Into<String>, node: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            node: node.into(),
            ..KafkaConfig::default()
        }
    }

    fn client(&self, settings: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("dialtone-{}", self.node));
        for (key, value) in settings {
            config.set(*key, value);
        }
        for (key, value) in &self.client_properties {
            config.set(key, value);
        }
        config
    }

    fn producer_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("acks", "all".to_owned()),
            ("enable.idempotence", "true".to_owned()),
            ("linger.ms", self.linger.as_millis().to_string()),
            (
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            ),
            ("batch.num.messages", "10000".to_owned()),
            ("batch.size", "1000000".to_owned()),
            ("queue.buffering.max.messages", "1000000".to_owned()),
        ]
    }

    /// Settings of consumers that assign partitions explicitly and never commit. librdkafka
    /// only consumes with a `group.id`, but no group is ever joined. `fetch_wait` bounds how
    /// long the broker holds a fetch that found nothing new: readers want the end of a
    /// partition reported at once, subscribers fewer idle requests.
    fn consumer_settings(
        &self,
        role: &str,
        fetch_wait: Duration,
        report_end: bool,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("group.id", format!("dialtone-{}-{role}", self.node)),
            ("enable.auto.commit", "false".to_owned()),
            ("enable.auto.offset.store", "false".to_owned()),
            ("auto.offset.reset", "earliest".to_owned()),
            ("isolation.level", "read_uncommitted".to_owned()),
            ("enable.partition.eof", report_end.to_string()),
            (
                "fetch.wait.max.ms",
                fetch_wait.as_millis().max(1).to_string(),
            ),
        ]
    }
}

/// The context of this module's consumers: librdkafka's errors are logged as warnings,
/// except the end of a partition, which readers ask to be told of (`enable.partition.eof`)
/// and librdkafka also reports as a "global error".
#[derive(Clone, Default)]
pub struct LogContext;

impl ClientContext for LogContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(%error, reason, "librdkafka: end of partition")
            }
            _ => tracing::warn!(%error, reason, "librdkafka error"),
        }
    }
}

impl ConsumerContext for LogContext {}

type BaseConsumer = RdBaseConsumer<LogContext>;
type StreamConsumer = RdStreamConsumer<LogContext>;

fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> LogError {
    move |error| LogError::Kafka {
        context,
        message: error.to_string(),
    }
}

/// Kafka's `murmur2` hash (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition Kafka's default partitioner picks for `key` among `partitions`.
pub fn default_partition(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// One family topic.
#[derive(Debug, Clone)]
struct Topic {
    name: String,
    partitions: i32,
}

/// A partition: index into the topics (family order) and partition number.
type PartitionKey = (usize, i32);

fn partition_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// A 64-bit fingerprint of a stream id, remembered for forgotten heads.
fn fingerprint(stream: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    stream.hash(&mut hasher);
    hasher.finish()
}

// ---------------------------------------------------------------------------------------
// The head index: pure bookkeeping, fed with what was produced and what was read.

/// The last event of a stream, as far as this process knows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamHead {
    sequence: u64,
    hash: String,
    /// Offset of the stream's first event, when seen: where `read_stream` starts.
    first_offset: Option<i64>,
    /// Logical time of the last use, for eviction.
    used: u64,
}

/// What a read of a partition taught about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    sequence: u64,
    hash: String,
    first_offset: Option<i64>,
}

impl Observed {
    fn merge(&mut self, other: Observed) {
        if other.sequence > self.sequence {
            self.sequence = other.sequence;
            self.hash = other.hash;
        }
        self.first_offset = match (self.first_offset, other.first_offset) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

#[derive(Debug, Default)]
struct PartitionProgress {
    /// Every record below this offset has been read into the index (or was ours).
    scanned_to: i64,
    /// Offsets at or above `scanned_to` that this process produced: known without reading.
    own: BTreeSet<i64>,
    /// Reads of the partition begun so far; each read is numbered by this count.
    reads_started: u64,
    /// The number of the latest read that ended.
    last_read_done: u64,
}

/// A read the index needs before it can answer for a stream: from `start` to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScanPlan {
    start: i64,
    /// Reading from the beginning because the stream's head was forgotten.
    full: bool,
    /// This read's number (see [`PartitionProgress::reads_started`]).
    number: u64,
}

/// How the index can answer for a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// The stream's head, without reading: (0, genesis) for a stream with no event.
    Known(u64, String),
    Read(ScanPlan),
}

/// The answer after a read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScanOutcome {
    /// The stream's head: (0, genesis) for a stream with no event.
    Head(u64, String),
    /// The stream was forgotten while the read ran: read again.
    Retry,
}

/// Heads of streams, and how far each partition has been read to learn them.
///
/// Invariant: for every partition, every stream with an event below `scanned_to` is either in
/// `heads` with its latest sequence there, or in `forgotten`.
#[derive(Debug)]
struct HeadIndex {
    heads: HashMap<String, StreamHead>,
    partitions: HashMap<PartitionKey, PartitionProgress>,
    forgotten: HashSet<u64>,
    clock: u64,
    limit: usize,
}

impl HeadIndex {
    fn new(limit: usize) -> HeadIndex {
        HeadIndex {
            heads: HashMap::new(),
            partitions: HashMap::new(),
            forgotten: HashSet::new(),
            clock: 0,
            limit: limit.max(2),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The known head of `stream`, if any.
    fn lookup(&mut self, stream: &str) -> Option<(u64, String)> {
        let now = self.tick();
        let head = self.heads.get_mut(stream)?;
        head.used = now;
        Some((head.sequence, head.hash.clone()))
    }

    fn first_offset(&self, stream: &str) -> Option<i64> {
        self.heads.get(stream).and_then(|h| h.first_offset)
    }

    /// A ticket taken by a caller holding `stream`'s lock before it waits to read
    /// `partition`: any read begun after it answers for the stream.
    fn read_ticket(&mut self, partition: PartitionKey) -> u64 {
        self.partitions.entry(partition).or_default().reads_started
    }

    /// How to learn `stream`'s head, for a caller holding the stream's lock and the
    /// partition's read lock, whose `ticket` was taken before it waited for the latter.
    fn plan_scan(&mut self, partition: PartitionKey, stream: &str, ticket: u64) -> Lookup {
        let now = self.tick();
        let full = self.forgotten.contains(&fingerprint(stream));
        let progress = self.partitions.entry(partition).or_default();
        // Records this process produced right after the read prefix need no reading.
        while progress.own.first() == Some(&progress.scanned_to) {
            progress.own.pop_first();
            progress.scanned_to += 1;
        }
        if !full && progress.last_read_done > ticket {
            // A read begun while the caller already held the stream's lock has ended. Only
            // the caller appends to the stream, so that read's answer still stands: many
            // appends waiting on one partition share one read.
            return match self.heads.get_mut(stream) {
                Some(head) => {
                    head.used = now;
                    Lookup::Known(head.sequence, head.hash.clone())
                }
                None => Lookup::Known(0, crate::envelope::GENESIS_HASH.to_owned()),
            };
        }
        progress.reads_started += 1;
        Lookup::Read(ScanPlan {
            start: if full { 0 } else { progress.scanned_to },
            full,
            number: progress.reads_started,
        })
    }

    /// Takes in what reading `plan` up to `end` (the partition's end then) found, and answers
    /// for `stream`.
    fn finish_scan(
        &mut self,
        partition: PartitionKey,
        stream: &str,
        plan: &ScanPlan,
        end: i64,
        observed: HashMap<String, Observed>,
    ) -> ScanOutcome {
        let now = self.tick();
        let progress = self.partitions.entry(partition).or_default();
        progress.last_read_done = progress.last_read_done.max(plan.number);
        if end > progress.scanned_to {
            progress.scanned_to = end;
            let kept = progress.own.split_off(&end);
            progress.own = kept;
        }
        let target = fingerprint(stream);
        if plan.full {
            self.forgotten.remove(&target);
        }
        for (name, seen) in observed {
            // A forgotten stream stays forgotten (its earlier events were not all read now)
            // unless it is the one this full read was for.
            if name != stream && self.forgotten.contains(&fingerprint(&name)) {
                continue;
            }
            self.learn(name, seen, now);
        }
        if let Some(head) = self.heads.get_mut(stream) {
            head.used = now;
            return ScanOutcome::Head(head.sequence, head.hash.clone());
        }
        if self.forgotten.contains(&target) {
            return ScanOutcome::Retry;
        }
        ScanOutcome::Head(0, crate::envelope::GENESIS_HASH.to_owned())
    }

    fn learn(&mut self, stream: String, seen: Observed, now: u64) {
        match self.heads.get_mut(&stream) {
            Some(head) => {
                if seen.sequence > head.sequence {
                    head.sequence = seen.sequence;
                    head.hash = seen.hash;
                }
                if head.first_offset.is_none() {
                    head.first_offset = seen.first_offset;
                }
                head.used = now;
            }
            None => {
                self.heads.insert(
                    stream,
                    StreamHead {
                        sequence: seen.sequence,
                        hash: seen.hash,
                        first_offset: seen.first_offset,
                        used: now,
                    },
                );
            }
        }
        self.evict_if_full();
    }

    /// Records a successful append of `offsets` to `stream`.
    fn appended(&mut self, partition: PartitionKey, stream: &str, head: Observed, offsets: &[i64]) {
        self.add_own(partition, offsets);
        self.forgotten.remove(&fingerprint(stream));
        let now = self.tick();
        self.learn(stream.to_owned(), head, now);
    }

    /// After an append that may have written part of its events: the head is unknown until
    /// the partition is read again.
    fn forget(&mut self, partition: PartitionKey, stream: &str, delivered: &[i64]) {
        self.add_own(partition, delivered);
        self.heads.remove(stream);
        self.forgotten.insert(fingerprint(stream));
    }

    fn add_own(&mut self, partition: PartitionKey, offsets: &[i64]) {
        let progress = self.partitions.entry(partition).or_default();
        progress.own.extend(
            offsets
                .iter()
                .copied()
                .filter(|o| *o >= progress.scanned_to),
        );
    }

    /// Forgets the least recently used half of the heads when there are too many.
    fn evict_if_full(&mut self) {
        if self.heads.len() <= self.limit {
            return;
        }
        let mut uses: Vec<u64> = self.heads.values().map(|h| h.used).collect();
        let middle = uses.len() / 2;
        let (_, cutoff, _) = uses.select_nth_unstable(middle);
        let cutoff = *cutoff;
        let forgotten = &mut self.forgotten;
        self.heads.retain(|stream, head| {
            let keep = head.used >= cutoff;
            if !keep {
                forgotten.insert(fingerprint(stream));
            }
            keep
        });
        tracing::debug!(
            kept = self.heads.len(),
            forgotten = self.forgotten.len(),
            "event log head index evicted its least recently used streams"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Pure helpers: building events, decoding records.

/// An event ready to produce.
#[derive(Debug)]
struct PlannedEvent {
    event: Event,
    json: String,
    hash: String,
}

/// Numbers and chains `events` after a head (`sequence`, `prevhash`).
fn plan_events(
    source: &str,
    stream: &str,
    (mut sequence, mut prevhash): (u64, String),
    events: Vec<NewEvent>,
    now: OffsetDateTime,
) -> Vec<PlannedEvent> {
    let now = micros(now);
    events
        .into_iter()
        .map(|new| {
            sequence += 1;
            let event = Event {
                id: new.id.unwrap_or_else(Uuid::now_v7),
                event_type: new.payload.event_type().to_owned(),
                source: source.to_owned(),
                subject: stream.to_owned(),
                time: new.time.map(micros).unwrap_or(now),
                accountsid: new.accountsid,
                sequence,
                prevhash: std::mem::take(&mut prevhash),
                data: new.payload.to_raw(),
            };
            let json = event.to_json();
            let hash = event.hash();
            prevhash = hash.clone();
            PlannedEvent { event, json, hash }
        })
        .collect()
}

/// Decodes one record into an event, checking that it belongs to the stream its key names.
fn decode_record(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<RecordedEvent, LogError> {
    let position = Position {
        partition: partition_name(topic, partition),
        offset: u64::try_from(offset).unwrap_or_default(),
    };
    let corrupt = |message: String| LogError::Corrupt {
        position: position.to_string(),
        message,
    };
    let value = value.ok_or_else(|| corrupt("record has no value".to_owned()))?;
    let event = Event::from_json(value).map_err(|e| corrupt(e.to_string()))?;
    if key != Some(event.subject.as_bytes()) {
        return Err(corrupt(format!(
            "record key {:?} is not the event's subject {}",
            key.map(String::from_utf8_lossy),
            event.subject
        )));
    }
    Ok(RecordedEvent { position, event })
}

fn decode_message(message: &BorrowedMessage<'_>) -> Result<RecordedEvent, LogError> {
    decode_record(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.payload(),
    )
}

// ---------------------------------------------------------------------------------------
// Reading partitions with an assigned consumer.

enum Flow {
    Continue,
    Stop,
}

/// Partitions of one topic to read, each from a start offset to its end.
#[derive(Debug, Clone)]
struct TopicRead {
    topic: usize,
    starts: Vec<(i32, i64)>,
}

/// Reads `read` with `consumer` up to the end of each partition, calling `visit` for each
/// record in per-partition order. Returns the offset after the last record read in each
/// partition (its start if none), or `None` if `visit` stopped the read.
///
/// The end is where the broker reports end-of-partition, not a high watermark taken before:
/// Tansu 0.6 answers ListOffsets(latest) with the last batch's base offset + 1, so a
/// watermark would miss the rest of that batch. End-of-partition comes from the fetch
/// responses, which are right.
fn read_to_end<T>(
    consumer: &BaseConsumer,
    topic: &Topic,
    starts: &[(i32, i64)],
    patience: Duration,
    state: &mut T,
    visit: &mut impl FnMut(&mut T, &BorrowedMessage<'_>) -> Result<Flow, LogError>,
) -> Result<Option<HashMap<i32, i64>>, LogError> {
    let mut ends: HashMap<i32, i64> = starts.iter().copied().collect();
    if ends.is_empty() {
        return Ok(Some(ends));
    }
    let mut assignment = TopicPartitionList::with_capacity(starts.len());
    for &(partition, start) in starts {
        assignment
            .add_partition_offset(&topic.name, partition, Offset::Offset(start))
            .map_err(kafka("assigning partitions to read"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(kafka("assigning partitions to read"))?;

    let mut remaining: HashSet<i32> = ends.keys().copied().collect();
    let mut last_progress = Instant::now();
    let mut last_error: Option<KafkaError> = None;
    let result = loop {
        if remaining.is_empty() {
            break Ok(Some(ends));
        }
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let partition = message.partition();
                if message.topic() != topic.name || !remaining.contains(&partition) {
                    continue;
                }
                let next = message.offset() + 1;
                if let Some(end) = ends.get_mut(&partition) {
                    *end = (*end).max(next);
                }
                match visit(state, &message) {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Stop) => break Ok(None),
                    Err(error) => break Err(error),
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                last_progress = Instant::now();
                remaining.remove(&partition);
            }
            Some(Err(error)) => {
                // librdkafka retries on its own; report only if the read stalls.
                last_error = Some(error);
            }
            None => {}
        }
        if last_progress.elapsed() > patience {
            break Err(LogError::Kafka {
                context: "reading partitions",
                message: format!(
                    "{}: no progress for {patience:?} with partition(s) {remaining:?} unfinished{}",
                    topic.name,
                    last_error
                        .as_ref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                ),
            });
        }
    };
    consumer
        .unassign()
        .map_err(kafka("unassigning partitions"))?;
    result
}

// ---------------------------------------------------------------------------------------
// The log.

struct Inner {
    config: KafkaConfig,
    source: String,
    /// Family topics, in [`FAMILIES`] order.
    topics: Vec<Topic>,
    /// Every partition's name (`<topic>/<n>`), topics in [`FAMILIES`] order: the order of
    /// position tokens.
    partition_names: Vec<String>,
    producer: FutureProducer,
    /// Answers offset and metadata queries; never assigned.
    offsets: BaseConsumer,
    readers: Mutex<Vec<BaseConsumer>>,
    index: Mutex<HeadIndex>,
    stream_locks: Vec<tokio::sync::Mutex<()>>,
    /// One per partition: index reads of a partition run one at a time.
    scan_locks: HashMap<PartitionKey, tokio::sync::Mutex<()>>,
    /// Dropped with the log: ends subscriptions.
    _closed: watch::Sender<()>,
    closed: watch::Receiver<()>,
}

/// The Kafka event log. Cheap to share behind an `Arc`.
pub struct KafkaLog {
    inner: Arc<Inner>,
}

impl KafkaLog {
    /// Connects to the brokers, creates the family topics if they do not exist and waits
    /// until their partitions are known.
    pub async fn open(config: KafkaConfig) -> Result<KafkaLog, LogError> {
        let invalid = |message: String| LogError::Kafka {
            context: "checking the configuration",
            message,
        };
        if config.partitions < 1 {
            return Err(invalid(format!(
                "partitions must be at least 1, not {}",
                config.partitions
            )));
        }
        if config.topic_prefix.is_empty()
            || !config
                .topic_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(invalid(format!(
                "topic prefix {:?} must be non-empty ASCII letters, digits, '.', '_' or '-'",
                config.topic_prefix
            )));
        }
        let names: Vec<String> = FAMILIES
            .iter()
            .map(|family| format!("{}.{family}", config.topic_prefix))
            .collect();

        let admin: AdminClient<DefaultClientContext> = config
            .client(&[])
            .create()
            .map_err(kafka("creating the admin client"))?;
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    config.partitions,
                    TopicReplication::Fixed(config.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(config.request_timeout))
            .operation_timeout(Some(config.request_timeout));
        let created = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| LogError::Kafka {
                context: "creating topics",
                message: format!("{e} (brokers {})", config.brokers),
            })?;
        for result in created {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(LogError::Kafka {
                        context: "creating topics",
                        message: format!("{name}: {code} (brokers {})", config.brokers),
                    })
                }
            }
        }

        let offsets: BaseConsumer = config
            .client(&[("isolation.level", "read_uncommitted".to_owned())])
            .create_with_context(LogContext)
            .map_err(kafka("creating the offsets client"))?;
        let producer: FutureProducer = config
            .client(&config.producer_settings())
            .create()
            .map_err(kafka("creating the producer"))?;

        let (offsets, topics) = {
            let timeout = config.request_timeout;
            tokio::task::spawn_blocking(move || {
                let topics = names
                    .into_iter()
                    .map(|name| {
                        let partitions = wait_for_partitions(&offsets, &name, timeout)?;
                        Ok(Topic { name, partitions })
                    })
                    .collect::<Result<Vec<_>, LogError>>()?;
                Ok::<_, LogError>((offsets, topics))
            })
            .await
            .map_err(|e| LogError::Kafka {
                context: "reading topic metadata",
                message: e.to_string(),
            })??
        };
        tracing::info!(
            brokers = %config.brokers,
            topics = ?topics.iter().map(|t| format!("{}({})", t.name, t.partitions)).collect::<Vec<_>>(),
            "kafka event log open"
        );

        let scan_locks = topics
            .iter()
            .enumerate()
            .flat_map(|(t, topic)| {
                (0..topic.partitions).map(move |p| ((t, p), tokio::sync::Mutex::new(())))
            })
            .collect();
        let (closed_tx, closed) = watch::channel(());
        let partition_names = topics
            .iter()
            .flat_map(|topic| (0..topic.partitions).map(|p| partition_name(&topic.name, p)))
            .collect();
        Ok(KafkaLog {
            inner: Arc::new(Inner {
                source: format!("dialtone://{}", config.node),
                partition_names,
                index: Mutex::new(HeadIndex::new(config.head_index_limit)),
                config,
                topics,
                producer,
                offsets,
                readers: Mutex::new(Vec::new()),
                stream_locks: (0..STREAM_LOCK_SHARDS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                scan_locks,
                _closed: closed_tx,
                closed,
            }),
        })
    }

    /// The family topics, in [`FAMILIES`] order.
    pub fn topics(&self) -> Vec<String> {
        self.inner.topics.iter().map(|t| t.name.clone()).collect()
    }

    /// The partition (`<topic>/<n>`) holding `stream`.
    pub fn partition_of(&self, stream: &str) -> Result<String, LogError> {
        let (topic, partition) = self.inner.partition_key(stream)?;
        Ok(partition_name(&self.inner.topics[topic].name, partition))
    }
}

/// Waits until the broker reports `topic` with its partitions; returns their number.
fn wait_for_partitions(
    client: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<i32, LogError> {
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = client.fetch_metadata(Some(topic), timeout).map(|metadata| {
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().len())
                .unwrap_or(0)
        });
        // Serve queued client events (errors, logs) of this never-assigned consumer.
        let _ = client.poll(Duration::ZERO);
        match outcome {
            Ok(n) if n > 0 => {
                return i32::try_from(n).map_err(|_| LogError::Kafka {
                    context: "reading topic metadata",
                    message: format!("{topic} has {n} partitions"),
                })
            }
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => {
                return Err(LogError::Kafka {
                    context: "reading topic metadata",
                    message: format!("topic {topic} has no partitions after {timeout:?}"),
                })
            }
            Err(error) => {
                return Err(LogError::Kafka {
                    context: "reading topic metadata",
                    message: format!("{topic}: {error}"),
                })
            }
        }
    }
}

/// The outcome of producing one append's events.
struct Produced {
    /// Offsets of the delivered events, in order.
    delivered: Vec<i64>,
    /// The first failure, if any event was not delivered.
    error: Option<LogError>,
}

impl Inner {
    fn index(&self) -> MutexGuard<'_, HeadIndex> {
        // The index is consistent between statements, so a panic elsewhere cannot leave it
        // half-updated: keep using it.
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn partition_key(&self, stream: &str) -> Result<PartitionKey, LogError> {
        let family = family_of(stream)?;
        let topic = FAMILIES
            .iter()
            .position(|f| *f == family)
            .ok_or_else(|| LogError::InvalidStream(stream.to_owned()))?;
        let partition = default_partition(stream.as_bytes(), self.topics[topic].partitions);
        Ok((topic, partition))
    }

    fn all_partitions(&self) -> Vec<PartitionKey> {
        self.topics
            .iter()
            .enumerate()
            .flat_map(|(t, topic)| (0..topic.partitions).map(move |p| (t, p)))
            .collect()
    }

    fn name_of(&self, (topic, partition): PartitionKey) -> String {
        partition_name(&self.topics[topic].name, partition)
    }

    fn stream_lock(&self, stream: &str) -> &tokio::sync::Mutex<()> {
        let shard = (fingerprint(stream) % STREAM_LOCK_SHARDS as u64) as usize;
        &self.stream_locks[shard]
    }

    /// The end offsets the brokers report for `partitions` (ListOffsets, one request). Only a
    /// hint: Tansu 0.6 reports less than the true end (see [`read_to_end`]).
    async fn end_hints(
        self: &Arc<Self>,
        partitions: Vec<PartitionKey>,
    ) -> Result<Vec<i64>, LogError> {
        let inner = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut query = TopicPartitionList::with_capacity(partitions.len());
            for &(topic, partition) in &partitions {
                // "Offsets for time -1" is Kafka's ListOffsets for the latest offset.
                query
                    .add_partition_offset(&inner.topics[topic].name, partition, Offset::End)
                    .map_err(kafka("querying end offsets"))?;
            }
            let answer = inner
                .offsets
                .offsets_for_times(query, inner.config.request_timeout)
                .map_err(kafka("querying end offsets"));
            let _ = inner.offsets.poll(Duration::ZERO);
            let answer = answer?;
            partitions
                .iter()
                .map(|&(topic, partition)| {
                    let element = answer
                        .find_partition(&inner.topics[topic].name, partition)
                        .ok_or_else(|| LogError::Kafka {
                            context: "querying end offsets",
                            message: format!("no answer for {}", inner.name_of((topic, partition))),
                        })?;
                    element.error().map_err(kafka("querying end offsets"))?;
                    match element.offset() {
                        Offset::Offset(offset) => Ok(offset),
                        other => Err(LogError::Kafka {
                            context: "querying end offsets",
                            message: format!(
                                "{} answered {other:?}",
                                inner.name_of((topic, partition))
                            ),
                        }),
                    }
                })
                .collect()
        })
        .await
        .map_err(|e| LogError::Kafka {
            context: "querying end offsets",
            message: e.to_string(),
        })?
    }

    /// A pooled reader, or a new one. Blocks.
    fn take_reader(&self) -> Result<BaseConsumer, LogError> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        if let Some(reader) = pooled {
            return Ok(reader);
        }
        let reader: BaseConsumer = self
            .config
            .client(
                &self
                    .config
                    .consumer_settings("reader", Duration::from_millis(1), true),
            )
            .create_with_context(LogContext)
            .map_err(kafka("creating a reader"))?;
        self.learn_topics(&reader)?;
        Ok(reader)
    }

    /// Fetches the family topics' metadata into `consumer`'s cache. Without it, the first
    /// assignment of a topic the consumer has not seen waits about a second for librdkafka's
    /// own metadata refresh. Blocks.
    fn learn_topics(&self, consumer: &impl Consumer<LogContext>) -> Result<(), LogError> {
        for topic in &self.topics {
            consumer
                .fetch_metadata(Some(&topic.name), self.config.request_timeout)
                .map_err(kafka("reading topic metadata"))?;
        }
        Ok(())
    }

    fn return_reader(&self, reader: BaseConsumer) {
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < READER_POOL {
                pool.push(reader);
            }
        }
    }

    /// Reads each of `reads` to its partitions' ends, one topic after the other, on a pooled
    /// consumer in a blocking thread. Returns the state and the ends reached per read, or
    /// `None` for the ends if `visit` stopped.
    async fn read<T, V>(
        self: &Arc<Self>,
        reads: Vec<TopicRead>,
        state: T,
        mut visit: V,
    ) -> Result<(T, Option<Vec<HashMap<i32, i64>>>), LogError>
    where
        T: Send + 'static,
        V: FnMut(&mut T, &BorrowedMessage<'_>) -> Result<Flow, LogError> + Send + 'static,
    {
        let inner = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = inner.take_reader()?;
            let mut state = state;
            let mut all_ends = Vec::with_capacity(reads.len());
            for read in &reads {
                let topic = &inner.topics[read.topic];
                let ends = read_to_end(
                    &reader,
                    topic,
                    &read.starts,
                    inner.config.request_timeout,
                    &mut state,
                    &mut visit,
                );
                match ends {
                    Ok(Some(ends)) => all_ends.push(ends),
                    Ok(None) => {
                        inner.return_reader(reader);
                        return Ok((state, None));
                    }
                    // The reader's state is unknown: drop it.
                    Err(error) => return Err(error),
                }
            }
            inner.return_reader(reader);
            Ok((state, Some(all_ends)))
        })
        .await
        .map_err(|e| LogError::Kafka {
            context: "reading partitions",
            message: e.to_string(),
        })?
    }

    /// Reads a partition from `start` to its end; returns the head of every stream seen there
    /// and the end reached.
    async fn read_heads(
        self: &Arc<Self>,
        partition: PartitionKey,
        start: i64,
    ) -> Result<(HashMap<String, Observed>, i64), LogError> {
        let started = Instant::now();
        let read = TopicRead {
            topic: partition.0,
            starts: vec![(partition.1, start)],
        };
        let (observed, ends) = self
            .read(
                vec![read],
                HashMap::new(),
                |seen: &mut HashMap<String, Observed>, message| {
                    match decode_message(message) {
                        Ok(recorded) => {
                            let event = recorded.event;
                            let observed = Observed {
                                sequence: event.sequence,
                                hash: event.hash(),
                                first_offset: (event.sequence == 1).then_some(message.offset()),
                            };
                            match seen.get_mut(&event.subject) {
                                Some(known) => known.merge(observed),
                                None => {
                                    seen.insert(event.subject, observed);
                                }
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "skipping a record that is not an event");
                        }
                    }
                    Ok(Flow::Continue)
                },
            )
            .await?;
        let end = ends
            .and_then(|ends| ends.first().and_then(|e| e.get(&partition.1).copied()))
            .unwrap_or(start);
        tracing::debug!(
            partition = %self.name_of(partition),
            start,
            end,
            streams = observed.len(),
            elapsed = ?started.elapsed(),
            "event log head index read a partition"
        );
        Ok((observed, end))
    }

    /// The head of `stream` to check `expected` against: from the index when it knows one that
    /// satisfies `expected`, otherwise after reading what the index has not seen of the
    /// stream's partition. The caller holds the stream's lock.
    async fn resolve_head(
        self: &Arc<Self>,
        stream: &str,
        partition: PartitionKey,
        expected: ExpectedVersion,
    ) -> Result<(u64, String), LogError> {
        if let Some(head) = self.index().lookup(stream) {
            if expected.admits(head.0) {
                return Ok(head);
            }
        }
        let scan_lock = self
            .scan_locks
            .get(&partition)
            .ok_or_else(|| LogError::InvalidStream(stream.to_owned()))?;
        let ticket = self.index().read_ticket(partition);
        let _scanning = scan_lock.lock().await;
        loop {
            let plan = match self.index().plan_scan(partition, stream, ticket) {
                Lookup::Known(sequence, hash) => return Ok((sequence, hash)),
                Lookup::Read(plan) => plan,
            };
            let (observed, end) = self.read_heads(partition, plan.start).await?;
            match self
                .index()
                .finish_scan(partition, stream, &plan, end, observed)
            {
                ScanOutcome::Head(sequence, hash) => return Ok((sequence, hash)),
                ScanOutcome::Retry => continue,
            }
        }
    }

    /// Reads per topic, starting each partition at `start_of(partition)`.
    fn topic_reads(
        &self,
        partitions: &[PartitionKey],
        start_of: impl Fn(PartitionKey) -> i64,
    ) -> Vec<TopicRead> {
        let mut reads: Vec<TopicRead> = Vec::new();
        for &partition in partitions {
            let start = (partition.1, start_of(partition));
            match reads.iter_mut().find(|r| r.topic == partition.0) {
                Some(read) => read.starts.push(start),
                None => reads.push(TopicRead {
                    topic: partition.0,
                    starts: vec![start],
                }),
            }
        }
        reads
    }

    /// Produces `planned` to `partition` in order and waits for every acknowledgement.
    async fn produce(
        &self,
        partition: PartitionKey,
        stream: &str,
        planned: &[PlannedEvent],
    ) -> Produced {
        let topic = &self.topics[partition.0].name;
        let deadline = Instant::now() + self.config.delivery_timeout;
        let mut deliveries = Vec::with_capacity(planned.len());
        let mut error = None;
        'enqueue: for event in planned {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: "content-type",
                    value: Some(CONTENT_TYPE),
                })
                .insert(Header {
                    key: TYPE_HEADER,
                    value: Some(event.event.event_type.as_str()),
                });
            let mut record = FutureRecord::to(topic)
                .partition(partition.1)
                .key(stream)
                .payload(event.json.as_str())
                .headers(headers);
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        error = Some(LogError::Kafka {
                            context: "producing events",
                            message: e.to_string(),
                        });
                        break 'enqueue;
                    }
                }
            }
        }
        // Wait for everything enqueued, even after a failure: when the stream's lock is
        // released nothing of this append may still be on its way.
        let mut delivered = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(delivery)) if delivery.partition == partition.1 && delivery.offset >= 0 => {
                    delivered.push(delivery.offset)
                }
                Ok(Ok(delivery)) => {
                    error.get_or_insert(LogError::Kafka {
                        context: "producing events",
                        message: format!(
                            "delivered to partition {} offset {}, expected partition {}",
                            delivery.partition, delivery.offset, partition.1
                        ),
                    });
                }
                Ok(Err((e, _))) => {
                    error.get_or_insert(LogError::Kafka {
                        context: "producing events",
                        message: e.to_string(),
                    });
                }
                Err(_) => {
                    error.get_or_insert(LogError::Closed);
                }
            }
        }
        Produced { delivered, error }
    }

    async fn append(
        self: &Arc<Self>,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, LogError> {
        let partition = self.partition_key(stream)?;
        if events.is_empty() {
            return Err(LogError::EmptyAppend);
        }
        let _writing = self.stream_lock(stream).lock().await;
        let head = self.resolve_head(stream, partition, expected).await?;
        if !expected.admits(head.0) {
            return Err(LogError::VersionConflict {
                stream: stream.to_owned(),
                expected,
                actual: head.0,
            });
        }
        let first_sequence = head.0 + 1;
        let planned = plan_events(
            &self.source,
            stream,
            head,
            events,
            OffsetDateTime::now_utc(),
        );
        let produced = self.produce(partition, stream, &planned).await;
        if let Some(error) = produced.error {
            self.index().forget(partition, stream, &produced.delivered);
            tracing::warn!(stream, %error, "append failed; the stream's head will be re-read");
            return Err(error);
        }
        let last = planned.last().ok_or(LogError::EmptyAppend)?;
        let last_sequence = last.event.sequence;
        self.index().appended(
            partition,
            stream,
            Observed {
                sequence: last_sequence,
                hash: last.hash.clone(),
                first_offset: (first_sequence == 1)
                    .then(|| produced.delivered.first().copied())
                    .flatten(),
            },
            &produced.delivered,
        );
        let name = self.name_of(partition);
        Ok(Appended {
            first_sequence,
            last_sequence,
            positions: produced
                .delivered
                .iter()
                .map(|offset| Position {
                    partition: name.clone(),
                    offset: *offset as u64,
                })
                .collect(),
        })
    }
}

fn cursor_offset(cursor: &Cursor, name: &str) -> i64 {
    i64::try_from(cursor.next_offset(name)).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, LogError> {
        // Its own task: an append runs to completion (index updated, lock released) even if
        // the caller stops waiting.
        let inner = self.inner.clone();
        let stream = stream.to_owned();
        tokio::spawn(async move { inner.append(&stream, expected, events).await })
            .await
            .map_err(|e| LogError::Kafka {
                context: "appending",
                message: e.to_string(),
            })?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_sequence: u64,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let partition = self.inner.partition_key(stream)?;
        let start = self.inner.index().first_offset(stream).unwrap_or(0);
        let read = TopicRead {
            topic: partition.0,
            starts: vec![(partition.1, start)],
        };
        let stream = stream.to_owned();
        let (events, _) = self
            .inner
            .read(
                vec![read],
                Vec::new(),
                move |events: &mut Vec<RecordedEvent>, message| {
                    if message.key() == Some(stream.as_bytes()) {
                        let recorded = decode_message(message)?;
                        if recorded.event.sequence >= from_sequence {
                            events.push(recorded);
                        }
                    }
                    Ok(Flow::Continue)
                },
            )
            .await?;
        Ok(events)
    }

    async fn read_all(&self, from: &Cursor, limit: usize) -> Result<Vec<RecordedEvent>, LogError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reads = self
            .inner
            .topic_reads(&self.inner.all_partitions(), |partition| {
                cursor_offset(from, &self.inner.name_of(partition))
            });
        let (events, _) = self
            .inner
            .read(
                reads,
                Vec::new(),
                move |events: &mut Vec<RecordedEvent>, message| {
                    events.push(decode_message(message)?);
                    Ok(if events.len() >= limit {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    })
                },
            )
            .await?;
        Ok(events)
    }

    async fn subscribe(&self, from: Cursor, filter: Filter) -> Result<Subscription, LogError> {
        let inner = &self.inner;
        let partitions = match filter.stream.as_deref().map(|s| inner.partition_key(s)) {
            Some(Ok(partition)) => vec![partition],
            _ => inner.all_partitions(),
        };
        let consumer: StreamConsumer = inner
            .config
            .client(&inner.config.consumer_settings(
                "subscriber",
                inner.config.subscriber_fetch_wait,
                false,
            ))
            .create_with_context(LogContext)
            .map_err(kafka("creating a subscriber"))?;
        let mut assignment = TopicPartitionList::with_capacity(partitions.len());
        for partition in partitions {
            assignment
                .add_partition_offset(
                    &inner.topics[partition.0].name,
                    partition.1,
                    Offset::Offset(cursor_offset(&from, &inner.name_of(partition))),
                )
                .map_err(kafka("assigning partitions to a subscriber"))?;
        }
        let consumer = {
            let inner = inner.clone();
            tokio::task::spawn_blocking(move || {
                inner.learn_topics(&consumer)?;
                consumer
                    .assign(&assignment)
                    .map_err(kafka("assigning partitions to a subscriber"))?;
                Ok::<_, LogError>(consumer)
            })
            .await
            .map_err(|e| LogError::Kafka {
                context: "starting a subscriber",
                message: e.to_string(),
            })??
        };

        let (tx, subscription) = Subscription::channel(SUBSCRIBE_BUFFER);
        let mut closed = inner.closed.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = consumer.recv() => received.map(|m| decode_message(&m)),
                    _ = tx.closed() => return,
                    _ = closed.changed() => return,
                };
                let item = match received {
                    Ok(Ok(recorded)) if filter.matches(&recorded.event) => Ok(recorded),
                    Ok(Ok(_)) => continue,
                    Ok(Err(corrupt)) => Err(corrupt),
                    Err(error) => {
                        // Transport errors: librdkafka reconnects and resumes by itself.
                        tracing::warn!(%error, "event log subscriber error");
                        continue;
                    }
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(subscription)
    }

    async fn head(&self) -> Result<Cursor, LogError> {
        // The brokers' end offsets are a lower bound at worst (Tansu): read from the last
        // record they imply to the true end, one topic per reader at once.
        let partitions = self.inner.all_partitions();
        let hints: HashMap<PartitionKey, i64> = partitions
            .iter()
            .copied()
            .zip(self.inner.end_hints(partitions.clone()).await?)
            .collect();
        let reads = self
            .inner
            .topic_reads(&partitions, |p| (hints[&p] - 1).max(0));
        let answers = futures::future::join_all(reads.into_iter().map(|read| {
            let topic = read.topic;
            let inner = self.inner.clone();
            async move {
                let (_, ends) = inner
                    .read(vec![read], (), |_: &mut (), _| Ok(Flow::Continue))
                    .await?;
                Ok::<_, LogError>((topic, ends.and_then(|mut e| e.pop()).unwrap_or_default()))
            }
        }))
        .await;
        let mut cursor = Cursor::start();
        for answer in answers {
            let (topic, ends) = answer?;
            for (partition, end) in ends {
                let key = (topic, partition);
                let end = end.max(hints.get(&key).copied().unwrap_or(0));
                cursor.0.insert(
                    self.inner.name_of(key),
                    u64::try_from(end).unwrap_or_default(),
                );
            }
        }
        Ok(cursor)
    }

    fn position_token(&self, cursor: &Cursor) -> String {
        crate::position::kafka_token(cursor, &self.inner.partition_names)
    }

    fn parse_position(&self, token: &str) -> Result<Cursor, PositionError> {
        crate::position::parse_kafka_token(token, &self.inner.partition_names)
    }

    fn backend(&self) -> &'static str {
        "kafka"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::GENESIS_HASH;
    use crate::payload::VerbStarted;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key) as i32,
                *expected,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(default_partition(b"foobar", 1), 0);
        for partitions in 1..20 {
            let p = default_partition(b"CA0123", partitions);
            assert!((0..partitions).contains(&p));
        }
    }

    fn seen(sequence: u64, first_offset: Option<i64>) -> Observed {
        Observed {
            sequence,
            hash: format!("h{sequence}"),
            first_offset,
        }
    }

    const P: PartitionKey = (0, 0);

    /// Plans a read for a caller that waited with no read in between.
    fn plan(index: &mut HeadIndex, stream: &str) -> ScanPlan {
        let ticket = index.read_ticket(P);
        match index.plan_scan(P, stream, ticket) {
            Lookup::Read(plan) => plan,
            known => panic!("expected a read, got {known:?}"),
        }
    }

    #[test]
    fn index_reads_only_what_it_did_not_write() {
        let mut index = HeadIndex::new(100);
        // A new stream: the partition is read from the start.
        let plan = plan(&mut index, "CA1");
        assert_eq!((plan.start, plan.full), (0, false));
        let observed = HashMap::from([("CA2".to_owned(), seen(4, Some(3)))]);
        assert_eq!(
            index.finish_scan(P, "CA1", &plan, 10, observed),
            ScanOutcome::Head(0, GENESIS_HASH.to_owned())
        );
        assert_eq!(index.lookup("CA2"), Some((4, "h4".to_owned())));
        assert_eq!(index.first_offset("CA2"), Some(3));
        // Our own appends at 10 and 11 need no reading; what follows does.
        index.appended(P, "CA1", seen(2, Some(10)), &[10, 11]);
        assert_eq!(index.lookup("CA1"), Some((2, "h2".to_owned())));
        let plan = self::plan(&mut index, "CA3");
        assert_eq!(plan.start, 12);
        index.finish_scan(P, "CA3", &plan, 12, HashMap::new());
        // Someone else's record at 12 leaves our 13 to be read too.
        index.appended(P, "CA1", seen(3, None), &[13]);
        let plan = self::plan(&mut index, "CA3");
        assert_eq!(plan.start, 12);
        let observed = HashMap::from([("CA4".to_owned(), seen(1, Some(12)))]);
        index.finish_scan(P, "CA3", &plan, 14, observed);
        assert_eq!(self::plan(&mut index, "CA3").start, 14);
        assert_eq!(index.lookup("CA4"), Some((1, "h1".to_owned())));
    }

    #[test]
    fn callers_waiting_during_a_read_share_the_next_one() {
        let mut index = HeadIndex::new(100);
        let first = index.read_ticket(P);
        let Lookup::Read(running) = index.plan_scan(P, "CA1", first) else {
            panic!("nothing read yet")
        };
        // CA2 starts waiting while that read runs: it must not rely on it.
        let second = index.read_ticket(P);
        index.finish_scan(P, "CA1", &running, 5, HashMap::new());
        let Lookup::Read(next) = index.plan_scan(P, "CA2", second) else {
            panic!("a read begun before CA2 waited cannot answer for it")
        };
        // CA3 and CA4 start waiting while CA2's read runs. CA3 reads next; that read, begun
        // after CA4 waited, answers for CA4 too.
        let third = index.read_ticket(P);
        let fourth = index.read_ticket(P);
        index.finish_scan(P, "CA2", &next, 9, HashMap::new());
        let Lookup::Read(last) = index.plan_scan(P, "CA3", third) else {
            panic!("a read begun before CA3 waited cannot answer for it")
        };
        let observed = HashMap::from([("CA4".to_owned(), seen(7, None))]);
        index.finish_scan(P, "CA3", &last, 12, observed);
        assert_eq!(
            index.plan_scan(P, "CA4", fourth),
            Lookup::Known(7, "h7".to_owned())
        );
        assert_eq!(
            index.plan_scan(P, "CA5", fourth),
            Lookup::Known(0, GENESIS_HASH.to_owned())
        );
        // A forgotten stream is read in full whatever the ticket.
        index.forget(P, "CA4", &[]);
        assert!(matches!(
            index.plan_scan(P, "CA4", fourth),
            Lookup::Read(ScanPlan { full: true, .. })
        ));
    }

    #[test]
    fn reads_never_move_a_head_back() {
        let mut index = HeadIndex::new(100);
        index.appended(P, "CA1", seen(5, Some(0)), &[0, 1, 2, 3, 4]);
        // A read that saw only part of the stream (it began before our append).
        let plan = ScanPlan {
            start: 0,
            full: false,
            number: 1,
        };
        let observed = HashMap::from([("CA1".to_owned(), seen(3, Some(0)))]);
        assert_eq!(
            index.finish_scan(P, "CA9", &plan, 3, observed),
            ScanOutcome::Head(0, GENESIS_HASH.to_owned())
        );
        assert_eq!(index.lookup("CA1"), Some((5, "h5".to_owned())));
    }

    #[test]
    fn a_forgotten_stream_is_read_from_the_beginning() {
        let mut index = HeadIndex::new(100);
        index.appended(P, "CA1", seen(2, Some(0)), &[0, 1]);
        index.forget(P, "CA1", &[2]);
        assert_eq!(index.lookup("CA1"), None);
        let plan = plan(&mut index, "CA1");
        assert_eq!((plan.start, plan.full), (0, true));
        let observed = HashMap::from([("CA1".to_owned(), seen(3, Some(0)))]);
        assert_eq!(
            index.finish_scan(P, "CA1", &plan, 5, observed),
            ScanOutcome::Head(3, "h3".to_owned())
        );
        // Known again: the next plan reads only what is new.
        let plan = self::plan(&mut index, "CA1");
        assert_eq!((plan.start, plan.full), (5, false));
    }

    #[test]
    fn a_stream_forgotten_during_a_partial_read_is_read_again() {
        let mut index = HeadIndex::new(100);
        index.appended(P, "CA1", seen(2, None), &[0, 1]);
        let plan = plan(&mut index, "CA1");
        assert!(!plan.full);
        index.forget(P, "CA1", &[]);
        assert_eq!(
            index.finish_scan(P, "CA1", &plan, 4, HashMap::new()),
            ScanOutcome::Retry
        );
        assert!(self::plan(&mut index, "CA1").full);
    }

    #[test]
    fn eviction_keeps_recent_streams_and_remembers_the_others() {
        let mut index = HeadIndex::new(4);
        for (i, stream) in ["CA1", "CA2", "CA3", "CA4"].iter().enumerate() {
            index.appended(P, stream, seen(1, Some(i as i64)), &[i as i64]);
        }
        index.lookup("CA1");
        index.appended(P, "CA5", seen(1, Some(4)), &[4]);
        assert!(index.heads.len() <= 4);
        assert!(index.lookup("CA1").is_some() && index.lookup("CA5").is_some());
        assert_eq!(index.lookup("CA2"), None);
        let forgotten = plan(&mut index, "CA2");
        assert_eq!((forgotten.start, forgotten.full), (0, true));
        index.finish_scan(
            P,
            "CA2",
            &forgotten,
            5,
            HashMap::from([("CA2".to_owned(), seen(1, Some(1)))]),
        );
        // A new stream still needs only the unread part.
        let fresh = plan(&mut index, "CA9");
        assert_eq!((fresh.start, fresh.full), (5, false));
        // A read does not bring back other forgotten streams.
        let observed = HashMap::from([("CA3".to_owned(), seen(2, None))]);
        index.finish_scan(P, "CA9", &fresh, 6, observed);
        assert_eq!(index.lookup("CA3"), None);
    }

    #[test]
    fn planned_events_chain_and_decode() {
        let account = "AC0123456789abcdef0123456789abcdef";
        let now = OffsetDateTime::now_utc();
        let events = (0..3)
            .map(|i| {
                NewEvent::new(
                    account,
                    VerbStarted {
                        index: i,
                        verb: "Say".into(),
                    },
                )
            })
            .collect();
        let planned = plan_events("dialtone://n1", "CA42", (4, "ab".repeat(32)), events, now);
        assert_eq!(
            planned.iter().map(|p| p.event.sequence).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert_eq!(planned[0].event.prevhash, "ab".repeat(32));
        assert_eq!(planned[1].event.prevhash, planned[0].hash);
        assert_eq!(planned[2].event.prevhash, planned[1].hash);
        for p in &planned {
            assert_eq!(p.hash, p.event.hash());
            let recorded =
                decode_record("d.calls", 2, 7, Some(b"CA42"), Some(p.json.as_bytes())).unwrap();
            assert_eq!(recorded.event.to_json(), p.json);
            assert_eq!(recorded.position.to_string(), "d.calls/2@7");
        }
        assert!(matches!(
            decode_record(
                "d.calls",
                2,
                7,
                Some(b"CA43"),
                Some(planned[0].json.as_bytes())
            ),
            Err(LogError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_record("d.calls", 2, 7, Some(b"CA42"), Some(b"not json")),
            Err(LogError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_record("d.calls", 2, 7, Some(b"CA42"), None),
            Err(LogError::Corrupt { .. })
        ));
    }
}

//! The Kinesis producer: events in, ordered records out, acknowledged positions back.
//!
//! # Ordering contract
//!
//! For every partition key (`database.table`, or with `kinesis.partition_by = "primary_key"`
//! `database.table/<key values>`), records reach Kinesis in binlog order:
//! - at most one record per key is in flight at any time;
//! - a record that fails, alone (a per-record `ErrorCode` in a partly failed PutRecords) or
//!   with its whole call, is retried with backoff before anything after it on that key is sent;
//! - records of different keys travel together in PutRecords calls (≤ 500 records, ≤ 5 MiB),
//!   and several calls may be in flight, always for disjoint keys. Every per-record result is
//!   read: a partly failed call is not a success.
//!
//! A record holds consecutive events of one key up to `max_record_bytes` (partition key
//! included) and `max_events_per_record`; a partly filled record waits up to `linger` for more
//! events of its key.
//!
//! # Acknowledgements
//!
//! Each event gets a sequence number in the `AckTracker` as it arrives; a record's events are
//! acknowledged when Kinesis reports the record written. Transaction boundaries from the
//! source pass through the tracker, and every boundary whose events (and all before them) are
//! acknowledged is sent to the checkpoint task.
//!
//! # Memory
//!
//! Memory held here is capped by `max_buffered_bytes`: each queued event counts its line's heap
//! bytes plus its bookkeeping, and each record in flight its data (a copy of its events' lines)
//! until the call returns. At the cap the sink stops reading its input channel, which in turn
//! pauses the binlog reader.
//!
//! # One writer
//!
//! No call starts while the write `Fence` is closed (this instance's hold on the instance
//! lock is in doubt), and every call is abandoned after `call_timeout`: so once the fence has
//! been closed for that long, nothing of this instance can still land in the stream.
//!
//! # Shutdown
//!
//! The sink is never cancelled. It ends when its input closes and every queued event has been
//! acknowledged; it then reports the final boundary and drops the acknowledgement sender.

pub(crate) mod batch;
pub mod client;
mod intake;
pub mod local;
pub mod retry;

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use rand::{rngs::SmallRng, SeedableRng};
use tokio::{sync::mpsc, task::JoinSet, time::Instant};

use self::{
    batch::{events_in_record, fits_in_call},
    client::{CallError, KinesisClient, Record, RecordOutcome},
    retry::{classify, quota_time, RetryAction, DEFAULT_BACKOFF},
};
use crate::{
    backoff::Backoff,
    checkpoint::tracker::{AckTracker, EventSeq},
    config::{KinesisConfig, Oversize},
    event::{EventLine, TableName},
    fence::Fence,
    metrics::Metrics,
    position::BinlogPosition,
    stream::{Boundary, Message},
};

/// PutRecords calls in flight at once (always for disjoint partition keys).
pub(crate) const MAX_CONCURRENT_CALLS: usize = 4;

/// How often a fenced producer looks whether it may write again.
const FENCED_POLL: Duration = Duration::from_millis(50);

/// How many input items are taken in one go before the sink looks at its calls again.
const INPUT_BURST: usize = 1024;

/// The sink's settings.
#[derive(Debug, Clone)]
pub(crate) struct SinkConfig {
    /// The stream.
    pub(crate) stream: String,
    /// Largest record, data plus partition key.
    pub(crate) max_record_bytes: usize,
    /// How long a partly filled record waits for more events.
    pub(crate) linger: Duration,
    /// Cap on event bytes held.
    pub(crate) max_buffered_bytes: usize,
    /// Most events in one record (`usize::MAX` for no limit but the size).
    pub(crate) max_events_per_record: usize,
    /// Backoff between attempts of a failed record.
    pub(crate) backoff: Backoff,
    /// What happens to an event larger than `max_record_bytes`.
    pub(crate) oversize: Oversize,
    /// The longest one PutRecords call may take before it is abandoned and retried.
    pub(crate) call_timeout: Duration,
}

impl SinkConfig {
    /// The producer's settings for `kinesis`, with records of at most `max_record_bytes`.
    pub(crate) fn new(kinesis: &KinesisConfig, max_record_bytes: usize) -> Self {
        Self {
            stream: kinesis.stream.clone(),
            max_record_bytes,
            linger: kinesis.linger,
            max_buffered_bytes: kinesis.max_buffered_bytes,
            max_events_per_record: kinesis.max_events_per_record,
            backoff: DEFAULT_BACKOFF,
            oversize: kinesis.oversize,
            call_timeout: kinesis.call_timeout,
        }
    }
}

/// Why the sink stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// One event is larger than a record may be.
    #[error("event of table {table} at {position} is {size} bytes, more than kinesis.max_record_bytes ({limit}) allows with its partition key; raise max_record_bytes (up to the stream's maximum record size), exclude the table, or set kinesis.oversize = \"skip\"")]
    EventTooLarge {
        /// Its table.
        table: TableName,
        /// Its position.
        position: BinlogPosition,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The destination refused a call in a way retrying cannot fix.
    #[error("{destination} refused the records{hint}")]
    Call {
        /// The stream, or the local outlet.
        destination: String,
        /// What to check.
        hint: &'static str,
        /// The refusal.
        #[source]
        source: CallError,
    },
    /// Kinesis refused one record in a way retrying cannot fix.
    #[error("kinesis stream {stream:?} refused a record of table {table}: {code}: {message}")]
    RecordRefused {
        /// The stream.
        stream: String,
        /// The record's table.
        table: TableName,
        /// The per-record error code.
        code: String,
        /// The per-record error message.
        message: String,
    },
    /// The checkpoint task stopped while the sink still had acknowledgements for it.
    #[error("the checkpoint writer stopped; acknowledgements cannot be saved")]
    CheckpointWriterGone,
}

/// What the sink did, for the final log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SinkSummary {
    /// Events acknowledged by Kinesis.
    pub(crate) events: u64,
    /// Records written.
    pub(crate) records: u64,
    /// PutRecords calls made.
    pub(crate) calls: u64,
    /// Record or call failures that were retried.
    pub(crate) retries: u64,
}

struct Queued {
    seq: EventSeq,
    line: EventLine,
    /// `line.len()`, worked out once.
    len: usize,
    /// What holding it costs against `max_buffered_bytes`: its heap bytes and this struct.
    cost: usize,
    arrived: Instant,
}

struct KeyState {
    /// The table whose events this key orders.
    table: TableName,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// Events at the front of `queue` that are in flight as one record; 0 when none.
    in_flight: usize,
    /// Failed attempts of the record at the front, since its last success.
    attempts: u32,
    not_before: Option<Instant>,
    /// When the key's last accepted record was sent.
    last_sent: Option<Instant>,
    /// When Kinesis last throttled the key: from then on (for [`PACE_AFTER_THROTTLE`]) its
    /// records are paced to its shard's quota instead of being sent to be throttled.
    throttled_at: Option<Instant>,
}

/// How long a throttled key stays paced.
const PACE_AFTER_THROTTLE: Duration = Duration::from_secs(30);

/// A record in flight: which key, how many events from the front of its queue.
struct Sent {
    key: Arc<str>,
    n_events: usize,
    /// The record's data and key: a copy of its events, held until the call returns.
    bytes: usize,
    /// When its call started.
    sent_at: Instant,
}

type CallResult = (Vec<Sent>, Result<Vec<RecordOutcome>, CallError>);

struct Producer {
    config: SinkConfig,
    client: Arc<dyn KinesisClient>,
    keys: HashMap<Arc<str>, KeyState>,
    /// Keys with queued events and nothing in flight.
    waiting: BTreeSet<Arc<str>>,
    tracker: AckTracker,
    buffered_bytes: usize,
    calls: JoinSet<CallResult>,
    summary: SinkSummary,
    metrics: Arc<Metrics>,
    /// When a retry was last logged, and how many retries went unlogged since: under
    /// throttling with many keys (one per row with `partition_by = "primary_key"`) one line
    /// per key would flood the log.
    retry_log: (Option<Instant>, u64),
    /// The backoff's jitter.
    rng: SmallRng,
    /// Calls start only while it is open.
    fence: Arc<Fence>,
}

/// At most one retry warning per this interval; the others are counted into the next one.
const RETRY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Runs the producer until `input` closes and everything is acknowledged; sends each new
/// acknowledged boundary on `acknowledged`.
pub(crate) async fn run(
    config: SinkConfig,
    client: Arc<dyn KinesisClient>,
    input: mpsc::Receiver<Message>,
    acknowledged: mpsc::Sender<Boundary>,
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
) -> Result<SinkSummary, SinkError> {
    let rng = SmallRng::from_rng(&mut rand::rng());
    run_seeded(config, client, input, acknowledged, metrics, fence, rng).await
}

/// [`run`] with the backoff's jitter drawn from `rng`: with a seeded generator and paused
/// time, a run is a pure function of its inputs, so a failing property-test case replays.
async fn run_seeded(
    config: SinkConfig,
    client: Arc<dyn KinesisClient>,
    mut input: mpsc::Receiver<Message>,
    acknowledged: mpsc::Sender<Boundary>,
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
    rng: SmallRng,
) -> Result<SinkSummary, SinkError> {
    let mut producer = Producer {
        config,
        client,
        keys: HashMap::new(),
        waiting: BTreeSet::new(),
        tracker: AckTracker::new(),
        buffered_bytes: 0,
        calls: JoinSet::new(),
        summary: SinkSummary::default(),
        metrics,
        retry_log: (None, 0),
        rng,
        fence,
    };
    let mut input_open = true;
    loop {
        let now = Instant::now();
        producer.dispatch(now, !input_open)?;
        producer
            .metrics
            .producer_waiting(producer.tracker.unresolved_events() > 0);
        if let Some(position) = producer.tracker.take_committable() {
            acknowledged
                .send(position)
                .await
                .map_err(|_| SinkError::CheckpointWriterGone)?;
        }
        if !input_open && producer.tracker.unresolved_events() == 0 && producer.calls.is_empty() {
            return Ok(producer.summary);
        }
        let can_read = input_open && producer.buffered_bytes < producer.config.max_buffered_bytes;
        // With every call slot taken, only a completion can start anything: a key whose wake
        // has passed would make the sleep ready at once, and the loop would spin until a call
        // returns (a busy core in production; a hang under paused time, where the clock only
        // moves when the runtime idles). `dispatch` has just sent every key that is sendable
        // now, so with a free slot the next wake is in the future.
        let wake = if producer.calls.len() >= MAX_CONCURRENT_CALLS {
            None
        } else if !producer.fence.is_open() && !producer.waiting.is_empty() {
            // Fenced: look again shortly (the lock keeper renews the fence in the background).
            Some(Instant::now() + FENCED_POLL)
        } else {
            producer.next_wake(!input_open)
        };
        tokio::select! {
            // Completions first: they free memory and advance the checkpoint.
            biased;
            Some(joined) = producer.calls.join_next(), if !producer.calls.is_empty() => {
                let (sent, result) = joined.expect("a PutRecords task does not panic");
                producer.complete(sent, result)?;
            }
            _ = sleep_until_opt(wake), if wake.is_some() => {}
            item = input.recv(), if can_read => match item {
                Some(item) => {
                    producer.accept(item)?;
                    // Take what else is ready without yielding, up to a bound.
                    for _ in 0..INPUT_BURST {
                        if producer.buffered_bytes >= producer.config.max_buffered_bytes {
                            break;
                        }
                        match input.try_recv() {
                            Ok(item) => producer.accept(item)?,
                            Err(_) => break,
                        }
                    }
                }
                None => input_open = false,
            },
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

impl Producer {
    /// Whether `key`'s head record may be sent now.
    fn sendable(&self, key: &str, state: &KeyState, now: Instant, flush: bool) -> bool {
        if state.not_before.is_some_and(|t| t > now) {
            return false;
        }
        let full = state.queued_bytes + key.len() >= self.config.max_record_bytes
            || state.queue.len() >= self.config.max_events_per_record;
        let lingered = state
            .queue
            .front()
            .is_some_and(|q| q.arrived + self.config.linger <= now);
        flush || full || lingered || self.buffered_bytes >= self.config.max_buffered_bytes
    }

    /// The earliest moment a waiting key becomes sendable.
    fn next_wake(&self, flush: bool) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|key| {
                let state = &self.keys[key];
                let linger_end = if flush {
                    None
                } else {
                    state.queue.front().map(|q| q.arrived + self.config.linger)
                };
                match (state.not_before, linger_end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// Starts PutRecords calls for sendable keys while call slots are free.
    fn dispatch(&mut self, now: Instant, flush: bool) -> Result<(), SinkError> {
        while self.calls.len() < MAX_CONCURRENT_CALLS && self.fence.is_open() {
            let mut records = Vec::new();
            let mut sent = Vec::new();
            let mut call_bytes = 0;
            let candidates: Vec<Arc<str>> = self
                .waiting
                .iter()
                .filter(|key| self.sendable(key, &self.keys[*key], now, flush))
                .cloned()
                .collect();
            for key in candidates {
                let state = self.keys.get_mut(&key).expect("waiting keys have state");
                let key_len = key.len();
                let (n_events, data_len) = events_in_record(
                    state.queue.iter().map(|q| q.len),
                    key_len,
                    self.config.max_record_bytes,
                    self.config.max_events_per_record,
                );
                debug_assert!(n_events > 0, "oversized events are refused on arrival");
                if !fits_in_call(records.len(), call_bytes, data_len + key_len) {
                    break;
                }
                let mut data = Vec::with_capacity(data_len);
                for queued in state.queue.iter().take(n_events) {
                    queued.line.write_to(&mut data);
                }
                debug_assert_eq!(data.len(), data_len);
                call_bytes += data_len + key_len;
                state.in_flight = n_events;
                self.waiting.remove(&key);
                let bytes = data.capacity() + key_len;
                self.buffered_bytes += bytes;
                records.push(Record {
                    partition_key: key.to_string(),
                    data,
                });
                sent.push(Sent {
                    key,
                    n_events,
                    bytes,
                    sent_at: now,
                });
            }
            if records.is_empty() {
                return Ok(());
            }
            self.summary.calls += 1;
            let client = Arc::clone(&self.client);
            let stream = self.config.stream.clone();
            let metrics = Arc::clone(&self.metrics);
            let timeout = self.config.call_timeout;
            self.calls.spawn(async move {
                let started = std::time::Instant::now();
                let result = tokio::time::timeout(timeout, client.put_records(&stream, records))
                    .await
                    .unwrap_or_else(|_| {
                        Err(CallError {
                            action: RetryAction::Retry,
                            code: None,
                            message: format!("no answer within {} ms", timeout.as_millis()),
                        })
                    });
                metrics.put_call(started.elapsed());
                (sent, result)
            });
        }
        Ok(())
    }

    fn complete(
        &mut self,
        sent: Vec<Sent>,
        result: Result<Vec<RecordOutcome>, CallError>,
    ) -> Result<(), SinkError> {
        // The records' copies of their events are gone with the call, whatever its outcome.
        self.buffered_bytes -= sent.iter().map(|s| s.bytes).sum::<usize>();
        match result {
            Ok(outcomes) => {
                for (sent, outcome) in sent.into_iter().zip(outcomes) {
                    match outcome {
                        RecordOutcome::Written => self.written(sent),
                        RecordOutcome::Failed { code, message } => {
                            let action = classify(Some(&code), None);
                            if action == RetryAction::Fail {
                                return Err(SinkError::RecordRefused {
                                    stream: self.config.stream.clone(),
                                    table: self.keys[&sent.key].table.clone(),
                                    code,
                                    message,
                                });
                            }
                            let throttled = action == RetryAction::Throttled;
                            if throttled {
                                self.metrics.throttled_records.add(1);
                            } else {
                                self.metrics.failed_records.add(1);
                            }
                            self.failed(sent, &format!("{code}: {message}"), throttled);
                        }
                    }
                }
            }
            Err(error) if error.action == RetryAction::Fail => {
                return Err(SinkError::Call {
                    destination: self.client.destination(&self.config.stream),
                    hint: self.client.refusal_hint(),
                    source: error,
                });
            }
            Err(error) => {
                let throttled = error.action == RetryAction::Throttled;
                for sent in sent {
                    if throttled {
                        self.metrics.throttled_records.add(1);
                    } else {
                        self.metrics.failed_records.add(1);
                    }
                    self.failed(sent, &error.to_string(), throttled);
                }
            }
        }
        Ok(())
    }

    fn written(&mut self, sent: Sent) {
        let state = self.keys.get_mut(&sent.key).expect("sent keys have state");
        let mut bytes = sent.key.len();
        // Acknowledged as runs of consecutive sequence numbers (the events of one key
        // usually are).
        let mut run: Option<(EventSeq, u64)> = None;
        for queued in state.queue.drain(..sent.n_events) {
            bytes += queued.len;
            state.queued_bytes -= queued.len;
            self.buffered_bytes -= queued.cost;
            run = match run {
                Some((first, n)) if first + n == queued.seq => Some((first, n + 1)),
                Some((first, n)) => {
                    let known = self.tracker.ack_run(first, n);
                    debug_assert!(known, "each event is acknowledged once");
                    Some((queued.seq, 1))
                }
                None => Some((queued.seq, 1)),
            };
        }
        if let Some((first, n)) = run {
            let known = self.tracker.ack_run(first, n);
            debug_assert!(known, "each event is acknowledged once");
        }
        if state.attempts > 0 {
            tracing::info!(table = %state.table, key = %sent.key, attempts = state.attempts, "kinesis accepted the record after retries");
        }
        state.in_flight = 0;
        state.attempts = 0;
        // A key Kinesis throttled lately is paced: its next record waits for the quota this
        // one used, so a hot key runs at its shard's rate instead of bouncing off it.
        state.not_before = state
            .throttled_at
            .filter(|at| at.elapsed() < PACE_AFTER_THROTTLE)
            .map(|_| sent.sent_at + quota_time(sent.bytes));
        state.last_sent = Some(sent.sent_at);
        self.summary.records += 1;
        self.summary.events += sent.n_events as u64;
        self.metrics.producer_acknowledged();
        self.metrics.records_put.add(1);
        self.metrics.events_put.add(sent.n_events as u64);
        self.metrics.bytes_put.add(bytes as u64);
        self.metrics
            .table_events_put(&state.table, sent.n_events as u64);
        if state.queue.is_empty() {
            self.keys.remove(&sent.key);
        } else {
            self.waiting.insert(sent.key);
        }
    }

    fn failed(&mut self, sent: Sent, reason: &str, throttled: bool) {
        let state = self.keys.get_mut(&sent.key).expect("sent keys have state");
        state.in_flight = 0;
        state.attempts += 1;
        let now = Instant::now();
        let mut delay = self
            .config
            .backoff
            .delay_with(state.attempts, &mut self.rng);
        if throttled {
            // The shard's quota refills at a known rate: the record fits again once its own
            // size has refilled since the key's last accepted record. Waiting for that rather
            // than a blind backoff is what lets one hot key use its whole shard. Repeated
            // throttling (other keys share the shard) still backs off exponentially.
            state.throttled_at = Some(now);
            let refilled = state
                .last_sent
                .map(|at| (at + quota_time(sent.bytes)).saturating_duration_since(now));
            if let Some(refilled) = refilled {
                delay = if state.attempts == 1 {
                    refilled
                } else {
                    delay.max(refilled)
                };
            }
        }
        state.not_before = Some(now + delay);
        self.summary.retries += 1;
        self.metrics.retries.add(1);
        // Once per incident, then at most every RETRY_LOG_INTERVAL with a count of the rest, so
        // neither a long outage nor throttling across many keys floods the log.
        let now = Instant::now();
        let (last, suppressed) = self.retry_log;
        if last.is_none_or(|at| now.duration_since(at) >= RETRY_LOG_INTERVAL) {
            tracing::warn!(table = %state.table, key = %sent.key, attempts = state.attempts, retry_in_ms = delay.as_millis() as u64, reason, other_retries_since_last_warning = suppressed, "kinesis did not accept a record; retrying it before anything after it on the same key");
            self.retry_log = (Some(now), 0);
        } else {
            self.retry_log.1 += 1;
        }
        self.waiting.insert(sent.key);
    }
}

#[cfg(test)]
mod tests;

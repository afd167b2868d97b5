//! Ordering and acknowledgement under partial failures, throttling and failed calls, through
//! a scripted fake at the [`KinesisClient`] seam.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use proptest::prelude::*;

use super::*;
use crate::{position::ResumePoint, stream::OutboundEvent};

/// What the fake does with one call.
#[derive(Debug, Clone)]
enum Script {
    /// Write every record.
    Accept,
    /// Fail the records whose index is set, with this error code; write the others.
    FailRecords(Vec<bool>, &'static str),
    /// Fail the whole call with this code and status; nothing is written.
    FailCall(&'static str, u16),
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Script>>,
    /// Every record written, in the order Kinesis stored them.
    written: Mutex<Vec<Record>>,
    in_flight: Mutex<HashSet<String>>,
    max_records_per_call: Mutex<usize>,
    /// When set, Kinesis's per-shard byte quota, one shard per partition key: a bucket of
    /// 1 MiB refilled at 1 MiB/s (virtual time); a record it cannot pay for is throttled.
    quota: Mutex<Option<HashMap<String, (f64, tokio::time::Instant)>>>,
    /// Records throttled by `quota`.
    throttled: Mutex<usize>,
    /// How long a call is "on the wire" (virtual time); 3 ms when unset.
    latency: Mutex<Option<Duration>>,
}

impl Fake {
    fn with_quota() -> Self {
        Self {
            quota: Mutex::new(Some(HashMap::new())),
            ..Self::default()
        }
    }

    /// Whether the key's shard can take `bytes` now (and takes them).
    fn pay(&self, key: &str, bytes: usize) -> bool {
        let mut quota = self.quota.lock().unwrap();
        let Some(buckets) = quota.as_mut() else {
            return true;
        };
        let rate = retry::SHARD_BYTES_PER_SECOND as f64;
        let now = tokio::time::Instant::now();
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *tokens >= bytes as f64 {
            *tokens -= bytes as f64;
            true
        } else {
            *self.throttled.lock().unwrap() += 1;
            false
        }
    }
}

#[async_trait::async_trait]
impl KinesisClient for Fake {
    async fn put_records(
        &self,
        _stream: &str,
        records: Vec<Record>,
    ) -> Result<Vec<RecordOutcome>, CallError> {
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            for record in &records {
                assert!(
                    in_flight.insert(record.partition_key.clone()),
                    "two records of {} in flight at once",
                    record.partition_key
                );
            }
            let mut max = self.max_records_per_call.lock().unwrap();
            *max = (*max).max(records.len());
        }
        // Let other calls start while this one is "on the wire".
        let latency = self
            .latency
            .lock()
            .unwrap()
            .unwrap_or(Duration::from_millis(3));
        tokio::time::sleep(latency).await;
        let script = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Script::Accept);
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            for record in &records {
                in_flight.remove(&record.partition_key);
            }
        }
        match script {
            Script::FailCall(code, status) => Err(CallError {
                action: classify(Some(code), Some(status)),
                code: Some(code.into()),
                message: "scripted".into(),
            }),
            Script::Accept | Script::FailRecords(..) => {
                let failures = match &script {
                    Script::FailRecords(failures, _) => failures.clone(),
                    _ => Vec::new(),
                };
                let code = match script {
                    Script::FailRecords(_, code) => code,
                    _ => "",
                };
                let mut written = self.written.lock().unwrap();
                Ok(records
                    .into_iter()
                    .enumerate()
                    .map(|(i, record)| {
                        if failures.get(i).copied().unwrap_or(false) {
                            RecordOutcome::Failed {
                                code: code.into(),
                                message: "scripted".into(),
                            }
                        } else if !self.pay(
                            &record.partition_key,
                            record.data.len() + record.partition_key.len(),
                        ) {
                            RecordOutcome::Failed {
                                code: "ProvisionedThroughputExceededException".into(),
                                message: "Rate exceeded for shard".into(),
                            }
                        } else {
                            written.push(record);
                            RecordOutcome::Written
                        }
                    })
                    .collect())
            }
        }
    }
}

fn config(max_record_bytes: usize) -> SinkConfig {
    SinkConfig {
        stream: "s".into(),
        max_record_bytes,
        linger: Duration::from_millis(5),
        max_buffered_bytes: 4096,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(200),
        },
        oversize: Oversize::Fail,
        max_events_per_record: usize::MAX,
        call_timeout: Duration::from_secs(10),
    }
}

/// Event `n` of table `t` as a line "t:n\n"; a boundary after every `tx_size` events. Every
/// other transaction comes as one batch (`Message::Events`), as the source sends them, the
/// others event by event.
fn workload(n_events: usize, tables: usize, tx_size: usize) -> Vec<Message> {
    let mut items = Vec::new();
    let mut transaction = Vec::new();
    let flush = |items: &mut Vec<Message>, transaction: &mut Vec<OutboundEvent>, batch: bool| {
        if transaction.is_empty() {
        } else if batch {
            items.push(Message::Events(std::mem::take(transaction)));
        } else {
            items.extend(transaction.drain(..).map(Message::Event));
        }
    };
    for n in 0..n_events {
        let table = format!("db.t{}", n % tables);
        transaction.push(OutboundEvent {
            table: TableName::new("db", &format!("t{}", n % tables)),
            key: table.as_str().into(),
            position: BinlogPosition::new("b.000001", 4 + n as u64).unwrap(),
            line: EventLine::raw(format!("{table}:{n}\n").into_bytes()),
            moved_from: None,
        });
        if (n + 1) % tx_size == 0 {
            flush(&mut items, &mut transaction, (n / tx_size) % 2 == 0);
            items.push(Message::Boundary(
                ResumePoint::at(BinlogPosition::new("b.000001", 5 + n as u64).unwrap()).into(),
            ));
        }
    }
    flush(&mut items, &mut transaction, true);
    items
}

/// Runs the sink over `items` against `fake`; returns the acknowledged positions in order, and
/// checks at each one that every event before it had already been written.
async fn drive(
    fake: Arc<Fake>,
    items: Vec<Message>,
    config: SinkConfig,
) -> (Result<SinkSummary, SinkError>, Vec<BinlogPosition>) {
    drive_with_metrics(fake, items, config, Arc::new(Metrics::default())).await
}

async fn drive_with_metrics(
    fake: Arc<Fake>,
    items: Vec<Message>,
    config: SinkConfig,
    metrics: Arc<Metrics>,
) -> (Result<SinkSummary, SinkError>, Vec<BinlogPosition>) {
    drive_seeded(fake, items, config, metrics, 0, Duration::ZERO).await
}

/// [`drive`] with the backoff's jitter seeded by `seed`, and `spacing` (virtual time) between
/// the items fed.
async fn drive_seeded(
    fake: Arc<Fake>,
    items: Vec<Message>,
    config: SinkConfig,
    metrics: Arc<Metrics>,
    seed: u64,
    spacing: Duration,
) -> (Result<SinkSummary, SinkError>, Vec<BinlogPosition>) {
    let (input_tx, input_rx) = mpsc::channel(16);
    let (ack_tx, mut ack_rx) = mpsc::channel(16);
    let sink = tokio::spawn(run_seeded(
        config,
        fake.clone() as Arc<dyn KinesisClient>,
        input_rx,
        ack_tx,
        metrics,
        Arc::new(Fence::always_open()),
        SmallRng::seed_from_u64(seed),
    ));
    let feeder = tokio::spawn(async move {
        for item in items {
            if !spacing.is_zero() {
                tokio::time::sleep(spacing).await;
            }
            if input_tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    while let Some(Boundary {
        point: ResumePoint { position, .. },
        ..
    }) = ack_rx.recv().await
    {
        // The boundary at offset 5+n follows event n: events 0..=n must all be written.
        let last_event = position.offset() - 5;
        let written: HashSet<u64> = fake
            .written
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| lines(r).into_iter().map(|(_, n)| n))
            .collect();
        for n in 0..=last_event {
            assert!(
                written.contains(&n),
                "checkpoint {position} passed unwritten event {n}"
            );
        }
        acks.push(position);
    }
    feeder.await.unwrap();
    (sink.await.unwrap(), acks)
}

fn lines(record: &Record) -> Vec<(String, u64)> {
    assert!(
        record.data.ends_with(b"\n"),
        "every line ends with a newline"
    );
    String::from_utf8(record.data.clone())
        .unwrap()
        .lines()
        .map(|line| {
            let (table, n) = line.rsplit_once(':').unwrap();
            assert_eq!(table, record.partition_key, "a record holds one key only");
            (table.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// Per table, the event numbers in the order Kinesis stored them.
fn stored_order(fake: &Fake) -> HashMap<String, Vec<u64>> {
    let mut order: HashMap<String, Vec<u64>> = HashMap::new();
    for record in fake.written.lock().unwrap().iter() {
        for (table, n) in lines(record) {
            order.entry(table).or_default().push(n);
        }
    }
    order
}

fn assert_complete_and_ordered(fake: &Fake, n_events: usize, tables: usize) {
    let order = stored_order(fake);
    for t in 0..tables {
        let expected: Vec<u64> = (0..n_events as u64)
            .filter(|n| *n as usize % tables == t)
            .collect();
        assert_eq!(
            order.get(&format!("db.t{t}")).cloned().unwrap_or_default(),
            expected,
            "table t{t}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn delivers_everything_in_order_and_acknowledges_the_last_boundary() {
    let fake = Arc::new(Fake::default());
    let (result, acks) = drive(fake.clone(), workload(200, 3, 4), config(64)).await;
    let summary = result.unwrap();
    assert_eq!(summary.events, 200);
    assert!(
        summary.records < 200,
        "events of one key share records: {summary:?}"
    );
    assert_complete_and_ordered(&fake, 200, 3);
    assert_eq!(acks.last().unwrap().offset(), 5 + 199);
}

#[tokio::test(start_paused = true)]
async fn a_partly_failed_call_retries_only_failed_keys_and_keeps_their_order() {
    let fake = Arc::new(Fake::default());
    fake.script.lock().unwrap().extend([
        Script::FailRecords(
            vec![true, false, true],
            "ProvisionedThroughputExceededException",
        ),
        Script::FailRecords(vec![false, true], "InternalFailure"),
        Script::FailCall("ProvisionedThroughputExceededException", 400),
        Script::FailCall("", 503),
    ]);
    let (result, _) = drive(fake.clone(), workload(60, 3, 2), config(40)).await;
    assert!(result.unwrap().retries >= 3);
    assert_complete_and_ordered(&fake, 60, 3);
}

#[tokio::test(start_paused = true)]
async fn a_missing_stream_stops_the_sink_without_acknowledging() {
    let fake = Arc::new(Fake::default());
    fake.script
        .lock()
        .unwrap()
        .push_back(Script::FailCall("ResourceNotFoundException", 400));
    let (result, acks) = drive(fake, workload(3, 1, 1), config(1024)).await;
    assert!(matches!(result, Err(SinkError::Call { .. })), "{result:?}");
    assert!(acks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_event_larger_than_a_record_is_an_error_naming_table_and_position() {
    let fake = Arc::new(Fake::default());
    let items = vec![Message::Event(OutboundEvent {
        table: TableName::new("db", "big"),
        key: "db.big".into(),
        position: "b.000001:77".parse().unwrap(),
        line: EventLine::raw(vec![b'x'; 2000]),
        moved_from: None,
    })];
    let (result, _) = drive(fake, items, config(1024)).await;
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains("db.big") && error.contains("b.000001:77"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn max_events_per_record_caps_what_a_record_holds() {
    let fake = Arc::new(Fake::default());
    let config = SinkConfig {
        max_events_per_record: 2,
        ..config(1024)
    };
    let (result, _) = drive(fake.clone(), workload(9, 1, 9), config).await;
    assert_eq!(result.unwrap().events, 9);
    let sizes: Vec<usize> = fake
        .written
        .lock()
        .unwrap()
        .iter()
        .map(|r| lines(r).len())
        .collect();
    assert!(sizes.iter().all(|n| *n <= 2), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 9);
    assert_complete_and_ordered(&fake, 9, 1);
}

#[tokio::test(start_paused = true)]
async fn metrics_count_what_kinesis_did() {
    let fake = Arc::new(Fake::default());
    fake.script.lock().unwrap().extend([
        Script::FailRecords(vec![true], "ProvisionedThroughputExceededException"),
        Script::FailCall("InternalFailure", 500),
    ]);
    let metrics = Arc::new(Metrics::new(true));
    let (result, _) = drive_with_metrics(
        fake.clone(),
        workload(3, 1, 1),
        config(1024),
        metrics.clone(),
    )
    .await;
    let summary = result.unwrap();
    assert_eq!(metrics.events_put.get(), 3);
    assert_eq!(metrics.records_put.get(), summary.records);
    assert_eq!(metrics.throttled_records.get(), 1);
    assert_eq!(metrics.failed_records.get(), 1);
    assert_eq!(metrics.retries.get(), 2);
    let written_bytes: usize = fake
        .written
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.data.len() + r.partition_key.len())
        .sum();
    assert_eq!(metrics.bytes_put.get(), written_bytes as u64);
    let snapshot = metrics.snapshot(std::time::SystemTime::now());
    assert_eq!(snapshot.put_latency.count, summary.calls);
    assert_eq!(snapshot.per_table, vec![(TableName::new("db", "t0"), 3)]);
}

/// Runs `test` on a paused-time runtime of its own, failing if it does not finish within
/// `seconds` of real time. Under paused time the clock only moves while the runtime is idle, so
/// a producer loop that never waits (a spin) hangs the test forever: this turns that into a
/// failure.
fn within_real_seconds<F>(seconds: u64, test: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(test)));
        // The receiver may have given up already.
        done_tx.send(outcome).ok();
    });
    match done_rx.recv_timeout(Duration::from_secs(seconds)) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the producer did not finish within {seconds} s of real time: it spins (a branch of its select! is always ready)"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        // A hung case costs the watchdog's seconds per shrinking step: bound the shrinking.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })]
    /// Whatever Kinesis fails, and however, every event arrives exactly once per successful
    /// write, in order per key, and the checkpoint never passes an unwritten event (checked in
    /// `drive`). A case is a pure function of its inputs (seeded jitter, paused time), so a
    /// failure replays from what proptest prints.
    #[test]
    fn order_and_completeness_survive_any_failure_script(
        n_events in 1usize..120,
        tables in 1usize..6,
        tx_size in 1usize..7,
        max_record in 16usize..80,
        script in prop::collection::vec(
            prop_oneof![
                Just(Script::Accept),
                prop::collection::vec(any::<bool>(), 0..6)
                    .prop_map(|f| Script::FailRecords(f, "ProvisionedThroughputExceededException")),
                Just(Script::FailCall("ThrottlingException", 400)),
                Just(Script::FailCall("", 500)),
            ],
            0..30,
        ),
        seed in any::<u64>(),
        spacing_us in prop_oneof![Just(0u64), 1u64..2000],
        latency_ms in 1u64..40,
    ) {
        within_real_seconds(10, async move {
            let fake = Arc::new(Fake::default());
            fake.script.lock().unwrap().extend(script);
            *fake.latency.lock().unwrap() = Some(Duration::from_millis(latency_ms));
            let (result, acks) = drive_seeded(
                fake.clone(),
                workload(n_events, tables, tx_size),
                config(max_record),
                Arc::new(Metrics::default()),
                seed,
                Duration::from_micros(spacing_us),
            )
            .await;
            assert_eq!(result.unwrap().events, n_events as u64);
            assert_complete_and_ordered(&fake, n_events, tables);
            let last_boundary = (n_events / tx_size) * tx_size;
            if last_boundary > 0 {
                assert_eq!(acks.last().unwrap().offset(), 5 + last_boundary as u64 - 1);
            }
            assert!(*fake.max_records_per_call.lock().unwrap() <= batch::MAX_RECORDS_PER_CALL);
        });
    }
}

/// Regression (issue 11, item 0): with every call slot taken and a key whose linger has run
/// out, the producer's loop found its sleep always ready and spun until a call returned; under
/// paused time the calls never return, so this hung.
#[test]
fn a_waiting_key_does_not_spin_the_producer_while_every_call_slot_is_busy() {
    within_real_seconds(20, async {
        let fake = Arc::new(Fake::default());
        // Calls outlast the linger, so a fifth key lingers out while four calls are in flight.
        *fake.latency.lock().unwrap() = Some(Duration::from_millis(50));
        // One key more than there are call slots, fed one item a millisecond for longer than
        // a call and a linger take: the input stays open while the calls are out.
        let tables = MAX_CONCURRENT_CALLS + 1;
        let n_events = 40;
        let config = SinkConfig {
            max_events_per_record: 1,
            ..config(64)
        };
        let (result, _) = drive_seeded(
            fake.clone(),
            workload(n_events, tables, 1),
            config,
            Arc::new(Metrics::default()),
            0,
            Duration::from_millis(1),
        )
        .await;
        assert_eq!(result.unwrap().events, n_events as u64);
        assert_complete_and_ordered(&fake, n_events, tables);
    });
}

/// One hot key against the shard quota: the producer paces the key to the quota after the
/// first throttle, so it uses nearly all of its shard (not a blind backoff's fraction), is
/// throttled only a few times, and keeps every event in order.
#[tokio::test(start_paused = true)]
async fn a_hot_key_is_paced_to_its_shard_quota() {
    let fake = Arc::new(Fake::with_quota());
    let n_events = 1200;
    let pad = "x".repeat(10_000);
    let mut items = Vec::new();
    for n in 0..n_events {
        items.push(Message::Event(OutboundEvent {
            table: TableName::new("db", "hot"),
            key: "db.hot".into(),
            position: BinlogPosition::new("b.000001", 4 + n as u64).unwrap(),
            line: EventLine::raw(format!("{n:08}{pad}\n").into_bytes()),
            moved_from: None,
        }));
    }
    let config = SinkConfig {
        max_buffered_bytes: 8 << 20,
        backoff: DEFAULT_BACKOFF_FOR_TEST,
        ..config(1_024_000)
    };
    let started = tokio::time::Instant::now();
    let (result, _) = drive(fake.clone(), items, config).await;
    let summary = result.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(summary.events, n_events as u64);

    let written = fake.written.lock().unwrap();
    let order: Vec<usize> = written
        .iter()
        .flat_map(|r| {
            String::from_utf8(r.data.clone())
                .unwrap()
                .lines()
                .map(|line| line[..8].parse().unwrap())
                .collect::<Vec<usize>>()
        })
        .collect();
    assert_eq!(
        order,
        (0..n_events).collect::<Vec<_>>(),
        "every event, in order"
    );
    let bytes: usize = written
        .iter()
        .map(|r| r.data.len() + r.partition_key.len())
        .sum();
    // The first 1 MiB is the bucket's burst; after it the shard gives 1 MiB per second.
    let quota = (bytes as f64 - (1 << 20) as f64) / elapsed / retry::SHARD_BYTES_PER_SECOND as f64;
    assert!(
        quota >= 0.9,
        "used {:.0} % of the shard's byte quota",
        quota * 100.0
    );
    let throttled = *fake.throttled.lock().unwrap();
    assert!(
        throttled <= 3,
        "throttled {throttled} times: pacing should prevent it"
    );
}

const DEFAULT_BACKOFF_FOR_TEST: Backoff = retry::DEFAULT_BACKOFF;

/// Regression (issue 11, item 4): an instance whose hold on the instance lock is in doubt (its
/// fence closed) starts no PutRecords call, however long it waits; once the lock keeper
/// renews the fence, everything goes out in order.
#[tokio::test(start_paused = true)]
async fn no_call_starts_while_the_fence_is_closed() {
    let fake = Arc::new(Fake::default());
    let fence = Arc::new(Fence::new());
    let (input_tx, input_rx) = mpsc::channel(64);
    let (ack_tx, mut ack_rx) = mpsc::channel(64);
    let sink = tokio::spawn(run_seeded(
        config(64),
        fake.clone() as Arc<dyn KinesisClient>,
        input_rx,
        ack_tx,
        Arc::new(Metrics::default()),
        Arc::clone(&fence),
        SmallRng::seed_from_u64(0),
    ));
    for item in workload(10, 2, 1) {
        input_tx.send(item).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        fake.written.lock().unwrap().is_empty(),
        "a fenced instance wrote"
    );
    assert!(ack_rx.try_recv().is_err(), "nothing is acknowledged");
    fence.renew(tokio::time::Instant::now(), Duration::from_secs(3600));
    drop(input_tx);
    assert_eq!(sink.await.unwrap().unwrap().events, 10);
    assert_complete_and_ordered(&fake, 10, 2);
}

mod intake;

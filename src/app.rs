//! Wiring only: connect, choose the start position, create the channels, spawn the stages,
//! and run the shutdown sequence. No processing happens here.
//!
//! ```text
//! source::run ──Message (bounded)──▶ sink::run ──acknowledged positions (bounded)──▶ checkpoint::run
//! ```
//!
//! # Shutdown sequence
//!
//! 1. A signal (or a stage ending) cancels the source's token, and only that one.
//! 2. The source stops at the next transaction boundary and drops its sender.
//! 3. The sink sees its input end, sends what it holds, waits for Kinesis to acknowledge it,
//!    reports the last acknowledged boundary, and drops its sender.
//! 4. The checkpoint task writes that boundary and ends.
//!
//! 5. The metrics outlets stop; the CloudWatch publisher flushes once more, so the last
//!    interval's counts are not lost.
//!
//! `shutdown.drain_timeout_ms` bounds the whole stop, the final flush included (ECS kills the
//! task at its `stopTimeout`): the flush keeps a share of it (`stop_budget`) and steps 2–3 get
//! the rest (cut short by a second signal). Past it the source and sink are aborted, the
//! checkpoint task still writes what was acknowledged, and the run reports
//! [`Error::DrainIncomplete`].
//!
//! The HTTP listener (`/health`, `/metrics`) and the CloudWatch publisher run from the start,
//! so a standby waiting for the instance lock reports itself healthy.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::mpsc,
    task::{JoinError, JoinHandle},
};
use tokio_util::sync::CancellationToken;

pub use crate::source::start::StartFrom;
use crate::{
    checkpoint::{self, Checkpoint, CheckpointError, CheckpointStore},
    config::{Config, ConfigError},
    fence::{self, Fence},
    metrics::{
        cloudwatch::Publisher,
        http::{self, ListenError},
        Metrics, State,
    },
    position::ResumePoint,
    report::error_chain,
    shutdown::Shutdown,
    sink::{
        self,
        client::{CallError, KinesisClient},
        SinkConfig, SinkError, SinkSummary,
    },
    source::{
        self, connect,
        lock::{self, InstanceLock},
        schema::SchemaError,
        snapshot::{plan::Saved, DriverConfig, SnapshotError},
        start::{self, Begun, ServerFacts},
        SourceConfig, SourceError, SourceSummary,
    },
    stream::Boundary,
};

/// Messages between the source and the sink. Small: the sink holds the real buffer, bounded in
/// bytes by `kinesis.max_buffered_bytes`, and each message here is one event of at most a
/// record's size (larger ones stop the sink) or a batch of at most `stream::BATCH_BYTES` of
/// lines, so this adds at most 32 × the larger of the two. (32 is room enough: a batch holds a
/// few hundred events.)
const EVENT_CHANNEL_CAPACITY: usize = 32;

/// Acknowledged positions between the sink and the checkpoint task, which only keeps the latest.
const ACK_CHANNEL_CAPACITY: usize = 256;

/// How long the last PutMetricData at shutdown may take at most (it is also bounded per call).
pub(crate) const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How `shutdown.drain_timeout_ms` is shared between the drain and the final metrics flush:
/// `(drain, flush)`, adding up to at most the drain timeout. The flush keeps up to
/// [`FINAL_FLUSH_TIMEOUT`], never more than a fifth of the budget; without CloudWatch the drain
/// has it all.
pub(crate) fn stop_budget(drain_timeout: Duration, cloudwatch: bool) -> (Duration, Duration) {
    let flush = if cloudwatch {
        FINAL_FLUSH_TIMEOUT.min(drain_timeout / 5)
    } else {
        Duration::ZERO
    };
    (drain_timeout - flush, flush)
}

/// Anything that stops a run; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration or usage.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP listener's address cannot be used.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The MySQL side.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The Kinesis side.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The stream is not usable at startup.
    #[error("kinesis stream {stream:?} is not usable")]
    Stream {
        /// The stream.
        stream: String,
        /// What is wrong.
        #[source]
        source: CallError,
    },
    /// Saving progress failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The drain did not finish in time, or a second signal abandoned it.
    #[error("the drain {how}; the checkpoint is at {committed}, changes after it will be sent again on restart")]
    DrainIncomplete {
        /// What ended it: the deadline, or a second signal.
        how: String,
        /// The last checkpoint written.
        committed: String,
    },
    /// A stage's task panicked or was cancelled: a bug.
    #[error("internal error: the {task} task ended abnormally")]
    Task {
        /// Which task.
        task: &'static str,
        /// How it ended.
        #[source]
        source: JoinError,
    },
    /// The signal handlers cannot be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The producer stopped taking events without saying why: a bug.
    #[error("internal error: the producer stopped without an error")]
    ProducerStoppedSilently,
}

impl Error {
    /// The process exit code for this error (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Listen(_)
            | Error::Source(
                SourceError::NotATransactionStart { .. }
                | SourceError::UnusableStartGtid { .. }
                | SourceError::ColumnRule { .. }
                | SourceError::Schema {
                    source: SchemaError::RuleOnKey { .. } | SchemaError::WatchedColumn { .. },
                    ..
                },
            ) => 2,
            Error::Source(SourceError::Snapshot(error))
                if matches!(**error, SnapshotError::Rules { .. }) =>
            {
                2
            }
            Error::Source(
                SourceError::AccessDenied { .. }
                | SourceError::MissingPrivilege { .. }
                | SourceError::ServerMisconfigured { .. },
            ) => 3,
            Error::Source(SourceError::Snapshot(error))
                if matches!(**error, SnapshotError::Denied { .. }) =>
            {
                3
            }
            Error::Source(SourceError::PositionNotOnServer { .. }) => 4,
            Error::DrainIncomplete { .. } => 5,
            Error::Sink(_) | Error::Stream { .. } => 6,
            Error::Source(
                SourceError::UnsupportedEvent { .. }
                | SourceError::Decode { .. }
                | SourceError::Schema { .. }
                | SourceError::Snapshot(_)
                | SourceError::Protocol { .. }
                | SourceError::File { .. }
                | SourceError::Integrity { .. }
                | SourceError::EventTooLarge { .. },
            ) => 7,
            Error::Source(SourceError::LockLost { .. })
            | Error::Checkpoint(CheckpointError::Conflict { .. }) => 10,
            Error::Source(SourceError::ServerIdConflict { .. }) => 11,
            Error::Source(error) if error.is_transient() => 8,
            Error::Checkpoint(_) => 9,
            Error::Source(_)
            | Error::Task { .. }
            | Error::Signals(_)
            | Error::ProducerStoppedSilently => 1,
        }
    }
}

/// What a clean run did.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// The last checkpoint written.
    pub committed: Option<ResumePoint>,
    /// Row events read.
    pub events: u64,
    /// Replication connections reopened after a loss.
    pub reconnects: u64,
}

/// Runs the daemon until `shutdown` fires and the drain completes, or a stage fails.
pub async fn run(
    config: Config,
    start: StartFrom,
    client: Arc<dyn KinesisClient>,
    shutdown: Shutdown,
) -> Result<RunOutcome, Error> {
    let metrics = Arc::new(Metrics::new(config.metrics.per_table));
    metrics.set_degraded_after(config.http.degraded_after);
    let outlets_stop = CancellationToken::new();
    let listener = match &config.http.listen {
        Some(addr) => {
            let listener = http::bind(addr).await?;
            tracing::info!(addr = %addr, "serving /health and /metrics");
            Some(tokio::spawn(http::serve(
                listener,
                Arc::clone(&metrics),
                http::Labels {
                    stream: config.kinesis.stream.clone(),
                    source: config.metrics.source.clone(),
                },
                outlets_stop.clone(),
            )))
        }
        None => None,
    };
    let publisher = if config.metrics.cloudwatch {
        let publisher = Publisher::new(
            &config.metrics,
            &config.kinesis.stream,
            Arc::clone(&metrics),
        )
        .await;
        Some(tokio::spawn(
            publisher.run(config.metrics.interval, outlets_stop.clone()),
        ))
    } else {
        None
    };

    let config_drain_timeout = config.shutdown.drain_timeout;
    let result = replicate(config, start, client, shutdown, &metrics).await;

    metrics.set_state(State::Stopped);
    outlets_stop.cancel();
    if let Some(publisher) = publisher {
        let (_, flush) = stop_budget(config_drain_timeout, true);
        if tokio::time::timeout(flush, publisher).await.is_err() {
            tracing::warn!("the final metrics flush did not finish in time");
        }
    }
    if let Some(listener) = listener {
        listener.abort();
    }
    result
}

async fn replicate(
    config: Config,
    asked: StartFrom,
    client: Arc<dyn KinesisClient>,
    shutdown: Shutdown,
    metrics: &Arc<Metrics>,
) -> Result<RunOutcome, Error> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let max_record_bytes = record_size(&config, client.as_ref()).await?;
    let call_timeout = config.kinesis.call_timeout;
    let Some((ownership, store, checkpoint)) = take_over(&config, &shutdown, metrics).await? else {
        return Ok(RunOutcome::default());
    };
    let mut conn = connect::connect(&config.mysql).await?;
    let server = connect::check_server(&mut conn).await?;
    for warning in &server.warnings {
        tracing::warn!("{warning}");
    }
    metrics.set_retention(server.binlog_retention);
    let facts = ServerFacts {
        is_mariadb: server.is_mariadb,
        mysql_gtids: !server.is_mariadb && connect::mysql_gtid_mode_on(&mut conn).await?,
    };
    let saved = (
        checkpoint.as_ref().map(Checkpoint::boundary),
        saved(&checkpoint),
    );
    let begun = start::begin(conn, &config, asked, saved, facts, metrics).await?;
    let claim = claim(checkpoint, &begun);
    let Begun {
        opened,
        snapshot,
        save_start,
    } = begun;
    if !checkpoint::store_fenced(store.as_ref(), &claim, &ownership.fence, call_timeout).await? {
        ownership.release().await;
        return Err(lock_lost(&config, "its hold lapsed before the first write"));
    }
    metrics.checkpoint_written(&claim.position, 0);
    if save_start {
        tracing::info!(start = %opened.point, checkpoint = %store.location(), "start position saved as the checkpoint");
    }
    tracing::info!(server = %server.version, start = %opened.point, stream = %config.kinesis.stream, "replicating");
    metrics.set_state(State::Replicating);

    let mut source_config = SourceConfig::live(
        &config,
        facts.resume_by_gtid(),
        &server,
        max_record_bytes,
        opened.catch_up,
    );
    let driver = DriverConfig::new(&config, facts.is_mariadb);
    source_config.snapshot = snapshot.map(|state| (state, driver));
    let sink_config = SinkConfig::new(&config.kinesis, max_record_bytes);
    let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let (acks_tx, acks_rx) = mpsc::channel(ACK_CHANNEL_CAPACITY);
    let source_cancel = CancellationToken::new();
    let source = tokio::spawn(source::run(
        source_config,
        opened.stream,
        opened.point,
        events_tx,
        Arc::clone(&ownership.lock),
        source_cancel.clone(),
        Arc::clone(metrics),
    ));
    let sink = tokio::spawn(sink::run(
        sink_config,
        client,
        events_rx,
        acks_tx,
        Arc::clone(metrics),
        Arc::clone(&ownership.fence),
    ));
    let writer = (
        config.checkpoint.interval,
        Arc::clone(&ownership.fence),
        call_timeout,
    );
    let checkpointer = tokio::spawn(write_checkpoints(
        Arc::clone(&store),
        writer,
        claim,
        acks_rx,
        Arc::clone(metrics),
    ));
    let stages = Stages {
        source,
        sink,
        checkpointer,
        source_cancel,
    };
    stages
        .run_and_drain(&config, &shutdown, ownership, store, metrics)
        .await
}

/// The first write, which claims the stream: it saves the start (see
/// `saved_before_reading`) and the snapshot plan (a crash before the first acknowledgement
/// must lose neither), and clears the previous holder's `released` mark.
fn claim(checkpoint: Option<Checkpoint>, begun: &Begun) -> Checkpoint {
    let mut claim = match checkpoint.filter(|_| !begun.save_start) {
        Some(loaded) => loaded.restamped(false),
        None => Checkpoint::new(begun.opened.point.clone()),
    };
    claim.snapshot = begun.snapshot.clone();
    claim
}

/// What the checkpoint says about snapshots.
fn saved(checkpoint: &Option<Checkpoint>) -> Saved {
    match checkpoint.as_ref().map(|c| c.snapshot.clone()) {
        None => Saved::Nothing,
        Some(None) => Saved::Unaware,
        Some(Some(state)) => Saved::State(state),
    }
}

/// The largest record: the smaller of what is configured and what the stream accepts.
async fn record_size(config: &Config, client: &dyn KinesisClient) -> Result<usize, Error> {
    let stream_info = client
        .check_stream(&config.kinesis.stream)
        .await
        .map_err(|source| Error::Stream {
            stream: config.kinesis.stream.clone(),
            source,
        })?;
    Ok(match stream_info.max_record_bytes {
        Some(stream_max) if stream_max < config.kinesis.max_record_bytes => {
            tracing::warn!(
                configured = config.kinesis.max_record_bytes,
                stream_max,
                "kinesis.max_record_bytes is larger than the stream's maximum record size; using the stream's"
            );
            stream_max
        }
        _ => config.kinesis.max_record_bytes,
    })
}

/// Takes the instance lock (waiting as a standby until it is free or the run is stopped),
/// then the checkpoint: read once the lock is held, since the previous holder may have
/// written it until the moment it let go, and read again after waiting out the previous
/// holder's lease when it did not release the stream cleanly (see `crate::fence`).
async fn take_over(
    config: &Config,
    shutdown: &Shutdown,
    metrics: &Arc<Metrics>,
) -> Result<Option<(Ownership, Arc<dyn CheckpointStore>, Option<Checkpoint>)>, Error> {
    let lock_name = lock::lock_name(&config.kinesis.stream);
    let Some(lock) =
        InstanceLock::acquire(&config.mysql, &lock_name, &shutdown.graceful, metrics).await?
    else {
        tracing::info!("stopped while waiting as standby");
        return Ok(None);
    };
    tracing::info!(lock = %lock_name, "holding the instance lock");
    // Shared with the source, which checks it; kept here until the checkpoint is written.
    let ownership = Ownership::start(lock, config.mysql.heartbeat);
    let store = checkpoint::open_store(&config.checkpoint).await;
    let checkpoint = store.load().await?;
    if checkpoint.as_ref().is_none_or(|c| c.released) {
        return Ok(Some((ownership, store, checkpoint)));
    }
    let wait = fence::takeover_wait(config.mysql.heartbeat, config.kinesis.call_timeout);
    tracing::info!(wait_ms = wait.as_millis() as u64, "the previous instance did not release the stream cleanly (it crashed, or lost the instance lock): waiting out its lease before writing");
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.graceful.cancelled() => {
            ownership.release().await;
            return Ok(None);
        }
    }
    let checkpoint = store.load().await?;
    Ok(Some((ownership, store, checkpoint)))
}

/// The checkpoint task: writes acknowledged boundaries until the sink's sender is gone.
async fn write_checkpoints(
    store: Arc<dyn CheckpointStore>,
    (interval, fence, timeout): (Duration, Arc<Fence>, Duration),
    claim: Checkpoint,
    acks: mpsc::Receiver<Boundary>,
    metrics: Arc<Metrics>,
) -> Result<Option<Checkpoint>, CheckpointError> {
    let writer = checkpoint::Writer {
        interval,
        fence: &fence,
        timeout,
    };
    checkpoint::run(store.as_ref(), writer, Some(claim), acks, &metrics).await
}

fn lock_lost(config: &Config, reason: &str) -> Error {
    Error::Source(SourceError::LockLost {
        lock: lock::lock_name(&config.kinesis.stream),
        reason: reason.into(),
    })
}

type SourceTask = JoinHandle<Result<SourceSummary, SourceError>>;
type SinkTask = JoinHandle<Result<SinkSummary, SinkError>>;

/// The running stages.
struct Stages {
    source: SourceTask,
    sink: SinkTask,
    checkpointer: JoinHandle<Result<Option<Checkpoint>, CheckpointError>>,
    source_cancel: CancellationToken,
}

impl Stages {
    /// Runs until a signal or until a stage ends on its own (which only happens on error),
    /// then the shutdown sequence of the module docs.
    async fn run_and_drain(
        mut self,
        config: &Config,
        shutdown: &Shutdown,
        ownership: Ownership,
        store: Arc<dyn CheckpointStore>,
        metrics: &Metrics,
    ) -> Result<RunOutcome, Error> {
        let mut source_result = None;
        let mut sink_result = None;
        let mut lock_lost = false;
        tokio::select! {
            _ = shutdown.graceful.cancelled() => {}
            result = &mut self.source => source_result = Some(result),
            result = &mut self.sink => sink_result = Some(result),
            // Another instance writes the stream now: nothing of this one may follow.
            _ = ownership.fence.lost() => lock_lost = true,
        }
        self.source_cancel.cancel();
        metrics.set_state(State::Draining);
        if lock_lost {
            self.source.abort();
            self.sink.abort();
            // Fenced: it writes nothing more.
            self.checkpointer.await.ok();
            ownership.release().await;
            return Err(self::lock_lost(config, "another instance holds it now"));
        }
        let (drain_timeout, _) =
            stop_budget(config.shutdown.drain_timeout, config.metrics.cloudwatch);
        let (mut source, mut sink) = (self.source, self.sink);
        let drain = async {
            let source_result = match source_result.take() {
                Some(result) => result,
                None => (&mut source).await,
            };
            let sink_result = match sink_result.take() {
                Some(result) => result,
                None => (&mut sink).await,
            };
            (source_result, sink_result)
        };
        let mut cut_short = format!("did not finish within {} ms", drain_timeout.as_millis());
        let drained = tokio::select! {
            results = drain => Some(results),
            _ = tokio::time::sleep(drain_timeout) => None,
            _ = shutdown.immediate.cancelled() => {
                cut_short = "was abandoned at a second stop signal".into();
                None
            }
        };
        if drained.is_none() {
            source.abort();
            sink.abort();
        }
        // The checkpoint task ends once the sink's sender is gone: it always writes what was
        // acknowledged, even after an aborted drain.
        let committed = self.checkpointer.await.map_err(|source| Error::Task {
            task: "checkpoint",
            source,
        })??;
        if let Some(checkpoint) = &committed {
            tracing::info!(position = %checkpoint.resume_point(), "checkpoint written");
        }
        let clean = matches!(&drained, Some((Ok(Ok(_)), Ok(Ok(_)))));
        if let (true, Some(last)) = (clean, &committed) {
            release_checkpoint(config, store.as_ref(), last, &ownership.fence).await;
        }
        let committed = committed.map(|c| c.resume_point());
        // Only now, with everything drained and checkpointed, may another instance take over.
        ownership.release().await;
        let Some((source_result, sink_result)) = drained else {
            return Err(Error::DrainIncomplete {
                how: cut_short,
                committed: committed.map_or("(none)".into(), |p| p.to_string()),
            });
        };
        outcome(source_result, sink_result, committed, metrics)
    }
}

/// After a clean drain nothing is in flight: the checkpoint says so, so that the next
/// instance need not wait out this one's lease.
async fn release_checkpoint(
    config: &Config,
    store: &dyn CheckpointStore,
    last: &Checkpoint,
    fence: &Fence,
) {
    let released = last.restamped(true);
    match checkpoint::store_fenced(store, &released, fence, config.kinesis.call_timeout).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the instance lock is in doubt: the checkpoint is not marked released, and the next instance will wait out this one's lease"),
        Err(error) => tracing::warn!(error = %error_chain(&error), "cannot mark the checkpoint released; the next instance will wait out this one's lease"),
    }
}

/// The run's result from the stages' results: a source error explains itself unless it
/// only says the producer stopped, in which case the producer's error does.
fn outcome(
    source_result: Result<Result<SourceSummary, SourceError>, JoinError>,
    sink_result: Result<Result<SinkSummary, SinkError>, JoinError>,
    committed: Option<ResumePoint>,
    metrics: &Metrics,
) -> Result<RunOutcome, Error> {
    let task = |task| move |source| Error::Task { task, source };
    let summary = sink_result.map_err(task("sink"))?;
    let source_summary = match source_result.map_err(task("source"))? {
        Err(SourceError::SinkGone) => {
            summary?;
            return Err(Error::ProducerStoppedSilently);
        }
        Err(error) => {
            if let Err(sink_error) = summary {
                tracing::error!(error = %error_chain(&sink_error), "the producer failed too");
            }
            return Err(error.into());
        }
        Ok(source_summary) => source_summary,
    };
    let summary = summary?;
    // How full records were: what the record size and linger bought.
    let per_record = |n: u64| {
        if summary.records == 0 {
            0.0
        } else {
            n as f64 / summary.records as f64
        }
    };
    tracing::info!(
        events = summary.events,
        records = summary.records,
        calls = summary.calls,
        retries = summary.retries,
        events_per_record = per_record(summary.events),
        bytes_per_record = per_record(metrics.bytes_put.get()),
        "drained"
    );
    Ok(RunOutcome {
        committed,
        events: source_summary.events,
        reconnects: source_summary.reconnects,
    })
}

/// The instance lock, the write fence it keeps open, and the task that keeps it
/// (`source::lock::keep`).
struct Ownership {
    lock: Arc<tokio::sync::Mutex<InstanceLock>>,
    fence: Arc<Fence>,
    keeper: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    /// A run that ends on an error without `release` still stops the keeper (and so lets the
    /// lock go): in a process that goes on (tests, embedding), a leaked keeper held the lock
    /// and kept every later run a standby.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Ownership {
    /// Starts keeping `lock`, just acquired: the fence is open for one lease from now.
    fn start(lock: InstanceLock, heartbeat: Duration) -> Self {
        let fence = Arc::new(Fence::new());
        fence.renew(tokio::time::Instant::now(), fence::lease(heartbeat));
        let lock = Arc::new(tokio::sync::Mutex::new(lock));
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(lock::keep(
            Arc::clone(&lock),
            Arc::clone(&fence),
            heartbeat,
            stop.clone(),
        ));
        Self {
            lock,
            fence,
            keeper,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        }
    }

    /// Stops keeping the lock and lets it go (its connection closes).
    async fn release(self) {
        self.stop.cancel();
        self.keeper.await.ok();
        drop(self.lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 11, item 12): the stop took the drain timeout plus up to 5 s of final
    /// metrics flush, past ECS's stopTimeout. The two now share the drain timeout.
    #[test]
    fn the_drain_and_the_final_flush_share_the_stop_budget() {
        for ms in [0u64, 1, 500, 10_000, 25_000, 100_000] {
            let budget = Duration::from_millis(ms);
            let (drain, flush) = stop_budget(budget, true);
            assert_eq!(drain + flush, budget, "{ms} ms");
            assert!(
                flush <= FINAL_FLUSH_TIMEOUT && flush <= budget / 5,
                "{ms} ms"
            );
        }
        assert_eq!(
            stop_budget(Duration::from_secs(25), true),
            (Duration::from_secs(20), FINAL_FLUSH_TIMEOUT)
        );
        assert_eq!(
            stop_budget(Duration::from_secs(25), false),
            (Duration::from_secs(25), Duration::ZERO)
        );
    }
}

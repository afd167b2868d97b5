//! Wiring only: connect, choose the start position, create the channels, spawn the stages,
//! and run the shutdown sequence. No processing happens here.
//!
//! ```text
//! source::run ──SinkInput (bounded)──▶ sink::run ──acknowledged positions (bounded)──▶ checkpoint::run
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
//! task at its `stopTimeout`): the flush keeps a share of it ([`stop_budget`]) and steps 2–3 get
//! the rest (cut short by a second signal). Past it the source and sink are aborted, the
//! checkpoint task still writes what was acknowledged, and the run reports
//! [`Error::DrainIncomplete`].
//!
//! The HTTP listener (`/health`, `/metrics`) and the CloudWatch publisher run from the start,
//! so a standby waiting for the instance lock reports itself healthy.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    checkpoint::{self, Checkpoint, CheckpointError},
    config::{Config, ConfigError, PartitionBy},
    fence::{self, Fence},
    metrics::{
        cloudwatch::Publisher,
        http::{self, ListenError},
        Metrics, State,
    },
    position::{BinlogPosition, GtidState, ResumePoint},
    shutdown::Shutdown,
    sink::{self, client::KinesisClient, retry::DEFAULT_BACKOFF, SinkConfig, SinkError},
    source::{
        self, connect,
        lock::{self, InstanceLock},
        xa::CatchUp,
        SourceConfig, SourceError,
    },
};

/// Events between the source and the sink. Small: the sink holds the real buffer, bounded in
/// bytes by `kinesis.max_buffered_bytes`, and each event here is at most a record's size (larger
/// ones stop the sink), so this adds at most 128 × `kinesis.max_record_bytes`.
const EVENT_CHANNEL_CAPACITY: usize = 128;

/// Acknowledged positions between the sink and the checkpoint task, which only keeps the latest.
const ACK_CHANNEL_CAPACITY: usize = 256;

/// How long the last PutMetricData at shutdown may take at most (it is also bounded per call).
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How `shutdown.drain_timeout_ms` is shared between the drain and the final metrics flush:
/// `(drain, flush)`, adding up to at most the drain timeout. The flush keeps up to
/// [`FINAL_FLUSH_TIMEOUT`], never more than a fifth of the budget; without CloudWatch the drain
/// has it all.
pub fn stop_budget(drain_timeout: Duration, cloudwatch: bool) -> (Duration, Duration) {
    let flush = if cloudwatch {
        FINAL_FLUSH_TIMEOUT.min(drain_timeout / 5)
    } else {
        Duration::ZERO
    };
    (drain_timeout - flush, flush)
}

/// Where replication starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// `--start-position FILE:POS`
    Position(BinlogPosition),
    /// `--from-end`: the server's current end of binlog.
    End,
    /// `--start-gtid`: after this MariaDB GTID state, on whichever server is configured.
    Gtid(GtidState),
    /// The checkpoint, or the server's end when there is none yet.
    Checkpoint,
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
    #[error("kinesis stream {stream:?} is not usable: {message}")]
    Stream {
        /// The stream.
        stream: String,
        /// What is wrong.
        message: String,
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
    /// A stage ended in a way it never should.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The process exit code for this error (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Listen(_)
            | Error::Source(SourceError::NotATransactionStart { .. }) => 2,
            Error::Source(
                SourceError::AccessDenied { .. }
                | SourceError::MissingPrivilege { .. }
                | SourceError::ServerMisconfigured { .. },
            ) => 3,
            Error::Source(SourceError::PositionNotOnServer { .. }) => 4,
            Error::DrainIncomplete { .. } => 5,
            Error::Sink(_) | Error::Stream { .. } => 6,
            Error::Source(
                SourceError::UnsupportedEvent { .. }
                | SourceError::Decode { .. }
                | SourceError::Schema { .. }
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
            Error::Source(_) | Error::Internal(_) => 1,
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
    start: StartFrom,
    client: Arc<dyn KinesisClient>,
    shutdown: Shutdown,
    metrics: &Arc<Metrics>,
) -> Result<RunOutcome, Error> {
    let stream_info = client
        .check_stream(&config.kinesis.stream)
        .await
        .map_err(|error| Error::Stream {
            stream: config.kinesis.stream.clone(),
            message: error.to_string(),
        })?;
    // The smaller of what is configured and what the stream accepts.
    let max_record_bytes = match stream_info.max_record_bytes {
        Some(stream_max) if stream_max < config.kinesis.max_record_bytes => {
            tracing::warn!(
                configured = config.kinesis.max_record_bytes,
                stream_max,
                "kinesis.max_record_bytes is larger than the stream's maximum record size; using the stream's"
            );
            stream_max
        }
        _ => config.kinesis.max_record_bytes,
    };

    // Only the lock holder replicates; the checkpoint is read once the lock is held, since the
    // previous holder may have written it until the moment it let go.
    let lock_name = lock::lock_name(&config.kinesis.stream);
    let Some(lock) =
        InstanceLock::acquire(&config.mysql, &lock_name, &shutdown.graceful, metrics).await?
    else {
        tracing::info!("stopped while waiting as standby");
        return Ok(RunOutcome::default());
    };
    tracing::info!(lock = %lock_name, "holding the instance lock");
    // Shared with the source, which checks it; kept here until the checkpoint is written.
    let ownership = Ownership::start(lock, config.mysql.heartbeat);
    let store = checkpoint::open_store(&config.checkpoint).await;
    let mut checkpoint = store.load().await?;
    let call_timeout = config.kinesis.call_timeout;
    if checkpoint.as_ref().is_some_and(|c| !c.released) {
        // The previous holder may have lost the lock without noticing yet: let its fence
        // close and its last calls land before writing anything; see `crate::fence`.
        let wait = fence::takeover_wait(config.mysql.heartbeat, call_timeout);
        tracing::info!(wait_ms = wait.as_millis() as u64, "the previous instance did not release the stream cleanly (it crashed, or lost the instance lock): waiting out its lease before writing");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.graceful.cancelled() => {
                ownership.release().await;
                return Ok(RunOutcome::default());
            }
        }
        // The old holder may have written it until its fence closed: read it again.
        checkpoint = store.load().await?;
    }
    let loaded = checkpoint.clone();

    let mut conn = connect::connect(&config.mysql).await?;
    let server = connect::check_server(&mut conn).await?;
    for warning in &server.warnings {
        tracing::warn!("{warning}");
    }
    metrics.set_retention(server.binlog_retention);
    // On MariaDB, GTIDs are tracked from the start point on (BINLOG_GTID_POS gives the state at
    // a file position), so every checkpoint can resume on another server of the topology. On
    // MySQL the set is known at the end of the binlog (Executed_Gtid_Set) and at the start of
    // every file (PREVIOUS_GTIDS), and resumes where gtid_mode=ON.
    let gtid_at = async |conn: &mut mysql_async::Conn, position: &BinlogPosition| {
        if server.is_mariadb {
            connect::gtid_state_at(conn, position).await
        } else {
            None
        }
    };
    let mysql_gtids = !server.is_mariadb && connect::mysql_gtid_mode_on(&mut conn).await?;
    let resumable = |gtid: &GtidState| {
        !gtid.is_empty()
            && (gtid.is_mysql() != server.is_mariadb)
            && (server.is_mariadb || mysql_gtids)
    };
    // The end of the binlog, with its GTID state.
    let end_of_binlog = async |conn: &mut mysql_async::Conn| -> Result<ResumePoint, Error> {
        let (position, executed) = connect::current_status(conn).await?;
        let gtid = if server.is_mariadb {
            connect::gtid_state_at(conn, &position).await
        } else {
            executed.filter(|_| mysql_gtids)
        };
        Ok(ResumePoint { position, gtid })
    };
    // Every start but a resume from the checkpoint is saved as the checkpoint before the first
    // event is read: a run that stops before its first acknowledged boundary (a deleted stream,
    // a crash in the first seconds) must restart from here, not from a later end of binlog.
    let save_start = !matches!(start, StartFrom::Checkpoint) || checkpoint.is_none();
    let mut catch_up = None;
    let (start, by_gtid) = match (start, checkpoint) {
        (StartFrom::Position(position), _) => {
            tracing::info!(%position, "starting from --start-position");
            connect::ensure_position_available(&mut conn, &position).await?;
            connect::ensure_transaction_start(&mut conn, &position).await?;
            let gtid = gtid_at(&mut conn, &position).await;
            (ResumePoint { position, gtid }, false)
        }
        (StartFrom::Gtid(gtid), _) => {
            if !resumable(&gtid) {
                return Err(Error::Config(ConfigError::Invalid {
                    section: "command line",
                    key: "--start-gtid",
                    message: format!(
                        "{gtid} cannot start this server: MariaDB takes domain-server-sequence positions, MySQL (with gtid_mode=ON) GTID sets"
                    ),
                }));
            }
            let position = connect::current_position(&mut conn).await?;
            if gtid.is_mysql() {
                connect::ensure_gtids_available(&mut conn, &gtid, &position).await?;
            }
            tracing::info!(%gtid, "starting after --start-gtid");
            (
                ResumePoint {
                    position,
                    gtid: Some(gtid),
                },
                true,
            )
        }
        (StartFrom::End, _) => {
            let point = end_of_binlog(&mut conn).await?;
            tracing::info!(%point, "starting from the server's current end of binlog (--from-end)");
            (point, false)
        }
        // XA transactions prepared before the checkpoint and undecided there are read again
        // from where the first of them starts; see `source::xa`.
        (StartFrom::Checkpoint, Some(checkpoint)) if !checkpoint.xa_prepared.is_empty() => {
            let earliest = checkpoint
                .xa_prepared
                .iter()
                .map(|p| &p.position)
                .min_by(|a, b| a.try_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
                .expect("not empty")
                .clone();
            tracing::info!(position = %checkpoint.position, prepared_xa = checkpoint.xa_prepared.len(), from = %earliest, "resuming from the checkpoint; reading its prepared XA transactions again from where the first starts");
            connect::ensure_position_available(&mut conn, &earliest).await?;
            let gtid = gtid_at(&mut conn, &earliest).await;
            catch_up = Some(CatchUp {
                until: checkpoint.position.clone(),
                pending: checkpoint
                    .xa_prepared
                    .iter()
                    .map(|p| p.xid.clone())
                    .collect(),
                initial_gtid: gtid.clone(),
            });
            (
                ResumePoint {
                    position: earliest,
                    gtid,
                },
                false,
            )
        }
        // Resume by GTID where the checkpoint has a GTID state this server understands: it
        // works on any server of the topology, so a failover only needs a new host name.
        (StartFrom::Checkpoint, Some(checkpoint))
            if checkpoint.gtid.as_ref().is_some_and(resumable) =>
        {
            let point = checkpoint.resume_point();
            if let Some(gtid) = point.gtid.as_ref().filter(|g| g.is_mysql()) {
                connect::ensure_gtids_available(&mut conn, gtid, &point.position).await?;
            }
            tracing::info!(%point, "resuming from the checkpoint by GTID");
            (point, true)
        }
        (StartFrom::Checkpoint, Some(checkpoint)) => {
            tracing::info!(position = %checkpoint.position, "resuming from the checkpoint");
            connect::ensure_position_available(&mut conn, &checkpoint.position).await?;
            let gtid = gtid_at(&mut conn, &checkpoint.position).await;
            (
                ResumePoint {
                    position: checkpoint.position,
                    gtid,
                },
                false,
            )
        }
        (StartFrom::Checkpoint, None) => {
            let point = end_of_binlog(&mut conn).await?;
            tracing::info!(%point, checkpoint = %store.location(), "no checkpoint yet: starting from the server's current end of binlog");
            (point, false)
        }
    };
    // The first write claims the stream: it saves the start (see `save_start`), and clears
    // the previous holder's `released` mark.
    let claim = match loaded.filter(|_| !save_start) {
        Some(loaded) => loaded.restamped(false),
        None => Checkpoint::new(start.clone()),
    };
    if !checkpoint::store_fenced(store.as_ref(), &claim, &ownership.fence, call_timeout).await? {
        ownership.release().await;
        return Err(Error::Source(SourceError::LockLost {
            lock: lock_name,
            reason: "its hold lapsed before the first write".into(),
        }));
    }
    metrics.checkpoint_written(&claim.position, 0);
    if save_start {
        tracing::info!(%start, checkpoint = %store.location(), "start position saved as the checkpoint");
    }
    let heartbeat = config.mysql.heartbeat;
    let server_id = config.mysql.server_id.get();
    let stream = match &start.gtid {
        Some(gtid) if by_gtid => {
            connect::open_stream_gtid(conn, server_id, gtid, &start.position, heartbeat).await?
        }
        _ => connect::open_stream(conn, server_id, &start.position, heartbeat).await?,
    };
    // Reconnects resume by GTID whenever the state is known and this server can use it.
    let resume_by_gtid = server.is_mariadb || mysql_gtids;
    tracing::info!(server = %server.version, start = %start, stream = %config.kinesis.stream, "replicating");
    metrics.set_state(State::Replicating);

    let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let (acks_tx, acks_rx) = mpsc::channel(ACK_CHANNEL_CAPACITY);
    let source_cancel = CancellationToken::new();
    let mut source = tokio::spawn(source::run(
        SourceConfig {
            mysql: config.mysql.clone(),
            filter: config.filter.clone(),
            lookahead_bytes: config.mysql.transaction_lookahead_bytes,
            resume_by_gtid,
            positional_names: false,
            checksum_crc32: server.checksum_crc32,
            catalog: !server.row_metadata_full,
            partition_by_primary_key: config.kinesis.partition_by == PartitionBy::PrimaryKey,
            max_event_bytes: max_record_bytes,
            catch_up,
        },
        stream,
        start,
        events_tx,
        Arc::clone(&ownership.lock),
        source_cancel.clone(),
        Arc::clone(metrics),
    ));
    let mut sink = tokio::spawn(sink::run(
        SinkConfig {
            stream: config.kinesis.stream.clone(),
            max_record_bytes,
            linger: config.kinesis.linger,
            max_buffered_bytes: config.kinesis.max_buffered_bytes,
            max_events_per_record: config.kinesis.max_events_per_record,
            backoff: DEFAULT_BACKOFF,
            oversize: config.kinesis.oversize,
            call_timeout,
        },
        client,
        events_rx,
        acks_tx,
        Arc::clone(metrics),
        Arc::clone(&ownership.fence),
    ));
    let interval = config.checkpoint.interval;
    let checkpoint_metrics = Arc::clone(metrics);
    let (task_store, task_fence) = (Arc::clone(&store), Arc::clone(&ownership.fence));
    let checkpointer = tokio::spawn(async move {
        let writer = checkpoint::Writer {
            interval,
            fence: &task_fence,
            timeout: call_timeout,
        };
        checkpoint::run(
            task_store.as_ref(),
            writer,
            Some(claim),
            acks_rx,
            &checkpoint_metrics,
        )
        .await
    });

    // Run until a signal or until a stage ends on its own (which only happens on error).
    let mut source_result = None;
    let mut sink_result = None;
    let mut lock_lost = false;
    tokio::select! {
        _ = shutdown.graceful.cancelled() => {}
        result = &mut source => source_result = Some(result),
        result = &mut sink => sink_result = Some(result),
        // Another instance writes the stream now: nothing of this one may follow.
        _ = ownership.fence.lost() => lock_lost = true,
    }
    source_cancel.cancel();
    metrics.set_state(State::Draining);
    if lock_lost {
        source.abort();
        sink.abort();
        // Fenced: it writes nothing more.
        checkpointer.await.ok();
        ownership.release().await;
        return Err(Error::Source(SourceError::LockLost {
            lock: lock_name,
            reason: "another instance holds it now".into(),
        }));
    }

    let (drain_timeout, _) = stop_budget(config.shutdown.drain_timeout, config.metrics.cloudwatch);
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
    let committed = checkpointer
        .await
        .map_err(|e| Error::Internal(format!("checkpoint task: {e}")))??;
    if let Some(checkpoint) = &committed {
        tracing::info!(position = %checkpoint.resume_point(), "checkpoint written");
    }
    // A clean drain leaves nothing in flight: say so, so the next instance need not wait.
    if let (Some((Ok(Ok(_)), Ok(Ok(_)))), Some(last)) = (&drained, &committed) {
        match checkpoint::store_fenced(store.as_ref(), &last.restamped(true), &ownership.fence, call_timeout).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the instance lock is in doubt: the checkpoint is not marked released, and the next instance will wait out this one's lease"),
            Err(error) => tracing::warn!(error = %error_chain(&error), "cannot mark the checkpoint released; the next instance will wait out this one's lease"),
        }
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
    let summary = sink_result.map_err(|e| Error::Internal(format!("sink task: {e}")))?;
    let source_summary =
        match source_result.map_err(|e| Error::Internal(format!("source task: {e}")))? {
            // The sink's own error explains why the source could not send.
            Err(SourceError::SinkGone) => {
                summary?;
                return Err(Error::Internal(
                    "the producer stopped without an error".into(),
                ));
            }
            Err(error) => {
                if let Err(sink_error) = summary {
                    tracing::error!(error = %sink_error, "the producer failed too");
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

/// An error and its sources, joined with `: `, for the one place each error is logged. A cause
/// whose text the error before it already ends with is left out, and so is a part repeated
/// right after itself (drivers often print their cause and return it as the source too).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut texts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !texts.last().is_some_and(|last| last.ends_with(&text)) {
            texts.push(text);
        }
        source = cause.source();
    }
    let joined = texts.join(": ");
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 12, item 3): `check` printed the MySQL cause three times.
    #[test]
    fn an_error_chain_says_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let io = E("Connection refused (os error 111)", None);
        let driver = E(
            "Input/output error: Input/output error: Connection refused (os error 111)",
            Some(Box::new(E(
                "Input/output error: Connection refused (os error 111)",
                Some(Box::new(io)),
            ))),
        );
        let top = E(
            "cannot connect to MySQL at 127.0.0.1:3306",
            Some(Box::new(driver)),
        );
        assert_eq!(
            error_chain(&top),
            "cannot connect to MySQL at 127.0.0.1:3306: Input/output error: Connection refused (os error 111)"
        );
    }

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

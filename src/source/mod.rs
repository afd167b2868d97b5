//! The binlog reader: one replication connection, events in binlog order out.
//!
//! ```text
//! server ──binlog──▶ [read] ──TABLE_MAP──▶ schema cache
//!                       │ ROWS ──decode──▶ ChangeEvent ──▶ transaction lookahead ──▶ sink
//!                       └ XID / COMMIT / DDL / ROTATE ──▶ Boundary ──▶ sink
//! ```
//!
//! # Transaction boundaries
//!
//! A transaction ends at its XID event, a `COMMIT` query (non-transactional engines), or, for
//! a statement outside `BEGIN` (DDL), right after that statement. Only there does the source
//! emit a [`Message::Boundary`], the only positions the checkpoint can take. A rotation to a
//! new file between transactions is a boundary too, so an idle checkpoint never points at a
//! file the server may purge.
//!
//! # XID and commit flags
//!
//! Each transaction's events are held in a lookahead buffer until its end is read, so that all
//! of them carry the transaction's `xid` and the last one `commit: true`. The buffer is capped
//! by `mysql.transaction_lookahead_bytes`: past the cap, earlier events are sent with
//! `xid: null` and only the latest is held back, so memory never depends on transaction size.
//!
//! # Stopping
//!
//! Cancellation stops the reader only between transactions: mid-transaction it reads on to
//! the transaction's end (the server writes whole transactions, so the rest is already there).
//! A clean stop therefore never leaves a partly sent transaction to be repeated on restart.
//!
//! # Reconnecting
//!
//! A lost connection, a server restart, a `KILL` of the dump thread or a connection silent for
//! three heartbeats is transient: the reader reconnects with capped exponential backoff and
//! jitter and reads again from the last boundary, logging once per incident. If the
//! interrupted transaction had already spilled events past the lookahead cap, exactly that
//! many of its re-read events are skipped, so nothing is sent twice and nothing is lost.
//! Permanent conditions (a purged position, refused login, an undecodable event) still stop it.
//!
//! # Resumption
//!
//! The stream is requested from a `file:offset` boundary, or from a GTID state (MariaDB:
//! `@slave_connect_state`; MySQL: COM_BINLOG_DUMP_GTID with the executed set). The checkpoint's
//! file must still be on the server (`connect::ensure_position_available`), or no GTID the
//! checkpoint lacks may have been purged (`connect::ensure_gtids_available`); otherwise the
//! run stops with [`SourceError::PositionNotOnServer`], never a silent skip.
//!
//! # Bad input
//!
//! Decoding returns errors, it never panics: a corrupt, truncated or unknown event is a
//! [`SourceError`] naming its position, and the run stops there (nothing after it is sent, the
//! checkpoint stays before it). There is no `catch_unwind` as a safety net: a panic while
//! decoding would be a bug to fix, not a case to recover from.
//!
//! # GTID state
//!
//! Each transaction's GTID joins the state at its boundary, so every checkpoint carries the
//! state that includes exactly the transactions before it. A reader that starts at a MySQL
//! file position without a known state learns it from the next PREVIOUS_GTIDS event (the
//! second event of every file); until then its boundaries carry none.

pub(crate) mod catalog;
pub mod connect;
mod ddl;
pub mod decode;
mod dump;
mod error;
mod file;
pub mod integrity;
pub(crate) mod lock;
mod reader;
pub(crate) mod rules;
pub mod schema;
pub mod snapshot;
pub mod start;
mod statement;
pub(crate) mod xa;

pub use self::error::SourceError;

use std::{sync::Arc, time::Duration};

use mysql_async::BinlogStream;
use mysql_common::binlog::consts::EventType;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::{lock::InstanceLock, reader::Reader, xa::CatchUp};
use crate::{
    backoff::Backoff,
    config::{Config, MysqlConfig, PartitionBy, TableFilter},
    metrics::{Metrics, State},
    position::{BinlogPosition, ResumePoint},
    stream::Message,
};

/// MariaDB event types `mysql_common` does not know (binlog/log_event.h).
pub(crate) mod mariadb {
    pub(crate) const ANNOTATE_ROWS: u8 = 160;
    pub(crate) const BINLOG_CHECKPOINT: u8 = 161;
    pub(crate) const GTID: u8 = 162;
    pub(crate) const GTID_LIST: u8 = 163;
    /// 164: START_ENCRYPTION (`encrypt_binlog=ON`); 165..=171: compressed QUERY and ROWS
    /// events (`log_bin_compress=ON`).
    pub(crate) const LAST_COMPRESSED: u8 = 171;
    /// GTID flags2: the transaction is a single statement without BEGIN/COMMIT (DDL).
    pub(crate) const FL_STANDALONE: u8 = 1;
    /// GTID flags2: the transaction is an XA transaction written at its `XA PREPARE`.
    pub(crate) const FL_PREPARED_XA: u8 = 64;
}

/// The reader's settings.
#[derive(Debug, Clone)]
pub(crate) struct SourceConfig {
    /// How to reach the server again after a lost connection.
    pub(crate) mysql: MysqlConfig,
    /// Which tables are captured.
    pub(crate) filter: TableFilter,
    /// Cap on one transaction's held-back bytes.
    pub(crate) lookahead_bytes: usize,
    /// Reconnect by GTID state rather than file position (MariaDB with GTIDs).
    pub(crate) resume_by_gtid: bool,
    /// Name columns `@1`, `@2`, ... when the binlog has no names, instead of stopping
    /// (offline decoding only: a live stream requires `binlog_row_metadata=FULL`).
    pub(crate) positional_names: bool,
    /// Whether the server writes CRC32 checksums (for the rotate event that opens a connection).
    pub(crate) checksum_crc32: bool,
    /// Take what TABLE_MAP events lack (names, labels, keys) from `information_schema`: the
    /// server does not log full row metadata.
    pub(crate) catalog: bool,
    /// Partition by primary key rather than by table.
    pub(crate) partition_by_primary_key: bool,
    /// Resuming from a checkpoint that lists prepared XA transactions: read them again first.
    pub(crate) catch_up: Option<CatchUp>,
    /// The largest event worth encoding: a row whose images alone are larger can never be
    /// sent (the sink refuses it by size, see `kinesis.oversize`), so its large values are not
    /// encoded at all. `usize::MAX` where nothing is sent (`decode`).
    pub(crate) max_event_bytes: usize,
    /// Snapshots: the progress to start from and how to read; `None` when off.
    pub(crate) snapshot: Option<(crate::stream::SnapshotState, snapshot::DriverConfig)>,
    /// `snapshot.signal_table`: inserts into it ask for snapshots.
    pub(crate) signal_table: Option<crate::event::TableName>,
    /// The tables signals may name (`[filter]`), which `filter` is not when decoding files.
    pub(crate) captured: TableFilter,
    /// `[columns]`: what each column shows of itself.
    pub(crate) columns: crate::config::ColumnRules,
    /// `[changes]`: which row changes are sent.
    pub(crate) changes: crate::config::ChangeRules,
    /// `output.ddl`: DDL statements on tables in scope become `ddl` events.
    pub(crate) ddl_events: bool,
}

impl SourceConfig {
    /// The live reader's settings: from the configuration and what the server said.
    pub(crate) fn live(
        config: &Config,
        resume_by_gtid: bool,
        server: &connect::ServerInfo,
        max_event_bytes: usize,
        catch_up: Option<CatchUp>,
    ) -> Self {
        Self {
            mysql: config.mysql.clone(),
            filter: config.filter.clone(),
            lookahead_bytes: config.mysql.transaction_lookahead_bytes,
            resume_by_gtid,
            positional_names: false,
            checksum_crc32: server.checksum_crc32,
            catalog: !server.row_metadata_full,
            partition_by_primary_key: config.kinesis.partition_by == PartitionBy::PrimaryKey,
            max_event_bytes,
            catch_up,
            snapshot: None,
            signal_table: config.snapshot.signal_table.clone(),
            captured: config.filter.clone(),
            columns: config.columns.clone(),
            changes: config.changes.clone(),
            ddl_events: config.ddl_events,
        }
    }
}

/// What the reader did.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceSummary {
    /// Row events sent.
    pub(crate) events: u64,
    /// Connections reopened after a loss.
    pub(crate) reconnects: u64,
}

/// A duplicate `server_id` this many times within [`SERVER_ID_CONFLICT_WINDOW`] is a
/// configuration error, not a moment of overlap.
const SERVER_ID_CONFLICTS: usize = 3;
const SERVER_ID_CONFLICT_WINDOW: Duration = Duration::from_secs(60);

/// Backoff between reconnect attempts: 250 ms doubling up to 30 s, with jitter.
const RECONNECT_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(30),
};

/// Reads `stream`, which starts at `start`, until `cancel` fires between transactions or a
/// permanent error stops it. A lost, killed or silent connection is reopened from the last
/// transaction boundary read, with capped exponential backoff; see "# Reconnecting".
pub(crate) async fn run(
    config: SourceConfig,
    stream: BinlogStream,
    start: ResumePoint,
    output: mpsc::Sender<Message>,
    lock: Arc<tokio::sync::Mutex<InstanceLock>>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<SourceSummary, SourceError> {
    let mut config = config;
    let mut drivers = Vec::new();
    let snapshots = config.snapshot.take().map(|(state, driver_config)| {
        // One driver (and connection, opened at its first ask) per table read at once.
        let mut channels = Vec::new();
        for index in 0..driver_config.parallel_tables.max(1) {
            let (asks_tx, asks_rx) = mpsc::channel(1);
            let (arrivals_tx, arrivals_rx) = mpsc::channel(1);
            drivers.push(AbortOnDrop(tokio::spawn(snapshot::serve(
                driver_config.clone(),
                index,
                asks_rx,
                arrivals_tx,
            ))));
            channels.push((asks_tx, arrivals_rx));
        }
        metrics.set_snapshot_tables_pending(state.pending.len());
        reader::Snapshots::new(state, channels, config.partition_by_primary_key)
    });
    let mut reader = Reader::new(config, start, output, Arc::clone(&metrics), snapshots);
    // Locked per use: the lock keeper (`lock::keep`) checks it too.
    let lock = &*lock;
    let mut stream = Some(stream);
    let mut attempts: u32 = 0;
    let mut server_id_conflicts = std::collections::VecDeque::new();
    loop {
        let result = match stream.take() {
            Some(stream) => Ok(stream),
            // Never read again without the lock: another instance may have taken over.
            None => match lock.lock().await.ensure().await {
                Ok(()) => reader.reopen().await,
                Err(error) => Err(error),
            },
        };
        let result = match result {
            Ok(stream) => reader.read(stream, lock, &cancel, &mut attempts).await,
            Err(error) => Err(error),
        };
        let error = match result {
            Ok(()) => break,
            Err(error) if error.is_transient() => error,
            Err(error) => return Err(error),
        };
        if matches!(error, SourceError::ServerIdInUse { .. }) {
            let now = tokio::time::Instant::now();
            server_id_conflicts.push_back(now);
            while server_id_conflicts
                .front()
                .is_some_and(|at| now.duration_since(*at) > SERVER_ID_CONFLICT_WINDOW)
            {
                server_id_conflicts.pop_front();
            }
            if server_id_conflicts.len() >= SERVER_ID_CONFLICTS {
                return Err(SourceError::ServerIdConflict {
                    server_id: reader.config.mysql.server_id.get(),
                    times: server_id_conflicts.len(),
                    window_s: SERVER_ID_CONFLICT_WINDOW.as_secs(),
                });
            }
        }
        attempts += 1;
        reader.counts.reconnects += 1;
        if attempts == 1 {
            metrics.reconnects.add(1);
            metrics.set_state(State::Reconnecting);
        }
        // Once per incident, then sparsely: an outage must not flood the log.
        if attempts == 1 || attempts.is_power_of_two() {
            tracing::warn!(error = %crate::report::error_chain(&error), attempts, position = %reader.boundary, "replication connection lost; reconnecting");
        }
        reader.forget_open_transaction();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RECONNECT_BACKOFF.delay(attempts)) => {}
        }
    }
    tracing::info!(position = %reader.boundary, "binlog reader stopped at a transaction boundary");
    Ok(reader.summary())
}

/// A task that ends with its owner (the snapshot drivers end with the reader).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decodes binlog files from disk as the live stream would be read (`binlog-kinesis decode`),
/// sending the event lines to `output`; with `verbose`, also a `# file:offset TYPE` line for
/// every other event, on the same channel so that the order is the file's. Ends with the
/// first error, naming the file and offset; returns the number of row events.
pub async fn decode_files(
    paths: &[std::path::PathBuf],
    output: mpsc::Sender<Message>,
    verbose: bool,
    rules_from: Option<&Config>,
) -> Result<u64, SourceError> {
    let mut total = 0;
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let unreadable = |message: String| SourceError::File {
            path: path.clone(),
            message,
        };
        let start =
            BinlogPosition::start_of(name.clone()).map_err(|e| unreadable(e.to_string()))?;
        let config = SourceConfig {
            mysql: crate::config::FileConfig::default()
                .validate()
                .expect("defaults are valid")
                .mysql,
            filter: TableFilter::default(),
            lookahead_bytes: 8 << 20,
            resume_by_gtid: false,
            positional_names: true,
            checksum_crc32: false,
            catalog: false,
            partition_by_primary_key: false,
            max_event_bytes: usize::MAX,
            catch_up: None,
            snapshot: None,
            signal_table: None,
            captured: TableFilter::default(),
            columns: rules_from.map(|c| c.columns.clone()).unwrap_or_default(),
            changes: Default::default(),
            ddl_events: rules_from.is_some_and(|c| c.ddl_events),
        };
        let mut reader = Reader::new(
            config,
            ResumePoint::at(start.clone()),
            output.clone(),
            Arc::new(Metrics::default()),
            None,
        );
        let file =
            std::fs::File::open(path).map_err(|e| unreadable(format!("cannot open: {e}")))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut binlog = file::EventFile::new(file, size).map_err(unreadable)?;
        while let Some((offset, event)) = binlog.next_event().map_err(unreadable)? {
            let header = event.header();
            if verbose && !reader::is_rows_event(header.event_type_raw()) {
                let kind = match header.event_type_raw() {
                    mariadb::ANNOTATE_ROWS => "ANNOTATE_ROWS_EVENT".to_owned(),
                    mariadb::BINLOG_CHECKPOINT => "BINLOG_CHECKPOINT_EVENT".to_owned(),
                    mariadb::GTID => "GTID_EVENT".to_owned(),
                    mariadb::GTID_LIST => "GTID_LIST_EVENT".to_owned(),
                    raw => EventType::try_from(raw)
                        .map(|t| format!("{t:?}"))
                        .unwrap_or_else(|_| format!("EVENT_TYPE_{raw}")),
                };
                // On the same channel as the events, so that it keeps its place among them.
                reader
                    .send(Message::Comment(format!("# {name}:{offset} {kind}")))
                    .await?;
            }
            let at_offset = |error: SourceError| match error {
                SourceError::Integrity { source, .. } => {
                    unreadable(format!("offset {offset}: {source}"))
                }
                other => other,
            };
            reader.handle(&event).await.map_err(at_offset)?;
        }
        reader.drain_rows().await?;
        total += reader.counts.events;
    }
    Ok(total)
}

#[cfg(test)]
mod compressed_tests;
#[cfg(test)]
mod packet_tests;
#[cfg(test)]
mod partial_tests;
#[cfg(test)]
mod tests;

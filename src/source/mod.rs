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
//! emit a [`SinkInput::Boundary`], the only positions the checkpoint can take. A rotation to a
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
//! file must still be on the server ([`connect::ensure_position_available`]), or no GTID the
//! checkpoint lacks may have been purged ([`connect::ensure_gtids_available`]); otherwise the
//! run stops with [`SourceError::PositionNotOnServer`], never a silent skip.
//!
//! # GTID state
//!
//! Each transaction's GTID joins the state at its boundary, so every checkpoint carries the
//! state that includes exactly the transactions before it. A reader that starts at a MySQL
//! file position without a known state learns it from the next PREVIOUS_GTIDS event (the
//! second event of every file); until then its boundaries carry none.

pub mod catalog;
pub mod connect;
pub mod decode;
mod file;
pub mod integrity;
pub mod lock;
pub mod schema;
mod statement;
pub mod xa;

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::StreamExt;
use mysql_async::BinlogStream;
use mysql_common::binlog::{
    consts::{EventFlags, EventType},
    events::{Event, EventData},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::{
    catalog::Catalog,
    lock::InstanceLock,
    schema::{SchemaError, TableSchema},
    statement::Statement,
    xa::{CatchUp, Prepared, PreparedSet},
};
use crate::{
    checkpoint::Boundary,
    config::{MysqlConfig, TableFilter},
    event::{gtid_json, line_prefix, EventLine, Op, TableName},
    metrics::{Metrics, State},
    position::{BinlogPosition, GtidState, MariaGtid, MysqlGtid, ResumePoint},
    sink::retry::Backoff,
    sink::{batch::partition_key, OutboundEvent, SinkInput},
};

/// MariaDB event types `mysql_common` does not know (binlog/log_event.h).
mod mariadb {
    pub const ANNOTATE_ROWS: u8 = 160;
    pub const BINLOG_CHECKPOINT: u8 = 161;
    pub const GTID: u8 = 162;
    pub const GTID_LIST: u8 = 163;
    pub const START_ENCRYPTION: u8 = 164;
    /// 165..=171: compressed QUERY and ROWS events (`log_bin_compress=ON`).
    pub const LAST_COMPRESSED: u8 = 171;
    /// GTID flags2: the transaction is a single statement without BEGIN/COMMIT (DDL).
    pub const FL_STANDALONE: u8 = 1;
    /// GTID flags2: the transaction is an XA transaction written at its `XA PREPARE`.
    pub const FL_PREPARED_XA: u8 = 64;
}

/// Why the reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached.
    #[error("cannot connect to MySQL at {address}")]
    Connect {
        /// host:port
        address: String,
        /// Why.
        #[source]
        source: mysql_async::Error,
    },
    /// The server refused the login.
    #[error("MySQL refused the login of {user:?} from this host ({message}); check [mysql] user and password")]
    AccessDenied {
        /// The user.
        user: String,
        /// The configured host.
        host: String,
        /// The server's message.
        message: String,
    },
    /// The account lacks a privilege.
    #[error("the MySQL account lacks {privilege} ({message}); run: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO <user>")]
    MissingPrivilege {
        /// The privilege.
        privilege: &'static str,
        /// The server's message.
        message: String,
    },
    /// A server setting the daemon depends on has the wrong value.
    #[error("server setting {setting} is {actual}, it must be {expected}: set {setting}={expected} in the server configuration (on RDS/Aurora: the DB parameter group) and restart it")]
    ServerMisconfigured {
        /// The variable.
        setting: &'static str,
        /// Required value.
        expected: &'static str,
        /// Found value.
        actual: String,
    },
    /// The resume position is not (or no longer) on the server.
    #[error("binlog position {position} is not available on the server: {reason} (server has {available}); the changes since then are lost to binlog replication. Choose explicitly: --start-position FILE:POS (or --start-gtid), or --from-end to continue from now (and re-snapshot the tables)")]
    PositionNotOnServer {
        /// The requested position.
        position: BinlogPosition,
        /// What the server said.
        reason: String,
        /// The files the server has.
        available: String,
    },
    /// Another replica of the server uses this daemon's `server_id`: the server ends one
    /// binlog dump whenever the other connects. Transient at first (a restarted task can
    /// overlap its old connection for a moment), permanent when it keeps happening.
    #[error("another replica of the server uses mysql.server_id (the server ended this binlog dump at {position}: {message})")]
    ServerIdInUse {
        /// The last transaction boundary read.
        position: BinlogPosition,
        /// What the server said.
        message: String,
    },
    /// [`SourceError::ServerIdInUse`], again and again.
    #[error("another replica of the server keeps using mysql.server_id {server_id}: the two replicas take turns ending each other's binlog dump ({times} times within {window_s} s). Give this daemon a server_id no other replica of the server uses (SHOW SLAVE HOSTS lists those that announce theirs), for example with BINLOG_KINESIS__MYSQL__SERVER_ID")]
    ServerIdConflict {
        /// The configured id.
        server_id: u32,
        /// How often it happened.
        times: usize,
        /// Within how many seconds.
        window_s: u64,
    },
    /// A start position that is not where a transaction starts.
    #[error("--start-position {position} is not where a transaction starts: it points at {found}; transactions start at {nearby}")]
    NotATransactionStart {
        /// The position given.
        position: BinlogPosition,
        /// What is there.
        found: String,
        /// Valid positions around it.
        nearby: String,
    },
    /// An event the daemon cannot decode yet: stopping is the only way not to lose it.
    #[error("cannot process binlog event {event} at {position}: {reason}")]
    UnsupportedEvent {
        /// The event type.
        event: String,
        /// Where it starts.
        position: BinlogPosition,
        /// Why, and what to do.
        reason: String,
    },
    /// A rows event could not be decoded.
    #[error("cannot decode rows of {table} at {position}: {message}")]
    Decode {
        /// The table.
        table: TableName,
        /// Where the event starts.
        position: BinlogPosition,
        /// What is wrong.
        message: String,
    },
    /// A TABLE_MAP the daemon cannot use.
    #[error("at {position}: {source}")]
    Schema {
        /// Where.
        position: BinlogPosition,
        /// What.
        #[source]
        source: SchemaError,
    },
    /// A query outside the stream failed.
    #[error("MySQL query failed while {what}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: mysql_async::Error,
    },
    /// A binlog file on disk cannot be decoded.
    #[error("cannot decode {path:?}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, with the offset.
        message: String,
    },
    /// The server answered something the protocol does not allow.
    #[error("unexpected answer from the server: {message}")]
    Protocol {
        /// What.
        message: String,
    },
    /// The replication connection ended or went silent.
    #[error("replication connection lost at {position}")]
    ConnectionLost {
        /// The last transaction boundary read.
        position: BinlogPosition,
        /// Why.
        #[source]
        source: mysql_async::Error,
    },
    /// The connection was silent for longer than three heartbeats.
    #[error(
        "replication connection silent for {silent_ms} ms at {position} (no events, no heartbeats)"
    )]
    Silent {
        /// The last transaction boundary read.
        position: BinlogPosition,
        /// For how long.
        silent_ms: u64,
    },
    /// The instance lock's connection failed or the lock moved: another instance may be
    /// replicating, so this one stops.
    #[error("lost the instance lock {lock:?} ({reason}); stopping so that two instances never write the same stream")]
    LockLost {
        /// The lock name.
        lock: String,
        /// Why.
        reason: String,
    },
    /// The instance lock's connection failed; it must be taken again before reading on.
    #[error("the instance lock's connection failed: {reason}")]
    LockConnectionLost {
        /// Why.
        reason: String,
    },
    /// The server sent an event larger than `mysql.max_event_bytes` allows.
    #[error("the binlog event after {position} is larger than mysql.max_event_bytes allows; raise it (up to 1 GiB: the reader needs about three times the largest event in memory) or start after the event")]
    EventTooLarge {
        /// The last transaction boundary read.
        position: BinlogPosition,
    },
    /// An event failed its checksum, or holds counts larger than the event.
    #[error("corrupt binlog event at {position}")]
    Integrity {
        /// Where the event starts.
        position: BinlogPosition,
        /// What is wrong.
        #[source]
        source: integrity::IntegrityError,
    },
    /// The producer stopped taking events (it failed; its error is reported separately).
    #[error("the Kinesis producer stopped")]
    SinkGone,
}

impl SourceError {
    /// Whether reconnecting could help (a network fault) rather than someone having to
    /// change something.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Connect { .. }
                | SourceError::ServerIdInUse { .. }
                | SourceError::LockConnectionLost { .. }
                | SourceError::ConnectionLost { .. }
                | SourceError::Silent { .. }
                | SourceError::Query { .. }
        )
    }
}

/// The reader's settings.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// How to reach the server again after a lost connection.
    pub mysql: MysqlConfig,
    /// Which tables are captured.
    pub filter: TableFilter,
    /// Cap on one transaction's held-back bytes.
    pub lookahead_bytes: usize,
    /// Reconnect by GTID state rather than file position (MariaDB with GTIDs).
    pub resume_by_gtid: bool,
    /// Name columns `@1`, `@2`, ... when the binlog has no names, instead of stopping
    /// (offline decoding only: a live stream requires `binlog_row_metadata=FULL`).
    pub positional_names: bool,
    /// Whether the server writes CRC32 checksums (for the rotate event that opens a connection).
    pub checksum_crc32: bool,
    /// Take what TABLE_MAP events lack (names, labels, keys) from `information_schema`: the
    /// server does not log full row metadata.
    pub catalog: bool,
    /// Partition by primary key rather than by table.
    pub partition_by_primary_key: bool,
    /// Resuming from a checkpoint that lists prepared XA transactions: read them again first.
    pub catch_up: Option<CatchUp>,
    /// The largest event worth encoding: a row whose images alone are larger can never be
    /// sent (the sink refuses it by size, see `kinesis.oversize`), so its large values are not
    /// encoded at all. `usize::MAX` where nothing is sent (`decode`).
    pub max_event_bytes: usize,
}

/// What the reader did.
#[derive(Debug, Clone, Default)]
pub struct SourceSummary {
    /// Row events sent.
    pub events: u64,
    /// Transactions completed.
    pub transactions: u64,
    /// Connections reopened after a loss.
    pub reconnects: u64,
    /// The last boundary read.
    pub position: Option<BinlogPosition>,
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
pub async fn run(
    config: SourceConfig,
    stream: BinlogStream,
    start: ResumePoint,
    output: mpsc::Sender<SinkInput>,
    lock: Arc<tokio::sync::Mutex<InstanceLock>>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<SourceSummary, SourceError> {
    let mut reader = Reader::new(config, start, output, Arc::clone(&metrics));
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
        reader.reconnects += 1;
        if attempts == 1 {
            metrics.reconnects.add(1);
            metrics.set_state(State::Reconnecting);
        }
        // Once per incident, then sparsely: an outage must not flood the log.
        if attempts == 1 || attempts.is_power_of_two() {
            tracing::warn!(error = %crate::app::error_chain(&error), attempts, position = %reader.boundary, "replication connection lost; reconnecting");
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

/// Decodes binlog files from disk as the live stream would be read (`binlog-kinesis decode`),
/// sending the event lines to `output`; with `verbose`, also a `# file:offset TYPE` line for
/// every other event, on the same channel so that the order is the file's. Ends with the
/// first error, naming the file and offset; returns the number of row events.
pub async fn decode_files(
    paths: &[std::path::PathBuf],
    output: mpsc::Sender<SinkInput>,
    verbose: bool,
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
        };
        let mut reader = Reader::new(
            config,
            ResumePoint::at(start.clone()),
            output.clone(),
            Arc::new(Metrics::default()),
        );
        let file =
            std::fs::File::open(path).map_err(|e| unreadable(format!("cannot open: {e}")))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut binlog = file::EventFile::new(file, size).map_err(unreadable)?;
        while let Some((offset, event)) = binlog.next_event().map_err(unreadable)? {
            let header = event.header();
            if verbose && !is_rows_event(header.event_type_raw()) {
                let kind = match header.event_type_raw() {
                    mariadb::ANNOTATE_ROWS => "ANNOTATE_ROWS_EVENT".to_owned(),
                    mariadb::BINLOG_CHECKPOINT => "BINLOG_CHECKPOINT_EVENT".to_owned(),
                    mariadb::GTID => "GTID_EVENT".to_owned(),
                    mariadb::GTID_LIST => "GTID_LIST_EVENT".to_owned(),
                    raw => EventType::try_from(raw)
                        .map(|t| format!("{t:?}"))
                        .unwrap_or_else(|_| format!("EVENT_TYPE_{raw}")),
                };
                // A comment travels as a line of its own, so it keeps its place among events.
                let comment = OutboundEvent {
                    table: TableName::new("#", "#"),
                    key: "#".into(),
                    position: start.with_offset(offset),
                    line: EventLine::raw(format!("# {name}:{offset} {kind}\n").into_bytes()),
                };
                reader.send(SinkInput::Event(comment)).await?;
                reader.events -= 1;
            }
            let at_offset = |error: SourceError| match error {
                SourceError::Integrity { source, .. } => {
                    unreadable(format!("offset {offset}: {source}"))
                }
                other => other,
            };
            if header.event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
                reader
                    .handle_payload(&event, binlog.stream_mut())
                    .await
                    .map_err(at_offset)?;
            } else {
                reader.handle(&event).await.map_err(at_offset)?;
            }
        }
        total += reader.events;
    }
    Ok(total)
}

/// The GTID a transaction adds to the GTID state when it ends.
enum Applied {
    Maria(MariaGtid),
    Mysql(MysqlGtid),
}

struct Transaction {
    /// The transaction's GTID as its JSON value (a string or `null`), as every line has it.
    gtid_json: Vec<u8>,
    /// The MariaDB GTID, applied to the GTID state when the transaction ends.
    applied: Option<Applied>,
    /// Opened by BEGIN (ends at XID/COMMIT) rather than standing alone (ends after one
    /// statement).
    explicit: bool,
    held: Vec<OutboundEvent>,
    held_bytes: usize,
    /// Where its first event starts.
    begin_at: BinlogPosition,
    /// An XA transaction: its rows wait for its `XA COMMIT` (see [`xa`]).
    xa: bool,
    /// Its XID, from its `XA END`.
    xid: Option<String>,
}

struct Reader {
    config: SourceConfig,
    output: mpsc::Sender<SinkInput>,
    /// The current binlog file.
    file: String,
    /// The last boundary read.
    boundary: BinlogPosition,
    /// The GTID state at `boundary`; `None` when GTIDs are not tracked.
    gtid_state: Option<GtidState>,
    /// Table id to schema; `None` for tables the filter excludes.
    tables: HashMap<u64, Option<Arc<TableSchema>>>,
    transaction: Option<Transaction>,
    /// A MySQL GTID read before its transaction's BEGIN.
    pending_gtid: Option<MysqlGtid>,
    /// The current MariaDB GTID says the transaction is one statement.
    standalone: bool,
    /// Events of the open transaction already sent (spilled past the lookahead cap).
    sent_in_transaction: usize,
    /// After a reconnect: events of the re-read transaction that were sent before it.
    skip: usize,
    /// A FORMAT_DESCRIPTION event was read on this connection.
    format_known: bool,
    /// While reading inside a TRANSACTION_PAYLOAD event: its start and end.
    payload: Option<(BinlogPosition, BinlogPosition)>,
    /// Rows already numbered inside the current payload.
    payload_rows: u32,
    events: u64,
    transactions: u64,
    reconnects: u64,
    /// The binlog timestamp of the last event read that had one (Unix seconds).
    last_ts: u32,
    metrics: Arc<Metrics>,
    /// Table definitions from information_schema, when the binlog lacks them.
    catalog: Option<Catalog>,
    /// The rows of the event being read, reused from event to event.
    rows: decode::EncodedRows,
    /// XA transactions prepared and not yet decided.
    prepared: PreparedSet,
    /// While reading the checkpoint's prepared XA transactions again.
    catch_up: Option<CatchUp>,
}

impl Reader {
    fn new(
        config: SourceConfig,
        start: ResumePoint,
        output: mpsc::Sender<SinkInput>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let catalog = config.catalog.then(|| Catalog::new(config.mysql.clone()));
        let catch_up = config.catch_up.clone();
        Self {
            config,
            output,
            file: start.position.file().to_owned(),
            boundary: start.position,
            gtid_state: start.gtid,
            tables: HashMap::new(),
            transaction: None,
            pending_gtid: None,
            standalone: false,
            sent_in_transaction: 0,
            skip: 0,
            format_known: false,
            payload: None,
            payload_rows: 0,
            events: 0,
            transactions: 0,
            reconnects: 0,
            last_ts: 0,
            metrics,
            catalog,
            rows: decode::EncodedRows::default(),
            prepared: PreparedSet::default(),
            catch_up,
        }
    }

    /// Reads `stream` until cancelled between transactions (`Ok`) or an error.
    async fn read(
        &mut self,
        mut stream: BinlogStream,
        lock: &tokio::sync::Mutex<InstanceLock>,
        cancel: &CancellationToken,
        attempts: &mut u32,
    ) -> Result<(), SourceError> {
        let silence_limit = self.config.mysql.heartbeat * 3;
        let lock_interval = self.config.mysql.heartbeat;
        let mut next_lock_check = tokio::time::Instant::now() + lock_interval;
        // Events and heartbeats both count as signs of life.
        let mut last_heard = tokio::time::Instant::now();
        loop {
            // The lock is checked between events, never by cancelling a query half-way. When
            // the lock keeper is checking it right now, its answer will do: waiting for it
            // (it may be reconnecting to a frozen server) would hide a silent stream.
            if tokio::time::Instant::now() >= next_lock_check {
                if let Ok(mut lock) = lock.try_lock() {
                    lock.check().await?;
                }
                next_lock_check = tokio::time::Instant::now() + lock_interval;
            }
            let next = tokio::select! {
                // Stop requests win, but only between transactions; see "# Stopping".
                biased;
                _ = cancel.cancelled(), if self.transaction.is_none() => return Ok(()),
                _ = tokio::time::sleep_until(next_lock_check) => continue,
                next = tokio::time::timeout_at(last_heard + silence_limit, stream.next()) => next,
            };
            let event = match next {
                Err(_elapsed) => {
                    return Err(SourceError::Silent {
                        position: self.boundary.clone(),
                        silent_ms: silence_limit.as_millis() as u64,
                    })
                }
                // A graceful server shutdown ends the stream like this: a disconnect.
                Ok(None) => {
                    return Err(SourceError::ConnectionLost {
                        position: self.boundary.clone(),
                        source: mysql_async::Error::Io(mysql_async::IoError::Io(
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the server ended the binlog stream",
                            ),
                        )),
                    })
                }
                Ok(Some(Err(error))) => return Err(connect::stream_error(error, &self.boundary)),
                Ok(Some(Ok(event))) => event,
            };
            last_heard = tokio::time::Instant::now();
            if *attempts > 0 {
                tracing::info!(attempts = *attempts, position = %self.boundary, "replication connection restored");
                *attempts = 0;
                self.metrics.set_state(State::Replicating);
            }
            self.handle(&event).await?;
        }
    }

    /// A new connection and stream from the last boundary.
    async fn reopen(&self) -> Result<BinlogStream, SourceError> {
        let mysql = &self.config.mysql;
        let conn = connect::connect(mysql).await?;
        match &self.gtid_state {
            // An empty state would ask for every binlog the server has.
            Some(state) if self.config.resume_by_gtid && !state.is_empty() => {
                connect::open_stream_gtid(
                    conn,
                    mysql.server_id.get(),
                    state,
                    &self.boundary,
                    mysql.heartbeat,
                )
                .await
            }
            _ => {
                connect::open_stream(conn, mysql.server_id.get(), &self.boundary, mysql.heartbeat)
                    .await
            }
        }
    }

    /// Before reading again from the last boundary: the open transaction will be read again
    /// from its start, so drop what is held of it and remember how many of its events were
    /// already sent, to skip exactly those.
    fn forget_open_transaction(&mut self) {
        if self.transaction.take().is_some() {
            self.skip = self.sent_in_transaction;
        }
        // A catch-up reads again from its start, where the GTID state was its first.
        if let Some(catch_up) = &self.catch_up {
            self.prepared.clear();
            self.gtid_state = catch_up.initial_gtid.clone();
        }
        self.sent_in_transaction = 0;
        self.pending_gtid = None;
        self.standalone = false;
        self.tables.clear();
        self.file = self.boundary.file().to_owned();
        self.format_known = false;
    }

    fn summary(&self) -> SourceSummary {
        SourceSummary {
            events: self.events,
            transactions: self.transactions,
            reconnects: self.reconnects,
            position: Some(self.boundary.clone()),
        }
    }

    /// Where the event starts, and where it ends (the position after it).
    fn span(&self, event: &Event) -> (BinlogPosition, BinlogPosition) {
        // Events inside a compressed transaction have no place of their own in the file.
        if let Some((start, end)) = &self.payload {
            return (start.clone(), end.clone());
        }
        let header = event.header();
        let end = u64::from(header.log_pos());
        let start = end.saturating_sub(u64::from(header.event_size()));
        let at = |offset| {
            BinlogPosition::new(self.file.clone(), offset)
                .unwrap_or_else(|_| self.boundary.with_offset(offset))
        };
        (at(start), at(end))
    }

    async fn handle(&mut self, event: &Event) -> Result<(), SourceError> {
        let header = event.header();
        let raw_type = header.event_type_raw();
        let (start, end) = self.span(event);
        if header.timestamp() != 0 {
            self.last_ts = header.timestamp();
            self.metrics.event_read(self.last_ts);
        }
        tracing::trace!(event_type = raw_type, position = %start, "binlog event");
        // Before anything is decoded: events inside a compressed transaction carry no checksum
        // of their own (the payload event's covers them).
        let integrity = |source| SourceError::Integrity {
            position: start.clone(),
            source,
        };
        if self.payload.is_none() {
            integrity::verify_checksum(event).map_err(integrity)?;
        }
        integrity::check_counts(event).map_err(integrity)?;
        let unsupported = |event: String, reason: &str| SourceError::UnsupportedEvent {
            event,
            position: start.clone(),
            reason: reason.to_owned(),
        };
        match raw_type {
            mariadb::GTID => {
                let data = event.data();
                if data.len() < 13 {
                    return Err(unsupported("MariaDB GTID".into(), "the event is truncated"));
                }
                let sequence = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
                self.standalone = data[12] & mariadb::FL_STANDALONE != 0;
                let gtid = MariaGtid { domain, server: header.server_id(), sequence };
                self.begin(Some(Applied::Maria(gtid)), !self.standalone, &start);
                if let Some(transaction) = &mut self.transaction {
                    transaction.xa = data[12] & mariadb::FL_PREPARED_XA != 0;
                }
                return Ok(());
            }
            mariadb::ANNOTATE_ROWS | mariadb::BINLOG_CHECKPOINT | mariadb::GTID_LIST => return Ok(()),
            mariadb::START_ENCRYPTION..=mariadb::LAST_COMPRESSED => {
                return Err(unsupported(
                    format!("MariaDB event type {raw_type}"),
                    "encrypted or compressed binlog events are not supported; set log_bin_compress=OFF (and encrypt_binlog=OFF) on the server",
                ))
            }
            _ => {}
        }
        let data = match event.read_data() {
            Ok(Some(data)) => data,
            Ok(None) | Err(_) if header.flags().contains(EventFlags::LOG_EVENT_IGNORABLE_F) => {
                return Ok(())
            }
            Ok(None) => {
                return Err(unsupported(
                    format!("type {raw_type}"),
                    "unknown event type",
                ));
            }
            Err(error) => {
                return Err(unsupported(
                    format!("type {raw_type}"),
                    &format!("the event is malformed: {error}"),
                ));
            }
        };
        match data {
            EventData::RotateEvent(rotate) => {
                // A rotate read before any format description (the first event of a
                // connection) is parsed without knowing about checksums, so with CRC32 on its
                // last four bytes are the checksum. Later rotates, fake or real, are clean.
                let mut raw = rotate.name_raw();
                if !self.format_known && self.config.checksum_crc32 {
                    raw = &raw[..raw.len().saturating_sub(4)];
                }
                let name = String::from_utf8(raw.to_vec()).map_err(|_| SourceError::Protocol {
                    message: format!("binlog file name {raw:?} is not UTF-8"),
                })?;
                // A fake rotate (log_pos 0) opens every connection: it names the file the stream
                // continues in (the one being resumed, or, after a GTID start, wherever the GTID
                // is), and is not a boundary.
                if header.log_pos() == 0 {
                    self.file = name;
                    return Ok(());
                }
                self.file = name;
                if self.transaction.is_none() {
                    let position = BinlogPosition::new(self.file.clone(), rotate.position())
                        .map_err(|e| SourceError::Protocol { message: e.to_string() })?;
                    self.emit_boundary(position).await?;
                }
            }
            EventData::GtidEvent(gtid) => {
                let sid = gtid.sid();
                self.pending_gtid = Some(MysqlGtid {
                    uuid: sid,
                    tag: gtid.tag().map(|t| t.to_string().to_ascii_lowercase()),
                    gno: gtid.gno(),
                });
            }
            EventData::AnonymousGtidEvent(_) => self.pending_gtid = None,
            // At the start of each file: every GTID of the files before it. A reader that does
            // not know its GTID state (it started at a position mid-file) learns it here.
            EventData::PreviousGtidsEvent(previous) if self.gtid_state.is_none() => {
                let mut state = GtidState::default();
                for sid in previous.sids() {
                    let tag = sid.tag().map(|t| t.to_string().to_ascii_lowercase());
                    for interval in sid.intervals() {
                        state.add_interval(
                            sid.uuid(),
                            tag.clone(),
                            interval.start(),
                            interval.end().saturating_sub(1),
                        );
                    }
                }
                self.gtid_state = Some(state);
            }
            EventData::PreviousGtidsEvent(_) => {}
            EventData::QueryEvent(query) => {
                let text = query.query();
                let statement = text.trim();
                match statement::classify(statement, &query.schema()) {
                    kind @ (Statement::Begin | Statement::XaStart) => {
                        let gtid = self.pending_gtid.take().map(Applied::Mysql);
                        if self.transaction.is_none() {
                            self.begin(gtid, true, &start);
                        }
                        let transaction = self.transaction.as_mut().expect("just begun");
                        transaction.explicit = true;
                        transaction.xa |= kind == Statement::XaStart;
                    }
                    Statement::XaCommit { one_phase: true, .. } => self.commit(None, end).await?,
                    Statement::XaCommit { xid, .. } => self.xa_decided(&xid, true, &start, end).await?,
                    Statement::XaRollback { xid } => self.xa_decided(&xid, false, &start, end).await?,
                    // ROLLBACK is only logged for non-transactional changes, which did happen.
                    Statement::Commit => self.commit(None, end).await?,
                    // A row change logged as a statement (a session with binlog_format
                    // STATEMENT or MIXED) carries no row images, and which tables it changed
                    // cannot be told from its text: stop rather than let it pass unseen.
                    Statement::DataChange => {
                        return Err(unsupported(
                            "QUERY".into(),
                            &format!(
                                "a change logged as a statement, without row images ({}); the tables it changed cannot be known, so it would be lost from the stream. Set binlog_format=ROW for every session (it is a session variable too: SET GLOBAL does not change open sessions), then restart from a snapshot, or with --start-position {end} to go on without it",
                                truncate(statement, 200)
                            ),
                        ));
                    }
                    // Inside a transaction: savepoints, `XA END` (which names the XID), or DDL
                    // that belongs to it.
                    Statement::Control | Statement::Ddl | Statement::Truncate(_)
                        if self.transaction.as_ref().is_some_and(|t| t.explicit) =>
                    {
                        if let (Some(xid), Some(transaction)) =
                            (statement::xa_end_xid(statement), self.transaction.as_mut())
                        {
                            transaction.xid = Some(xid.to_owned());
                        }
                    }
                    kind => self.standalone_statement(kind, statement, header.timestamp(), &start, end).await?,
                }
            }
            EventData::XidEvent(xid) => self.commit(Some(xid.xid), end).await?,
            EventData::XaPrepareLogEvent(_) => self.xa_prepared(&start, end).await?,
            EventData::TableMapEvent(map) => {
                let database = map.database_name();
                let table = map.table_name();
                let schema = if self.config.filter.matches(&database, &table) {
                    let mut built = TableSchema::from_table_map(&map, self.config.positional_names);
                    if let (Err(SchemaError::NoColumnNames { .. }), Some(catalog)) =
                        (&built, &mut self.catalog)
                    {
                        let found = catalog.table(&database, &table).await?;
                        built = TableSchema::from_table_map_and_catalog(&map, &found);
                    }
                    Some(Arc::new(built.map_err(|source| SourceError::Schema {
                        position: start.clone(),
                        source,
                    })?))
                } else {
                    None
                };
                self.tables.insert(map.table_id(), schema);
            }
            EventData::RowsEvent(rows) => {
                let schema = match self.tables.get(&rows.table_id()) {
                    Some(Some(schema)) => Arc::clone(schema),
                    Some(None) => return Ok(()),
                    None => {
                        return Err(unsupported(
                            "ROWS".into(),
                            &format!("no TABLE_MAP for table id {}", rows.table_id()),
                        ))
                    }
                };
                // Decoding protocol input must never take the daemon down with a panic.
                let mut encoded = std::mem::take(&mut self.rows);
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    decode::encode_rows(&schema, &rows, &mut encoded, self.config.max_event_bytes)
                }))
                .unwrap_or_else(|_| Err(decode::DecodeError { message: "malformed rows event".into() }))
                .map_err(|error| SourceError::Decode {
                    table: schema.name.clone(),
                    position: start.clone(),
                    message: error.message,
                })?;
                self.metrics.row_events_read.add(encoded.len() as u64);
                if self.transaction.is_none() {
                    let gtid = self.pending_gtid.take().map(Applied::Mysql);
                    self.begin(gtid, true, &start);
                }
                let ts_ms = u64::from(header.timestamp()) * 1000;
                // Inside a compressed transaction every rows event shares the payload's position,
                // so rows are numbered across the whole payload to keep position + row unique.
                let row_base = self.payload_rows;
                if self.payload.is_some() {
                    self.payload_rows += encoded.len() as u32;
                }
                let prefix = line_prefix(encoded.op(), &schema.database, &schema.table, ts_ms, &start);
                let gtid = match &self.transaction {
                    Some(transaction) => transaction.gtid_json.clone(),
                    None => gtid_json(None),
                };
                let by_primary_key = self.config.partition_by_primary_key;
                let result = async {
                    for (row, json) in encoded.iter().enumerate() {
                        let line = match json.oversize {
                            Some(size) => EventLine::too_large(prefix.len() + size, json.primary_key),
                            None => EventLine::build(
                                &prefix,
                                row_base + row as u32,
                                &gtid,
                                json.primary_key,
                                json.before,
                                json.after,
                            ),
                        };
                        let event = OutboundEvent {
                            table: schema.name.clone(),
                            key: partition_key(&schema.name, json.primary_key, by_primary_key),
                            position: start.clone(),
                            line,
                        };
                        self.hold(event).await?;
                    }
                    Ok(())
                }
                .await;
                self.rows = encoded;
                result?;
            }
            EventData::TransactionPayloadEvent(_) => {
                return Err(unsupported(
                    "TRANSACTION_PAYLOAD".into(),
                    "compressed transactions (binlog_transaction_compression=ON) are not supported yet; turn it off on the server",
                ))
            }
            EventData::IncidentEvent(incident) => {
                return Err(unsupported(
                    "INCIDENT".into(),
                    &format!("the server reports lost binlog events: {}", incident.message()),
                ))
            }
            EventData::FormatDescriptionEvent(_) => self.format_known = true,
            EventData::HeartbeatEvent => self.metrics.heartbeat(),
            EventData::StopEvent
            | EventData::RowsQueryEvent(_)
            | EventData::IntvarEvent(_)
            | EventData::RandEvent(_)
            | EventData::UserVarEvent(_)
            | EventData::IgnorableEvent(_) => {}
            other => {
                let name = format!("{:?}", EventType::try_from(raw_type).ok());
                tracing::debug!(?name, "unhandled event");
                return Err(unsupported(
                    name,
                    &format!("this event ({}) cannot be replicated as row changes", event_kind(&other)),
                ));
            }
        }
        Ok(())
    }

    /// Reads the events of a compressed transaction (MySQL 8 TRANSACTION_PAYLOAD) from a
    /// file, streaming the zstd payload (never the whole transaction in memory at once). The
    /// live path refuses these events: the driver drops a payload it cannot decompress without
    /// a word.
    async fn handle_payload(
        &mut self,
        event: &Event,
        stream: &mut mysql_common::binlog::EventStreamReader,
    ) -> Result<(), SourceError> {
        let (start, end) = self.span(event);
        // The payload event's checksum covers the compressed transaction.
        integrity::verify_checksum(event).map_err(|source| SourceError::Integrity {
            position: start.clone(),
            source,
        })?;
        let malformed = |error: std::io::Error| SourceError::UnsupportedEvent {
            event: "TRANSACTION_PAYLOAD".into(),
            position: start.clone(),
            reason: format!("the compressed transaction cannot be read: {error}"),
        };
        let payload: mysql_common::binlog::events::TransactionPayloadEvent<'_> =
            event.read_event().map_err(malformed)?;
        let mut input = payload.decompressed().map_err(malformed)?;
        self.payload = Some((start.clone(), end));
        self.payload_rows = 0;
        // Frame by frame, so a corrupt payload is an error rather than a panic in the decoder.
        let corrupt = |message: String| SourceError::UnsupportedEvent {
            event: "TRANSACTION_PAYLOAD".into(),
            position: start.clone(),
            reason: format!("the compressed transaction is corrupt: {message}"),
        };
        let result = async {
            while let Some(frame) =
                file::read_frame(&mut input, file::MAX_EVENT_BYTES).map_err(corrupt)?
            {
                let inner = file::decode_frame(stream, &frame, true, false).map_err(corrupt)?;
                self.handle(&inner).await?;
            }
            Ok(())
        }
        .await;
        self.payload = None;
        result
    }

    /// A statement standing alone (DDL, XA control): it is its own transaction. The next
    /// TABLE_MAP of an altered table carries its new columns. A TRUNCATE of a table in scope
    /// becomes a `truncate` event: every row removed at once, with no row images.
    async fn standalone_statement(
        &mut self,
        kind: Statement,
        statement: &str,
        timestamp: u32,
        start: &BinlogPosition,
        end: BinlogPosition,
    ) -> Result<(), SourceError> {
        tracing::debug!(position = %start, statement = %truncate(statement, 200), "statement");
        if let Some(catalog) = &mut self.catalog {
            catalog.invalidate();
        }
        if self.transaction.is_none() {
            let gtid = self.pending_gtid.take().map(Applied::Mysql);
            self.begin(gtid, false, start);
        }
        if let Statement::Truncate(target) = kind {
            let Some((database, table)) = target else {
                return Err(SourceError::UnsupportedEvent {
                    event: "QUERY".into(),
                    position: start.clone(),
                    reason: format!("cannot tell which table this TRUNCATE empties ({}); it would be lost from the stream", truncate(statement, 120)),
                });
            };
            if self.config.filter.matches(&database, &table) {
                let prefix = line_prefix(
                    Op::Truncate,
                    &database,
                    &table,
                    u64::from(timestamp) * 1000,
                    start,
                );
                let gtid = match &self.transaction {
                    Some(transaction) => transaction.gtid_json.clone(),
                    None => gtid_json(None),
                };
                let name = TableName::new(&database, &table);
                let event = OutboundEvent {
                    key: name.shared(),
                    table: name,
                    position: start.clone(),
                    line: EventLine::build(&prefix, 0, &gtid, None, None, None),
                };
                self.hold(event).await?;
            }
        }
        self.commit(None, end).await
    }

    fn begin(&mut self, applied: Option<Applied>, explicit: bool, begin_at: &BinlogPosition) {
        let gtid = applied.as_ref().map(|a| match a {
            Applied::Maria(gtid) => gtid.to_string(),
            Applied::Mysql(gtid) => gtid.to_string(),
        });
        self.transaction = Some(Transaction {
            gtid_json: gtid_json(gtid.as_deref()),
            applied,
            explicit,
            held: Vec::new(),
            held_bytes: 0,
            begin_at: begin_at.clone(),
            xa: false,
            xid: None,
        });
    }

    /// Holds an event in the lookahead buffer, spilling the oldest ones (without xid) past the
    /// cap.
    async fn hold(&mut self, event: OutboundEvent) -> Result<(), SourceError> {
        if self.skip > 0 {
            // Sent before the connection was lost; see `forget_open_transaction`.
            self.skip -= 1;
            self.sent_in_transaction += 1;
            return Ok(());
        }
        let cap = self.config.lookahead_bytes;
        let catching_up = self.catch_up.is_some();
        let transaction = self.transaction.as_mut().expect("a transaction is open");
        if catching_up && !transaction.xa {
            // Delivered before the checkpoint; see `xa::CatchUp`.
            return Ok(());
        }
        transaction.held_bytes += event.line.len();
        transaction.held.push(event);
        if transaction.xa {
            // Sent at its XA COMMIT, whole: it can never spill.
            if self.prepared.bytes() + transaction.held_bytes > cap {
                return Err(SourceError::UnsupportedEvent {
                    event: "XA transaction".into(),
                    position: transaction.begin_at.clone(),
                    reason: format!("prepared XA transactions hold more than mysql.transaction_lookahead_bytes ({cap}) of rows until they are committed; raise it"),
                });
            }
            return Ok(());
        }
        if transaction.held_bytes > cap && transaction.held.len() > 1 {
            let keep = transaction.held.pop().expect("two or more held");
            let spilled = std::mem::replace(&mut transaction.held, vec![keep]);
            transaction.held_bytes = transaction.held[0].line.len();
            // Sent as they are: `"xid":null,"commit":false`.
            for event in spilled {
                self.send(SinkInput::Event(event)).await?;
                self.sent_in_transaction += 1;
            }
        }
        Ok(())
    }

    /// Ends the open transaction at `end`: releases its events stamped with `xid`, the last
    /// with `commit: true`, then the boundary.
    async fn commit(&mut self, xid: Option<u64>, end: BinlogPosition) -> Result<(), SourceError> {
        if let Some(transaction) = self.end_transaction() {
            let n_events = transaction.held.len();
            for (index, mut event) in transaction.held.into_iter().enumerate() {
                event.line.finish(xid, index + 1 == n_events);
                self.send(SinkInput::Event(event)).await?;
            }
            self.transactions += 1;
        }
        self.emit_boundary(end).await
    }

    /// Closes the open transaction (if any): its GTID joins the state, per-transaction state
    /// is reset. Returns it, with the events it holds.
    fn end_transaction(&mut self) -> Option<Transaction> {
        self.standalone = false;
        self.sent_in_transaction = 0;
        self.skip = 0;
        // Servers send every table's TABLE_MAP again in each transaction that uses it, so the
        // cache never needs to outlive one: clearing it keeps memory flat as table ids grow.
        self.tables.clear();
        let transaction = self.transaction.take()?;
        match (self.gtid_state.as_mut(), &transaction.applied) {
            (Some(state), Some(Applied::Maria(gtid))) => state.apply(*gtid),
            (Some(state), Some(Applied::Mysql(gtid))) => state.apply_mysql(gtid),
            _ => {}
        }
        Some(transaction)
    }

    /// XA_PREPARE: the open XA transaction's rows are held until it is decided; see [`xa`].
    async fn xa_prepared(
        &mut self,
        start: &BinlogPosition,
        end: BinlogPosition,
    ) -> Result<(), SourceError> {
        let transaction = self.end_transaction();
        let Some((xid, transaction)) = transaction.and_then(|t| Some((t.xid.clone()?, t))) else {
            return Err(SourceError::UnsupportedEvent {
                event: "XA_PREPARE".into(),
                position: start.clone(),
                reason: "an XA PREPARE without the XA transaction it prepares (no XA END before it); the binlog does not start at a transaction boundary here".into(),
            });
        };
        let pending = self
            .catch_up
            .as_ref()
            .is_none_or(|catch_up| catch_up.pending.contains(&xid));
        if pending {
            self.prepared.add(Prepared {
                xid,
                start: transaction.begin_at,
                events: transaction.held,
                bytes: transaction.held_bytes,
            });
        }
        self.emit_boundary(end).await
    }

    /// `XA COMMIT` (sends the prepared rows as one transaction, here) or `XA ROLLBACK` (drops
    /// them) of the prepared transaction `xid`, in a group of its own.
    async fn xa_decided(
        &mut self,
        xid: &str,
        committed: bool,
        start: &BinlogPosition,
        end: BinlogPosition,
    ) -> Result<(), SourceError> {
        if self.transaction.is_none() {
            let gtid = self.pending_gtid.take().map(Applied::Mysql);
            self.begin(gtid, false, start);
        }
        let prepared = self.prepared.take(xid);
        if committed && self.catch_up.is_none() {
            let Some(prepared) = prepared else {
                return Err(SourceError::UnsupportedEvent {
                    event: "XA COMMIT".into(),
                    position: start.clone(),
                    reason: format!("the XA transaction {xid} was prepared before the position this run started from, so its rows were not read and would be lost; start again from a position at or before its XA START (SHOW BINLOG EVENTS shows it), or, to go on without them, after this event ({end})"),
                });
            };
            let transaction = self.transaction.as_mut().expect("begun above");
            transaction.held_bytes += prepared.bytes;
            transaction.held.extend(prepared.events);
        }
        self.commit(None, end).await
    }

    async fn emit_boundary(&mut self, position: BinlogPosition) -> Result<(), SourceError> {
        if let Some(catch_up) = &self.catch_up {
            if catch_up.before_checkpoint(&position) {
                return Ok(());
            }
            tracing::info!(position = %position, prepared = self.prepared.checkpoint_list().len(), "read the prepared XA transactions of the checkpoint again");
            self.catch_up = None;
        }
        self.boundary = position.clone();
        self.metrics.boundary_read(&position);
        let point = ResumePoint {
            position,
            gtid: self.gtid_state.clone(),
        };
        self.send(SinkInput::Boundary(Boundary {
            point,
            binlog_ts: self.last_ts,
            prepared: self.prepared.checkpoint_list(),
        }))
        .await
    }

    async fn send(&mut self, item: SinkInput) -> Result<(), SourceError> {
        if matches!(item, SinkInput::Event(_)) {
            self.events += 1;
        }
        self.output
            .send(item)
            .await
            .map_err(|_| SourceError::SinkGone)
    }
}

/// Whether an event type is a rows event (WRITE/UPDATE/DELETE in all versions, partial update).
fn is_rows_event(raw: u8) -> bool {
    matches!(raw, 20..=25 | 30..=32 | 39)
}

fn event_kind(data: &EventData<'_>) -> &'static str {
    match data {
        EventData::LoadEvent(_)
        | EventData::NewLoadEvent(_)
        | EventData::BeginLoadQueryEvent(_)
        | EventData::ExecuteLoadQueryEvent(_) => "statement-based LOAD DATA",
        _ => "an event without row images",
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests;

//! The reader proper: one binlog event at a time, one method per event family (MariaDB's own
//! events, rotate, GTIDs, queries, table maps, rows); [`transaction`] holds the open
//! transaction's events and emits boundaries. What the reader guarantees is in the docs of
//! [`super`].

mod encoder;
mod held;
mod payload;
mod rows;
mod signals;
mod snapshots;
mod transaction;

pub(super) use self::snapshots::Snapshots;

use std::{collections::HashMap, sync::Arc};

use futures_util::StreamExt;
use mysql_async::BinlogStream;
use mysql_common::binlog::{
    consts::{EventFlags, EventType},
    events::{Event, EventData, PreviousGtidsEvent, QueryEvent, RotateEvent, TableMapEvent},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    catalog::Catalog,
    connect, decode, integrity,
    lock::InstanceLock,
    mariadb,
    schema::{SchemaError, TableSchema},
    statement::{self, Statement},
    xa::{CatchUp, PreparedSet},
    SourceConfig, SourceError, SourceSummary,
};
use crate::{
    event::TableName,
    metrics::{Metrics, State},
    position::{BinlogPosition, GtidState, MariaGtid, MysqlGtid, ResumePoint},
    stream::Message,
};

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
    /// Its events in the lookahead buffer.
    held: held::Held,
    /// Where its first event starts.
    begin_at: BinlogPosition,
    /// An XA transaction: its rows wait for its `XA COMMIT` (see [`xa`]).
    xa: bool,
    /// Its XID, from its `XA END`.
    xid: Option<String>,
}

/// The open transaction, and what the reader knows of the one about to open.
#[derive(Default)]
struct OpenTransaction {
    current: Option<Transaction>,
    /// A MySQL GTID read before its transaction's BEGIN.
    pending_gtid: Option<MysqlGtid>,
    /// The current MariaDB GTID says the transaction is one statement.
    standalone: bool,
    /// Events of the open transaction already sent (spilled past the lookahead cap).
    sent: usize,
    /// After a reconnect: events of the re-read transaction that were sent before it.
    skip: usize,
}

/// What the reader did so far.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    /// Row events sent.
    pub(super) events: u64,
    /// Connections reopened after a loss.
    pub(super) reconnects: u64,
}

/// Reads one binlog stream (or file) event by event; see the module docs of [`super`].
pub(super) struct Reader {
    pub(super) config: SourceConfig,
    output: mpsc::Sender<Message>,
    /// The current binlog file.
    file: String,
    /// The last boundary read.
    pub(super) boundary: BinlogPosition,
    /// The GTID state at `boundary`; `None` when GTIDs are not tracked.
    gtid_state: Option<GtidState>,
    /// The binlog timestamp of the last event read that had one (Unix seconds).
    last_ts: u32,
    /// Table id to schema; `None` for tables the filter excludes.
    tables: HashMap<u64, Option<Arc<TableSchema>>>,
    open: OpenTransaction,
    /// A FORMAT_DESCRIPTION event was read on this connection.
    format_known: bool,
    payload: Option<payload::Payload>,
    pub(super) counts: Counts,
    metrics: Arc<Metrics>,
    /// Table definitions from information_schema, when the binlog lacks them.
    catalog: Option<Catalog>,
    /// The rows of the event being read, reused from event to event.
    rows: decode::EncodedRows,
    /// XA transactions prepared and not yet decided.
    prepared: PreparedSet,
    /// While reading the checkpoint's prepared XA transactions again.
    catch_up: Option<CatchUp>,
    /// Where the last event read ends (the furthest: events that open a connection repeat
    /// earlier positions).
    read_end: BinlogPosition,
    /// Snapshots, when they are on.
    snapshots: Option<Snapshots>,
    /// The encoding pool (none with one core), and the rows events it has not given back.
    encoder: Option<encoder::EncodePool>,
    pending: encoder::Pending,
}

impl Reader {
    pub(super) fn new(
        config: SourceConfig,
        start: ResumePoint,
        output: mpsc::Sender<Message>,
        metrics: Arc<Metrics>,
        snapshots: Option<Snapshots>,
    ) -> Self {
        let catalog =
            (config.catalog || config.ddl_events).then(|| Catalog::new(config.mysql.clone()));
        let catch_up = config.catch_up.clone();
        let config_threads = config.mysql.encode_threads;
        Self {
            config,
            output,
            file: start.position.file().to_owned(),
            read_end: start.position.clone(),
            boundary: start.position,
            gtid_state: start.gtid,
            last_ts: 0,
            tables: HashMap::new(),
            open: OpenTransaction::default(),
            format_known: false,
            payload: None,
            counts: Counts::default(),
            metrics,
            catalog,
            rows: decode::EncodedRows::default(),
            prepared: PreparedSet::default(),
            catch_up,
            snapshots,
            encoder: match config_threads {
                Some(threads) => encoder::EncodePool::with_threads(threads),
                None => encoder::EncodePool::for_this_machine(),
            },
            pending: encoder::Pending::default(),
        }
    }

    /// Reads `stream` until cancelled between transactions (`Ok`) or an error.
    pub(super) async fn read(
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
        // A chunk may be due at once (the checkpoint's position is past its read), and the
        // first one is asked for here.
        self.place_snapshots().await?;
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
            // A snapshot may hold the reader where it is (see `snapshots::Hold`).
            let held = self
                .snapshots
                .as_ref()
                .is_some_and(|s| s.holds_reader(&self.read_end));
            let next = tokio::select! {
                // Stop requests win, but only between transactions; see "# Stopping".
                biased;
                _ = cancel.cancelled(), if self.open.current.is_none() && self.pending.is_empty() => return Ok(()),
                _ = tokio::time::sleep_until(next_lock_check) => continue,
                arrival = next_arrival(&mut self.snapshots), if self.snapshots.as_ref().is_some_and(Snapshots::awaiting_arrival) => {
                    self.snapshot_arrived(arrival).await?;
                    // Not reading the stream while held is not the server's silence.
                    last_heard = tokio::time::Instant::now();
                    continue;
                }
                next = tokio::time::timeout_at(last_heard + silence_limit, stream.next()), if !held => next,
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
            // Events that are not boundaries move the position too (a chunk may be due at
            // the end of a GTID_LIST or BINLOG_CHECKPOINT event).
            if self.snapshots.is_some() {
                self.place_snapshots().await?;
            }
        }
    }

    /// A new connection and stream from the last boundary.
    pub(super) async fn reopen(&self) -> Result<BinlogStream, SourceError> {
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
    pub(super) fn forget_open_transaction(&mut self) {
        if self.open.current.take().is_some() {
            self.open.skip = self.open.sent;
        }
        // A catch-up reads again from its start, where the GTID state was its first.
        if let Some(catch_up) = &self.catch_up {
            self.prepared.clear();
            self.gtid_state = catch_up.initial_gtid.clone();
        }
        self.open.sent = 0;
        self.pending.clear();
        self.open.pending_gtid = None;
        self.open.standalone = false;
        self.tables.clear();
        self.file = self.boundary.file().to_owned();
        self.read_end = self.boundary.clone();
        self.format_known = false;
    }

    pub(super) fn summary(&self) -> SourceSummary {
        SourceSummary {
            events: self.counts.events,
            reconnects: self.counts.reconnects,
        }
    }

    /// Whether a transaction is open (the reader would not stop here).
    #[cfg(test)]
    pub(super) fn in_transaction(&self) -> bool {
        self.open.current.is_some()
    }

    /// Where the event starts, and where it ends (the position after it).
    fn span(&self, event: &Event) -> (BinlogPosition, BinlogPosition) {
        // Events inside a compressed transaction have no place of their own in the file.
        if let Some(payload) = &self.payload {
            return (payload.start.clone(), payload.end.clone());
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

    /// One event: checked, then handed to the method for its family; a compressed
    /// transaction's events one by one ([`payload`]).
    pub(super) async fn handle(&mut self, event: &Event) -> Result<(), SourceError> {
        if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8
            && self.payload.is_none()
        {
            return self.handle_payload(event).await;
        }
        self.handle_one(event).await
    }

    /// One event, not a compressed transaction's.
    async fn handle_one(&mut self, event: &Event) -> Result<(), SourceError> {
        let header = event.header();
        let raw_type = header.event_type_raw();
        // Only rows events and table maps pass rows still being encoded; see `encoder`.
        if !self.pending.is_empty()
            && !is_rows_event(raw_type)
            && raw_type != EventType::TABLE_MAP_EVENT as u8
        {
            self.drain_rows().await?;
        }
        let (start, end) = self.span(event);
        // Events a connection opens with (a fake ROTATE, the file's FORMAT_DESCRIPTION) say
        // 0 or the file's start: only a later position moves it.
        if end.try_cmp(&self.read_end) == Some(std::cmp::Ordering::Greater) {
            self.read_end = end.clone();
        }
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
        if (mariadb::ANNOTATE_ROWS..=mariadb::LAST_COMPRESSED).contains(&raw_type) {
            return self.on_mariadb_event(event, &start);
        }
        let Some(data) = read_data(event, &start)? else {
            return Ok(());
        };
        match data {
            EventData::RotateEvent(rotate) => self.on_rotate(&rotate, header.log_pos()).await,
            EventData::GtidEvent(gtid) => {
                self.open.pending_gtid = Some(MysqlGtid {
                    uuid: gtid.sid(),
                    tag: gtid.tag().map(|t| t.to_string().to_ascii_lowercase()),
                    gno: gtid.gno(),
                });
                Ok(())
            }
            EventData::AnonymousGtidEvent(_) => {
                self.open.pending_gtid = None;
                Ok(())
            }
            EventData::PreviousGtidsEvent(previous) => {
                self.on_previous_gtids(&previous);
                Ok(())
            }
            EventData::QueryEvent(query) => {
                self.on_query(&query, header.timestamp(), &start, end).await
            }
            EventData::XidEvent(xid) => self.commit(Some(xid.xid), end).await,
            EventData::XaPrepareLogEvent(_) => self.xa_prepared(&start, end).await,
            EventData::TableMapEvent(map) => self.on_table_map(&map, &start).await,
            EventData::RowsEvent(rows) => self.on_rows(event, &rows, &start).await,
            EventData::FormatDescriptionEvent(_) => {
                self.format_known = true;
                Ok(())
            }
            EventData::HeartbeatEvent => {
                self.metrics.heartbeat();
                Ok(())
            }
            EventData::StopEvent
            | EventData::RowsQueryEvent(_)
            | EventData::IntvarEvent(_)
            | EventData::RandEvent(_)
            | EventData::UserVarEvent(_)
            | EventData::IgnorableEvent(_) => Ok(()),
            // Only inside another one: `handle` reads the others.
            EventData::TransactionPayloadEvent(_) => Err(unsupported(
                "TRANSACTION_PAYLOAD",
                &start,
                "a compressed transaction inside a compressed transaction: the binlog is corrupt",
            )),
            EventData::IncidentEvent(incident) => Err(unsupported(
                "INCIDENT",
                &start,
                format!(
                    "the server reports lost binlog events: {}",
                    incident.message()
                ),
            )),
            other => Err(refused(&other, raw_type, &start)),
        }
    }

    /// The event types only MariaDB writes (`mysql_common` does not parse them).
    fn on_mariadb_event(
        &mut self,
        event: &Event,
        start: &BinlogPosition,
    ) -> Result<(), SourceError> {
        let raw_type = event.header().event_type_raw();
        match raw_type {
            mariadb::GTID => {
                let data = event.data();
                if data.len() < 13 {
                    return Err(unsupported("MariaDB GTID", start, "the event is truncated"));
                }
                let sequence = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
                self.open.standalone = data[12] & mariadb::FL_STANDALONE != 0;
                let gtid = MariaGtid { domain, server: event.header().server_id(), sequence };
                self.begin(Some(Applied::Maria(gtid)), !self.open.standalone, start);
                if let Some(transaction) = &mut self.open.current {
                    transaction.xa = data[12] & mariadb::FL_PREPARED_XA != 0;
                }
                Ok(())
            }
            mariadb::ANNOTATE_ROWS | mariadb::BINLOG_CHECKPOINT | mariadb::GTID_LIST => Ok(()),
            // START_ENCRYPTION..=LAST_COMPRESSED
            _ => Err(unsupported(
                format!("MariaDB event type {raw_type}"),
                start,
                "encrypted or compressed binlog events are not supported; set log_bin_compress=OFF (and encrypt_binlog=OFF) on the server",
            )),
        }
    }

    /// ROTATE: the file the stream goes on in. Between transactions, a boundary.
    async fn on_rotate(
        &mut self,
        rotate: &RotateEvent<'_>,
        log_pos: u32,
    ) -> Result<(), SourceError> {
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
        self.file = name;
        if log_pos == 0 || self.open.current.is_some() {
            return Ok(());
        }
        let position = BinlogPosition::new(self.file.clone(), rotate.position()).map_err(|e| {
            SourceError::Protocol {
                message: e.to_string(),
            }
        })?;
        self.emit_boundary(position).await
    }

    /// PREVIOUS_GTIDS, at the start of each file: every GTID of the files before it. A reader
    /// that does not know its GTID state (it started at a position mid-file) learns it here.
    fn on_previous_gtids(&mut self, previous: &PreviousGtidsEvent<'_>) {
        if self.gtid_state.is_some() {
            return;
        }
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

    /// QUERY: transaction control, XA, DDL; a row change logged as a statement stops the run.
    async fn on_query(
        &mut self,
        query: &QueryEvent<'_>,
        timestamp: u32,
        start: &BinlogPosition,
        end: BinlogPosition,
    ) -> Result<(), SourceError> {
        let text = query.query();
        let statement = text.trim();
        match statement::classify(statement, &query.schema()) {
            kind @ (Statement::Begin | Statement::XaStart) => {
                let gtid = self.open.pending_gtid.take().map(Applied::Mysql);
                if self.open.current.is_none() {
                    self.begin(gtid, true, start);
                }
                let transaction = self.open.current.as_mut().expect("just begun");
                transaction.explicit = true;
                transaction.xa |= kind == Statement::XaStart;
                Ok(())
            }
            Statement::XaCommit { one_phase: true, .. } => self.commit(None, end).await,
            Statement::XaCommit { xid, .. } => self.xa_decided(&xid, true, start, end).await,
            Statement::XaRollback { xid } => self.xa_decided(&xid, false, start, end).await,
            // ROLLBACK is only logged for non-transactional changes, which did happen.
            Statement::Commit => self.commit(None, end).await,
            // A row change logged as a statement (a session with binlog_format
            // STATEMENT or MIXED) carries no row images, and which tables it changed
            // cannot be told from its text: stop rather than let it pass unseen.
            Statement::DataChange => Err(unsupported(
                "QUERY",
                start,
                format!(
                    "a change logged as a statement, without row images ({}); the tables it changed cannot be known, so it would be lost from the stream. Set binlog_format=ROW for every session (it is a session variable too: SET GLOBAL does not change open sessions), then restart from a snapshot, or with --start-position {end} to go on without it",
                    truncate(statement, 200)
                ),
            )),
            // Inside a transaction: savepoints, `XA END` (which names the XID), or DDL
            // that belongs to it.
            kind @ (Statement::Control | Statement::Ddl | Statement::Truncate(_))
                if self.open.current.as_ref().is_some_and(|t| t.explicit) =>
            {
                if kind == Statement::Ddl {
                    self.snapshot_ddl();
                }
                if let (Some(xid), Some(transaction)) =
                    (statement::xa_end_xid(statement), self.open.current.as_mut())
                {
                    transaction.xid = Some(xid.to_owned());
                }
                Ok(())
            }
            kind => self.standalone_statement(kind, query, timestamp, start, end).await,
        }
    }

    /// TABLE_MAP: the schema of the rows events after it (`None` for a table out of scope).
    async fn on_table_map(
        &mut self,
        map: &TableMapEvent<'_>,
        start: &BinlogPosition,
    ) -> Result<(), SourceError> {
        let database = map.database_name();
        let table = map.table_name();
        let captured = self.config.filter.matches(&database, &table)
            || self.is_signal_table(&TableName::new(&database, &table));
        let schema = if captured {
            let mut built = TableSchema::from_table_map(map, self.config.positional_names);
            if let (Err(SchemaError::NoColumnNames { .. }), Some(catalog)) =
                (&built, &mut self.catalog)
            {
                let found = catalog.table(&database, &table).await?;
                built = TableSchema::from_table_map_and_catalog(map, &found);
            }
            let built = built
                .and_then(|schema| schema.with_rules(&self.config.columns))
                .and_then(|schema| schema.with_changes(&self.config.changes));
            Some(Arc::new(built.map_err(|source| SourceError::Schema {
                position: start.clone(),
                source,
            })?))
        } else {
            None
        };
        self.tables.insert(map.table_id(), schema);
        Ok(())
    }
}

/// A snapshot driver's next answer, with its slot (never ready with snapshots off).
async fn next_arrival(
    snapshots: &mut Option<Snapshots>,
) -> (
    usize,
    Option<Result<crate::source::snapshot::Arrival, SourceError>>,
) {
    match snapshots {
        Some(snapshots) => snapshots.next_arrival().await,
        None => std::future::pending().await,
    }
}

/// The event's body; `None` for an ignorable event the library cannot read.
fn read_data<'a>(
    event: &'a Event,
    start: &BinlogPosition,
) -> Result<Option<EventData<'a>>, SourceError> {
    let raw_type = event.header().event_type_raw();
    match event.read_data() {
        Ok(Some(data)) => Ok(Some(data)),
        Ok(None) | Err(_)
            if event
                .header()
                .flags()
                .contains(EventFlags::LOG_EVENT_IGNORABLE_F) =>
        {
            Ok(None)
        }
        Ok(None) => Err(unsupported(
            format!("type {raw_type}"),
            start,
            "unknown event type",
        )),
        Err(error) => Err(unsupported(
            format!("type {raw_type}"),
            start,
            format!("the event is malformed: {error}"),
        )),
    }
}

/// An event the reader cannot turn into row changes: stopping is the only way not to lose it.
fn unsupported(
    event: impl Into<String>,
    position: &BinlogPosition,
    reason: impl Into<String>,
) -> SourceError {
    SourceError::UnsupportedEvent {
        event: event.into(),
        position: position.clone(),
        reason: reason.into(),
    }
}

/// An event type that carries changes without row images.
fn refused(data: &EventData<'_>, raw_type: u8, position: &BinlogPosition) -> SourceError {
    let name = format!("{:?}", EventType::try_from(raw_type).ok());
    tracing::debug!(?name, "unhandled event");
    let kind = match data {
        EventData::LoadEvent(_)
        | EventData::NewLoadEvent(_)
        | EventData::BeginLoadQueryEvent(_)
        | EventData::ExecuteLoadQueryEvent(_) => "statement-based LOAD DATA",
        _ => "an event without row images",
    };
    unsupported(
        name,
        position,
        format!("this event ({kind}) cannot be replicated as row changes"),
    )
}

pub(super) fn is_rows_event(raw: u8) -> bool {
    matches!(raw, 20..=25 | 30..=32 | 39)
}

pub(super) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

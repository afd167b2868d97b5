//! The open transaction: its events held in the lookahead buffer (spilled past the cap),
//! released at its end with `xid` and `commit`, XA transactions held from PREPARE to their
//! decision, and the boundaries the checkpoint may take.

use mysql_common::binlog::events::QueryEvent;

use super::{held::Held, truncate, Applied, Reader, Transaction};
use crate::{
    event::{gtid_json, line_prefix, EventLine, Op, TableName},
    position::{BinlogPosition, ResumePoint},
    source::{
        ddl::{self, DdlTarget},
        statement::Statement,
        xa::Prepared,
        SourceError,
    },
    stream::{Boundary, Message, OutboundEvent},
};

impl Reader {
    pub(super) fn begin(
        &mut self,
        applied: Option<Applied>,
        explicit: bool,
        begin_at: &BinlogPosition,
    ) {
        let gtid = applied.as_ref().map(|a| match a {
            Applied::Maria(gtid) => gtid.to_string(),
            Applied::Mysql(gtid) => gtid.to_string(),
        });
        self.open.current = Some(Transaction {
            gtid_json: gtid_json(gtid.as_deref()),
            applied,
            explicit,
            held: Default::default(),
            begin_at: begin_at.clone(),
            xa: false,
            xid: None,
        });
    }

    /// Holds an event in the lookahead buffer, spilling the oldest ones (without xid) past the
    /// cap.
    pub(super) async fn hold(&mut self, event: OutboundEvent) -> Result<(), SourceError> {
        if self.open.skip > 0 {
            // Sent before the connection was lost; see `forget_open_transaction`.
            self.open.skip -= 1;
            self.open.sent += 1;
            return Ok(());
        }
        let cap = self.config.lookahead_bytes;
        let catching_up = self.catch_up.is_some();
        let transaction = self.open.current.as_mut().expect("a transaction is open");
        if catching_up && !transaction.xa {
            // Delivered before the checkpoint; see `xa::CatchUp`.
            return Ok(());
        }
        transaction.held.push(event);
        if transaction.xa {
            // Sent at its XA COMMIT, whole: it can never spill.
            if self.prepared.bytes() + transaction.held.bytes() > cap {
                return Err(SourceError::UnsupportedEvent {
                    event: "XA transaction".into(),
                    position: transaction.begin_at.clone(),
                    reason: format!("prepared XA transactions hold more than mysql.transaction_lookahead_bytes ({cap}) of rows until they are committed; raise it"),
                });
            }
            return Ok(());
        }
        if transaction.held.bytes() > cap && transaction.held.len() > 1 {
            // Sent as they are: `"xid":null,"commit":false`, in batches.
            let spilled = transaction.held.take_all_but_last();
            let n_spilled = spilled.len();
            self.send_batches(spilled).await?;
            self.open.sent += n_spilled;
        }
        Ok(())
    }

    /// Ends the open transaction at `end`: releases its events stamped with `xid`, the last
    /// with `commit: true`, then the boundary.
    pub(super) async fn commit(
        &mut self,
        xid: Option<u64>,
        end: BinlogPosition,
    ) -> Result<(), SourceError> {
        if let Some(transaction) = self.end_transaction() {
            let mut held = transaction.held;
            held.finish(xid);
            self.send_batches(held).await?;
        }
        self.emit_boundary(end).await
    }

    /// Closes the open transaction (if any): its GTID joins the state, per-transaction state
    /// is reset. Returns it, with the events it holds.
    pub(super) fn end_transaction(&mut self) -> Option<Transaction> {
        self.open.standalone = false;
        self.open.sent = 0;
        self.open.skip = 0;
        // Servers send every table's TABLE_MAP again in each transaction that uses it, so the
        // cache never needs to outlive one: clearing it keeps memory flat as table ids grow.
        self.tables.clear();
        let transaction = self.open.current.take()?;
        match (self.gtid_state.as_mut(), &transaction.applied) {
            (Some(state), Some(Applied::Maria(gtid))) => state.apply(*gtid),
            (Some(state), Some(Applied::Mysql(gtid))) => state.apply_mysql(gtid),
            _ => {}
        }
        Some(transaction)
    }

    /// XA_PREPARE: the open XA transaction's rows are held until it is decided; see [`xa`].
    pub(super) async fn xa_prepared(
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
                bytes: transaction.held.bytes(),
                events: transaction.held.into_events(),
            });
        }
        self.emit_boundary(end).await
    }

    /// `XA COMMIT` (sends the prepared rows as one transaction, here) or `XA ROLLBACK` (drops
    /// them) of the prepared transaction `xid`, in a group of its own.
    pub(super) async fn xa_decided(
        &mut self,
        xid: &str,
        committed: bool,
        start: &BinlogPosition,
        end: BinlogPosition,
    ) -> Result<(), SourceError> {
        if self.open.current.is_none() {
            let gtid = self.open.pending_gtid.take().map(Applied::Mysql);
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
            let transaction = self.open.current.as_mut().expect("begun above");
            for event in prepared.events {
                transaction.held.push(event);
            }
        }
        self.commit(None, end).await
    }

    /// A transaction boundary: sent, then whatever snapshot chunk is due here.
    pub(super) async fn emit_boundary(
        &mut self,
        position: BinlogPosition,
    ) -> Result<(), SourceError> {
        if let Some(catch_up) = &self.catch_up {
            if catch_up.before_checkpoint(&position) {
                return Ok(());
            }
            tracing::info!(position = %position, prepared = self.prepared.checkpoint_list().len(), "read the prepared XA transactions of the checkpoint again");
            self.catch_up = None;
        }
        self.send_boundary(position).await?;
        self.place_snapshots().await
    }

    /// Sends a boundary at `position`, with the GTID state, prepared XA transactions and
    /// snapshot progress there.
    pub(super) async fn send_boundary(
        &mut self,
        position: BinlogPosition,
    ) -> Result<(), SourceError> {
        self.boundary = position.clone();
        self.metrics.boundary_read(&position);
        let point = ResumePoint {
            position,
            gtid: self.gtid_state.clone(),
        };
        self.send(Message::Boundary(Boundary {
            point,
            binlog_ts: self.last_ts,
            prepared: self.prepared.checkpoint_list(),
            snapshot: self.snapshot_state(),
        }))
        .await
    }

    /// Sends `held`'s events in order, in its batches of at most [`crate::stream::BATCH_BYTES`] of lines
    /// (a larger event alone): one channel operation per batch rather than per event.
    async fn send_batches(&mut self, held: Held) -> Result<(), SourceError> {
        for batch in held.into_batches() {
            self.send(Message::Events(batch)).await?;
        }
        Ok(())
    }

    pub(in crate::source) async fn send(&mut self, item: Message) -> Result<(), SourceError> {
        match &item {
            Message::Event(event) => {
                self.counts.events += 1;
                self.snapshot_sent(event);
            }
            Message::Events(events) => {
                self.counts.events += events.len() as u64;
                for event in events {
                    self.snapshot_sent(event);
                }
            }
            Message::Boundary(_) | Message::Comment(_) => {}
        }
        self.forward(item).await
    }

    /// Sends `item` as it is: a snapshot's own lines are not changes of the table.
    pub(super) async fn forward(&mut self, item: Message) -> Result<(), SourceError> {
        self.output
            .send(item)
            .await
            .map_err(|_| SourceError::SinkGone)
    }

    /// A statement standing alone (DDL, XA control): it is its own transaction. The next
    /// TABLE_MAP of an altered table carries its new columns. A TRUNCATE of a table in scope
    /// becomes a `truncate` event: every row removed at once, with no row images.
    pub(super) async fn standalone_statement(
        &mut self,
        kind: Statement,
        query: &QueryEvent<'_>,
        timestamp: u32,
        start: &BinlogPosition,
        end: BinlogPosition,
    ) -> Result<(), SourceError> {
        let text = query.query();
        let statement = text.trim();
        tracing::debug!(position = %start, statement = %truncate(statement, 200), "statement");
        if let Some(catalog) = &mut self.catalog {
            catalog.invalidate();
        }
        let is_ddl = kind == Statement::Ddl;
        if is_ddl {
            self.snapshot_ddl();
        }
        if self.open.current.is_none() {
            let gtid = self.open.pending_gtid.take().map(Applied::Mysql);
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
            let sent = self
                .config
                .changes
                .of(&database, &table)
                .is_none_or(|rule| rule.ops.sends(Op::Truncate));
            if self.config.filter.matches(&database, &table) && !sent {
                self.metrics.events_filtered_op.add(1);
            }
            if self.config.filter.matches(&database, &table) && sent {
                let prefix = line_prefix(
                    Op::Truncate,
                    &database,
                    &table,
                    u64::from(timestamp) * 1000,
                    start,
                );
                let gtid = match &self.open.current {
                    Some(transaction) => transaction.gtid_json.clone(),
                    None => gtid_json(None),
                };
                let name = TableName::new(&database, &table);
                let event = OutboundEvent {
                    key: name.shared(),
                    table: name,
                    position: start.clone(),
                    line: EventLine::build(&prefix, 0, &gtid, None, None, None),
                    moved_from: None,
                };
                self.hold(event).await?;
            }
        }
        if is_ddl && self.config.ddl_events {
            self.ddl_events(statement, &query.schema(), timestamp, start)
                .await?;
        }
        self.commit(None, end).await
    }

    /// A `ddl` event's `after`: the statement, and the table's columns as `information_schema`
    /// shows them now (`null` for a database, a dropped table, or one the account cannot
    /// see). The catalog was emptied for this statement (see `standalone_statement`).
    async fn ddl_after(
        &mut self,
        statement: &str,
        database: &str,
        table: &str,
    ) -> Result<Vec<u8>, SourceError> {
        let mut after = br#"{"statement":"#.to_vec();
        crate::event::write_json_str(&mut after, statement);
        after.extend_from_slice(br#","columns":"#);
        let found = match (&mut self.catalog, table.is_empty()) {
            (Some(catalog), false) => Some(catalog.table(database, table).await?),
            _ => None,
        };
        match found.filter(|t| !t.columns.is_empty()) {
            Some(found) => {
                let columns: Vec<serde_json::Value> = found
                    .columns
                    .iter()
                    .map(|c| serde_json::json!({"name": c.name, "type": c.column_type}))
                    .collect();
                crate::event::write_json(&mut after, &columns);
            }
            None => after.extend_from_slice(b"null"),
        }
        after.push(b'}');
        Ok(after)
    }

    /// `output.ddl`: a `ddl` event for each table (or database) in scope that `statement`
    /// changes, on its partition key, held in the statement's transaction.
    async fn ddl_events(
        &mut self,
        statement: &str,
        default_schema: &str,
        timestamp: u32,
        start: &BinlogPosition,
    ) -> Result<(), SourceError> {
        let gtid = match &self.open.current {
            Some(transaction) => transaction.gtid_json.clone(),
            None => gtid_json(None),
        };
        let mut row = 0;
        for target in ddl::targets(statement, default_schema) {
            let (database, table, key) = match target {
                DdlTarget::Table(database, table) => {
                    if !self.config.filter.matches(&database, &table) {
                        continue;
                    }
                    let name = TableName::new(&database, &table);
                    (database, table, name.shared())
                }
                DdlTarget::Database(database) => {
                    if !self.config.filter.covers_database(&database) {
                        continue;
                    }
                    // The database's key: `db.`, the table part empty.
                    let key = TableName::new(&database, "").shared();
                    (database, String::new(), key)
                }
            };
            let after = self.ddl_after(statement, &database, &table).await?;
            let ts_ms = u64::from(timestamp) * 1000;
            let prefix = line_prefix(Op::Ddl, &database, &table, ts_ms, start);
            let line = EventLine::build(&prefix, row, &gtid, None, None, Some(&after));
            row += 1;
            let event = OutboundEvent {
                table: TableName::new(&database, &table),
                key,
                position: start.clone(),
                line,
                moved_from: None,
            };
            self.hold(event).await?;
        }
        Ok(())
    }
}

//! Rows events: decoded into event lines, held in the open transaction.

use std::sync::Arc;

use mysql_common::binlog::events::{Event, RowsEventData};

use super::{unsupported, Applied, Reader};
use crate::{
    event::{gtid_json, line_prefix, EventLine},
    position::BinlogPosition,
    source::{decode, schema::TableSchema, SourceError},
    stream::{partition_key, OutboundEvent},
};

impl Reader {
    /// ROWS: each row becomes an event line, held in the open transaction. With an encoding
    /// pool the rows are encoded there and applied later, in order (see [`super::encoder`]).
    pub(super) async fn on_rows(
        &mut self,
        event: &Event,
        rows: &RowsEventData<'_>,
        start: &BinlogPosition,
    ) -> Result<(), SourceError> {
        let schema = match self.tables.get(&rows.table_id()) {
            Some(Some(schema)) => Arc::clone(schema),
            Some(None) => return Ok(()),
            None => {
                return Err(unsupported(
                    "ROWS",
                    start,
                    format!("no TABLE_MAP for table id {}", rows.table_id()),
                ))
            }
        };
        if self.encoder.is_some() {
            return self.submit_rows(event, schema, start).await;
        }
        let mut encoded = std::mem::take(&mut self.rows);
        let result = decode::encode_rows(&schema, rows, &mut encoded, self.config.max_event_bytes);
        let timestamp = event.header().timestamp();
        self.rows = self
            .apply_rows(&schema, encoded, result, timestamp, start)
            .await?;
        Ok(())
    }

    /// The rest of a rows event, once encoded: signals, then its rows held as event lines.
    /// Returns the encoded rows' buffer for reuse.
    pub(super) async fn apply_rows(
        &mut self,
        schema: &Arc<TableSchema>,
        encoded: decode::EncodedRows,
        result: Result<(), decode::DecodeError>,
        timestamp: u32,
        start: &BinlogPosition,
    ) -> Result<decode::EncodedRows, SourceError> {
        result.map_err(|source| SourceError::Decode {
            table: schema.name.clone(),
            position: start.clone(),
            source: Box::new(source),
        })?;
        if self.is_signal_table(&schema.name) {
            if self.open.current.as_ref().is_some_and(|t| t.xa) {
                // Read at its prepare, it may still roll back: never acted upon.
                tracing::warn!(position = %start, "rows of the signal table inside an XA transaction are ignored (it may still roll back): insert snapshot signals in an ordinary transaction");
            } else {
                self.snapshot_signals(&encoded, start);
            }
            if !self.config.filter.matches(&schema.database, &schema.table) {
                return Ok(encoded);
            }
        }
        self.metrics.row_events_read.add(encoded.len() as u64);
        if self.open.current.is_none() {
            let gtid = self.open.pending_gtid.take().map(Applied::Mysql);
            self.begin(gtid, true, start);
        }
        self.hold_rows(schema, &encoded, timestamp, start).await?;
        Ok(encoded)
    }

    /// Holds the decoded rows of one rows event as event lines.
    async fn hold_rows(
        &mut self,
        schema: &TableSchema,
        encoded: &decode::EncodedRows,
        timestamp: u32,
        start: &BinlogPosition,
    ) -> Result<(), SourceError> {
        let ts_ms = u64::from(timestamp) * 1000;
        // Inside a compressed transaction every rows event shares the payload's position,
        // so rows are numbered across the whole payload to keep position + row unique.
        let row_base = match &mut self.payload {
            Some(payload) => {
                let base = payload.rows;
                payload.rows += encoded.len() as u32;
                base
            }
            None => 0,
        };
        let prefix = line_prefix(encoded.op(), &schema.database, &schema.table, ts_ms, start);
        let gtid = match &self.open.current {
            Some(transaction) => transaction.gtid_json.clone(),
            None => gtid_json(None),
        };
        let by_primary_key = self.config.partition_by_primary_key;
        if let Some(changes) = &schema.changes {
            if !changes.ops.sends(encoded.op()) {
                // Read, not sent: the transaction's boundary still moves the checkpoint.
                self.metrics.events_filtered_op.add(encoded.len() as u64);
                return Ok(());
            }
        }
        for (row, json) in encoded.iter().enumerate() {
            if json.unchanged {
                self.metrics.events_filtered_unchanged.add(1);
                continue;
            }
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
                moved_from: json
                    .before_key
                    .filter(|before| Some(*before) != json.primary_key)
                    .map(Box::from),
            };
            self.hold(event).await?;
        }
        Ok(())
    }
}

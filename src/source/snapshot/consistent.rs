//! The consistent reads a snapshot's chunks are taken in (MariaDB's
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT`), and the binlog position each saw.

use mysql_async::{prelude::Queryable, Conn};

use super::SnapshotError;
use crate::{position::BinlogPosition, source::SourceError};

/// The binlog position of the open consistent read (MariaDB's `binlog_snapshot_file` and
/// `binlog_snapshot_position`).
pub(super) async fn snapshot_position(conn: &mut Conn) -> Result<BinlogPosition, SourceError> {
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|source| SourceError::Query {
            what: "reading the binlog position of a consistent read",
            source,
        })?;
    let value = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    match (
        value("binlog_snapshot_file"),
        value("binlog_snapshot_position"),
    ) {
        (Some(file), Some(offset)) if !file.is_empty() => offset
            .parse()
            .ok()
            .and_then(|offset| BinlogPosition::new(file, offset).ok()),
        _ => None,
    }
    .ok_or_else(|| SnapshotError::NoSnapshotPosition.into())
}

/// The binlog position a consistent read would see now, read in one of its own: where a
/// table that no longer exists has no rows.
pub(crate) async fn consistent_position(conn: &mut Conn) -> Result<BinlogPosition, SourceError> {
    let at = open_consistent_read(conn).await;
    let ended = end_consistent_read(conn).await;
    let at = at?;
    ended?;
    Ok(at)
}

/// Ends a consistent read (read-only: ending it cannot lose anything, whatever happened in
/// it).
pub(crate) async fn end_consistent_read(conn: &mut Conn) -> Result<(), SourceError> {
    conn.query_drop("COMMIT")
        .await
        .map_err(|source| SourceError::Query {
            what: "ending a consistent read",
            source,
        })
}

/// Opens a read-only consistent read and returns its binlog position; the caller ends it
/// (`COMMIT`) whatever happens.
pub(crate) async fn open_consistent_read(conn: &mut Conn) -> Result<BinlogPosition, SourceError> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|source| SourceError::Query {
            what: "opening a consistent read",
            source,
        })?;
    snapshot_position(conn).await
}

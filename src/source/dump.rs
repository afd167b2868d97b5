//! Requesting the binlog stream (COM_BINLOG_DUMP from a file position, MariaDB's
//! `@slave_connect_state` or MySQL's COM_BINLOG_DUMP_GTID from a GTID state) with server
//! heartbeats, and classifying the stream's errors.

use std::time::Duration;

use mysql_async::{prelude::Queryable, BinlogStream, BinlogStreamRequest, Conn, DriverError};

use super::{
    connect::{
        server_code, ER_ACCESS_DENIED, ER_MASTER_FATAL_ERROR_READING_BINLOG, ER_SLAVE_SAME_ID,
    },
    SourceError,
};
use crate::position::{BinlogPosition, GtidState};

/// Turns `conn` into a binlog stream from `position`, with server heartbeats every
/// `heartbeat`.
pub(crate) async fn open_stream(
    conn: Conn,
    server_id: u32,
    position: &BinlogPosition,
    heartbeat: Duration,
) -> Result<BinlogStream, SourceError> {
    open(
        conn,
        server_id,
        position.file().as_bytes(),
        position.offset(),
        heartbeat,
    )
    .await
    .map_err(|error| stream_error(error, position))
}

/// Session variables every binlog request needs: heartbeats, and MariaDB's GTID events.
async fn set_heartbeat(conn: &mut Conn, heartbeat: Duration) {
    // Without the capability, MariaDB rewrites its GTID events into BEGIN queries.
    for statement in [
        "SET @mariadb_slave_capability=4".to_owned(),
        format!("SET @master_heartbeat_period={}", heartbeat.as_nanos()),
        format!("SET @source_heartbeat_period={}", heartbeat.as_nanos()),
    ] {
        // Each server knows only some of these names; the ones it lacks are harmless.
        let _ignored: Result<(), _> = conn.query_drop(statement).await;
    }
}

async fn open(
    mut conn: Conn,
    server_id: u32,
    file: &[u8],
    offset: u64,
    heartbeat: Duration,
) -> Result<BinlogStream, mysql_async::Error> {
    set_heartbeat(&mut conn, heartbeat).await;
    let request = BinlogStreamRequest::new(server_id)
        .with_filename(file)
        .with_pos(offset);
    // The reader decompresses transactions itself, streaming (see vendor/README.md).
    Ok(conn
        .get_binlog_stream(request)
        .await?
        .keep_payloads_compressed())
}

/// Turns `conn` into a binlog stream that starts after the GTID state `state` (a MariaDB
/// position or a MySQL set), on any server of the topology. `position` is only for error
/// messages.
pub(crate) async fn open_stream_gtid(
    conn: Conn,
    server_id: u32,
    state: &GtidState,
    position: &BinlogPosition,
    heartbeat: Duration,
) -> Result<BinlogStream, SourceError> {
    if state.is_mysql() {
        open_stream_mysql_gtid(conn, server_id, state, position, heartbeat).await
    } else {
        open_stream_mariadb_gtid(conn, server_id, state, position, heartbeat).await
    }
}

async fn open_stream_mariadb_gtid(
    mut conn: Conn,
    server_id: u32,
    state: &GtidState,
    position: &BinlogPosition,
    heartbeat: Duration,
) -> Result<BinlogStream, SourceError> {
    // Before asking: the server refuses a purged position only on the first read, too late
    // for the start to recover from it (at startup and at every reconnect, since a long outage
    // can outlast the retention).
    super::connect::ensure_mariadb_gtids_available(&mut conn, state, position).await?;
    // MariaDB has no COM_BINLOG_DUMP_GTID: the GTID start goes through session variables and an
    // empty file name (see docs: mysql_async gap 4).
    conn.exec_drop("SET @slave_connect_state = ?", (state.to_string(),))
        .await
        .map_err(|source| SourceError::Query {
            what: "setting the GTID start",
            source,
        })?;
    for statement in [
        "SET @slave_gtid_strict_mode = 0",
        "SET @slave_gtid_ignore_duplicates = 0",
    ] {
        conn.query_drop(statement)
            .await
            .map_err(|source| SourceError::Query {
                what: "setting the GTID start",
                source,
            })?;
    }
    tracing::info!(gtid = %state, "requesting the binlog by GTID");
    open(conn, server_id, b"", 4, heartbeat)
        .await
        .map_err(|error| stream_error(error, position))
}

/// Opens a MySQL binlog stream from a GTID set (COM_BINLOG_DUMP_GTID): the server sends every
/// transaction not in `state`, from whichever file holds the first one.
async fn open_stream_mysql_gtid(
    mut conn: Conn,
    server_id: u32,
    state: &GtidState,
    position: &BinlogPosition,
    heartbeat: Duration,
) -> Result<BinlogStream, SourceError> {
    use mysql_common::packets::{GnoInterval, Sid, Tag};
    set_heartbeat(&mut conn, heartbeat).await;
    let mut sids = Vec::new();
    for (uuid, tag, intervals) in state.mysql_sids() {
        let mut sid = Sid::new(uuid).with_intervals(
            intervals
                .into_iter()
                .map(|(start, end)| GnoInterval::new(start, end))
                .collect(),
        );
        if let Some(tag) = tag {
            let tag = Tag::new(tag.to_owned()).map_err(|e| SourceError::Protocol {
                message: format!("GTID tag {tag:?} cannot be sent to the server: {e}"),
            })?;
            sid = sid.with_tag(tag);
        }
        sids.push(sid);
    }
    tracing::info!(gtid = %state, "requesting the binlog by GTID set");
    let request = BinlogStreamRequest::new(server_id)
        .with_gtid()
        .with_gtid_set(sids);
    conn.get_binlog_stream(request)
        .await
        .map(BinlogStream::keep_payloads_compressed)
        .map_err(|error| stream_error(error, position))
}

/// Classifies an error of the binlog stream.
pub(crate) fn stream_error(error: mysql_async::Error, position: &BinlogPosition) -> SourceError {
    if is_packet_too_large(&error) {
        return SourceError::EventTooLarge {
            position: position.clone(),
        };
    }
    let same_id = |error: &mysql_async::Error| {
        let text = error.to_string();
        text.contains("same server_id")
            || text.contains("same server_uuid")
            || text.contains("same server-uuid")
    };
    match server_code(&error) {
        // MySQL reports a duplicate replica as a fatal binlog read error with this text.
        Some(ER_SLAVE_SAME_ID) => SourceError::ServerIdInUse {
            position: position.clone(),
            message: error.to_string(),
        },
        Some(ER_MASTER_FATAL_ERROR_READING_BINLOG) if same_id(&error) => {
            SourceError::ServerIdInUse {
                position: position.clone(),
                message: error.to_string(),
            }
        }
        Some(ER_MASTER_FATAL_ERROR_READING_BINLOG) => SourceError::PositionNotOnServer {
            position: position.clone(),
            reason: error.to_string(),
            available: "see SHOW BINARY LOGS".into(),
        },
        Some(ER_ACCESS_DENIED) => SourceError::MissingPrivilege {
            privilege: "REPLICATION SLAVE",
            message: error.to_string(),
        },
        _ => SourceError::ConnectionLost {
            position: position.clone(),
            source: error,
        },
    }
}

/// Whether the driver refused a packet over its `max_allowed_packet` (`mysql.max_event_bytes`).
fn is_packet_too_large(error: &mysql_async::Error) -> bool {
    use mysql_common::proto::codec::error::PacketCodecError;
    match error {
        mysql_async::Error::Driver(DriverError::PacketTooLarge) => true,
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<PacketCodecError>())
            .is_some_and(|e| matches!(e, PacketCodecError::PacketTooLarge)),
        _ => false,
    }
}

//! Talking to the server outside the binlog stream: connecting, verifying the settings the
//! daemon depends on, finding positions, and requesting the stream.
//!
//! Connection options follow `docs` measurements of `mysql_async`: TCP always
//! (`prefer_socket(false)`, else a loopback connection silently moves to the unix socket), and
//! the packet limit set from `mysql.max_event_bytes` (1 GiB by default), since the client
//! otherwise takes the server's `max_allowed_packet` and fails on larger row events. The
//! driver holds a whole event while reading it, so that limit is also what bounds its memory
//! for one huge row; an event over it stops the daemon ([`SourceError::EventTooLarge`]).

use std::{path::PathBuf, time::Duration};

use mysql_async::{prelude::Queryable, Conn, DriverError, OptsBuilder, SslOpts};

pub(crate) use super::dump::{open_stream, open_stream_gtid, stream_error};
use super::SourceError;
use crate::{
    config::{MysqlConfig, TlsMode},
    position::{BinlogPosition, GtidState},
};

/// How long connecting (TCP, TLS, login) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `ER_ACCESS_DENIED_ERROR`
pub(crate) const ER_ACCESS_DENIED: u16 = 1045;
/// `ER_MASTER_FATAL_ERROR_READING_BINLOG`: the requested position or GTID is not on the server.
pub(crate) const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: a privilege is missing.
pub(crate) const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;
/// MariaDB's `ER_SLAVE_SAME_ID`: a replica with the same `server_id` connected, and the server
/// ended this one's binlog dump (<https://mariadb.com/kb/en/mariadb-error-codes/>).
pub(crate) const ER_SLAVE_SAME_ID: u16 = 4052;

/// What the daemon learned about the server at startup.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    /// `@@version`.
    pub(crate) version: String,
    /// MariaDB rather than MySQL.
    pub(crate) is_mariadb: bool,
    /// Events carry CRC32 checksums.
    pub(crate) checksum_crc32: bool,
    /// `binlog_row_metadata=FULL`: every TABLE_MAP names its columns.
    pub(crate) row_metadata_full: bool,
    /// How long the server keeps binlog files; `None` when it never removes them.
    pub(crate) binlog_retention: Option<std::time::Duration>,
    /// Warnings that do not stop `run` (for `check` and the log).
    pub(crate) warnings: Vec<String>,
}

/// Opens a connection, with TLS as `config.tls` says.
pub async fn connect(config: &MysqlConfig) -> Result<Conn, SourceError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(Some(config.password.expose().to_owned()))
        .prefer_socket(false)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .max_allowed_packet(Some(config.max_event_bytes));
    let unverified = || {
        SslOpts::default()
            .with_danger_accept_invalid_certs(true)
            .with_danger_skip_domain_validation(true)
    };
    let verified = |ca: &Option<PathBuf>| match ca {
        Some(path) => SslOpts::default().with_root_certs(vec![path.clone().into()]),
        None => SslOpts::default(),
    };
    let attempt = async {
        match &config.tls {
            TlsMode::Disabled => Conn::new(opts).await,
            TlsMode::Required => Conn::new(opts.ssl_opts(unverified())).await,
            TlsMode::VerifyCa(ca) => {
                Conn::new(opts.ssl_opts(verified(ca).with_danger_skip_domain_validation(true)))
                    .await
            }
            TlsMode::VerifyIdentity(ca) => Conn::new(opts.ssl_opts(verified(ca))).await,
            TlsMode::Preferred => match Conn::new(opts.clone().ssl_opts(unverified())).await {
                Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) => {
                    tracing::debug!(
                        "the server offers no TLS; connecting without it (tls_mode = preferred)"
                    );
                    Conn::new(opts).await
                }
                other => other,
            },
        }
    };
    // A frozen server accepts the TCP connection and then says nothing.
    let result = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_elapsed) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ),
        ))),
    };
    result.map_err(|error| match server_code(&error) {
        Some(ER_ACCESS_DENIED) => SourceError::AccessDenied {
            user: config.user.clone(),
            host: config.host.clone(),
            message: error.to_string(),
        },
        _ => SourceError::Connect {
            address: format!("{}:{}", config.host, config.port),
            source: error,
        },
    })
}

/// The server error code inside a `mysql_async` error, if it is one.
pub(crate) fn server_code(error: &mysql_async::Error) -> Option<u16> {
    match error {
        mysql_async::Error::Server(server) => Some(server.code),
        _ => None,
    }
}

fn query_error(what: &'static str) -> impl FnOnce(mysql_async::Error) -> SourceError {
    move |source| SourceError::Query { what, source }
}

/// Reads a global variable; `None` when the server does not have it.
async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, SourceError> {
    let row: Option<(String, Option<String>)> = conn
        .query_first(format!("SHOW GLOBAL VARIABLES LIKE '{name}'"))
        .await
        .map_err(query_error("reading server variables"))?;
    Ok(row.and_then(|(_, value)| value))
}

/// Checks the settings `run` depends on. Returns the server facts, or the first setting that
/// stops replication, with what to change.
pub(crate) async fn check_server(conn: &mut Conn) -> Result<ServerInfo, SourceError> {
    let version = variable(conn, "version").await?.unwrap_or_default();
    let is_mariadb = version.to_ascii_lowercase().contains("mariadb");
    let mut warnings = Vec::new();
    let require = |setting: &'static str, expected: &'static str, actual: Option<String>| {
        let actual = actual.unwrap_or_else(|| "(not set)".into());
        if actual.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(SourceError::ServerMisconfigured {
                setting,
                expected,
                actual,
            })
        }
    };
    require("log_bin", "ON", variable(conn, "log_bin").await?)?;
    require(
        "binlog_format",
        "ROW",
        variable(conn, "binlog_format").await?,
    )?;
    // Column names come from the table-map metadata; without FULL the events have none, and
    // they come from information_schema instead (see `catalog`).
    let row_metadata = variable(conn, "binlog_row_metadata").await?;
    let row_metadata_full = row_metadata
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("FULL"));
    if !row_metadata_full {
        warnings.push(format!(
            "binlog_row_metadata is {}, not FULL: column names, ENUM/SET labels and primary keys come from information_schema, which describes tables as they are now; replaying binlog from before a schema change, or lagging across one, can stop the daemon or name columns as they are named now. Set binlog_row_metadata=FULL to remove this limit",
            row_metadata.as_deref().unwrap_or("not supported by this server")
        ));
    }
    if is_mariadb {
        // Compressed row events cannot be decoded yet, and skipping them would lose changes.
        require(
            "log_bin_compress",
            "OFF",
            variable(conn, "log_bin_compress").await?,
        )?;
    }
    let row_image = variable(conn, "binlog_row_image")
        .await?
        .unwrap_or_default();
    // MySQL 8 partial JSON updates carry diffs, which the reader applies to the before
    // image's document: without FULL before images the first one would stop the daemon.
    // (Compressed transactions, `binlog_transaction_compression`, are read as they come.)
    let value_options = variable(conn, "binlog_row_value_options")
        .await?
        .unwrap_or_default();
    partial_json_needs_full_images(&value_options, &row_image)?;
    if !row_image.eq_ignore_ascii_case("FULL") {
        warnings.push(format!(
            "binlog_row_image is {row_image}, not FULL: update and delete events will carry only the columns the server logs"
        ));
    }
    let checksum = variable(conn, "binlog_checksum").await?.unwrap_or_default();
    let binlog_retention = binlog_retention(conn, &mut warnings).await?;
    Ok(ServerInfo {
        version,
        is_mariadb,
        checksum_crc32: checksum.eq_ignore_ascii_case("CRC32"),
        row_metadata_full,
        binlog_retention,
        warnings,
    })
}

/// `binlog_row_value_options=PARTIAL_JSON` logs JSON updates as diffs of the before image's
/// document, which only FULL before images hold.
fn partial_json_needs_full_images(value_options: &str, row_image: &str) -> Result<(), SourceError> {
    if value_options.to_ascii_uppercase().contains("PARTIAL_JSON")
        && !row_image.eq_ignore_ascii_case("FULL")
    {
        return Err(SourceError::ServerMisconfigured {
            setting: "binlog_row_image",
            expected: "FULL (binlog_row_value_options=PARTIAL_JSON logs JSON updates as diffs of the before image's document; or set binlog_row_value_options='')",
            actual: row_image.to_owned(),
        });
    }
    Ok(())
}

/// How long the server keeps binlog files. On RDS and Aurora MySQL the procedure-set
/// `binlog retention hours` governs (NULL means binlogs are not kept for replicas at all);
/// elsewhere `binlog_expire_logs_seconds`, or `expire_logs_days` where that is all there is.
/// `None` when the server never removes them.
async fn binlog_retention(
    conn: &mut Conn,
    warnings: &mut Vec<String>,
) -> Result<Option<std::time::Duration>, SourceError> {
    use std::time::Duration;
    // Only RDS has this table; anywhere else the query fails and the variables decide.
    let rds: Result<Option<(Option<String>,)>, _> = conn
        .query_first(
            "SELECT value FROM mysql.rds_configuration WHERE name = 'binlog retention hours'",
        )
        .await;
    if let Ok(Some((value,))) = rds {
        return Ok(Some(
            match value.and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(hours) => Duration::from_secs(hours * 3600),
                None => {
                    warnings.push("RDS 'binlog retention hours' is NULL: binlogs are not kept for replicas, so a stopped or lagging daemon loses its position; run CALL mysql.rds_set_configuration('binlog retention hours', 168)".into());
                    Duration::ZERO
                }
            },
        ));
    }
    let seconds = variable(conn, "binlog_expire_logs_seconds")
        .await?
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if seconds > 0 {
        return Ok(Some(Duration::from_secs(seconds)));
    }
    let days = variable(conn, "expire_logs_days")
        .await?
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok((days > 0.0).then(|| Duration::from_secs_f64(days * 86_400.0)))
}

/// Whether the account holds REPLICATION SLAVE (to stream) and REPLICATION CLIENT / BINLOG
/// MONITOR (to list binlogs); returns the missing ones.
pub(crate) async fn missing_privileges(conn: &mut Conn) -> Result<Vec<&'static str>, SourceError> {
    let grants: Vec<String> = conn
        .query("SHOW GRANTS")
        .await
        .map_err(query_error("reading the account's grants"))?;
    let grants = grants.join("\n").to_ascii_uppercase();
    let all = grants.contains("ALL PRIVILEGES ON *.*");
    let mut missing = Vec::new();
    if !all && !grants.contains("REPLICATION SLAVE") && !grants.contains("REPLICATION REPLICA") {
        missing.push("REPLICATION SLAVE");
    }
    if !all
        && !grants.contains("REPLICATION CLIENT")
        && !grants.contains("BINLOG MONITOR")
        && !grants.contains("SUPER")
    {
        missing.push("REPLICATION CLIENT");
    }
    Ok(missing)
}

/// The server's current end of binlog.
pub(crate) async fn current_position(conn: &mut Conn) -> Result<BinlogPosition, SourceError> {
    Ok(current_status(conn).await?.0)
}

/// The server's current end of binlog and, on MySQL, the GTID set executed up to it
/// (`Executed_Gtid_Set`, read in the same statement so that the two agree).
pub(crate) async fn current_status(
    conn: &mut Conn,
) -> Result<(BinlogPosition, Option<GtidState>), SourceError> {
    // MySQL 8.4 removed SHOW MASTER STATUS; MariaDB and older MySQL lack the new form.
    let mut row: Option<mysql_async::Row> = None;
    for statement in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
        match conn.query_first(statement).await {
            Ok(found) => {
                row = found;
                break;
            }
            Err(error) if server_code(&error) == Some(ER_SPECIFIC_ACCESS_DENIED) => {
                return Err(SourceError::MissingPrivilege {
                    privilege: "REPLICATION CLIENT",
                    message: error.to_string(),
                })
            }
            Err(_) => continue,
        }
    }
    let row = row.ok_or(SourceError::ServerMisconfigured {
        setting: "log_bin",
        expected: "ON",
        actual: "no binary log status".into(),
    })?;
    let file: Option<String> = row.get(0);
    let offset: Option<u64> = row.get(1);
    // MySQL's fifth column; MariaDB has four. MySQL prints long sets over several lines.
    let executed: Option<String> = if row.len() > 4 { row.get(4) } else { None };
    let gtid = match executed {
        Some(text) => Some(
            text.replace('\n', "")
                .parse()
                .map_err(|e| SourceError::Protocol {
                    message: format!("the server reported an invalid Executed_Gtid_Set: {e}"),
                })?,
        ),
        None => None,
    };
    match (file, offset) {
        (Some(file), Some(offset)) => BinlogPosition::new(file, offset)
            .map(|position| (position, gtid))
            .map_err(|e| SourceError::Protocol {
                message: format!("the server reported an invalid position: {e}"),
            }),
        _ => Err(SourceError::Protocol {
            message: "binary log status has no file and position".into(),
        }),
    }
}

/// Whether a MySQL server assigns GTIDs (`gtid_mode=ON`), so that a GTID set resumes.
pub(crate) async fn mysql_gtid_mode_on(conn: &mut Conn) -> Result<bool, SourceError> {
    Ok(variable(conn, "gtid_mode")
        .await?
        .is_some_and(|mode| mode.eq_ignore_ascii_case("ON")))
}

/// Fails when the MySQL server purged GTIDs that `state` has not seen: resuming from it would
/// skip them.
pub(crate) async fn ensure_gtids_available(
    conn: &mut Conn,
    state: &GtidState,
    position: &BinlogPosition,
) -> Result<(), SourceError> {
    let purged: GtidState = variable(conn, "gtid_purged")
        .await?
        .unwrap_or_default()
        .replace('\n', "")
        .parse()
        .map_err(|e| SourceError::Protocol {
            message: format!("the server reported an invalid gtid_purged: {e}"),
        })?;
    let missing = state.missing_from(&purged);
    if missing.is_empty() {
        return Ok(());
    }
    Err(SourceError::PositionNotOnServer {
        position: position.clone(),
        reason: format!("the server purged GTIDs {missing} that the checkpoint's GTID set {state} does not contain"),
        available: format!("gtid_purged {purged}"),
    })
}

/// Fails when a MariaDB server purged transactions that follow the GTID position `state`.
/// MariaDB accepts such a request and refuses it only on the stream's first read (error 1236),
/// after the start has been taken as good: `snapshot.mode = "when_needed"` could not heal it,
/// and the message named no file. So the position is compared with where the oldest file
/// starts (its GTID list, `BINLOG_GTID_POS` at offset 4) before each request.
pub(crate) async fn ensure_mariadb_gtids_available(
    conn: &mut Conn,
    state: &GtidState,
    position: &BinlogPosition,
) -> Result<(), SourceError> {
    let logs = binary_logs(conn).await?;
    let Some((oldest, _)) = logs.first() else {
        return Ok(());
    };
    let start = BinlogPosition::new(oldest.clone(), 4).map_err(|e| SourceError::Protocol {
        message: format!("the server listed an invalid binlog file name {oldest:?}: {e}"),
    })?;
    let Some(first) = gtid_state_at(conn, &start).await else {
        return Err(SourceError::PositionNotOnServer {
            position: position.clone(),
            reason: format!(
                "the server cannot say which GTIDs its oldest binlog {oldest} starts after (BINLOG_GTID_POS returned nothing), so the checkpoint's GTID position {state} cannot be checked"
            ),
            available: format!("oldest binlog {oldest}"),
        });
    };
    let behind = state.mariadb_behind(&first);
    if behind.is_empty() {
        return Ok(());
    }
    let behind: Vec<String> = behind.iter().map(ToString::to_string).collect();
    Err(SourceError::PositionNotOnServer {
        position: position.clone(),
        reason: format!(
            "the server's oldest binlog {oldest} starts after GTID {}, and the checkpoint's GTID position {state} is before that: the transactions in between were purged",
            behind.join(",")
        ),
        available: format!("oldest binlog {oldest}, which starts after GTID position {first}"),
    })
}

/// The binlog files the server still has, oldest first, with their sizes.
pub(crate) async fn binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>, SourceError> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.map_err(|error| {
        if server_code(&error) == Some(ER_SPECIFIC_ACCESS_DENIED) {
            SourceError::MissingPrivilege {
                privilege: "REPLICATION CLIENT",
                message: error.to_string(),
            }
        } else {
            SourceError::Query {
                what: "listing binary logs",
                source: error,
            }
        }
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.get::<String, _>(0)?, row.get::<u64, _>(1)?)))
        .collect())
}

/// Fails with [`SourceError::PositionNotOnServer`] unless `position` is inside a binlog file
/// the server still has.
pub(crate) async fn ensure_position_available(
    conn: &mut Conn,
    position: &BinlogPosition,
) -> Result<(), SourceError> {
    let logs = binary_logs(conn).await?;
    match logs.iter().find(|(file, _)| file == position.file()) {
        Some((_, size)) if position.offset() <= *size => Ok(()),
        found => Err(SourceError::PositionNotOnServer {
            position: position.clone(),
            reason: match found {
                Some((_, size)) => format!("the file is only {size} bytes long"),
                None => "the file is not on the server (purged, or never existed)".into(),
            },
            available: match (logs.first(), logs.last()) {
                (Some((first, _)), Some((last, _))) => format!("{first} to {last}"),
                _ => "none".into(),
            },
        }),
    }
}

/// Event types (as `SHOW BINLOG EVENTS` names them) a stream may start at: the first event of
/// a transaction, or one between transactions.
const TRANSACTION_STARTS: &[&str] = &[
    "Gtid",
    "Anonymous_Gtid",
    "Query",
    "Gtid_list",
    "Binlog_checkpoint",
    "Format_desc",
    "Previous_gtids",
    "Rotate",
    "Stop",
];

/// Most events listed when looking for the transaction starts around a bad position: past
/// it, the message says where to look instead of scanning a whole 1 GiB file.
const NEARBY_SCAN_LIMIT: u64 = 200_000;

/// Fails with [`SourceError::NotATransactionStart`] unless `position` (already known to be
/// inside a file the server has) is where an event starts and a transaction may start: a
/// position inside an event, or at a row event in the middle of a transaction, would have the
/// reader decode garbage or rows without their table.
pub(crate) async fn ensure_transaction_start(
    conn: &mut Conn,
    position: &BinlogPosition,
) -> Result<(), SourceError> {
    let logs = binary_logs(conn).await?;
    let size = logs
        .iter()
        .find(|(file, _)| file == position.file())
        .map_or(0, |(_, size)| *size);
    // The end of a file is between transactions.
    if position.offset() == size {
        return Ok(());
    }
    let file = position.file().replace('\\', "\\\\").replace('\'', "\\'");
    let found: Result<Option<mysql_async::Row>, _> = conn
        .query_first(format!(
            "SHOW BINLOG EVENTS IN '{file}' FROM {} LIMIT 1",
            position.offset()
        ))
        .await;
    let event_type = match found {
        Ok(Some(row)) => {
            let pos = row.get::<u64, _>(1);
            let kind = row.get::<String, _>(2).unwrap_or_default();
            (pos == Some(position.offset())).then_some(kind)
        }
        Err(error) if server_code(&error) == Some(ER_SPECIFIC_ACCESS_DENIED) => {
            return Err(SourceError::MissingPrivilege {
                privilege: "REPLICATION SLAVE (to list binlog events)",
                message: error.to_string(),
            })
        }
        // The server could not read an event there: not an event boundary.
        Ok(None) | Err(_) => None,
    };
    if let Some(kind) = &event_type {
        if TRANSACTION_STARTS.contains(&kind.as_str()) {
            return Ok(());
        }
    }
    let (before, after) = transaction_starts_around(conn, &file, position.offset()).await;
    Err(SourceError::NotATransactionStart {
        position: position.clone(),
        found: match event_type {
            Some(kind) => format!("a {kind} event, inside a transaction"),
            None => "the middle of an event".into(),
        },
        nearby: match (before, after) {
            (None, None) => format!("none found in the first {NEARBY_SCAN_LIMIT} events of the file; list them with SHOW BINLOG EVENTS IN '{}'", position.file()),
            (before, after) => [before.map(|b| format!("{}:{b} before it", position.file())), after.map(|a| format!("{}:{a} after it", position.file()))]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
        },
    })
}

/// The last transaction start before `offset` and the first after it, from the file's event
/// list (at most [`NEARBY_SCAN_LIMIT`] events).
async fn transaction_starts_around(
    conn: &mut Conn,
    file: &str,
    offset: u64,
) -> (Option<u64>, Option<u64>) {
    const PAGE: u64 = 10_000;
    let mut before = None;
    let mut listed = 0;
    while listed < NEARBY_SCAN_LIMIT {
        let rows: Vec<mysql_async::Row> = match conn
            .query(format!(
                "SHOW BINLOG EVENTS IN '{file}' LIMIT {listed}, {PAGE}"
            ))
            .await
        {
            Ok(rows) => rows,
            Err(_) => break,
        };
        let n = rows.len() as u64;
        for row in rows {
            let (Some(pos), Some(kind)) = (row.get::<u64, _>(1), row.get::<String, _>(2)) else {
                continue;
            };
            if !TRANSACTION_STARTS.contains(&kind.as_str()) {
                continue;
            }
            if pos < offset {
                before = Some(pos);
            } else {
                return (before, Some(pos));
            }
        }
        if n < PAGE {
            break;
        }
        listed += n;
    }
    (before, None)
}

/// The MariaDB GTID state at a file position of this server (`BINLOG_GTID_POS`); `None` on
/// servers without it (MySQL) or when it cannot tell.
pub(crate) async fn gtid_state_at(conn: &mut Conn, position: &BinlogPosition) -> Option<GtidState> {
    let row: Result<Option<Option<String>>, _> = conn
        .exec_first(
            "SELECT BINLOG_GTID_POS(?, ?)",
            (position.file(), position.offset()),
        )
        .await;
    row.ok()
        .flatten()
        .flatten()
        .and_then(|text| text.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_is_accepted_with_full_row_images_and_refused_without() {
        for (options, image) in [
            ("", "MINIMAL"),
            ("", "FULL"),
            ("PARTIAL_JSON", "FULL"),
            ("partial_json", "full"),
        ] {
            assert!(
                partial_json_needs_full_images(options, image).is_ok(),
                "{options} {image}"
            );
        }
        for image in ["MINIMAL", "NOBLOB"] {
            let error = partial_json_needs_full_images("PARTIAL_JSON", image).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("binlog_row_image") && text.contains(image) && text.contains("FULL"),
                "{text}"
            );
        }
    }
}

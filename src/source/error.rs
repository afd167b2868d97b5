//! Why the reader stopped, each error classified where it is born: [`SourceError::is_transient`]
//! says whether reconnecting could help.

use super::{decode::DecodeError, integrity, schema::SchemaError, snapshot};
use crate::{
    event::TableName,
    position::{BinlogPosition, GtidState},
};

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
    #[error("binlog position {position} is not available on the server: {reason} (server has {available}); the changes since then are lost to binlog replication. Choose explicitly: --start-position FILE:POS (or --start-gtid), or --from-end to continue from now with --snapshot of the captured tables (snapshot.mode = \"when_needed\" does that by itself)")]
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
    /// `--start-gtid` names a GTID state this server cannot start from.
    #[error("--start-gtid {gtid} cannot start this server: MariaDB takes domain-server-sequence positions, MySQL (with gtid_mode=ON) GTID sets")]
    UnusableStartGtid {
        /// The state given.
        gtid: GtidState,
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
    #[error("cannot decode rows of {table} at {position}")]
    Decode {
        /// The table.
        table: TableName,
        /// Where the event starts.
        position: BinlogPosition,
        /// What is wrong.
        #[source]
        source: Box<DecodeError>,
    },
    /// A table a snapshot cannot read.
    #[error(transparent)]
    Snapshot(Box<snapshot::SnapshotError>),
    /// `[columns]` or `[changes]` rules a table cannot take (a primary-key column excluded or
    /// masked, a watched column missing), found at startup.
    #[error("{finding}")]
    ColumnRule {
        /// The rule, the table, the column, and what to do instead.
        finding: String,
    },
    /// A TABLE_MAP the daemon cannot use.
    #[error("at {position}")]
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
    pub(crate) fn is_transient(&self) -> bool {
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

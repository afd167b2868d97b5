//! One active instance per stream: a MySQL named lock held on a dedicated connection for the
//! whole run.
//!
//! The lock is named from the stream, so every daemon writing the same stream competes for it,
//! whatever task or host it runs on. A second instance waits as a standby, retrying every
//! second, and takes over the moment the first one exits or dies (the server releases a named
//! lock when its connection ends). ECS's default rolling deploy (start the new task, then stop
//! the old one) therefore hands over with no overlap: the new task waits until the old one has
//! drained, written its checkpoint and disconnected.
//!
//! The binlog reader checks the lock every heartbeat and before every reconnect. If the lock's
//! connection fails (a server restart ends every connection), the reader stops reading and
//! takes the lock again on a new connection before it resumes; if another instance took it
//! meanwhile, the run stops ([`SourceError::LockLost`]) rather than risk two writers.
//!
//! Holding the lock is also a lease on writing: [`keep`] checks it four times per heartbeat,
//! independently of the reader (which may be waiting on a full producer), and each successful
//! check opens the [`Fence`] the producer and the checkpoint writer obey; see `crate::fence`.

use std::time::Duration;

use mysql_async::{prelude::Queryable, Conn};
use tokio_util::sync::CancellationToken;

use super::{connect, SourceError};
use crate::{
    config::MysqlConfig,
    fence::{self, Fence},
    metrics::{Metrics, State},
};

/// MySQL's limit on a lock name's length.
const MAX_LOCK_NAME: usize = 64;

/// How long one GET_LOCK call waits before the standby checks for a stop request.
const ACQUIRE_WAIT_SECONDS: u32 = 1;

/// The lock name for a stream: `binlog-kinesis:<stream>`, or a stable hash of it when longer
/// than MySQL allows.
pub(crate) fn lock_name(stream: &str) -> String {
    let name = format!("binlog-kinesis:{stream}");
    if name.len() <= MAX_LOCK_NAME {
        return name;
    }
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let hash = stream.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("binlog-kinesis:{}:{hash:016x}", &stream[..20])
}

/// A held instance lock. Dropping it closes the connection, which releases the lock.
pub(crate) struct InstanceLock {
    config: MysqlConfig,
    /// The connection holding the lock; `None` after it failed, until [`Self::ensure`].
    conn: Option<Conn>,
    /// The server's id for the connection that holds (or held) the lock: after a network
    /// fault the server may keep that connection, and the lock, alive for hours.
    connection_id: u32,
    name: String,
    /// How long a lock query may take before the connection counts as dead.
    timeout: Duration,
}

impl InstanceLock {
    /// Waits until this instance holds the lock. Returns `None` if `stop` fires first.
    pub(crate) async fn acquire(
        config: &MysqlConfig,
        name: &str,
        stop: &CancellationToken,
        metrics: &Metrics,
    ) -> Result<Option<Self>, SourceError> {
        let mut conn = connect::connect(config).await?;
        let mut announced = false;
        loop {
            if try_lock(&mut conn, name, ACQUIRE_WAIT_SECONDS).await? {
                if announced {
                    tracing::info!(lock = name, "the active instance is gone: taking over");
                    metrics.set_state(State::Starting);
                }
                return Ok(Some(Self {
                    config: config.clone(),
                    connection_id: conn.id(),
                    conn: Some(conn),
                    name: name.to_owned(),
                    // Half a lease: a check that answers keeps the fence open.
                    timeout: fence::lease(config.heartbeat) / 2,
                }));
            }
            if !announced {
                tracing::info!(
                    lock = name,
                    "another instance is replicating to this stream: waiting as standby"
                );
                announced = true;
                metrics.set_state(State::Standby);
            }
            if stop.is_cancelled() {
                return Ok(None);
            }
        }
    }

    /// Makes sure the lock is still held, taking it again on a new connection if its
    /// connection failed (a server restart ends every connection). Fails permanently with
    /// [`SourceError::LockLost`] if another instance took it meanwhile.
    pub(crate) async fn ensure(&mut self) -> Result<(), SourceError> {
        if self.conn.is_some() {
            match self.check().await {
                Ok(()) => return Ok(()),
                Err(error @ SourceError::LockLost { .. }) => return Err(error),
                // The connection is gone: take the lock again below.
                Err(_) => {}
            }
        }
        let mut conn = connect::connect(&self.config).await?;
        if !try_lock(&mut conn, &self.name, 0).await? {
            // Our own old connection may still hold it on the server (a network fault the
            // server has not noticed): end that connection, then take the lock.
            let holder: Option<Option<u32>> = conn
                .exec_first("SELECT IS_USED_LOCK(?)", (&self.name,))
                .await
                .map_err(|source| SourceError::Query {
                    what: "checking the instance lock",
                    source,
                })?;
            if holder.flatten() != Some(self.connection_id) {
                return Err(self.taken());
            }
            tracing::info!(lock = %self.name, connection = self.connection_id, "ending this instance's stale lock connection");
            // It may end on its own meanwhile; either way the lock is free afterwards.
            let _gone: Result<(), _> = conn
                .query_drop(format!("KILL CONNECTION {}", self.connection_id))
                .await;
            if !try_lock(&mut conn, &self.name, ACQUIRE_WAIT_SECONDS * 5).await? {
                return Err(self.taken());
            }
        }
        tracing::info!(lock = %self.name, "instance lock taken again on a new connection");
        self.connection_id = conn.id();
        self.conn = Some(conn);
        Ok(())
    }

    fn taken(&self) -> SourceError {
        SourceError::LockLost {
            lock: self.name.clone(),
            reason: "another instance holds it now".into(),
        }
    }

    /// Checks that the lock is still held. A failed connection is a transient
    /// [`SourceError::LockConnectionLost`]: the caller stops reading and calls [`Self::ensure`]
    /// before reading again. A lock held by someone else is [`SourceError::LockLost`].
    pub(crate) async fn check(&mut self) -> Result<(), SourceError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(SourceError::LockConnectionLost {
                reason: "not connected".into(),
            });
        };
        // A frozen server or a silent network must not hang the reader: bound the check.
        match tokio::time::timeout(self.timeout, holds(conn, &self.name)).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(self.taken()),
            Ok(Err(error)) => {
                self.conn = None;
                Err(SourceError::LockConnectionLost {
                    reason: error.to_string(),
                })
            }
            Err(_elapsed) => {
                // A half-read answer leaves the connection unusable: drop it.
                self.conn = None;
                Err(SourceError::LockConnectionLost {
                    reason: format!("no answer within {} ms", self.timeout.as_millis()),
                })
            }
        }
    }
}

/// Keeps the write fence open while this instance holds the lock: checks it every quarter
/// lease (taking it again on a new connection after a connection fault), renews the fence on
/// every success, and closes it for good when another instance holds the lock. Ends then, or
/// when `stop` fires.
pub(crate) async fn keep(
    lock: std::sync::Arc<tokio::sync::Mutex<InstanceLock>>,
    fence: std::sync::Arc<Fence>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let lease = fence::lease(heartbeat);
    loop {
        let checked_at = tokio::time::Instant::now();
        let result = {
            let mut lock = lock.lock().await;
            match lock.check().await {
                Err(SourceError::LockConnectionLost { .. }) => lock.ensure().await,
                other => other,
            }
        };
        match result {
            Ok(()) => fence.renew(checked_at, lease),
            Err(error @ SourceError::LockLost { .. }) => {
                tracing::error!(error = %error, "another instance holds the instance lock: this one stops writing");
                fence.lose();
                return;
            }
            // The connection is down: the fence lapses until the lock is held again.
            Err(_) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(checked_at + lease / 4) => {}
        }
    }
}

/// `GET_LOCK(name, wait)`: whether this connection now holds the lock.
async fn try_lock(conn: &mut Conn, name: &str, wait_seconds: u32) -> Result<bool, SourceError> {
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, ?)", (name, wait_seconds))
        .await
        .map_err(|source| SourceError::Query {
            what: "taking the instance lock",
            source,
        })?;
    Ok(got.flatten() == Some(1))
}

/// Whether this connection holds the lock.
async fn holds(conn: &mut Conn, name: &str) -> Result<bool, SourceError> {
    let held: Option<Option<i64>> = conn
        .exec_first("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (name,))
        .await
        .map_err(|source| SourceError::Query {
            what: "checking the instance lock",
            source,
        })?;
    Ok(held.flatten() == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fit_mysql_and_are_stable() {
        assert_eq!(lock_name("cdc-events"), "binlog-kinesis:cdc-events");
        let long = "a".repeat(128);
        let name = lock_name(&long);
        assert!(name.len() <= MAX_LOCK_NAME, "{name}");
        assert_eq!(name, lock_name(&long));
        assert_ne!(name, lock_name(&"b".repeat(128)));
    }
}

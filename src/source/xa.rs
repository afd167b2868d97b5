//! XA transactions: rows that are in the binlog before they are committed.
//!
//! A two-phase XA transaction is written at `XA PREPARE` (its GTID, its rows, `XA END`, then an
//! XA_PREPARE event), and decided later in a group of its own, `XA COMMIT xid` or
//! `XA ROLLBACK xid`, possibly after other transactions have committed. Its rows belong to the
//! stream at the commit: they are held from the prepare until the decision (dropped at a
//! rollback), and sent as one transaction at the commit, with `xid: null` (an XA transaction
//! has no XID event) and `commit: true` on the last. `XA COMMIT ... ONE PHASE` is an ordinary
//! transaction.
//!
//! # Memory
//!
//! Held rows of all prepared transactions together may take at most
//! `mysql.transaction_lookahead_bytes`; past it the reader stops with a message saying what to
//! raise. Nothing is ever dropped to stay under it.
//!
//! # Resumption
//!
//! Every boundary carries the list of prepared, undecided transactions and where each starts;
//! the checkpoint stores it. A resume from a checkpoint with such a list starts reading at the
//! earliest of them and, until it reaches the checkpoint's position, keeps only the events of
//! those transactions ([`CatchUp`]): everything else there was delivered already. From the
//! checkpoint's position on, it reads as usual, and each held transaction is sent at its
//! `XA COMMIT`.

use std::collections::HashSet;

use crate::{
    position::{BinlogPosition, GtidState},
    stream::{OutboundEvent, PreparedXa},
};

/// A prepared transaction's held rows.
pub(crate) struct Prepared {
    /// Its XID as the binlog writes it.
    pub(crate) xid: String,
    /// Where its events start.
    pub(crate) start: BinlogPosition,
    /// Its row events, in order, each line already carrying the transaction's GTID.
    pub(crate) events: Vec<OutboundEvent>,
    /// Their bytes.
    pub(crate) bytes: usize,
}

/// The prepared, undecided transactions, in the order they were prepared.
#[derive(Default)]
pub(crate) struct PreparedSet {
    list: Vec<Prepared>,
    bytes: usize,
}

impl PreparedSet {
    /// Holds a newly prepared transaction.
    pub(crate) fn add(&mut self, prepared: Prepared) {
        self.bytes += prepared.bytes;
        self.list.push(prepared);
    }

    /// Takes the transaction `xid` out (at its commit or rollback).
    pub(crate) fn take(&mut self, xid: &str) -> Option<Prepared> {
        let index = self.list.iter().position(|p| p.xid == xid)?;
        let prepared = self.list.remove(index);
        self.bytes -= prepared.bytes;
        Some(prepared)
    }

    /// Bytes of rows held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets everything held (a catch-up read again from its start).
    pub(crate) fn clear(&mut self) {
        self.list.clear();
        self.bytes = 0;
    }

    /// What the checkpoint remembers of them.
    pub(crate) fn checkpoint_list(&self) -> Vec<PreparedXa> {
        self.list
            .iter()
            .map(|p| PreparedXa {
                xid: p.xid.clone(),
                position: p.start.clone(),
            })
            .collect()
    }
}

/// Reading again the prepared transactions a checkpoint lists, from the earliest one's start
/// up to the checkpoint's position, where everything else was delivered already.
#[derive(Debug, Clone)]
pub(crate) struct CatchUp {
    /// The checkpoint's position: from here on the reader reads as usual.
    pub(crate) until: BinlogPosition,
    /// The XIDs to hold again.
    pub(crate) pending: HashSet<String>,
    /// The GTID state at the start, restored when a reconnect starts the catch-up over.
    pub(crate) initial_gtid: Option<GtidState>,
}

impl CatchUp {
    /// Whether a transaction ending at `end` was delivered before the checkpoint. Positions
    /// that cannot be compared (another file name base) count as past it: the transactions
    /// after it are then sent again rather than lost.
    pub(crate) fn before_checkpoint(&self, end: &BinlogPosition) -> bool {
        end.try_cmp(&self.until) == Some(std::cmp::Ordering::Less)
    }
}

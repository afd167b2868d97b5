//! The write fence: whether this instance may still write to the stream and the checkpoint.
//!
//! The instance lock (`source::lock`) is a MySQL named lock; the server releases it the moment
//! its connection ends (a `KILL`, a network fault the server notices), and a standby takes it at
//! once, while this instance may not notice for a while. So holding the lock is turned into a
//! lease: every successful check of the lock opens the fence until the check's start plus
//! [`lease`]; the producer starts no PutRecords call and the checkpoint writer writes nothing
//! while the fence is closed. An instance that takes the lock over from one that did not
//! release it cleanly waits out that lease, plus the longest a call or a checkpoint write
//! started just before it may take ([`CALL_TIMEOUT`]), before it writes anything: by then the
//! old holder's fence is closed and its last writes have landed.
//!
//! # Invariant
//!
//! The fence is open at time `t` only if a lock check that started at or after `t - lease`
//! found this instance holding the lock. A check sees the lock before the server releases it,
//! and a standby takes it only after the release; so the old holder's fence closes at most
//! `lease` after the standby took the lock.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest one PutRecords call or one checkpoint write may take; a slower one is abandoned
/// and retried.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a successful lock check keeps the fence open: one heartbeat. The lock is checked
/// four times per lease, each check bounded by half a lease, so a healthy lock never lets it
/// lapse.
pub(crate) fn lease(heartbeat: Duration) -> Duration {
    heartbeat
}

/// How long an instance that takes the lock over from one that did not release it cleanly
/// waits before it writes: the old holder's lease, its last call or checkpoint write, and a
/// margin for clocks that run at slightly different rates.
pub(crate) fn takeover_wait(heartbeat: Duration, call_timeout: Duration) -> Duration {
    (lease(heartbeat) + call_timeout).mul_f64(1.1) + Duration::from_millis(500)
}

/// Open while this instance holds the lock; see the module documentation.
#[derive(Debug)]
pub(crate) struct Fence {
    base: Instant,
    /// Nanoseconds after `base` until which the fence is open; 0 when closed.
    open_until: AtomicU64,
    /// Fires when the lock is known to be held by another instance: this one must stop.
    lost: CancellationToken,
}

impl Fence {
    /// A closed fence.
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            open_until: AtomicU64::new(0),
            lost: CancellationToken::new(),
        }
    }

    /// A fence that never closes: for tests of the stages alone, and for sinks that write no
    /// shared stream (a local file, stdout).
    #[cfg(test)]
    pub(crate) fn always_open() -> Self {
        let fence = Self::new();
        fence.open_until.store(u64::MAX, Ordering::SeqCst);
        fence
    }

    /// A lock check that started at `checked_at` found the lock held: open until
    /// `checked_at + lease`.
    pub(crate) fn renew(&self, checked_at: Instant, lease: Duration) {
        if self.lost.is_cancelled() {
            return;
        }
        let until = (checked_at + lease).saturating_duration_since(self.base);
        let until = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.open_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Another instance holds the lock: closed for good.
    pub(crate) fn lose(&self) {
        self.open_until.store(0, Ordering::SeqCst);
        self.lost.cancel();
    }

    /// Whether writing is allowed now.
    pub(crate) fn is_open(&self) -> bool {
        let now = Instant::now()
            .saturating_duration_since(self.base)
            .as_nanos();
        !self.lost.is_cancelled() && now < u128::from(self.open_until.load(Ordering::SeqCst))
    }

    /// Whether the lock is known to be lost.
    #[cfg(test)]
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Completes when the lock is known to be lost.
    pub(crate) async fn lost(&self) {
        self.lost.cancelled().await;
    }
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_renewal_opens_the_fence_for_one_lease_from_the_check() {
        let fence = Fence::new();
        assert!(!fence.is_open());
        let checked_at = Instant::now();
        tokio::time::advance(Duration::from_millis(300)).await;
        fence.renew(checked_at, Duration::from_secs(1));
        assert!(fence.is_open());
        tokio::time::advance(Duration::from_millis(699)).await;
        assert!(fence.is_open());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!fence.is_open(), "closed one lease after the check started");
        // An older check never shortens a newer lease.
        fence.renew(Instant::now(), Duration::from_secs(1));
        fence.renew(checked_at, Duration::from_secs(1));
        assert!(fence.is_open());
        fence.lose();
        assert!(!fence.is_open() && fence.is_lost());
        fence.renew(Instant::now(), Duration::from_secs(1));
        assert!(!fence.is_open(), "a lost lock stays lost");
    }

    #[test]
    fn a_takeover_waits_out_the_lease_and_the_last_call() {
        let wait = takeover_wait(Duration::from_secs(5), CALL_TIMEOUT);
        assert!(wait > Duration::from_secs(15), "{wait:?}");
    }
}

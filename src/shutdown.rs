//! Signals to cancellation: the first SIGTERM or SIGINT asks for a graceful stop (the source
//! stops between transactions, everything downstream drains); a second one gives up on the
//! drain at once.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The two stages of stopping.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Fired by the first signal: stop reading, drain.
    pub graceful: CancellationToken,
    /// Fired by the second signal: stop draining.
    pub immediate: CancellationToken,
}

impl Shutdown {
    /// Installs the SIGTERM/SIGINT handlers and returns the tokens they fire.
    pub fn install() -> std::io::Result<Self> {
        let shutdown = Self::default();
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let tokens = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = terminate.recv() => "SIGTERM",
                    Some(()) = interrupt.recv() => "SIGINT",
                    else => break,
                };
                if tokens.graceful.is_cancelled() {
                    tracing::warn!(signal = name, "second signal: abandoning the drain; the checkpoint keeps what Kinesis acknowledged");
                    tokens.immediate.cancel();
                } else {
                    tracing::info!(
                        signal = name,
                        "stopping: finishing the current transaction, draining to Kinesis"
                    );
                    tokens.graceful.cancel();
                }
            }
        });
        Ok(shutdown)
    }
}

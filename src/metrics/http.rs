//! A small HTTP listener for people and orchestrators not on CloudWatch: `GET /metrics`
//! (Prometheus text format 0.0.4) and `GET /health` (200 when healthy, 503 otherwise, with a
//! JSON body naming the state). Also the client side of `binlog-kinesis healthcheck`.
//!
//! # Invariants
//!
//! The listener only reads the registry; a slow or broken client cannot affect replication
//! (each connection is its own task, with a read timeout and a request size cap).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request head read.
const MAX_REQUEST_BYTES: usize = 8192;

/// The listener could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ([http] listen); choose another address, or set it empty to turn the listener off")]
pub struct ListenError {
    /// The address.
    pub(crate) addr: String,
    /// Why.
    #[source]
    pub(crate) source: std::io::Error,
}

/// The labels every Prometheus sample carries.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    /// The stream name.
    pub(crate) stream: String,
    /// The `[metrics] source` label.
    pub(crate) source: String,
}

/// Binds `addr`; the returned listener serves with [`serve`].
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError {
        addr: addr.to_owned(),
        source,
    })
}

/// Serves `/metrics` and `/health` until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    labels: Labels,
    stop: CancellationToken,
) {
    let labels = Arc::new(labels);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, _)) => {
                let metrics = Arc::clone(&metrics);
                let labels = Arc::clone(&labels);
                tokio::spawn(async move {
                    if let Err(error) = answer(socket, &metrics, &labels).await {
                        tracing::debug!(error = %error, "http client went away");
                    }
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %error, "http listener cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut socket: TcpStream, metrics: &Metrics, labels: &Labels) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut socket)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let snapshot = metrics.snapshot(std::time::SystemTime::now());
            let text = snapshot.prometheus(&[
                ("stream", labels.stream.as_str()),
                ("source", labels.source.as_str()),
            ]);
            ("200 OK", "text/plain; version=0.0.4", text)
        }
        ("GET", "/health") => {
            let (name, healthy) = metrics.health(std::time::SystemTime::now());
            let status = if healthy {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let body = serde_json::json!({
                "status": name,
                "healthy": healthy,
            });
            (status, "application/json", format!("{body}\n"))
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

async fn read_head(socket: &mut TcpStream) -> std::io::Result<String> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.len() < MAX_REQUEST_BYTES {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// What `GET /health` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// Asks the daemon listening on `addr` for `/health` (the `healthcheck` command).
pub async fn probe(addr: SocketAddr, timeout: Duration) -> std::io::Result<Health> {
    let exchange = async {
        let mut socket = TcpStream::connect(addr).await?;
        socket
            .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
            })?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.trim().to_owned())
            .unwrap_or_default();
        Ok(Health { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", timeout.as_secs()),
            ))
        })
}

//! Proxies between the daemon and the Kinesis emulator:
//! - [`CuttableProxy`], a loopback TCP proxy that can cut the line: every connection is
//!   refused or dropped while it is down (a network outage that ends);
//! - [`QuotaProxy`], `tests/quota_proxy.py`: an HTTP proxy that enforces Kinesis's per-shard
//!   write quotas and answers over-quota writes exactly as Kinesis does, since no emulator
//!   throttles.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

pub struct CuttableProxy {
    pub url: String,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Forwards a free loopback port to `target` (host:port).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = {
            let (up, connections) = (Arc::clone(&up), Arc::clone(&connections));
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection reset
                    }
                    let target = target.clone();
                    connections.lock().unwrap().spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            // Either side closing ends the copy; errors are the point of a cut.
                            let _copied: Result<_, _> =
                                tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            })
        };
        Self {
            url,
            up,
            connections,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.connections.lock().unwrap().abort_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections.lock().unwrap().abort_all();
    }
}

/// `tests/quota_proxy.py` in front of the emulator, stopped by PID when dropped.
pub struct QuotaProxy {
    pub url: String,
    child: std::process::Child,
}

impl QuotaProxy {
    /// Enforces `records_per_second` and `bytes_per_second` per shard of a `shards`-shard
    /// stream in front of `target` (an http:// URL).
    pub async fn start(
        target: &str,
        shards: u32,
        records_per_second: u32,
        bytes_per_second: u32,
    ) -> Self {
        let port = crate::harness::free_port();
        let child = spawn_ready(
            "tests/quota_proxy.py",
            &[
                "--port",
                &port.to_string(),
                "--target",
                target,
                "--shards",
                &shards.to_string(),
                "--records-per-second",
                &records_per_second.to_string(),
                "--bytes-per-second",
                &bytes_per_second.to_string(),
            ],
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// What the proxy accepted and throttled so far.
    pub async fn stats(&self) -> serde_json::Value {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let (status, body) = crate::harness::http_get(port, "/_quota").await.unwrap();
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for QuotaProxy {
    fn drop(&mut self) {
        let _killed: Result<(), _> = self.child.kill();
        let _reaped: Result<_, _> = self.child.wait();
    }
}

/// `tests/instant_kinesis.py`: a Kinesis endpoint that accepts every record at once (the
/// benchmark's measure of the daemon's own cost), stopped by PID when dropped.
pub struct InstantKinesis {
    pub url: String,
    port: u16,
    child: std::process::Child,
}

impl InstantKinesis {
    pub async fn start(shards: u32) -> Self {
        let port = crate::harness::free_port();
        let child = spawn_ready(
            "tests/instant_kinesis.py",
            &["--port", &port.to_string(), "--shards", &shards.to_string()],
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child,
        }
    }

    /// Calls, records and bytes accepted, and calls rejected, so far.
    pub async fn stats(&self) -> serde_json::Value {
        let (status, body) = crate::harness::http_get(self.port, "/_stats")
            .await
            .unwrap();
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for InstantKinesis {
    fn drop(&mut self) {
        let _killed: Result<(), _> = self.child.kill();
        let _reaped: Result<_, _> = self.child.wait();
    }
}

/// Starts `python3 SCRIPT ARGS` (a path in the repository) and waits for its "ready" line.
fn spawn_ready(script: &str, args: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let mut child = std::process::Command::new("python3")
        .arg(path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "{script} did not start");
    child
}

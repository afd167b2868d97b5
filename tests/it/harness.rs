//! Real services for the integration tests: a private `mariadbd` (ROW / FULL / FULL binlog)
//! and a ministack Kinesis emulator per test, each on free loopback ports, stopped by PID when
//! the test ends. Nothing here skips: a missing server binary fails the test with the command
//! that installs it (`scripts/test` does).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use aws_sdk_kinesis::types::ShardIteratorType;
use binlog_kinesis::{
    app::{self, Error, RunOutcome, StartFrom},
    config::{Config, FileConfig},
    event::ChangeEvent,
    position::BinlogPosition,
    shutdown::Shutdown,
    sink::client::{AwsKinesisClient, KinesisClient},
};
use mysql_async::prelude::Queryable;
use tempfile::TempDir;

/// Password of the replication user the harness creates.
pub const CDC_PASSWORD: &str = "cdc-secret";

/// Stops a child gracefully (SIGTERM) and waits until it has exited.
async fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    eventually(Duration::from_secs(60), async || {
        child.try_wait().unwrap().map(|_| ())
    })
    .await;
}

/// Kills a child started by the harness and reaps it.
fn stop_child(child: &mut Child) {
    if let Err(error) = child.kill() {
        eprintln!("harness: cannot kill pid {}: {error}", child.id());
    }
    if let Err(error) = child.wait() {
        eprintln!("harness: cannot reap pid {}: {error}", child.id());
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find_binary(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} not found: install it with `apt-get install mariadb-server mariadb-client` (scripts/test does)");
}

/// A data directory initialised once per test run and copied for each server. It lives in
/// cargo's per-target scratch folder, so it does not pile up in /tmp across runs.
///
/// Under cargo nextest every test is a process of its own, so the run (`NEXTEST_RUN_ID`) owns
/// the template, not the process: the first test to need it installs it into a staging folder
/// and renames that into place, atomically; a test that loses the race uses the winner's.
fn template_datadir() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let run = std::env::var("NEXTEST_RUN_ID")
            .unwrap_or_else(|_| format!("pid{}", std::process::id()));
        // Templates of earlier runs are stale: one test run at a time per target folder. A
        // staging folder may be another process's install in progress: only an old one is
        // left over from a crash.
        for entry in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            let stale = (name.starts_with("mariadb-template-") && !name.contains(&run))
                || (name.starts_with("mariadb-staging-") && old);
            if stale {
                // Another process may be removing it too.
                std::fs::remove_dir_all(entry.path()).ok();
            }
        }
        let dir = scratch.join(format!("mariadb-template-{run}"));
        if dir.join("ready").exists() {
            return dir;
        }
        let staging = scratch.join(format!("mariadb-staging-{run}-{}", std::process::id()));
        std::fs::remove_dir_all(&staging).ok();
        // A temporary folder of its own: a server starting elsewhere removes the `#sql*` files
        // it finds in its temporary folder, and the default one is shared (/tmp).
        let tmp = staging.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let output = Command::new(find_binary("mariadb-install-db"))
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", staging.join("data").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mariadb-install-db failed (run {run}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(staging.join("ready"), b"").unwrap();
        if std::fs::rename(&staging, &dir).is_err() {
            // Another test of this run got there first: its template is as good.
            assert!(
                dir.join("ready").exists(),
                "cannot put the MariaDB template in place at {}",
                dir.display()
            );
            std::fs::remove_dir_all(&staging).ok();
        }
        dir
    })
}

/// `mariadbd` could not bind its port: another process took it first.
#[derive(Debug)]
struct PortTaken;

/// A private MariaDB server.
pub struct MariaDb {
    pub port: u16,
    dir: TempDir,
    child: Child,
    tls: bool,
    server_id: u32,
}

impl MariaDb {
    /// The server's binlog files, oldest first.
    pub fn binlog_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("binlog"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("mariadb-bin.0"))
            })
            .collect();
        files.sort();
        files
    }

    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A server with TLS (a test CA and a certificate for 127.0.0.1, see [`Self::ca_file`])
    /// whose `cdc` account requires TLS.
    pub async fn start_with_tls() -> Self {
        Self::start_with(true).await
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The PEM file of a CA that signed nothing here.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    async fn start_with(tls: bool) -> Self {
        Self::start_as(tls, 1, &[]).await
    }

    /// A replica of `primary` (server id 2) that logs what it replicates, as a failover
    /// candidate must: same GTIDs, its own binlog files.
    pub async fn start_replica_of(primary: &MariaDb) -> Self {
        primary
            .admin(&[
                "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl'",
                "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
            ])
            .await;
        let mut conn = primary.root().await;
        let primary_pos: String = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        let replica = Self::start_as(false, 2, &["SET sql_log_bin = 0"]).await;
        replica
            .admin(&[
                &format!("SET GLOBAL gtid_slave_pos = '{primary_pos}'"),
                &format!(
                    "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos",
                    primary.port
                ),
                "START SLAVE",
            ])
            .await;
        replica
    }

    /// Waits until this replica has applied everything `primary` has logged.
    pub async fn catch_up_with(&self, primary: &MariaDb) {
        let mut conn = primary.root().await;
        let target: String = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap();
        let mut conn = self.root().await;
        let waited: Option<i64> = conn
            .query_first(format!("SELECT MASTER_GTID_WAIT('{target}', 60)"))
            .await
            .unwrap();
        if waited != Some(0) {
            let status: Option<mysql_async::Row> =
                conn.query_first("SHOW SLAVE STATUS").await.unwrap();
            let status = status.map(|row| {
                [
                    "Slave_IO_Running",
                    "Slave_SQL_Running",
                    "Last_IO_Error",
                    "Last_SQL_Error",
                    "Gtid_IO_Pos",
                ]
                .iter()
                .map(|c| format!("{c}={:?}", row.get::<Option<String>, _>(*c).flatten()))
                .collect::<Vec<_>>()
                .join(" ")
            });
            panic!("the replica did not reach {target}: {status:?}");
        }
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the server (SIGKILL): a primary lost in a failover.
    pub fn kill(&mut self) {
        stop_child(&mut self.child);
    }

    /// `server_id` and, first, `session_setup` statements (run before the harness's own).
    async fn start_as(tls: bool, server_id: u32, session_setup: &[&str]) -> Self {
        let dir = TempDir::new().unwrap();
        if tls {
            make_certificates(dir.path());
        }
        let status = Command::new("cp")
            .arg("-a")
            .arg(template_datadir().join("data"))
            .arg(dir.path().join("data"))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::create_dir_all(dir.path().join("binlog")).unwrap();
        let port = free_port();
        let child = Self::spawn(dir.path(), port, tls, server_id);
        let mut server = Self {
            port,
            dir,
            child,
            tls,
            server_id,
        };
        // A free port may be taken by another test's process before the server binds it:
        // then it exits at once, and starts again on another port.
        let mut attempts = 1;
        while server.wait_ready().await.is_err() {
            assert!(
                attempts < 5,
                "no free port for mariadbd after {attempts} attempts"
            );
            attempts += 1;
            server.port = free_port();
            eprintln!(
                "harness: port taken; mariadbd starts again on {}",
                server.port
            );
            server.child = Self::spawn(server.dir.path(), server.port, tls, server_id);
        }
        let mut statements: Vec<String> = session_setup.iter().map(|s| s.to_string()).collect();
        statements.extend([
            format!(
                "CREATE USER 'cdc'@'%' IDENTIFIED BY '{CDC_PASSWORD}' {}",
                if tls { "REQUIRE SSL" } else { "" }
            ),
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%'".to_owned(),
        ]);
        server
            .admin(&statements.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        server
    }

    /// Stops the server gracefully (SIGTERM, as `mariadb-admin shutdown` does) and starts it
    /// again on the same port and data directory.
    pub async fn restart(&mut self) {
        let pid = self.child.id();
        terminate(&mut self.child).await;
        eprintln!("harness: mariadbd {pid} stopped; starting it again");
        self.child = Self::spawn(self.dir.path(), self.port, self.tls, self.server_id);
        self.wait_ready()
            .await
            .expect("the server's port is still free after its restart");
    }

    fn spawn(dir: &Path, port: u16, tls: bool, server_id: u32) -> Child {
        let mut command = Command::new(find_binary("mariadbd"));
        // --no-defaults must come first.
        command
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
            ])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            // Its own temporary folder (see `template_datadir`).
            .arg(format!("--tmpdir={}", dir.display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg(format!(
                "--log-bin={}",
                dir.join("binlog/mariadb-bin").display()
            ))
            .args([
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--log-slave-updates",
            ])
            .arg(format!("--server-id={server_id}"))
            .args([
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--performance-schema=OFF",
            ]);
        if tls {
            command
                .arg(format!("--ssl-ca={}", dir.join("ca.pem").display()))
                .arg(format!(
                    "--ssl-cert={}",
                    dir.join("server-cert.pem").display()
                ))
                .arg(format!(
                    "--ssl-key={}",
                    dir.join("server-key.pem").display()
                ));
        }
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Waits until the server answers; `Err` when it exited because its port was taken.
    async fn wait_ready(&mut self) -> Result<(), PortTaken> {
        let socket = self.socket();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                if log.contains("Address already in use") {
                    // The next start appends to the same log: start it afresh.
                    std::fs::remove_file(self.dir.path().join("error.log")).ok();
                    return Err(PortTaken);
                }
                panic!("mariadbd exited at startup:\n{log}");
            }
            let opts = mysql_async::OptsBuilder::default()
                .socket(Some(socket.clone()))
                .user(Some("root"));
            let error = match mysql_async::Conn::new(opts).await {
                Ok(conn) => {
                    conn.disconnect().await.unwrap();
                    return Ok(());
                }
                Err(error) => error,
            };
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                panic!("mariadbd did not start: {error}\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn socket(&self) -> String {
        self.dir.path().join("mysqld.sock").display().to_string()
    }

    /// A root connection over the unix socket.
    pub async fn root(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .socket(Some(self.socket()))
            .user(Some("root"));
        mysql_async::Conn::new(opts).await.unwrap()
    }

    /// Runs statements as root, each in autocommit unless they manage transactions themselves.
    pub async fn admin(&self, statements: &[&str]) {
        let mut conn = self.root().await;
        for statement in statements {
            conn.query_drop(*statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        conn.disconnect().await.unwrap();
    }

    /// The server's current end of binlog.
    pub async fn position(&self) -> String {
        let mut conn = self.root().await;
        let row: mysql_async::Row = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .unwrap()
            .unwrap();
        let file: String = row.get(0).unwrap();
        let offset: u64 = row.get(1).unwrap();
        format!("{file}:{offset}")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A CA, a server certificate it signs for 127.0.0.1, and an unrelated CA, with openssl.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    for (key, cert, name) in [
        ("ca-key.pem", "ca.pem", "/CN=test-ca"),
        ("other-ca-key.pem", "other-ca.pem", "/CN=other-ca"),
    ] {
        run(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days",
            "2", "-subj", name,
        ]);
    }
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "server-cert.pem",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ]);
}

fn ministack_path() -> PathBuf {
    if let Ok(path) = std::env::var("BINLOG_KINESIS_TEST_MINISTACK") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".emu/venv/bin/ministack");
    assert!(
        path.exists(),
        "ministack not found at {}: run scripts/test, which installs it (python3 -m venv .emu/venv && .emu/venv/bin/pip install ministack==1.5.33 cbor2==6.2.1)",
        path.display()
    );
    path
}

/// A ministack emulator serving Kinesis, CloudWatch and S3 (and Firehose, CloudFormation, IAM
/// and CloudWatch Logs, to deploy the templates).
pub struct Ministack {
    pub url: String,
    port: u16,
    child: Child,
    tmp: TempDir,
}

impl Ministack {
    pub async fn start() -> Self {
        let tmp = TempDir::new().unwrap();
        // A free port may be taken by another test's process before the emulator binds it:
        // it then exits, and starts again on another port.
        let mut attempts = 0;
        let (port, child) = loop {
            attempts += 1;
            let port = free_port();
            if let Some(child) = Self::try_spawn(port, tmp.path()).await {
                break (port, child);
            }
            assert!(
                attempts < 5,
                "no free port for ministack after {attempts} attempts"
            );
            eprintln!("harness: ministack could not use port {port}; trying another");
        };
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child,
            tmp,
        }
    }

    /// Starts the emulator on `port`; it saves its state in `dir` when stopped with SIGTERM
    /// and loads it again when started (PERSIST_STATE), so a restart keeps streams and records.
    async fn spawn(port: u16, dir: &Path) -> Child {
        Self::try_spawn(port, dir)
            .await
            .expect("the emulator's port is still free after its restart")
    }

    /// [`Self::spawn`], or `None` when the emulator exited (its port was taken).
    async fn try_spawn(port: u16, dir: &Path) -> Option<Child> {
        let mut child = Command::new(ministack_path())
            .env("GATEWAY_PORT", port.to_string())
            .env("BIND_HOST", "127.0.0.1")
            // Firehose, CloudFormation, IAM and Logs for deploy/firehose.yaml (tests/it/firehose.rs).
            .env(
                "SERVICES",
                "kinesis,cloudwatch,s3,firehose,cloudformation,iam,sts,logs",
            )
            .env("TMPDIR", dir)
            .env("PERSIST_STATE", "1")
            .env("STATE_DIR", dir.join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let health = format!("127.0.0.1:{port}");
        let up = eventually(Duration::from_secs(30), async || {
            if child.try_wait().unwrap().is_some() {
                return Some(false);
            }
            tokio::net::TcpStream::connect(&health)
                .await
                .ok()
                .map(|_| true)
        })
        .await;
        // Listening, and still running: the listener is the emulator's, not another process's.
        (up && child.try_wait().unwrap().is_none()).then_some(child)
    }

    /// Stops the emulator gracefully (it saves its state) and waits until it has exited.
    pub async fn shut_down(&mut self) {
        terminate(&mut self.child).await;
    }

    /// Starts the emulator again on the same port, with the state it saved.
    pub async fn start_again(&mut self) {
        self.child = Self::spawn(self.port, self.tmp.path()).await;
    }

    pub async fn client(&self) -> AwsKinesisClient {
        set_test_aws_env();
        let config = FileConfig::load(
            None,
            [
                (
                    "BINLOG_KINESIS__KINESIS__ENDPOINT_URL".to_owned(),
                    self.url.clone(),
                ),
                (
                    "BINLOG_KINESIS__KINESIS__REGION".to_owned(),
                    "us-east-1".to_owned(),
                ),
            ],
        )
        .unwrap()
        .validate()
        .unwrap();
        AwsKinesisClient::new(&config.kinesis).await
    }

    pub async fn create_stream(&self, name: &str, shards: i32) {
        let client = self.client().await;
        client
            .sdk()
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .unwrap();
        eventually(Duration::from_secs(10), async || {
            client.check_stream(name).await.ok()
        })
        .await;
    }

    /// Every event line in the stream, shard by shard, in stream order; each record's partition
    /// key is its events' table, or their table and primary key.
    pub async fn events(&self, stream: &str) -> Vec<ChangeEvent> {
        let mut events = Vec::new();
        for (key, record) in self.records(stream).await {
            for event in record {
                let table = format!("{}.{}", event.database, event.table);
                assert!(
                    key == table || key.starts_with(&format!("{table}/")),
                    "record key {key} holds an event of {table}"
                );
                events.push(event);
            }
        }
        events
    }

    /// Every record in the stream, shard by shard, in stream order: its partition key and its
    /// events.
    pub async fn records(&self, stream: &str) -> Vec<(String, Vec<ChangeEvent>)> {
        self.raw_records(stream)
            .await
            .into_iter()
            .map(|(key, data)| {
                let events = data
                    .lines()
                    .map(|line| {
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
                    })
                    .collect();
                (key, events)
            })
            .collect()
    }

    /// Every record of `stream` as it was put: partition key and data, shard by shard.
    pub async fn raw_records(&self, stream: &str) -> Vec<(String, String)> {
        let client = self.client().await;
        let sdk = client.sdk();
        let shards = sdk.list_shards().stream_name(stream).send().await.unwrap();
        let mut records = Vec::new();
        for shard in shards.shards() {
            let mut iterator = sdk
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator()
                .map(str::to_owned);
            while let Some(current) = iterator {
                let output = sdk
                    .get_records()
                    .shard_iterator(current)
                    .limit(10_000)
                    .send()
                    .await
                    .unwrap();
                for record in output.records() {
                    let data = std::str::from_utf8(record.data().as_ref()).unwrap();
                    assert!(data.ends_with('\n'), "every record ends with a newline");
                    let key = record.partition_key().unwrap_or_default().to_owned();
                    records.push((key, data.to_owned()));
                }
                if output.records().is_empty() {
                    break;
                }
                iterator = output.next_shard_iterator().map(str::to_owned);
            }
        }
        records
    }

    /// Waits until the stream holds at least `n` events, then returns them.
    pub async fn wait_for_events(&self, stream: &str, n: usize) -> Vec<ChangeEvent> {
        eventually(Duration::from_secs(60), async || {
            let events = self.events(stream).await;
            (events.len() >= n).then_some(events)
        })
        .await
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    pub async fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        set_test_aws_env();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(binlog_kinesis::config::https_client())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .load()
            .await;
        aws_sdk_cloudwatch::Client::new(&config)
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        set_test_aws_env();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(binlog_kinesis::config::https_client())
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .endpoint_url(&self.url)
                .force_path_style(true)
                .build(),
        )
    }

    /// Every datapoint CloudWatch holds for `metric` of the daemon writing `stream` (in the
    /// default namespace, with the default `Source`), as `stat` per minute, newest first.
    pub async fn metric(&self, stream: &str, metric: &str, stat: &str) -> Vec<f64> {
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
        let client = self.cloudwatch().await;
        let now = std::time::SystemTime::now();
        let query = MetricDataQuery::builder()
            .id("m")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("BinlogKinesis")
                            .metric_name(metric)
                            .dimensions(Dimension::builder().name("Stream").value(stream).build())
                            .dimensions(
                                Dimension::builder()
                                    .name("Source")
                                    .value("127.0.0.1")
                                    .build(),
                            )
                            .build(),
                    )
                    .period(60)
                    .stat(stat)
                    .build(),
            )
            .build();
        let output = client
            .get_metric_data()
            .metric_data_queries(query)
            .start_time((now - Duration::from_secs(600)).into())
            .end_time((now + Duration::from_secs(120)).into())
            .send()
            .await
            .unwrap();
        output
            .metric_data_results()
            .iter()
            .flat_map(|r| r.values().to_vec())
            .collect()
    }
}

impl Drop for Ministack {
    fn drop(&mut self) {
        self.stop();
    }
}

fn set_test_aws_env() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY-free: set before any test thread reads them; the values are the same for all.
        for (key, value) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            if std::env::var(key).is_err() {
                // Set once, before the first client is built; only the AWS SDK reads them.
                std::env::set_var(key, value);
            }
        }
    });
}

/// One test's world: a server, an emulator, a stream, a checkpoint directory.
pub struct World {
    pub db: MariaDb,
    pub kinesis: Ministack,
    pub stream: String,
    pub dir: TempDir,
}

impl World {
    pub async fn new() -> Self {
        Self::with_db(MariaDb::start()).await
    }

    /// A world whose server requires TLS of the `cdc` account.
    pub async fn with_tls() -> Self {
        Self::with_db(MariaDb::start_with_tls()).await
    }

    async fn with_db(db: impl std::future::Future<Output = MariaDb>) -> Self {
        // Another test may have installed it already; either way logs reach the test output.
        let _installed: Result<(), _> = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .try_init();
        let (db, kinesis) = tokio::join!(db, Ministack::start());
        let stream = "cdc-test".to_owned();
        kinesis.create_stream(&stream, 1).await;
        Self {
            db,
            kinesis,
            stream,
            dir: TempDir::new().unwrap(),
        }
    }

    /// Creates `shop.t (id INT PRIMARY KEY)`, the table most scenarios write.
    pub async fn create_shop_t(&self) {
        self.create_shop_tables(&["t"]).await;
    }

    /// Creates database `shop` with a table `shop.<name> (id INT PRIMARY KEY)` per name.
    pub async fn create_shop_tables(&self, names: &[&str]) {
        let mut statements = vec!["CREATE DATABASE shop".to_owned()];
        statements.extend(
            names
                .iter()
                .map(|name| format!("CREATE TABLE shop.{name} (id INT PRIMARY KEY)")),
        );
        self.db
            .admin(&statements.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
    }

    /// Inserts `ids` into `shop.t`, `per_transaction` rows per transaction.
    pub async fn insert_t(&self, ids: std::ops::Range<i64>, per_transaction: usize) {
        let mut conn = self.db.root().await;
        let ids: Vec<i64> = ids.collect();
        for chunk in ids.chunks(per_transaction) {
            let values: Vec<String> = chunk.iter().map(|id| format!("({id})")).collect();
            conn.query_drop(format!("INSERT INTO shop.t VALUES {}", values.join(",")))
                .await
                .unwrap();
        }
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.path().join("checkpoint.json")
    }

    /// The environment that configures the daemon for this world.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("BINLOG_KINESIS__MYSQL__HOST", "127.0.0.1".to_owned()),
            ("BINLOG_KINESIS__MYSQL__PORT", self.db.port.to_string()),
            ("BINLOG_KINESIS__MYSQL__USER", "cdc".to_owned()),
            ("BINLOG_KINESIS__MYSQL__PASSWORD", CDC_PASSWORD.to_owned()),
            ("BINLOG_KINESIS__MYSQL__HEARTBEAT_MS", "1000".to_owned()),
            ("BINLOG_KINESIS__KINESIS__STREAM", self.stream.clone()),
            ("BINLOG_KINESIS__KINESIS__REGION", "us-east-1".to_owned()),
            (
                "BINLOG_KINESIS__KINESIS__ENDPOINT_URL",
                self.kinesis.url.clone(),
            ),
            ("BINLOG_KINESIS__KINESIS__LINGER_MS", "5".to_owned()),
            // Bounds how long a takeover after a crash waits (heartbeat + call timeout).
            (
                "BINLOG_KINESIS__KINESIS__CALL_TIMEOUT_MS",
                "1000".to_owned(),
            ),
            (
                "BINLOG_KINESIS__CHECKPOINT__PATH",
                self.checkpoint_path().display().to_string(),
            ),
            ("BINLOG_KINESIS__CHECKPOINT__INTERVAL_MS", "200".to_owned()),
            ("BINLOG_KINESIS__FILTER__INCLUDE", "shop.*".to_owned()),
            // Tests run side by side: the listener only where a test asks for a port.
            ("BINLOG_KINESIS__HTTP__LISTEN", String::new()),
            (
                "BINLOG_KINESIS__METRICS__ENDPOINT_URL",
                self.kinesis.url.clone(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `binlog-kinesis SUBCOMMAND` (the real binary) configured for this world: its settings,
    /// test AWS credentials.
    pub fn command(&self, subcommand: &str) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_binlog-kinesis"));
        command
            .arg(subcommand)
            .envs(self.env())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command
    }

    /// `binlog-kinesis run` (the real binary) configured for this world, as [`Self::command`]
    /// makes it: warnings only on standard error, standard output dropped.
    pub fn run_command(&self) -> std::process::Command {
        let mut command = self.command("run");
        command
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        command
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        FileConfig::load(None, env).unwrap().validate().unwrap()
    }

    /// Waits until the stream holds at least `n` events of database `shop`, and returns those.
    pub async fn shop_events(&self, n: usize) -> Vec<ChangeEvent> {
        eventually(Duration::from_secs(90), async || {
            let events: Vec<_> = self
                .kinesis
                .events(&self.stream)
                .await
                .into_iter()
                .filter(|e| e.database == "shop")
                .collect();
            (events.len() >= n).then_some(events)
        })
        .await
    }

    /// Runs `lost` in a binlog file of its own, then purges every file before the newest
    /// (retrying while MariaDB keeps a file for its binlog checkpoint): a change no replica can
    /// read any more. Returns the newest file's name.
    pub async fn purge_with(&self, lost: &str) -> String {
        self.db
            .admin(&["FLUSH BINARY LOGS", lost, "FLUSH BINARY LOGS"])
            .await;
        let newest = self.db.position().await;
        let newest = newest.split(':').next().unwrap().to_owned();
        eventually(Duration::from_secs(30), async || {
            self.db
                .admin(&[&format!("PURGE BINARY LOGS TO '{newest}'")])
                .await;
            let logs: Vec<(String, u64)> = self
                .db
                .root()
                .await
                .query("SHOW BINARY LOGS")
                .await
                .unwrap();
            logs.iter().all(|(name, _)| *name >= newest).then_some(())
        })
        .await;
        newest
    }

    /// Starts the daemon in-process.
    pub async fn daemon(&self, config: Config, start: StartFrom) -> Daemon {
        let client = Arc::new(AwsKinesisClient::new(&config.kinesis).await);
        Self::daemon_with_client(config, start, client)
    }

    /// Starts the daemon in-process with `client` at the Kinesis seam (a fault-injecting
    /// wrapper around the emulator's client).
    pub fn daemon_with_client(
        config: Config,
        start: StartFrom,
        client: Arc<dyn KinesisClient>,
    ) -> Daemon {
        let shutdown = Shutdown::default();
        let task = tokio::spawn(app::run(config, start, client, shutdown.clone()));
        Daemon { shutdown, task }
    }

    /// Starts the daemon and waits until it is replicating (its checkpoint exists after a
    /// marker transaction).
    pub async fn running_daemon(&self, extra: &[(&str, &str)]) -> Daemon {
        let daemon = self.daemon(self.config(extra), StartFrom::Checkpoint).await;
        self.wait_replicating().await;
        daemon
    }

    /// Waits until the daemon acknowledges a fresh change: its checkpoint reaches the end of
    /// binlog after a marker transaction written once its start is saved. The marker is written
    /// again while waiting.
    pub async fn wait_replicating(&self) {
        self.db
            .admin(&[
                "CREATE DATABASE IF NOT EXISTS harness",
                "CREATE TABLE IF NOT EXISTS harness.ping (id INT PRIMARY KEY, n INT)",
            ])
            .await;
        let path = self.checkpoint_path();
        // The daemon saves its start as the checkpoint before it reads: once that is there,
        // every marker written after it is read, and only its acknowledgement moves the
        // checkpoint past the marker.
        eventually(Duration::from_secs(60), async || {
            path.exists().then_some(())
        })
        .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.db
                .admin(&[
                    "INSERT INTO harness.ping VALUES (1, 1) ON DUPLICATE KEY UPDATE n = n + 1",
                ])
                .await;
            let target: BinlogPosition = self.db.position().await.parse().unwrap();
            let reached = async || {
                let text = std::fs::read_to_string(&path).ok()?;
                let checkpoint: serde_json::Value = serde_json::from_str(&text).ok()?;
                let position: BinlogPosition = checkpoint["position"].as_str()?.parse().ok()?;
                (position.try_cmp(&target) != Some(std::cmp::Ordering::Less)).then_some(())
            };
            for _ in 0..20 {
                if reached().await.is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not start replicating within 60 s"
            );
        }
    }
}

/// `GET path` on a local port: the status code and the body; `None` when nothing listens.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The value of an unlabeled-beyond-the-common-labels Prometheus sample in `text`.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| line.split(['{', ' ']).next() == Some(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The `id` column of each event's latest image.
pub fn ids(events: &[ChangeEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| {
            e.after.as_ref().or(e.before.as_ref()).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// An in-process daemon.
pub struct Daemon {
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<Result<RunOutcome, Error>>,
}

impl Daemon {
    /// Graceful stop: returns the run's outcome.
    pub async fn stop(self) -> Result<RunOutcome, Error> {
        self.shutdown.graceful.cancel();
        self.task.await.unwrap()
    }
}

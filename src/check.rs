//! `binlog-kinesis check`: the preflight. Runs every check `run` depends on and prints each
//! with PASS or FAIL, so one command says everything that would stop replication.

use mysql_async::{prelude::Queryable, Conn};

use crate::{
    checkpoint::{self, Checkpoint},
    config::{Config, SinkKind},
    event::TableName,
    report::error_chain,
    sink::client::{AwsKinesisClient, KinesisClient},
    source::{
        connect, rules,
        snapshot::{self, plan, SnapshotTable},
    },
};

/// Runs the checks, printing each; returns whether all passed.
pub async fn check(config: &Config, client: &AwsKinesisClient) -> bool {
    let mut report = Report { ok: true };
    for warning in config.warnings() {
        println!("WARN  configuration: {warning}");
    }
    let checkpoint = check_checkpoint(config, &mut report).await;
    check_mysql(config, checkpoint.as_ref(), &mut report).await;
    check_sink(config, client, &mut report).await;
    report.ok
}

/// Prints each check's outcome and remembers whether all passed.
struct Report {
    ok: bool,
}

impl Report {
    fn say(&mut self, name: &str, result: Result<String, String>) {
        match &result {
            Ok(detail) => println!("PASS  {name}: {detail}"),
            Err(detail) => println!("FAIL  {name}: {detail}"),
        }
        self.ok &= result.is_ok();
    }
}

/// The checkpoint: readable, and writable by this process. Returns it when there is one.
async fn check_checkpoint(config: &Config, report: &mut Report) -> Option<Checkpoint> {
    let store = checkpoint::open_store(&config.checkpoint).await;
    let checkpoint = store.load().await;
    report.say(
        "checkpoint",
        match &checkpoint {
            Ok(Some(c)) => Ok(format!("{} at {}", store.location(), c.position)),
            Ok(None) => Ok(format!(
                "none yet at {} (run starts at the end of binlog)",
                store.location()
            )),
            Err(e) => Err(error_chain(e)),
        },
    );
    report.say(
        "checkpoint writable",
        store
            .probe()
            .await
            .map(|()| format!("this process may write {}", store.location()))
            .map_err(|e| error_chain(&e)),
    );
    checkpoint.ok().flatten()
}

/// The server: reachable, its settings, the account's privileges, the checkpoint's position.
async fn check_mysql(config: &Config, checkpoint: Option<&Checkpoint>, report: &mut Report) {
    let mut conn = match connect::connect(&config.mysql).await {
        Err(error) => return report.say("mysql connection", Err(error_chain(&error))),
        Ok(conn) => conn,
    };
    report.say(
        "mysql connection",
        Ok(format!(
            "{}:{} as {}",
            config.mysql.host, config.mysql.port, config.mysql.user
        )),
    );
    match connect::check_server(&mut conn).await {
        Ok(info) => {
            let metadata = if info.row_metadata_full {
                "FULL"
            } else {
                "not FULL (column names from information_schema)"
            };
            report.say(
                "server settings",
                Ok(format!(
                    "{}: log_bin=ON, binlog_format=ROW, binlog_row_metadata={metadata}",
                    info.version
                )),
            );
            for warning in info.warnings {
                println!("WARN  server settings: {warning}");
            }
        }
        Err(error) => report.say("server settings", Err(error_chain(&error))),
    }
    report.say(
        "replication privileges",
        match connect::missing_privileges(&mut conn).await {
            Ok(missing) if missing.is_empty() => Ok("REPLICATION SLAVE, REPLICATION CLIENT".into()),
            Ok(missing) => Err(format!(
                "missing {}; run: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{}'",
                missing.join(", "),
                config.mysql.user
            )),
            Err(error) => Err(error_chain(&error)),
        },
    );
    if let Some(checkpoint) = checkpoint {
        report.say(
            "checkpoint position on server",
            connect::ensure_position_available(&mut conn, &checkpoint.position)
                .await
                .map(|_| format!("{} is available", checkpoint.position))
                .map_err(|e| error_chain(&e)),
        );
    }
    check_snapshot(config, checkpoint, &mut conn, report).await;
    check_columns(config, &mut conn, report).await;
}

/// The `[columns]` and `[changes]` rules against the captured tables the account can see: a
/// column rule on a primary-key column fails, as does a change rule watching a missing
/// column; a column rule naming a column a table lacks warns.
async fn check_columns(config: &Config, conn: &mut Conn, report: &mut Report) {
    if !config.columns.any() && !config.changes.any() {
        return;
    }
    let (columns, changes) = (&config.columns, &config.changes);
    let findings = match rules::findings(conn, &config.filter, columns, changes).await {
        Ok(findings) => findings,
        Err(error) => return report.say("column rules", Err(error_chain(&error))),
    };
    let mut refused = 0;
    for finding in &findings {
        if finding.refused {
            refused += 1;
            report.say("column rules", Err(finding.to_string()));
        } else {
            println!("WARN  column rules: {finding}");
        }
    }
    if refused == 0 {
        let warned = findings.len();
        report.say(
            "column rules",
            Ok(match warned {
                0 => "every column the rules name exists in the tables they match".into(),
                n => format!("applicable ({n} named column(s) missing, see WARN above)"),
            }),
        );
    }
}

/// What the next start would snapshot: each table readable (SELECT, a consistent read,
/// types it can encode), with an estimate of rows and bytes; and the signal table.
async fn check_snapshot(
    config: &Config,
    checkpoint: Option<&Checkpoint>,
    conn: &mut Conn,
    report: &mut Report,
) {
    let saved = match checkpoint.map(|c| c.snapshot.clone()) {
        None => plan::Saved::Nothing,
        Some(None) => plan::Saved::Unaware,
        Some(Some(state)) => plan::Saved::State(state),
    };
    let is_mariadb = connect::check_server(conn)
        .await
        .is_ok_and(|info| info.is_mariadb);
    let planned = plan::plan(conn, &config.snapshot, &config.filter, saved, is_mariadb).await;
    let pending = match planned {
        Err(error) => return report.say("snapshot", Err(error_chain(&error))),
        Ok(None) => return report.say("snapshot", Ok("off (snapshot.mode = \"never\")".into())),
        Ok(Some(state)) => state.pending,
    };
    let (mut rows, mut bytes, mut refused) = (0u64, 0u64, Vec::new());
    for table in pending.iter().map(|p| &p.table) {
        match readable(conn, table).await {
            Ok((r, b)) => (rows, bytes) = (rows + r, bytes + b),
            Err(why) => refused.push(format!("{table}: {why}")),
        }
    }
    report.say(
        "snapshot",
        if refused.is_empty() {
            Ok(format!(
                "{} table(s) to read at the next start, about {rows} rows and {} MB in InnoDB (the JSON is larger)",
                pending.len(),
                bytes / 1_000_000
            ))
        } else {
            Err(refused.join("; "))
        },
    );
    if let Some(signals) = &config.snapshot.signal_table {
        let (database, table) = TableName::split(signals.as_str()).unwrap_or_default();
        let found: Result<Option<String>, _> = conn
            .exec_first(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (database, table),
            )
            .await;
        match found {
            Ok(Some(_)) => report.say("snapshot signal table", Ok(format!("{signals} exists; an insert of (id, 'snapshot', 'db.table,...') asks for a snapshot"))),
            // The binlog carries its inserts whatever the account may read: not a failure.
            Ok(None) => println!("WARN  snapshot signal table: cannot see {signals}: it does not exist (CREATE TABLE {signals} (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048))), or the account has no privilege on it (GRANT SELECT ON {signals} TO <user> lets check see it)"),
            Err(error) => report.say("snapshot signal table", Err(error_chain(&error))),
        }
    }
}

/// Whether a snapshot can read `table`, with the server's estimate of its rows and bytes.
async fn readable(conn: &mut Conn, table: &TableName) -> Result<(u64, u64), String> {
    let (database, name) = TableName::split(table.as_str()).unwrap_or_default();
    SnapshotTable::describe(conn, &database, &name)
        .await
        .map_err(|e| error_chain(&e))?;
    let quoted = |n: &str| format!("`{}`", n.replace('`', "``"));
    conn.query_drop(format!(
        "SELECT 1 FROM {}.{} LIMIT 0",
        quoted(&database),
        quoted(&name)
    ))
    .await
    .map_err(|e| format!("{e}; run: GRANT SELECT ON {table} TO <user>"))?;
    snapshot::estimate(conn, table)
        .await
        .map_err(|e| error_chain(&e))
}

/// Where the events go: the Kinesis stream is active, or the local sink.
async fn check_sink(config: &Config, client: &AwsKinesisClient, report: &mut Report) {
    let kinesis = &config.kinesis;
    let result = match &config.sink {
        SinkKind::Kinesis => client
            .check_stream(&kinesis.stream)
            .await
            .map(|info| match info.max_record_bytes {
                Some(max) => format!(
                    "{} is ACTIVE, maximum record size {max} bytes",
                    kinesis.stream
                ),
                None => format!("{} is ACTIVE", kinesis.stream),
            })
            .map_err(|e| {
                // What was tried, then why it failed.
                format!(
                    "{} in region {} at {}: {}",
                    kinesis.stream,
                    kinesis
                        .region
                        .as_deref()
                        .unwrap_or("(from the environment)"),
                    kinesis
                        .endpoint_url
                        .as_deref()
                        .unwrap_or("the AWS endpoint"),
                    error_chain(&e)
                )
            }),
        SinkKind::Stdout => return report.say("sink", Ok("standard output (no Kinesis)".into())),
        SinkKind::File(path) => {
            return report.say("sink", Ok(format!("file {} (no Kinesis)", path.display())))
        }
    };
    report.say("kinesis stream", result);
}

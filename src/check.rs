//! `binlog-kinesis check`: the preflight. Runs every check `run` depends on and prints each
//! with PASS or FAIL, so one command says everything that would stop replication.

use crate::{
    checkpoint,
    config::{Config, SinkKind},
    sink::client::{AwsKinesisClient, KinesisClient},
    source::connect,
};

/// Runs the checks, printing each; returns whether all passed.
pub async fn check(config: &Config, client: &AwsKinesisClient) -> bool {
    let mut ok = true;
    let mut report = |name: &str, result: Result<String, String>| {
        match &result {
            Ok(detail) => println!("PASS  {name}: {detail}"),
            Err(detail) => println!("FAIL  {name}: {detail}"),
        }
        ok &= result.is_ok();
    };

    let store = checkpoint::open_store(&config.checkpoint).await;
    let checkpoint = store.load().await;
    report(
        "checkpoint",
        match &checkpoint {
            Ok(Some(c)) => Ok(format!("{} at {}", store.location(), c.position)),
            Ok(None) => Ok(format!(
                "none yet at {} (run starts at the end of binlog)",
                store.location()
            )),
            Err(e) => Err(crate::report::error_chain(e)),
        },
    );
    report(
        "checkpoint writable",
        store
            .probe()
            .await
            .map(|()| format!("this process may write {}", store.location()))
            .map_err(|e| crate::report::error_chain(&e)),
    );

    match connect::connect(&config.mysql).await {
        Err(error) => report("mysql connection", Err(crate::report::error_chain(&error))),
        Ok(mut conn) => {
            report(
                "mysql connection",
                Ok(format!(
                    "{}:{} as {}",
                    config.mysql.host, config.mysql.port, config.mysql.user
                )),
            );
            match connect::check_server(&mut conn).await {
                Ok(info) => {
                    report(
                        "server settings",
                        Ok(format!(
                            "{}: log_bin=ON, binlog_format=ROW, binlog_row_metadata={}",
                            info.version,
                            if info.row_metadata_full {
                                "FULL"
                            } else {
                                "not FULL (column names from information_schema)"
                            }
                        )),
                    );
                    for warning in info.warnings {
                        println!("WARN  server settings: {warning}");
                    }
                }
                Err(error) => report("server settings", Err(error.to_string())),
            }
            report(
                "replication privileges",
                match connect::missing_privileges(&mut conn).await {
                    Ok(missing) if missing.is_empty() => Ok("REPLICATION SLAVE, REPLICATION CLIENT".into()),
                    Ok(missing) => Err(format!("missing {}; run: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{}'", missing.join(", "), config.mysql.user)),
                    Err(error) => Err(error.to_string()),
                },
            );
            if let Ok(Some(checkpoint)) = &checkpoint {
                report(
                    "checkpoint position on server",
                    connect::ensure_position_available(&mut conn, &checkpoint.position)
                        .await
                        .map(|_| format!("{} is available", checkpoint.position))
                        .map_err(|e| e.to_string()),
                );
            }
        }
    }

    match &config.sink {
        SinkKind::Kinesis => report(
            "kinesis stream",
            client
                .check_stream(&config.kinesis.stream)
                .await
                .map(|info| match info.max_record_bytes {
                    Some(max) => format!(
                        "{} is ACTIVE, maximum record size {max} bytes",
                        config.kinesis.stream
                    ),
                    None => format!("{} is ACTIVE", config.kinesis.stream),
                })
                .map_err(|e| {
                    // What was tried, then why it failed.
                    format!(
                        "{} in region {} at {}: {e}",
                        config.kinesis.stream,
                        config
                            .kinesis
                            .region
                            .as_deref()
                            .unwrap_or("(from the environment)"),
                        config
                            .kinesis
                            .endpoint_url
                            .as_deref()
                            .unwrap_or("the AWS endpoint"),
                    )
                }),
        ),
        SinkKind::Stdout => report("sink", Ok("standard output (no Kinesis)".into())),
        SinkKind::File(path) => report("sink", Ok(format!("file {} (no Kinesis)", path.display()))),
    }
    ok
}

//! The `binlog-kinesis` command: parse the command line, load the configuration, run, and map
//! the outcome to an exit code (see the README's table).

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use binlog_kinesis::{
    app::{self, Error, StartFrom},
    config::{Config, ConfigError, FileConfig, LogConfig, SinkKind},
    metrics::http::probe,
    position::{BinlogPosition, GtidState},
    report,
    shutdown::Shutdown,
    sink::{
        client::{AwsKinesisClient, KinesisClient},
        local::LocalClient,
    },
    stream::Message,
};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "binlog-kinesis",
    version,
    about = "MySQL/MariaDB binlog to ordered NDJSON in AWS Kinesis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The TOML configuration file; every key can also come from BINLOG_KINESIS__SECTION__KEY.
    #[arg(long, env = "BINLOG_KINESIS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replicate until SIGTERM/SIGINT, then drain and save the checkpoint.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Start at this binlog position instead of the checkpoint.
        #[arg(long, value_name = "FILE:POS", conflicts_with_all = ["from_end", "start_gtid"])]
        start_position: Option<BinlogPosition>,
        /// Start after this GTID state instead of the checkpoint: a MariaDB position (0-1-57) or a
        /// MySQL GTID set (3e11fa47-71ca-11e1-9e33-c80aa9429562:1-57).
        #[arg(long, value_name = "GTIDS", conflicts_with = "from_end")]
        start_gtid: Option<GtidState>,
        /// Start at the server's current end of binlog instead of the checkpoint.
        #[arg(long)]
        from_end: bool,
        /// Snapshot these tables again on this start (database.table, comma-separated),
        /// interleaved with the live changes.
        #[arg(long, value_name = "TABLES", value_delimiter = ',')]
        snapshot: Vec<String>,
    },
    /// Check the configuration, the server, the privileges, the stream and the checkpoint.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Decode binlog files from disk (for example downloaded from RDS) into event lines.
    Decode {
        /// Binlog files, decoded in the order given.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Also print `# file:offset EVENT_TYPE` for every event that is not a rows event.
        #[arg(long)]
        verbose: bool,
        /// Apply this configuration's `[columns]` rules (exclude, hash, mask), with its
        /// BINLOG_KINESIS__* overrides (the hash key); without it every column is printed.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Ask the local daemon's HTTP listener whether it is healthy (for container health checks):
    /// exit 0 when it is replicating, reconnecting, draining or waiting as a standby; 1
    /// otherwise (starting, stopped, degraded, or nothing listening).
    Healthcheck {
        #[command(flatten)]
        config: ConfigArg,
        /// The listener's address (default: `[http] listen` from the configuration).
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
    },
    /// Print the stream's event lines as they arrive.
    Tail {
        #[command(flatten)]
        config: ConfigArg,
        /// Read from the oldest record in the stream rather than from now.
        #[arg(long, conflicts_with = "from_timestamp")]
        from_start: bool,
        /// Read from the first record that arrived at or after this time (RFC 3339, e.g.
        /// 2026-11-30T12:00:00Z, or milliseconds since the Unix epoch).
        #[arg(long, value_name = "TIME", value_parser = binlog_kinesis::tail::StartAt::timestamp)]
        from_timestamp: Option<binlog_kinesis::tail::StartAt>,
        /// Print only the lines of these tables (db.table, * as a wildcard; repeat or
        /// comma-separate for several).
        #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
        table: Vec<String>,
        /// Exit after printing this many lines.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Exit after this many milliseconds without new records (default: run until a signal).
        #[arg(long, value_name = "MS")]
        idle_exit_ms: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The configuration is read before logging starts, since it says how to log; an error in
    // it is then logged in the default format.
    let config = match &cli.command {
        Command::Run { config, .. } | Command::Check { config } | Command::Tail { config, .. } => {
            Some(load(config))
        }
        Command::Healthcheck { config, addr: None } => Some(load(config)),
        Command::Decode {
            config: Some(path), ..
        } => Some(load(&ConfigArg {
            config: Some(path.clone()),
        })),
        Command::Healthcheck { addr: Some(_), .. } | Command::Decode { .. } => None,
    };
    let log = match &config {
        Some(Ok(config)) => config.log.clone(),
        _ => LogConfig {
            json: false,
            level: "info".into(),
        },
    };
    init_logging(&log);
    let config = match config.transpose() {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}

fn fail(error: &Error) -> ExitCode {
    // The reason the daemon stops is printed whatever the log level: with `off` (or a filter
    // that leaves out this crate) it goes to stderr as plain text.
    if tracing::enabled!(tracing::Level::ERROR) {
        // One line, so the exit code never dangles on a line of its own after a multi-line
        // message (a TOML error quotes the line it is about).
        let message = report::error_chain(error).replace('\n', " ");
        tracing::error!(exit_code = error.exit_code(), "{message}");
    } else {
        eprintln!(
            "error: {} (exit_code={})",
            report::error_chain(error),
            error.exit_code()
        );
    }
    ExitCode::from(error.exit_code())
}

/// Logs to stderr: text (colored on a terminal) or one JSON object per line, filtered by
/// `RUST_LOG` when set, else by `[log] level`.
fn init_logging(log: &LogConfig) {
    // The SDK warns at every step of the credential chain that finds nothing (instance
    // metadata unreachable off EC2): a missing credential is reported once, by the call that
    // needed it. `RUST_LOG` or a level naming `aws_config` shows them again.
    let level = if log.level.contains("aws_config") {
        log.level.clone()
    } else {
        format!("{},aws_config::imds=error", log.level)
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn load(config: &ConfigArg) -> Result<Config, Error> {
    Ok(FileConfig::load_from_environment(config.config.as_deref())?.validate()?)
}

async fn run(cli: Cli, config: Option<Config>) -> Result<ExitCode, Error> {
    // `main` loads the configuration for every command that takes one.
    let loaded = || config.clone().expect("loaded by main for this command");
    match cli.command {
        Command::Run {
            config: _,
            start_position,
            start_gtid,
            from_end,
            snapshot,
        } => {
            let start = match (start_position, start_gtid, from_end) {
                (Some(position), _, _) => StartFrom::Position(position),
                (None, Some(gtid), _) => StartFrom::Gtid(gtid),
                (None, None, true) => StartFrom::End,
                (None, None, false) => StartFrom::Checkpoint,
            };
            let mut config = loaded();
            config.snapshot.snapshot_again(&snapshot)?;
            daemon(config, start).await
        }
        Command::Decode { files, verbose, .. } => decode(files, verbose, config).await,
        Command::Check { .. } => {
            let config = loaded();
            let client = AwsKinesisClient::new(&config.kinesis).await;
            Ok(if binlog_kinesis::check::check(&config, &client).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Healthcheck { addr, .. } => {
            let addr = match addr {
                Some(addr) => addr,
                None => loaded().http.listen.ok_or_else(|| {
                    Error::Config(ConfigError::Invalid {
                        section: "http",
                        key: "listen",
                        message: "is empty, so the daemon serves no /health to ask; set it or pass --addr".into(),
                    })
                })?,
            };
            Ok(healthcheck(&addr).await)
        }
        Command::Tail {
            config: _,
            from_start,
            from_timestamp,
            table,
            count,
            idle_exit_ms,
        } => {
            use binlog_kinesis::tail;
            let config = loaded();
            let from = match (from_timestamp, from_start) {
                (Some(at), _) => at,
                (None, true) => tail::StartAt::Start,
                (None, false) => tail::StartAt::Now,
            };
            let idle_exit = idle_exit_ms.map(Duration::from_millis);
            let options = tail::Options::new(from, &table, count, idle_exit)?;
            let client = AwsKinesisClient::new(&config.kinesis).await;
            let shutdown = Shutdown::install().map_err(Error::Signals)?;
            tail::tail(&client, &config.kinesis.stream, &options, shutdown.graceful)
                .await
                .map_err(|source| Error::Stream {
                    stream: config.kinesis.stream.clone(),
                    source,
                })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `run`: the daemon, until a signal and its drain.
async fn daemon(config: Config, start: StartFrom) -> Result<ExitCode, Error> {
    let shutdown = Shutdown::install().map_err(Error::Signals)?;
    let client: Arc<dyn KinesisClient> = match &config.sink {
        SinkKind::Kinesis => Arc::new(AwsKinesisClient::new(&config.kinesis).await),
        SinkKind::Stdout => Arc::new(LocalClient::stdout()),
        SinkKind::File(path) => Arc::new(LocalClient::file(path).map_err(|error| {
            Error::Config(ConfigError::Invalid {
                section: "sink",
                key: "path",
                message: format!("cannot open {}: {error}", path.display()),
            })
        })?),
    };
    let outcome = app::run(config, start, client, shutdown).await?;
    tracing::info!(events = outcome.events, checkpoint = ?outcome.committed.map(|p| p.to_string()), "stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// `decode`: binlog files to event lines on standard output.
async fn decode(
    files: Vec<PathBuf>,
    verbose: bool,
    config: Option<Config>,
) -> Result<ExitCode, Error> {
    // Few messages: each may be a batch of up to 64 KiB of lines.
    let (tx, mut rx) = tokio::sync::mpsc::channel(32);
    let printer = tokio::spawn(async move {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout());
        let mut line = Vec::new();
        while let Some(item) = rx.recv().await {
            line.clear();
            match item {
                Message::Event(event) => event.line.write_to(&mut line),
                Message::Events(events) => {
                    for event in events {
                        event.line.write_to(&mut line);
                    }
                }
                Message::Comment(comment) => {
                    line.extend_from_slice(comment.as_bytes());
                    line.push(b'\n');
                }
                Message::Boundary(_) => continue,
            }
            // A closed pipe (| head) ends the output quietly.
            if out.write_all(&line).is_err() {
                return;
            }
        }
        let _flushed: Result<(), _> = out.flush();
    });
    let result = binlog_kinesis::source::decode_files(&files, tx, verbose, config.as_ref()).await;
    printer.await.map_err(|source| Error::Task {
        task: "printer",
        source,
    })?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `healthcheck`: asks a running daemon's `/health`.
async fn healthcheck(addr: &str) -> ExitCode {
    let Some(target) = health_target(addr).await else {
        eprintln!("unhealthy: cannot resolve {addr}");
        return ExitCode::from(1);
    };
    match probe(target, Duration::from_secs(5)).await {
        Ok(health) if health.status == 200 => {
            println!("healthy: {}", health.body);
            ExitCode::SUCCESS
        }
        Ok(health) => {
            println!("unhealthy (HTTP {}): {}", health.status, health.body);
            ExitCode::from(1)
        }
        Err(error) => {
            println!("unhealthy: cannot ask {target}: {error}");
            ExitCode::from(1)
        }
    }
}

/// The address to ask: the listen address, with an unspecified host (`0.0.0.0`, `[::]`)
/// replaced by loopback.
async fn health_target(addr: &str) -> Option<SocketAddr> {
    let mut target = tokio::net::lookup_host(addr).await.ok()?.next()?;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    Some(target)
}

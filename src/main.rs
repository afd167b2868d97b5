//! The `binlog-kinesis` command: parse the command line, load the configuration, run, and map
//! the outcome to an exit code (see the README's table).

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use binlog_kinesis::{
    app::{self, Error, StartFrom},
    config::{Config, FileConfig},
    position::{BinlogPosition, GtidState},
    shutdown::Shutdown,
    sink::client::AwsKinesisClient,
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
        /// Start after this MariaDB GTID state (for example 0-1-57) instead of the checkpoint.
        #[arg(long, value_name = "GTIDS", conflicts_with = "from_end")]
        start_gtid: Option<GtidState>,
        /// Start at the server's current end of binlog instead of the checkpoint.
        #[arg(long)]
        from_end: bool,
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
    },
    /// Print the stream's event lines as they arrive.
    Tail {
        #[command(flatten)]
        config: ConfigArg,
        /// Read from the oldest record in the stream rather than from now.
        #[arg(long)]
        from_start: bool,
        /// Exit after this many milliseconds without new records (default: run until a signal).
        #[arg(long, value_name = "MS")]
        idle_exit_ms: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(
                exit_code = error.exit_code(),
                "{}",
                app::error_chain(&error)
            );
            ExitCode::from(error.exit_code())
        }
    }
}

fn load(config: &ConfigArg) -> Result<Config, Error> {
    Ok(FileConfig::load(config.config.as_deref(), std::env::vars())?.validate()?)
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Run {
            config,
            start_position,
            start_gtid,
            from_end,
        } => {
            let config = load(&config)?;
            let start = match (start_position, start_gtid, from_end) {
                (Some(position), _, _) => StartFrom::Position(position),
                (None, Some(gtid), _) => StartFrom::Gtid(gtid),
                (None, None, true) => StartFrom::End,
                (None, None, false) => StartFrom::Checkpoint,
            };
            let shutdown = Shutdown::install()
                .map_err(|e| Error::Internal(format!("cannot install signal handlers: {e}")))?;
            let client = Arc::new(AwsKinesisClient::new(&config.kinesis).await);
            let outcome = app::run(config, start, client, shutdown).await?;
            tracing::info!(events = outcome.events, checkpoint = ?outcome.committed.map(|p| p.to_string()), "stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Command::Decode { files, verbose } => {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let printer = tokio::spawn(async move {
                use std::io::Write;
                let mut out = std::io::BufWriter::new(std::io::stdout());
                while let Some(item) = rx.recv().await {
                    if let binlog_kinesis::sink::SinkInput::Event(event) = item {
                        // A closed pipe (| head) ends the output quietly.
                        if out.write_all(&event.line).is_err() {
                            return;
                        }
                    }
                }
                let _flushed: Result<(), _> = out.flush();
            });
            let result = binlog_kinesis::source::decode_files(&files, tx, verbose).await;
            printer
                .await
                .map_err(|e| Error::Internal(format!("printer: {e}")))?;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let config = load(&config)?;
            let client = AwsKinesisClient::new(&config.kinesis).await;
            Ok(if binlog_kinesis::check::check(&config, &client).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Tail {
            config,
            from_start,
            idle_exit_ms,
        } => {
            let config = load(&config)?;
            let client = AwsKinesisClient::new(&config.kinesis).await;
            let shutdown = Shutdown::install()
                .map_err(|e| Error::Internal(format!("cannot install signal handlers: {e}")))?;
            binlog_kinesis::tail::tail(
                &client,
                &config.kinesis.stream,
                from_start,
                idle_exit_ms.map(Duration::from_millis),
                shutdown.graceful,
            )
            .await
            .map_err(|e| Error::Stream {
                stream: config.kinesis.stream.clone(),
                message: e.to_string(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

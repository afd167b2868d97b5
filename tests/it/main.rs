//! The integration tests: the daemon against a private MariaDB and a Kinesis emulator, and the
//! real binary under signals. See `harness` for how the services are started.

mod alarms;
mod binary;
mod changes;
mod columns;
mod ddl;
mod deploy;
mod firehose;
mod harness;
mod operations;
mod producer;
mod proxy;
mod replication;
mod resilience;
mod shutdown;
mod snapshot;
mod snapshot_run;
mod structure;
mod tail;
mod types;

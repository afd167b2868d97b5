//! Which tables a run snapshots, decided at its start from the configuration, the checkpoint
//! and the tables the server has.
//!
//! - No checkpoint, `mode = "initial"`: every table the filter includes.
//! - A checkpoint with snapshot progress: its pending tables (those the filter still
//!   includes), then every included table its `covered` filter did not include (a table
//!   added to `[filter]`).
//! - A checkpoint without snapshot progress (written before snapshots existed, or with
//!   `mode = "never"`): every table the filter includes today counts as covered, so an
//!   upgrade does not snapshot a whole database again.
//! - `run --snapshot db.t,...`: those tables again, from their start, whatever the mode; each
//!   must be included by the filter and readable.
//! - `mode = "when_needed"`: as `initial`, and when the checkpoint's position was purged
//!   (see `start::begin`), every included table again.
//! - `mode = "never"`: nothing else, and no progress is kept.
//!
//! The tables are those `information_schema.TABLES` shows the account (base tables, not the
//! system schemas): a table it cannot see is not snapshotted, which is why `check` and the
//! README ask for `SELECT` on the captured tables.

use std::time::{SystemTime, UNIX_EPOCH};

use mysql_async::{prelude::Queryable, Conn};

use super::SnapshotError;
use crate::{
    config::{SnapshotConfig, SnapshotMode, TableFilter},
    event::TableName,
    source::SourceError,
    stream::{Covered, PendingTable, SnapshotState},
};

/// What the checkpoint says about snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Saved {
    /// There is no checkpoint: a first start.
    Nothing,
    /// A checkpoint without snapshot progress.
    Unaware,
    /// A checkpoint with snapshot progress.
    State(SnapshotState),
    /// A checkpoint whose position the server no longer has (`mode = "when_needed"`):
    /// everything is read again.
    Purged,
}

/// The snapshot state the run starts with; `None` with snapshots off.
pub(crate) async fn plan(
    conn: &mut Conn,
    config: &SnapshotConfig,
    filter: &TableFilter,
    saved: Saved,
    is_mariadb: bool,
) -> Result<Option<SnapshotState>, SourceError> {
    if config.mode == SnapshotMode::Never
        && config.again.is_empty()
        && config.signal_table.is_none()
    {
        return Ok(None);
    }
    let tables = list_tables(conn).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let state = decide(config, filter, saved, &tables, now_ms)?;
    if let Some(state) = &state {
        let consistent_only = config.method == crate::config::SnapshotMethod::ConsistentSnapshot
            || config.signal_table.is_none();
        if !state.pending.is_empty() && !is_mariadb && consistent_only {
            return Err(SnapshotError::NeedsMariaDb {
                tables: state.pending.len(),
            }
            .into());
        }
        if !state.pending.is_empty() {
            let names: Vec<&str> = state.pending.iter().map(|p| p.table.as_str()).collect();
            tracing::info!(tables = names.len(), first = %names[0], "snapshot to read: {}", names.join(", "));
        }
    }
    Ok(state)
}

/// The base tables the account can see, outside the system schemas, in name order.
async fn list_tables(conn: &mut Conn) -> Result<Vec<TableName>, SourceError> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await
        .map_err(|source| SourceError::Query {
            what: "listing the tables to snapshot",
            source,
        })?;
    Ok(rows
        .into_iter()
        .map(|(database, table)| TableName::new(&database, &table))
        .collect())
}

/// The decision itself; see the module docs.
fn decide(
    config: &SnapshotConfig,
    filter: &TableFilter,
    saved: Saved,
    tables: &[TableName],
    now_ms: u64,
) -> Result<Option<SnapshotState>, SnapshotError> {
    let included = |table: &TableName| {
        TableName::split(table.as_str()).is_some_and(|(d, t)| filter.matches(&d, &t))
    };
    let (include, exclude) = &config.filter_patterns;
    let covered_now = Covered {
        include: include.clone(),
        exclude: exclude.clone(),
    };
    let mut pending: Vec<PendingTable> = Vec::new();
    if config.mode != SnapshotMode::Never {
        // `None`: nothing is covered.
        let (kind, covered_before) = match saved {
            Saved::Nothing => ("initial", None),
            Saved::Purged => ("when_needed", None),
            Saved::Unaware => ("added", Some(filter.clone())),
            Saved::State(state) => {
                for table in state.pending {
                    if included(&table.table) {
                        pending.push(table);
                    } else {
                        tracing::warn!(table = %table.table, "the table left [filter] during its snapshot; its snapshot is dropped");
                    }
                }
                // Patterns that no longer parse cover nothing: their tables are read again
                // rather than missed.
                let before = TableFilter::new(&state.covered.include, &state.covered.exclude).ok();
                ("added", before)
            }
        };
        let id = format!("{kind}-{now_ms}");
        for table in tables.iter().filter(|t| included(t)) {
            let was_covered = covered_before.as_ref().is_some_and(|before| {
                TableName::split(table.as_str()).is_some_and(|(d, t)| before.matches(&d, &t))
            });
            if !was_covered && !pending.iter().any(|p| &p.table == table) {
                pending.push(PendingTable::new(table.clone(), &id));
            }
        }
        if kind == "initial" && tables.iter().all(|t| !included(t)) {
            tracing::warn!("the initial snapshot finds no table that [filter] includes and the MySQL account can see; GRANT SELECT on the captured tables for their current rows to be read");
        }
    }
    let id = format!("requested-{now_ms}");
    for table in &config.again {
        if !included(table) {
            return Err(SnapshotError::NotIncluded {
                table: table.clone(),
            });
        }
        if !tables.contains(table) {
            return Err(SnapshotError::NoTable {
                table: table.clone(),
            });
        }
        pending.retain(|p| &p.table != table);
        pending.push(PendingTable::new(table.clone(), &id));
    }
    Ok(Some(SnapshotState {
        covered: covered_now,
        pending,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::KeyValue;

    fn config(
        mode: SnapshotMode,
        include: &[&str],
        again: &[&str],
    ) -> (SnapshotConfig, TableFilter) {
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        let mut file = crate::config::FileConfig::default();
        file.filter.include = include.clone();
        file.snapshot.mode = mode;
        let mut validated = file.validate().unwrap();
        validated
            .snapshot
            .snapshot_again(&again.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        (validated.snapshot, validated.filter)
    }

    fn tables(names: &[&str]) -> Vec<TableName> {
        names
            .iter()
            .map(|n| {
                let (d, t) = TableName::split(n).unwrap();
                TableName::new(&d, &t)
            })
            .collect()
    }

    fn pending(state: &Option<SnapshotState>) -> Vec<String> {
        state
            .as_ref()
            .map(|s| s.pending.iter().map(|p| p.table.to_string()).collect())
            .unwrap_or_default()
    }

    const TABLES: &[&str] = &["crm.users", "shop.orders", "shop.users"];

    #[test]
    fn a_first_start_reads_every_included_table() {
        let (config, filter) = config(SnapshotMode::Initial, &["shop.*"], &[]);
        let state = decide(&config, &filter, Saved::Nothing, &tables(TABLES), 7).unwrap();
        assert_eq!(pending(&state), ["shop.orders", "shop.users"]);
        let state = state.unwrap();
        assert_eq!(state.pending[0].id, "initial-7");
        assert_eq!(state.covered.include, ["shop.*"]);
    }

    #[test]
    fn an_old_checkpoint_counts_every_included_table_as_covered() {
        let (config, filter) = config(SnapshotMode::Initial, &["shop.*"], &[]);
        let state = decide(&config, &filter, Saved::Unaware, &tables(TABLES), 7).unwrap();
        assert_eq!(pending(&state), Vec::<String>::new());
        assert!(state.is_some(), "progress is kept from now on");
    }

    #[test]
    fn a_table_added_to_the_filter_is_read_and_progress_goes_on() {
        let (config, filter) = config(SnapshotMode::Initial, &["shop.*", "crm.users"], &[]);
        let saved = SnapshotState {
            covered: Covered {
                include: vec!["shop.*".into()],
                exclude: vec![],
            },
            pending: vec![PendingTable {
                after: Some(vec![KeyValue::Int(5)]),
                rows: 5,
                ..PendingTable::new(TableName::new("shop", "users"), "initial-1")
            }],
        };
        let state = decide(&config, &filter, Saved::State(saved), &tables(TABLES), 9).unwrap();
        assert_eq!(pending(&state), ["shop.users", "crm.users"]);
        let state = state.unwrap();
        assert_eq!(state.pending[0].rows, 5, "the table being read goes on");
        assert_eq!(state.pending[1].id, "added-9");
    }

    #[test]
    fn never_keeps_nothing_but_an_explicit_request() {
        let (config, filter) = config(SnapshotMode::Never, &["shop.*"], &[]);
        let state = decide(&config, &filter, Saved::Nothing, &tables(TABLES), 7).unwrap();
        assert_eq!(pending(&state), Vec::<String>::new());
        let (config, filter) = config_again(SnapshotMode::Never, &["shop.orders"]);
        let state = decide(&config, &filter, Saved::Unaware, &tables(TABLES), 7).unwrap();
        assert_eq!(pending(&state), ["shop.orders"]);
    }

    fn config_again(mode: SnapshotMode, again: &[&str]) -> (SnapshotConfig, TableFilter) {
        config(mode, &["shop.*"], again)
    }

    #[test]
    fn a_request_restarts_a_table_and_must_name_an_included_readable_one() {
        let (config, filter) = config_again(SnapshotMode::Initial, &["shop.orders"]);
        let saved = SnapshotState {
            covered: Covered {
                include: vec!["shop.*".into()],
                exclude: vec![],
            },
            pending: vec![PendingTable {
                rows: 3,
                after: Some(vec![KeyValue::Int(3)]),
                ..PendingTable::new(TableName::new("shop", "orders"), "initial-1")
            }],
        };
        let state = decide(&config, &filter, Saved::State(saved), &tables(TABLES), 9)
            .unwrap()
            .unwrap();
        assert_eq!(state.pending.len(), 1);
        assert_eq!(state.pending[0].rows, 0, "from its start again");
        assert_eq!(state.pending[0].id, "requested-9");
        let (config, filter) = config_again(SnapshotMode::Initial, &["crm.users"]);
        assert!(matches!(
            decide(&config, &filter, Saved::Nothing, &tables(TABLES), 9),
            Err(SnapshotError::NotIncluded { .. })
        ));
        let (config, filter) = config_again(SnapshotMode::Initial, &["shop.missing"]);
        assert!(matches!(
            decide(&config, &filter, Saved::Nothing, &tables(TABLES), 9),
            Err(SnapshotError::NoTable { .. })
        ));
    }
}

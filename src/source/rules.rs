//! `[columns]` and `[changes]` rules against the server's tables, at startup and in `check`: a
//! column rule naming a column a matched table does not have is probably a typo (and a typo
//! here shows what it meant to hide); a column rule that would exclude or mask a primary-key
//! column cannot be applied at all, nor a change rule watching a column the table lacks (it
//! would drop every update).
//!
//! # Invariants
//!
//! - Only tables the account can see in `information_schema` are checked; the reader applies
//!   the rules to every table anyway, as its definition arrives, and refuses a rule on a key
//!   there too ([`SchemaError::RuleOnKey`](super::schema::SchemaError::RuleOnKey)).

use mysql_async::{prelude::Queryable, Conn};

use super::SourceError;
use crate::{
    config::{ChangeRules, ColumnAction, ColumnRules, TableFilter},
    event::TableName,
};

/// Something a rule says about a table that the table contradicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The table.
    pub(crate) table: TableName,
    /// The column the rule names.
    pub(crate) column: String,
    /// The rule's word: `exclude`, `hash` or `mask`.
    pub(crate) word: &'static str,
    /// The column is part of the primary key and the rule excludes or masks it, or a change
    /// rule watches it and the table lacks it: refused. Otherwise a column rule names a
    /// column the table lacks: a warning.
    pub(crate) refused: bool,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.word == "emit_update_when_changed" {
            write!(f, "[changes] rule of {}: emit_update_when_changed names column {}, which the table does not have: every update would be dropped; fix the rule", self.table, self.column)
        } else if self.refused {
            write!(f, "[columns] rules {} column {} of {}, part of its primary key: rows are identified, ordered and partitioned by it; hash it instead", self.word, self.column, self.table)
        } else {
            write!(f, "[columns] rules {} column {} of {}, which has no such column (a typo? the rule applies once a DDL adds it)", self.word, self.column, self.table)
        }
    }
}

/// What the rules say that the captured tables contradict, table by table.
pub(crate) async fn findings(
    conn: &mut Conn,
    filter: &TableFilter,
    rules: &ColumnRules,
    changes: &ChangeRules,
) -> Result<Vec<Finding>, SourceError> {
    if !rules.any() && !changes.any() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, String, String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_KEY FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        )
        .await
        .map_err(|source| SourceError::Query {
            what: "reading the captured tables' columns for the [columns] rules",
            source,
        })?;
    let mut found = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let (database, table) = (&rows[start].0, &rows[start].1);
        let end = rows[start..]
            .iter()
            .position(|r| (&r.0, &r.1) != (database, table))
            .map_or(rows.len(), |n| start + n);
        let columns = &rows[start..end];
        start = end;
        if !filter.matches(database, table) {
            continue;
        }
        let name = TableName::new(database, table);
        let names = columns.iter().map(|c| c.2.as_str());
        if let Some(rule) = changes.of(database, table) {
            for watched in &rule.when_changed {
                if !names.clone().any(|n| n.to_lowercase() == *watched) {
                    found.push(Finding {
                        table: name.clone(),
                        column: watched.clone(),
                        word: "emit_update_when_changed",
                        refused: true,
                    });
                }
            }
        }
        if !rules.covers(database, table) {
            continue;
        }
        for (word, column) in rules.missing(database, table, names.clone()) {
            found.push(Finding {
                table: name.clone(),
                column,
                word,
                refused: false,
            });
        }
        let actions = rules.actions(database, table, names);
        for (column, action) in columns.iter().zip(actions) {
            if column.3 == "PRI" && matches!(action, ColumnAction::Exclude | ColumnAction::Mask(_))
            {
                found.push(Finding {
                    table: name.clone(),
                    column: column.2.clone(),
                    word: action.name(),
                    refused: true,
                });
            }
        }
    }
    Ok(found)
}

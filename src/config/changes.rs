//! `[changes]`: which row changes of a table are sent. A rule names tables (the patterns of
//! `[filter]`), the operations to send (`ops`), and for updates the columns whose change makes
//! one worth sending (`emit_update_when_changed`).
//!
//! # Invariants
//!
//! - The first rule whose patterns match a table is the table's; later ones are not
//!   consulted (as in a firewall's rule list).
//! - A filtered change is not lost: its transaction's boundary still moves the checkpoint, and
//!   it is counted (`EventsFilteredByOp`, `EventsFilteredUnchanged`), so an operator can tell
//!   "filtered" from "lost".
//! - Only binlog row changes are filtered; snapshot rows (`read`), markers and `ddl` events
//!   are always sent.

use super::{
    filter::{rule_tables, TableFilter},
    ConfigError,
};
use crate::event::Op;

/// The operations a rule sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ops {
    insert: bool,
    update: bool,
    delete: bool,
    truncate: bool,
}

impl Ops {
    const ALL: Ops = Ops {
        insert: true,
        update: true,
        delete: true,
        truncate: true,
    };

    /// Whether changes of kind `op` are sent (snapshot rows and markers always are).
    pub(crate) fn sends(&self, op: Op) -> bool {
        match op {
            Op::Insert => self.insert,
            Op::Update => self.update,
            Op::Delete => self.delete,
            Op::Truncate => self.truncate,
            Op::Read | Op::SnapshotStart | Op::SnapshotEnd | Op::Ddl => true,
        }
    }
}

/// The rule of one table.
#[derive(Debug, Clone)]
pub(crate) struct TableChanges {
    /// The operations sent.
    pub(crate) ops: Ops,
    /// Lowercase column names: an update changing none of them is not sent; empty: every
    /// update is.
    pub(crate) when_changed: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    tables: TableFilter,
    changes: TableChanges,
}

/// The change rules, validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeRules {
    rules: Vec<Rule>,
}

impl ChangeRules {
    /// Validates `[changes]`: patterns, operation names, column names.
    pub(crate) fn new(raw: &super::RawChanges) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            section: "changes",
            key: "rules",
            message,
        };
        let mut rules = Vec::new();
        for (n, rule) in raw.rules.iter().enumerate() {
            let n = n + 1;
            let tables = rule_tables("changes", n, &rule.tables)?;
            let mut ops = if rule.ops.is_empty() {
                Ops::ALL
            } else {
                Ops {
                    insert: false,
                    update: false,
                    delete: false,
                    truncate: false,
                }
            };
            for op in &rule.ops {
                match op.trim().to_ascii_lowercase().as_str() {
                    "insert" => ops.insert = true,
                    "update" => ops.update = true,
                    "delete" => ops.delete = true,
                    "truncate" => ops.truncate = true,
                    other => {
                        return Err(invalid(format!(
                            "rule {n}: unknown operation {other:?} in ops (insert, update, delete, truncate)"
                        )))
                    }
                }
            }
            let mut when_changed = Vec::new();
            for name in &rule.emit_update_when_changed {
                let name = name.trim();
                if name.is_empty() {
                    return Err(invalid(format!(
                        "rule {n} has an empty column name in emit_update_when_changed"
                    )));
                }
                when_changed.push(name.to_lowercase());
            }
            rules.push(Rule {
                tables,
                changes: TableChanges { ops, when_changed },
            });
        }
        Ok(Self { rules })
    }

    /// Whether any rule is configured.
    pub(crate) fn any(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The rule of `database.table`: the first that matches.
    pub(crate) fn of(&self, database: &str, table: &str) -> Option<&TableChanges> {
        self.rules
            .iter()
            .find(|r| r.tables.matches(database, table))
            .map(|r| &r.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<ChangeRules, ConfigError> {
        let raw: super::super::RawChanges = toml::from_str(text).unwrap();
        ChangeRules::new(&raw)
    }

    #[test]
    fn the_first_matching_rule_is_the_tables_and_ops_default_to_all() {
        let rules = rules(
            r#"
            [[rules]]
            tables = ["shop.products"]
            emit_update_when_changed = ["Price", "stock"]
            ops = ["insert", "UPDATE"]
            [[rules]]
            tables = ["shop.*"]
            "#,
        )
        .unwrap();
        let products = rules.of("shop", "products").unwrap();
        assert_eq!(products.when_changed, ["price", "stock"]);
        assert!(products.ops.sends(Op::Insert) && products.ops.sends(Op::Update));
        assert!(!products.ops.sends(Op::Delete) && !products.ops.sends(Op::Truncate));
        assert!(
            products.ops.sends(Op::Read),
            "snapshot rows are never filtered"
        );
        let orders = rules.of("shop", "orders").unwrap();
        assert!(orders.ops.sends(Op::Delete) && orders.when_changed.is_empty());
        assert!(rules.of("crm", "people").is_none());
    }

    #[test]
    fn unknown_operations_and_rules_without_tables_are_refused() {
        let error = rules("[[rules]]\ntables = [\"a.b\"]\nops = [\"upsert\"]").unwrap_err();
        assert!(error.to_string().contains("upsert"), "{error}");
        assert!(rules("[[rules]]\nops = [\"insert\"]").is_err());
        assert!(
            rules("[[rules]]\ntables = [\"a.b\"]\nemit_update_when_changed = [\" \"]").is_err()
        );
    }
}

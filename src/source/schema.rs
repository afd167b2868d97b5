//! Table schemas, taken from TABLE_MAP events.
//!
//! With `binlog_row_metadata=FULL` (MySQL 8.0.1+, MariaDB 10.5+) every TABLE_MAP event carries
//! the column names, signedness, character sets, ENUM/SET labels and primary key, so the daemon
//! needs no schema history and no SQL parser: an `ALTER TABLE` mid-stream simply shows up in the
//! next TABLE_MAP. `TableSchema::from_table_map` precomputes, once per TABLE_MAP, everything
//! the per-row decoder needs.
//!
//! Without FULL metadata, the names, signedness, collations, labels and primary key that the
//! event lacks come from a `CatalogTable` (`information_schema`), and the event's own column
//! types still drive decoding.

use mysql_common::{
    binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent},
    constants::ColumnType,
};

use super::{catalog::CatalogTable, decode::ColumnCodec};
use crate::{
    config::{ChangeRules, ColumnAction, ColumnRules, Ops},
    event::TableName,
};

/// Collation id of the `binary` character set.
pub(crate) const BINARY_COLLATION: u16 = 63;

/// One column, with what decoding its values needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnSchema {
    /// The name.
    pub(crate) name: String,
    /// The real type (ENUM and SET resolved from MYSQL_TYPE_STRING).
    pub(crate) column_type: ColumnType,
    /// The type metadata bytes from the TABLE_MAP.
    pub(crate) meta: Vec<u8>,
    /// UNSIGNED, for numeric columns.
    pub(crate) unsigned: bool,
    /// Collation id, for character, ENUM and SET columns; 0 when unknown.
    pub(crate) collation: u16,
    /// ENUM or SET labels in definition order.
    pub(crate) labels: Option<Vec<String>>,
}

/// A table as the binlog describes it.
#[derive(Debug, Clone)]
pub(crate) struct TableSchema {
    /// `database.table`.
    pub(crate) name: TableName,
    /// The database.
    pub(crate) database: String,
    /// The table.
    pub(crate) table: String,
    /// The columns in table order.
    pub(crate) columns: Vec<ColumnSchema>,
    /// Indexes into `columns` of the primary key, in key order; empty without a key.
    pub(crate) primary_key: Vec<usize>,
    /// How each column's values are written as JSON, in column order.
    pub(crate) codecs: Vec<ColumnCodec>,
    /// `[changes]`: which of its changes are sent; `None`: all.
    pub(crate) changes: Option<SchemaChanges>,
}

/// A table's `[changes]` rule, resolved to its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaChanges {
    /// The operations sent.
    pub(crate) ops: Ops,
    /// Indexes into `columns` of `emit_update_when_changed`: an update changing none of them
    /// is not sent; empty: every update is.
    pub(crate) watch: Vec<usize>,
}

/// A TABLE_MAP the daemon cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// No column names: the server does not log full row metadata.
    #[error(
        "table map of {table} has no column names; set binlog_row_metadata=FULL on the server"
    )]
    NoColumnNames {
        /// The table.
        table: TableName,
    },
    /// `information_schema` describes the table with a different number of columns than the
    /// binlog: it changed between the event and now, or was dropped.
    #[error("table map of {table} has {binlog} columns but information_schema has {catalog} now (the table changed or was dropped since this event); without binlog_row_metadata=FULL the daemon cannot name these columns: set binlog_row_metadata=FULL, or start after the change")]
    CatalogMismatch {
        /// The table.
        table: TableName,
        /// Columns in the TABLE_MAP.
        binlog: usize,
        /// Columns in information_schema.
        catalog: usize,
    },
    /// `information_schema` shows no columns for the table.
    #[error("table map of {table} has no column names (binlog_row_metadata is not FULL) and information_schema shows no columns for it: grant the replication user SELECT on the captured tables (GRANT SELECT ON {database}.* TO ...) so it can read their definitions, or set binlog_row_metadata=FULL; if the table was dropped since this event, start after the DROP")]
    NotInCatalog {
        /// The table.
        table: TableName,
        /// Its database.
        database: String,
    },
    /// A `[columns]` rule would exclude or mask a primary-key column: the events of the table
    /// could no longer be told apart, ordered or deduplicated by their key.
    #[error("[columns] rules {action} column {column} of {table}, which is part of its primary key (rows are identified, ordered and partitioned by it): hash it instead (hash = [\"{column}\"]), or leave the table out of the rule")]
    RuleOnKey {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// `exclude` or `mask`.
        action: &'static str,
    },
    /// A `[changes]` rule watches a column the table does not have, or one a `[columns]` rule
    /// hides: updates would be judged without it, and sent or dropped wrongly.
    #[error("[changes] rule of {table}: emit_update_when_changed names column {column}, which {why}: an update's change to it could not be seen, so updates would be dropped wrongly; fix the rule (or the [columns] rule)")]
    WatchedColumn {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// `the table does not have`, or what `[columns]` does to it.
        why: String,
    },
    /// The metadata is malformed or of an unknown type.
    #[error("table map of {table} is malformed: {message}")]
    Malformed {
        /// The table.
        table: TableName,
        /// What is wrong.
        message: String,
    },
}

impl TableSchema {
    /// Precomputes the schema of a TABLE_MAP event. Without column names in the event,
    /// `positional_names` names the columns `@1`, `@2`, ... (as `mariadb-binlog` does) instead of
    /// failing.
    pub(crate) fn from_table_map(
        map: &TableMapEvent<'_>,
        positional_names: bool,
    ) -> Result<Self, SchemaError> {
        Self::build(map, positional_names, None)
    }

    /// A table from its columns and primary key (what a snapshot reads from
    /// `information_schema`).
    pub(crate) fn from_columns(
        database: &str,
        table: &str,
        columns: Vec<ColumnSchema>,
        primary_key: Vec<usize>,
    ) -> Self {
        Self {
            name: TableName::new(database, table),
            database: database.to_owned(),
            table: table.to_owned(),
            codecs: columns.iter().map(ColumnCodec::new).collect(),
            columns,
            primary_key,
            changes: None,
        }
    }

    /// As [`Self::from_table_map`], with what the event lacks taken from `catalog`.
    pub(crate) fn from_table_map_and_catalog(
        map: &TableMapEvent<'_>,
        catalog: &CatalogTable,
    ) -> Result<Self, SchemaError> {
        Self::build(map, false, Some(catalog))
    }

    fn build(
        map: &TableMapEvent<'_>,
        positional_names: bool,
        catalog: Option<&CatalogTable>,
    ) -> Result<Self, SchemaError> {
        let database = map.database_name().into_owned();
        let table = map.table_name().into_owned();
        let name = TableName::new(&database, &table);
        let malformed = |message: String| SchemaError::Malformed {
            table: name.clone(),
            message,
        };
        let n_columns = map.columns_count() as usize;
        if let Some(catalog) = catalog {
            check_catalog(catalog, n_columns, &name, &database)?;
        }
        let known = |index: usize| catalog.map(|c| &c.columns[index]);
        let extractor = OptionalMetaExtractor::new(map.iter_optional_meta())
            .map_err(|e| malformed(e.to_string()))?;
        let mut names = extractor.iter_column_name();
        let mut signedness = extractor.iter_signedness();
        let mut charsets = extractor.iter_charset();
        let mut enum_set_charsets = extractor.iter_enum_and_set_charset();
        let (mut enum_labels, mut set_labels) = labels(map).map_err(malformed)?;
        let (mut enum_labels, mut set_labels) = (enum_labels.drain(..), set_labels.drain(..));

        let mut columns = Vec::with_capacity(n_columns);
        for index in 0..n_columns {
            let column_type = match map.get_column_type(index) {
                Ok(Some(t)) => t,
                Ok(None) => return Err(malformed(format!("column {index} has no type"))),
                Err(e) => return Err(malformed(format!("column {index}: {e}"))),
            };
            let meta = map
                .get_column_metadata(index)
                .ok_or_else(|| malformed(format!("column {index} has no readable metadata")))?
                .to_vec();
            check_meta_len(column_type, &meta)
                .map_err(|m| malformed(format!("column {index}: {m}")))?;
            let name = match (names.next(), known(index)) {
                (Some(Ok(n)), _) => n.name().into_owned(),
                (Some(Err(e)), _) => return Err(malformed(e.to_string())),
                (None, Some(column)) => column.name.clone(),
                (None, None) if positional_names => format!("@{}", index + 1),
                (None, None) => return Err(SchemaError::NoColumnNames { table: name }),
            };
            // The event lists signedness for numeric columns only.
            let unsigned = column_type.is_numeric_type() && {
                let in_event = signedness.next();
                known(index).map_or(in_event.unwrap_or(false), |c| c.unsigned)
            };
            let from_event = if column_type.is_character_type() {
                charsets.next()
            } else if column_type.is_enum_or_set_type() {
                enum_set_charsets.next()
            } else {
                None
            };
            let from_event = from_event
                .transpose()
                .map_err(|e| malformed(e.to_string()))?;
            let collation = match from_event.or_else(|| known(index).map(|c| c.collation)) {
                Some(collation)
                    if column_type.is_character_type() || column_type.is_enum_or_set_type() =>
                {
                    collation
                }
                _ => 0,
            };
            let labels = match column_type {
                ColumnType::MYSQL_TYPE_ENUM => enum_labels.next(),
                ColumnType::MYSQL_TYPE_SET => set_labels.next(),
                _ => None,
            }
            .or_else(|| {
                known(index)
                    .filter(|_| column_type.is_enum_or_set_type())
                    .and_then(|c| c.labels.clone())
            });
            columns.push(ColumnSchema {
                name,
                column_type,
                meta,
                unsigned,
                collation,
                labels,
            });
        }
        let primary_key = primary_key(&extractor, n_columns, catalog).map_err(malformed)?;
        Ok(Self {
            name,
            database,
            table,
            codecs: columns.iter().map(ColumnCodec::new).collect(),
            columns,
            primary_key,
            changes: None,
        })
    }
}

impl TableSchema {
    /// The table with its `[changes]` rule, if one matches; apply the `[columns]` rules first
    /// (a watched column they exclude or mask is refused).
    pub(crate) fn with_changes(mut self, rules: &ChangeRules) -> Result<Self, SchemaError> {
        let Some(rule) = rules.of(&self.database, &self.table) else {
            return Ok(self);
        };
        let mut watch = Vec::with_capacity(rule.when_changed.len());
        for name in &rule.when_changed {
            let refused = |why: String| SchemaError::WatchedColumn {
                table: self.name.clone(),
                column: name.clone(),
                why,
            };
            let Some(index) = self
                .columns
                .iter()
                .position(|c| c.name.to_lowercase() == *name)
            else {
                return Err(refused("the table does not have".into()));
            };
            if matches!(
                self.codecs[index].action(),
                ColumnAction::Exclude | ColumnAction::Mask(_)
            ) {
                let action = self.codecs[index].action().name();
                return Err(refused(format!("a [columns] rule tells to {action}")));
            }
            watch.push(index);
        }
        self.changes = Some(SchemaChanges {
            ops: rule.ops,
            watch,
        });
        Ok(self)
    }

    /// The table with `rules` applied to its columns' codecs (see `config::columns`); a rule
    /// that would exclude or mask a primary-key column is refused.
    pub(crate) fn with_rules(mut self, rules: &ColumnRules) -> Result<Self, SchemaError> {
        if !rules.covers(&self.database, &self.table) {
            return Ok(self);
        }
        let names = self.columns.iter().map(|c| c.name.as_str());
        let actions = rules.actions(&self.database, &self.table, names);
        for (index, (codec, action)) in self.codecs.iter_mut().zip(actions).enumerate() {
            if self.primary_key.contains(&index)
                && matches!(action, ColumnAction::Exclude | ColumnAction::Mask(_))
            {
                return Err(SchemaError::RuleOnKey {
                    table: self.name.clone(),
                    column: self.columns[index].name.clone(),
                    action: action.name(),
                });
            }
            codec.set_action(action);
        }
        Ok(self)
    }
}

/// A catalog entry that cannot describe the table map's columns.
fn check_catalog(
    catalog: &CatalogTable,
    n_columns: usize,
    name: &TableName,
    database: &str,
) -> Result<(), SchemaError> {
    if catalog.columns.is_empty() {
        return Err(SchemaError::NotInCatalog {
            table: name.clone(),
            database: database.to_owned(),
        });
    }
    if catalog.columns.len() != n_columns {
        return Err(SchemaError::CatalogMismatch {
            table: name.clone(),
            binlog: n_columns,
            catalog: catalog.columns.len(),
        });
    }
    Ok(())
}

/// The primary key's column indexes: from the event's metadata, else from the catalog.
fn primary_key(
    extractor: &OptionalMetaExtractor<'_>,
    n_columns: usize,
    catalog: Option<&CatalogTable>,
) -> Result<Vec<usize>, String> {
    let mut primary_key = Vec::new();
    for index in extractor.iter_primary_key() {
        let index = index.map_err(|e| e.to_string())? as usize;
        if index >= n_columns {
            return Err(format!("primary key column {index} does not exist"));
        }
        primary_key.push(index);
    }
    if primary_key.is_empty() {
        if let Some(catalog) = catalog {
            primary_key = catalog.primary_key.clone();
        }
    }
    Ok(primary_key)
}

type Labels = Vec<Vec<String>>;

/// ENUM and SET labels per ENUM/SET column, in column order.
fn labels(map: &TableMapEvent<'_>) -> Result<(Labels, Labels), String> {
    let (mut enums, mut sets) = (Vec::new(), Vec::new());
    for field in map.iter_optional_meta() {
        match field.map_err(|e| e.to_string())? {
            OptionalMetadataField::EnumStrValue(values) => {
                for column in values.iter_values() {
                    let column = column.map_err(|e| e.to_string())?;
                    enums.push(
                        column
                            .values()
                            .iter()
                            .map(|v| v.value().into_owned())
                            .collect(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(values) => {
                for column in values.iter_values() {
                    let column = column.map_err(|e| e.to_string())?;
                    sets.push(
                        column
                            .values()
                            .iter()
                            .map(|v| v.value().into_owned())
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }
    Ok((enums, sets))
}

/// The value parser indexes the metadata bytes without checking; refuse short metadata here so
/// a corrupt TABLE_MAP is an error, not a panic.
fn check_meta_len(column_type: ColumnType, meta: &[u8]) -> Result<(), String> {
    use ColumnType::*;
    let needed = match column_type {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_BIT
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET => 2,
        MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR
        | MYSQL_TYPE_TYPED_ARRAY => 1,
        _ => 0,
    };
    if meta.len() < needed {
        return Err(format!(
            "{column_type:?} needs {needed} metadata bytes, the event has {}",
            meta.len()
        ));
    }
    Ok(())
}

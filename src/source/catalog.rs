//! Table schemas from `information_schema`, for servers that do not log full row metadata
//! (`binlog_row_metadata` MINIMAL or NO_LOG: the default on RDS MySQL, and MariaDB before
//! 10.5). Their TABLE_MAP events carry the column types but not the names, and MINIMAL
//! leaves out ENUM/SET labels and the primary key too; this module supplies them. It also
//! gives `ddl` events (`output.ddl`) their column lists.
//!
//! # Invariants
//!
//! - A table is looked up once and cached; any DDL statement in the binlog empties the cache,
//!   so the next TABLE_MAP of an altered table reads its new definition.
//! - The catalog describes the table *now*, the binlog describes it *then*. When the two
//!   disagree in column count the reader stops with a message rather than guess. When they
//!   agree in count but not in meaning (a column renamed or retyped between the event and the
//!   lookup: replaying binlog from before a DDL, or lagging across one) the names are today's;
//!   this is the documented limit of running without `binlog_row_metadata=FULL`.

use std::{collections::HashMap, sync::Arc};

use mysql_async::{prelude::Queryable, Conn};

use super::{connect, SourceError};
use crate::{config::MysqlConfig, event::TableName};

/// One column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogColumn {
    /// The name.
    pub(crate) name: String,
    /// `UNSIGNED`, for numeric columns.
    pub(crate) unsigned: bool,
    /// The collation id; `binary` (63) for columns without one.
    pub(crate) collation: u16,
    /// ENUM or SET labels, in definition order.
    pub(crate) labels: Option<Vec<String>>,
    /// `DATA_TYPE`, lower case (`int`, `varchar`, `timestamp`, ...).
    pub(crate) data_type: String,
    /// `DATETIME_PRECISION`: fractional second digits of times (0 for other types).
    pub(crate) fsp: u8,
    /// `COLUMN_TYPE`, as the server writes it (`int(11) unsigned`, `varchar(20)`, ...).
    pub(crate) column_type: String,
}

/// A table as `information_schema` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogTable {
    /// The columns in table order.
    pub(crate) columns: Vec<CatalogColumn>,
    /// Indexes into `columns` of the primary key, in key order.
    pub(crate) primary_key: Vec<usize>,
}

/// The cache of looked-up tables, with its own connection (opened on first use).
pub(crate) struct Catalog {
    mysql: MysqlConfig,
    conn: Option<Conn>,
    tables: HashMap<TableName, Arc<CatalogTable>>,
}

impl Catalog {
    /// An empty catalog that connects with `mysql` when first asked.
    pub(crate) fn new(mysql: MysqlConfig) -> Self {
        Self {
            mysql,
            conn: None,
            tables: HashMap::new(),
        }
    }

    /// The table's definition, from the cache or from the server.
    pub(crate) async fn table(
        &mut self,
        database: &str,
        table: &str,
    ) -> Result<Arc<CatalogTable>, SourceError> {
        let name = TableName::new(database, table);
        if let Some(found) = self.tables.get(&name) {
            return Ok(Arc::clone(found));
        }
        tracing::debug!(table = %name, "reading the table definition from information_schema");
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(connect::connect(&self.mysql).await?),
        };
        let loaded = match load(conn, database, table).await {
            Ok(loaded) => Arc::new(loaded),
            Err(error) => {
                // The connection may be the problem; the next attempt opens a new one.
                self.conn = None;
                return Err(error);
            }
        };
        tracing::debug!(table = %name, columns = loaded.columns.len(), "table definition read");
        self.tables.insert(name, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Forgets every cached table: called for every DDL statement in the binlog.
    pub(crate) fn invalidate(&mut self) {
        self.tables.clear();
    }
}

/// `COLUMN_NAME, COLUMN_TYPE, collation id, DATA_TYPE, DATETIME_PRECISION`.
type ColumnRow = (String, String, Option<u64>, String, Option<u64>);

/// The table's columns (with what snapshots need: data type, fractional digits) and primary
/// key; no columns when the table does not exist or the user cannot see it.
pub(crate) async fn load(
    conn: &mut Conn,
    database: &str,
    table: &str,
) -> Result<CatalogTable, SourceError> {
    let query_error = |source| SourceError::Query {
        what: "reading a table definition from information_schema",
        source,
    };
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT c.COLUMN_NAME, c.COLUMN_TYPE, co.ID, c.DATA_TYPE, c.DATETIME_PRECISION \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.COLLATIONS co ON co.COLLATION_NAME = c.COLLATION_NAME \
             WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
             ORDER BY c.ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(query_error)?;
    let columns: Vec<CatalogColumn> = rows
        .into_iter()
        .map(
            |(name, column_type, collation, data_type, fsp)| CatalogColumn {
                name,
                unsigned: is_unsigned(&column_type),
                // Binary strings and BLOBs have no collation in information_schema; in the binlog
                // they have the `binary` one.
                collation: collation
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(super::schema::BINARY_COLLATION),
                labels: labels(&column_type),
                data_type: data_type.to_ascii_lowercase(),
                fsp: fsp.map_or(0, |p| p.min(6) as u8),
                column_type,
            },
        )
        .collect();
    let key: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' \
             ORDER BY SEQ_IN_INDEX",
            (database, table),
        )
        .await
        .map_err(query_error)?;
    let primary_key = key
        .iter()
        .filter_map(|name| columns.iter().position(|c| &c.name == name))
        .collect();
    Ok(CatalogTable {
        columns,
        primary_key,
    })
}

/// Whether a `COLUMN_TYPE` such as `int(10) unsigned zerofill` is unsigned.
fn is_unsigned(column_type: &str) -> bool {
    column_type
        .split_whitespace()
        .skip(1)
        .any(|word| word.eq_ignore_ascii_case("unsigned"))
}

/// The labels of `enum('a','b')` or `set('x','y')`, with `''` read as a quote.
fn labels(column_type: &str) -> Option<Vec<String>> {
    let lower = column_type.to_ascii_lowercase();
    let inner = if lower.starts_with("enum(") {
        &column_type[5..]
    } else if lower.starts_with("set(") {
        &column_type[4..]
    } else {
        return None;
    };
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        match chars.next() {
            Some('\'') => {
                let mut label = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            label.push('\'');
                        }
                        Some('\'') | None => break,
                        Some(c) => label.push(c),
                    }
                }
                labels.push(label);
            }
            Some(',') => {}
            Some(')') | None => break,
            Some(_) => {}
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_signedness_and_labels_from_column_types() {
        assert!(is_unsigned("int(10) unsigned"));
        assert!(is_unsigned("bigint unsigned zerofill"));
        assert!(!is_unsigned("int(11)"));
        assert!(!is_unsigned("enum('unsigned')"));
        assert_eq!(
            labels("enum('new','it''s','a,b')"),
            Some(vec!["new".to_owned(), "it's".to_owned(), "a,b".to_owned()])
        );
        assert_eq!(
            labels("set('x','y')"),
            Some(vec!["x".to_owned(), "y".to_owned()])
        );
        assert_eq!(labels("varchar(20)"), None);
        assert_eq!(labels("enum()"), Some(vec![]));
    }
}

//! What a table without a primary key is chunked by (its first unique key whose columns are
//! all NOT NULL), and that key's value as the bytes the placement matches a snapshot row and
//! a change's row image by.

use mysql_async::{prelude::Queryable, Conn};
use serde_json::Value as Json;

use crate::{
    event::write_json,
    source::{catalog::CatalogColumn, SourceError},
};

/// A unique key's columns and values as one JSON object (`{"code":"c1"}`): the same bytes
/// from a snapshot row and from a change's row image, so that the placement can match them.
pub(crate) fn unique_key_bytes<'a>(pairs: impl Iterator<Item = (&'a str, &'a Json)>) -> Vec<u8> {
    let mut out = vec![b'{'];
    for (n, (name, value)) in pairs.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_json(&mut out, name);
        out.push(b':');
        write_json(&mut out, value);
    }
    out.push(b'}');
    out
}

/// The first unique key of a table whose columns are all NOT NULL, as indexes into
/// `columns`; empty when there is none.
pub(super) async fn unique_key(
    conn: &mut Conn,
    database: &str,
    table: &str,
    columns: &[CatalogColumn],
) -> Result<Vec<usize>, SourceError> {
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME, NULLABLE FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (database, table),
        )
        .await
        .map_err(|source| SourceError::Query {
            what: "reading a table's unique keys from information_schema",
            source,
        })?;
    let mut keys: Vec<(String, Vec<usize>, bool)> = Vec::new();
    for (index, column, nullable) in rows {
        if keys.last().is_none_or(|(name, _, _)| *name != index) {
            keys.push((index.clone(), Vec::new(), true));
        }
        let key = keys.last_mut().expect("pushed");
        match columns.iter().position(|c| c.name == column) {
            Some(position) if nullable.is_empty() => key.1.push(position),
            _ => key.2 = false,
        }
    }
    Ok(keys
        .into_iter()
        .find(|(_, key, usable)| *usable && !key.is_empty())
        .map(|(_, key, _)| key)
        .unwrap_or_default())
}

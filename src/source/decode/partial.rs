//! MySQL 8 partial JSON updates (`binlog_row_value_options=PARTIAL_JSON`): in a
//! PARTIAL_UPDATE_ROWS event the after image of a JSON column may hold a list of diffs
//! (REPLACE, INSERT or REMOVE of a value at a JSON path) instead of the document. The reader
//! applies them to the before image's document and writes the whole document, so consumers
//! see ordinary updates.
//!
//! The semantics are those of the server applying the same diffs on a replica
//! (`apply_json_diffs` in MySQL's `sql/json_diff.cc`):
//! - REPLACE: the value at the path is replaced; `$` replaces the whole document.
//! - INSERT: the path's parent must be an object (the member is set: added in the server's key
//!   order, or replaced) or an array (the value is inserted at the index; past the end it is
//!   appended).
//! - REMOVE: the member or array cell at the path is removed.
//!
//! Array legs may count from the end (`[last]`, `[last-2]`), and `[0]` (or `[last]`) on a value
//! that is not an array is that value (the server's auto-wrapping). A diff that does not
//! apply (a path that does not exist, a wildcard) is an error: the document is never guessed.

use mysql_common::{
    binlog::{jsondiff::JsonDiff, jsondiff::JsonDiffOperation, value::BinlogValue},
    constants::ColumnType,
    io::ParseBuf,
    misc::raw::{int::LenEnc, RawInt},
};
use serde_json::{Map, Value as Json};

use super::{parse_value, skip_value, DecodeError, ValueError};
use crate::source::schema::TableSchema;

/// A partial update row's after image: which columns hold diffs, and the before image's
/// documents they apply to (by column index; `None` where the before image lacks the
/// column or holds NULL).
pub(super) struct PartialRow {
    pub(super) columns: Vec<bool>,
    pub(super) before: Vec<Option<Json>>,
}

/// The `binlog_row_value_options` bit that says the row has partial JSON columns.
const PARTIAL_JSON_UPDATES: u64 = 1;

/// Reads the start of a partial update's after image from `buf` and, when a column holds
/// diffs, the documents of the before image (`before_image`, read again from its start).
pub(super) fn row_diffs<'a>(
    schema: &'a TableSchema,
    buf: &mut ParseBuf<'_>,
    before_present: Option<&impl Fn(usize) -> bool>,
    before_image: ParseBuf<'a>,
) -> Result<Option<PartialRow>, DecodeError> {
    let Some(columns) = read_row_options(schema, buf)? else {
        return Ok(None);
    };
    Ok(Some(PartialRow {
        before: before_documents(schema, before_present, before_image)?,
        columns,
    }))
}

/// Reads the start of a partial update's after image: its value options and, when they say
/// so, one bit per JSON column of the table (in column order). `None` when no column holds
/// diffs.
fn read_row_options(
    schema: &TableSchema,
    buf: &mut ParseBuf<'_>,
) -> Result<Option<Vec<bool>>, DecodeError> {
    let options: RawInt<LenEnc> = buf.parse(()).map_err(|_| DecodeError::Truncated)?;
    if *options & PARTIAL_JSON_UPDATES == 0 {
        return Ok(None);
    }
    let json_columns: Vec<usize> = (0..schema.columns.len())
        .filter(|&i| schema.columns[i].column_type == ColumnType::MYSQL_TYPE_JSON)
        .collect();
    let bits: &[u8] = buf
        .parse(json_columns.len().div_ceil(8))
        .map_err(|_| DecodeError::Truncated)?;
    let mut columns = vec![false; schema.columns.len()];
    for (n, &index) in json_columns.iter().enumerate() {
        columns[index] = bits[n / 8] & (1 << (n % 8)) != 0;
    }
    Ok(columns.contains(&true).then_some(columns))
}

/// The JSON documents of a before image (read from a copy of the buffer: the image itself is
/// written by the caller).
fn before_documents<'a>(
    schema: &'a TableSchema,
    present: Option<&impl Fn(usize) -> bool>,
    mut buf: ParseBuf<'a>,
) -> Result<Vec<Option<Json>>, DecodeError> {
    let mut documents = vec![None; schema.columns.len()];
    let Some(present) = present else {
        return Ok(documents);
    };
    let columns: Vec<usize> = (0..schema.columns.len()).filter(|&i| present(i)).collect();
    let null_bitmap: &[u8] = buf
        .parse(columns.len().div_ceil(8))
        .map_err(|_| DecodeError::Truncated)?;
    for (n, &index) in columns.iter().enumerate() {
        if null_bitmap[n / 8] & (1 << (n % 8)) != 0 {
            continue;
        }
        let column = &schema.columns[index];
        let failed = |source| DecodeError::Column {
            name: column.name.clone(),
            column_type: format!("{:?}", column.column_type),
            source,
        };
        if column.column_type != ColumnType::MYSQL_TYPE_JSON {
            skip_value(column, &schema.codecs[index], &mut buf).map_err(failed)?;
            continue;
        }
        let value = parse_value(column, &mut buf).map_err(|_| failed(ValueError::Truncated))?;
        if let BinlogValue::Jsonb(document) = value {
            documents[index] = Some(json_of(document).map_err(failed)?);
        }
    }
    Ok(documents)
}

/// The binary JSON value as JSON, as the before and full after images have it.
fn json_of(document: mysql_common::binlog::jsonb::Value<'_>) -> Result<Json, ValueError> {
    document
        .parse()
        .map(Json::from)
        .map_err(|e| ValueError::Json {
            detail: e.to_string(),
        })
}

/// Reads a partial column's diffs and, when `wanted`, applies them to `before`: the after
/// document. Without the before document it is an error naming what to change.
pub(super) fn after_document(
    buf: &mut ParseBuf<'_>,
    before: Option<&Json>,
    wanted: bool,
) -> Result<Option<Json>, ValueError> {
    let length: RawInt<mysql_common::misc::raw::int::LeU32> =
        buf.parse(()).map_err(|_| ValueError::Truncated)?;
    let mut diffs: ParseBuf<'_> = buf
        .parse(*length as usize)
        .map_err(|_| ValueError::Truncated)?;
    if !wanted {
        return Ok(None);
    }
    let failed = |detail: String| ValueError::PartialJson { detail };
    let mut document = before
        .cloned()
        .ok_or_else(|| failed("the before image does not hold this column's document (binlog_row_image is not FULL); set binlog_row_image=FULL, or binlog_row_value_options='' to log whole documents".into()))?;
    while !diffs.is_empty() {
        let diff: JsonDiff<'_> = diffs
            .parse(())
            .map_err(|e| failed(format!("a diff cannot be read: {e}")))?;
        let operation = match diff.operation() {
            JsonDiffOperation::REPLACE => Operation::Replace,
            JsonDiffOperation::INSERT => Operation::Insert,
            JsonDiffOperation::REMOVE => Operation::Remove,
        };
        let path = diff.path_str().into_owned();
        let value = diff.value().cloned().map(json_of).transpose()?;
        let legs = parse_path(&path).map_err(failed)?;
        apply(&mut document, operation, &legs, value)
            .map_err(|e| failed(format!("{operation:?} at {path}: {e}")))?;
    }
    Ok(Some(document))
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leg {
    /// `.name` or `."name"`.
    Member(String),
    /// `[n]`.
    Index(usize),
    /// `[last]` (0) or `[last-n]` (n).
    FromLast(usize),
}

/// What a diff does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Replace,
    Insert,
    Remove,
}

/// Parses a JSON path as the server writes it in a diff: `$` then legs, members quoted when
/// they are not identifiers. Wildcards and ranges cannot name one place and are refused.
pub(crate) fn parse_path(path: &str) -> Result<Vec<Leg>, String> {
    let invalid = |why: &str| format!("invalid JSON path {path:?}: {why}");
    let mut rest = path.trim_start();
    rest = rest
        .strip_prefix('$')
        .ok_or_else(|| invalid("no leading $"))?;
    let mut legs = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(legs);
        }
        if let Some(after) = rest.strip_prefix('.') {
            let after = after.trim_start();
            if after.starts_with('"') {
                // A JSON string: find its closing quote, skipping escapes.
                let bytes = after.as_bytes();
                let mut end = 1;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let quoted = after
                    .get(..=end)
                    .ok_or_else(|| invalid("unterminated key"))?;
                let key: String =
                    serde_json::from_str(quoted).map_err(|_| invalid("bad quoted key"))?;
                legs.push(Leg::Member(key));
                rest = &after[end + 1..];
            } else {
                // An identifier: letters, digits, `_`, `$`, anything not ASCII.
                let end = after
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()))
                    .unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() {
                    return Err(invalid("a wildcard or an empty member"));
                }
                legs.push(Leg::Member(key.to_owned()));
                rest = &after[end..];
            }
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| invalid("unterminated ["))?;
            let inside = after[..end].trim();
            let leg = if let Some(last) = inside.strip_prefix("last") {
                let offset = last.trim();
                if offset.is_empty() {
                    Leg::FromLast(0)
                } else {
                    let n = offset
                        .strip_prefix('-')
                        .and_then(|n| n.trim().parse().ok())
                        .ok_or_else(|| invalid("bad [last-n]"))?;
                    Leg::FromLast(n)
                }
            } else {
                Leg::Index(inside.parse().map_err(|_| invalid("bad array index"))?)
            };
            legs.push(leg);
            rest = &after[end + 1..];
        } else {
            return Err(invalid("expected . or ["));
        }
    }
}

/// The index `leg` names in an array of `len` cells, if it is one.
fn resolve(leg: &Leg, len: usize) -> Option<usize> {
    match *leg {
        Leg::Index(i) => Some(i),
        Leg::FromLast(n) => len.checked_sub(1)?.checked_sub(n),
        Leg::Member(_) => None,
    }
}

/// The value at `legs` under `doc`.
fn seek<'a>(mut doc: &'a mut Json, legs: &[Leg]) -> Option<&'a mut Json> {
    for leg in legs {
        doc = match (doc, leg) {
            (Json::Object(map), Leg::Member(key)) => map.get_mut(key)?,
            (Json::Array(cells), leg) => {
                let i = resolve(leg, cells.len())?;
                cells.get_mut(i)?
            }
            // Auto-wrapping: a value that is not an array is its own cell 0.
            (other, Leg::Index(0) | Leg::FromLast(0)) => other,
            _ => return None,
        };
    }
    Some(doc)
}

/// Sets `key` in `map` where the server keeps it: keys ordered by length, then bytes.
fn insert_member(map: &mut Map<String, Json>, key: String, value: Json) {
    if let Some(slot) = map.get_mut(&key) {
        *slot = value;
        return;
    }
    let order = |k: &str| (k.len(), k.as_bytes().to_vec());
    let at = map
        .keys()
        .position(|k| order(k) > order(&key))
        .unwrap_or(map.len());
    map.shift_insert(at, key, value);
}

/// Applies one diff to `doc`.
pub(crate) fn apply(
    doc: &mut Json,
    operation: Operation,
    path: &[Leg],
    value: Option<Json>,
) -> Result<(), String> {
    let missing = || "the path does not exist in the before image's document".to_owned();
    let value = || value.ok_or_else(|| "the diff has no value".to_owned());
    let Some((last, parent_path)) = path.split_last() else {
        return match operation {
            Operation::Replace => {
                *doc = value()?;
                Ok(())
            }
            _ => Err("only REPLACE can apply to the whole document".into()),
        };
    };
    if operation == Operation::Replace {
        *seek(doc, path).ok_or_else(missing)? = value()?;
        return Ok(());
    }
    let parent = seek(doc, parent_path).ok_or_else(missing)?;
    match (operation, parent, last) {
        (Operation::Insert, Json::Object(map), Leg::Member(key)) => {
            insert_member(map, key.clone(), value()?);
        }
        (Operation::Insert, Json::Array(cells), leg) if !matches!(leg, Leg::Member(_)) => {
            let at = resolve(leg, cells.len()).unwrap_or(0).min(cells.len());
            cells.insert(at, value()?);
        }
        (Operation::Remove, Json::Object(map), Leg::Member(key)) => {
            map.shift_remove(key).ok_or_else(missing)?;
        }
        (Operation::Remove, Json::Array(cells), leg) => {
            let at = resolve(leg, cells.len()).filter(|&i| i < cells.len());
            cells.remove(at.ok_or_else(missing)?);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

#[cfg(test)]
mod tests;

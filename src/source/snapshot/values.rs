//! How a snapshot reads each column so that its value converts exactly as the binlog's does:
//! the binlog column type and metadata a column would have, and the expression that brings
//! the binary protocol's value to the binlog's form (see the docs of the parent module).

use mysql_async::Value;
use mysql_common::{binlog::value::BinlogValue, constants::ColumnType};
use serde_json::Value as Json;

use crate::source::{
    catalog::CatalogColumn,
    decode::{self, ValueError},
    schema::{ColumnSchema, BINARY_COLLATION},
};

/// How a column is selected and its value brought to the binlog's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fetch {
    /// As it is.
    Plain,
    /// `UNIX_TIMESTAMP(c)`, then as the binlog's TIMESTAMP.
    UnixTimestamp,
    /// `c+0`: an ENUM's index.
    EnumIndex,
    /// `c+0`: a SET's bits.
    SetBits,
    /// YEAR, which the binary protocol gives as a number.
    Year,
}

/// A value the snapshot writes straight into the row's JSON, without the conversion of
/// `decode::to_json` (the same text: checked by the type-matrix test): the bulk of most
/// tables, where a third of the time went to allocating values twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direct {
    /// Through the conversion.
    No,
    /// An integer column (not MEDIUMINT, which the conversion sign-extends).
    Integer,
    /// A VARCHAR or TEXT column in UTF-8 (or ASCII).
    Utf8Text,
    /// A VARCHAR or TEXT column in MySQL's latin1 (Windows-1252): values that are all ASCII,
    /// the same bytes in UTF-8; the others through the conversion.
    Latin1Text,
    /// A DOUBLE column (finite values).
    Double,
    /// A DECIMAL column (a string of its normalized digits).
    Decimal,
    /// A DATETIME column with this many fractional digits.
    DateTime(u8),
    /// A DATE column.
    Date,
}

impl Direct {
    /// How `column`, read as `how`, is written.
    pub(super) fn of(column: &ColumnSchema, how: Fetch) -> Self {
        use ColumnType::*;
        match (how, column.column_type) {
            (
                Fetch::Plain,
                MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG,
            ) => Direct::Integer,
            (Fetch::Plain, MYSQL_TYPE_VARCHAR | MYSQL_TYPE_BLOB)
                if column.collation != BINARY_COLLATION
                    && column.collation != 0
                    && decode::is_utf8(column.collation) =>
            {
                Direct::Utf8Text
            }
            (Fetch::Plain, MYSQL_TYPE_VARCHAR | MYSQL_TYPE_BLOB)
                if decode::is_latin1(column.collation) =>
            {
                Direct::Latin1Text
            }
            (Fetch::Plain, MYSQL_TYPE_DOUBLE) => Direct::Double,
            (Fetch::Plain, MYSQL_TYPE_DATETIME2) => {
                Direct::DateTime(column.meta.first().copied().unwrap_or(0).min(6))
            }
            (Fetch::Plain, MYSQL_TYPE_DATE) => Direct::Date,
            (Fetch::Plain, MYSQL_TYPE_NEWDECIMAL) => Direct::Decimal,
            _ => Direct::No,
        }
    }

    /// Writes `value` into `out` and returns `None`, or gives it back when it is not one
    /// this path writes (NULL, another form, text that is not UTF-8).
    pub(super) fn write(self, out: &mut Vec<u8>, value: Value) -> Option<Value> {
        match (self, value) {
            (Direct::Integer, Value::Int(n)) => {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                None
            }
            (Direct::Integer, Value::UInt(n)) => {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                None
            }
            (Direct::Date, Value::Date(y, mo, d, ..)) => {
                out.push(b'"');
                decode::write_digits(out, u32::from(y), 4);
                for value in [mo, d] {
                    out.push(b'-');
                    decode::write_digits(out, u32::from(value), 2);
                }
                out.push(b'"');
                None
            }
            (Direct::DateTime(fsp), Value::Date(y, mo, d, h, mi, s, us)) => {
                decode::write_datetime(out, (y, mo, d, h, mi, s, us), fsp);
                None
            }
            (Direct::Double, Value::Double(d)) if d.is_finite() => {
                crate::event::write_json(out, &d);
                None
            }
            (Direct::Decimal, Value::Bytes(bytes)) => match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    crate::event::write_json(out, &decode::normalize_decimal(text));
                    None
                }
                Err(_) => Some(Value::Bytes(bytes)),
            },
            (Direct::Utf8Text, Value::Bytes(bytes)) => match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    crate::event::write_json_str(out, text);
                    None
                }
                Err(_) => Some(Value::Bytes(bytes)),
            },
            (Direct::Latin1Text, Value::Bytes(bytes)) if bytes.is_ascii() => {
                match std::str::from_utf8(&bytes) {
                    Ok(text) => {
                        crate::event::write_json_str(out, text);
                        None
                    }
                    Err(_) => Some(Value::Bytes(bytes)),
                }
            }
            (_, value) => Some(value),
        }
    }
}

/// The binlog column type of a column, and how to read it; `None` for a type without one.
pub(super) fn binlog_type(column: &CatalogColumn) -> Option<(ColumnType, Fetch)> {
    use ColumnType::*;
    let plain = |t| Some((t, Fetch::Plain));
    match column.data_type.as_str() {
        "tinyint" => plain(MYSQL_TYPE_TINY),
        "smallint" => plain(MYSQL_TYPE_SHORT),
        "mediumint" => plain(MYSQL_TYPE_INT24),
        "int" | "integer" => plain(MYSQL_TYPE_LONG),
        "bigint" => plain(MYSQL_TYPE_LONGLONG),
        "float" => plain(MYSQL_TYPE_FLOAT),
        "double" | "real" => plain(MYSQL_TYPE_DOUBLE),
        "decimal" | "numeric" => plain(MYSQL_TYPE_NEWDECIMAL),
        "bit" => plain(MYSQL_TYPE_BIT),
        "year" => Some((MYSQL_TYPE_YEAR, Fetch::Year)),
        "date" => plain(MYSQL_TYPE_DATE),
        "datetime" => plain(MYSQL_TYPE_DATETIME2),
        "time" => plain(MYSQL_TYPE_TIME2),
        "timestamp" => Some((MYSQL_TYPE_TIMESTAMP2, Fetch::UnixTimestamp)),
        "char" | "binary" => plain(MYSQL_TYPE_STRING),
        "varchar" | "varbinary" => plain(MYSQL_TYPE_VARCHAR),
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob"
        | "longblob" | "json" => plain(MYSQL_TYPE_BLOB),
        "enum" => Some((MYSQL_TYPE_ENUM, Fetch::EnumIndex)),
        "set" => Some((MYSQL_TYPE_SET, Fetch::SetBits)),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => plain(MYSQL_TYPE_GEOMETRY),
        _ => None,
    }
}

/// The TABLE_MAP metadata a column of `column_type` would have, as far as the conversion
/// reads it: fractional digits of times; for strings, lengths that the selected values never
/// need (the server returns CHAR and BINARY values whole, padding included).
pub(super) fn meta(column_type: ColumnType, fsp: u8) -> Vec<u8> {
    use ColumnType::*;
    match column_type {
        MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIME2 | MYSQL_TYPE_TIMESTAMP2 => vec![fsp],
        MYSQL_TYPE_VARCHAR => vec![0xff, 0xff],
        MYSQL_TYPE_BLOB => vec![4],
        MYSQL_TYPE_STRING => vec![0xfe, 0],
        _ => Vec::new(),
    }
}

/// One value read by a snapshot, as JSON: brought to the binlog's form, then the binlog
/// path's conversion.
pub(super) fn snapshot_json(
    column: &ColumnSchema,
    how: Fetch,
    value: Value,
) -> Result<Json, ValueError> {
    let number = |value: &Value| match value {
        Value::Int(n) => Some(*n),
        Value::UInt(n) => i64::try_from(*n).ok(),
        Value::Bytes(text) => std::str::from_utf8(text).ok()?.parse().ok(),
        _ => None,
    };
    if value == Value::NULL {
        return Ok(Json::Null);
    }
    let invalid = |kind| ValueError::Invalid { kind };
    let value = match how {
        Fetch::Plain => value,
        Fetch::Year => return number(&value).map(Json::from).ok_or(invalid("YEAR")),
        Fetch::EnumIndex => Value::Int(number(&value).ok_or(invalid("ENUM"))?),
        Fetch::SetBits => {
            let bits = number(&value).ok_or(invalid("SET"))? as u64;
            Value::Bytes(bits.to_le_bytes().to_vec())
        }
        Fetch::UnixTimestamp => {
            let text = match value {
                Value::Int(n) => n.to_string(),
                Value::UInt(n) => n.to_string(),
                Value::Bytes(text) => String::from_utf8(text).map_err(|_| invalid("TIMESTAMP"))?,
                _ => return Err(invalid("TIMESTAMP")),
            };
            return decode::unix_timestamp_json(&text, column.meta.first().copied().unwrap_or(0))
                .ok_or(invalid("TIMESTAMP"));
        }
    };
    decode::to_json(column, BinlogValue::Value(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: &str) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            unsigned: false,
            collation: 63,
            labels: None,
            data_type: data_type.into(),
            fsp: 0,
            column_type: data_type.into(),
        }
    }

    #[test]
    fn types_without_a_binlog_form_are_refused_by_name() {
        assert_eq!(
            binlog_type(&column("t", "timestamp")),
            Some((ColumnType::MYSQL_TYPE_TIMESTAMP2, Fetch::UnixTimestamp))
        );
        assert_eq!(
            binlog_type(&column("s", "set")),
            Some((ColumnType::MYSQL_TYPE_SET, Fetch::SetBits))
        );
        for data_type in ["uuid", "inet6", "inet4", "vector", "something"] {
            assert_eq!(binlog_type(&column("c", data_type)), None, "{data_type}");
        }
    }

    #[test]
    fn values_come_to_the_binlog_form() {
        let mut ts = ColumnSchema {
            name: "ts".into(),
            column_type: ColumnType::MYSQL_TYPE_TIMESTAMP2,
            meta: vec![6],
            unsigned: false,
            collation: 63,
            labels: None,
        };
        assert_eq!(
            snapshot_json(&ts, Fetch::UnixTimestamp, Value::Bytes(b"1.5".to_vec())).unwrap(),
            Json::from("1970-01-01T00:00:01.500000Z")
        );
        ts.meta = vec![0];
        assert_eq!(
            snapshot_json(&ts, Fetch::UnixTimestamp, Value::Int(0)).unwrap(),
            Json::from("0000-00-00 00:00:00")
        );
        let set = ColumnSchema {
            name: "s".into(),
            column_type: ColumnType::MYSQL_TYPE_SET,
            meta: Vec::new(),
            unsigned: false,
            collation: 8,
            labels: Some(vec!["x".into(), "y".into(), "z".into()]),
        };
        assert_eq!(
            snapshot_json(&set, Fetch::SetBits, Value::UInt(5)).unwrap(),
            serde_json::json!(["x", "z"])
        );
        assert_eq!(
            snapshot_json(&set, Fetch::SetBits, Value::NULL).unwrap(),
            Json::Null
        );
    }
}

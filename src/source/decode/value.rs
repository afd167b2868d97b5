//! One value as JSON (see the README's value table): the general path every type goes
//! through, which the fast paths of [`super::ColumnCodec`] must match.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use mysql_common::{binlog::value::BinlogValue, constants::ColumnType, value::Value};
use serde_json::{json, Value as Json};

use super::ValueError;
use crate::source::schema::{ColumnSchema, BINARY_COLLATION};

/// Converts one decoded binlog value to its JSON form (see the README's value table).
pub(crate) fn to_json(column: &ColumnSchema, value: BinlogValue<'_>) -> Result<Json, ValueError> {
    let value = match value {
        BinlogValue::Value(value) => value,
        // MySQL's binary JSON. Opaque scalars inside a document (DECIMAL, DATE, TIME,
        // DATETIME) become strings; any other opaque type becomes `base64:type<N>:<data>`.
        BinlogValue::Jsonb(document) => {
            return document
                .parse()
                .map(Json::from)
                .map_err(|e| ValueError::Json {
                    detail: e.to_string(),
                })
        }
        BinlogValue::JsonDiff(_) => {
            return Err(ValueError::PartialJson {
                detail: "diffs outside a partial update's after image".into(),
            })
        }
    };
    if let Value::NULL = value {
        return Ok(Json::Null);
    }
    match column.column_type {
        ColumnType::MYSQL_TYPE_TINY
        | ColumnType::MYSQL_TYPE_SHORT
        | ColumnType::MYSQL_TYPE_INT24
        | ColumnType::MYSQL_TYPE_LONG
        | ColumnType::MYSQL_TYPE_LONGLONG
        | ColumnType::MYSQL_TYPE_FLOAT
        | ColumnType::MYSQL_TYPE_DOUBLE
        | ColumnType::MYSQL_TYPE_NEWDECIMAL
        | ColumnType::MYSQL_TYPE_YEAR
        | ColumnType::MYSQL_TYPE_BIT => number_json(column, value),
        ColumnType::MYSQL_TYPE_DATE
        | ColumnType::MYSQL_TYPE_NEWDATE
        | ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIME
        | ColumnType::MYSQL_TYPE_TIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2 => time_json(column, value),
        _ => other_json(column, value),
    }
}

/// Numbers: integers (signed MEDIUMINT sign-extended), floats, DECIMAL, YEAR, BIT.
fn number_json(column: &ColumnSchema, value: Value) -> Result<Json, ValueError> {
    use ColumnType::*;
    Ok(match (column.column_type, value) {
        (MYSQL_TYPE_INT24, Value::Int(i)) if !column.unsigned && i >= 0x80_0000 => {
            json!(i - 0x100_0000)
        }
        (
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG,
            Value::Int(i),
        ) => json!(i),
        (
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG,
            Value::UInt(u),
        ) => json!(u),
        // The f32's shortest decimal form, so 3.14 stays 3.14 rather than 3.140000104904175.
        (MYSQL_TYPE_FLOAT, Value::Float(f)) => {
            number(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))?
        }
        (MYSQL_TYPE_DOUBLE, Value::Double(d)) => number(d)?,
        (MYSQL_TYPE_NEWDECIMAL, Value::Bytes(text)) => {
            Json::String(normalize_decimal(&utf8(text)?))
        }
        (MYSQL_TYPE_YEAR, Value::Bytes(text)) => {
            let year: u32 = utf8(text)?.parse().map_err(|_| invalid("YEAR"))?;
            // The server stores YEAR 0 as byte 0, which the library turns into 1900 (never a
            // valid YEAR value otherwise).
            json!(if year == 1900 { 0 } else { year })
        }
        (MYSQL_TYPE_BIT, Value::Bytes(bytes)) => {
            if bytes.len() > 8 {
                return Err(ValueError::BitTooLong);
            }
            json!(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
        }
        (column_type, value) => {
            return Err(ValueError::Unsupported {
                value: format!("{value:?}"),
                column_type: format!("{column_type:?}"),
            })
        }
    })
}

/// Dates and times, with exactly the column's fractional digits; TIMESTAMP in UTC.
fn time_json(column: &ColumnSchema, value: Value) -> Result<Json, ValueError> {
    use ColumnType::*;
    let fsp = || column.meta.first().copied().unwrap_or(0).min(6);
    Ok(match (column.column_type, value) {
        (MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE, Value::Date(y, m, d, ..)) => {
            Json::String(format!("{y:04}-{m:02}-{d:02}"))
        }
        (MYSQL_TYPE_DATETIME, Value::Date(y, mo, d, h, mi, s, _)) => {
            Json::String(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
        }
        (MYSQL_TYPE_DATETIME2, Value::Date(y, mo, d, h, mi, s, us)) => Json::String(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
            fraction(us, fsp())
        )),
        (MYSQL_TYPE_TIME, Value::Time(negative, days, h, m, s, _)) => Json::String(format!(
            "{}{:02}:{m:02}:{s:02}",
            if negative { "-" } else { "" },
            days * 24 + u32::from(h)
        )),
        (MYSQL_TYPE_TIME2, Value::Time(negative, days, h, m, s, us)) => Json::String(format!(
            "{}{:02}:{m:02}:{s:02}{}",
            if negative { "-" } else { "" },
            days * 24 + u32::from(h),
            fraction(us, fsp())
        )),
        (MYSQL_TYPE_TIMESTAMP, Value::Int(seconds)) => Json::String(timestamp(seconds, 0, 0)),
        (MYSQL_TYPE_TIMESTAMP2, Value::Bytes(text)) => {
            let text = utf8(text)?;
            let (seconds, micros) = match text.split_once('.') {
                Some((s, us)) => (
                    s.parse().map_err(|_| invalid("TIMESTAMP"))?,
                    us.parse().map_err(|_| invalid("TIMESTAMP"))?,
                ),
                None => (text.parse().map_err(|_| invalid("TIMESTAMP"))?, 0),
            };
            Json::String(timestamp(seconds, micros, fsp()))
        }
        (column_type, value) => {
            return Err(ValueError::Unsupported {
                value: format!("{value:?}"),
                column_type: format!("{column_type:?}"),
            })
        }
    })
}

/// Strings (text converted from its character set, binary as base64), ENUM, SET, GEOMETRY, VECTOR.
fn other_json(column: &ColumnSchema, value: Value) -> Result<Json, ValueError> {
    use ColumnType::*;
    Ok(match (column.column_type, value) {
        (MYSQL_TYPE_ENUM, Value::Int(index)) => match &column.labels {
            // Index 0 is the empty string MySQL stores for an invalid value.
            Some(_) if index == 0 => Json::String(String::new()),
            Some(labels) => labels
                .get(index as usize - 1)
                .map(|l| Json::String(l.clone()))
                .ok_or(ValueError::NoEnumLabel { index })?,
            None => json!(index),
        },
        (MYSQL_TYPE_SET, Value::Bytes(bytes)) => {
            let bits = bytes
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            match &column.labels {
                Some(labels) => Json::Array(
                    labels
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i < 64 && bits & (1 << i) != 0)
                        .map(|(_, l)| Json::String(l.clone()))
                        .collect(),
                ),
                None => json!(bits),
            }
        }
        (MYSQL_TYPE_STRING, Value::Bytes(mut bytes)) if column.collation == BINARY_COLLATION => {
            // The server strips trailing zero bytes from BINARY(n); put them back.
            let declared = string_length(&column.meta);
            if bytes.len() < declared {
                bytes.resize(declared, 0);
            }
            Json::String(BASE64.encode(bytes))
        }
        (
            MYSQL_TYPE_STRING
            | MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB,
            Value::Bytes(bytes),
        ) => {
            // Without a collation (a file written with NO_LOG metadata) the character set is
            // unknown: the bytes go out as base64, like binary strings, rather than be guessed.
            if column.collation == BINARY_COLLATION || column.collation == 0 {
                Json::String(BASE64.encode(bytes))
            } else {
                Json::String(text(column.collation, bytes)?)
            }
        }
        (MYSQL_TYPE_GEOMETRY, Value::Bytes(bytes)) => {
            if bytes.len() < 4 {
                return Err(ValueError::GeometryTooShort);
            }
            let srid = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            json!({"srid": srid, "wkb": BASE64.encode(&bytes[4..])})
        }
        (MYSQL_TYPE_VECTOR, Value::Bytes(bytes)) => {
            if bytes.len() % 4 != 0 {
                return Err(ValueError::VectorLength);
            }
            Json::Array(
                bytes
                    .chunks_exact(4)
                    .map(|c| {
                        let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        number(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        (column_type, value) => {
            return Err(ValueError::Unsupported {
                value: format!("{value:?}"),
                column_type: format!("{column_type:?}"),
            })
        }
    })
}

fn number(value: f64) -> Result<Json, ValueError> {
    serde_json::Number::from_f64(value)
        .map(Json::Number)
        .ok_or_else(|| ValueError::NotFinite {
            value: value.to_string(),
        })
}

fn utf8(bytes: Vec<u8>) -> Result<String, ValueError> {
    String::from_utf8(bytes).map_err(|_| ValueError::NotText)
}

fn invalid(kind: &'static str) -> ValueError {
    ValueError::Invalid { kind }
}

/// The declared byte length of a CHAR/BINARY column, from its two metadata bytes.
fn string_length(meta: &[u8]) -> usize {
    let (byte0, byte1) = (usize::from(meta[0]), usize::from(meta[1]));
    if byte0 & 0x30 != 0x30 {
        byte1 | (((byte0 & 0x30) ^ 0x30) << 4)
    } else {
        byte1
    }
}

/// `.ffffff` cut to `fsp` digits; empty for fsp 0.
fn fraction(micros: u32, fsp: u8) -> String {
    if fsp == 0 {
        return String::new();
    }
    let digits = format!("{:06}", micros.min(999_999));
    format!(".{}", &digits[..usize::from(fsp)])
}

/// Seconds since the epoch as UTC ISO 8601 (`2024-03-01T12:34:56.000001Z`); the zero
/// TIMESTAMP stays `0000-00-00 00:00:00`, as MySQL shows it.
pub(super) fn timestamp(seconds: i64, micros: u32, fsp: u8) -> String {
    if seconds == 0 && micros == 0 {
        return format!("0000-00-00 00:00:00{}", fraction(0, fsp));
    }
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        fraction(micros, fsp)
    )
}

/// A TIMESTAMP given as `UNIX_TIMESTAMP()` text (`1700000000` or `1700000000.123`, the
/// fraction in as many digits as the column has), as [`to_json`] writes the binlog's.
pub(crate) fn unix_timestamp_json(text: &str, fsp: u8) -> Option<Json> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds = seconds.parse().ok()?;
    let micros = if fraction.is_empty() {
        0
    } else if fraction.len() <= 6 && fraction.bytes().all(|b| b.is_ascii_digit()) {
        fraction.parse::<u32>().ok()? * 10u32.pow(6 - fraction.len() as u32)
    } else {
        return None;
    };
    Some(Json::String(timestamp(seconds, micros, fsp.min(6))))
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `-0000012.50` → `-12.50`; a zero value loses its sign. The scale is never changed.
pub(crate) fn normalize_decimal(text: &str) -> String {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let integer = integer.trim_start_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    let is_zero = integer == "0" && fraction.is_none_or(|f| f.bytes().all(|b| b == b'0'));
    let mut out = String::with_capacity(text.len());
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(integer);
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// Collations of MySQL's `latin1`, which is really Windows-1252.
pub(super) const LATIN1_COLLATIONS: [u16; 8] = [5, 8, 15, 31, 47, 48, 49, 94];

/// Text in collation `collation` as UTF-8. The character set comes from the collation id
/// (MySQL's numbering, which MariaDB shares for every classic character set); latin1 is MySQL's
/// Windows-1252, the UTF-8 family and ascii pass through, the other common single- and multi-byte
/// sets are converted. A character set that is not known, or bytes that are not valid in it, are
/// an error naming the collation rather than a guess.
fn text(collation: u16, bytes: Vec<u8>) -> Result<String, ValueError> {
    if LATIN1_COLLATIONS.contains(&collation) {
        // The WHATWG Windows-1252 decodes every byte, the five undefined ones to the C1
        // controls, as MySQL does.
        let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&bytes);
        return Ok(text.into_owned());
    }
    let collation_info = mysql_common::collations::Collation::from(
        mysql_common::collations::CollationId::from(collation),
    );
    let charset = collation_info.charset();
    let encoding = match charset {
        // Unknown ids (MariaDB's newer UCA collations are all UTF-8) and the UTF-8 family.
        "" | "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => {
            return String::from_utf8(bytes).map_err(|_| ValueError::InvalidText {
                collation,
                charset: format!("{charset} (UTF-8)"),
            })
        }
        "utf32" => return utf32(&bytes, collation),
        "gbk" | "gb2312" => encoding_rs::GBK,
        "gb18030" => encoding_rs::GB18030,
        "big5" => encoding_rs::BIG5,
        "sjis" | "cp932" => encoding_rs::SHIFT_JIS,
        "ujis" | "eucjpms" => encoding_rs::EUC_JP,
        "euckr" => encoding_rs::EUC_KR,
        "koi8r" => encoding_rs::KOI8_R,
        "koi8u" => encoding_rs::KOI8_U,
        "cp1250" => encoding_rs::WINDOWS_1250,
        "cp1251" => encoding_rs::WINDOWS_1251,
        "cp1256" => encoding_rs::WINDOWS_1256,
        "cp1257" => encoding_rs::WINDOWS_1257,
        "latin2" => encoding_rs::ISO_8859_2,
        "greek" => encoding_rs::ISO_8859_7,
        "hebrew" => encoding_rs::ISO_8859_8,
        "latin5" => encoding_rs::WINDOWS_1254,
        "latin7" => encoding_rs::ISO_8859_13,
        "cp866" => encoding_rs::IBM866,
        "macroman" => encoding_rs::MACINTOSH,
        "tis620" => encoding_rs::WINDOWS_874,
        "utf16" | "ucs2" => encoding_rs::UTF_16BE,
        "utf16le" => encoding_rs::UTF_16LE,
        other => {
            return Err(ValueError::UnknownCharset {
                collation,
                charset: other.to_owned(),
            })
        }
    };
    encoding
        .decode_without_bom_handling_and_without_replacement(&bytes)
        .map(|text| text.into_owned())
        .ok_or_else(|| ValueError::InvalidText {
            collation,
            charset: charset.to_owned(),
        })
}

/// UTF-32 (big-endian code points, MySQL's `utf32`).
fn utf32(bytes: &[u8], collation: u16) -> Result<String, ValueError> {
    let not_utf32 = || ValueError::InvalidText {
        collation,
        charset: "utf32".into(),
    };
    if bytes.len() % 4 != 0 {
        return Err(not_utf32());
    }
    bytes
        .chunks_exact(4)
        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).ok_or_else(not_utf32))
        .collect()
}

/// A DATETIME value as JSON: `"YYYY-MM-DD HH:MM:SS"` and `fsp` fractional digits.
pub(crate) fn write_datetime(
    out: &mut Vec<u8>,
    (y, mo, d, h, mi, s, us): (u16, u8, u8, u8, u8, u8, u32),
    fsp: u8,
) {
    out.push(b'"');
    write_digits(out, u32::from(y), 4);
    for (separator, value) in [(b'-', mo), (b'-', d), (b' ', h), (b':', mi), (b':', s)] {
        out.push(separator);
        write_digits(out, u32::from(value), 2);
    }
    if fsp > 0 {
        out.push(b'.');
        let micros = us.min(999_999) / 10u32.pow(6 - u32::from(fsp.min(6)));
        write_digits(out, micros, usize::from(fsp.min(6)));
    }
    out.push(b'"');
}

/// `value` in exactly `width` decimal digits (zero-padded; wider values are written whole).
pub(crate) fn write_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(value);
    for _ in text.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(text.as_bytes());
}

/// `bytes` as a JSON string of base64 (which needs no escaping).
pub(super) fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = BASE64
        .encode_slice(bytes, &mut out[start..])
        .expect("the buffer has the encoded length");
    out.truncate(start + written);
    out.push(b'"');
}

/// Whether `collation` is one of MySQL's latin1 (Windows-1252: ASCII bytes are the same
/// text in UTF-8).
pub(crate) fn is_latin1(collation: u16) -> bool {
    LATIN1_COLLATIONS.contains(&collation)
}

/// Whether text in `collation` is UTF-8 as stored (see [`text`]).
pub(crate) fn is_utf8(collation: u16) -> bool {
    if is_latin1(collation) {
        return false;
    }
    let info = mysql_common::collations::Collation::from(
        mysql_common::collations::CollationId::from(collation),
    );
    matches!(
        info.charset(),
        "" | "utf8mb4" | "utf8mb3" | "utf8" | "ascii"
    )
}

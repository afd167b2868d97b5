//! Values against what the server writes, fast paths against the general path.

use serde_json::{json, Value as Json};

use super::{
    value::{normalize_decimal, timestamp},
    *,
};

fn column(column_type: ColumnType, meta: &[u8]) -> ColumnSchema {
    ColumnSchema {
        name: "c".into(),
        column_type,
        meta: meta.to_vec(),
        unsigned: false,
        collation: 45,
        labels: None,
    }
}

fn convert(column: &ColumnSchema, value: Value) -> Json {
    to_json(column, BinlogValue::Value(value)).unwrap()
}

/// What the general path (`mysql_common`'s parser, then [`to_json`]) makes of `bytes`:
/// the JSON text and how many bytes it read.
fn reference(column: &ColumnSchema, bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut buf = ParseBuf(bytes);
    let raw = parse_value(column, &mut buf).ok()?;
    let json = to_json(column, raw).ok()?;
    Some((serde_json::to_vec(&json).unwrap(), bytes.len() - buf.len()))
}

/// What the column's fast path writes for `bytes`.
fn fast(column: &ColumnSchema, bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let codec = ColumnCodec::new(column);
    assert_ne!(codec.kind, Kind::General, "{column:?} has a fast path");
    let mut buf = ParseBuf(bytes);
    let mut out = Vec::new();
    let written = write_value(column, &codec, &mut buf, &mut out, usize::MAX).ok()?;
    assert_eq!(written, Written::Value);
    Some((out, bytes.len() - buf.len()))
}

fn fast_path_columns() -> Vec<ColumnSchema> {
    use ColumnType::*;
    let mut columns = Vec::new();
    for column_type in [
        MYSQL_TYPE_TINY,
        MYSQL_TYPE_SHORT,
        MYSQL_TYPE_INT24,
        MYSQL_TYPE_LONG,
        MYSQL_TYPE_LONGLONG,
    ] {
        for unsigned in [false, true] {
            columns.push(ColumnSchema {
                unsigned,
                ..column(column_type, &[])
            });
        }
    }
    for collation in [45, 33, 11, BINARY_COLLATION, 0] {
        for meta in [[10u8, 0], [0x2c, 0x01]] {
            columns.push(ColumnSchema {
                collation,
                ..column(MYSQL_TYPE_VARCHAR, &meta)
            });
        }
        for len_bytes in 1..=4u8 {
            columns.push(ColumnSchema {
                collation,
                ..column(MYSQL_TYPE_BLOB, &[len_bytes])
            });
        }
    }
    // 7: metadata no server writes; `mysql_common` then reads no fraction.
    for fsp in 0..=7u8 {
        columns.push(column(MYSQL_TYPE_DATETIME2, &[fsp]));
    }
    columns.push(column(MYSQL_TYPE_FLOAT, &[4]));
    columns.push(column(MYSQL_TYPE_DOUBLE, &[8]));
    // Scales that are whole groups: on random bytes `mysql_common` overflows (and panics in
    // a debug build) scaling a partial fraction group; valid ones of every shape are below.
    for (precision, scale) in [(1, 0), (5, 0), (10, 0), (18, 9), (9, 9), (30, 18), (65, 0)] {
        columns.push(column(MYSQL_TYPE_NEWDECIMAL, &[precision, scale]));
    }
    columns
}

/// A DECIMAL(precision, scale) as the server stores it: `integer` and `fraction` are its
/// digits (exactly precision - scale and scale of them), in groups of 9 big-endian (a partial
/// group first in the integer part, last in the fraction), all bytes inverted when negative,
/// then the first bit flipped.
fn decimal_bytes(negative: bool, integer: &[u8], fraction: &[u8]) -> Vec<u8> {
    let width = |digits: usize| [0, 1, 1, 2, 2, 3, 3, 4, 4, 4][digits];
    let group = |digits: &[u8]| digits.iter().fold(0u32, |v, d| v * 10 + u32::from(*d));
    let mut bytes = Vec::new();
    let mut put = |digits: &[u8]| {
        let w = width(digits.len());
        bytes.extend_from_slice(&group(digits).to_be_bytes()[4 - w..]);
    };
    let head = integer.len() % 9;
    if head > 0 {
        put(&integer[..head]);
    }
    for chunk in integer[head..].chunks(9) {
        put(chunk);
    }
    for chunk in fraction.chunks(9) {
        put(chunk);
    }
    if negative {
        for byte in &mut bytes {
            *byte = !*byte;
        }
    }
    bytes[0] ^= 0x80;
    bytes
}

proptest::proptest! {
    /// Every DECIMAL shape: the fast path writes what the general path writes.
    #[test]
    fn decimal_fast_path_agrees_with_the_general_path(
        precision in 1usize..=65,
        scale_seed in 0usize..=30,
        digits in proptest::collection::vec(0u8..10, 65),
        negative in proptest::bool::ANY,
        zeros in 0usize..65,
    ) {
        let scale = scale_seed.min(precision);
        let integer = precision - scale;
        let mut digits = digits;
        // Leading zeros, often: small values in wide columns.
        for d in digits.iter_mut().take(zeros.min(integer)) {
            *d = 0;
        }
        let column = column(ColumnType::MYSQL_TYPE_NEWDECIMAL, &[precision as u8, scale as u8]);
        let bytes = decimal_bytes(negative, &digits[..integer], &digits[integer..precision]);
        proptest::prop_assert_eq!(bytes.len(), fast::decimal_len(precision, scale));
        let text = format!("{negative} {digits:?}");
        let fast = fast(&column, &bytes);
        proptest::prop_assert!(fast.is_some());
        proptest::prop_assert_eq!(fast, reference(&column, &bytes), "{}", text);
    }
}

proptest::proptest! {
    /// The fast paths write exactly what the general path writes, byte for byte, read the
    /// same number of bytes, and fail on the same input.
    #[test]
    fn fast_paths_agree_with_the_general_path(
        index in 0usize..64,
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
        text in "\\PC{0,12}",
    ) {
        let columns = fast_path_columns();
        let column = &columns[index % columns.len()];
        proptest::prop_assert_eq!(fast(column, &bytes), reference(column, &bytes));
        // Text, length-prefixed as the column stores it.
        let len_bytes = match ColumnCodec::new(column).kind {
            Kind::Bytes { len_bytes, .. } => usize::from(len_bytes),
            _ => return Ok(()),
        };
        let mut stored = (text.len() as u32).to_le_bytes()[..len_bytes].to_vec();
        stored.extend_from_slice(text.as_bytes());
        proptest::prop_assert_eq!(fast(column, &stored), reference(column, &stored));
    }
}

#[test]
fn a_string_larger_than_the_room_left_is_read_but_not_encoded() {
    let blob = ColumnSchema {
        collation: BINARY_COLLATION,
        ..column(ColumnType::MYSQL_TYPE_BLOB, &[2])
    };
    let mut bytes = 300u16.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[7; 300]);
    bytes.push(42);
    let codec = ColumnCodec::new(&blob);
    let mut buf = ParseBuf(&bytes);
    let mut out = Vec::new();
    let written = write_value(&blob, &codec, &mut buf, &mut out, 100).unwrap();
    assert_eq!(
        written,
        Written::Skipped(402),
        "base64 of 300 bytes, quoted"
    );
    assert!(out.is_empty(), "nothing encoded");
    assert_eq!(buf.0, &[42], "the value was read past");
    let written = write_value(&blob, &codec, &mut ParseBuf(&bytes), &mut out, 402).unwrap();
    assert_eq!(written, Written::Value, "it fits exactly");
    assert_eq!(out.len(), 402);
}

#[test]
fn fast_paths_cover_the_common_types() {
    let columns = fast_path_columns();
    assert_eq!(columns.len(), 57);
    // DATETIME(6) as the server stores it: 5 bytes of date and time, 3 of microseconds.
    let datetime = column(ColumnType::MYSQL_TYPE_DATETIME2, &[6]);
    let ymd_hms: u64 = ((2026 * 13 + 12) << 22) | (1 << 17) | (1 << 12) | (2 << 6) | 3;
    let mut stored = (ymd_hms + 0x80_0000_0000).to_be_bytes()[3..].to_vec();
    stored.extend_from_slice(&456_789u32.to_be_bytes()[1..]);
    assert_eq!(
        fast(&datetime, &stored).unwrap().0,
        br#""2026-12-01 01:02:03.456789""#
    );
    assert_eq!(fast(&datetime, &stored), reference(&datetime, &stored));
    // FLOAT, DOUBLE, DECIMAL: shortest forms, NaN refused by both paths, no sign on zero.
    let float = column(ColumnType::MYSQL_TYPE_FLOAT, &[4]);
    let double = column(ColumnType::MYSQL_TYPE_DOUBLE, &[8]);
    assert_eq!(fast(&float, &0.3f32.to_le_bytes()).unwrap().0, b"0.3");
    assert_eq!(fast(&double, &0.1f64.to_le_bytes()).unwrap().0, b"0.1");
    for nan in [f64::NAN.to_le_bytes(), f64::INFINITY.to_le_bytes()] {
        assert_eq!(fast(&double, &nan), None);
        assert_eq!(reference(&double, &nan), None);
    }
    let decimal = column(ColumnType::MYSQL_TYPE_NEWDECIMAL, &[12, 2]);
    for (negative, integer, fraction, text) in [
        (false, [0u8; 10], [0u8, 5], r#""0.05""#),
        (true, [0; 10], [0, 0], r#""0.00""#),
        (true, [0, 0, 0, 0, 0, 0, 0, 1, 2, 3], [4, 5], r#""-123.45""#),
        (false, [9; 10], [9, 9], r#""9999999999.99""#),
    ] {
        let bytes = decimal_bytes(negative, &integer, &fraction);
        assert_eq!(fast(&decimal, &bytes), reference(&decimal, &bytes));
        assert_eq!(fast(&decimal, &bytes).unwrap().0, text.as_bytes());
    }
    let max = [0xff; 8];
    let min = [0, 0, 0, 0, 0, 0, 0, 0x80];
    for column in &columns[..10] {
        assert_eq!(fast(column, &max), reference(column, &max), "{column:?}");
        assert_eq!(fast(column, &min), reference(column, &min), "{column:?}");
    }
    assert_eq!(
        fast(&columns[0], &[0xff]).unwrap().0,
        b"-1",
        "signed TINYINT"
    );
    assert_eq!(
        fast(&columns[5], &[0xff, 0xff, 0xff]).unwrap().0,
        b"16777215",
        "unsigned MEDIUMINT"
    );
    assert_eq!(
        fast(&columns[4], &[0xff, 0xff, 0xff]).unwrap().0,
        b"-1",
        "signed MEDIUMINT"
    );
    // A latin1 column is not UTF-8: no fast path.
    let latin1 = ColumnSchema {
        collation: 8,
        ..column(ColumnType::MYSQL_TYPE_VARCHAR, &[10, 0])
    };
    assert_eq!(ColumnCodec::new(&latin1).kind, Kind::General);
    // DATETIME(6): 2024-03-01 12:34:56.000123 as the server packs it.
    let datetime = column(ColumnType::MYSQL_TYPE_DATETIME2, &[6]);
    let ymd = (2024u64 * 13 + 3) << 5 | 1;
    let hms = 12u64 << 12 | 34 << 6 | 56;
    let packed = (1u64 << 39) | (ymd << 17) | hms;
    let mut bytes = packed.to_be_bytes()[3..].to_vec();
    bytes.extend_from_slice(&123u32.to_be_bytes()[1..]);
    assert_eq!(
        fast(&datetime, &bytes).unwrap().0,
        br#""2024-03-01 12:34:56.000123""#
    );
    assert_eq!(fast(&datetime, &bytes), reference(&datetime, &bytes));
}

#[test]
fn signed_mediumint_is_sign_extended() {
    let c = column(ColumnType::MYSQL_TYPE_INT24, &[]);
    assert_eq!(convert(&c, Value::Int(16_777_215)), json!(-1));
    assert_eq!(convert(&c, Value::Int(8_388_608)), json!(-8_388_608));
    assert_eq!(convert(&c, Value::Int(8_388_607)), json!(8_388_607));
    let unsigned = ColumnSchema {
        unsigned: true,
        ..c
    };
    assert_eq!(
        convert(&unsigned, Value::Int(16_777_215)),
        json!(16_777_215)
    );
}

#[test]
fn integers_are_exact() {
    let c = column(ColumnType::MYSQL_TYPE_LONGLONG, &[]);
    assert_eq!(
        convert(&c, Value::UInt(u64::MAX)).to_string(),
        "18446744073709551615"
    );
    assert_eq!(
        convert(&c, Value::Int(i64::MIN)).to_string(),
        "-9223372036854775808"
    );
}

#[test]
fn floats_use_their_shortest_form() {
    let c = column(ColumnType::MYSQL_TYPE_FLOAT, &[4]);
    assert_eq!(convert(&c, Value::Float(1.234_56)).to_string(), "1.23456");
    let d = column(ColumnType::MYSQL_TYPE_DOUBLE, &[8]);
    assert_eq!(convert(&d, Value::Double(1e-300)).to_string(), "1e-300");
}

#[test]
fn decimals_keep_their_scale() {
    assert_eq!(normalize_decimal("12.50"), "12.50");
    assert_eq!(normalize_decimal("-0000012.50"), "-12.50");
    assert_eq!(normalize_decimal("0000000000.00"), "0.00");
    assert_eq!(normalize_decimal("-0.00"), "0.00");
    assert_eq!(
        normalize_decimal("-12345678901234.123456"),
        "-12345678901234.123456"
    );
    assert_eq!(normalize_decimal("7"), "7");
}

#[test]
fn temporal_values_keep_exactly_the_column_digits() {
    let dt = column(ColumnType::MYSQL_TYPE_DATETIME2, &[6]);
    assert_eq!(
        convert(&dt, Value::Date(2024, 2, 29, 23, 59, 59, 999_999)),
        json!("2024-02-29 23:59:59.999999")
    );
    let dt3 = column(ColumnType::MYSQL_TYPE_DATETIME2, &[3]);
    assert_eq!(
        convert(&dt3, Value::Date(2024, 2, 29, 1, 2, 3, 456_000)),
        json!("2024-02-29 01:02:03.456")
    );
    let dt0 = column(ColumnType::MYSQL_TYPE_DATETIME2, &[0]);
    assert_eq!(
        convert(&dt0, Value::Date(0, 0, 0, 0, 0, 0, 0)),
        json!("0000-00-00 00:00:00")
    );
    let date = column(ColumnType::MYSQL_TYPE_DATE, &[]);
    assert_eq!(
        convert(&date, Value::Date(2024, 2, 29, 0, 0, 0, 0)),
        json!("2024-02-29")
    );
    let time = column(ColumnType::MYSQL_TYPE_TIME2, &[6]);
    assert_eq!(
        convert(&time, Value::Time(false, 34, 22, 59, 58, 123_456)),
        json!("838:59:58.123456")
    );
    assert_eq!(
        convert(&time, Value::Time(true, 0, 0, 0, 1, 1)),
        json!("-00:00:01.000001")
    );
}

#[test]
fn timestamps_are_utc_iso_8601() {
    let ts = column(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[6]);
    assert_eq!(
        convert(&ts, Value::Bytes(b"1709296496.000001".to_vec())),
        json!("2024-03-01T12:34:56.000001Z")
    );
    let ts0 = column(ColumnType::MYSQL_TYPE_TIMESTAMP2, &[0]);
    assert_eq!(
        convert(&ts0, Value::Bytes(b"2147483647".to_vec())),
        json!("2038-01-19T03:14:07Z")
    );
    assert_eq!(
        convert(&ts0, Value::Bytes(b"0".to_vec())),
        json!("0000-00-00 00:00:00")
    );
    assert_eq!(timestamp(-1, 0, 0), "1969-12-31T23:59:59Z");
}

#[test]
fn binary_is_base64_and_binary_n_is_padded() {
    let binary4 = ColumnSchema {
        collation: BINARY_COLLATION,
        ..column(ColumnType::MYSQL_TYPE_STRING, &[0xfe, 4])
    };
    assert_eq!(
        convert(&binary4, Value::Bytes(vec![0xab])),
        json!("qwAAAA==")
    );
    let blob = ColumnSchema {
        collation: BINARY_COLLATION,
        ..column(ColumnType::MYSQL_TYPE_BLOB, &[2])
    };
    assert_eq!(convert(&blob, Value::Bytes(vec![0, 0xff])), json!("AP8="));
}

#[test]
fn without_metadata_text_is_base64_and_enum_set_are_raw_numbers() {
    // A file written with NO_LOG row metadata: no collation, no labels. Nothing is guessed.
    let text = ColumnSchema {
        collation: 0,
        ..column(ColumnType::MYSQL_TYPE_VARCHAR, &[100, 0])
    };
    assert_eq!(
        convert(&text, Value::Bytes(vec![b'h', 0xe9])),
        json!("aOk=")
    );
    let enumeration = column(ColumnType::MYSQL_TYPE_ENUM, &[0xf7, 1]);
    assert_eq!(convert(&enumeration, Value::Int(2)), json!(2));
    let set = column(ColumnType::MYSQL_TYPE_SET, &[0xf8, 1]);
    assert_eq!(convert(&set, Value::Bytes(vec![0b101])), json!(5));
}

#[test]
fn text_is_converted_from_its_charset() {
    let utf8 = column(ColumnType::MYSQL_TYPE_VARCHAR, &[100, 0]);
    assert_eq!(
        convert(&utf8, Value::Bytes("emoji 🎉".as_bytes().to_vec())),
        json!("emoji 🎉")
    );
    let latin1 = ColumnSchema {
        collation: 8,
        ..utf8.clone()
    };
    assert_eq!(
        convert(&latin1, Value::Bytes(vec![b'h', 0xe9, 0x80])),
        json!("hé€")
    );
    assert!(to_json(&utf8, BinlogValue::Value(Value::Bytes(vec![0xff]))).is_err());
    // gbk (28), cp1251 (51), utf16 (54), utf32 (60), sjis (13).
    for (collation, bytes, expected) in [
        (28u16, vec![0xd6, 0xd0, 0xce, 0xc4], "中文"),
        (51, vec![0xcf, 0xf0, 0xe8], "При"),
        (54, vec![0xd8, 0x34, 0xdd, 0x1e], "𝄞"),
        (60, vec![0, 1, 0xd1, 0x1e], "𝄞"),
        (13, vec![0x83, 0x65], "テ"),
    ] {
        let column = ColumnSchema {
            collation,
            ..utf8.clone()
        };
        assert_eq!(
            convert(&column, Value::Bytes(bytes)),
            json!(expected),
            "collation {collation}"
        );
    }
    let gbk = ColumnSchema {
        collation: 28,
        ..utf8.clone()
    };
    assert!(
        to_json(&gbk, BinlogValue::Value(Value::Bytes(vec![0x81]))).is_err(),
        "a cut gbk character"
    );
}

#[test]
fn enum_set_bit_year() {
    let labels = Some(vec![
        "small".to_owned(),
        "medium".to_owned(),
        "large".to_owned(),
    ]);
    let e = ColumnSchema {
        labels: labels.clone(),
        ..column(ColumnType::MYSQL_TYPE_ENUM, &[0xf7, 1])
    };
    assert_eq!(convert(&e, Value::Int(2)), json!("medium"));
    let s = ColumnSchema {
        labels,
        ..column(ColumnType::MYSQL_TYPE_SET, &[0xf8, 1])
    };
    assert_eq!(
        convert(&s, Value::Bytes(vec![0b101])),
        json!(["small", "large"])
    );
    let bit = column(ColumnType::MYSQL_TYPE_BIT, &[2, 1]);
    assert_eq!(convert(&bit, Value::Bytes(vec![0x02, 0xab])), json!(683));
    let year = column(ColumnType::MYSQL_TYPE_YEAR, &[]);
    assert_eq!(convert(&year, Value::Bytes(b"1900".to_vec())), json!(0));
    assert_eq!(convert(&year, Value::Bytes(b"2024".to_vec())), json!(2024));
}

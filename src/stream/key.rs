//! A chunk's last key as the checkpoint will store it, so that a restarted snapshot goes on
//! after it: the values exactly as the server returned them (they are sent back as the
//! parameters of the next chunk's `WHERE (k1, k2) > (?, ?)`, and the server compares them),
//! in a JSON form that round-trips every value of the binary protocol: `{"int":-5}`,
//! `{"uint":18446744073709551615}`, `{"bytes":"<base64>"}` (text in the column's own
//! character set, binary strings, DECIMAL), `{"float":1.5}`, `{"double":0.1}`,
//! `{"date":[y,m,d,h,mi,s,us]}`, `{"time":[negative,days,h,m,s,us]}`, `"null"`.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use mysql_async::Value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One key value, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyValue {
    /// SQL NULL (never in a primary key; kept so that any value round-trips).
    Null,
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// Bytes, as base64.
    Bytes(#[serde(with = "base64_bytes")] Vec<u8>),
    /// A FLOAT.
    Float(f32),
    /// A DOUBLE.
    Double(f64),
    /// DATE, DATETIME, TIMESTAMP: year, month, day, hour, minute, second, microsecond.
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// TIME: negative, days, hours, minutes, seconds, microseconds.
    Time(bool, u32, u8, u8, u8, u32),
}

// A key value is never NaN (the server has no NaN to store), so equality is total here.
impl Eq for KeyValue {}

impl From<Value> for KeyValue {
    fn from(value: Value) -> Self {
        match value {
            Value::NULL => KeyValue::Null,
            Value::Int(n) => KeyValue::Int(n),
            Value::UInt(n) => KeyValue::Uint(n),
            Value::Bytes(bytes) => KeyValue::Bytes(bytes),
            Value::Float(f) => KeyValue::Float(f),
            Value::Double(d) => KeyValue::Double(d),
            Value::Date(y, mo, d, h, mi, s, us) => KeyValue::Date(y, mo, d, h, mi, s, us),
            Value::Time(negative, days, h, m, s, us) => KeyValue::Time(negative, days, h, m, s, us),
        }
    }
}

impl From<KeyValue> for Value {
    fn from(value: KeyValue) -> Self {
        match value {
            KeyValue::Null => Value::NULL,
            KeyValue::Int(n) => Value::Int(n),
            KeyValue::Uint(n) => Value::UInt(n),
            KeyValue::Bytes(bytes) => Value::Bytes(bytes),
            KeyValue::Float(f) => Value::Float(f),
            KeyValue::Double(d) => Value::Double(d),
            KeyValue::Date(y, mo, d, h, mi, s, us) => Value::Date(y, mo, d, h, mi, s, us),
            KeyValue::Time(negative, days, h, m, s, us) => Value::Time(negative, days, h, m, s, us),
        }
    }
}

mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::NULL),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            any::<f32>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Double),
            (
                0u16..10000,
                0u8..13,
                0u8..32,
                0u8..24,
                0u8..60,
                0u8..60,
                0u32..1_000_000
            )
                .prop_map(|(y, mo, d, h, mi, s, us)| Value::Date(y, mo, d, h, mi, s, us)),
            (
                any::<bool>(),
                0u32..35,
                0u8..24,
                0u8..60,
                0u8..60,
                0u32..1_000_000
            )
                .prop_map(|(n, d, h, m, s, us)| Value::Time(n, d, h, m, s, us)),
        ]
    }

    proptest! {
        /// Every value of the binary protocol comes back from its stored text unchanged
        /// (non-UTF-8 bytes and the integer extremes included).
        #[test]
        fn a_stored_key_reads_back_as_the_same_values(key in proptest::collection::vec(value(), 1..4)) {
            let stored: Vec<KeyValue> = key.iter().cloned().map(KeyValue::from).collect();
            let text = serde_json::to_string(&stored).unwrap();
            let read: Vec<KeyValue> = serde_json::from_str(&text).unwrap();
            let back: Vec<Value> = read.into_iter().map(Value::from).collect();
            prop_assert_eq!(back, key, "{}", text);
        }
    }

    #[test]
    fn the_stored_form_is_plain() {
        let key = vec![
            KeyValue::from(Value::Bytes(b"eu".to_vec())),
            KeyValue::from(Value::Int(-5)),
            KeyValue::from(Value::UInt(u64::MAX)),
        ];
        assert_eq!(
            serde_json::to_string(&key).unwrap(),
            r#"[{"bytes":"ZXU="},{"int":-5},{"uint":18446744073709551615}]"#
        );
    }
}

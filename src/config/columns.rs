//! `[columns]`: what each captured column may show of itself outside the database. A rule
//! names tables (the patterns of `[filter]`) and columns to leave out (`exclude`), to replace
//! by a keyed hash (`hash`: HMAC-SHA256 of the value's JSON text under `columns.hash_key`,
//! lowercase hex) or by a fixed text (`mask`: `columns.mask_with`).
//!
//! # Invariants
//!
//! - The rules are applied to a table's columns by name (case-insensitively, as MySQL names
//!   columns), every time the table's definition is (re)read: a column a DDL adds later is
//!   covered from its first row on. The same actions serve the binlog path and snapshots, so
//!   a row's snapshot line and its insert line agree.
//! - When rules disagree about a column the strictest wins: `exclude`, then `mask`, then
//!   `hash`.
//! - NULL stays `null` under `hash` and `mask` (presence is not hidden; the value is).
//! - The hash key never prints: it is read once into a keyed HMAC state, and [`HashKey`]'s
//!   `Debug` hides it.

use std::sync::Arc;

use hmac::{KeyInit, Mac};

use super::{
    filter::{rule_tables, TableFilter},
    ConfigError, Secret,
};

/// One `[[columns.rules]]` entry, validated.
#[derive(Debug, Clone)]
struct Rule {
    tables: TableFilter,
    exclude: Vec<String>,
    hash: Vec<String>,
    mask: Vec<String>,
}

/// The column rules, validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnRules {
    rules: Vec<Rule>,
    hash_key: Option<Arc<HashKey>>,
    /// `mask_with` as a JSON string.
    mask: Arc<[u8]>,
}

/// What happens to one column's values.
#[derive(Debug, Clone, Default)]
pub(crate) enum ColumnAction {
    /// Written as they are.
    #[default]
    Keep,
    /// Never written: no name, no value, in no image and no key.
    Exclude,
    /// Written as the HMAC-SHA256 of their JSON text, in lowercase hex, as a JSON string.
    Hash(Arc<HashKey>),
    /// Written as this JSON string.
    Mask(Arc<[u8]>),
}

impl ColumnAction {
    /// The rule's word for the action.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ColumnAction::Keep => "keep",
            ColumnAction::Exclude => "exclude",
            ColumnAction::Hash(_) => "hash",
            ColumnAction::Mask(_) => "mask",
        }
    }
}

/// The key of `hash` columns, as an HMAC-SHA256 state already keyed: each value then costs
/// the two compressions of its own blocks, not the two of the key's as well.
pub(crate) struct HashKey(hmac::Hmac<sha2::Sha256>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

impl HashKey {
    fn new(key: &Secret) -> Self {
        Self(
            hmac::Hmac::<sha2::Sha256>::new_from_slice(key.expose().as_bytes())
                .expect("HMAC takes a key of any length"),
        )
    }

    /// Replaces `out[start..]` (a value's JSON text) with its hash as a JSON string:
    /// `"` + the HMAC-SHA256 under this key, in 64 lowercase hex digits, + `"`.
    pub(crate) fn hash_in_place(&self, out: &mut Vec<u8>, start: usize) {
        let mut mac = self.0.clone();
        mac.update(&out[start..]);
        let digest = mac.finalize().into_bytes();
        out.truncate(start);
        out.push(b'"');
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for byte in digest {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        }
        out.push(b'"');
    }
}

/// The shortest hash key accepted, in bytes: HMAC-SHA256 is as strong as its key, and a short
/// one can be found by trying every key against one known value.
pub(crate) const MIN_HASH_KEY_BYTES: usize = 16;

impl ColumnRules {
    /// Validates `[columns]`: each rule's patterns and column names, and a hash key (at least
    /// [`MIN_HASH_KEY_BYTES`]) when a rule hashes.
    pub(crate) fn new(raw: &super::RawColumns) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            section: "columns",
            key,
            message,
        };
        let mut rules = Vec::new();
        for (n, rule) in raw.rules.iter().enumerate() {
            let tables = rule_tables("columns", n + 1, &rule.tables)?;
            let names = |list: &[String]| -> Result<Vec<String>, ConfigError> {
                list.iter()
                    .map(|name| {
                        let name = name.trim();
                        if name.is_empty() {
                            Err(invalid(
                                "rules",
                                format!("rule {} has an empty column name", n + 1),
                            ))
                        } else {
                            Ok(name.to_lowercase())
                        }
                    })
                    .collect()
            };
            rules.push(Rule {
                tables,
                exclude: names(&rule.exclude)?,
                hash: names(&rule.hash)?,
                mask: names(&rule.mask)?,
            });
        }
        let hashes = rules.iter().any(|r| !r.hash.is_empty());
        let hash_key = match (hashes, raw.hash_key.0.as_str()) {
            (false, _) => None,
            (true, "") => return Err(invalid("hash_key", "a rule hashes columns: set the key, from the environment (BINLOG_KINESIS__COLUMNS__HASH_KEY) or a secret, never in a file in the image".into())),
            (true, key) if key.len() < MIN_HASH_KEY_BYTES => {
                return Err(invalid("hash_key", format!("is shorter than {MIN_HASH_KEY_BYTES} bytes (its value is not shown): use a random key of 32 bytes or more, e.g. `openssl rand -hex 32`")))
            }
            (true, key) => Some(Arc::new(HashKey::new(&Secret(key.to_owned())))),
        };
        let mut mask = Vec::new();
        crate::event::write_json(&mut mask, &raw.mask_with);
        Ok(Self {
            rules,
            hash_key,
            mask: mask.into(),
        })
    }

    /// Whether any rule is configured.
    pub(crate) fn any(&self) -> bool {
        !self.rules.is_empty()
    }

    /// What happens to each of `columns` (names, in table order) of `database.table`.
    pub(crate) fn actions<'a>(
        &self,
        database: &str,
        table: &str,
        columns: impl IntoIterator<Item = &'a str>,
    ) -> Vec<ColumnAction> {
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.tables.matches(database, table))
            .collect();
        columns
            .into_iter()
            .map(|name| {
                let name = name.to_lowercase();
                let listed =
                    |list: fn(&Rule) -> &Vec<String>| rules.iter().any(|r| list(r).contains(&name));
                if listed(|r| &r.exclude) {
                    ColumnAction::Exclude
                } else if listed(|r| &r.mask) {
                    ColumnAction::Mask(Arc::clone(&self.mask))
                } else if listed(|r| &r.hash) {
                    match &self.hash_key {
                        Some(key) => ColumnAction::Hash(Arc::clone(key)),
                        // Validation makes this unreachable; excluding is the safe side.
                        None => ColumnAction::Exclude,
                    }
                } else {
                    ColumnAction::Keep
                }
            })
            .collect()
    }

    /// The columns the rules name for `database.table` that are not among `columns`: each is
    /// `(rule's word, column)`. A rule for a column that does not exist (yet) is likely a
    /// typo, and a typo here leaks what it meant to hide.
    pub(crate) fn missing<'a>(
        &self,
        database: &str,
        table: &str,
        columns: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Vec<(&'static str, String)> {
        let present: Vec<String> = columns.into_iter().map(str::to_lowercase).collect();
        let mut missing = Vec::new();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.tables.matches(database, table))
        {
            for (word, list) in [
                ("exclude", &rule.exclude),
                ("hash", &rule.hash),
                ("mask", &rule.mask),
            ] {
                for name in list {
                    if !present.contains(name) && !missing.iter().any(|(_, n)| n == name) {
                        missing.push((word, name.clone()));
                    }
                }
            }
        }
        missing
    }

    /// Whether a rule matches `database.table`.
    pub(crate) fn covers(&self, database: &str, table: &str) -> bool {
        self.rules.iter().any(|r| r.tables.matches(database, table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<ColumnRules, ConfigError> {
        let raw: super::super::RawColumns = toml::from_str(text).unwrap();
        ColumnRules::new(&raw)
    }

    #[test]
    fn the_strictest_rule_wins_and_names_match_without_case() {
        let rules = rules(
            r#"
            hash_key = "0123456789abcdef0123"
            [[rules]]
            tables = ["shop.users", "crm.*"]
            exclude = ["SSN"]
            hash = ["email", "ssn"]
            [[rules]]
            tables = ["shop.*"]
            mask = ["email", "card"]
            "#,
        )
        .unwrap();
        let names = |actions: Vec<ColumnAction>| -> Vec<&'static str> {
            actions.iter().map(ColumnAction::name).collect()
        };
        let columns = ["id", "ssn", "Email", "card"];
        assert_eq!(
            names(rules.actions("shop", "users", columns)),
            ["keep", "exclude", "mask", "mask"]
        );
        assert_eq!(
            names(rules.actions("crm", "people", columns)),
            ["keep", "exclude", "hash", "keep"]
        );
        assert_eq!(names(rules.actions("other", "users", columns)), ["keep"; 4]);
        assert_eq!(
            rules.missing("crm", "people", ["id", "email"]),
            [("exclude", "ssn".to_owned())]
        );
    }

    #[test]
    fn hashing_needs_a_long_enough_key_that_never_prints() {
        let error = rules("[[rules]]\ntables = [\"a.b\"]\nhash = [\"x\"]").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("BINLOG_KINESIS__COLUMNS__HASH_KEY"),
            "{error}"
        );
        let error = rules("hash_key = \"short\"\n[[rules]]\ntables = [\"a.b\"]\nhash = [\"x\"]")
            .unwrap_err();
        assert!(
            error.to_string().contains("shorter") && !error.to_string().contains("short\""),
            "{error}"
        );
        assert!(
            rules("[[rules]]\nexclude = [\"x\"]").is_err(),
            "a rule without tables"
        );
        let rules = rules(
            "hash_key = \"a-key-of-twenty-bytes\"\n[[rules]]\ntables = [\"a.b\"]\nhash = [\"x\"]",
        )
        .unwrap();
        assert!(!format!("{rules:?}").contains("twenty"), "{rules:?}");
    }

    /// RFC 4231, test case 2 ("what do ya want for nothing?" under the key "Jefe"), through
    /// the JSON-string framing.
    #[test]
    fn the_hash_is_hmac_sha256_in_lowercase_hex() {
        let key = HashKey::new(&Secret("Jefe".into()));
        let mut out = b"{\"a\":what do ya want for nothing?".to_vec();
        key.hash_in_place(&mut out, 5);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":\"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\""
        );
    }
}

//! Which tables are captured: include/exclude patterns matched against database and table
//! names separately.

use super::ConfigError;

/// Include/exclude patterns over `database.table`, `*` matching any run of characters.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableFilter {
    /// `(database, table)` patterns.
    include: Vec<(String, String)>,
    exclude: Vec<(String, String)>,
}

impl TableFilter {
    /// Validates the patterns: each is `DATABASE.TABLE`, split at the first dot outside
    /// backticks (`` `my.db`.* `` names the database `my.db`), each part non-empty.
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<Self, ConfigError> {
        let check = |key: &'static str,
                     patterns: &[String]|
         -> Result<Vec<(String, String)>, ConfigError> {
            patterns
                .iter()
                .map(|pattern| {
                    let pattern = pattern.trim();
                    crate::event::TableName::split(pattern).ok_or_else(|| ConfigError::Invalid {
                        section: "filter",
                        key,
                        message: format!(
                            "pattern {pattern:?} must be DATABASE.TABLE, with * as a wildcard (for example \"shop.*\"); a name with a dot in it goes in backticks (\"`my.db`.*\")"
                        ),
                    })
                })
                .collect()
        };
        Ok(Self {
            include: check("include", include)?,
            exclude: check("exclude", exclude)?,
        })
    }

    /// Whether changes to `database.table` are captured: the database matches a pattern's
    /// first part and the table its second.
    pub(crate) fn matches(&self, database: &str, table: &str) -> bool {
        let hit = |(db, t): &(String, String)| glob(db, database) && glob(t, table);
        let included = self.include.is_empty() || self.include.iter().any(hit);
        included && !self.exclude.iter().any(hit)
    }
}

impl TableFilter {
    /// Whether a table of `database` can be captured: an include pattern's database part
    /// matches it (or there are none), and no exclude pattern takes every table of it.
    pub(crate) fn covers_database(&self, database: &str) -> bool {
        let included =
            self.include.is_empty() || self.include.iter().any(|(db, _)| glob(db, database));
        included
            && !self
                .exclude
                .iter()
                .any(|(db, t)| t == "*" && glob(db, database))
    }
}

/// The `tables` of rule `n` (from 1) of `[section]`'s rules: at least one pattern, each as in
/// `[filter]`.
pub(super) fn rule_tables(
    section: &'static str,
    n: usize,
    tables: &[String],
) -> Result<TableFilter, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        section,
        key: "rules",
        message,
    };
    if tables.is_empty() {
        return Err(invalid(format!(
            "rule {n} names no tables: set tables = [\"db.table\", \"db.*\"]"
        )));
    }
    TableFilter::new(tables, &[]).map_err(|error| invalid(format!("rule {n}: {error}")))
}

/// Matches `text` against `pattern`, where `*` matches any run of characters (including none).
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // Classic greedy matcher with one backtrack point: linear in practice for these patterns.
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] != '*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

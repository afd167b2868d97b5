//! Which tables and databases a DDL statement changes, for `ddl` events (`output.ddl`): read
//! from the statement's head with a small lexer that knows quoted names, strings and
//! comments.
//!
//! # Invariants
//!
//! - A statement whose targets cannot be read yields none: the `ddl` event is a notice for
//!   consumers, and the schema itself is always taken from the binlog's own table maps, so a
//!   missed notice loses no row.
//! - Temporary tables yield none: they are not replicated as tables.

/// What a DDL statement changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DdlTarget {
    /// A table, as `(database, table)`.
    Table(String, String),
    /// A database as a whole (`CREATE/ALTER/DROP DATABASE`).
    Database(String),
}

/// One token of a statement's text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, as written.
    Word(String),
    /// A `backquoted` name, unquoted.
    Quoted(String),
    /// Any other character outside strings and comments (`.`, `,`, `(`, ...).
    Punct(char),
}

impl Token {
    fn is(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn name(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Quoted(w) => Some(w),
            Token::Punct(_) => None,
        }
    }
}

/// The tokens of `text`, strings and comments left out (a versioned comment's content kept).
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('*') {
            if chars.get(i + 2) == Some(&'!') {
                // `/*!50100 ... */`: the server runs what is inside.
                i += 3;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
            } else {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
        } else if c == '*' && next == Some('/') {
            // The end of a versioned comment.
            i += 2;
        } else if c == '#' || (c == '-' && next == Some('-')) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '`' {
            let mut name = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '`' {
                    if chars.get(i + 1) == Some(&'`') {
                        name.push('`');
                        i += 2;
                        continue;
                    }
                    break;
                }
                name.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Token::Quoted(name));
        } else if c == '\'' || c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// A cursor over the tokens.
struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    default_schema: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    /// Consumes `keyword` if it is next.
    fn eat(&mut self, keyword: &str) -> bool {
        let found = self.peek().is_some_and(|t| t.is(keyword));
        self.at += usize::from(found);
        found
    }

    /// Consumes `IF [NOT] EXISTS` if it is next.
    fn eat_if_exists(&mut self) {
        let start = self.at;
        if self.eat("IF") {
            self.eat("NOT");
            if !self.eat("EXISTS") {
                self.at = start;
            }
        }
    }

    /// A name: `a`, `a.b`, with or without backquotes.
    fn name(&mut self) -> Option<(Option<String>, String)> {
        let first = self.peek()?.name()?.to_owned();
        self.at += 1;
        if self.peek() == Some(&Token::Punct('.')) {
            let second = self.tokens.get(self.at + 1)?.name()?.to_owned();
            self.at += 2;
            return Some((Some(first), second));
        }
        Some((None, first))
    }

    fn table(&mut self) -> Option<DdlTarget> {
        let (database, table) = self.name()?;
        let database = database.unwrap_or_else(|| self.default_schema.to_owned());
        (!database.is_empty()).then_some(DdlTarget::Table(database, table))
    }

    fn database(&mut self) -> Option<DdlTarget> {
        match self.name() {
            Some((None, database)) => Some(DdlTarget::Database(database)),
            _ => None,
        }
    }

    /// Skips to just after the next `keyword` outside parentheses.
    fn skip_past(&mut self, keyword: &str) -> bool {
        let mut depth = 0usize;
        while let Some(token) = self.tokens.get(self.at) {
            self.at += 1;
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth = depth.saturating_sub(1),
                t if depth == 0 && t.is(keyword) => return true,
                _ => {}
            }
        }
        false
    }

    /// `ALTER ...` after its first word: the table (and the name a `RENAME TO` gives it), or
    /// the database.
    fn alter(&mut self, found: &mut Vec<DdlTarget>) {
        self.eat("ONLINE");
        self.eat("IGNORE");
        if self.eat("TABLE") {
            self.eat_if_exists();
            found.extend(self.table());
            // `ALTER TABLE a ..., RENAME [TO|AS] b`: b too.
            while self.skip_past("RENAME") {
                if self
                    .peek()
                    .is_some_and(|t| t.is("COLUMN") || t.is("INDEX") || t.is("KEY"))
                {
                    continue;
                }
                let _ = self.eat("TO") || self.eat("AS");
                found.extend(self.table());
            }
        } else if self.eat("DATABASE") || self.eat("SCHEMA") {
            let options = [
                "CHARACTER",
                "CHARSET",
                "DEFAULT",
                "COLLATE",
                "COMMENT",
                "UPGRADE",
            ];
            if self.peek().is_none_or(|t| options.iter().any(|o| t.is(o))) {
                // No name: the default database.
                if !self.default_schema.is_empty() {
                    found.push(DdlTarget::Database(self.default_schema.to_owned()));
                }
            } else {
                found.extend(self.database());
            }
        }
    }
}

/// The tables and databases `statement` (a DDL statement, as `statement::classify` says)
/// changes; unqualified names are in `default_schema`.
pub(crate) fn targets(statement: &str, default_schema: &str) -> Vec<DdlTarget> {
    let tokens = tokens(statement);
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
        default_schema,
    };
    let mut found = Vec::new();
    if p.eat("CREATE") {
        p.eat("OR");
        p.eat("REPLACE");
        if p.eat("TEMPORARY") {
            return found;
        }
        if p.eat("TABLE") {
            p.eat_if_exists();
            found.extend(p.table());
        } else if p.eat("DATABASE") || p.eat("SCHEMA") {
            p.eat_if_exists();
            found.extend(p.database());
        } else {
            for word in ["ONLINE", "OFFLINE", "UNIQUE", "FULLTEXT", "SPATIAL"] {
                p.eat(word);
            }
            if p.eat("INDEX") && p.skip_past("ON") {
                found.extend(p.table());
            }
        }
    } else if p.eat("ALTER") {
        p.alter(&mut found);
    } else if p.eat("DROP") {
        if p.eat("TEMPORARY") {
            return found;
        }
        if p.eat("TABLE") {
            p.eat_if_exists();
            while let Some(table) = p.table() {
                found.push(table);
                if p.peek() != Some(&Token::Punct(',')) {
                    break;
                }
                p.at += 1;
            }
        } else if p.eat("DATABASE") || p.eat("SCHEMA") {
            p.eat_if_exists();
            found.extend(p.database());
        } else {
            p.eat("ONLINE");
            p.eat("OFFLINE");
            if p.eat("INDEX") && p.skip_past("ON") {
                found.extend(p.table());
            }
        }
    } else if p.eat("RENAME") && (p.eat("TABLE") || p.eat("TABLES")) {
        while let Some(from) = p.table() {
            if !p.eat("TO") {
                break;
            }
            let Some(to) = p.table() else { break };
            found.push(from);
            found.push(to);
            if p.peek() != Some(&Token::Punct(',')) {
                break;
            }
            p.at += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{targets, DdlTarget};

    fn table(database: &str, table: &str) -> DdlTarget {
        DdlTarget::Table(database.into(), table.into())
    }

    #[test]
    fn the_tables_and_databases_of_ddl_statements() {
        let cases: Vec<(&str, Vec<DdlTarget>)> = vec![
            ("ALTER TABLE t ADD COLUMN c INT", vec![table("shop", "t")]),
            (
                "alter online ignore table `my.db`.`t``x` add c int",
                vec![table("my.db", "t`x")],
            ),
            (
                "ALTER TABLE a ADD COLUMN b INT, RENAME TO other.b2",
                vec![table("shop", "a"), table("other", "b2")],
            ),
            (
                "ALTER TABLE a RENAME COLUMN x TO y",
                vec![table("shop", "a")],
            ),
            (
                "CREATE TABLE IF NOT EXISTS `x` (id INT) /* comment */",
                vec![table("shop", "x")],
            ),
            (
                "CREATE OR REPLACE TABLE crm.p (id INT)",
                vec![table("crm", "p")],
            ),
            ("CREATE TEMPORARY TABLE t (id INT)", vec![]),
            (
                "DROP TABLE `a`,b, crm.c /* generated by server */",
                vec![table("shop", "a"), table("shop", "b"), table("crm", "c")],
            ),
            ("DROP TABLE IF EXISTS a", vec![table("shop", "a")]),
            ("DROP TEMPORARY TABLE IF EXISTS a", vec![]),
            (
                "RENAME TABLE a TO b, crm.c TO shop.d",
                vec![
                    table("shop", "a"),
                    table("shop", "b"),
                    table("crm", "c"),
                    table("shop", "d"),
                ],
            ),
            ("CREATE UNIQUE INDEX i ON t (c)", vec![table("shop", "t")]),
            ("DROP INDEX i ON crm.t", vec![table("crm", "t")]),
            (
                "CREATE DATABASE IF NOT EXISTS crm",
                vec![DdlTarget::Database("crm".into())],
            ),
            ("DROP SCHEMA `old`", vec![DdlTarget::Database("old".into())]),
            (
                "ALTER DATABASE CHARACTER SET utf8mb4",
                vec![DdlTarget::Database("shop".into())],
            ),
            (
                "/*!40000 ALTER TABLE t DISABLE KEYS */",
                vec![table("shop", "t")],
            ),
            ("CREATE VIEW v AS SELECT 1", vec![]),
            ("GRANT SELECT ON shop.* TO u", vec![]),
            (
                "ALTER TABLE t COMMENT 'RENAME TO x'",
                vec![table("shop", "t")],
            ),
        ];
        for (statement, expected) in cases {
            assert_eq!(targets(statement, "shop"), expected, "{statement}");
        }
        assert_eq!(
            targets("ALTER TABLE t ADD c INT", ""),
            vec![],
            "no default schema"
        );
    }
}

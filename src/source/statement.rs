//! What a statement in a QUERY event means for the changelog.
//!
//! With `binlog_format=ROW`, row changes arrive as row events and QUERY events carry only
//! transaction control and DDL. A session may still set `binlog_format=STATEMENT` (or MIXED)
//! for itself, and then its changes arrive as SQL text without row images. Which tables such a
//! statement changes cannot be read off its text: multi-table `UPDATE`/`DELETE` with aliases,
//! triggers, stored functions and procedures, executable comments and `CREATE ... SELECT` all
//! write tables the text does not name where a parser would look. So the rule is fail-closed:
//!
//! - **Passes**: transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`, savepoints, `XA`),
//!   statements that change no rows (`CREATE`/`ALTER`/`DROP`/`RENAME` of tables, views, routines,
//!   triggers, events, users, databases, sequences; `GRANT`, `REVOKE`, `ANALYZE`, `OPTIMIZE`,
//!   `REPAIR`, `FLUSH`, `INSTALL`, `UNINSTALL`, `SET PASSWORD`, `SET DEFAULT ROLE`), a
//!   `TRUNCATE` (which becomes a `truncate` event), and text that is only comments.
//! - **Stops the reader**: everything else, in particular `INSERT`, `REPLACE`, `UPDATE`,
//!   `DELETE`, `LOAD DATA`, `CALL`, `DO`, `SELECT` (a logged `SELECT f()` means `f` wrote
//!   data), `WITH`, `EXECUTE`, `CREATE TABLE ... SELECT`, any statement this module does not
//!   know, and `SET STATEMENT ... FOR`: whatever table they name.
//!
//! Executable comments (`/*!50100 ... */`, `/*M!100100 ... */`) are read as the statement they
//! hold, since the server ran them.

/// What a QUERY event's statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement {
    /// `BEGIN` (or `START TRANSACTION`): a transaction's first event.
    Begin,
    /// `COMMIT`, or a `ROLLBACK` of the whole transaction (logged only when a non-transactional
    /// table had already changed, so it ends the transaction too).
    Commit,
    /// Savepoints, `XA END`, `XA PREPARE` text: part of a transaction, no rows.
    Control,
    /// `XA START xid` (MySQL writes it; MariaDB puts it in the GTID event): a transaction's
    /// first event, like BEGIN.
    XaStart,
    /// `XA COMMIT xid` of a prepared transaction: its rows are committed now. With
    /// `ONE PHASE` it ends the transaction it is part of, like COMMIT.
    XaCommit {
        /// The XID as the binlog writes it (`X'7831',X'',1`).
        xid: String,
        /// `XA COMMIT ... ONE PHASE`.
        one_phase: bool,
    },
    /// `XA ROLLBACK xid` of a prepared transaction: its rows never happened.
    XaRollback {
        /// The XID as the binlog writes it.
        xid: String,
    },
    /// `TRUNCATE [TABLE] name`: every row of the table removed, no row images. The table as
    /// `(database, table)`, or `None` when the name cannot be read.
    Truncate(Option<(String, String)>),
    /// A statement that changes no rows (DDL, account management, maintenance).
    Ddl,
    /// A statement that may have changed rows, logged without row images.
    DataChange,
}

/// Classifies `statement` (the QUERY event's text); `default_schema` is the event's current
/// database, for unqualified names.
pub(crate) fn classify(statement: &str, default_schema: &str) -> Statement {
    let text = unwrap_comments(statement);
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        // Only comments: nothing ran.
        "" => Statement::Control,
        "BEGIN" => Statement::Begin,
        "START" if word(1) == "TRANSACTION" => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "ROLLBACK" if word(1) == "TO" => Statement::Control,
        "ROLLBACK" => Statement::Commit,
        "XA" => xa(text),
        "SAVEPOINT" | "RELEASE" => Statement::Control,
        "TRUNCATE" => Statement::Truncate(truncate_target(text, default_schema)),
        "CREATE" if creates_table_from_select(text) => Statement::DataChange,
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "GRANT" | "REVOKE" | "ANALYZE" | "OPTIMIZE"
        | "REPAIR" | "FLUSH" | "INSTALL" | "UNINSTALL" => Statement::Ddl,
        "SET" if word(1) == "PASSWORD" || (word(1) == "DEFAULT" && word(2) == "ROLE") => {
            Statement::Ddl
        }
        _ => Statement::DataChange,
    }
}

/// An `XA` statement: `XA START|BEGIN|END|PREPARE|COMMIT|ROLLBACK xid [...]`.
fn xa(text: &str) -> Statement {
    let rest = text[2..].trim_start();
    let (verb, xid) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let xid = xid.trim();
    match verb.to_ascii_uppercase().as_str() {
        "START" | "BEGIN" => Statement::XaStart,
        "COMMIT" => {
            let upper = xid.to_ascii_uppercase();
            let one_phase = upper.ends_with("ONE PHASE");
            let xid = if one_phase {
                xid[..upper.rfind("ONE").expect("found")].trim_end()
            } else {
                xid
            };
            Statement::XaCommit {
                xid: xid.to_owned(),
                one_phase,
            }
        }
        "ROLLBACK" => Statement::XaRollback {
            xid: xid.to_owned(),
        },
        _ => Statement::Control,
    }
}

/// The XID of an `XA END xid` or `XA PREPARE xid` statement, as the binlog writes it.
pub(crate) fn xa_end_xid(statement: &str) -> Option<&str> {
    let text = unwrap_comments(statement);
    let mut words = text.splitn(3, char::is_whitespace);
    let xa = words.next()?;
    let verb = words.next()?;
    (xa.eq_ignore_ascii_case("XA")
        && (verb.eq_ignore_ascii_case("END") || verb.eq_ignore_ascii_case("PREPARE")))
    .then(|| words.next().map(str::trim))
    .flatten()
}

/// The statement with its leading comments removed and an executable comment opened: the text
/// the server ran.
fn unwrap_comments(statement: &str) -> &str {
    let mut rest = statement.trim_start();
    loop {
        if let Some(after) = rest
            .strip_prefix("/*!")
            .or_else(|| rest.strip_prefix("/*M!"))
        {
            // `/*!50100 UPDATE ... */`: the version digits, then the statement.
            let body = after.trim_start_matches(|c: char| c.is_ascii_digit());
            rest = body.trim_start();
            // The closing `*/` is at the end; the words before it are all that matter.
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else if rest.starts_with('#') || rest.starts_with("-- ") {
            rest = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else {
            return rest;
        }
    }
}

/// Whether a `CREATE` statement creates a table from a query (`CREATE TABLE t SELECT ...`,
/// `... AS SELECT`, `... (cols) SELECT`, `... (SELECT ...)`): the word SELECT anywhere outside
/// quotes and comments of a CREATE TABLE. Views, routines, triggers and events contain queries
/// without running them.
fn creates_table_from_select(text: &str) -> bool {
    let head: Vec<String> = text
        .split_whitespace()
        .take(6)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    // CREATE [OR REPLACE] [TEMPORARY] TABLE
    let is_table = head
        .iter()
        .skip(1)
        .take_while(|w| matches!(w.as_str(), "OR" | "REPLACE" | "TEMPORARY" | "TABLE"))
        .any(|w| w == "TABLE");
    is_table && bare_words(text).any(|w| w.eq_ignore_ascii_case("SELECT"))
}

/// The words of `text` outside quoted strings, quoted names and comments.
fn bare_words(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    let mut word_start = None;
    while i < bytes.len() {
        let b = bytes[i];
        let quote = matches!(b, b'\'' | b'"' | b'`');
        let comment = (b == b'/' && bytes.get(i + 1) == Some(&b'*'))
            || b == b'#'
            || (b == b'-' && bytes.get(i + 1) == Some(&b'-'));
        let in_word = b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
        match (word_start, in_word) {
            (None, true) => word_start = Some(i),
            (Some(start), false) => {
                spans.push((start, i));
                word_start = None;
            }
            _ => {}
        }
        if quote {
            // To the closing quote; a doubled quote or a backslash escapes it.
            i += 1;
            while i < bytes.len() {
                if bytes[i] == b'\\' && b != b'`' {
                    i += 2;
                    continue;
                }
                if bytes[i] == b {
                    if bytes.get(i + 1) == Some(&b) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
        } else if comment && b == b'/' {
            i = text[i..].find("*/").map_or(bytes.len(), |end| i + end + 1);
        } else if comment {
            i = text[i..].find('\n').map_or(bytes.len(), |end| i + end);
        }
        i += 1;
    }
    if let Some(start) = word_start {
        spans.push((start, bytes.len()));
    }
    spans.into_iter().map(move |(start, end)| &text[start..end])
}

/// The table a `TRUNCATE [TABLE] name` statement empties, when the name can be read.
fn truncate_target(text: &str, default_schema: &str) -> Option<(String, String)> {
    let mut words = text.split_whitespace().skip(1);
    let name = match words.next() {
        Some(word) if word.eq_ignore_ascii_case("TABLE") => words.next(),
        other => other,
    };
    name.and_then(|name| table_name(name, default_schema))
}

/// `db`.`table`, db.table or table (in `default_schema`): the name at the start of `word`, up
/// to the first space, `;`, `,` or `(` outside backticks.
fn table_name(word: &str, default_schema: &str) -> Option<(String, String)> {
    let mut quoted = false;
    let end = word
        .char_indices()
        .find(|&(_, c)| {
            if c == '`' {
                quoted = !quoted;
            }
            !quoted && (c.is_whitespace() || matches!(c, ';' | ',' | '('))
        })
        .map_or(word.len(), |(i, _)| i);
    let name = &word[..end];
    if let Some(qualified) = crate::event::TableName::split(name) {
        return Some(qualified);
    }
    // One name, in the default schema: quoted (it may hold dots), or plain (it may not).
    let table = match name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None if name.contains(['.', '`']) => return None,
        None => name.to_owned(),
    };
    (!table.is_empty() && !default_schema.is_empty()).then(|| (default_schema.to_owned(), table))
}

#[cfg(test)]
mod tests {
    use super::{classify, Statement};

    fn kind(statement: &str) -> Statement {
        classify(statement, "shop")
    }

    #[test]
    fn finds_the_table_a_truncate_empties() {
        let table = |d: &str, t: &str| Statement::Truncate(Some((d.to_owned(), t.to_owned())));
        assert_eq!(kind("TRUNCATE TABLE t"), table("shop", "t"));
        assert_eq!(
            kind("/* x */ truncate `crm`.`users`"),
            table("crm", "users")
        );
        assert_eq!(classify("TRUNCATE t", ""), Statement::Truncate(None));
        assert_eq!(kind("TRUNCATE TABLE"), Statement::Truncate(None));
        assert_eq!(kind("TRUNCATE `my.db`.`t`"), table("my.db", "t"));
        assert_eq!(kind("TRUNCATE TABLE `db.t`;"), table("shop", "db.t"));
    }

    /// Regression (issue 11, item 1): each of these changed `shop.orders` while the reader
    /// found no table in scope in its text, or none at all.
    #[test]
    fn every_statement_that_may_change_rows_is_a_data_change() {
        for statement in [
            "INSERT INTO t VALUES (1)",
            "insert ignore into `crm`.`users`(id) values (1)",
            "/* app */ UPDATE LOW_PRIORITY orders SET a=1",
            "DELETE QUICK FROM shop.t WHERE id=1",
            "REPLACE t SELECT 1",
            "LOAD DATA INFILE '/x' INTO TABLE a.b",
            "DELETE o FROM shop.orders o WHERE o.id=21",
            "DELETE FROM o USING shop.orders o WHERE o.id = 1",
            "UPDATE other.t2 JOIN shop.orders o ON o.id = t2.id SET o.status = 'x'",
            "/*!40101 UPDATE shop.orders SET status = 'x' */",
            "/*M!100100 DELETE FROM shop.orders */",
            "# a comment line\nUPDATE shop.orders SET status = 'x'",
            "INSERT INTO other.t2 VALUES (1)",
            "CREATE TABLE shop.x SELECT * FROM shop.orders",
            "CREATE TABLE shop.x AS SELECT 1",
            "create or replace table x (id int) select 1 as id",
            "CREATE TABLE x (SELECT 1)",
            "CREATE TEMPORARY TABLE x SELECT 1",
            "CALL shop.refresh()",
            "DO shop.f()",
            "SELECT shop.f()",
            "WITH c AS (SELECT 1) UPDATE shop.orders SET a = 1",
            "SET STATEMENT max_statement_time=1 FOR DELETE FROM shop.orders",
            "SET @a = 1",
            "EXECUTE stmt",
            "HANDLER t READ FIRST",
            "SOMETHING NEW",
        ] {
            assert_eq!(kind(statement), Statement::DataChange, "{statement}");
        }
    }

    #[test]
    fn the_xid_of_xa_end_is_the_one_xa_commit_names() {
        assert_eq!(
            super::xa_end_xid("XA END X'7831',X'',1"),
            Some("X'7831',X'',1")
        );
        assert_eq!(
            super::xa_end_xid("XA PREPARE X'31',X'32',7"),
            Some("X'31',X'32',7")
        );
        assert_eq!(super::xa_end_xid("XA COMMIT X'31',X'',1"), None);
    }

    #[test]
    fn control_and_statements_without_rows_pass() {
        for (statement, expected) in [
            ("BEGIN", Statement::Begin),
            ("START TRANSACTION", Statement::Begin),
            ("COMMIT", Statement::Commit),
            ("ROLLBACK", Statement::Commit),
            ("ROLLBACK TO SAVEPOINT s1", Statement::Control),
            ("SAVEPOINT s1", Statement::Control),
            ("RELEASE SAVEPOINT s1", Statement::Control),
            ("XA START X'7831',X'',1", Statement::XaStart),
            ("XA END X'7831',X'',1", Statement::Control),
            (
                "XA COMMIT X'7831',X'',1",
                Statement::XaCommit {
                    xid: "X'7831',X'',1".into(),
                    one_phase: false,
                },
            ),
            (
                "xa commit X'7831',X'',1 one phase",
                Statement::XaCommit {
                    xid: "X'7831',X'',1".into(),
                    one_phase: true,
                },
            ),
            (
                "XA ROLLBACK X'7833',X'',1",
                Statement::XaRollback {
                    xid: "X'7833',X'',1".into(),
                },
            ),
            ("# Dummy event replacing event type 160", Statement::Control),
            ("CREATE TABLE t (id INT, note VARCHAR(9) DEFAULT 'select')", Statement::Ddl),
            ("CREATE TABLE `select` (`select` INT) COMMENT 'SELECT'", Statement::Ddl),
            ("CREATE TABLE t2 LIKE t", Statement::Ddl),
            ("CREATE VIEW v AS SELECT * FROM t", Statement::Ddl),
            ("CREATE DEFINER=`root`@`localhost` TRIGGER tr AFTER INSERT ON t FOR EACH ROW INSERT INTO shop.orders VALUES (1)", Statement::Ddl),
            ("CREATE PROCEDURE p() SELECT 1", Statement::Ddl),
            ("ALTER TABLE t ADD c INT", Statement::Ddl),
            ("DROP TABLE IF EXISTS `t` /* generated by server */", Statement::Ddl),
            ("RENAME TABLE a TO b", Statement::Ddl),
            ("GRANT ALL ON *.* TO x", Statement::Ddl),
            ("ANALYZE TABLE t", Statement::Ddl),
            ("SET PASSWORD FOR x = PASSWORD('y')", Statement::Ddl),
            ("/*!40000 ALTER TABLE `t` DISABLE KEYS */", Statement::Ddl),
        ] {
            assert_eq!(kind(statement), expected, "{statement}");
        }
    }
}

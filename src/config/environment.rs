//! Environment overrides (`BINLOG_KINESIS__SECTION__KEY`), secrets kept out of messages, and
//! the log level check.

use super::{validate::invalid, ConfigError, FileConfig, ENV_PREFIX};

/// Settings whose values never appear in a message, as `(section, key)`. A new secret setting
/// is added here.
pub(crate) const SECRET_KEYS: &[(&str, &str)] = &[("mysql", "password"), ("columns", "hash_key")];

/// The daemon's own variables among `vars`, as text. Other variables are skipped unread: a
/// non-UTF-8 value elsewhere in the environment is none of the daemon's business.
pub(crate) fn env_overrides(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut ours = Vec::new();
    for (name, value) in vars {
        let name = name.to_string_lossy();
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Env {
            name: name.clone().into_owned(),
            message: "the value is not valid UTF-8".into(),
        })?;
        ours.push((name.into_owned(), value));
    }
    Ok(ours)
}

/// A TOML error for the file `text`, as `line L, column C: message`, with the offending line
/// quoted unless it sets a secret ([`SECRET_KEYS`]): the parser's own rendering quotes the
/// line whole, password included.
pub(super) fn redacted_toml_error(
    text: &str,
    message: &str,
    span: Option<std::ops::Range<usize>>,
) -> String {
    let Some(span) = span.filter(|span| span.start <= text.len()) else {
        return message.to_owned();
    };
    let before = &text[..span.start];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..span.start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    // The section the line is in: the last `[header]` above it.
    let section = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
        .unwrap_or_default();
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let (key_section, key_name) = match key.rsplit_once('.') {
        Some((s, k)) => (s.trim().to_owned(), k.trim()),
        None => (section, key),
    };
    let secret = SECRET_KEYS
        .iter()
        .any(|(s, k)| key_section == *s && key_name == *k);
    if secret {
        format!("line {line_no}: the value of [{key_section}] {key_name} is not a valid TOML string (the line is not shown: it holds a secret); quote it, and write a backslash as \\\\ or use single quotes")
    } else {
        format!("line {line_no}, column {column}: {message}\n  | {line}")
    }
}

/// Checks a `log.level`: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a
/// comma-separated list of directives `target=level`. `EnvFilter` itself would take an unknown
/// word such as `warning` as a target name and silence every other line.
pub(super) fn check_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];
    let known = |word: &str| LEVELS.iter().any(|l| word.trim().eq_ignore_ascii_case(l));
    let valid = level.split(',').all(|directive| {
        let directive = directive.trim();
        match directive.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && known(level),
            None => known(directive),
        }
    }) && tracing_subscriber::EnvFilter::try_new(level).is_ok();
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "log",
            "level",
            "must be error, warn, info, debug, trace, off, or directives like \"info,binlog_kinesis=debug\"",
        ))
    }
}

/// Sets one `BINLOG_KINESIS__SECTION__KEY` override in the raw table, converting the text to
/// the key's type, which is read off the defaults.
pub(super) fn apply_env(
    table: &mut toml::Table,
    name: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let env_error = |message: String| ConfigError::Env {
        name: name.to_owned(),
        message,
    };
    let path = &name[ENV_PREFIX.len()..];
    let Some((section, key)) = path.split_once("__") else {
        return Err(env_error(
            "expected BINLOG_KINESIS__<SECTION>__<KEY>".into(),
        ));
    };
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    let defaults = toml::Table::try_from(FileConfig::default())
        .expect("the default configuration serializes to TOML");
    let Some(default) = defaults
        .get(&section)
        .and_then(|s| s.as_table())
        .and_then(|s| s.get(&key))
    else {
        return Err(env_error(format!("unknown setting [{section}] {key}")));
    };
    let typed = match default {
        toml::Value::String(_) => toml::Value::String(value.to_owned()),
        toml::Value::Integer(_) => toml::Value::Integer(
            value
                .trim()
                .parse()
                .map_err(|_| env_error(format!("{value:?} is not an integer")))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            value
                .trim()
                .parse()
                .map_err(|_| env_error(format!("{value:?} is not true or false")))?,
        ),
        toml::Value::Array(_) => parse_list(value).map_err(env_error)?,
        other => {
            return Err(env_error(format!(
                "cannot override a {} setting",
                other.type_str()
            )))
        }
    };
    table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| env_error("the file's section is not a table".into()))?
        .insert(key, typed);
    Ok(())
}

/// A TOML array (`["a","b"]`) or a comma-separated list (`a,b`); empty text is the empty list.
fn parse_list(value: &str) -> Result<toml::Value, String> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        let wrapped: toml::Table = format!("v = {trimmed}")
            .parse()
            .map_err(|error| format!("{value:?} is not a TOML array: {error}"))?;
        return Ok(wrapped["v"].clone());
    }
    Ok(toml::Value::Array(
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| toml::Value::String(item.to_owned()))
            .collect(),
    ))
}

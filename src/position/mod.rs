//! Binlog positions: the `file:offset` coordinates that every event carries and that the
//! checkpoint stores.
//!
//! One canonical text form, `mariadb-bin.000003:4321`, is used in event lines, in logs, on the
//! command line (`--start-position`) and in the checkpoint file; `Display` and `FromStr` are
//! inverses of each other (pinned by a property test).
//!
//! The GTID state ([`GtidState`]: MariaDB's `domain-server-sequence` list, or a MySQL GTID set
//! `uuid:1-57,uuid2:tag:1-9`) travels next to the file position in a [`ResumePoint`]: the file
//! position resumes on the same server, the GTID state on any server of the same replication
//! topology (failover).
//!
//! # Ordering
//!
//! Binlog file names are `<base>.<sequence>`. Two positions in files with the same base name
//! compare by sequence number, then offset. Positions from different base names (a server whose
//! `log_bin_basename` changed) are incomparable, so comparison is fallible: [`BinlogPosition::try_cmp`].

mod gtid;

use std::{cmp::Ordering, fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::gtid::GtidState;
pub(crate) use self::gtid::{MariaGtid, MysqlGtid};

/// The first event offset in every binlog file (after the 4-byte magic header).
pub(crate) const FIRST_EVENT_OFFSET: u64 = 4;

/// A position in the source server's binary log: a file name and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BinlogPosition {
    /// Shared: every event carries a position, and cloning one must not allocate.
    file: Arc<str>,
    offset: u64,
}

/// Why a text is not a binlog position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePositionError {
    /// No `:` separates the file from the offset.
    #[error("position {0:?} is not FILE:OFFSET (for example mariadb-bin.000003:4)")]
    MissingSeparator(String),
    /// The file part is empty or contains characters a binlog file name never has.
    #[error("position {0:?} has an invalid binlog file name")]
    InvalidFile(String),
    /// Not a MariaDB GTID list (`domain-server-sequence`, comma separated) nor a MySQL GTID
    /// set (`uuid:interval[:interval...]`, comma separated).
    #[error("{0:?} is not a GTID position: MariaDB 0-1-57 or 0-1-57,1-2-9, or a MySQL GTID set such as 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-57")]
    InvalidGtid(String),
    /// The offset is not a number of at least 4.
    #[error("position {0:?} has an invalid offset: it must be a number of at least 4")]
    InvalidOffset(String),
}

impl BinlogPosition {
    /// A position; `file` must be a plain file name (no `/`, no `:`, not empty) and `offset` at
    /// least `FIRST_EVENT_OFFSET`.
    pub fn new(file: impl Into<String>, offset: u64) -> Result<Self, ParsePositionError> {
        let file = file.into();
        if file.is_empty()
            || file.contains([':', '/', '\\', '\0'])
            || file.chars().any(char::is_whitespace)
        {
            return Err(ParsePositionError::InvalidFile(format!("{file}:{offset}")));
        }
        if offset < FIRST_EVENT_OFFSET {
            return Err(ParsePositionError::InvalidOffset(format!(
                "{file}:{offset}"
            )));
        }
        Ok(Self {
            file: file.into(),
            offset,
        })
    }

    /// The start of a binlog file.
    pub(crate) fn start_of(file: impl Into<String>) -> Result<Self, ParsePositionError> {
        Self::new(file, FIRST_EVENT_OFFSET)
    }

    /// The binlog file name.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// The byte offset in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The same file at another offset.
    pub(crate) fn with_offset(&self, offset: u64) -> Self {
        Self {
            file: self.file.clone(),
            offset: offset.max(FIRST_EVENT_OFFSET),
        }
    }

    /// Compares two positions; `None` when their files have different base names or a file
    /// name has no numeric extension, so their order is unknown.
    pub fn try_cmp(&self, other: &Self) -> Option<Ordering> {
        let (base_a, seq_a) = split_file(&self.file)?;
        let (base_b, seq_b) = split_file(&other.file)?;
        if base_a != base_b {
            return None;
        }
        Some(seq_a.cmp(&seq_b).then(self.offset.cmp(&other.offset)))
    }
}

/// Splits `mariadb-bin.000003` into (`mariadb-bin`, 3).
fn split_file(file: &str) -> Option<(&str, u64)> {
    let (base, seq) = file.rsplit_once('.')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, seq.parse().ok()?))
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)
    }
}

impl FromStr for BinlogPosition {
    type Err = ParsePositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (file, offset) = text
            .rsplit_once(':')
            .ok_or_else(|| ParsePositionError::MissingSeparator(text.to_owned()))?;
        let offset = offset
            .parse::<u64>()
            .map_err(|_| ParsePositionError::InvalidOffset(text.to_owned()))?;
        Self::new(file, offset)
    }
}

impl Serialize for BinlogPosition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BinlogPosition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A transaction boundary: where to resume, by file position on the same server and, when the
/// server assigns GTIDs, by GTID state on any server of its topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The position just after the transaction.
    pub position: BinlogPosition,
    /// The GTID state including the transaction; `None` when the server assigns no GTIDs or
    /// the state at the start point is unknown (a MySQL position mid-file, until the next
    /// file's PREVIOUS_GTIDS).
    pub gtid: Option<GtidState>,
}

impl ResumePoint {
    /// A point without GTID state.
    pub fn at(position: BinlogPosition) -> Self {
        Self {
            position,
            gtid: None,
        }
    }
}

impl fmt::Display for ResumePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.gtid {
            Some(gtid) if !gtid.is_empty() => write!(f, "{} (gtid {gtid})", self.position),
            _ => write!(f, "{}", self.position),
        }
    }
}

#[cfg(test)]
mod tests;

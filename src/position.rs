//! Binlog positions: the `file:offset` coordinates that every event carries and that the
//! checkpoint stores.
//!
//! One canonical text form, `mariadb-bin.000003:4321`, is used in event lines, in logs, on the
//! command line (`--start-position`) and in the checkpoint file; `Display` and `FromStr` are
//! inverses of each other (pinned by a property test).
//!
//! The GTID state ([`GtidState`], MariaDB's `domain-server-sequence` list) travels next to the
//! file position in a [`ResumePoint`]: the file position resumes on the same server, the GTID
//! state on any server of the same replication topology (failover).
//!
//! # Ordering
//!
//! Binlog file names are `<base>.<sequence>`. Two positions in files with the same base name
//! compare by sequence number, then offset. Positions from different base names (a server whose
//! `log_bin_basename` changed) are incomparable, so comparison is fallible: [`BinlogPosition::try_cmp`].

use std::{cmp::Ordering, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The first event offset in every binlog file (after the 4-byte magic header).
pub const FIRST_EVENT_OFFSET: u64 = 4;

/// A position in the source server's binary log: a file name and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BinlogPosition {
    file: String,
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
    /// Not a MariaDB GTID list (`domain-server-sequence`, comma separated).
    #[error("{0:?} is not a MariaDB GTID position such as 0-1-57 or 0-1-57,1-2-9")]
    InvalidGtid(String),
    /// The offset is not a number of at least 4.
    #[error("position {0:?} has an invalid offset: it must be a number of at least 4")]
    InvalidOffset(String),
}

impl BinlogPosition {
    /// A position; `file` must be a plain file name (no `/`, no `:`, not empty) and `offset` at
    /// least [`FIRST_EVENT_OFFSET`].
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
        Ok(Self { file, offset })
    }

    /// The start of a binlog file.
    pub fn start_of(file: impl Into<String>) -> Result<Self, ParsePositionError> {
        Self::new(file, FIRST_EVENT_OFFSET)
    }

    /// The binlog file name.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The byte offset in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The same file at another offset.
    pub fn with_offset(&self, offset: u64) -> Self {
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

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariaGtid {
    /// Replication domain.
    pub domain: u32,
    /// The server that wrote the transaction.
    pub server: u32,
    /// Sequence number within the domain.
    pub sequence: u64,
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

impl FromStr for MariaGtid {
    type Err = ParsePositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ParsePositionError::InvalidGtid(text.to_owned());
        let mut parts = text.trim().split('-');
        let (Some(domain), Some(server), Some(sequence), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        Ok(Self {
            domain: domain.parse().map_err(|_| invalid())?,
            server: server.parse().map_err(|_| invalid())?,
            sequence: sequence.parse().map_err(|_| invalid())?,
        })
    }
}

/// A MariaDB GTID position: the last GTID of each replication domain, as in
/// `@@gtid_binlog_pos` and `@slave_connect_state`. Text form: `0-1-57,1-2-9` (empty when no
/// GTID was seen yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct GtidState {
    /// At most one per domain, sorted by domain.
    last: Vec<MariaGtid>,
}

impl GtidState {
    /// Records that `gtid`'s transaction is done: it becomes its domain's last GTID.
    pub fn apply(&mut self, gtid: MariaGtid) {
        match self.last.binary_search_by_key(&gtid.domain, |g| g.domain) {
            Ok(index) => self.last[index] = gtid,
            Err(index) => self.last.insert(index, gtid),
        }
    }

    /// No GTID recorded.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, gtid) in self.last.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for GtidState {
    type Err = ParsePositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut state = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let gtid: MariaGtid = part.parse()?;
            if state.last.iter().any(|g| g.domain == gtid.domain) {
                return Err(ParsePositionError::InvalidGtid(format!(
                    "{text} (domain {} twice)",
                    gtid.domain
                )));
            }
            state.apply(gtid);
        }
        Ok(state)
    }
}

impl Serialize for GtidState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GtidState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A transaction boundary: where to resume, by file position on the same server and, when the
/// server assigns GTIDs, by GTID state on any server of its topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The position just after the transaction.
    pub position: BinlogPosition,
    /// The GTID state including the transaction; `None` when the server assigns no GTIDs
    /// (or they are not tracked: MySQL GTID sets are not yet).
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
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_and_prints_the_canonical_form() {
        let position: BinlogPosition = "mariadb-bin.000003:4321".parse().unwrap();
        assert_eq!(position.file(), "mariadb-bin.000003");
        assert_eq!(position.offset(), 4321);
        assert_eq!(position.to_string(), "mariadb-bin.000003:4321");
    }

    #[test]
    fn rejects_malformed_positions() {
        for text in [
            "",
            "mariadb-bin.000003",
            ":4",
            "a:b",
            "f:3",
            "dir/f.1:4",
            "f.1:-4",
            "a b:4",
        ] {
            assert!(
                text.parse::<BinlogPosition>().is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn orders_by_sequence_then_offset() {
        let a: BinlogPosition = "bin.000009:900".parse().unwrap();
        let b: BinlogPosition = "bin.000010:4".parse().unwrap();
        let c: BinlogPosition = "bin.000010:5".parse().unwrap();
        assert_eq!(a.try_cmp(&b), Some(Ordering::Less));
        assert_eq!(c.try_cmp(&b), Some(Ordering::Greater));
        assert_eq!(b.try_cmp(&b), Some(Ordering::Equal));
        let other: BinlogPosition = "other.000001:4".parse().unwrap();
        assert_eq!(a.try_cmp(&other), None);
    }

    #[test]
    fn serializes_as_a_string() {
        let position: BinlogPosition = "bin.000001:120".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&position).unwrap(),
            r#""bin.000001:120""#
        );
        let back: BinlogPosition = serde_json::from_str(r#""bin.000001:120""#).unwrap();
        assert_eq!(back, position);
    }

    #[test]
    fn gtid_states_keep_the_last_gtid_per_domain() {
        let mut state: GtidState = "1-2-9, 0-1-57".parse().unwrap();
        assert_eq!(state.to_string(), "0-1-57,1-2-9");
        state.apply("0-3-58".parse().unwrap());
        state.apply("5-1-1".parse().unwrap());
        assert_eq!(state.to_string(), "0-3-58,1-2-9,5-1-1");
        assert_eq!("".parse::<GtidState>().unwrap(), GtidState::default());
        for bad in [
            "0-1",
            "a-b-c",
            "0-1-2-3",
            "0-1-5,0-2-6",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:23",
        ] {
            assert!(bad.parse::<GtidState>().is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn display_and_from_str_round_trip(
            base in "[a-z][a-z0-9_-]{0,20}",
            seq in 0u32..1_000_000,
            offset in 4u64..u64::MAX,
        ) {
            let position = BinlogPosition::new(format!("{base}.{seq:06}"), offset).unwrap();
            let back: BinlogPosition = position.to_string().parse().unwrap();
            prop_assert_eq!(back, position);
        }
    }
}

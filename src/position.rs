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

use std::{cmp::Ordering, fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MariaGtid {
    /// Replication domain.
    pub(crate) domain: u32,
    /// The server that wrote the transaction.
    pub(crate) server: u32,
    /// Sequence number within the domain.
    pub(crate) sequence: u64,
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

/// One MySQL GTID: the source server's UUID, an optional tag (MySQL 8.4+) and the
/// transaction number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MysqlGtid {
    /// The server UUID.
    pub(crate) uuid: [u8; 16],
    /// The tag, lower case; `None` for untagged GTIDs.
    pub(crate) tag: Option<String>,
    /// The transaction number, from 1.
    pub(crate) gno: u64,
}

impl fmt::Display for MysqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Uuid(self.uuid))?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        write!(f, ":{}", self.gno)
    }
}

/// A server UUID in its text form, `3e11fa47-71ca-11e1-9e33-c80aa9429562`.
struct Uuid([u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (index, pair) in hex.chunks(2).enumerate() {
        uuid[index] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(uuid)
}

/// A MySQL server UUID and a tag (empty for untagged GTIDs).
type SourceTag = ([u8; 16], String);

/// A range of MySQL transaction numbers.
type Interval = (u64, u64);

/// Where replication stands in GTID terms: a MariaDB GTID position (the last GTID of each
/// replication domain, as in `@@gtid_binlog_pos` and `@slave_connect_state`; text `0-1-57,1-2-9`)
/// or a MySQL GTID set (every GTID executed, as in `@@gtid_executed`; text
/// `uuid:1-57:60,uuid2:tag:1-9`). Empty when no GTID was seen yet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct GtidState {
    /// MariaDB: at most one per domain, sorted by domain.
    last: Vec<MariaGtid>,
    /// MySQL: per (uuid, tag), sorted disjoint inclusive intervals, merged when adjacent.
    executed: std::collections::BTreeMap<SourceTag, Vec<Interval>>,
}

impl GtidState {
    /// Records that `gtid`'s transaction is done: it becomes its domain's last GTID.
    pub(crate) fn apply(&mut self, gtid: MariaGtid) {
        match self.last.binary_search_by_key(&gtid.domain, |g| g.domain) {
            Ok(index) => self.last[index] = gtid,
            Err(index) => self.last.insert(index, gtid),
        }
    }

    /// Records that a MySQL transaction is done: its GTID joins the set.
    pub(crate) fn apply_mysql(&mut self, gtid: &MysqlGtid) {
        self.add_interval(gtid.uuid, gtid.tag.clone(), gtid.gno, gtid.gno);
    }

    /// Adds the MySQL GTIDs `uuid[:tag]:first-last` (inclusive) to the set.
    pub(crate) fn add_interval(
        &mut self,
        uuid: [u8; 16],
        tag: Option<String>,
        first: u64,
        last: u64,
    ) {
        if first == 0 || last < first {
            return;
        }
        let intervals = self
            .executed
            .entry((uuid, tag.unwrap_or_default()))
            .or_default();
        intervals.push((first, last));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(start, end) in intervals.iter() {
            match merged.last_mut() {
                Some(previous) if start <= previous.1.saturating_add(1) => {
                    previous.1 = previous.1.max(end);
                }
                _ => merged.push((start, end)),
            }
        }
        *intervals = merged;
    }

    /// No GTID recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.last.is_empty() && self.executed.is_empty()
    }

    /// A MySQL GTID set (rather than a MariaDB position).
    pub(crate) fn is_mysql(&self) -> bool {
        !self.executed.is_empty()
    }

    /// The MySQL GTIDs of `other` that this set lacks, as a set (empty when it has them all).
    pub(crate) fn missing_from(&self, other: &GtidState) -> GtidState {
        let mut missing = GtidState::default();
        for ((uuid, tag), intervals) in &other.executed {
            let ours = self
                .executed
                .get(&(*uuid, tag.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            for &(start, end) in intervals {
                // Walk the parts of [start, end] that no interval of ours covers.
                let mut next = start;
                for &(a, b) in ours {
                    if b < next || a > end {
                        continue;
                    }
                    if a > next {
                        missing.add_interval(
                            *uuid,
                            Some(tag.clone()).filter(|t| !t.is_empty()),
                            next,
                            a - 1,
                        );
                    }
                    next = b.saturating_add(1);
                    if next > end {
                        break;
                    }
                }
                if next <= end {
                    missing.add_interval(
                        *uuid,
                        Some(tag.clone()).filter(|t| !t.is_empty()),
                        next,
                        end,
                    );
                }
            }
        }
        missing
    }

    /// The MySQL set as (uuid, tag, half-open intervals `[start, end)`), for a
    /// COM_BINLOG_DUMP_GTID request.
    pub(crate) fn mysql_sids(&self) -> Vec<([u8; 16], Option<&str>, Vec<Interval>)> {
        self.executed
            .iter()
            .map(|((uuid, tag), intervals)| {
                (
                    *uuid,
                    Some(tag.as_str()).filter(|t| !t.is_empty()),
                    intervals.iter().map(|&(a, b)| (a, b + 1)).collect(),
                )
            })
            .collect()
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
        // MySQL's form: one entry per UUID, its untagged intervals first, then each tag with
        // its intervals (the map's order puts the empty tag first).
        let mut current: Option<[u8; 16]> = None;
        for ((uuid, tag), intervals) in &self.executed {
            if current != Some(*uuid) {
                if current.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{}", Uuid(*uuid))?;
                current = Some(*uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for (a, b) in intervals {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for GtidState {
    type Err = ParsePositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut state = Self::default();
        let invalid = || ParsePositionError::InvalidGtid(text.to_owned());
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.contains(':') {
                // MySQL: uuid:interval[:interval...][:tag:interval...]
                let mut fields = part.split(':').map(str::trim);
                let uuid = fields.next().and_then(parse_uuid).ok_or_else(invalid)?;
                let mut tag: Option<String> = None;
                let mut intervals = 0;
                for field in fields {
                    if field.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                        if field.len() > 32
                            || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            return Err(invalid());
                        }
                        tag = Some(field.to_ascii_lowercase());
                        continue;
                    }
                    let (first, last) = match field.split_once('-') {
                        Some((a, b)) => (
                            a.parse().map_err(|_| invalid())?,
                            b.parse().map_err(|_| invalid())?,
                        ),
                        None => {
                            let n = field.parse().map_err(|_| invalid())?;
                            (n, n)
                        }
                    };
                    if first == 0 || last < first {
                        return Err(invalid());
                    }
                    state.add_interval(uuid, tag.clone(), first, last);
                    intervals += 1;
                }
                if intervals == 0 {
                    return Err(invalid());
                }
            } else {
                let gtid: MariaGtid = part.parse()?;
                if state.last.iter().any(|g| g.domain == gtid.domain) {
                    return Err(ParsePositionError::InvalidGtid(format!(
                        "{text} (domain {} twice)",
                        gtid.domain
                    )));
                }
                state.apply(gtid);
            }
        }
        if !state.last.is_empty() && !state.executed.is_empty() {
            return Err(invalid());
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
        for bad in ["0-1", "a-b-c", "0-1-2-3", "0-1-5,0-2-6"] {
            assert!(bad.parse::<GtidState>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn mysql_gtid_sets_merge_print_and_compare_like_mysql() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut set: GtidState = format!("{uuid}:1-5:7, 4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
            .parse()
            .unwrap();
        assert!(set.is_mysql());
        assert_eq!(
            set.to_string(),
            format!("{uuid}:1-5:7,4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
        );
        let gtid = |gno, tag: Option<&str>| MysqlGtid {
            uuid: parse_uuid(uuid).unwrap(),
            tag: tag.map(str::to_owned),
            gno,
        };
        set.apply_mysql(&gtid(6, None));
        set.apply_mysql(&gtid(2, Some("batch")));
        assert_eq!(
            set.to_string(),
            format!("{uuid}:1-7:batch:2,4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
        );
        assert_eq!(
            gtid(9, Some("batch")).to_string(),
            format!("{uuid}:batch:9")
        );
        let back: GtidState = set.to_string().parse().unwrap();
        assert_eq!(back, set);

        // What a purged set has that the checkpoint lacks.
        let purged: GtidState = format!("{uuid}:1-9").parse().unwrap();
        assert_eq!(set.missing_from(&purged).to_string(), format!("{uuid}:8-9"));
        let purged: GtidState = format!("{uuid}:1-3").parse().unwrap();
        assert!(set.missing_from(&purged).is_empty());
        assert!(set.missing_from(&GtidState::default()).is_empty());

        assert_eq!(
            set.mysql_sids()[0],
            (parse_uuid(uuid).unwrap(), None, vec![(1, 8)])
        );
        for bad in [
            uuid.to_string(),
            format!("{uuid}:0"),
            format!("{uuid}:5-3"),
            format!("{uuid}:1-3,0-1-2"),
            "3e11fa47:1".to_owned(),
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

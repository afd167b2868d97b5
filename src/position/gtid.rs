//! GTIDs: one MariaDB GTID, one MySQL GTID (with its tag), and the GTID state a checkpoint
//! carries (MariaDB's last GTID per domain, or a MySQL GTID set), with the set arithmetic that
//! MySQL's resume by GTID needs.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ParsePositionError;

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

pub(super) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
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

    /// MariaDB: the GTIDs of `start` (the GTID position a binlog file starts at) that this
    /// position has not reached, so that transactions between the two are not in that file or
    /// after it. Empty when this position is at or past `start` in every domain.
    pub(crate) fn mariadb_behind(&self, start: &GtidState) -> Vec<MariaGtid> {
        start
            .last
            .iter()
            .filter(
                |theirs| match self.last.binary_search_by_key(&theirs.domain, |g| g.domain) {
                    Ok(index) => self.last[index].sequence < theirs.sequence,
                    Err(_) => theirs.sequence > 0,
                },
            )
            .cloned()
            .collect()
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

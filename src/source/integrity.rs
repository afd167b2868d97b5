//! Checks an event must pass before the reader decodes it: its CRC32 checksum, and the counts
//! inside it that the decoder sizes buffers by.
//!
//! # Panic and allocation policy
//!
//! What the server sends or a file holds is input, not an invariant: decoding it returns
//! errors. The decoder (`mysql_common`) trusts the counts in an event body and reserves memory
//! for them before reading what they count, so a corrupt count asks for terabytes and aborts the
//! process. The bodies whose counts are read that way are checked here first against the
//! event's own length; the file reader (`super::file`) checks every event's length against
//! the file before anything is read.

use mysql_common::{
    binlog::{
        consts::{BinlogChecksumAlg, EventType},
        events::Event,
    },
    io::ParseBuf,
    misc::read_varlen_uint,
};

/// Why an event is not decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IntegrityError {
    /// The stored CRC32 does not match the event's bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the binlog is corrupt")]
    Checksum {
        /// The checksum the event carries.
        stored: u32,
        /// The checksum of its bytes.
        computed: u32,
    },
    /// A count inside the body is larger than the body could hold.
    #[error("the event is corrupt: {0}")]
    Corrupt(&'static str),
}

/// Verifies the event's CRC32 checksum, when its format description says it carries one.
/// Events inside a compressed transaction carry none (the caller skips them).
pub(crate) fn verify_checksum(event: &Event) -> Result<(), IntegrityError> {
    if event.footer().get_checksum_alg() != Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) {
        return Ok(());
    }
    let Some(stored) = event.checksum() else {
        return Ok(());
    };
    let stored = u32::from_le_bytes(stored);
    let computed = event.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
    if stored == computed {
        Ok(())
    } else {
        Err(IntegrityError::Checksum { stored, computed })
    }
}

/// Checks the counts the decoder allocates by, for the event types that have them.
pub(crate) fn check_counts(event: &Event) -> Result<(), IntegrityError> {
    if event.header().event_type_raw() == EventType::PREVIOUS_GTIDS_EVENT as u8 {
        check_previous_gtids(event.data())?;
    }
    Ok(())
}

/// PREVIOUS_GTIDS: a header with the number of SIDs, then per SID a UUID, (tagged format) a
/// tag, the number of intervals and 16 bytes per interval.
fn check_previous_gtids(body: &[u8]) -> Result<(), IntegrityError> {
    const CORRUPT: IntegrityError =
        IntegrityError::Corrupt("PREVIOUS_GTIDS counts more GTID ranges than the event holds");
    let Some(header) = body.get(..8) else {
        return Err(CORRUPT);
    };
    let header = u64::from_le_bytes(header.try_into().expect("8 bytes"));
    let tagged = (header >> 56) != 0;
    let n_sids = if tagged {
        (header >> 8) & ((1 << 48) - 1)
    } else {
        header & ((1 << 56) - 1)
    };
    let mut rest = &body[8..];
    // Each SID takes at least 24 bytes (UUID and interval count).
    if n_sids > (rest.len() / 24) as u64 {
        return Err(CORRUPT);
    }
    for _ in 0..n_sids {
        rest = rest.get(16..).ok_or(CORRUPT)?;
        if tagged {
            let mut buf = ParseBuf(rest);
            let tag_len = read_varlen_uint(&mut buf).map_err(|_| CORRUPT)?;
            rest = usize::try_from(tag_len)
                .ok()
                .and_then(|n| buf.0.get(n..))
                .ok_or(CORRUPT)?;
        }
        let count = rest.get(..8).ok_or(CORRUPT)?;
        let n_intervals = u64::from_le_bytes(count.try_into().expect("8 bytes"));
        rest = &rest[8..];
        let bytes = usize::try_from(n_intervals)
            .ok()
            .and_then(|n| n.checked_mul(16))
            .ok_or(CORRUPT)?;
        rest = rest.get(bytes..).ok_or(CORRUPT)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_gtids_counts_must_fit_the_body() {
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend([7u8; 16]);
        body.extend(1u64.to_le_bytes());
        body.extend(1u64.to_le_bytes());
        body.extend(2u64.to_le_bytes());
        assert_eq!(check_previous_gtids(&body), Ok(()));
        let mut huge = body.clone();
        huge[..8].copy_from_slice(&0x00ff_ffff_ffff_ffffu64.to_le_bytes());
        assert!(check_previous_gtids(&huge).is_err());
        let mut intervals = body.clone();
        intervals[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check_previous_gtids(&intervals).is_err());
        assert!(check_previous_gtids(&body[..30]).is_err());
    }
}

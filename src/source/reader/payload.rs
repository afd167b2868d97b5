//! Compressed transactions (MySQL 8.0.20+ `binlog_transaction_compression=ON`): one
//! TRANSACTION_PAYLOAD event holds a whole transaction's events, zstd-compressed. The live
//! stream and `decode` hand the payload event here; its events are read one frame at a time
//! from a streaming decompressor and each goes through the same code as an uncompressed event.
//!
//! Invariants:
//! - Memory: the compressed payload (one event, as the server sent it) plus one inner event
//!   at a time; never the uncompressed transaction. The transaction's lookahead cap applies
//!   to the events read from it as to any other.
//! - Every event inside takes the payload event's position (the file has no other place for
//!   them), and rows are numbered across the whole payload, so `position` + `row` stay unique
//!   and are the same each time the payload is read again (after a reconnect or a restart).
//! - A payload that does not decompress, or whose events are cut off or malformed, is an
//!   error naming the payload's position: never a transaction read in part without a word.

use mysql_common::binlog::events::{Event, TransactionPayloadEvent};

use super::{integrity, Reader};
use crate::{
    position::BinlogPosition,
    source::{file, SourceError},
};

/// While reading inside a TRANSACTION_PAYLOAD event.
pub(super) struct Payload {
    /// Where the payload event starts: every event inside has this position.
    pub(super) start: BinlogPosition,
    /// Where it ends.
    pub(super) end: BinlogPosition,
    /// Rows already numbered inside it.
    pub(super) rows: u32,
}

impl Reader {
    /// Reads the events of a compressed transaction, streaming the zstd payload.
    pub(super) async fn handle_payload(&mut self, event: &Event) -> Result<(), SourceError> {
        let (start, end) = self.span(event);
        // The payload event's checksum covers the compressed transaction.
        integrity::verify_checksum(event).map_err(|source| SourceError::Integrity {
            position: start.clone(),
            source,
        })?;
        let failed = |what: &str, message: String| SourceError::UnsupportedEvent {
            event: "TRANSACTION_PAYLOAD".into(),
            position: start.clone(),
            reason: format!("the compressed transaction {what}: {message}"),
        };
        // `mysql_common` panics on a compression type it does not know: check first.
        check_header(event.data()).map_err(|e| failed("cannot be read", e))?;
        let payload: TransactionPayloadEvent<'_> = event
            .read_event()
            .map_err(|e| failed("cannot be read", e.to_string()))?;
        let mut input = payload
            .decompressed()
            .map_err(|e| failed("cannot be read", e.to_string()))?;
        // The events inside carry no checksum of their own (WL#3549).
        let fde = {
            let mut footer = event.fde().footer();
            footer.set_checksum_enabled(false);
            event.fde().clone().with_footer(footer)
        };
        self.payload = Some(Payload {
            start: start.clone(),
            end,
            rows: 0,
        });
        // Frame by frame, so a corrupt payload is an error rather than a panic in the decoder.
        let result = async {
            let (mut read, mut bytes) = (0usize, 0u64);
            while let Some(frame) = file::read_frame(&mut input, file::MAX_EVENT_BYTES)
                .map_err(|e| failed("does not decompress", e))?
            {
                read += 1;
                bytes += frame.len() as u64;
                let inner = file::decode_inner(&fde, &frame)
                    .map_err(|e| failed("is corrupt", format!("its event {read}: {e}")))?;
                self.handle_one(&inner).await?;
            }
            // Rows still being encoded take their numbers inside this payload.
            self.drain_rows().await?;
            if read == 0 {
                return Err(failed("is corrupt", "it holds no event".into()));
            }
            // A zstd stream cut off at an event's end would otherwise pass for a whole one.
            let declared = payload.uncompressed_size();
            if declared != 0 && declared != bytes {
                return Err(failed(
                    "is corrupt",
                    format!("it holds {bytes} bytes of events, its header says {declared}"),
                ));
            }
            Ok(())
        }
        .await;
        self.payload = None;
        result
    }
}

/// Walks the payload event's header fields (type, length, value; a 0 type ends them) and
/// checks the compression type: zstd (0) or none (255).
fn check_header(data: &[u8]) -> Result<(), String> {
    let mut rest = data;
    loop {
        let field = lenenc(&mut rest).ok_or("its header is cut off")?;
        if field == 0 {
            return Ok(());
        }
        let length = lenenc(&mut rest).ok_or("its header is cut off")?;
        let length = usize::try_from(length)
            .ok()
            .filter(|l| *l <= rest.len())
            .ok_or("a header field is longer than the event")?;
        let (mut value, after) = rest.split_at(length);
        rest = after;
        if field == COMPRESSION_TYPE {
            match lenenc(&mut value) {
                Some(ZSTD | NONE) => {}
                Some(other) => return Err(format!("unknown compression type {other}")),
                None => return Err("its compression type is cut off".into()),
            }
        }
    }
}

/// The header field that names the compression, and its two values.
const COMPRESSION_TYPE: u64 = 2;
const ZSTD: u64 = 0;
const NONE: u64 = 255;

/// A length-encoded integer from the front of `bytes`, which it moves past.
fn lenenc(bytes: &mut &[u8]) -> Option<u64> {
    let (&first, rest) = bytes.split_first()?;
    let width = match first {
        0..=0xfa => {
            *bytes = rest;
            return Some(u64::from(first));
        }
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let value = rest.get(..width)?;
    let mut raw = [0u8; 8];
    raw[..width].copy_from_slice(value);
    *bytes = &rest[width..];
    Some(u64::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_with_an_unknown_compression_or_cut_off_is_refused_not_a_panic() {
        // size 5, compression zstd, uncompressed 9, end.
        let good = [1, 1, 5, 2, 1, 0, 3, 1, 9, 0, 1, 2, 3, 4, 5];
        assert_eq!(check_header(&good), Ok(()));
        let none = [1, 1, 5, 2, 1, 0xfb, 0];
        assert!(
            check_header(&none).is_err(),
            "0xfb is not a length-encoded integer"
        );
        let lz4 = [1, 1, 5, 2, 1, 1, 0];
        assert_eq!(check_header(&lz4), Err("unknown compression type 1".into()));
        let no_end = [1, 1, 5, 2, 1, 0];
        assert!(check_header(&no_end).is_err());
        let too_long = [2, 9, 0];
        assert!(check_header(&too_long).is_err());
        let wide = [2, 3, 0xfc, 0xff, 0x00, 0];
        assert_eq!(check_header(&wide), Ok(()));
    }
}

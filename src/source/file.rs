//! Binlog files on disk (`binlog-kinesis decode`), and the events inside a compressed
//! transaction, read frame by frame.
//!
//! `mysql_common` reads an event by allocating what its header's length says and panicking
//! when fewer bytes follow. Here each event's frame is read first: a header whose length is
//! impossible (shorter than a header, longer than the bytes left in the file, longer than
//! [`MAX_EVENT_BYTES`]) is an error naming the offset, and the body is read as it arrives
//! (memory grows with the bytes actually there, never with what a corrupt length claims).
//! Only a whole frame is handed to the decoder.

use std::io::{BufReader, Read};

use mysql_common::binlog::{
    consts::{BinlogChecksumAlg, BinlogVersion, EventType},
    events::{Event, FormatDescriptionEvent},
    EventStreamReader,
};

/// The largest event read from a file: the largest packet a server sends (1 GiB).
pub(crate) const MAX_EVENT_BYTES: u64 = 1 << 30;

/// Every binlog file starts with these four bytes.
const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// An event header's length, and where its `event_size` field lies.
const HEADER_LEN: usize = 19;
const SIZE_FIELD: std::ops::Range<usize> = 9..13;

/// One event's bytes, header included, from `read`: `Ok(None)` at a clean end (no byte left),
/// an error naming what is wrong otherwise. `limit` is the most bytes the event may have.
pub(crate) fn read_frame(read: &mut impl Read, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match read.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(format!("cannot read the event header: {error}")),
        }
    }
    match got {
        0 => return Ok(None),
        HEADER_LEN => {}
        _ => {
            return Err(format!(
            "the event header is cut off after {got} of {HEADER_LEN} bytes: the file is truncated"
        ))
        }
    }
    let size = u64::from(u32::from_le_bytes(
        header[SIZE_FIELD].try_into().expect("4 bytes"),
    ));
    if size < HEADER_LEN as u64 || size > limit {
        return Err(format!(
            "the event header gives a length of {size} bytes, impossible here (at least {HEADER_LEN}, at most {limit}): the file is corrupt or truncated"
        ));
    }
    let mut frame = header.to_vec();
    read.take(size - HEADER_LEN as u64)
        .read_to_end(&mut frame)
        .map_err(|error| format!("cannot read the event: {error}"))?;
    if (frame.len() as u64) < size {
        return Err(format!(
            "the event is cut off after {} of {size} bytes: the file is truncated",
            frame.len()
        ));
    }
    Ok(Some(frame))
}

/// Decodes one frame with `stream` (which tracks the format description and checksums),
/// after checking that the frame is long enough for what the decoder cuts off it. The reader
/// checks the checksum and the body's counts ([`super::integrity`]) before it decodes the body.
pub(crate) fn decode_frame(
    stream: &mut EventStreamReader,
    frame: &[u8],
    crc32: bool,
) -> Result<Event, String> {
    // A checksummed event has room for its checksum; a format description for its own.
    let is_fde = frame.get(4) == Some(&(EventType::FORMAT_DESCRIPTION_EVENT as u8));
    let minimum = if is_fde {
        HEADER_LEN + 57
    } else if crc32 {
        HEADER_LEN + 4
    } else {
        HEADER_LEN
    };
    if frame.len() < minimum {
        return Err(format!(
            "the event is {} bytes, shorter than its type allows ({minimum}): the file is corrupt",
            frame.len()
        ));
    }
    let event = stream
        .read(frame)
        .map_err(|error| format!("cannot read the event: {error}"))?
        .ok_or_else(|| "the event is empty".to_owned())?;
    Ok(event)
}

/// Decodes one event read from inside a compressed transaction, with `fde`, the payload
/// event's format description with checksums off (the events inside carry none). The frame is
/// whole ([`read_frame`]); a format description or another payload inside is corrupt input.
pub(crate) fn decode_inner(
    fde: &FormatDescriptionEvent<'_>,
    frame: &[u8],
) -> Result<Event, String> {
    let event_type = frame.get(4).copied().unwrap_or_default();
    if event_type == EventType::FORMAT_DESCRIPTION_EVENT as u8
        || event_type == EventType::TRANSACTION_PAYLOAD_EVENT as u8
    {
        return Err(format!(
            "an event of type {event_type} cannot be inside a compressed transaction"
        ));
    }
    if frame.len() < HEADER_LEN {
        return Err(format!(
            "the event is {} bytes, shorter than its header",
            frame.len()
        ));
    }
    Event::read(fde, frame).map_err(|error| format!("cannot read the event: {error}"))
}

/// A binlog file's events, in order, each with its offset.
pub(crate) struct EventFile<R> {
    read: BufReader<R>,
    /// Bytes in the file.
    size: u64,
    /// Where the next event starts.
    offset: u64,
    stream: EventStreamReader,
    /// The last format description says events carry a CRC32 checksum.
    crc32: bool,
}

impl<R: Read> EventFile<R> {
    /// Checks the file's magic number; `size` is the file's length.
    pub(crate) fn new(read: R, size: u64) -> Result<Self, String> {
        let mut read = BufReader::new(read);
        let mut magic = [0u8; 4];
        read.read_exact(&mut magic)
            .ok()
            .filter(|_| magic == MAGIC)
            .ok_or_else(|| "not a binlog file (no binlog magic number)".to_owned())?;
        Ok(Self {
            read,
            size,
            offset: MAGIC.len() as u64,
            stream: EventStreamReader::new(BinlogVersion::Version4),
            crc32: false,
        })
    }

    /// The next event and the offset it starts at; `None` after the last one. An error says
    /// what is wrong, with the offset.
    pub(crate) fn next_event(&mut self) -> Result<Option<(u64, Event)>, String> {
        let offset = self.offset;
        let at = |message: String| format!("offset {offset}: {message}");
        let limit = MAX_EVENT_BYTES.min(self.size.saturating_sub(offset));
        let Some(frame) = read_frame(&mut self.read, limit).map_err(at)? else {
            return Ok(None);
        };
        self.offset += frame.len() as u64;
        let event = decode_frame(&mut self.stream, &frame, self.crc32).map_err(at)?;
        if event.header().event_type_raw() == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            self.crc32 = event.footer().get_checksum_alg()
                == Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32));
        }
        Ok(Some((offset, event)))
    }
}

//! Fast paths for FLOAT, DOUBLE, DECIMAL and DATETIME: the value written straight from the event bytes,
//! exactly as the general path (`mysql_common`'s parser, then [`super::to_json`]) writes it;
//! the tests hold them to that byte for byte.

use mysql_common::io::ParseBuf;

use super::ValueError;

/// A DOUBLE as a JSON number, in its shortest form.
pub(super) fn write_double(out: &mut Vec<u8>, buf: &mut ParseBuf<'_>) -> Result<(), ValueError> {
    let bytes: [u8; 8] = buf
        .parse::<&[u8]>(8)
        .map_err(|_| ValueError::Truncated)?
        .try_into()
        .expect("8 bytes");
    write_number(out, f64::from_le_bytes(bytes))
}

/// A FLOAT as a JSON number: the f32's shortest decimal form, so 3.14 stays 3.14.
pub(super) fn write_float(out: &mut Vec<u8>, buf: &mut ParseBuf<'_>) -> Result<(), ValueError> {
    let bytes: [u8; 4] = buf
        .parse::<&[u8]>(4)
        .map_err(|_| ValueError::Truncated)?
        .try_into()
        .expect("4 bytes");
    let value = f32::from_le_bytes(bytes);
    write_number(
        out,
        value.to_string().parse::<f64>().unwrap_or(f64::from(value)),
    )
}

/// A DATETIME(fsp) (DATETIME2 in the binlog, `frac_bytes` of fraction after 5 bytes of
/// date and time), read with `mysql_common`'s arithmetic (`my_datetime_packed_from_binary`,
/// `datetime_from_packed`; wrapping where a release build of it wraps, so corrupt bytes
/// give its result rather than a panic) and written by [`super::value::write_datetime`].
pub(super) fn write_datetime2(
    out: &mut Vec<u8>,
    buf: &mut ParseBuf<'_>,
    fsp: u8,
    frac_bytes: u8,
) -> Result<(), ValueError> {
    let bytes: &[u8] = buf
        .parse(5 + usize::from(frac_bytes))
        .map_err(|_| ValueError::Truncated)?;
    let mut int = [0u8; 8];
    int[3..].copy_from_slice(&bytes[..5]);
    let intpart = u64::from_be_bytes(int) as i64 - 0x80_0000_0000;
    let frac = match frac_bytes {
        1 => i64::from(bytes[5] as i8) * 10_000,
        2 => i64::from(i16::from_be_bytes([bytes[5], bytes[6]])) * 100,
        3 => i64::from(i32::from_be_bytes([bytes[5], bytes[6], bytes[7], 0]) >> 8),
        _ => 0,
    };
    let mut packed = (((intpart as u64) << 24) as i64).wrapping_add(frac);
    if packed < 0 {
        packed = packed.wrapping_neg();
    }
    let usec = packed % (1 << 24);
    let ymdhms = packed >> 24;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms % (1 << 17);
    super::value::write_datetime(
        out,
        (
            (ym / 13) as u32 as u16,
            (ym % 13) as u8,
            (ymd % (1 << 5)) as u8,
            (hms >> 12) as u32 as u8,
            ((hms >> 6) % (1 << 6)) as u8,
            (hms % (1 << 6)) as u8,
            usec as u32,
        ),
        fsp,
    );
    Ok(())
}

fn write_number(out: &mut Vec<u8>, value: f64) -> Result<(), ValueError> {
    if !value.is_finite() {
        return Err(ValueError::NotFinite {
            value: value.to_string(),
        });
    }
    serde_json::to_writer(out, &value).expect("writing to a Vec does not fail");
    Ok(())
}

/// Decimal digits per 4-byte group of MySQL's binary DECIMAL, and the bytes a group of fewer
/// digits takes.
const DIGITS_PER_GROUP: usize = 9;
const BYTES_FOR_DIGITS: [usize; DIGITS_PER_GROUP + 1] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const POWERS_OF_10: [i64; DIGITS_PER_GROUP + 1] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// The bytes a DECIMAL(precision, scale) takes.
pub(super) fn decimal_len(precision: usize, scale: usize) -> usize {
    let integer = precision - scale;
    BYTES_FOR_DIGITS[integer % DIGITS_PER_GROUP]
        + 4 * (integer / DIGITS_PER_GROUP)
        + 4 * (scale / DIGITS_PER_GROUP)
        + BYTES_FOR_DIGITS[scale % DIGITS_PER_GROUP]
}

/// A DECIMAL(precision, scale) as a JSON string: no leading zeros, exactly `scale` fraction
/// digits, no sign on zero. `Ok(false)` when a digit group is out of range (corrupt bytes):
/// nothing is read or written, and the general path decides.
pub(super) fn write_decimal(
    out: &mut Vec<u8>,
    buf: &mut ParseBuf<'_>,
    precision: usize,
    scale: usize,
) -> Result<bool, ValueError> {
    let len = decimal_len(precision, scale);
    let Some(bytes) = buf.0.get(..len) else {
        return Err(ValueError::Truncated);
    };
    let mut bytes = bytes.to_vec();
    bytes[0] ^= 0x80;
    let negative = bytes[0] & 0x80 != 0;
    let mask: i64 = if negative { -1 } else { 0 };
    // Digit groups, most significant first: (value, digits).
    let integer = precision - scale;
    let widths = std::iter::once(integer % DIGITS_PER_GROUP)
        .chain(std::iter::repeat_n(
            DIGITS_PER_GROUP,
            integer / DIGITS_PER_GROUP,
        ))
        .chain(std::iter::repeat_n(
            DIGITS_PER_GROUP,
            scale / DIGITS_PER_GROUP,
        ))
        .chain(std::iter::once(scale % DIGITS_PER_GROUP))
        .filter(|&digits| digits > 0);
    let integer_groups = usize::from(integer % DIGITS_PER_GROUP > 0) + integer / DIGITS_PER_GROUP;
    let start = out.len();
    out.push(b'"');
    if negative {
        out.push(b'-');
    }
    let digits_start = out.len();
    let mut at = 0;
    let mut fraction_start = None;
    let mut digits = itoa::Buffer::new();
    for (group, width) in widths.enumerate() {
        let size = BYTES_FOR_DIGITS[width];
        let raw = &bytes[at..at + size];
        at += size;
        // Big-endian, sign-extended, as the server stores it.
        let mut value = i64::from(raw[0] as i8);
        for &byte in &raw[1..] {
            value = (value << 8) | i64::from(byte);
        }
        let value = value ^ mask;
        if !(0..POWERS_OF_10[width]).contains(&value) {
            out.truncate(start);
            return Ok(false);
        }
        if group == integer_groups {
            fraction_start = Some(out.len());
            out.push(b'.');
        }
        let text = digits.format(value);
        out.extend(std::iter::repeat_n(b'0', width - text.len()));
        out.extend_from_slice(text.as_bytes());
    }
    // Leading zeros of the integer part go; at least one digit stays.
    let integer_end = fraction_start.unwrap_or(out.len());
    let zeros = out[digits_start..integer_end]
        .iter()
        .take_while(|&&b| b == b'0')
        .count()
        .min((integer_end - digits_start).saturating_sub(1));
    out.drain(digits_start..digits_start + zeros);
    if integer_end == digits_start {
        out.insert(digits_start, b'0');
    }
    if negative && out[digits_start..].iter().all(|&b| b == b'0' || b == b'.') {
        out.remove(digits_start - 1);
    }
    out.push(b'"');
    buf.skip(len);
    Ok(true)
}

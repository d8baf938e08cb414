//! Fixed-width base62 (`0-9A-Za-z`), big-endian: the encoding of a token's id, secret and
//! checksum. Decoding is on the validation hot path: one table load per digit, ten digits per
//! 64-bit limb step, and values that overflow the byte width are refused (each value has exactly
//! one spelling).

use zeroize::Zeroizing;

use super::SECRET_BYTES;

/// The digits, in value order.
pub(super) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes `bytes` (big-endian) into exactly `out.len()` base62 digits, left-padded with `0`.
///
/// Callers choose widths that hold every value of the byte width, so nothing is truncated.
pub(super) fn encode_base62(bytes: &[u8], out: &mut [u8]) {
    debug_assert!(bytes.len() <= SECRET_BYTES);
    let mut buffer = Zeroizing::new([0u8; SECRET_BYTES]);
    let number = &mut buffer[..bytes.len().min(SECRET_BYTES)];
    number.copy_from_slice(&bytes[..number.len()]);
    for slot in out.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
}

/// `DIGIT_VALUE[c]` is the base62 value of the ASCII byte `c`, or [`NOT_A_DIGIT`]. One table
/// load per character (parsing is on the validation hot path).
pub(super) static DIGIT_VALUE: [u8; 256] = {
    let mut table = [NOT_A_DIGIT; 256];
    let mut value = 0;
    while value < ALPHABET.len() {
        table[ALPHABET[value] as usize] = value as u8;
        value += 1;
    }
    table
};

/// The table entry of a byte that is not a base62 digit. Every digit is below 62, so a digit
/// never has the high bit set and this one does: OR-ing entries tells whether any was invalid.
const NOT_A_DIGIT: u8 = 0xFF;

/// `62^n` for `n` in `0..=10`.
const POW62: [u64; 11] = {
    let mut table = [1u64; 11];
    let mut n = 1;
    while n < table.len() {
        table[n] = table[n - 1] * 62;
        n += 1;
    }
    table
};

pub(super) fn digit_value(c: u8) -> Option<u8> {
    let value = DIGIT_VALUE[usize::from(c)];
    (value != NOT_A_DIGIT).then_some(value)
}

/// Whether every byte of `chars` is a base62 digit (branch-free over the slice).
pub(super) fn all_digits(chars: &[u8]) -> bool {
    chars
        .iter()
        .fold(0u8, |seen, &c| seen | DIGIT_VALUE[usize::from(c)])
        & 0x80
        == 0
}

/// Decodes base62 digits into a big-endian number of exactly `out.len()` bytes (a multiple of 8,
/// at most 32); `None` if a digit is invalid or the value does not fit.
///
/// Works on 64-bit limbs, ten digits at a time (62^10 < 2^64), with one table load per digit:
/// parsing is on the validation hot path.
pub(super) fn decode_base62(chars: &[u8], out: &mut [u8]) -> Option<()> {
    const DIGITS_PER_STEP: usize = 10;
    if !out.len().is_multiple_of(8) || out.len() > 32 {
        return None;
    }
    let mut buffer = Zeroizing::new([0u64; 4]);
    // Little-endian limbs.
    let limbs = buffer.get_mut(..out.len() / 8)?;
    for step in chars.chunks(DIGITS_PER_STEP) {
        let mut value: u64 = 0;
        let mut seen: u8 = 0;
        for &c in step {
            let digit = DIGIT_VALUE[usize::from(c)];
            seen |= digit;
            value = value.wrapping_mul(62).wrapping_add(u64::from(digit));
        }
        if seen & 0x80 != 0 {
            return None;
        }
        let mut carry = u128::from(value);
        let scale = u128::from(POW62[step.len()]);
        for limb in limbs.iter_mut() {
            let acc = u128::from(*limb) * scale + carry;
            *limb = acc as u64;
            carry = acc >> 64;
        }
        if carry != 0 {
            return None;
        }
    }
    for (limb, slot) in limbs.iter().zip(out.rchunks_exact_mut(8)) {
        slot.copy_from_slice(&limb.to_be_bytes());
    }
    Some(())
}

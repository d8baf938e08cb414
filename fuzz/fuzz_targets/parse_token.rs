//! `token_core::parse_token`: never panics; a parsed token re-encodes (through
//! `PlaintextToken::from_parts`) to exactly the input, so no token has two spellings; the parsed
//! id and prefix are the ones written in the string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_core::format::{BODY_CHARS, ID_CHARS, SECRET_CHARS};
use token_core::{PlaintextToken, TokenId, TokenPrefix, parse_token};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An independent base62 decoder (big-endian, fixed width): `None` when a digit is outside the
/// alphabet or the value does not fit in `N` bytes.
fn decode<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for &d in digits {
        let mut carry = u32::try_from(ALPHABET.iter().position(|&a| a == d)?).ok()?;
        for byte in out.iter_mut().rev() {
            let v = u32::from(*byte) * 62 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_token(input) else {
        return;
    };
    // The prefix is everything before the separator, and a valid prefix.
    let prefix = parsed.prefix();
    assert_eq!(input.len(), prefix.len() + 1 + BODY_CHARS);
    assert!(input.starts_with(prefix));
    assert_eq!(input.as_bytes()[prefix.len()], b'_');
    let prefix = TokenPrefix::new(prefix).expect("parse_token accepted an invalid prefix");
    // The id is the 22 characters after the separator, in its canonical spelling.
    let body = &input[prefix.as_str().len() + 1..];
    let id_text = &body[..ID_CHARS];
    assert_eq!(parsed.id().to_string(), id_text);
    assert_eq!(id_text.parse::<TokenId>().ok(), Some(parsed.id()));
    let id_bytes: [u8; 16] = decode(id_text.as_bytes()).expect("accepted id does not fit");
    assert_eq!(&id_bytes, parsed.id().as_bytes());
    // The secret decodes (independently) and the whole token re-encodes to the input.
    let secret: [u8; 32] = decode(body[ID_CHARS..ID_CHARS + SECRET_CHARS].as_bytes())
        .expect("accepted secret does not fit in 32 bytes");
    let again = PlaintextToken::from_parts(&prefix, parsed.id(), secret);
    assert_eq!(again.expose_secret(), input, "a token with two spellings");
    assert_eq!(again.id(), parsed.id());
    assert_eq!(again.prefix(), prefix.as_str());
    // The re-encoded string parses to the same parts.
    let reparsed = parse_token(again.expose_secret()).expect("re-encoded token does not parse");
    assert_eq!(reparsed.id(), parsed.id());
    assert_eq!(reparsed.prefix(), parsed.prefix());
});

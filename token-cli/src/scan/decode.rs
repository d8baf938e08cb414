//! The encodings a token hides in: URL (percent) encoding, JSON string escapes, base64.
//!
//! The escape decoders return the decoded bytes and, for each decoded byte, the offset in the
//! input it came from, so a token found in decoded text is reported where it stands in the file.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Decoded bytes and, per decoded byte, its offset in the input.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The decoded text.
    pub bytes: Vec<u8>,
    /// `origin[i]` is the input offset of `bytes[i]`'s first encoded byte.
    pub origin: Vec<usize>,
}

impl Decoded {
    fn push(&mut self, byte: u8, from: usize) {
        self.bytes.push(byte);
        self.origin.push(from);
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `text` (`%XX` to its byte, `+` to a space, as in form bodies and query
/// strings); `None` if it holds no `%XX`.
///
/// ```
/// let decoded = token_cli::scan::decode::percent(b"a%3Db+c").unwrap();
/// assert_eq!(decoded.bytes, b"a=b c");
/// assert_eq!(decoded.origin, [0, 1, 4, 5, 6]);
/// ```
pub fn percent(text: &[u8]) -> Option<Decoded> {
    let mut out = Decoded::default();
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let byte = text[i];
        if byte == b'%'
            && let (Some(high), Some(low)) = (
                text.get(i + 1).copied().and_then(hex_value),
                text.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push((high << 4) | low, i);
            changed = true;
            i += 3;
            continue;
        }
        out.push(if byte == b'+' { b' ' } else { byte }, i);
        i += 1;
    }
    changed.then_some(out)
}

/// Undoes JSON string escapes (`\n`, `\"`, `\/`, `\uXXXX`, ...) in `text`; `None` if it holds
/// none. A `\u` escape of a non-ASCII character becomes a space (a token is ASCII, and what
/// matters around it is only that the neighbour is not a letter or digit).
///
/// ```
/// let decoded = token_cli::scan::decode::json_escapes(br#"a\nb\u005fc"#).unwrap();
/// assert_eq!(decoded.bytes, b"a\nb_c");
/// assert_eq!(decoded.origin, [0, 1, 3, 4, 10]);
/// ```
pub fn json_escapes(text: &[u8]) -> Option<Decoded> {
    let mut out = Decoded::default();
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let byte = text[i];
        if byte != b'\\' {
            out.push(byte, i);
            i += 1;
            continue;
        }
        let simple = match text.get(i + 1) {
            Some(b'n') => Some(b'\n'),
            Some(b't') => Some(b'\t'),
            Some(b'r') => Some(b'\r'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0c),
            Some(b'"') => Some(b'"'),
            Some(b'\'') => Some(b'\''),
            Some(b'/') => Some(b'/'),
            Some(b'\\') => Some(b'\\'),
            _ => None,
        };
        if let Some(decoded) = simple {
            out.push(decoded, i);
            changed = true;
            i += 2;
            continue;
        }
        if text.get(i + 1) == Some(&b'u')
            && let Some(digits) = text.get(i + 2..i + 6)
            && let Some(value) = digits.iter().try_fold(0u32, |acc, &d| {
                hex_value(d).map(|v| (acc << 4) | u32::from(v))
            })
        {
            let decoded = u8::try_from(value)
                .ok()
                .filter(u8::is_ascii)
                .unwrap_or(b' ');
            out.push(decoded, i);
            changed = true;
            i += 6;
            continue;
        }
        out.push(byte, i);
        i += 1;
    }
    changed.then_some(out)
}

/// The shortest base64 run worth decoding: base64 of the shortest token (73 characters) is 100
/// characters, so shorter runs cannot hold one.
pub const BASE64_MIN_RUN: usize = 100;

fn engine(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// Decodes a run of base64 characters (standard or URL-safe alphabet, padding optional) from its
/// first character; `None` if it is not base64.
///
/// ```
/// use base64::Engine as _;
/// let text = base64::engine::general_purpose::STANDARD.encode("a line of text that is long enough to matter here, at least 75 bytes long");
/// let decoded = token_cli::scan::decode::base64_run(text.trim_end_matches('=').as_bytes()).unwrap();
/// assert!(decoded.starts_with(b"a line of text"));
/// ```
pub fn base64_run(run: &[u8]) -> Option<Vec<u8>> {
    let mut run = run;
    while let [rest @ .., b'='] = run {
        run = rest;
    }
    // Length 4k+1 cannot be base64: the last character is not part of it.
    if run.len() % 4 == 1 {
        run = &run[..run.len() - 1];
    }
    let url_safe = run.iter().any(|b| matches!(b, b'-' | b'_'));
    let standard = run.iter().any(|b| matches!(b, b'+' | b'/'));
    let decoded = match (url_safe, standard) {
        (true, true) => return None,
        (true, false) => engine(&base64::alphabet::URL_SAFE).decode(run),
        (false, _) => engine(&base64::alphabet::STANDARD).decode(run),
    };
    decoded.ok()
}

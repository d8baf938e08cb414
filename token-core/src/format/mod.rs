//! The token string format: generation, parsing and the public [`TokenId`].
//!
//! # The format, exactly
//!
//! ```text
//! <prefix>_<id><secret><checksum>
//! ```
//!
//! | part       | width | content                                                                  |
//! |------------|-------|--------------------------------------------------------------------------|
//! | `prefix`   | 1–32  | `[a-z][a-z0-9_]{0,31}`, chosen by the host application (`acme_live`)     |
//! | `_`        | 1     | separator                                                                |
//! | `id`       | 22    | 16 random bytes, base62, big-endian, left-padded with `0`                |
//! | `secret`   | 43    | 32 random bytes from the OS CSPRNG, base62, big-endian, left-padded      |
//! | `checksum` | 6     | CRC-32 (IEEE, as in zlib/PNG) of the 65 ASCII characters `id‖secret`, base62, left-padded |
//!
//! The base62 alphabet is `0-9A-Za-z` (digit value 0–61 in that order). The body after the last
//! `_` is always exactly 71 characters and contains no `_`, so the prefix is everything before the
//! last `_`. A token is therefore at most 32 + 1 + 71 = 104 bytes long.
//!
//! Each token has exactly one spelling: a 22-character id whose value does not fit in 16 bytes, or a
//! 43-character secret whose value does not fit in 32 bytes, is rejected, and the checksum must be
//! the canonical 6-character encoding.
//!
//! # Writing a secret scanner
//!
//! A candidate matches this regular expression (replace the first group by your prefix to cut
//! noise, e.g. `acme_live_[0-9A-Za-z]{71}`):
//!
//! ```text
//! \b([a-z][a-z0-9_]{0,31})_([0-9A-Za-z]{22})([0-9A-Za-z]{43})([0-9A-Za-z]{6})\b
//! ```
//!
//! The `\b` anchors want a character that is not a letter, digit or `_` (or the start or end of the
//! text) on each side, as in headers, JSON, YAML, `.env` files and shell commands;
//! `tests/scanner.rs` runs this pattern over generated tokens in such surroundings.
//!
//! Confirm a candidate offline by computing CRC-32/IEEE over groups 2 and 3 (as ASCII bytes),
//! encoding it as 6 base62 digits and comparing with group 4. Random 71-character strings pass this
//! check with probability 2⁻³², so confirmed matches are tokens. The `id` (group 2) is public: report
//! it, never the whole string, and revoke by it. The checksum is not a security control; it only lets
//! scanners and validation reject garbage cheaply.
//!
//! ```
//! use token_core::{PlaintextToken, TokenPrefix, parse_token};
//!
//! let prefix = TokenPrefix::new("acme_live")?;
//! let token = PlaintextToken::generate(&prefix)?;
//! assert_eq!(token.expose_secret().len(), "acme_live_".len() + 71);
//!
//! let parsed = parse_token(token.expose_secret())?;
//! assert_eq!(parsed.prefix(), "acme_live");
//! assert_eq!(parsed.id(), token.id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

mod base62;

use base62::{DIGIT_VALUE, all_digits, decode_base62, digit_value, encode_base62};

/// Width of the base62-encoded id.
pub const ID_CHARS: usize = 22;
/// Width of the base62-encoded secret.
pub const SECRET_CHARS: usize = 43;
/// Width of the base62-encoded checksum.
pub const CHECKSUM_CHARS: usize = 6;
/// Width of everything after the prefix separator.
pub const BODY_CHARS: usize = ID_CHARS + SECRET_CHARS + CHECKSUM_CHARS;
/// Longest allowed prefix.
pub const PREFIX_MAX_CHARS: usize = 32;
/// Longest possible token string; longer input is rejected before any other work.
pub const TOKEN_MAX_CHARS: usize = PREFIX_MAX_CHARS + 1 + BODY_CHARS;
/// Shortest possible token string (a one-letter prefix).
pub const TOKEN_MIN_CHARS: usize = 1 + 1 + BODY_CHARS;

const ID_BYTES: usize = 16;
const SECRET_BYTES: usize = 32;

/// Why a token string (or a token id, or a prefix) was rejected.
///
/// Messages describe the shape of the input, never its content, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The string is shorter than any token can be.
    #[error("token is {len} bytes; a token is at least {TOKEN_MIN_CHARS} bytes")]
    TooShort {
        /// Length of the rejected input in bytes.
        len: usize,
    },
    /// The string is longer than any token can be.
    #[error("token is {len} bytes; a token is at most {TOKEN_MAX_CHARS} bytes")]
    TooLong {
        /// Length of the rejected input in bytes.
        len: usize,
    },
    /// No `_` stands right before the 71-character body.
    #[error("token has no '_' before its final {BODY_CHARS} characters")]
    MissingSeparator,
    /// A character outside the base62 alphabet appears in the body.
    #[error(
        "token body has a character outside 0-9A-Za-z at offset {offset} from the start of the body"
    )]
    InvalidBodyCharacter {
        /// Offset within the 71-character body.
        offset: usize,
    },
    /// The checksum does not match the id and secret (a typo, truncation or not a token).
    #[error("token checksum does not match; the string was altered or is not a token")]
    BadChecksum,
    /// A fixed-width field encodes a number too large for its byte width.
    #[error("token {field} is not a canonical base62 encoding of {bytes} bytes")]
    NonCanonical {
        /// `id` or `secret`.
        field: &'static str,
        /// Byte width of the field.
        bytes: usize,
    },
    /// The prefix is not `[a-z][a-z0-9_]{0,31}`.
    #[error("invalid token prefix ({problem}); a prefix is [a-z][a-z0-9_]{{0,31}}")]
    InvalidPrefix {
        /// What was wrong with it.
        problem: &'static str,
    },
    /// A token id is not 22 base62 characters encoding 16 bytes.
    #[error("invalid token id; an id is exactly {ID_CHARS} characters of 0-9A-Za-z")]
    InvalidId,
}

/// The host-chosen prefix of every token a manager issues, such as `acme_live`.
///
/// ```
/// use token_core::TokenPrefix;
/// assert!(TokenPrefix::new("acme_live").is_ok());
/// assert!(TokenPrefix::new("Acme").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenPrefix(Box<str>);

impl TokenPrefix {
    /// Validates `prefix` against `[a-z][a-z0-9_]{0,31}`.
    pub fn new(prefix: &str) -> Result<Self, FormatError> {
        validate_prefix(prefix)?;
        Ok(Self(prefix.into()))
    }

    /// The prefix as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TokenPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_prefix(prefix: &str) -> Result<(), FormatError> {
    let bytes = prefix.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(FormatError::InvalidPrefix { problem: "empty" });
    };
    if bytes.len() > PREFIX_MAX_CHARS {
        return Err(FormatError::InvalidPrefix {
            problem: "longer than 32 characters",
        });
    }
    if !first.is_ascii_lowercase() {
        return Err(FormatError::InvalidPrefix {
            problem: "must start with a-z",
        });
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err(FormatError::InvalidPrefix {
            problem: "contains a character outside a-z, 0-9 and _",
        });
    }
    Ok(())
}

/// The public identifier of a token: 16 random bytes, shown as 22 base62 characters.
///
/// The id is the lookup key, the handle used to inspect or revoke a token without its secret, and
/// the only part of a token that logs and audit events name.
///
/// ```
/// use token_core::TokenId;
/// let id = TokenId::from_bytes([7; 16]);
/// let text = id.to_string();
/// assert_eq!(text.len(), 22);
/// assert_eq!(text.parse::<TokenId>()?, id);
/// # Ok::<(), token_core::FormatError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; ID_BYTES]);

impl TokenId {
    /// Builds an id from raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh random id from the OS CSPRNG.
    pub fn generate() -> Result<Self, RandomnessError> {
        let mut bytes = [0u8; ID_BYTES];
        fill_random(&mut bytes)?;
        Ok(Self(bytes))
    }

    fn encode_into(&self, out: &mut [u8; ID_CHARS]) {
        encode_base62(&self.0, out);
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; ID_CHARS];
        self.encode_into(&mut out);
        // The alphabet is ASCII, so this cannot fail; fall back to an error rather than panic.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

impl FromStr for TokenId {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != ID_CHARS {
            return Err(FormatError::InvalidId);
        }
        let mut out = [0u8; ID_BYTES];
        decode_base62(bytes, &mut out).ok_or(FormatError::InvalidId)?;
        Ok(Self(out))
    }
}

impl Serialize for TokenId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A [`BuildHasher`](std::hash::BuildHasher) for maps keyed by [`TokenId`]: ids are 128 random
/// bits from the OS CSPRNG, so their own bytes are a good hash and SipHash's cost (paid on every
/// validation, twice) buys nothing. Only use it for ids the library issued: an attacker who can
/// choose the keys you insert could make them collide.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenIdHasherBuilder;

impl std::hash::BuildHasher for TokenIdHasherBuilder {
    type Hasher = TokenIdHasher;
    fn build_hasher(&self) -> TokenIdHasher {
        TokenIdHasher(0)
    }
}

/// The hasher built by [`TokenIdHasherBuilder`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenIdHasher(u64);

impl std::hash::Hasher for TokenIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, _length_prefix: usize) {
        // `[u8; 16]` hashes its length first: a constant, so it carries no information.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The operating system's random number generator failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system random number generator failed: {0}")]
pub struct RandomnessError(String);

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomnessError> {
    getrandom::fill(buf).map_err(|e| RandomnessError(e.to_string()))
}

/// A complete token string, including its secret. It exists once: in the value returned by
/// `issue`, `derive` or `rotate`. Hand it to the client and drop it.
///
/// The string is zeroized when the value is dropped. `Debug` shows only the prefix and the id; there
/// is no `Display`, `Clone` or `Serialize`, so the secret is only reachable through
/// [`expose_secret`](Self::expose_secret).
///
/// ```
/// use token_core::{PlaintextToken, TokenPrefix};
/// let token = PlaintextToken::generate(&TokenPrefix::new("demo")?)?;
/// let debug = format!("{token:?}");
/// assert!(debug.contains(&token.id().to_string()));
/// assert!(!debug.contains(token.expose_secret()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PlaintextToken {
    text: Zeroizing<String>,
    id: TokenId,
    prefix_len: usize,
    /// On the heap and filled in place: the token moves (into results, futures, `IssuedToken`)
    /// and a moved inline array would leave unwiped copies of the secret behind.
    secret: Box<Zeroizing<[u8; SECRET_BYTES]>>,
}

impl PlaintextToken {
    /// Generates a new token with a random id and a random 256-bit secret.
    pub fn generate(prefix: &TokenPrefix) -> Result<Self, RandomnessError> {
        let id = TokenId::generate()?;
        let mut secret = Box::new(Zeroizing::new([0u8; SECRET_BYTES]));
        fill_random(&mut **secret)?;
        Ok(Self::assemble(prefix, id, secret))
    }

    /// Assembles a token from known parts. For importing tokens from another system and for
    /// tests (e.g. a string with a real id but a wrong secret); use [`generate`](Self::generate)
    /// to issue.
    /// The `secret` argument is a copy; it is wiped here once stored.
    pub fn from_parts(prefix: &TokenPrefix, id: TokenId, mut secret: [u8; 32]) -> Self {
        let mut slot = Box::new(Zeroizing::new([0u8; SECRET_BYTES]));
        slot.copy_from_slice(&secret);
        secret.zeroize();
        Self::assemble(prefix, id, slot)
    }

    fn assemble(
        prefix: &TokenPrefix,
        id: TokenId,
        secret: Box<Zeroizing<[u8; SECRET_BYTES]>>,
    ) -> Self {
        let mut body = Zeroizing::new([0u8; BODY_CHARS]);
        let (id_part, rest) = body.split_at_mut(ID_CHARS);
        let (secret_part, checksum_part) = rest.split_at_mut(SECRET_CHARS);
        encode_base62(id.as_bytes(), id_part);
        encode_base62(&secret[..], secret_part);
        let mut crc = crc32fast::Hasher::new();
        crc.update(id_part);
        crc.update(secret_part);
        encode_base62(&crc.finalize().to_be_bytes(), checksum_part);

        let mut text = Zeroizing::new(String::with_capacity(
            prefix.as_str().len() + 1 + BODY_CHARS,
        ));
        text.push_str(prefix.as_str());
        text.push('_');
        // Every byte of `body` comes from the ASCII alphabet.
        text.extend(body.iter().map(|b| char::from(*b)));
        Self {
            text,
            id,
            prefix_len: prefix.as_str().len(),
            secret,
        }
    }

    /// The whole token string. Give it to the client; never log or store it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// The token's public id.
    pub fn id(&self) -> TokenId {
        self.id
    }

    /// The token's prefix.
    pub fn prefix(&self) -> &str {
        self.text.get(..self.prefix_len).unwrap_or_default()
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.secret
    }
}

impl fmt::Debug for PlaintextToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaintextToken")
            .field("prefix", &self.prefix())
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A token string that passed format and checksum checks, split into its parts.
///
/// Parsing proves only that the string is well-formed; whether the token is valid is decided by the
/// store lookup and the keyed hash comparison. The secret bytes are zeroized on drop.
pub struct ParsedToken<'a> {
    prefix: &'a str,
    id: TokenId,
    secret: Zeroizing<[u8; SECRET_BYTES]>,
}

impl<'a> ParsedToken<'a> {
    /// The prefix before the last `_`.
    pub fn prefix(&self) -> &'a str {
        self.prefix
    }

    /// The public id.
    pub fn id(&self) -> TokenId {
        self.id
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.secret
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("prefix", &self.prefix)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Parses a token string: length, separator, prefix, alphabet, checksum, then canonical decoding.
///
/// Costs a few hundred nanoseconds and touches no store, so garbage is rejected before any I/O.
pub fn parse_token(input: &str) -> Result<ParsedToken<'_>, FormatError> {
    let bytes = input.as_bytes();
    if bytes.len() > TOKEN_MAX_CHARS {
        return Err(FormatError::TooLong { len: bytes.len() });
    }
    if bytes.len() < TOKEN_MIN_CHARS {
        return Err(FormatError::TooShort { len: bytes.len() });
    }
    let split = bytes.len() - BODY_CHARS;
    let (head, body) = bytes.split_at(split);
    let Some((b'_', prefix)) = head.split_last() else {
        return Err(FormatError::MissingSeparator);
    };
    if !all_digits(body) {
        let offset = body
            .iter()
            .position(|b| digit_value(*b).is_none())
            .unwrap_or(0);
        return Err(FormatError::InvalidBodyCharacter { offset });
    }
    // `head` ends with the ASCII `_`, so `prefix.len()` is a char boundary of `input`.
    let prefix = input
        .get(..prefix.len())
        .ok_or(FormatError::MissingSeparator)?;
    validate_prefix(prefix)?;
    let (payload, checksum) = body.split_at(ID_CHARS + SECRET_CHARS);
    // Six base62 digits decode to a unique value (fixed width), so equal values mean the
    // canonical spelling; the body is already known to be alphanumeric.
    let presented = checksum.iter().fold(0u64, |acc, &c| {
        acc * 62 + u64::from(DIGIT_VALUE[usize::from(c)])
    });
    if presented != u64::from(crc32fast::hash(payload)) {
        return Err(FormatError::BadChecksum);
    }
    let (id_chars, secret_chars) = payload.split_at(ID_CHARS);
    let mut id = [0u8; ID_BYTES];
    decode_base62(id_chars, &mut id).ok_or(FormatError::NonCanonical {
        field: "id",
        bytes: ID_BYTES,
    })?;
    let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
    decode_base62(secret_chars, secret.as_mut()).ok_or(FormatError::NonCanonical {
        field: "secret",
        bytes: SECRET_BYTES,
    })?;
    Ok(ParsedToken {
        prefix,
        id: TokenId(id),
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix() -> TokenPrefix {
        TokenPrefix::new("acme_live").unwrap()
    }

    #[test]
    fn generated_token_has_documented_shape() {
        let token = PlaintextToken::generate(&prefix()).unwrap();
        let text = token.expose_secret();
        assert!(text.starts_with("acme_live_"));
        assert_eq!(text.len(), "acme_live_".len() + BODY_CHARS);
        assert!(
            text["acme_live_".len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        );
        assert_eq!(&text[10..32], token.id().to_string());
    }

    #[test]
    fn checksum_is_crc32_ieee_of_id_and_secret() {
        let token = PlaintextToken::generate(&prefix()).unwrap();
        let body = &token.expose_secret()[10..];
        let crc = crc32fast::hash(&body.as_bytes()[..65]);
        // Independent decode of the 6 checksum digits.
        let value = body[65..]
            .bytes()
            .fold(0u64, |acc, c| acc * 62 + u64::from(digit_value(c).unwrap()));
        assert_eq!(value, u64::from(crc));
    }

    #[test]
    fn known_vector_encodes_zero_and_max() {
        let mut out = [0u8; ID_CHARS];
        encode_base62(&[0u8; 16], &mut out);
        assert_eq!(&out, b"0000000000000000000000");
        encode_base62(&[0xff; 16], &mut out);
        // 2^128 - 1 in base62.
        assert_eq!(&out, b"7n42DGM5Tflk9n8mt7Fhc7");
        let mut back = [0u8; 16];
        decode_base62(&out, &mut back).unwrap();
        assert_eq!(back, [0xff; 16]);
    }

    #[test]
    fn id_that_overflows_sixteen_bytes_is_rejected() {
        assert_eq!(
            "7n42DGM5Tflk9n8mt7Fhc8".parse::<TokenId>(),
            Err(FormatError::InvalidId)
        );
        assert_eq!(
            "zzzzzzzzzzzzzzzzzzzzzz".parse::<TokenId>(),
            Err(FormatError::InvalidId)
        );
    }

    #[test]
    fn non_canonical_secret_with_valid_checksum_is_rejected() {
        let id = "0000000000000000000000";
        let secret = "z".repeat(SECRET_CHARS);
        let payload = format!("{id}{secret}");
        let mut checksum = [0u8; 6];
        encode_base62(
            &crc32fast::hash(payload.as_bytes()).to_be_bytes(),
            &mut checksum,
        );
        let token = format!("demo_{payload}{}", std::str::from_utf8(&checksum).unwrap());
        assert_eq!(
            parse_token(&token).unwrap_err(),
            FormatError::NonCanonical {
                field: "secret",
                bytes: 32
            }
        );
    }

    #[test]
    fn single_character_change_fails_checksum() {
        let token = PlaintextToken::generate(&prefix()).unwrap();
        let mut bytes = token.expose_secret().as_bytes().to_vec();
        let i = 20;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let altered = String::from_utf8(bytes).unwrap();
        assert_eq!(parse_token(&altered).unwrap_err(), FormatError::BadChecksum);
    }

    #[test]
    fn structural_errors_are_specific() {
        let token = PlaintextToken::generate(&prefix()).unwrap();
        let text = token.expose_secret();
        assert_eq!(
            parse_token("abc").unwrap_err(),
            FormatError::TooShort { len: 3 }
        );
        let long = format!("{}{}", "a".repeat(40), &text[9..]);
        assert!(matches!(
            parse_token(&long),
            Err(FormatError::TooLong { .. })
        ));
        let no_sep = text.replacen("acme_live_", "acme_liveX", 1);
        assert_eq!(
            parse_token(&no_sep).unwrap_err(),
            FormatError::MissingSeparator
        );
        let upper = text.replacen("acme_live_", "Acme_live_", 1);
        assert!(matches!(
            parse_token(&upper),
            Err(FormatError::InvalidPrefix { .. })
        ));
        let bad_char = format!("{}-{}", &text[..20], &text[21..]);
        assert_eq!(
            parse_token(&bad_char).unwrap_err(),
            FormatError::InvalidBodyCharacter { offset: 10 }
        );
    }

    #[test]
    fn errors_never_echo_input() {
        let token = PlaintextToken::generate(&prefix()).unwrap();
        let mut text = token.expose_secret().to_string();
        text.pop();
        text.push('!');
        let message = parse_token(&text).unwrap_err().to_string();
        assert!(!message.contains(&text[10..40]));
    }

    #[test]
    fn prefix_rules() {
        assert!(TokenPrefix::new("a").is_ok());
        assert!(TokenPrefix::new(&"a".repeat(32)).is_ok());
        assert!(TokenPrefix::new(&"a".repeat(33)).is_err());
        assert!(TokenPrefix::new("").is_err());
        assert!(TokenPrefix::new("1abc").is_err());
        assert!(TokenPrefix::new("ab-c").is_err());
        assert!(TokenPrefix::new("a_b_").is_ok());
    }

    #[test]
    fn token_id_hasher_uses_every_byte() {
        use std::hash::BuildHasher;
        let hash = |bytes: [u8; 16]| TokenIdHasherBuilder.hash_one(TokenId(bytes));
        let base = hash([7; 16]);
        for i in 0..16 {
            let mut bytes = [7; 16];
            bytes[i] ^= 1;
            assert_ne!(hash(bytes), base, "byte {i} does not affect the hash");
        }
        assert_eq!(hash([7; 16]), base);
    }

    #[test]
    fn token_id_serde_is_a_string() {
        let id = TokenId::from_bytes([1; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<TokenId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<TokenId>("\"short\"").is_err());
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            id in any::<[u8; 16]>(),
            secret in any::<[u8; 32]>(),
            prefix in "[a-z][a-z0-9_]{0,31}",
        ) {
            let prefix = TokenPrefix::new(&prefix).unwrap();
            let token = PlaintextToken::from_parts(&prefix, TokenId(id), secret);
            let parsed = parse_token(token.expose_secret()).unwrap();
            prop_assert_eq!(parsed.prefix(), prefix.as_str());
            prop_assert_eq!(parsed.id(), TokenId(id));
            prop_assert_eq!(parsed.secret_bytes(), &secret);
        }

        #[test]
        fn parsing_arbitrary_strings_never_panics(input in ".{0,120}") {
            let _ = parse_token(&input);
        }

        #[test]
        fn parsing_near_miss_tokens_never_panics(
            prefix in "[a-zA-Z0-9_]{0,40}",
            body in "[0-9A-Za-z_]{60,80}",
        ) {
            let _ = parse_token(&format!("{prefix}_{body}"));
        }

        #[test]
        fn token_id_round_trips(bytes in any::<[u8; 16]>()) {
            let id = TokenId(bytes);
            prop_assert_eq!(id.to_string().parse::<TokenId>().unwrap(), id);
        }
    }
}

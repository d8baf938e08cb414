//! Sender-constrained tokens (DPoP, RFC 9449): a token bound to a client key's thumbprint
//! ([`KeyThumbprint`], the `cnf.jkt` of RFC 9449 section 6) validates only with a verified proof
//! of possession of that key ([`ProofOfPossession`]), each proof accepted once by every instance
//! sharing the store.
//!
//! This crate does not parse or verify proofs (that is cryptography, in `token-dpop`); it
//! takes the verified result and ties it to the token's lifecycle: the binding is part of the
//! record, fixed at issue, kept by derived tokens and by rotation, never changed by an update;
//! a bound token presented without a proof is refused (no downgrade to Bearer), an unbound
//! token presented with one is refused too, and a proof's `jti` is claimed through the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The RFC 7638 SHA-256 thumbprint of a public key, base64url without padding (43 characters):
/// what a bound token's `cnf.jkt` holds.
///
/// ```
/// use token_core::KeyThumbprint;
///
/// // RFC 7638 section 3.1's example key.
/// let jkt: KeyThumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".parse()?;
/// assert_eq!(jkt.as_str().len(), 43);
/// assert!("not a thumbprint".parse::<KeyThumbprint>().is_err());
/// # Ok::<(), token_core::ThumbprintError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyThumbprint(Box<str>);

/// A text that is not a SHA-256 JWK thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a key thumbprint is 43 base64url characters (SHA-256, RFC 7638), found {length} characters{}",
    if *.alphabet { "" } else { " outside [A-Za-z0-9_-]" }
)]
pub struct ThumbprintError {
    length: usize,
    alphabet: bool,
}

impl KeyThumbprint {
    /// Checks `text`: 43 characters of the base64url alphabet whose last one encodes only the
    /// 256 bits of a SHA-256 digest (the two spare bits zero), so each digest has one spelling.
    pub fn parse(text: &str) -> Result<Self, ThumbprintError> {
        let alphabet = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let canonical_end = text.bytes().last().is_some_and(|last| {
            // 43 base64 characters carry 258 bits: the last one's low two bits are padding.
            let value = match last {
                b'A'..=b'Z' => last - b'A',
                b'a'..=b'z' => last - b'a' + 26,
                b'0'..=b'9' => last - b'0' + 52,
                b'-' => 62,
                _ => 63,
            };
            value & 0b11 == 0
        });
        if text.len() != 43 || !alphabet || !canonical_end {
            return Err(ThumbprintError {
                length: text.chars().count(),
                alphabet,
            });
        }
        Ok(Self(text.into()))
    }

    /// The thumbprint text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyThumbprint {
    type Err = ThumbprintError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for KeyThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyThumbprint({})", self.0)
    }
}

impl TryFrom<String> for KeyThumbprint {
    type Error = ThumbprintError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<KeyThumbprint> for String {
    fn from(jkt: KeyThumbprint) -> Self {
        jkt.0.into()
    }
}

/// A proof of possession the caller has verified (signature, `htm`, `htu`, `iat`, `ath`, nonce:
/// `token-dpop` does that): the key it was signed with, its `jti`, and until when a replay of
/// it could still pass verification (its `iat` plus the accepted window). Validation checks
/// the key against the token's binding and claims the `jti` once across every instance
/// sharing the store.
///
/// ```
/// use token_core::{KeyThumbprint, ProofOfPossession};
///
/// let jkt: KeyThumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".parse()?;
/// let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
/// let proof = ProofOfPossession::new(jkt, "e1j3V_bKic8-LAEB", until);
/// assert_eq!(proof.jti(), "e1j3V_bKic8-LAEB");
/// # Ok::<(), token_core::ThumbprintError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofOfPossession {
    jkt: KeyThumbprint,
    jti: String,
    replayable_until: OffsetDateTime,
}

impl ProofOfPossession {
    /// A verified proof by the key `jkt`, with identifier `jti`, that verification would accept
    /// again until `replayable_until`.
    pub fn new(
        jkt: KeyThumbprint,
        jti: impl Into<String>,
        replayable_until: OffsetDateTime,
    ) -> Self {
        Self {
            jkt,
            jti: jti.into(),
            replayable_until,
        }
    }

    /// The key's thumbprint.
    pub fn jkt(&self) -> &KeyThumbprint {
        &self.jkt
    }

    /// The proof's identifier.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// Until when a replay would pass verification (how long its claim must be kept).
    pub fn replayable_until(&self) -> OffsetDateTime {
        self.replayable_until
    }

    /// The key a store keeps the claim under: BLAKE3 of the thumbprint and the `jti`, so one
    /// client's identifiers never collide with another's and the store's key has a fixed size.
    pub fn claim_key(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.jkt.as_str().as_bytes());
        hasher.update(b"\0");
        hasher.update(self.jti.as_bytes());
        *hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_have_one_spelling() {
        assert!(KeyThumbprint::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs").is_ok());
        // Same digest bits, a spare bit set in the last character: refused.
        assert!(KeyThumbprint::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xt").is_err());
        assert!(KeyThumbprint::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X").is_err());
        assert!(KeyThumbprint::parse("NzbLsXh8uDCcd+6MNwXF4W_7noWXFZAfHkxZsRGC9Xs").is_err());
        let err = KeyThumbprint::parse("abc").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("43 base64url")));
    }

    #[test]
    fn claim_keys_separate_clients() {
        let until = OffsetDateTime::UNIX_EPOCH;
        let a = KeyThumbprint::parse("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
            .unwrap_or_else(|e| panic!("{e}"));
        let b = KeyThumbprint::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
            .unwrap_or_else(|e| panic!("{e}"));
        let one = ProofOfPossession::new(a.clone(), "x", until).claim_key();
        assert_ne!(one, ProofOfPossession::new(b, "x", until).claim_key());
        assert_eq!(one, ProofOfPossession::new(a, "x", until).claim_key());
    }
}

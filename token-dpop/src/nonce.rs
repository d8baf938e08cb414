//! Stateless server nonces (RFC 9449 section 8).
//!
//! A nonce is `base64url(window || tag)`: `window` is the index of the time window it was made in
//! (`floor(unix seconds / window length)`, 8 bytes big-endian) and `tag` is
//! `BLAKE3-keyed(key, "token-dpop nonce v1" || window)`. A verifier holding the same key accepts
//! the nonce of the current window and of the previous one, so every instance sharing the key
//! accepts the nonces any of them hands out, and no instance stores anything.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The key that makes and checks server nonces. 32 bytes; share it between the instances that
/// must accept each other's nonces. Its `Debug` shows nothing of the key, and it is wiped on
/// drop.
///
/// ```
/// use token_dpop::{DpopConfig, DpopVerifier, NonceKey};
///
/// // From configuration (e.g. 32 bytes read from a secret store)...
/// let shared = NonceKey::new([42; 32]);
/// assert_eq!(format!("{shared:?}"), "NonceKey(..)");
/// // ...or fresh from the OS for a single instance.
/// let key = NonceKey::generate().expect("the OS random number generator works");
/// let verifier = DpopVerifier::new(DpopConfig::new().nonces(key));
/// assert!(verifier.fresh_nonce(time::OffsetDateTime::now_utc()).is_some());
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NonceKey([u8; 32]);

impl NonceKey {
    /// A key from 32 bytes (for instance from a secret store, shared by all instances).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system (for one instance, or to print once and
    /// share).
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let key = Self(bytes);
        bytes.zeroize();
        Ok(key)
    }
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

const DOMAIN: &[u8] = b"token-dpop nonce v1";
/// 8 bytes of window index and a 32-byte tag, base64url without padding.
const NONCE_CHARS: usize = 54;

fn window_index(now: OffsetDateTime, window_secs: u64) -> i64 {
    // `window_secs >= 1` and fits i64 for any sane configuration; clamp the rest.
    let window = i64::try_from(window_secs).unwrap_or(i64::MAX).max(1);
    now.unix_timestamp().div_euclid(window)
}

fn tag(key: &NonceKey, index: i64) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(&key.0);
    hasher.update(DOMAIN);
    hasher.update(&index.to_be_bytes());
    let hash = hasher.finalize();
    // The hasher's state was derived from the key.
    hasher.zeroize();
    hash
}

/// The nonce for the window `now` falls in.
pub(crate) fn mint(key: &NonceKey, window_secs: u64, now: OffsetDateTime) -> String {
    let index = window_index(now, window_secs);
    let mut bytes = [0u8; 40];
    bytes[..8].copy_from_slice(&index.to_be_bytes());
    bytes[8..].copy_from_slice(tag(key, index).as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How a presented nonce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Made in the current window.
    Current,
    /// Made in the previous window: still accepted, expires at the end of this one.
    Previous,
    /// Not made with this key, malformed, or older than the previous window.
    Invalid,
}

pub(crate) fn check(
    key: &NonceKey,
    window_secs: u64,
    now: OffsetDateTime,
    nonce: &str,
) -> NonceCheck {
    if nonce.len() != NONCE_CHARS {
        return NonceCheck::Invalid;
    }
    let mut bytes = [0u8; 40];
    match URL_SAFE_NO_PAD.decode_slice(nonce, &mut bytes) {
        Ok(40) => {}
        _ => return NonceCheck::Invalid,
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&bytes[..8]);
    let index = i64::from_be_bytes(index);
    let current = window_index(now, window_secs);
    let standing = if index == current {
        NonceCheck::Current
    } else if Some(index) == current.checked_sub(1) {
        NonceCheck::Previous
    } else {
        return NonceCheck::Invalid;
    };
    let mut presented = [0u8; 32];
    presented.copy_from_slice(&bytes[8..]);
    // `blake3::Hash` equality is constant-time.
    if tag(key, index) == blake3::Hash::from_bytes(presented) {
        standing
    } else {
        NonceCheck::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 300;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    #[test]
    fn nonce_is_current_in_its_window_and_previous_in_the_next() {
        let key = NonceKey::new([1; 32]);
        let nonce = mint(&key, WINDOW, at(1_000_200));
        assert_eq!(nonce.len(), NONCE_CHARS);
        assert_eq!(
            check(&key, WINDOW, at(1_000_200), &nonce),
            NonceCheck::Current
        );
        assert_eq!(
            check(&key, WINDOW, at(1_000_499), &nonce),
            NonceCheck::Current
        );
        assert_eq!(
            check(&key, WINDOW, at(1_000_500), &nonce),
            NonceCheck::Previous
        );
        assert_eq!(
            check(&key, WINDOW, at(1_000_799), &nonce),
            NonceCheck::Previous
        );
        assert_eq!(
            check(&key, WINDOW, at(1_000_800), &nonce),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn nonce_from_the_future_or_another_key_is_invalid() {
        let key = NonceKey::new([1; 32]);
        let nonce = mint(&key, WINDOW, at(1_000_500));
        assert_eq!(
            check(&key, WINDOW, at(1_000_499), &nonce),
            NonceCheck::Invalid
        );
        let other = NonceKey::new([2; 32]);
        assert_eq!(
            check(&other, WINDOW, at(1_000_500), &nonce),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn garbage_nonces_are_invalid() {
        let key = NonceKey::new([1; 32]);
        for nonce in [
            "",
            "abc",
            &"A".repeat(NONCE_CHARS),
            &"!".repeat(NONCE_CHARS),
        ] {
            assert_eq!(check(&key, WINDOW, at(0), nonce), NonceCheck::Invalid);
        }
    }

    #[test]
    fn nonce_key_debug_is_redacted() {
        assert_eq!(format!("{:?}", NonceKey::new([9; 32])), "NonceKey(..)");
    }
}

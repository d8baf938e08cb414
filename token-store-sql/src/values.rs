//! Values on their way into columns: times as Unix microseconds, ids as raw bytes, counters and
//! durations as `i64` (or [`UnrepresentableValue`]).

use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;
use token_core::clock::{to_unix_micros, to_unix_micros_ceil};
use token_core::{StoreError, TokenId};

/// A time as stored: whole Unix microseconds (saturating far outside the representable range).
pub fn micros(t: OffsetDateTime) -> i64 {
    to_unix_micros(t)
}

/// [`micros`] of an optional time.
pub fn opt_micros(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(micros)
}

/// The smallest whole microsecond at or after `t`: for a stored value `a`, `a < t` exactly when
/// `a < micros_ceil(t)`, so strict cutoffs (`created_at < ?`) keep their meaning.
///
/// ```
/// use time::{Duration, OffsetDateTime};
/// use token_store_sql::{micros, micros_ceil};
///
/// let t = OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(1_500);
/// assert_eq!((micros(t), micros_ceil(t)), (1, 2));
/// ```
pub fn micros_ceil(t: OffsetDateTime) -> i64 {
    to_unix_micros_ceil(t)
}

/// The bytes stored for an id (16).
pub fn id_bytes(id: TokenId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// The id stored as `bytes`, when they are 16.
pub fn id_from_bytes(bytes: &[u8]) -> Option<TokenId> {
    <[u8; 16]>::try_from(bytes).ok().map(TokenId::from_bytes)
}

/// Lower-case hex, for naming rows whose id column itself is invalid.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A value a store was asked to write cannot be represented in its columns (a duration or counter
/// beyond `i64`). Reported as the source of [`StoreError::Backend`].
///
/// ```
/// use std::time::Duration;
/// use token_store_sql::{UnrepresentableValue, duration_to_column};
///
/// let err = duration_to_column("example", Duration::MAX, "idle timeout").unwrap_err();
/// assert!(err.to_string().contains("idle timeout"));
/// let source = std::error::Error::source(&err).unwrap();
/// assert!(source.downcast_ref::<UnrepresentableValue>().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnrepresentableValue {
    /// What could not be stored.
    pub message: String,
}

impl std::fmt::Display for UnrepresentableValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnrepresentableValue {}

fn unrepresentable(store: &'static str, message: String) -> StoreError {
    StoreError::Backend {
        store,
        source: Box::new(UnrepresentableValue { message }),
    }
}

/// A counter (`use_count`, `max_uses`, a batch limit) as a signed 64-bit column value.
pub fn count_to_column(store: &'static str, value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        unrepresentable(
            store,
            format!("{what} {value} exceeds the largest storable count (i64::MAX)"),
        )
    })
}

/// A duration in microseconds as a signed 64-bit column value.
pub fn duration_to_column(
    store: &'static str,
    value: Duration,
    what: &str,
) -> Result<i64, StoreError> {
    i64::try_from(value.as_micros()).map_err(|_| {
        unrepresentable(
            store,
            format!(
                "{what} of {} s exceeds the largest storable duration (i64::MAX microseconds)",
                value.as_secs()
            ),
        )
    })
}

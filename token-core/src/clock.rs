//! Time sources. Every lifecycle decision reads the manager's [`Clock`], so tests drive expiry,
//! idle timeouts and retention with a [`ManualClock`] instead of sleeping.
//!
//! Instants are truncated to whole microseconds, the resolution stores persist, so a record read
//! back compares equal to the one written. Expiry is exclusive: a token is invalid at exactly its
//! `expires_at`. Instances that share a database must have synchronized clocks.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant, truncated to microseconds.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
///
/// ```
/// use token_core::{Clock, SystemClock};
/// assert_eq!(SystemClock.now().nanosecond() % 1_000, 0);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate_to_micros(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use token_core::{Clock, ManualClock};
/// let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), time::macros::datetime!(2030-01-01 0:01:30 UTC));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    /// A clock standing at `start` (truncated to microseconds).
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(truncate_to_micros(start))))
    }

    /// A clock standing at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = truncate_to_micros(now.saturating_add(by.try_into().unwrap_or(time::Duration::MAX)));
    }

    /// Sets the clock to `to` (which may be in the past).
    pub fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = truncate_to_micros(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops sub-microsecond precision.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

/// Microseconds since the Unix epoch, the representation stores persist.
pub fn to_unix_micros(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// The smallest whole microsecond at or after `t`. For a stored (whole-microsecond) value `a`,
/// `a < t` exactly when `a < to_unix_micros_ceil(t)`: stores use it for strict time cutoffs.
pub fn to_unix_micros_ceil(t: OffsetDateTime) -> i64 {
    let m = to_unix_micros(t);
    match from_unix_micros(m) {
        Some(back) if back < t => m.saturating_add(1),
        _ => m,
    }
}

/// The inverse of [`to_unix_micros`]; `None` when out of the representable range (a corrupt row).
pub fn from_unix_micros(micros: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip() {
        let t = SystemClock.now();
        assert_eq!(from_unix_micros(to_unix_micros(t)), Some(t));
        assert_eq!(from_unix_micros(i64::MAX), None);
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::starting_now();
        let b = a.clone();
        let before = b.now();
        a.advance(Duration::from_secs(5));
        assert_eq!(b.now() - before, time::Duration::seconds(5));
    }
}

//! [`UseRefill`]: usage credits that come back every period.
//!
//! A token with `max_uses` has that many successful validations. With a refill it has that many
//! *per period*: when a period ends, its count of uses starts again from zero (unused credits do
//! not carry over; this is Unkey's "refill" and an API plan's monthly quota). The store applies
//! the refill inside the same atomic conditional update that counts a use, so concurrent
//! validations in every instance refill exactly once per period and never count past the limit.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

/// Shortest refill period: one second.
pub const REFILL_MIN_PERIOD: Duration = Duration::from_secs(1);
/// Longest fixed refill period: one year (366 days).
pub const REFILL_MAX_PERIOD: Duration = Duration::from_secs(366 * 86_400);

/// When a token's `max_uses` credits come back.
///
/// Written (in JSON, in the store and in [`Display`](fmt::Display)) as `"monthly"` or
/// `"every <seconds>s"`; `"hourly"`, `"daily"` and `"weekly"` are read as their fixed periods.
///
/// ```
/// use std::time::Duration;
/// use time::macros::datetime;
/// use token_core::UseRefill;
///
/// let daily: UseRefill = "daily".parse()?;
/// assert_eq!(daily, UseRefill::every(Duration::from_secs(86_400))?);
/// assert_eq!(daily.to_string(), "every 86400s");
/// // Fixed periods count from the token's issue; monthly ones from the first of the month (UTC).
/// let issued = datetime!(2026-01-31 10:00 UTC);
/// assert_eq!(daily.next_after(issued, datetime!(2026-02-02 09:00 UTC)), datetime!(2026-02-02 10:00 UTC));
/// assert_eq!(UseRefill::Monthly.next_after(issued, datetime!(2026-02-14 0:00 UTC)), datetime!(2026-03-01 0:00 UTC));
/// assert!(UseRefill::Monthly.is_within(&daily)); // a longer period only narrows
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum UseRefill {
    /// Every fixed period (whole seconds, one second to a year), counted from the token's issue.
    Every(Duration),
    /// On the first of every calendar month, 00:00 UTC.
    Monthly,
}

/// Why a text or duration is not a [`UseRefill`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a refill period: write \"monthly\", \"hourly\", \"daily\", \"weekly\" or \"every <seconds>s\" (whole seconds from 1 to 31622400)"
)]
pub struct RefillError {
    /// What was given.
    pub text: String,
}

impl UseRefill {
    /// A fixed period: whole seconds, from one second to a year.
    pub fn every(period: Duration) -> Result<Self, RefillError> {
        if period.subsec_nanos() != 0 || period < REFILL_MIN_PERIOD || period > REFILL_MAX_PERIOD {
            return Err(RefillError {
                text: format!("{period:?}"),
            });
        }
        Ok(Self::Every(period))
    }

    /// The first period boundary strictly after `after`, for a token issued at `issued_at`
    /// (fixed periods are counted from it; monthly ones fall on the first of the month, UTC).
    /// An instant before the issue (a clock step back) counts as the issue.
    pub fn next_after(self, issued_at: OffsetDateTime, after: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::Every(period) => {
                let period_us = i128::try_from(period.as_micros())
                    .unwrap_or(i128::MAX)
                    .max(1);
                let elapsed_us = (after - issued_at).whole_microseconds().max(0);
                let periods = elapsed_us / period_us + 1;
                let offset = time::Duration::microseconds(
                    i64::try_from(periods.saturating_mul(period_us)).unwrap_or(i64::MAX),
                );
                issued_at.checked_add(offset).unwrap_or_else(end_of_time)
            }
            Self::Monthly => {
                let utc = after.to_offset(time::UtcOffset::UTC);
                let (year, month) = match utc.month() {
                    Month::December => (utc.year() + 1, Month::January),
                    month => (utc.year(), month.next()),
                };
                Date::from_calendar_date(year, month, 1)
                    .map(|date| date.with_time(Time::MIDNIGHT).assume_utc())
                    .unwrap_or_else(|_| end_of_time())
            }
        }
    }

    /// Whether this refill is no more generous than `other`: its period is at least as long.
    /// A month counts as 28 days against a fixed period when it is the longer one and as 31 when
    /// it is the shorter one, so the comparison never lets a month be shorter than it can be.
    pub fn is_within(&self, other: &UseRefill) -> bool {
        const DAY: u64 = 86_400;
        match (self, other) {
            (Self::Every(mine), Self::Every(theirs)) => mine >= theirs,
            (Self::Monthly, Self::Monthly) => true,
            (Self::Monthly, Self::Every(theirs)) => theirs.as_secs() <= 28 * DAY,
            (Self::Every(mine), Self::Monthly) => mine.as_secs() >= 31 * DAY,
        }
    }
}

/// Where a boundary past the calendar's end lands: never (a refill that never comes, rather
/// than one on every use).
fn end_of_time() -> OffsetDateTime {
    Date::MAX.with_time(Time::MIDNIGHT).assume_utc()
}

impl fmt::Debug for UseRefill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UseRefill({self})")
    }
}

impl fmt::Display for UseRefill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(period) => write!(f, "every {}s", period.as_secs()),
            Self::Monthly => f.write_str("monthly"),
        }
    }
}

impl FromStr for UseRefill {
    type Err = RefillError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RefillError {
            text: text.to_owned(),
        };
        let seconds = match text {
            "monthly" => return Ok(Self::Monthly),
            "hourly" => 3600,
            "daily" => 86_400,
            "weekly" => 7 * 86_400,
            other => other
                .strip_prefix("every ")
                .and_then(|rest| rest.strip_suffix('s'))
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u64>().ok())
                .ok_or_else(error)?,
        };
        Self::every(Duration::from_secs(seconds)).map_err(|_| error())
    }
}

impl TryFrom<String> for UseRefill {
    type Error = RefillError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<UseRefill> for String {
    fn from(refill: UseRefill) -> Self {
        refill.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn text_round_trips_and_rejects_bad_periods() {
        for text in ["monthly", "every 1s", "every 31622400s"] {
            assert_eq!(text.parse::<UseRefill>().unwrap().to_string(), text);
        }
        assert_eq!(
            "weekly".parse::<UseRefill>().unwrap(),
            UseRefill::Every(Duration::from_secs(604_800))
        );
        for bad in [
            "",
            "every 0s",
            "every 31622401s",
            "every s",
            "every -1s",
            "every 1",
            "Monthly",
            "every 1.5s",
            "every 99999999999999999999999s",
        ] {
            assert!(bad.parse::<UseRefill>().is_err(), "{bad:?}");
        }
        assert!(UseRefill::every(Duration::from_millis(1500)).is_err());
        let json = serde_json::to_string(&UseRefill::Monthly).unwrap();
        assert_eq!(json, r#""monthly""#);
        assert!(serde_json::from_str::<UseRefill>(r#""yearly""#).is_err());
    }

    #[test]
    fn fixed_periods_count_from_issue() {
        let issued = datetime!(2026-01-01 12:00 UTC);
        let hourly = UseRefill::every(Duration::from_secs(3600)).unwrap();
        assert_eq!(
            hourly.next_after(issued, issued),
            datetime!(2026-01-01 13:00 UTC)
        );
        assert_eq!(
            hourly.next_after(issued, datetime!(2026-01-01 12:59:59.999999 UTC)),
            datetime!(2026-01-01 13:00 UTC)
        );
        assert_eq!(
            hourly.next_after(issued, datetime!(2026-01-01 13:00 UTC)),
            datetime!(2026-01-01 14:00 UTC),
            "a boundary itself starts the next period"
        );
        assert_eq!(
            hourly.next_after(issued, datetime!(2025-12-31 0:00 UTC)),
            datetime!(2026-01-01 13:00 UTC),
            "before the issue counts as the issue"
        );
    }

    #[test]
    fn months_fall_on_the_first_in_utc() {
        let issued = datetime!(2026-01-15 0:00 UTC);
        let m = UseRefill::Monthly;
        assert_eq!(m.next_after(issued, issued), datetime!(2026-02-01 0:00 UTC));
        assert_eq!(
            m.next_after(issued, datetime!(2026-12-31 23:59 UTC)),
            datetime!(2027-01-01 0:00 UTC)
        );
        assert_eq!(
            m.next_after(issued, datetime!(2026-03-01 0:00 UTC)),
            datetime!(2026-04-01 0:00 UTC)
        );
        assert_eq!(
            m.next_after(issued, datetime!(2026-02-28 23:30 -01:00)),
            datetime!(2026-04-01 0:00 UTC),
            "23:30 at -01:00 is already March in UTC"
        );
    }

    #[test]
    fn within_means_no_more_generous() {
        let day = UseRefill::every(Duration::from_secs(86_400)).unwrap();
        let week = UseRefill::every(Duration::from_secs(7 * 86_400)).unwrap();
        let d28 = UseRefill::every(Duration::from_secs(28 * 86_400)).unwrap();
        let d29 = UseRefill::every(Duration::from_secs(29 * 86_400)).unwrap();
        let d31 = UseRefill::every(Duration::from_secs(31 * 86_400)).unwrap();
        assert!(week.is_within(&day) && !day.is_within(&week));
        assert!(UseRefill::Monthly.is_within(&d28));
        assert!(!UseRefill::Monthly.is_within(&d29));
        assert!(d31.is_within(&UseRefill::Monthly));
        assert!(!d29.is_within(&UseRefill::Monthly));
        assert!(UseRefill::Monthly.is_within(&UseRefill::Monthly));
    }
}

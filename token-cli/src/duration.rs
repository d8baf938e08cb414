//! Durations and instants on the command line: `30d`, `12h`, `1h 30m` (humantime), and
//! instants as RFC 3339 (`2030-01-01T00:00:00Z`), `now`, or a duration ago (`7d` = seven days
//! before now).

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses a duration such as `30d`, `12h`, `90m`, `1h 30m` or `45s` (clap value parser).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(token_cli::duration::parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
/// assert!(token_cli::duration::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; write a duration such as 30d, 12h, 90m, 1h 30m or 45s"))
}

/// An instant given on the command line.
///
/// ```
/// use token_cli::duration::Instant;
/// let now = time::OffsetDateTime::now_utc();
/// let week_ago = "7d".parse::<Instant>()?.resolve(now);
/// assert_eq!(now - week_ago, time::Duration::days(7));
/// assert!("2030-01-01T00:00:00Z".parse::<Instant>().is_ok());
/// assert!("yesterday".parse::<Instant>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instant {
    /// This instant.
    At(OffsetDateTime),
    /// The moment the command runs.
    Now,
    /// This long before the moment the command runs.
    Ago(Duration),
}

impl Instant {
    /// The instant, with `now` as the moment the command runs.
    pub fn resolve(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::At(at) => at,
            Self::Now => now,
            Self::Ago(by) => {
                now.saturating_sub(time::Duration::try_from(by).unwrap_or(time::Duration::MAX))
            }
        }
    }
}

impl std::str::FromStr for Instant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "now" {
            return Ok(Self::Now);
        }
        if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
            return Ok(Self::At(at));
        }
        humantime::parse_duration(text).map(Self::Ago).map_err(|_| {
            format!(
                "{text:?} is not an instant; write RFC 3339 (2030-01-01T00:00:00Z), `now`, or a duration ago (7d, 12h)"
            )
        })
    }
}

/// An instant as RFC 3339, or `-` for none (for tables).
pub fn rfc3339_or_dash(at: Option<OffsetDateTime>) -> String {
    at.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

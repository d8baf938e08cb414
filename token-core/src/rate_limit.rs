//! [`RateLimit`] and [`RateLimits`]: the named request rates a token (or a subject) may use.
//!
//! This module is the data: what a token record carries, how it is checked, serialized and
//! narrowed. Enforcing it (the GCRA limiter, in process or shared through Redis) is the
//! `token-ratelimit` crate's job; token-tower answers `429 Too Many Requests` for it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most limits one token (or subject) carries.
pub const MAX_RATE_LIMITS: usize = 16;
/// Longest name of a limit, in bytes.
pub const RATE_LIMIT_NAME_MAX: usize = 32;
/// Largest `limit` (requests per window).
pub const RATE_LIMIT_MAX: u32 = 1_000_000_000;
/// Longest window: one year (366 days).
pub const RATE_LIMIT_MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

/// One named rate: at most `limit` units of cost per `per` window, with a burst of `limit`.
///
/// It is enforced with GCRA (the generic cell rate algorithm): the full `limit` may be spent at
/// once, after which capacity comes back steadily, one unit every `per / limit`. A request's
/// cost (1 unless the route says otherwise) is taken from every limit the token and its subject
/// carry, all or nothing.
///
/// The name says what the limit is for (`requests`, `expensive`): lower-case ASCII letters,
/// digits, `-` and `_`, at most [`RATE_LIMIT_NAME_MAX`] bytes. The window is whole seconds,
/// from one second to one year; it is written `per_seconds` in JSON.
///
/// A limit applies to every request by default. One made [`on_demand`](Self::on_demand)
/// applies only where a route asks for it by name (token-tower's
/// `BearerAuthLayer::spend("expensive")`): a `requests` limit for everything and an
/// `expensive` one for the costly routes (Unkey's `autoApply: false`). JSON marks it
/// `"on_demand": true`.
///
/// ```
/// use std::time::Duration;
/// use token_core::RateLimit;
///
/// let requests = RateLimit::new("requests", 100, Duration::from_secs(60))?;
/// assert_eq!(requests.emission_interval(), Duration::from_millis(600));
/// let slower = RateLimit::per_hour("requests", 100)?;
/// assert!(slower.is_within(&requests)); // same burst, a slower steady rate
/// let bigger_burst = RateLimit::per_hour("requests", 1_000)?;
/// assert!(!bigger_burst.is_within(&requests)); // slower, but 1000 at once is looser
/// assert_eq!(
///     serde_json::to_string(&requests)?,
///     r#"{"name":"requests","limit":100,"per_seconds":60}"#
/// );
/// assert!(RateLimit::new("Requests!", 1, Duration::from_secs(1)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RateLimitJson", into = "RateLimitJson")]
pub struct RateLimit {
    /// Shared: a limit is copied into every rate-limit decision, and an `Arc` copy is a
    /// reference count, not an allocation.
    name: std::sync::Arc<str>,
    limit: u32,
    per: Duration,
    on_demand: bool,
    /// `per / limit` in nanoseconds, rounded up: computed once, as every check needs it.
    emission_ns: u64,
}

/// Why a [`RateLimit`] or [`RateLimits`] is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The name is empty, too long or has other characters than `a-z 0-9 - _`.
    #[error(
        "{name:?} is not a rate limit name: use 1 to {RATE_LIMIT_NAME_MAX} of a-z, 0-9, '-' and '_'"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// `limit` is 0 or above [`RATE_LIMIT_MAX`].
    #[error("rate limit {name:?}: the limit must be 1 to {RATE_LIMIT_MAX}, found {limit}")]
    InvalidLimit {
        /// The limit's name.
        name: String,
        /// The limit given.
        limit: u64,
    },
    /// The window is not whole seconds from 1 s to [`RATE_LIMIT_MAX_WINDOW`].
    #[error(
        "rate limit {name:?}: the window must be whole seconds from 1 to 31622400 (a year), found {per:?}"
    )]
    InvalidWindow {
        /// The limit's name.
        name: String,
        /// The window given.
        per: Duration,
    },
    /// Two limits share a name.
    #[error("rate limit {name:?} is given twice; each name may appear once")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// More than [`MAX_RATE_LIMITS`].
    #[error("at most {MAX_RATE_LIMITS} rate limits, found {count}")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// Not the text form `name=limit/<seconds>s` (with a trailing `?` when on demand).
    #[error(
        "{text:?} is not a rate limit: write name=limit/<seconds>s, e.g. requests=100/60s (a trailing ? makes it on demand)"
    )]
    Syntax {
        /// What was given.
        text: String,
    },
    /// Not the JSON form (an array of `{"name", "limit", "per_seconds"}`).
    #[error(
        "rate limits must be a JSON array of {{\"name\", \"limit\", \"per_seconds\"}}: {problem}"
    )]
    Json {
        /// What the JSON reader found wrong.
        problem: String,
    },
}

impl RateLimit {
    /// `limit` units per `per` (whole seconds, 1 s to a year).
    pub fn new(name: impl Into<String>, limit: u32, per: Duration) -> Result<Self, RateLimitError> {
        let name = name.into();
        Self::check_name(&name)?;
        if limit == 0 || limit > RATE_LIMIT_MAX {
            return Err(RateLimitError::InvalidLimit {
                name,
                limit: limit.into(),
            });
        }
        if per.subsec_nanos() != 0 || per.is_zero() || per > RATE_LIMIT_MAX_WINDOW {
            return Err(RateLimitError::InvalidWindow { name, per });
        }
        // A year is 3.2e16 ns: the window fits a u64.
        let per_ns = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
        Ok(Self {
            name: name.into(),
            limit,
            per,
            on_demand: false,
            emission_ns: per_ns.div_ceil(u64::from(limit)),
        })
    }

    /// This limit applies only to requests that name it (a route's `spend`), not to every one.
    pub fn on_demand(mut self) -> Self {
        self.on_demand = true;
        self
    }

    /// Whether the limit applies only where a request names it.
    pub fn is_on_demand(&self) -> bool {
        self.on_demand
    }

    /// Whether a request naming `spent` limits is checked against this one: every request
    /// for an automatic limit, only those naming it for an [on-demand](Self::on_demand) one.
    pub fn applies_to<S: AsRef<str>>(&self, spent: &[S]) -> bool {
        !self.on_demand || spent.iter().any(|name| name.as_ref() == &*self.name)
    }

    /// Whether `name` can name a limit: 1 to [`RATE_LIMIT_NAME_MAX`] bytes of `a-z 0-9 - _`
    /// (for code that refers to limits by name, such as a route spending an on-demand one).
    pub fn check_name(name: &str) -> Result<(), RateLimitError> {
        let valid = !name.is_empty()
            && name.len() <= RATE_LIMIT_NAME_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(())
        } else {
            Err(RateLimitError::InvalidName {
                name: name.to_owned(),
            })
        }
    }

    /// `limit` per second.
    pub fn per_second(name: impl Into<String>, limit: u32) -> Result<Self, RateLimitError> {
        Self::new(name, limit, Duration::from_secs(1))
    }

    /// `limit` per minute.
    pub fn per_minute(name: impl Into<String>, limit: u32) -> Result<Self, RateLimitError> {
        Self::new(name, limit, Duration::from_secs(60))
    }

    /// `limit` per hour.
    pub fn per_hour(name: impl Into<String>, limit: u32) -> Result<Self, RateLimitError> {
        Self::new(name, limit, Duration::from_secs(3600))
    }

    /// `limit` per day (24 hours).
    pub fn per_day(name: impl Into<String>, limit: u32) -> Result<Self, RateLimitError> {
        Self::new(name, limit, Duration::from_secs(86_400))
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Units allowed per window, and the burst.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The time one unit of capacity takes to come back: `per / limit`, in whole nanoseconds
    /// (rounded up, so the rate is never exceeded).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_ns)
    }

    /// [`emission_interval`](Self::emission_interval) in nanoseconds.
    pub fn emission_interval_nanos(&self) -> u64 {
        self.emission_ns
    }

    /// Whether this limit is no looser than `other`: a burst no larger, a steady rate no
    /// faster (`limit / per` at most `other`'s), and applied to no fewer requests (an automatic
    /// limit is tighter than an on-demand one). The names are not compared.
    pub fn is_within(&self, other: &RateLimit) -> bool {
        // limit/per <= other.limit/other.per  <=>  limit * other.per <= other.limit * per
        (!self.on_demand || other.on_demand)
            && self.limit <= other.limit
            && u128::from(self.limit) * other.per.as_nanos()
                <= u128::from(other.limit) * self.per.as_nanos()
    }
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RateLimit({self})")
    }
}

/// `requests=100/60s`; an on-demand limit ends in `?` (`expensive=10/3600s?`).
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}s", self.name, self.limit, self.per.as_secs())?;
        if self.on_demand {
            f.write_str("?")?;
        }
        Ok(())
    }
}

/// Reads the [`Display`](fmt::Display) form: `name=limit/<seconds>s`, a trailing `?` for an
/// on-demand limit (`requests=100/60s`, `expensive=10/3600s?`).
impl std::str::FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || RateLimitError::Syntax {
            text: text.to_owned(),
        };
        let (body, on_demand) = match text.strip_suffix('?') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let (name, rate) = body.split_once('=').ok_or_else(syntax)?;
        let (limit, per) = rate.split_once('/').ok_or_else(syntax)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let per = per
            .strip_suffix('s')
            .filter(|p| digits(p))
            .ok_or_else(syntax)?;
        if !digits(limit) {
            return Err(syntax());
        }
        let limit: u64 = limit.parse().map_err(|_| syntax())?;
        let per: u64 = per.parse().map_err(|_| syntax())?;
        let limit = u32::try_from(limit).map_err(|_| RateLimitError::InvalidLimit {
            name: name.to_owned(),
            limit,
        })?;
        let parsed = Self::new(name, limit, Duration::from_secs(per))?;
        Ok(if on_demand {
            parsed.on_demand()
        } else {
            parsed
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitJson {
    name: String,
    limit: u64,
    per_seconds: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    on_demand: bool,
}

impl TryFrom<RateLimitJson> for RateLimit {
    type Error = RateLimitError;

    fn try_from(json: RateLimitJson) -> Result<Self, Self::Error> {
        let limit = u32::try_from(json.limit).map_err(|_| RateLimitError::InvalidLimit {
            name: json.name.clone(),
            limit: json.limit,
        })?;
        let limit = Self::new(json.name, limit, Duration::from_secs(json.per_seconds))?;
        Ok(if json.on_demand {
            limit.on_demand()
        } else {
            limit
        })
    }
}

impl From<RateLimit> for RateLimitJson {
    fn from(limit: RateLimit) -> Self {
        Self {
            name: limit.name.to_string(),
            limit: limit.limit.into(),
            per_seconds: limit.per.as_secs(),
            on_demand: limit.on_demand,
        }
    }
}

/// The named limits of one token (or of every subject): at most [`MAX_RATE_LIMITS`], names
/// unique, kept sorted by name. May be empty (no limits).
///
/// A derived token inherits its parent's limits and may only tighten them: it must carry every
/// limit the parent has, each [within](RateLimit::is_within) the parent's, and may add more
/// ([`is_within`](Self::is_within)). Updates narrow the same way.
///
/// The limits are inherited, the buckets are not: each token spends its own, so a parent and
/// three children each get their `requests=100/60s`, and a rotation's successor starts with a
/// full burst. What bounds a family, or every token of a user, together is a subject limit
/// (`token-ratelimit`'s `subject_limits`).
///
/// ```
/// use token_core::{RateLimit, RateLimits};
///
/// let parent = RateLimits::new([RateLimit::per_minute("requests", 100)?])?;
/// let child = RateLimits::new([
///     RateLimit::per_minute("requests", 10)?,
///     RateLimit::per_hour("expensive", 5)?,
/// ])?;
/// assert!(child.is_within(&parent));
/// assert!(!parent.is_within(&child)); // drops "expensive" and loosens "requests"
/// assert!(!RateLimits::none().is_within(&parent)); // dropping a limit widens
/// assert_eq!(child.to_string(), "expensive=5/3600s requests=10/60s");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<RateLimit>", into = "Vec<RateLimit>")]
pub struct RateLimits(Vec<RateLimit>);

impl RateLimits {
    /// No limits.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// These limits; names must be unique.
    pub fn new(limits: impl IntoIterator<Item = RateLimit>) -> Result<Self, RateLimitError> {
        let mut limits: Vec<RateLimit> = limits.into_iter().collect();
        if limits.len() > MAX_RATE_LIMITS {
            return Err(RateLimitError::TooMany {
                count: limits.len(),
            });
        }
        limits.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = limits.windows(2).find(|pair| pair[0].name == pair[1].name) {
            return Err(RateLimitError::DuplicateName {
                name: pair[0].name.to_string(),
            });
        }
        Ok(Self(limits))
    }

    /// Reads the JSON form (as stores keep it): an array of `{"name", "limit", "per_seconds"}`.
    pub fn from_json(text: &str) -> Result<Self, RateLimitError> {
        serde_json::from_str(text).map_err(|e| RateLimitError::Json {
            problem: e.to_string(),
        })
    }

    /// The JSON form, as [`from_json`](Self::from_json) reads it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The limits, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, RateLimit> {
        self.0.iter()
    }

    /// The limit called `name`.
    pub fn get(&self, name: &str) -> Option<&RateLimit> {
        self.0
            .binary_search_by(|limit| (*limit.name).cmp(name))
            .ok()
            .map(|i| &self.0[i])
    }

    /// How many limits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The limits a request naming `spent` limits is checked against: every automatic one and
    /// the on-demand ones it names ([`RateLimit::applies_to`]).
    pub fn applying_to<S: AsRef<str>>(&self, spent: &[S]) -> RateLimits {
        Self(
            self.0
                .iter()
                .filter(|limit| limit.applies_to(spent))
                .cloned()
                .collect(),
        )
    }

    /// Whether every limit applies to every request (none is on demand).
    pub fn all_automatic(&self) -> bool {
        self.0.iter().all(|limit| !limit.on_demand)
    }

    /// Whether these limits are no looser than `parent`'s: every limit of `parent` is here,
    /// each within the parent's. Extra limits only tighten.
    pub fn is_within(&self, parent: &RateLimits) -> bool {
        parent.0.iter().all(|theirs| {
            self.get(&theirs.name)
                .is_some_and(|mine| mine.is_within(theirs))
        })
    }
}

impl<'a> IntoIterator for &'a RateLimits {
    type Item = &'a RateLimit;
    type IntoIter = std::slice::Iter<'a, RateLimit>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl TryFrom<Vec<RateLimit>> for RateLimits {
    type Error = RateLimitError;

    fn try_from(limits: Vec<RateLimit>) -> Result<Self, Self::Error> {
        Self::new(limits)
    }
}

impl From<RateLimits> for Vec<RateLimit> {
    fn from(limits: RateLimits) -> Self {
        limits.0
    }
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

/// Space-separated, sorted by name: `expensive=5/3600s requests=10/60s`.
impl fmt::Display for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, limit) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{limit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(name: &str, n: u32, secs: u64) -> RateLimit {
        RateLimit::new(name, n, Duration::from_secs(secs)).unwrap()
    }

    #[test]
    fn bounds_are_checked_and_named() {
        assert!(matches!(
            RateLimit::new("", 1, Duration::from_secs(1)),
            Err(RateLimitError::InvalidName { .. })
        ));
        assert!(RateLimit::new("a".repeat(32), 1, Duration::from_secs(1)).is_ok());
        assert!(RateLimit::new("a".repeat(33), 1, Duration::from_secs(1)).is_err());
        assert!(matches!(
            RateLimit::new("r", 0, Duration::from_secs(1)),
            Err(RateLimitError::InvalidLimit { limit: 0, .. })
        ));
        assert!(RateLimit::new("r", RATE_LIMIT_MAX, Duration::from_secs(1)).is_ok());
        assert!(RateLimit::new("r", RATE_LIMIT_MAX + 1, Duration::from_secs(1)).is_err());
        for per in [
            Duration::ZERO,
            Duration::from_millis(1500),
            RATE_LIMIT_MAX_WINDOW + Duration::from_secs(1),
        ] {
            assert!(
                matches!(
                    RateLimit::new("r", 1, per),
                    Err(RateLimitError::InvalidWindow { .. })
                ),
                "{per:?}"
            );
        }
        assert!(RateLimit::new("r", 1, RATE_LIMIT_MAX_WINDOW).is_ok());
    }

    #[test]
    fn json_round_trips_and_rejects_bad_values() {
        let limits =
            RateLimits::new([limit("requests", 5, 60), limit("expensive", 1, 3600)]).unwrap();
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"expensive","limit":1,"per_seconds":3600},{"name":"requests","limit":5,"per_seconds":60}]"#
        );
        assert_eq!(serde_json::from_str::<RateLimits>(&json).unwrap(), limits);
        for bad in [
            r#"[{"name":"r","limit":0,"per_seconds":1}]"#,
            r#"[{"name":"r","limit":4294967296,"per_seconds":1}]"#,
            r#"[{"name":"r","limit":1,"per_seconds":0}]"#,
            r#"[{"name":"r","limit":1,"per_seconds":1,"burst":3}]"#,
            r#"[{"name":"r","limit":1,"per_seconds":1},{"name":"r","limit":2,"per_seconds":1}]"#,
        ] {
            assert!(serde_json::from_str::<RateLimits>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn within_compares_burst_and_rate() {
        let base = limit("r", 100, 60);
        assert!(base.is_within(&base));
        assert!(limit("r", 50, 60).is_within(&base));
        assert!(limit("r", 100, 120).is_within(&base), "same burst, slower");
        assert!(!limit("r", 101, 60).is_within(&base), "larger burst");
        assert!(!limit("r", 100, 59).is_within(&base), "faster");
        assert!(
            !limit("r", 90, 30).is_within(&base),
            "smaller burst but a faster rate"
        );
        assert_eq!(
            limit("r", 3, 1).emission_interval(),
            Duration::from_nanos(333_333_334)
        );
    }

    #[test]
    fn on_demand_limits_apply_where_named_and_only_tighten_into_automatic() {
        let requests = limit("requests", 100, 60);
        let expensive = limit("expensive", 10, 3600).on_demand();
        assert!(requests.applies_to::<&str>(&[]));
        assert!(!expensive.applies_to::<&str>(&[]));
        assert!(expensive.applies_to(&["expensive"]));
        let set = RateLimits::new([requests.clone(), expensive.clone()]).unwrap();
        assert_eq!(set.applying_to::<&str>(&[]).to_string(), "requests=100/60s");
        assert_eq!(
            set.applying_to(&["expensive"]).to_string(),
            "expensive=10/3600s? requests=100/60s"
        );
        assert!(!set.all_automatic());
        let automatic = limit("expensive", 10, 3600);
        assert!(automatic.is_within(&expensive), "automatic is tighter");
        assert!(
            !expensive.is_within(&automatic),
            "on demand would check fewer requests"
        );
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"expensive","limit":10,"per_seconds":3600,"on_demand":true},{"name":"requests","limit":100,"per_seconds":60}]"#
        );
        assert_eq!(RateLimits::from_json(&json).unwrap(), set);
    }

    #[test]
    fn text_form_round_trips_and_explains_mistakes() {
        for text in ["requests=100/60s", "expensive=10/3600s?", "a=1/1s"] {
            assert_eq!(text.parse::<RateLimit>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "requests",
            "requests=100",
            "requests=100/60",
            "requests=100/s",
            "requests=-1/60s",
            "requests=1.5/60s",
            "requests=100/1m",
            "=100/60s",
            "requests=100/60s??",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
        assert!(matches!(
            "requests=0/60s".parse::<RateLimit>(),
            Err(RateLimitError::InvalidLimit { .. })
        ));
        assert!(matches!(
            "requests=99999999999/60s".parse::<RateLimit>(),
            Err(RateLimitError::InvalidLimit { .. })
        ));
    }

    #[test]
    fn sets_narrow_by_name() {
        let parent = RateLimits::new([limit("a", 10, 1), limit("b", 10, 1)]).unwrap();
        let same = parent.clone();
        assert!(same.is_within(&parent));
        let dropped = RateLimits::new([limit("a", 10, 1)]).unwrap();
        assert!(!dropped.is_within(&parent));
        let extra =
            RateLimits::new([limit("a", 10, 1), limit("b", 1, 1), limit("c", 1, 1)]).unwrap();
        assert!(extra.is_within(&parent));
        assert!(parent.is_within(&RateLimits::none()));
        assert!(matches!(
            RateLimits::new((0..17).map(|i| limit(&format!("l{i}"), 1, 1))),
            Err(RateLimitError::TooMany { count: 17 })
        ));
    }
}

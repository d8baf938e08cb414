//! Issuance policy: lifetimes, idle timeouts, per-subject limits and scope ceilings.
//!
//! The defaults follow the principle of minimal lifetime: tokens live 30 days unless asked for less,
//! at most 90 days, every token expires, and idle tokens die after 30 days unused.
//!
//! | setting                       | default  |
//! |-------------------------------|----------|
//! | `default_ttl`                 | 30 days  |
//! | `max_ttl`                     | 90 days  |
//! | non-expiring tokens           | refused  |
//! | opting out of idle expiry     | refused (when a default idle timeout is set) |
//! | `default_idle_timeout`        | 30 days  |
//! | `max_live_tokens_per_subject` | none     |
//! | `max_rotation_grace`          | 1 day    |
//! | scope ceiling                 | none (every subject may be granted any scope) |
//!
//! ```
//! use std::time::Duration;
//! use token_core::{Policy, ScopeSet};
//!
//! let policy = Policy::builder()
//!     .default_ttl(Duration::from_secs(3600))
//!     .max_ttl(Duration::from_secs(7 * 86_400))
//!     .max_live_tokens_per_subject(20)
//!     .scope_ceiling(|subject: &str| {
//!         // Service accounts may only read.
//!         subject.starts_with("svc:").then(|| ScopeSet::parse("widgets:read").unwrap())
//!     })
//!     .build()?;
//! assert_eq!(policy.max_ttl(), Some(Duration::from_secs(7 * 86_400)));
//! # Ok::<(), token_core::PolicyError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::scope::{Scope, ScopeSet};

const DAY: u64 = 86_400;

/// Tells the manager the widest set of scopes a subject may ever be granted.
///
/// Implemented for closures `Fn(&str) -> Option<ScopeSet>`; `None` means "no ceiling".
pub trait ScopeCeiling: Send + Sync + 'static {
    /// The ceiling for `subject`, or `None` for no restriction.
    fn ceiling(&self, subject: &str) -> Option<ScopeSet>;
}

impl<F> ScopeCeiling for F
where
    F: Fn(&str) -> Option<ScopeSet> + Send + Sync + 'static,
{
    fn ceiling(&self, subject: &str) -> Option<ScopeSet> {
        self(subject)
    }
}

/// The issuance policy a [`TokenManager`](crate::TokenManager) enforces. Build with
/// [`Policy::builder`]; [`Policy::default`] gives the documented defaults.
#[derive(Clone)]
pub struct Policy {
    default_ttl: Duration,
    max_ttl: Option<Duration>,
    allow_non_expiring: bool,
    allow_no_idle_timeout: bool,
    default_idle_timeout: Option<Duration>,
    max_live_tokens_per_subject: Option<u32>,
    max_rotation_grace: Duration,
    scope_ceiling: Option<Arc<dyn ScopeCeiling>>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("allow_non_expiring", &self.allow_non_expiring)
            .field("allow_no_idle_timeout", &self.allow_no_idle_timeout)
            .field("default_idle_timeout", &self.default_idle_timeout)
            .field(
                "max_live_tokens_per_subject",
                &self.max_live_tokens_per_subject,
            )
            .field("max_rotation_grace", &self.max_rotation_grace)
            .field("scope_ceiling", &self.scope_ceiling.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(30 * DAY),
            max_ttl: Some(Duration::from_secs(90 * DAY)),
            allow_non_expiring: false,
            allow_no_idle_timeout: false,
            default_idle_timeout: Some(Duration::from_secs(30 * DAY)),
            max_live_tokens_per_subject: None,
            max_rotation_grace: Duration::from_secs(DAY),
            scope_ceiling: None,
        }
    }
}

impl Policy {
    /// A builder starting from the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder(Self::default())
    }

    /// TTL used when a request names none.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Longest TTL allowed, if capped.
    pub fn max_ttl(&self) -> Option<Duration> {
        self.max_ttl
    }

    /// Whether tokens without expiry may be issued.
    pub fn allows_non_expiring(&self) -> bool {
        self.allow_non_expiring
    }

    /// Whether a request may opt out of the default idle timeout.
    pub fn allows_no_idle_timeout(&self) -> bool {
        self.allow_no_idle_timeout || self.default_idle_timeout.is_none()
    }

    /// Idle timeout used when a request names none.
    pub fn default_idle_timeout(&self) -> Option<Duration> {
        self.default_idle_timeout
    }

    /// Cap on live tokens per subject.
    pub fn max_live_tokens_per_subject(&self) -> Option<u32> {
        self.max_live_tokens_per_subject
    }

    /// Longest grace window a rotation may leave the old token.
    pub fn max_rotation_grace(&self) -> Duration {
        self.max_rotation_grace
    }

    /// The ceiling for `subject`, if any.
    pub fn ceiling_for(&self, subject: &str) -> Option<ScopeSet> {
        self.scope_ceiling.as_ref().and_then(|c| c.ceiling(subject))
    }

    /// Checks a requested TTL against the cap.
    pub(crate) fn check_ttl(&self, ttl: Duration) -> Result<(), PolicyViolation> {
        match self.max_ttl {
            Some(max) if ttl > max => Err(PolicyViolation::TtlExceedsMax {
                requested: ttl,
                max,
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn check_ceiling(
        &self,
        subject: &str,
        scopes: &ScopeSet,
    ) -> Result<(), PolicyViolation> {
        if let Some(ceiling) = self.ceiling_for(subject) {
            let beyond: Vec<Scope> = ceiling.uncovered(scopes).into_iter().cloned().collect();
            if !beyond.is_empty() {
                return Err(PolicyViolation::ScopeBeyondCeiling {
                    subject: subject.to_owned(),
                    scopes: beyond,
                });
            }
        }
        Ok(())
    }
}

/// Builds a [`Policy`].
#[derive(Debug, Clone)]
pub struct PolicyBuilder(Policy);

impl PolicyBuilder {
    /// TTL used when a request names none (default 30 days).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.0.default_ttl = ttl;
        self
    }

    /// Longest TTL a request may ask for (default 90 days).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.0.max_ttl = Some(ttl);
        self
    }

    /// Removes the TTL cap. Tokens still expire unless [`allow_non_expiring`](Self::allow_non_expiring).
    pub fn no_max_ttl(mut self) -> Self {
        self.0.max_ttl = None;
        self
    }

    /// Allows requests for tokens that never expire. Off by default; think twice.
    pub fn allow_non_expiring(mut self) -> Self {
        self.0.allow_non_expiring = true;
        self
    }

    /// Idle timeout used when a request names none (default 30 days).
    pub fn default_idle_timeout(mut self, timeout: Duration) -> Self {
        self.0.default_idle_timeout = Some(timeout);
        self
    }

    /// Lets a request opt out of the default idle timeout (`no_idle_timeout()`). Off by default:
    /// idle tokens die.
    pub fn allow_no_idle_timeout(mut self) -> Self {
        self.0.allow_no_idle_timeout = true;
        self
    }

    /// Tokens do not idle-expire unless a request asks for it.
    pub fn no_default_idle_timeout(mut self) -> Self {
        self.0.default_idle_timeout = None;
        self
    }

    /// Caps how many live (not revoked, not expired) tokens one subject may hold.
    pub fn max_live_tokens_per_subject(mut self, max: u32) -> Self {
        self.0.max_live_tokens_per_subject = Some(max);
        self
    }

    /// Longest grace window a rotation may leave the old token (default 1 day). Bounds how many
    /// live copies rotating again and again can create.
    pub fn max_rotation_grace(mut self, grace: Duration) -> Self {
        self.0.max_rotation_grace = grace;
        self
    }

    /// Sets the host's scope ceiling: the widest scopes each subject may be granted.
    pub fn scope_ceiling(mut self, ceiling: impl ScopeCeiling) -> Self {
        self.0.scope_ceiling = Some(Arc::new(ceiling));
        self
    }

    /// Validates and returns the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let p = self.0;
        if p.default_ttl.is_zero() {
            return Err(PolicyError::ZeroDuration {
                setting: "default_ttl",
            });
        }
        if p.max_ttl.is_some_and(|m| m.is_zero()) {
            return Err(PolicyError::ZeroDuration { setting: "max_ttl" });
        }
        if p.default_idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err(PolicyError::ZeroDuration {
                setting: "default_idle_timeout",
            });
        }
        if let Some(max) = p.max_ttl
            && p.default_ttl > max
        {
            return Err(PolicyError::DefaultTtlAboveMax {
                default: p.default_ttl,
                max,
            });
        }
        if p.max_live_tokens_per_subject == Some(0) {
            return Err(PolicyError::ZeroLiveTokens);
        }
        Ok(p)
    }
}

/// A policy that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A duration setting is zero.
    #[error("policy {setting} is zero; give a positive duration")]
    ZeroDuration {
        /// The setting.
        setting: &'static str,
    },
    /// The default TTL exceeds the maximum.
    #[error("policy default_ttl {} exceeds max_ttl {}", HumanDuration(*.default), HumanDuration(*.max))]
    DefaultTtlAboveMax {
        /// Default TTL.
        default: Duration,
        /// Maximum TTL.
        max: Duration,
    },
    /// `max_live_tokens_per_subject(0)` would forbid every token.
    #[error("policy max_live_tokens_per_subject is 0; it must be at least 1")]
    ZeroLiveTokens,
    /// The idle timeout is too short for the usage flush interval.
    #[error(
        "idle timeout {} is shorter than 10 x the usage flush interval {}; raise it to at least {}",
        HumanDuration(*.timeout), HumanDuration(*.flush_interval), HumanDuration(.flush_interval.saturating_mul(10))
    )]
    IdleTimeoutTooShort {
        /// The idle timeout.
        timeout: Duration,
        /// The manager's usage flush interval.
        flush_interval: Duration,
    },
}

/// A request refused by policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// Requested TTL exceeds the policy cap.
    #[error("ttl {} exceeds the policy maximum {}", HumanDuration(*.requested), HumanDuration(*.max))]
    TtlExceedsMax {
        /// Requested.
        requested: Duration,
        /// Allowed.
        max: Duration,
    },
    /// A non-expiring token was requested and the policy does not allow it.
    #[error(
        "non-expiring tokens are not allowed by policy; request a ttl (at most the policy maximum)"
    )]
    ExpiryRequired,
    /// Scopes beyond the subject's ceiling.
    #[error("scopes {} exceed the ceiling for subject {subject:?}", ScopeList(.scopes))]
    ScopeBeyondCeiling {
        /// Subject.
        subject: String,
        /// Requested scopes the ceiling does not cover.
        scopes: Vec<Scope>,
    },
    /// The subject already holds the maximum number of live tokens.
    #[error(
        "subject {subject:?} already holds {max} live token(s), the policy maximum; revoke one first"
    )]
    TooManyLiveTokens {
        /// Subject.
        subject: String,
        /// Policy maximum.
        max: u32,
    },
    /// A request opted out of idle expiry and the policy does not allow it.
    #[error(
        "tokens without an idle timeout are not allowed by policy; omit no_idle_timeout() or ask for a longer idle_timeout"
    )]
    IdleTimeoutRequired,
    /// A rotation asked for a longer grace window than the policy allows.
    #[error(
        "rotation grace {} exceeds the policy maximum {}",
        HumanDuration(*.requested), HumanDuration(*.max)
    )]
    GraceExceedsMax {
        /// Requested.
        requested: Duration,
        /// Allowed.
        max: Duration,
    },
    /// Idle timeout below the minimum the usage-tracking interval supports.
    #[error(
        "idle timeout {} is below the minimum {} (10 x the usage flush interval)",
        HumanDuration(*.requested), HumanDuration(*.min)
    )]
    IdleTimeoutTooShort {
        /// Requested.
        requested: Duration,
        /// Minimum.
        min: Duration,
    },
}

struct ScopeList<'a>(&'a [Scope]);

impl fmt::Display for ScopeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(s.as_str())?;
        }
        f.write_str("]")
    }
}

/// Formats a duration as the largest whole unit that divides it: `90d`, `12h`, `15m`, `42s`,
/// `1500ms`.
///
/// ```
/// use std::time::Duration;
/// use token_core::HumanDuration;
/// assert_eq!(HumanDuration(Duration::from_secs(400 * 86_400)).to_string(), "400d");
/// assert_eq!(HumanDuration(Duration::from_secs(5400)).to_string(), "90m");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() != 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let s = d.as_secs();
        match s {
            0 => f.write_str("0s"),
            s if s % DAY == 0 => write!(f, "{}d", s / DAY),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_messages_are_actionable() {
        let p = Policy::default();
        let err = p.check_ttl(Duration::from_secs(400 * DAY)).unwrap_err();
        assert_eq!(err.to_string(), "ttl 400d exceeds the policy maximum 90d");
        assert!(p.check_ttl(Duration::from_secs(90 * DAY)).is_ok());
    }

    #[test]
    fn ceiling_lists_scopes_beyond_it() {
        let p = Policy::builder()
            .scope_ceiling(|s: &str| (s == "bob").then(|| ScopeSet::parse("widgets:read").unwrap()))
            .build()
            .unwrap();
        let wide = ScopeSet::parse("widgets:read widgets:write").unwrap();
        let err = p.check_ceiling("bob", &wide).unwrap_err();
        assert_eq!(
            err.to_string(),
            "scopes [widgets:write] exceed the ceiling for subject \"bob\""
        );
        assert!(p.check_ceiling("alice", &wide).is_ok());
    }

    #[test]
    fn builder_rejects_inconsistent_settings() {
        assert_eq!(
            Policy::builder()
                .default_ttl(Duration::from_secs(100 * DAY))
                .build()
                .unwrap_err()
                .to_string(),
            "policy default_ttl 100d exceeds max_ttl 90d"
        );
        assert!(
            Policy::builder()
                .default_ttl(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            Policy::builder()
                .max_live_tokens_per_subject(0)
                .build()
                .is_err()
        );
    }

    #[test]
    fn human_duration_units() {
        assert_eq!(HumanDuration(Duration::from_secs(7200)).to_string(), "2h");
        assert_eq!(HumanDuration(Duration::from_secs(61)).to_string(), "61s");
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
    }
}

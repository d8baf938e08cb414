//! Retention: expired and revoked records are cleaned up on a schedule, unused tokens are
//! revoked, and old audit events are truncated behind a checkpoint.
//!
//! | setting | default | effect |
//! |---|---|---|
//! | `purge_expired_after` | 7 days | records expired for longer are deleted |
//! | `purge_revoked_after` | 30 days | records revoked for longer are deleted (kept a while for incident work) |
//! | `revoke_unused_after` | 90 days | live tokens unused (or never used) for longer are revoked |
//! | `audit_max_age` | 400 days | older audit events are deleted, oldest first, behind a checkpoint |
//! | `batch_size` | 1000 | each step of one sweep touches at most this many records |
//!
//! Audit events outlive the tokens they describe: purging a token keeps its events (a `Purged`
//! event is added), and audit retention is separate.
//!
//! ```
//! use std::time::Duration;
//! use token_core::Retention;
//! let retention = Retention::builder()
//!     .purge_revoked_after(Duration::from_secs(90 * 86_400))
//!     .revoke_unused_after(Duration::from_secs(30 * 86_400))
//!     .keep_audit_forever()
//!     .build()?;
//! assert_eq!(retention.batch_size(), 1000);
//! # Ok::<(), token_core::PolicyError>(())
//! ```

use std::time::Duration;

use crate::policy::PolicyError;

const DAY: u64 = 86_400;

/// How long records and events are kept. See the [module docs](self) for defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    purge_expired_after: Duration,
    purge_revoked_after: Duration,
    revoke_unused_after: Option<Duration>,
    audit_max_age: Option<Duration>,
    batch_size: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            purge_expired_after: Duration::from_secs(7 * DAY),
            purge_revoked_after: Duration::from_secs(30 * DAY),
            revoke_unused_after: Some(Duration::from_secs(90 * DAY)),
            audit_max_age: Some(Duration::from_secs(400 * DAY)),
            batch_size: 1000,
        }
    }
}

impl Retention {
    /// A builder starting from the defaults.
    pub fn builder() -> RetentionBuilder {
        RetentionBuilder(Self::default())
    }
    /// Delete records this long after they expired.
    pub fn purge_expired_after(&self) -> Duration {
        self.purge_expired_after
    }
    /// Delete records this long after they were revoked.
    pub fn purge_revoked_after(&self) -> Duration {
        self.purge_revoked_after
    }
    /// Revoke live tokens unused for this long.
    pub fn revoke_unused_after(&self) -> Option<Duration> {
        self.revoke_unused_after
    }
    /// Delete audit events older than this.
    pub fn audit_max_age(&self) -> Option<Duration> {
        self.audit_max_age
    }
    /// Most records one step of a sweep touches.
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }
}

/// Builds a [`Retention`].
#[derive(Debug, Clone, Copy)]
pub struct RetentionBuilder(Retention);

impl RetentionBuilder {
    /// Delete records this long after they expired (default 7 days).
    pub fn purge_expired_after(mut self, after: Duration) -> Self {
        self.0.purge_expired_after = after;
        self
    }
    /// Delete records this long after they were revoked (default 30 days).
    pub fn purge_revoked_after(mut self, after: Duration) -> Self {
        self.0.purge_revoked_after = after;
        self
    }
    /// Revoke live tokens unused for this long (default 90 days).
    pub fn revoke_unused_after(mut self, after: Duration) -> Self {
        self.0.revoke_unused_after = Some(after);
        self
    }
    /// Never revoke tokens for being unused.
    pub fn never_revoke_unused(mut self) -> Self {
        self.0.revoke_unused_after = None;
        self
    }
    /// Delete audit events older than this (default 400 days).
    pub fn audit_max_age(mut self, age: Duration) -> Self {
        self.0.audit_max_age = Some(age);
        self
    }
    /// Never delete audit events.
    pub fn keep_audit_forever(mut self) -> Self {
        self.0.audit_max_age = None;
        self
    }
    /// Most records one step of a sweep touches (default 1000).
    pub fn batch_size(mut self, size: u32) -> Self {
        self.0.batch_size = size;
        self
    }
    /// Validates and returns the retention.
    pub fn build(self) -> Result<Retention, PolicyError> {
        if self.0.batch_size == 0 {
            return Err(PolicyError::ZeroDuration {
                setting: "retention batch_size",
            });
        }
        if self.0.revoke_unused_after.is_some_and(|d| d.is_zero()) {
            return Err(PolicyError::ZeroDuration {
                setting: "revoke_unused_after",
            });
        }
        if self.0.audit_max_age.is_some_and(|d| d.is_zero()) {
            return Err(PolicyError::ZeroDuration {
                setting: "audit_max_age",
            });
        }
        Ok(self.0)
    }
}

/// What one sweep did. Every step runs even when an earlier one failed; the steps that failed
/// are in [`failures`](Self::failures), the counts are of the steps that ran.
///
/// ```
/// use token_core::{SweepReport, SweepStep};
/// let report = SweepReport::default();
/// assert!(report.is_empty() && report.failures.is_empty());
/// assert_eq!(SweepStep::FlushUsage.to_string(), "flush usage");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Tokens newly recorded as expired (an `Expired` event each).
    pub expired: usize,
    /// Tokens revoked for being unused (plus derived descendants).
    pub unused_revoked: usize,
    /// Records deleted (a `Purged` event each).
    pub purged: usize,
    /// Audit events deleted behind the checkpoint.
    pub audit_truncated: u64,
    /// Expired proof-of-possession claims deleted (DPoP `jti`s no proof can replay any more).
    pub proof_claims_purged: u64,
    /// The steps that failed, in order, with their errors.
    pub failures: Vec<SweepFailure>,
}

impl SweepReport {
    /// Whether the sweep changed nothing (and nothing failed).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A step of a sweep, in the order a sweep runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SweepStep {
    /// Writing coalesced usage, so idle decisions see the latest uses.
    FlushUsage,
    /// Recording newly expired tokens.
    MarkExpired,
    /// Revoking tokens unused for [`Retention::revoke_unused_after`].
    RevokeUnused,
    /// Deleting old revoked and expired records.
    Purge,
    /// Deleting expired proof-of-possession claims.
    PurgeProofClaims,
    /// Deleting audit events older than [`Retention::audit_max_age`].
    TruncateAudit,
}

impl std::fmt::Display for SweepStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FlushUsage => "flush usage",
            Self::MarkExpired => "mark expired",
            Self::RevokeUnused => "revoke unused",
            Self::Purge => "purge",
            Self::PurgeProofClaims => "purge proof claims",
            Self::TruncateAudit => "truncate audit",
        })
    }
}

/// A failed step of a sweep: which, and its error (as text, so the report stays comparable and
/// cloneable; the error never holds a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepFailure {
    /// The step.
    pub step: SweepStep,
    /// Its error.
    pub error: String,
}

impl std::fmt::Display for SweepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are the ones the module table and the README document (7, 30, 90, 400 days;
    /// 1,000 records per step).
    #[test]
    fn defaults_are_the_documented_ones() {
        let day = |n: u64| Duration::from_secs(n * 86_400);
        let retention = Retention::default();
        assert_eq!(retention.purge_expired_after(), day(7));
        assert_eq!(retention.purge_revoked_after(), day(30));
        assert_eq!(retention.revoke_unused_after(), Some(day(90)));
        assert_eq!(retention.audit_max_age(), Some(day(400)));
        assert_eq!(retention.batch_size(), 1000);
    }
}

//! The stored token record and its lifecycle state.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::credits::UseRefill;
use crate::format::TokenId;
use crate::keyring::{KeyId, TokenHash};
use crate::metadata::Metadata;
use crate::network::NetworkAllowlist;
use crate::rate_limit::RateLimits;
use crate::scope::ScopeSet;

/// Free-form key/value labels (`team=payments`), used to find and revoke tokens in bulk.
pub type Labels = BTreeMap<String, String>;

/// Everything a store keeps about a token. It holds the keyed hash of the secret, never the secret.
///
/// This struct is the storage contract between the manager and store implementations, so its fields
/// are public (stores build it from rows) and it is not `#[non_exhaustive]`: a new field is a
/// change of the contract every store must follow (the schema grows with it), announced in the
/// changelog. What an API shows of a token is [`TokenView`](crate::TokenView)
/// ([`view_at`](Self::view_at)), which is `#[non_exhaustive]` and `Serialize`. Read-only users get it from
/// [`TokenManager::inspect`](crate::TokenManager::inspect) and `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public id and lookup key.
    pub id: TokenId,
    /// Keyed hash of `id ‖ secret`.
    pub hash: TokenHash,
    /// The keyring key that made `hash`.
    pub hash_key_id: KeyId,
    /// The prefix the token string carries.
    pub prefix: String,
    /// Whom the token acts for (a user, service account, ...).
    pub subject: String,
    /// What the token may do.
    pub scopes: ScopeSet,
    /// Human-readable name.
    pub name: Option<String>,
    /// Longer description.
    pub description: Option<String>,
    /// Labels for search and bulk revocation.
    pub labels: Labels,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// Who issued it.
    pub created_by: Option<String>,
    /// First instant at which it is no longer valid; `None` only if the policy allows non-expiring
    /// tokens.
    pub expires_at: Option<OffsetDateTime>,
    /// Earliest instant at which it is valid.
    pub not_before: Option<OffsetDateTime>,
    /// A token unused for this long is no longer valid.
    pub idle_timeout: Option<Duration>,
    /// Last successful validation as recorded in the store (coalesced; see the manager docs).
    pub last_used_at: Option<OffsetDateTime>,
    /// Successful validations recorded in the store; for a token with a
    /// [`use_refill`](Self::use_refill), those of the current period (see
    /// [`uses_at`](Self::uses_at)).
    pub use_count: u64,
    /// Most successful validations allowed (per refill period when it has a `use_refill`).
    pub max_uses: Option<u64>,
    /// When the `max_uses` credits come back ([`UseRefill`]); `None`: never (a lifetime limit).
    /// Only set together with `max_uses`.
    pub use_refill: Option<UseRefill>,
    /// The start of the next refill period: from then on `use_count` counts as zero until the
    /// store applies the refill with the next use. Set exactly when `use_refill` is.
    pub next_refill_at: Option<OffsetDateTime>,
    /// The token's own named rate limits (empty: none), enforced by `token-ratelimit` and
    /// token-tower. Derived tokens inherit them and may only tighten them.
    pub rate_limits: RateLimits,
    /// The token this one was derived from.
    pub parent_id: Option<TokenId>,
    /// The root of the derivation tree (its own id for a root token). Rotation keeps the family.
    pub family_id: TokenId,
    /// The token this one replaced by rotation.
    pub rotated_from: Option<TokenId>,
    /// The token that replaced this one by rotation (at most one).
    pub rotated_to: Option<TokenId>,
    /// Set once revoked.
    pub revocation: Option<Revocation>,
    /// Set while suspended ([`TokenManager::suspend`](crate::TokenManager::suspend)): refused
    /// like a revoked token until resumed. The clock keeps running (expiry, idle time).
    pub suspended_at: Option<OffsetDateTime>,
    /// The host's data on the token, never interpreted.
    pub metadata: Option<Metadata>,
    /// The networks the token may be used from; `None`: any address.
    pub allowed_networks: Option<NetworkAllowlist>,
    /// The key the token is bound to (DPoP `cnf.jkt`, see [`binding`](crate::binding)): it
    /// validates only with a proof signed by that key. Fixed at issue; derived tokens and
    /// rotation keep it.
    pub dpop_jkt: Option<crate::binding::KeyThumbprint>,
}

/// When, why and by whom a token was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When.
    pub at: OffsetDateTime,
    /// Why (free text supplied by the caller).
    pub reason: String,
    /// Who.
    pub actor: Option<String>,
}

/// A token's lifecycle state at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenState {
    /// Valid (subject to scope checks).
    Active,
    /// Revoked.
    Revoked,
    /// Past `expires_at`.
    Expired,
    /// Suspended (reversibly); refused like a revoked token until resumed.
    Suspended,
    /// Before `not_before`.
    NotYetValid,
    /// Unused for longer than its idle timeout.
    IdleExpired,
    /// `use_count` reached `max_uses`.
    UsedUp,
}

impl TokenState {
    /// Lower-case name, as used in filters and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Suspended => "suspended",
            Self::NotYetValid => "not_yet_valid",
            Self::IdleExpired => "idle_expired",
            Self::UsedUp => "used_up",
        }
    }
}

impl std::fmt::Display for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TokenRecord {
    /// The state at `now`, in precedence order revoked, expired, suspended, not yet valid, idle,
    /// used up.
    pub fn state_at(&self, now: OffsetDateTime) -> TokenState {
        self.state_with_last_use(now, self.last_used_at)
    }

    /// Like [`state_at`](Self::state_at), with a `last_used_at` that may be fresher than the stored
    /// one (the manager's coalescing buffer).
    pub fn state_with_last_use(
        &self,
        now: OffsetDateTime,
        last_used_at: Option<OffsetDateTime>,
    ) -> TokenState {
        if self.revocation.is_some() {
            TokenState::Revoked
        } else if self.expires_at.is_some_and(|e| now >= e) {
            TokenState::Expired
        } else if self.suspended_at.is_some() {
            TokenState::Suspended
        } else if self.not_before.is_some_and(|nb| now < nb) {
            TokenState::NotYetValid
        } else if self.is_idle_at(now, last_used_at) {
            TokenState::IdleExpired
        } else if self.max_uses.is_some_and(|max| self.uses_at(now) >= max) {
            TokenState::UsedUp
        } else {
            TokenState::Active
        }
    }

    /// The instant idleness is measured from: last use, else `not_before`, else issue time.
    pub fn idle_since(&self, last_used_at: Option<OffsetDateTime>) -> OffsetDateTime {
        last_used_at
            .or(self.last_used_at)
            .into_iter()
            .chain(self.not_before)
            .chain(std::iter::once(self.created_at))
            .max()
            .unwrap_or(self.created_at)
    }

    fn is_idle_at(&self, now: OffsetDateTime, last_used_at: Option<OffsetDateTime>) -> bool {
        let Some(timeout) = self.idle_timeout else {
            return false;
        };
        let since = self.idle_since(last_used_at.max(self.last_used_at));
        // `now - since >= timeout` rather than `now >= since + timeout`: a difference of two
        // instants is cheaper than normalizing a sum, and cannot overflow here.
        match time::Duration::try_from(timeout) {
            Ok(timeout) => now - since >= timeout,
            Err(_) => false,
        }
    }

    /// The uses that count against `max_uses` at `now`: `use_count`, or zero once a refill is
    /// due (`now >= next_refill_at`; the store resets the count with the next use).
    pub fn uses_at(&self, now: OffsetDateTime) -> u64 {
        if self.next_refill_at.is_some_and(|at| now >= at) {
            0
        } else {
            self.use_count
        }
    }

    /// The start of the period after the one `now` falls in, for a token whose uses refill:
    /// the boundaries are `next_refill_at` plus whole periods (monthly: the first of each
    /// month), so a successor, which keeps `next_refill_at`, keeps its predecessor's schedule
    /// and a period is never cut short.
    pub fn next_refill_after(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let refill = self.use_refill?;
        Some(refill.next_after(self.next_refill_at.unwrap_or(self.created_at), now))
    }

    /// The uses left at `now` (`None`: no use limit).
    pub fn remaining_uses_at(&self, now: OffsetDateTime) -> Option<u64> {
        self.max_uses
            .map(|max| max.saturating_sub(self.uses_at(now)))
    }

    /// Whether the token is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revocation.is_some()
    }
}

#[cfg(test)]
impl TokenRecord {
    /// A live root record for unit tests: prefix `acme`, subject `user:42`, scope
    /// `widgets:read`, no expiry, no limits. Tests set the fields they are about.
    pub(crate) fn for_tests(
        id: TokenId,
        hash: TokenHash,
        hash_key_id: KeyId,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            hash,
            hash_key_id,
            prefix: "acme".into(),
            subject: "user:42".into(),
            scopes: ScopeSet::parse("widgets:read").unwrap_or_default(),
            name: None,
            description: None,
            labels: Labels::new(),
            created_at,
            created_by: None,
            expires_at: None,
            not_before: None,
            idle_timeout: None,
            last_used_at: None,
            use_count: 0,
            max_uses: None,
            use_refill: None,
            next_refill_at: None,
            rate_limits: RateLimits::none(),
            parent_id: None,
            family_id: id,
            rotated_from: None,
            rotated_to: None,
            revocation: None,
            suspended_at: None,
            metadata: None,
            allowed_networks: None,
            dpop_jkt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record() -> TokenRecord {
        TokenRecord {
            expires_at: Some(datetime!(2030-01-02 0:00 UTC)),
            idle_timeout: Some(Duration::from_secs(3600)),
            max_uses: Some(2),
            ..TokenRecord::for_tests(
                TokenId::from_bytes([1; 16]),
                TokenHash::from_bytes([0; 32]),
                KeyId::new(1),
                datetime!(2030-01-01 0:00 UTC),
            )
        }
    }

    #[test]
    fn expiry_is_exclusive() {
        let r = record();
        let mut at = datetime!(2030-01-02 0:00 UTC) - time::Duration::microseconds(1);
        assert_eq!(r.state_with_last_use(at, Some(at)), TokenState::Active);
        at += time::Duration::microseconds(1);
        assert_eq!(r.state_with_last_use(at, Some(at)), TokenState::Expired);
    }

    #[test]
    fn idle_measured_from_freshest_use() {
        let r = record();
        let t0 = datetime!(2030-01-01 0:00 UTC);
        assert_eq!(
            r.state_at(t0 + time::Duration::minutes(59)),
            TokenState::Active
        );
        assert_eq!(
            r.state_at(t0 + time::Duration::minutes(60)),
            TokenState::IdleExpired
        );
        let used = t0 + time::Duration::minutes(30);
        assert_eq!(
            r.state_with_last_use(t0 + time::Duration::minutes(80), Some(used)),
            TokenState::Active
        );
    }

    #[test]
    fn precedence_and_use_limit() {
        let mut r = record();
        let t = datetime!(2030-01-01 0:10 UTC);
        r.use_count = 2;
        assert_eq!(r.state_at(t), TokenState::UsedUp);
        r.suspended_at = Some(t);
        assert_eq!(r.state_at(t), TokenState::Suspended);
        assert_eq!(
            r.state_at(datetime!(2030-01-02 0:00 UTC)),
            TokenState::Expired,
            "suspension does not stop the clock"
        );
        r.revocation = Some(Revocation {
            at: t,
            reason: "x".into(),
            actor: None,
        });
        assert_eq!(
            r.state_at(datetime!(2031-01-01 0:00 UTC)),
            TokenState::Revoked
        );
    }
}

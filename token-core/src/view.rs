//! [`TokenView`]: the public, serializable view of a token record (no hash, no key id), so an
//! admin API answers `Json(record.view())` instead of hand-written JSON.

use serde::Serialize;
use time::OffsetDateTime;

use crate::metadata::Metadata;
use crate::rate_limit::RateLimits;
use crate::record::{Labels, TokenRecord, TokenState};

/// What an admin may see of a token: every field of its [`TokenRecord`] except the secret's
/// hash and the hashing key's id. Times are RFC 3339, ids base62, scopes and networks lists of
/// strings, the idle timeout in seconds. Fields may be added (it is `#[non_exhaustive]`).
///
/// ```
/// use token_core::{HashKey, IssueRequest, KeyId, Keyring, ScopeSet, TokenManager};
/// use token_store_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tokens = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
///     .build()?;
/// let issued = tokens.issue(IssueRequest::new("user:1", ScopeSet::parse("widgets:read")?)).await?;
/// let json = serde_json::to_value(issued.record.view_at(tokens.clock().now()))?;
/// assert_eq!(json["state"], "active");
/// assert_eq!(json["subject"], "user:1");
/// assert_eq!(json["scopes"], serde_json::json!(["widgets:read"]));
/// assert!(json.get("hash").is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TokenView {
    /// Public id.
    pub id: String,
    /// The prefix the token string carries.
    pub prefix: String,
    /// Whom it acts for.
    pub subject: String,
    /// Its state at the instant the view was taken.
    pub state: TokenState,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// The host's metadata.
    pub metadata: Option<Metadata>,
    /// The networks it may be used from (`None`: any).
    pub allowed_cidrs: Option<Vec<String>>,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who issued it.
    pub created_by: Option<String>,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it becomes valid.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// Idle timeout in seconds.
    pub idle_timeout_seconds: Option<u64>,
    /// Last recorded use.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Recorded uses (of the current period for a refilling token).
    pub use_count: u64,
    /// Use limit (per period for a refilling token).
    pub max_uses: Option<u64>,
    /// Uses left at the instant the view was taken (`None`: no use limit).
    pub remaining_uses: Option<u64>,
    /// When the credits come back (`"monthly"`, `"every 86400s"`), if they do.
    pub use_refill: Option<String>,
    /// When the next period begins (with `use_refill`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_refill_at: Option<OffsetDateTime>,
    /// The token's named rate limits (`[{"name", "limit", "per_seconds"}]`; empty: none).
    pub rate_limits: RateLimits,
    /// The token it was derived from.
    pub parent_id: Option<String>,
    /// Its family's root.
    pub family_id: String,
    /// The token it replaced.
    pub rotated_from: Option<String>,
    /// The token that replaced it.
    pub rotated_to: Option<String>,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Why.
    pub revoke_reason: Option<String>,
    /// By whom.
    pub revoked_by: Option<String>,
    /// When it was suspended (while suspended).
    #[serde(with = "time::serde::rfc3339::option")]
    pub suspended_at: Option<OffsetDateTime>,
    /// The key it is bound to (DPoP `cnf.jkt`), if any.
    pub dpop_jkt: Option<String>,
}

impl TokenRecord {
    /// The public, serializable view of this record, with its state at `now`.
    pub fn view_at(&self, now: OffsetDateTime) -> TokenView {
        let revocation = self.revocation.as_ref();
        TokenView {
            id: self.id.to_string(),
            prefix: self.prefix.clone(),
            subject: self.subject.clone(),
            state: self.state_at(now),
            scopes: self.scopes.iter().map(ToString::to_string).collect(),
            name: self.name.clone(),
            description: self.description.clone(),
            labels: self.labels.clone(),
            metadata: self.metadata.clone(),
            allowed_cidrs: self
                .allowed_networks
                .as_ref()
                .map(|n| n.networks().collect()),
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            expires_at: self.expires_at,
            not_before: self.not_before,
            idle_timeout_seconds: self.idle_timeout.map(|d| d.as_secs()),
            last_used_at: self.last_used_at,
            use_count: self.uses_at(now),
            max_uses: self.max_uses,
            remaining_uses: self.remaining_uses_at(now),
            use_refill: self.use_refill.map(|r| r.to_string()),
            next_refill_at: match self.next_refill_at {
                Some(at) if now >= at => self.next_refill_after(now),
                pending => pending,
            },
            rate_limits: self.rate_limits.clone(),
            parent_id: self.parent_id.map(|id| id.to_string()),
            family_id: self.family_id.to_string(),
            rotated_from: self.rotated_from.map(|id| id.to_string()),
            rotated_to: self.rotated_to.map(|id| id.to_string()),
            revoked_at: revocation.map(|r| r.at),
            revoke_reason: revocation.map(|r| r.reason.clone()),
            revoked_by: revocation.and_then(|r| r.actor.clone()),
            suspended_at: self.suspended_at,
            dpop_jkt: self.dpop_jkt.as_ref().map(ToString::to_string),
        }
    }
}

//! [`TokenUpdate`]: a change to a token after issue that can only narrow what it grants.

use std::time::Duration;

use time::OffsetDateTime;

use crate::credits::UseRefill;
use crate::metadata::Metadata;
use crate::network::NetworkAllowlist;
use crate::rate_limit::RateLimits;
use crate::record::Labels;
use crate::scope::ScopeSet;

/// What [`TokenManager::update`](crate::TokenManager::update) changes on a token. Fields left
/// unset keep their value.
///
/// Name, description, labels and metadata change freely. Everything that grants may only
/// narrow: the scopes must be covered by the current ones, the expiry may only move earlier,
/// `max_uses` only go down, the idle timeout only shorten, the network allowlist only shrink
/// (and a token without one may get one), a refill only lengthen (or stop), rate limits only
/// tighten. A widening change is refused as a whole with
/// [`Error::UpdateWidens`](crate::Error::UpdateWidens), naming the field; to widen, issue a new
/// token. The update narrows the token's derived descendants with it, so no child is ever wider
/// than its parent.
///
/// ```
/// use std::time::Duration;
/// use token_core::{ScopeSet, TokenUpdate};
///
/// let update = TokenUpdate::new()
///     .name("ci runner (read only)")
///     .scopes(ScopeSet::parse("repo:acme/site:read")?)
///     .expires_in(Duration::from_secs(7 * 86_400))
///     .allowed_networks("10.20.0.0/16".parse()?);
/// assert!(!update.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenUpdate {
    /// New name (`Some(None)` clears it).
    pub name: Option<Option<String>>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New labels (replacing all of them).
    pub labels: Option<Labels>,
    /// New metadata (`Some(None)` clears it).
    pub metadata: Option<Option<Metadata>>,
    /// Narrower scopes.
    pub scopes: Option<ScopeSet>,
    /// An earlier expiry, as an instant.
    pub expires_at: Option<OffsetDateTime>,
    /// An earlier expiry, counted from the moment the update is applied.
    pub expires_in: Option<Duration>,
    /// A lower use limit.
    pub max_uses: Option<u64>,
    /// A shorter idle timeout.
    pub idle_timeout: Option<Duration>,
    /// A narrower network allowlist.
    pub allowed_networks: Option<NetworkAllowlist>,
    /// A refill no more generous (`Some(None)` stops refilling; see
    /// [`refill_uses`](Self::refill_uses)).
    pub use_refill: Option<Option<UseRefill>>,
    /// Tighter rate limits (every current limit kept, none looser; more may be added).
    pub rate_limits: Option<RateLimits>,
}

impl TokenUpdate {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Some(name.into()));
        self
    }

    /// Clears the name.
    pub fn clear_name(mut self) -> Self {
        self.name = Some(None);
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(Some(description.into()));
        self
    }

    /// Clears the description.
    pub fn clear_description(mut self) -> Self {
        self.description = Some(None);
        self
    }

    /// Replaces the labels.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = Some(labels);
        self
    }

    /// Replaces the metadata.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(Some(metadata));
        self
    }

    /// Removes the metadata.
    pub fn clear_metadata(mut self) -> Self {
        self.metadata = Some(None);
        self
    }

    /// Narrows the scopes (the new set must be covered by the current one).
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Moves the expiry earlier, to `at`.
    pub fn expires_at(mut self, at: OffsetDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Moves the expiry earlier, to `ttl` from when the update is applied.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires_in = Some(ttl);
        self
    }

    /// Lowers the use limit.
    pub fn max_uses(mut self, max_uses: u64) -> Self {
        self.max_uses = Some(max_uses);
        self
    }

    /// Shortens the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Narrows the network allowlist (or sets one on a token without).
    pub fn allowed_networks(mut self, networks: NetworkAllowlist) -> Self {
        self.allowed_networks = Some(networks);
        self
    }

    /// Sets a refill period at least as long as the current one. A token with a lifetime use
    /// limit cannot gain a refill; a token without a use limit may, together with
    /// [`max_uses`](Self::max_uses).
    pub fn refill_uses(mut self, refill: UseRefill) -> Self {
        self.use_refill = Some(Some(refill));
        self
    }

    /// Stops refilling: the credits left at the update are the last ones.
    pub fn stop_refill(mut self) -> Self {
        self.use_refill = Some(None);
        self
    }

    /// Tightens the rate limits (each current one kept and no looser; more may be added).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = Some(limits);
        self
    }

    /// Whether the update sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

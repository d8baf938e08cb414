//! Revocation: by selector (`revoke`), by possession of the token string (`revoke_presented`,
//! RFC 7009 style), and introspection (RFC 7662 style), which shares the possession check.

use std::sync::Arc;

use super::{TokenManager, ValidatedToken};
use crate::audit::Context;
use crate::error::Error;
use crate::format::TokenId;
use crate::record::{TokenRecord, TokenState};
use crate::store::{RevokeRequest, RevokeSelector, StoreError, event_token_ids};

use tracing::Instrument as _;

use super::spans;

impl TokenManager {
    /// Revokes what `selector` matches, plus everything derived from it. Idempotent: returns the
    /// ids revoked by this call (already-revoked tokens are not repeated). Once this returns, no
    /// validation through this store accepts the tokens. [`RevokeSelector::IssuedBefore`] also
    /// sets the store's cut-off: an issue created before it that commits later is refused with
    /// [`Error::BeforeRevocationCutoff`]; a cut-off after now is [`Error::InvalidRequest`].
    pub async fn revoke(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
    ) -> Result<Vec<TokenId>, Error> {
        self.revoke_with(selector, reason, &Context::new()).await
    }

    /// [`revoke`](Self::revoke) with the caller's context for audit events.
    pub async fn revoke_with(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        let span = spans::revoke(&selector);
        let result = self
            .revoke_checked(selector, reason.into(), ctx)
            .instrument(span.clone())
            .await;
        spans::revoked(&span, &result);
        result
    }

    async fn revoke_checked(
        &self,
        selector: RevokeSelector,
        reason: String,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        let now = self.now();
        if let RevokeSelector::IssuedBefore(cutoff) = selector
            && cutoff > now
        {
            // The store keeps the cut-off and refuses every token created before it: a future
            // one would block all issuing until then.
            return Err(Error::InvalidRequest {
                field: "selector",
                problem: format!(
                    "IssuedBefore({cutoff}) is after now ({now}); it would refuse every issue until then. Use IssuedBefore(now) or earlier"
                ),
            });
        }
        let request = RevokeRequest::new(selector, now, reason, ctx.clone());
        self.revoke_request(&request).await
    }

    /// Commits `request` and hands the sink exactly the events the store wrote.
    pub(super) async fn revoke_request(
        &self,
        request: &RevokeRequest,
    ) -> Result<Vec<TokenId>, Error> {
        let events = match self.inner.store.revoke(request).await {
            Ok(events) => events,
            Err(error) => {
                // The revocation may have committed before the error: drop every cached copy.
                self.flush_cached();
                return Err(error.into());
            }
        };
        let revoked = event_token_ids(&events);
        self.invalidate_revoked(&request.selector, &revoked);
        self.to_sink_all(&events);
        Ok(revoked)
    }

    /// Drops from the cache what `selector` may have ended: the ids this call revoked, and also
    /// matches that were *already* revoked (by a concurrent call, another process, or an earlier
    /// call cancelled after its commit), whose cached copies may not have been dropped yet. The
    /// store reports only what this call changed, so: a token revocation drops the token and its
    /// cached family; a bulk selector drops everything (bulk revocations are rare, and the cache
    /// refills from the store).
    fn invalidate_revoked(&self, selector: &RevokeSelector, revoked: &[TokenId]) {
        let Some(cache) = &self.inner.cache else {
            return;
        };
        match selector {
            RevokeSelector::Token(id) => {
                cache.records.invalidate(revoked.iter().copied());
                cache.records.invalidate_family_of(*id);
            }
            // Retention's batches: what they find already revoked was revoked by a change whose
            // own invalidation (here or through the feed) covers it.
            RevokeSelector::UnusedSince(_) => cache.records.invalidate(revoked.iter().copied()),
            _ => cache.records.flush(),
        }
    }

    /// Revokes the token presented as a string (RFC 7009 style: possession is enough to revoke,
    /// so anyone holding a leaked token can kill it). Returns the revoked ids (the token and its
    /// derived descendants); an unknown, malformed or wrong-secret string revokes nothing and is
    /// not an error.
    pub async fn revoke_presented(
        &self,
        token: &str,
        reason: impl Into<String>,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        let Some(record) = self.possessed(token).await? else {
            return Ok(Vec::new());
        };
        self.revoke_with(RevokeSelector::Token(record.id), reason, ctx)
            .await
    }

    /// Token introspection (RFC 7662 style): the identity if `token` is active now, `None` for
    /// anything else (malformed, unknown, wrong secret, revoked, expired, idle, used up). Unlike
    /// [`validate`](Self::validate) it neither records a use nor consumes one of `max_uses`, and
    /// writes no audit event. Errors only when the store fails.
    ///
    /// Introspection answers for the token, not for a request: it does not check a network
    /// allowlist (it has no caller's address; the resource server that asks must check
    /// [`TokenRecord::allowed_networks`]) nor a key binding (the proof is the resource
    /// server's to verify against [`TokenRecord::dpop_jkt`]).
    pub async fn introspect(&self, token: &str) -> Result<Option<ValidatedToken>, StoreError> {
        let Some(record) = self.possessed(token).await? else {
            return Ok(None);
        };
        let active = self.state_of(&record, self.now()) == TokenState::Active;
        Ok(active.then(|| Self::validated(record)))
    }

    /// Looks up a presented token and proves possession, without recording a use or an event.
    /// `None` for anything that is not a token of this manager held with its secret.
    async fn possessed(&self, token: &str) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let parsed = match self.parse_own(token) {
            Ok(parsed) => parsed,
            Err(_) => return Ok(None),
        };
        let Some(record) = self.lookup(parsed.id(), self.now()).await?.record else {
            return Ok(None);
        };
        Ok(self
            .verify_possession(&parsed, &record)
            .ok()
            .map(|()| record))
    }
}

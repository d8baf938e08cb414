//! Managing tokens after issue: `suspend` and `resume` (reversible, by selector) and `update`
//! (in place, only ever narrowing, descendants narrowed with it).

use std::time::Duration;

use super::TokenManager;
use super::spans;
use crate::audit::Context;
use crate::error::Error;
use crate::format::TokenId;
use crate::record::{TokenRecord, TokenState};
use crate::request::check_descriptive;
use crate::store::{
    RevokeSelector, SuspendRequest, Suspension, UpdateOutcome, UpdateToken, event_token_ids,
};
use crate::update::TokenUpdate;

use tracing::Instrument as _;

impl TokenManager {
    /// Suspends what `selector` matches ([`RevokeSelector::Token`], `Subject`, `Family` or
    /// `Label`) and every token derived from a match: each is refused like a revoked one (the
    /// same public answer, reason code `suspended`) until [`resume`](Self::resume)d, announced
    /// on the revocation feed (caches drop it) and audited (`Suspended`, with `reason`). The
    /// clock keeps running: expiry and idle time are not paused. Returns the ids suspended by
    /// this call (already suspended or revoked tokens are not repeated).
    ///
    /// ```
    /// use token_core::{HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, ScopeSet, TokenManager};
    /// use token_store_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tokens = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let ci = tokens.issue(IssueRequest::new("svc:ci", ScopeSet::parse("deploy")?)).await?;
    /// let secret = ci.token.expose_secret();
    /// tokens.suspend(RevokeSelector::Token(ci.token.id()), "investigating INC-42").await?;
    /// assert!(tokens.validate(secret, &[]).await.is_err());
    /// tokens.resume(RevokeSelector::Token(ci.token.id()), "INC-42 closed").await?;
    /// assert!(tokens.validate(secret, &[]).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn suspend(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
    ) -> Result<Vec<TokenId>, Error> {
        self.suspend_with(selector, reason, &Context::new()).await
    }

    /// [`suspend`](Self::suspend) with the caller's context for audit events.
    pub async fn suspend_with(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        self.change_suspension(Suspension::Suspend, selector, reason.into(), ctx)
            .await
    }

    /// Resumes suspended tokens `selector` matches, and their suspended descendants (whatever
    /// suspended them: a descendant suspended on its own is resumed with its ancestor, so
    /// resume the narrowest selector that covers what the investigation cleared). Resuming
    /// never revives a token something else ended: a revoked, expired or rotated-out token stays
    /// refused. For [`RevokeSelector::Token`] of such a token the answer says so:
    /// [`Error::NotActive`] with its state (or [`Error::NotFound`]); a token that is not
    /// suspended is left alone (`Ok` with no ids). Returns the ids resumed.
    pub async fn resume(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
    ) -> Result<Vec<TokenId>, Error> {
        self.resume_with(selector, reason, &Context::new()).await
    }

    /// [`resume`](Self::resume) with the caller's context for audit events.
    pub async fn resume_with(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        self.change_suspension(Suspension::Resume, selector, reason.into(), ctx)
            .await
    }

    async fn change_suspension(
        &self,
        action: Suspension,
        selector: RevokeSelector,
        reason: String,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        let operation = match action {
            Suspension::Suspend => "suspend",
            Suspension::Resume => "resume",
        };
        let span = spans::manage(operation, spans::selector_kind(&selector));
        let result = self
            .change_suspension_checked(action, selector, reason, ctx)
            .instrument(span.clone())
            .await;
        spans::managed(&span, operation, &result, Vec::len);
        result
    }

    async fn change_suspension_checked(
        &self,
        action: Suspension,
        selector: RevokeSelector,
        reason: String,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        match selector {
            RevokeSelector::Token(_)
            | RevokeSelector::Subject(_)
            | RevokeSelector::Family(_)
            | RevokeSelector::Label { .. } => {}
            _ => {
                return Err(Error::InvalidRequest {
                    field: "selector",
                    problem: "suspension takes a token, subject, family or label selector"
                        .to_owned(),
                });
            }
        }
        let request =
            SuspendRequest::new(selector.clone(), action, self.now(), reason, ctx.clone());
        let events = match self.inner.store.suspend(&request).await {
            Ok(events) => events,
            Err(error) => {
                // It may have committed before the error: drop every cached copy.
                self.flush_cached();
                return Err(error.into());
            }
        };
        let changed = event_token_ids(&events);
        if let Some(cache) = &self.inner.cache {
            match selector {
                RevokeSelector::Token(id) => {
                    cache.records.invalidate(changed.iter().copied());
                    cache.records.invalidate_family_of(id);
                }
                _ => cache.records.flush(),
            }
        }
        self.to_sink_all(&events);
        if changed.is_empty()
            && action == Suspension::Resume
            && let RevokeSelector::Token(id) = selector
        {
            // Say why nothing was resumed when something else ended the token.
            let record = self.inner.store.get(id).await?.ok_or(Error::NotFound(id))?;
            if let Some(state) = ended(&record, request.at) {
                return Err(Error::NotActive { id, state });
            }
        }
        Ok(changed)
    }

    /// Changes `id` in place, only ever narrowing (see [`TokenUpdate`]), and narrows its derived
    /// descendants with it, in one store transaction with an `Updated` event per changed token
    /// (the changed fields with old and new values; metadata by key names only). Caches drop the
    /// changed tokens (here at once, elsewhere through the feed). Returns the token as updated.
    ///
    /// Refusals: a widening change is [`Error::UpdateWidens`] naming the field (nothing is
    /// written); a revoked or expired token is [`Error::NotActive`]; an unknown id
    /// [`Error::NotFound`]; an invalid name, description or label [`Error::InvalidRequest`].
    ///
    /// ```
    /// use token_core::{Error, HashKey, IssueRequest, KeyId, Keyring, ScopeSet, TokenManager, TokenUpdate};
    /// use token_store_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tokens = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let issued = tokens.issue(IssueRequest::new("svc:ci", ScopeSet::parse("repo:*:read")?)).await?;
    /// let id = issued.token.id();
    /// let narrowed = tokens
    ///     .update(id, TokenUpdate::new().scopes(ScopeSet::parse("repo:site:read")?).name("site reader"))
    ///     .await?;
    /// assert_eq!(narrowed.scopes.to_string(), "repo:site:read");
    /// let widen = tokens.update(id, TokenUpdate::new().scopes(ScopeSet::parse("repo:*")?)).await;
    /// assert!(matches!(widen, Err(Error::UpdateWidens { field: "scopes", .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update(&self, id: TokenId, update: TokenUpdate) -> Result<TokenRecord, Error> {
        self.update_with(id, update, &Context::new()).await
    }

    /// [`update`](Self::update) with the caller's context for audit events.
    pub async fn update_with(
        &self,
        id: TokenId,
        update: TokenUpdate,
        ctx: &Context,
    ) -> Result<TokenRecord, Error> {
        let span = spans::manage("update", &id.to_string());
        let result = self
            .update_checked(id, update, ctx)
            .instrument(span.clone())
            .await;
        spans::managed(&span, "update", &result, |_| 1);
        result
    }

    async fn update_checked(
        &self,
        id: TokenId,
        update: TokenUpdate,
        ctx: &Context,
    ) -> Result<TokenRecord, Error> {
        check_update(&update)?;
        // Coalesced usage first: narrowing `max_uses` must see the uses already made.
        self.flush_usage_of(id).await?;
        let request = UpdateToken::new(id, update, self.now(), ctx.clone());
        let outcome = match self.inner.store.update(&request).await {
            Ok(outcome) => outcome,
            Err(error) => {
                self.flush_cached();
                return Err(error.into());
            }
        };
        match outcome {
            UpdateOutcome::Updated { record, events } => {
                if let Some(cache) = &self.inner.cache {
                    cache.records.invalidate(event_token_ids(&events));
                    cache.records.invalidate_family_of(id);
                }
                self.to_sink_all(&events);
                Ok(*record)
            }
            UpdateOutcome::NotFound => Err(Error::NotFound(id)),
            UpdateOutcome::NotActive(state) => Err(Error::NotActive { id, state }),
            UpdateOutcome::Rotated { successor } => Err(Error::AlreadyRotated { id, successor }),
            UpdateOutcome::Widens(widening) => Err(Error::UpdateWidens {
                field: widening.field,
                problem: widening.problem,
            }),
        }
    }
}

/// What ended `record` at `at` other than a suspension: revoked, expired or rotated out.
fn ended(record: &TokenRecord, at: time::OffsetDateTime) -> Option<TokenState> {
    match record.state_at(at) {
        state @ (TokenState::Revoked | TokenState::Expired) => Some(state),
        _ if record.rotated_to.is_some() => Some(TokenState::Expired),
        _ => None,
    }
}

/// The limits an update's own fields must keep (the same as at issue).
fn check_update(update: &TokenUpdate) -> Result<(), Error> {
    let name = update.name.as_ref().and_then(Option::as_deref);
    let description = update.description.as_ref().and_then(Option::as_deref);
    let no_labels = crate::record::Labels::new();
    check_descriptive(
        name,
        description,
        update.labels.as_ref().unwrap_or(&no_labels),
    )?;
    let invalid = |field: &'static str, problem: &str| Error::InvalidRequest {
        field,
        problem: problem.to_owned(),
    };
    if update.max_uses == Some(0) {
        return Err(invalid(
            "max_uses",
            "is 0; it must be at least 1 (revoke the token to stop it)",
        ));
    }
    if update.idle_timeout.is_some_and(|d| d.is_zero()) {
        return Err(invalid("idle_timeout", "is zero; it must be positive"));
    }
    if update
        .expires_in
        .is_some_and(|d| d > Duration::from_secs(100 * 365 * 86_400))
    {
        return Err(invalid("expires_in", "exceeds 100 years"));
    }
    if update.expires_in.is_some_and(|d| d.is_zero()) {
        return Err(invalid(
            "expires_in",
            "is zero; it must be positive (revoke the token to end it now)",
        ));
    }
    if update
        .scopes
        .as_ref()
        .is_some_and(crate::scope::ScopeSet::is_empty)
    {
        return Err(invalid(
            "scopes",
            "is empty; a token must carry at least one scope",
        ));
    }
    Ok(())
}

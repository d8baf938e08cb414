//! The hot path: `validate`, read top to bottom.
//!
//! 1. Required scopes must be concrete (a `*` in a requirement is a programming error). They are
//!    all required ([`validate`](TokenManager::validate)) or any one of them
//!    ([`validate_any`](TokenManager::validate_any)); the path is the same.
//! 2. [`parse_own`](TokenManager::parse_own): length, format, checksum and prefix, with no store
//!    access, so garbage never reaches the database.
//! 3. One lookup by the public id: from the store's memory when it has one
//!    ([`TokenStore::get_now`](crate::TokenStore::get_now)), else from the validation
//!    [`cache`](crate::cache) if configured, else a store read. The clock is read once before it
//!    (and again only after a store round trip).
//! 4. [`decide`] (`decide.rs`): the pure decision on the record (possession, state, key
//!    binding, network allowlist, scopes). No I/O; unit-tested there for every failure.
//! 5. [`account_use`](TokenManager::account_use): a use-limited token counts its use atomically in
//!    the store (after the scope check, so a refused request consumes nothing); any other token's
//!    use is coalesced in memory and written in batches.
//! 6. A `Used` event if configured; a `Denied` event (coalesced per id, queued for a background
//!    write, never awaited) for any failure after step 3.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Counters, TokenManager, ValidatedToken};
use crate::audit::{AuditEvent, AuditKind, Context};
use crate::binding::ProofOfPossession;
use crate::cache::CacheLookup;
use crate::error::ValidationError;
use crate::format::TokenId;
use crate::format::{FormatError, ParsedToken, parse_token};
use crate::record::{TokenRecord, TokenState};
use crate::requirement::AnyOf;
use crate::scope::Scope;
use crate::store::{ConsumeUse, ImmediateLookup, StoreError, UseOutcome};
use crate::trail::UseAudit;

use tracing::Instrument as _;

use super::decide::{Accounting, Presented, Required as Need, decide, verify_possession};
use super::spans;

impl TokenManager {
    /// Validates `token` and checks that it permits every scope in `required`.
    ///
    /// Order: format, checksum and prefix (no store access), lookup, constant-time hash
    /// comparison and the record's prefix, state (revoked, expired, not yet valid, idle, used up
    /// as read), scopes, then the atomic use count of a use-limited token (so a request refused
    /// for scope does not consume a use), then usage is recorded. An unknown id and every failure
    /// after the lookup queue a best-effort `Denied` event, coalesced per token id and written in
    /// the background (the refusal does not wait for it; see
    /// [`flush_denials`](Self::flush_denials)); a store failure queues none. The [manual](crate::manual::validation) has the full table.
    pub async fn validate(
        &self,
        token: &str,
        required: &[Scope],
    ) -> Result<ValidatedToken, ValidationError> {
        self.validate_with(token, required, &Context::new()).await
    }

    /// [`validate`](Self::validate) with the caller's context for audit events.
    pub async fn validate_with(
        &self,
        token: &str,
        required: &[Scope],
        ctx: &Context,
    ) -> Result<ValidatedToken, ValidationError> {
        self.validate_for(token, Need::All(required), ctx, None)
            .await
    }

    /// [`validate_with`](Self::validate_with) for a token presented with a proof of possession
    /// (DPoP, RFC 9449) the caller verified: the token must be bound to the proof's key
    /// ([`ValidationError::NotBound`] for an unbound one, [`ValidationError::ProofKeyMismatch`]
    /// for another key), and the proof's `jti` is claimed once across every instance sharing
    /// the store ([`ValidationError::ProofReplayed`] for a second use), after the token's own
    /// checks pass. A bound token presented without a proof, through
    /// [`validate`](Self::validate), is [`ValidationError::ProofRequired`].
    pub async fn validate_with_proof(
        &self,
        token: &str,
        required: &[Scope],
        ctx: &Context,
        proof: &ProofOfPossession,
    ) -> Result<ValidatedToken, ValidationError> {
        self.validate_for(token, Need::All(required), ctx, Some(proof))
            .await
    }

    /// [`validate_any_with`](Self::validate_any_with) with a proof of possession, as
    /// [`validate_with_proof`](Self::validate_with_proof).
    pub async fn validate_any_with_proof(
        &self,
        token: &str,
        alternatives: &AnyOf,
        ctx: &Context,
        proof: &ProofOfPossession,
    ) -> Result<ValidatedToken, ValidationError> {
        self.validate_for(token, Need::Any(alternatives.scopes()), ctx, Some(proof))
            .await
    }

    /// Validates `token` and checks that it permits at least one of `alternatives`: the same
    /// steps, the same single lookup and the same refusals as [`validate`](Self::validate). A
    /// token that permits none is refused with
    /// [`InsufficientScope`](ValidationError::InsufficientScope), whose `missing` lists every
    /// alternative.
    ///
    /// ```
    /// use token_core::{AnyOf, HashKey, IssueRequest, KeyId, Keyring, ScopeSet, TokenManager};
    /// use token_store_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tokens = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let admin = tokens.issue(IssueRequest::new("user:1", ScopeSet::parse("widgets:admin")?)).await?;
    /// let readers = AnyOf::parse("widgets:read widgets:admin")?; // once, at startup
    /// assert!(tokens.validate_any(admin.token.expose_secret(), &readers).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn validate_any(
        &self,
        token: &str,
        alternatives: &AnyOf,
    ) -> Result<ValidatedToken, ValidationError> {
        self.validate_any_with(token, alternatives, &Context::new())
            .await
    }

    /// [`validate_any`](Self::validate_any) with the caller's context for audit events.
    pub async fn validate_any_with(
        &self,
        token: &str,
        alternatives: &AnyOf,
        ctx: &Context,
    ) -> Result<ValidatedToken, ValidationError> {
        self.validate_for(token, Need::Any(alternatives.scopes()), ctx, None)
            .await
    }

    /// Validates `token` against `required` (all of some scopes, or any of an [`AnyOf`]), with
    /// an optional verified `proof`, and runs `admit` on the validated token **before its use is
    /// counted**: the hook for a check that may still refuse a valid token, such as a rate
    /// limit (token-tower's `BearerAuth::rate_limit` uses it). A refusal by `admit` consumes
    /// none of a use-limited token's `max_uses` and records no use; it writes no `Denied` event
    /// (the token is valid; the refuser keeps its own records) and counts as a passed
    /// validation in the metrics. Order: every check of [`validate_with`](Self::validate_with)
    /// (and of [`validate_with_proof`](Self::validate_with_proof) when `proof` is given, the
    /// proof's `jti` claimed), then `admit`, then the use.
    ///
    /// ```
    /// use token_core::{AdmissionError, HashKey, IssueRequest, KeyId, Keyring, Required, ScopeSet, TokenManager};
    /// use token_store_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tokens = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let issued = tokens.issue(IssueRequest::new("user:1", ScopeSet::parse("a")?).max_uses(1)).await?;
    /// let token = issued.token.expose_secret();
    /// let busy = tokens
    ///     .validate_admitted(token, Required::All(&[]), &Default::default(), None, async |_| Err::<(), _>("busy"))
    ///     .await;
    /// assert!(matches!(busy, Err(AdmissionError::Refused { refusal: "busy", .. })));
    /// // The refusal consumed nothing: the one use is still there.
    /// assert!(tokens.validate(token, &[]).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn validate_admitted<T, E>(
        &self,
        token: &str,
        required: Required<'_>,
        ctx: &Context,
        proof: Option<&ProofOfPossession>,
        admit: impl AsyncFnOnce(&ValidatedToken) -> Result<T, E>,
    ) -> Result<(ValidatedToken, T), AdmissionError<E>> {
        let required = match required {
            Required::All(scopes) => Need::All(scopes),
            Required::Any(alternatives) => Need::Any(alternatives.scopes()),
        };
        self.validate_gated(token, required, ctx, proof, admit)
            .await
    }

    /// Every entry point without an admission step.
    async fn validate_for(
        &self,
        token: &str,
        required: Need<'_>,
        ctx: &Context,
        proof: Option<&ProofOfPossession>,
    ) -> Result<ValidatedToken, ValidationError> {
        let admit_all = async |_: &ValidatedToken| Ok::<(), std::convert::Infallible>(());
        match self
            .validate_gated(token, required, ctx, proof, admit_all)
            .await
        {
            Ok((validated, ())) => Ok(validated),
            Err(AdmissionError::Invalid(error)) => Err(error),
            Err(AdmissionError::Refused { refusal, .. }) => match refusal {},
        }
    }

    /// Both entry points: the span (only when DEBUG is enabled), the counters, the validation.
    async fn validate_gated<T, E>(
        &self,
        token: &str,
        required: Need<'_>,
        ctx: &Context,
        proof: Option<&ProofOfPossession>,
        admit: impl AsyncFnOnce(&ValidatedToken) -> Result<T, E>,
    ) -> Result<(ValidatedToken, T), AdmissionError<E>> {
        // No subscriber wants DEBUG (one atomic load): no span to create, enter or move the
        // future into (the hot path stays as fast as without tracing).
        let started = std::time::Instant::now();
        if !tracing::level_enabled!(tracing::Level::DEBUG) {
            let result = self
                .validate_checked(token, required, ctx, proof, admit)
                .await;
            spans::counted(summary(&result), started);
            return result;
        }
        let span = spans::validate();
        let result = self
            .validate_checked(token, required, ctx, proof, admit)
            .instrument(span.clone())
            .await;
        spans::counted(summary(&result), started);
        spans::validated(&span, token, summary(&result));
        result
    }

    /// [`validate_gated`](Self::validate_gated) inside its span.
    async fn validate_checked<T, E>(
        &self,
        token: &str,
        required: Need<'_>,
        ctx: &Context,
        proof: Option<&ProofOfPossession>,
        admit: impl AsyncFnOnce(&ValidatedToken) -> Result<T, E>,
    ) -> Result<(ValidatedToken, T), AdmissionError<E>> {
        if let Some(bad) = required.scopes().iter().find(|s| !s.is_concrete()) {
            return Err(ValidationError::InvalidRequirement(bad.clone()).into());
        }
        let parsed = self.parse_own(token)?;
        let now = self.now();
        let found = self
            .lookup(parsed.id(), now)
            .await
            .map_err(ValidationError::from)?;
        // After a store round trip, decide at the latest instant (a deadline may have passed).
        let now = if found.waited { self.now() } else { now };
        let Some(record) = found.record else {
            // Cold paths are boxed: their audit events would otherwise make every
            // validation's future (moved on each poll) several hundred bytes larger.
            Box::pin(self.deny_unknown(token, parsed.id(), ctx)).await;
            return Err(ValidationError::UnknownToken.into());
        };
        let presented = Presented {
            caller: ctx.client_ip.as_deref(),
            proof,
        };
        let decision = decide(
            &self.keyring(),
            &parsed,
            &record,
            required,
            now,
            presented,
            || self.buffered_use(&record),
        );
        let checked = match (decision, proof) {
            // A proof's identifier is claimed only for a token that passed every other check,
            // so refused requests fill no store table.
            (Ok(accounting), Some(proof)) => match Box::pin(self.claim_proof(proof, now)).await {
                Ok(()) => Ok(accounting),
                Err(error) => Err(error),
            },
            (Ok(accounting), None) => Ok(accounting),
            (Err(error), _) => Err(error),
        };
        let accounting = match checked {
            Ok(accounting) => accounting,
            Err(error) => return Err(self.denied(&record, error, ctx, now).await.into()),
        };
        let validated = ValidatedToken {
            record: Arc::clone(&record),
        };
        let admitted = match admit(&validated).await {
            Ok(admitted) => admitted,
            Err(refusal) => {
                return Err(AdmissionError::Refused {
                    token: validated,
                    refusal,
                });
            }
        };
        if let Err(error) = self.account_use(&record, now, accounting).await {
            return Err(self.denied(&record, error, ctx, now).await.into());
        }
        if self.inner.use_audit != UseAudit::Off {
            Box::pin(self.note_use(&record, ctx, now)).await?;
        }
        Ok((validated, admitted))
    }

    /// `error` for `record`, with its `Denied` event queued (not for a store failure).
    async fn denied(
        &self,
        record: &TokenRecord,
        error: ValidationError,
        ctx: &Context,
        now: OffsetDateTime,
    ) -> ValidationError {
        if !matches!(error, ValidationError::Store(_)) {
            Box::pin(self.deny_record(record, &error, ctx, now)).await;
        }
        error
    }

    /// Format, checksum and prefix checks: no store access.
    pub(super) fn parse_own<'a>(&self, token: &'a str) -> Result<ParsedToken<'a>, ValidationError> {
        let rejected = || Counters::bump(&self.inner.stats.rejected_before_store);
        let parsed = parse_token(token).map_err(|error| {
            rejected();
            match error {
                FormatError::BadChecksum => ValidationError::BadChecksum,
                other => ValidationError::Malformed(other),
            }
        })?;
        if parsed.prefix() != self.inner.prefix.as_str() {
            rejected();
            return Err(ValidationError::ForeignPrefix);
        }
        Ok(parsed)
    }

    /// The record of `id` at `now`, from the first place that knows: the store's memory when it
    /// keeps one (no future, no allocation), the validation cache, else the store (whose answer
    /// is offered to the cache).
    pub(super) async fn lookup(
        &self,
        id: TokenId,
        now: OffsetDateTime,
    ) -> Result<Found, StoreError> {
        match self.inner.store.get_now(id) {
            ImmediateLookup::Found(record) => return Ok(Found::at_once(Some(record))),
            ImmediateLookup::Absent => return Ok(Found::at_once(None)),
            _ => {}
        }
        let ticket = match &self.inner.cache {
            None => None,
            Some(cache) => match cache.records.lookup(id, now) {
                CacheLookup::Hit(record) => return Ok(Found::at_once(Some(record))),
                CacheLookup::Absent => return Ok(Found::at_once(None)),
                CacheLookup::Miss(Some(ticket)) => Some(ticket),
                CacheLookup::Miss(None) => {
                    // Not serving yet: start following the feed (in the background); answers
                    // are kept once it is established.
                    self.follow_feed(cache);
                    None
                }
            },
        };
        let record = self.inner.store.get(id).await?;
        if let (Some(cache), Some(ticket)) = (&self.inner.cache, ticket) {
            cache.records.offer(id, record.as_ref(), ticket, now);
        }
        Ok(Found {
            record,
            waited: true,
        })
    }

    /// This process's not-yet-flushed last use of `record`, where idleness depends on it.
    fn buffered_use(&self, record: &TokenRecord) -> Option<OffsetDateTime> {
        if record.idle_timeout.is_some() {
            self.inner.usage.last_used(&record.id)
        } else {
            None
        }
    }

    /// The state at `now`, taking this process's buffered usage into account.
    pub(super) fn state_of(&self, record: &TokenRecord, now: OffsetDateTime) -> TokenState {
        record.state_with_last_use(now, self.buffered_use(record))
    }

    /// Accounts the use [`decide`] accepted: counted atomically in the store for a use-limited
    /// token, coalesced in memory (and written when a batch is due) for any other.
    async fn account_use(
        &self,
        record: &TokenRecord,
        now: OffsetDateTime,
        accounting: Accounting,
    ) -> Result<(), ValidationError> {
        match accounting {
            Accounting::ConsumeUse => {
                let request = ConsumeUse::for_record(record, now);
                match self.inner.store.consume_use(&request).await? {
                    UseOutcome::Counted(_) => Ok(()),
                    UseOutcome::LimitReached => Err(ValidationError::UseLimitReached),
                    UseOutcome::NotFound => Err(ValidationError::UnknownToken),
                    // Revoked, rotated or expired between the read and the atomic update.
                    _ => Err(self.why_inactive(record, now).await?),
                }
            }
            Accounting::Coalesce => {
                let due = self
                    .inner
                    .usage
                    .record(record.id, now, self.inner.flush_interval_us);
                if due {
                    // Write-behind: the validation that found the batch due does not wait for
                    // it (a batch is one write per token used in the interval). Without a Tokio
                    // runtime there is nowhere else to write it.
                    if tokio::runtime::Handle::try_current().is_ok() {
                        let manager = self.clone();
                        tokio::spawn(async move { manager.write_buffered_usage().await });
                    } else {
                        let _ = Box::pin(self.write_buffered_usage()).await;
                    }
                }
                Ok(())
            }
        }
    }

    /// Why a token the store refused to count a use for is no longer active, read afresh.
    async fn why_inactive(
        &self,
        record: &TokenRecord,
        now: OffsetDateTime,
    ) -> Result<ValidationError, ValidationError> {
        Ok(match self.inner.store.get(record.id).await? {
            Some(fresh) => ValidationError::from_state(fresh.state_at(now)).unwrap_or(
                if fresh.rotated_to.is_some() {
                    ValidationError::Expired
                } else {
                    ValidationError::Revoked
                },
            ),
            None => ValidationError::UnknownToken,
        })
    }

    /// Writes a `Used` event if configured; `Err` only in strict mode when it cannot be written.
    async fn note_use(
        &self,
        record: &TokenRecord,
        ctx: &Context,
        now: OffsetDateTime,
    ) -> Result<(), ValidationError> {
        let due = match self.inner.use_audit {
            UseAudit::Off => false,
            UseAudit::Every => true,
            UseAudit::OneIn(n) => {
                let count = self
                    .inner
                    .use_counter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                n <= 1 || count.is_multiple_of(u64::from(n))
            }
        };
        if !due {
            return Ok(());
        }
        let event = AuditEvent::new(AuditKind::Used, now)
            .with_token(record.id, record.subject.clone())
            .with_context(ctx);
        if self.inner.strict_validation_audit {
            self.append_strict(event).await?;
        } else {
            self.append_best_effort(event).await;
        }
        Ok(())
    }

    /// Proof of possession of `record` by the presented `parsed` token (see
    /// [`verify_possession`]).
    pub(super) fn verify_possession(
        &self,
        parsed: &ParsedToken<'_>,
        record: &TokenRecord,
    ) -> Result<(), ValidationError> {
        verify_possession(&self.keyring(), parsed, record)
    }

    /// A validated identity for `record` (introspection builds one without a use).
    pub(super) fn validated(record: Arc<TokenRecord>) -> ValidatedToken {
        ValidatedToken { record }
    }
}

/// The validation part of a gated validation's outcome, for the counters and the span.
fn summary<T, E>(
    result: &Result<(ValidatedToken, T), AdmissionError<E>>,
) -> Result<&ValidatedToken, &ValidationError> {
    match result {
        Ok((validated, _))
        | Err(AdmissionError::Refused {
            token: validated, ..
        }) => Ok(validated),
        Err(AdmissionError::Invalid(error)) => Err(error),
    }
}

/// Why [`TokenManager::validate_admitted`] refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdmissionError<E> {
    /// The token is not valid for the request (as [`TokenManager::validate`] would answer).
    Invalid(ValidationError),
    /// The token is valid, but `admit` refused it; no use was counted.
    Refused {
        /// The validated token that was refused.
        token: ValidatedToken,
        /// What `admit` answered.
        refusal: E,
    },
}

impl<E> From<ValidationError> for AdmissionError<E> {
    fn from(error: ValidationError) -> Self {
        Self::Invalid(error)
    }
}

/// The scopes [`TokenManager::validate_admitted`] requires.
#[derive(Debug, Clone, Copy)]
pub enum Required<'a> {
    /// Every one of these (none: any valid token), as [`TokenManager::validate`] checks.
    All(&'a [Scope]),
    /// At least one alternative, as [`TokenManager::validate_any`] checks.
    Any(&'a AnyOf),
}

/// What [`lookup`](TokenManager::lookup) found.
pub(super) struct Found {
    /// The record, `None` if the store holds no such id.
    pub(super) record: Option<Arc<TokenRecord>>,
    /// Whether the lookup waited for the store (then the caller's clock reading is stale).
    pub(super) waited: bool,
}

impl Found {
    fn at_once(record: Option<Arc<TokenRecord>>) -> Self {
        Self {
            record,
            waited: false,
        }
    }
}

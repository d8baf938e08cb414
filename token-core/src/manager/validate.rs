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
//! 4. [`decide`]: the pure decision on the record (possession, state, scopes). No I/O; unit-tested
//!    below for every failure.
//! 5. [`account_use`](TokenManager::account_use): a use-limited token counts its use atomically in
//!    the store (after the scope check, so a refused request consumes nothing); any other token's
//!    use is coalesced in memory and written in batches.
//! 6. A `Used` event if configured; a `Denied` event (coalesced per id, queued for a background
//!    write, never awaited) for any failure after step 3.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Counters, TokenManager, ValidatedToken};
use crate::audit::{AuditEvent, AuditKind, Context};
use crate::cache::CacheLookup;
use crate::error::ValidationError;
use crate::format::TokenId;
use crate::format::{FormatError, ParsedToken, parse_token};
use crate::keyring::{Keyring, KeyringError};
use crate::record::{TokenRecord, TokenState};
use crate::requirement::AnyOf;
use crate::scope::Scope;
use crate::store::{ConsumeUse, ImmediateLookup, StoreError, UseOutcome};
use crate::trail::UseAudit;

use tracing::Instrument as _;

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
        self.validate_for(token, Required::All(required), ctx).await
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
        self.validate_for(token, Required::Any(alternatives.scopes()), ctx)
            .await
    }

    /// Both entry points: the span (only when DEBUG is enabled), the counters, the validation.
    async fn validate_for(
        &self,
        token: &str,
        required: Required<'_>,
        ctx: &Context,
    ) -> Result<ValidatedToken, ValidationError> {
        // No subscriber wants DEBUG (one atomic load): no span to create, enter or move the
        // future into (the hot path stays as fast as without tracing).
        let started = std::time::Instant::now();
        if !tracing::level_enabled!(tracing::Level::DEBUG) {
            let result = self.validate_checked(token, required, ctx).await;
            spans::counted(&result, started);
            return result;
        }
        let span = spans::validate();
        let result = self
            .validate_checked(token, required, ctx)
            .instrument(span.clone())
            .await;
        spans::counted(&result, started);
        spans::validated(&span, token, &result);
        result
    }

    /// [`validate_for`](Self::validate_for) inside its span.
    async fn validate_checked(
        &self,
        token: &str,
        required: Required<'_>,
        ctx: &Context,
    ) -> Result<ValidatedToken, ValidationError> {
        if let Some(bad) = required.scopes().iter().find(|s| !s.is_concrete()) {
            return Err(ValidationError::InvalidRequirement(bad.clone()));
        }
        let parsed = self.parse_own(token)?;
        let now = self.now();
        let found = self.lookup(parsed.id(), now).await?;
        // After a store round trip, decide at the latest instant (a deadline may have passed).
        let now = if found.waited { self.now() } else { now };
        let Some(record) = found.record else {
            // Cold paths are boxed: their audit events would otherwise make every
            // validation's future (moved on each poll) several hundred bytes larger.
            Box::pin(self.deny_unknown(token, parsed.id(), ctx)).await;
            return Err(ValidationError::UnknownToken);
        };
        let caller = ctx.client_ip.as_deref();
        let decision = decide(
            &self.keyring(),
            &parsed,
            &record,
            required,
            now,
            caller,
            || self.buffered_use(&record),
        );
        let result = match decision {
            Ok(accounting) => self.account_use(&record, now, accounting).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                if self.inner.use_audit != UseAudit::Off {
                    Box::pin(self.note_use(&record, ctx, now)).await?;
                }
                Ok(ValidatedToken { record })
            }
            Err(error) => {
                if !matches!(error, ValidationError::Store(_)) {
                    Box::pin(self.deny_record(&record, &error, ctx, now)).await;
                }
                Err(error)
            }
        }
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
                let request = ConsumeUse::new(record.id, now);
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

/// The scopes a validation checks: every one, or at least one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Required<'a> {
    /// Every scope ([`validate`](TokenManager::validate)); none means any valid token.
    All(&'a [Scope]),
    /// At least one ([`validate_any`](TokenManager::validate_any)); never empty ([`AnyOf`]).
    Any(&'a [Scope]),
}

impl<'a> Required<'a> {
    fn scopes(self) -> &'a [Scope] {
        match self {
            Self::All(scopes) | Self::Any(scopes) => scopes,
        }
    }

    /// `None` when `granted` meets the requirement, else the scopes to name as missing: those
    /// of an all-of requirement it lacks, every alternative of an any-of one.
    fn missing(self, granted: &crate::scope::ScopeSet) -> Option<Vec<Scope>> {
        match self {
            Self::All(scopes) if scopes.iter().all(|r| granted.permits(r)) => None,
            Self::All(scopes) => Some(
                scopes
                    .iter()
                    .filter(|r| !granted.permits(r))
                    .cloned()
                    .collect(),
            ),
            Self::Any(scopes) if scopes.iter().any(|r| granted.permits(r)) => None,
            Self::Any(scopes) => Some(scopes.to_vec()),
        }
    }
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

/// What [`decide`] leaves for the step that accounts the use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accounting {
    /// The token has `max_uses`: the store counts the use atomically (and may still refuse).
    ConsumeUse,
    /// Any other token: the use is coalesced in memory.
    Coalesce,
}

/// The pure validation decision on a looked-up record: possession (constant-time hash compare
/// under the record's key, and the prefix it was issued under), state at `now` (revoked,
/// expired, suspended, not yet valid, idle — counting this process's `buffered_use`, asked for
/// only when the record alone looks idle — used up), the caller's address against the token's
/// network allowlist (when it has one), then the required scopes. No I/O: everything it needs
/// is in its arguments.
pub(crate) fn decide(
    keyring: &Keyring,
    parsed: &ParsedToken<'_>,
    record: &TokenRecord,
    required: Required<'_>,
    now: OffsetDateTime,
    caller: Option<&str>,
    buffered_use: impl FnOnce() -> Option<OffsetDateTime>,
) -> Result<Accounting, ValidationError> {
    verify_possession(keyring, parsed, record)?;
    let mut state = record.state_at(now);
    if state == TokenState::IdleExpired {
        state = record.state_with_last_use(now, buffered_use());
    }
    if let Some(error) = ValidationError::from_state(state) {
        return Err(error);
    }
    if let Some(networks) = &record.allowed_networks {
        // No address, or one that does not parse, is outside every network.
        let address = caller.and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
        if !address.is_some_and(|a| networks.permits(a)) {
            return Err(ValidationError::AddressNotAllowed);
        }
    }
    if let Some(missing) = required.missing(&record.scopes) {
        return Err(ValidationError::InsufficientScope { missing });
    }
    Ok(if record.max_uses.is_some() {
        Accounting::ConsumeUse
    } else {
        Accounting::Coalesce
    })
}

/// Proof of possession: the presented secret matches the stored hash (constant-time, under the
/// key the record names), and the token was issued under the prefix it is presented with. The
/// prefix is not covered by the hash: without that check a token issued under one prefix
/// (`acme_test`) would pass under another (`acme_live`) sharing store and key — in validation,
/// introspection and revocation.
fn verify_possession(
    keyring: &Keyring,
    parsed: &ParsedToken<'_>,
    record: &TokenRecord,
) -> Result<(), ValidationError> {
    match keyring.verify(
        record.hash_key_id,
        &record.id,
        parsed.secret_bytes(),
        &record.hash,
    ) {
        Ok(true) => {}
        Ok(false) => return Err(ValidationError::WrongSecret),
        Err(KeyringError::UnknownKey(key)) => return Err(ValidationError::UnknownHashKey(key)),
        Err(_) => return Err(ValidationError::WrongSecret),
    }
    if record.prefix != parsed.prefix() {
        return Err(ValidationError::ForeignPrefix);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::{Accounting, Required, decide};
    use crate::error::ValidationError;
    use crate::format::{PlaintextToken, TokenPrefix, parse_token};
    use crate::keyring::{HashKey, KeyId, Keyring};
    use crate::record::{Revocation, TokenRecord};
    use crate::scope::Scope;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    struct Fixture {
        keyring: Keyring,
        token: PlaintextToken,
        record: TokenRecord,
    }

    /// A live `acme` token with scope `widgets:read`, issued an hour before [`NOW`].
    fn fixture() -> Fixture {
        let keyring = Keyring::new(HashKey::new(KeyId::new(1), [7; 32]));
        let prefix = TokenPrefix::new("acme").unwrap();
        let token = PlaintextToken::generate(&prefix).unwrap();
        let (hash_key_id, hash) = keyring.hash_current(&token.id(), token.secret_bytes());
        let record = TokenRecord {
            expires_at: Some(NOW + time::Duration::hours(1)),
            ..TokenRecord::for_tests(
                token.id(),
                hash,
                hash_key_id,
                NOW - time::Duration::hours(1),
            )
        };
        Fixture {
            keyring,
            token,
            record,
        }
    }

    fn read() -> Vec<Scope> {
        vec!["widgets:read".parse().unwrap()]
    }

    fn run(
        f: &Fixture,
        required: &[Scope],
        buffered: Option<OffsetDateTime>,
    ) -> Result<Accounting, ValidationError> {
        let parsed = parse_token(f.token.expose_secret()).unwrap();
        decide(
            &f.keyring,
            &parsed,
            &f.record,
            Required::All(required),
            NOW,
            None,
            || buffered,
        )
    }

    #[test]
    fn a_token_with_an_allowlist_needs_an_address_inside_it() {
        let mut f = fixture();
        f.record.allowed_networks = "10.0.0.0/8 2001:db8::/32".parse().ok();
        let parsed = parse_token(f.token.expose_secret()).unwrap();
        let at = |caller: Option<&str>| {
            decide(
                &f.keyring,
                &parsed,
                &f.record,
                Required::All(&read()),
                NOW,
                caller,
                || None,
            )
        };
        assert!(at(Some("10.1.2.3")).is_ok());
        assert!(at(Some("2001:db8::9")).is_ok());
        for outside in [
            None,
            Some("11.0.0.1"),
            Some("2001:db9::1"),
            Some("not an ip"),
        ] {
            assert!(
                matches!(at(outside), Err(ValidationError::AddressNotAllowed)),
                "{outside:?}"
            );
        }
        f.record.suspended_at = Some(NOW);
        assert!(matches!(
            decide(
                &f.keyring,
                &parsed,
                &f.record,
                Required::All(&read()),
                NOW,
                Some("10.1.2.3"),
                || None
            ),
            Err(ValidationError::Suspended)
        ));
    }

    fn run_any(f: &Fixture, alternatives: &[Scope]) -> Result<Accounting, ValidationError> {
        let parsed = parse_token(f.token.expose_secret()).unwrap();
        decide(
            &f.keyring,
            &parsed,
            &f.record,
            Required::Any(alternatives),
            NOW,
            None,
            || None,
        )
    }

    #[test]
    fn any_of_passes_with_one_alternative_and_names_all_when_none_is_held() {
        let f = fixture();
        let admin: Scope = "widgets:admin".parse().unwrap();
        let alternatives = vec![admin.clone(), read()[0].clone()];
        assert_eq!(run_any(&f, &alternatives).unwrap(), Accounting::Coalesce);
        let write: Scope = "widgets:write".parse().unwrap();
        let none_held = vec![admin, write];
        match run_any(&f, &none_held) {
            Err(ValidationError::InsufficientScope { missing }) => assert_eq!(missing, none_held),
            other => panic!("expected InsufficientScope, got {other:?}"),
        }
        let mut revoked = fixture();
        revoked.record.revocation = Some(Revocation {
            at: NOW,
            reason: "test".to_owned(),
            actor: None,
        });
        assert!(matches!(
            run_any(&revoked, &alternatives),
            Err(ValidationError::Revoked)
        ));
    }

    #[test]
    fn a_live_token_with_its_scope_is_coalesced() {
        assert_eq!(
            run(&fixture(), &read(), None).unwrap(),
            Accounting::Coalesce
        );
    }

    #[test]
    fn a_use_limited_token_goes_to_the_store_for_its_count() {
        let mut f = fixture();
        f.record.max_uses = Some(3);
        f.record.use_count = 2;
        assert_eq!(run(&f, &read(), None).unwrap(), Accounting::ConsumeUse);
    }

    #[test]
    fn a_different_secret_is_wrong_secret() {
        let mut f = fixture();
        f.record.hash = crate::keyring::TokenHash::from_bytes([0; 32]);
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::WrongSecret)
        ));
    }

    #[test]
    fn a_record_hashed_under_a_missing_key_is_unknown_hash_key() {
        let mut f = fixture();
        f.record.hash_key_id = KeyId::new(9);
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::UnknownHashKey(key)) if key == KeyId::new(9)
        ));
    }

    #[test]
    fn a_token_issued_under_another_prefix_is_foreign() {
        let mut f = fixture();
        f.record.prefix = "acme_test".to_owned();
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::ForeignPrefix)
        ));
    }

    #[test]
    fn a_revoked_token_is_revoked_even_when_also_expired() {
        let mut f = fixture();
        f.record.expires_at = Some(NOW);
        f.record.revocation = Some(Revocation {
            at: NOW - time::Duration::minutes(1),
            reason: "test".to_owned(),
            actor: None,
        });
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::Revoked)
        ));
    }

    #[test]
    fn expiry_is_exclusive() {
        let mut f = fixture();
        f.record.expires_at = Some(NOW);
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::Expired)
        ));
        f.record.expires_at = Some(NOW + time::Duration::microseconds(1));
        assert!(run(&f, &read(), None).is_ok());
    }

    #[test]
    fn a_token_before_its_not_before_is_not_yet_valid() {
        let mut f = fixture();
        f.record.not_before = Some(NOW + time::Duration::seconds(1));
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::NotYetValid)
        ));
    }

    #[test]
    fn an_idle_token_is_idle_expired_unless_this_process_used_it_lately() {
        let mut f = fixture();
        f.record.idle_timeout = Some(Duration::from_secs(600));
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::IdleExpired)
        ));
        let buffered = Some(NOW - time::Duration::seconds(60));
        assert_eq!(run(&f, &read(), buffered).unwrap(), Accounting::Coalesce);
    }

    #[test]
    fn a_used_up_token_is_use_limit_reached() {
        let mut f = fixture();
        f.record.max_uses = Some(3);
        f.record.use_count = 3;
        assert!(matches!(
            run(&f, &read(), None),
            Err(ValidationError::UseLimitReached)
        ));
    }

    #[test]
    fn missing_scopes_are_named_and_checked_after_the_state() {
        let f = fixture();
        let write: Scope = "widgets:write".parse().unwrap();
        let required = vec![read()[0].clone(), write.clone()];
        match run(&f, &required, None) {
            Err(ValidationError::InsufficientScope { missing }) => assert_eq!(missing, vec![write]),
            other => panic!("expected InsufficientScope, got {other:?}"),
        }
        let mut revoked = fixture();
        revoked.record.revocation = Some(Revocation {
            at: NOW,
            reason: "test".to_owned(),
            actor: None,
        });
        let required = vec!["widgets:write".parse().unwrap()];
        assert!(matches!(
            run(&revoked, &required, None),
            Err(ValidationError::Revoked)
        ));
    }
}

//! Issuance: `issue` (a root token) and `derive` (a child that only narrows its parent), with the
//! policy and limit checks they share and the insert that commits the record and its event.

use std::time::Duration;

use time::OffsetDateTime;

use super::{IssuedToken, TokenManager, add};
use crate::audit::{AuditEvent, AuditKind, Context};
use crate::error::Error;
use crate::format::{PlaintextToken, TokenId};
use crate::policy::{HumanDuration, PolicyViolation};
use crate::record::{TokenRecord, TokenState};
use crate::request::{DeriveRequest, Idle, IssueRequest, Lifetime, TokenSpec, check_subject};
use crate::scope::Scope;
use crate::store::{InsertOutcome, InsertToken, StoreError};

/// The latest instant `time` can represent: what "never expires" is compared as.
fn end_of_time() -> OffsetDateTime {
    OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT)
}

use tracing::Instrument as _;

use super::spans;

impl TokenManager {
    /// Issues a root token after checking the policy (TTL cap, expiry required, scope ceiling,
    /// live tokens per subject). The record and its `Issued` event are written atomically.
    pub async fn issue(&self, request: IssueRequest) -> Result<IssuedToken, Error> {
        let span = spans::issue(&request.subject);
        let result = self.issue_checked(request).instrument(span.clone()).await;
        spans::issued(&span, "issue", &result, true);
        result
    }

    async fn issue_checked(&self, request: IssueRequest) -> Result<IssuedToken, Error> {
        let _hashing = self.inner.hashing.read().await;
        let now = self.now();
        check_subject(&request.subject)?;
        let IssueRequest { subject, spec } = request;
        let expires_at = match self.policy_checked(&subject, &spec, now, None) {
            Ok(at) => at,
            Err(e) => return Err(self.note_violation(e, &subject, &spec.context, now).await),
        };
        let (token, record) = self.new_record(&subject, &spec, now, expires_at, None)?;
        let event = AuditEvent::new(AuditKind::Issued, now)
            .with_token(record.id, subject.clone())
            .with_context(&spec.context);
        self.insert(token, record, event, now, &spec.context).await
    }

    /// Derives a child token from `parent`: same subject, scopes covered by the parent's, expiry no
    /// later than the parent's. The parent must be active; the check and the insert are one
    /// transaction, so a concurrent revocation of the parent's family cannot miss the child.
    pub async fn derive(
        &self,
        parent: TokenId,
        request: DeriveRequest,
    ) -> Result<IssuedToken, Error> {
        let span = spans::derive(parent);
        let result = self
            .derive_checked(parent, request)
            .instrument(span.clone())
            .await;
        spans::issued(&span, "derive", &result, false);
        result
    }

    async fn derive_checked(
        &self,
        parent: TokenId,
        request: DeriveRequest,
    ) -> Result<IssuedToken, Error> {
        let mut spec = request.spec;
        let _hashing = self.inner.hashing.read().await;
        self.flush_usage_of(parent).await?;
        let parent_record = self
            .inner
            .store
            .get(parent)
            .await?
            .ok_or(Error::NotFound(parent))?;
        // Read after the round trips: the store re-checks the parent at this instant, so it
        // must not be earlier than necessary (an idle deadline could pass in between).
        let now = self.now();
        let state = self.state_of(&parent_record, now);
        if state != TokenState::Active {
            return Err(Error::NotActive { id: parent, state });
        }
        let widening: Vec<Scope> = parent_record
            .scopes
            .uncovered(&spec.scopes)
            .into_iter()
            .cloned()
            .collect();
        if !widening.is_empty() {
            return Err(Error::ScopeWidening { scopes: widening });
        }
        self.narrow_limits(&parent_record, &mut spec, now)?;
        // A derived token keeps its parent's key binding (an unbound parent's child may be
        // bound: that only narrows who can use it).
        if let Some(parent_key) = &parent_record.dpop_jkt {
            match &spec.dpop_jkt {
                None => spec.dpop_jkt = Some(parent_key.clone()),
                Some(requested) if requested != parent_key => {
                    return Err(Error::InvalidRequest {
                        field: "dpop_jkt",
                        problem: format!(
                            "the parent is bound to key {parent_key}; a derived token keeps that binding"
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(parent_networks) = &parent_record.allowed_networks {
            match &spec.allowed_networks {
                None => spec.allowed_networks = Some(parent_networks.clone()),
                Some(requested) if !parent_networks.covers(requested) => {
                    return Err(Error::LimitWidening {
                        limit: "allowed_networks",
                        requested: requested.to_string(),
                        parent: parent_networks.to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        let subject = parent_record.subject.clone();
        let expires_at = match self.policy_checked(&subject, &spec, now, Some(&parent_record)) {
            Ok(at) => at,
            Err(e) => return Err(self.note_violation(e, &subject, &spec.context, now).await),
        };
        let (token, record) =
            self.new_record(&subject, &spec, now, expires_at, Some(&parent_record))?;
        let event = AuditEvent::new(AuditKind::Derived, now)
            .with_token(record.id, subject)
            .with_context(&spec.context)
            .with_detail(format!("parent={parent}"));
        self.insert(token, record, event, now, &spec.context).await
    }

    /// A derived token never has more uses left or a longer idle timeout than its parent: when the
    /// request names none it inherits the parent's, and a wider one is refused.
    fn narrow_limits(
        &self,
        parent: &TokenRecord,
        spec: &mut TokenSpec,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        narrow_credits(parent, spec)?;
        narrow_rate_limits(parent, spec)?;
        if let Some(remaining) = parent.remaining_uses_at(now) {
            match spec.max_uses {
                None => spec.max_uses = Some(remaining),
                Some(requested) if requested > remaining => {
                    return Err(Error::LimitWidening {
                        limit: "max_uses",
                        requested: requested.to_string(),
                        parent: format!("{remaining} remaining"),
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(parent_idle) = parent.idle_timeout {
            match spec.idle {
                Idle::PolicyDefault => {
                    let default = self.inner.policy.default_idle_timeout();
                    spec.idle = Idle::After(default.map_or(parent_idle, |d| d.min(parent_idle)));
                }
                Idle::After(requested) if requested > parent_idle => {
                    return Err(Error::LimitWidening {
                        limit: "idle_timeout",
                        requested: HumanDuration(requested).to_string(),
                        parent: HumanDuration(parent_idle).to_string(),
                    });
                }
                Idle::Never => {
                    return Err(Error::LimitWidening {
                        limit: "idle_timeout",
                        requested: "none".to_owned(),
                        parent: HumanDuration(parent_idle).to_string(),
                    });
                }
                Idle::After(_) => {}
            }
        }
        Ok(())
    }

    /// Applies the policy; returns the expiry. Derived tokens are capped by the parent's expiry.
    fn policy_checked(
        &self,
        subject: &str,
        spec: &TokenSpec,
        now: OffsetDateTime,
        parent: Option<&TokenRecord>,
    ) -> Result<Option<OffsetDateTime>, PolicyOrError> {
        spec.check()?;
        let policy = &self.inner.policy;
        let parent_expiry = parent.and_then(|p| p.expires_at);
        let expires_at = match spec.lifetime {
            Lifetime::Never if parent_expiry.is_some() => {
                return Err(PolicyOrError::Error(Error::OutlivesParent {
                    requested: end_of_time(),
                    parent: parent_expiry.unwrap_or(now),
                }));
            }
            Lifetime::Never if !policy.allows_non_expiring() => {
                return Err(PolicyViolation::ExpiryRequired.into());
            }
            Lifetime::Never => None,
            Lifetime::Ttl(ttl) => {
                policy.check_ttl(ttl)?;
                let at = add(now, ttl);
                if let Some(parent_at) = parent_expiry
                    && at > parent_at
                {
                    return Err(PolicyOrError::Error(Error::OutlivesParent {
                        requested: at,
                        parent: parent_at,
                    }));
                }
                Some(at)
            }
            Lifetime::PolicyDefault => {
                let at = add(now, policy.default_ttl());
                Some(parent_expiry.map_or(at, |p| p.min(at)))
            }
        };
        if let (Some(nb), Some(exp)) = (spec.not_before, expires_at)
            && nb >= exp
        {
            return Err(PolicyOrError::Error(Error::InvalidRequest {
                field: "not_before",
                problem: "is not before the token's expiry".into(),
            }));
        }
        if spec.idle == Idle::Never && !policy.allows_no_idle_timeout() {
            return Err(PolicyViolation::IdleTimeoutRequired.into());
        }
        if let Some(idle) = self.idle_timeout(spec)
            && idle < self.inner.min_idle_timeout
        {
            return Err(PolicyViolation::IdleTimeoutTooShort {
                requested: idle,
                min: self.inner.min_idle_timeout,
            }
            .into());
        }
        policy.check_ceiling(subject, &spec.scopes)?;
        Ok(expires_at)
    }

    fn idle_timeout(&self, spec: &TokenSpec) -> Option<Duration> {
        match spec.idle {
            Idle::PolicyDefault => self.inner.policy.default_idle_timeout(),
            Idle::After(d) => Some(d),
            Idle::Never => None,
        }
    }

    fn new_record(
        &self,
        subject: &str,
        spec: &TokenSpec,
        now: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
        parent: Option<&TokenRecord>,
    ) -> Result<(PlaintextToken, TokenRecord), Error> {
        let token = PlaintextToken::generate(&self.inner.prefix)?;
        let (hash_key_id, hash) = self
            .keyring()
            .hash_current(&token.id(), token.secret_bytes());
        let record = TokenRecord {
            id: token.id(),
            hash,
            hash_key_id,
            prefix: self.inner.prefix.as_str().to_owned(),
            subject: subject.to_owned(),
            scopes: spec.scopes.clone(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            labels: spec.labels.clone(),
            created_at: now,
            created_by: spec.context.actor.clone(),
            expires_at,
            not_before: spec.not_before,
            idle_timeout: self.idle_timeout(spec),
            last_used_at: None,
            use_count: 0,
            max_uses: spec.max_uses,
            use_refill: spec.use_refill,
            next_refill_at: spec.use_refill.map(|refill| refill.next_after(now, now)),
            rate_limits: spec.rate_limits.clone().unwrap_or_default(),
            parent_id: parent.map(|p| p.id),
            family_id: parent.map_or(token.id(), |p| p.family_id),
            rotated_from: None,
            rotated_to: None,
            revocation: None,
            suspended_at: None,
            metadata: spec.metadata.clone(),
            allowed_networks: spec.allowed_networks.clone(),
            dpop_jkt: spec.dpop_jkt.clone(),
        };
        Ok((token, record))
    }

    /// Commits `record` with `event` (the store re-checks the parent and the live-token limit in
    /// the same transaction) and maps what the store refused to the caller's error.
    async fn insert(
        &self,
        token: PlaintextToken,
        record: TokenRecord,
        event: AuditEvent,
        now: OffsetDateTime,
        ctx: &Context,
    ) -> Result<IssuedToken, Error> {
        let max_live = self.inner.policy.max_live_tokens_per_subject();
        let insert = InsertToken::new(record, max_live, now, vec![event]);
        let outcome = self.inner.store.insert(&insert).await?;
        let InsertToken { record, events, .. } = insert;
        match outcome {
            InsertOutcome::Inserted => {
                if let Some(cache) = &self.inner.cache {
                    cache.records.forget_absent(record.id);
                }
                self.to_sink_all(&events);
                Ok(IssuedToken { token, record })
            }
            InsertOutcome::SubjectLimitReached => {
                let violation = PolicyViolation::TooManyLiveTokens {
                    subject: record.subject.clone(),
                    max: max_live.unwrap_or(0),
                };
                Err(self
                    .note_violation(PolicyOrError::Policy(violation), &record.subject, ctx, now)
                    .await)
            }
            InsertOutcome::UsesExceedParent { remaining } => Err(Error::LimitWidening {
                limit: "max_uses",
                requested: record
                    .max_uses
                    .map_or_else(|| "no limit".to_owned(), |m| m.to_string()),
                parent: format!("{remaining} remaining"),
            }),
            InsertOutcome::OutlivesParent { parent_expires_at } => Err(Error::OutlivesParent {
                requested: record.expires_at.unwrap_or_else(end_of_time),
                parent: parent_expires_at,
            }),
            InsertOutcome::WiderThanParent { field } => Err(Error::ParentNarrowed { field }),
            InsertOutcome::ParentRotated { successor } => Err(Error::AlreadyRotated {
                id: record.parent_id.unwrap_or(record.id),
                successor,
            }),
            InsertOutcome::BeforeRevocationCutoff { cutoff } => {
                Err(Error::BeforeRevocationCutoff {
                    issued_at: record.created_at,
                    cutoff,
                })
            }
            InsertOutcome::ParentNotActive { state } => {
                let id = record.parent_id.unwrap_or(record.id);
                Err(match state {
                    Some(state) => Error::NotActive { id, state },
                    None => Error::NotFound(id),
                })
            }
        }
    }
}

/// A refusal of an issue: a policy violation (audited as `PolicyViolation`) or another error.
pub(super) enum PolicyOrError {
    Policy(PolicyViolation),
    Error(Error),
}

impl From<PolicyViolation> for PolicyOrError {
    fn from(v: PolicyViolation) -> Self {
        Self::Policy(v)
    }
}

impl From<Error> for PolicyOrError {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

impl From<StoreError> for PolicyOrError {
    fn from(e: StoreError) -> Self {
        Self::Error(Error::Store(e))
    }
}

/// A derived token's refill: the parent's when it names none; never one under a parent whose
/// uses do not refill, nor a shorter period than the parent's.
fn narrow_credits(parent: &TokenRecord, spec: &mut TokenSpec) -> Result<(), Error> {
    if parent.max_uses.is_none() {
        return Ok(());
    }
    match (parent.use_refill, spec.use_refill) {
        (Some(theirs), None) => spec.use_refill = Some(theirs),
        (Some(theirs), Some(mine)) if !mine.is_within(&theirs) => {
            return Err(Error::LimitWidening {
                limit: "use_refill",
                requested: mine.to_string(),
                parent: theirs.to_string(),
            });
        }
        (None, Some(mine)) => {
            return Err(Error::LimitWidening {
                limit: "use_refill",
                requested: mine.to_string(),
                parent: "no refill".to_owned(),
            });
        }
        _ => {}
    }
    Ok(())
}

/// A derived token's rate limits: the parent's when it names none; each of the parent's, no
/// looser, when it does.
fn narrow_rate_limits(parent: &TokenRecord, spec: &mut TokenSpec) -> Result<(), Error> {
    match &spec.rate_limits {
        None => spec.rate_limits = Some(parent.rate_limits.clone()),
        Some(mine) if !mine.is_within(&parent.rate_limits) => {
            return Err(Error::LimitWidening {
                limit: "rate_limits",
                requested: mine.to_string(),
                parent: parent.rate_limits.to_string(),
            });
        }
        Some(_) => {}
    }
    Ok(())
}

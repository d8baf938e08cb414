//! Rotation: a successor with the same grants and expiry ceiling; the predecessor ends after a
//! bounded grace window. A token has at most one successor.

use std::time::Duration;

use super::{IssuedToken, TokenManager, add};
use crate::audit::{AuditEvent, AuditKind, Context};
use crate::error::Error;
use crate::format::{PlaintextToken, TokenId};
use crate::policy::PolicyViolation;
use crate::record::TokenState;
use crate::store::{RotateOutcome, RotateToken};

use tracing::Instrument as _;

use super::spans;

impl TokenManager {
    /// Replaces `id` with a new token carrying the same subject, scopes, labels, name, idle
    /// timeout, remaining uses and expiry ceiling (rotation never extends lifetime). The old token
    /// stays valid for `min(grace, its remaining lifetime)`; `Duration::ZERO` ends it now. A token
    /// with `max_uses` always rotates with zero grace (two live copies would double its budget).
    /// The rotation must pass the current policy's scope ceiling and expiry rules.
    pub async fn rotate(&self, id: TokenId, grace: Duration) -> Result<IssuedToken, Error> {
        self.rotate_with(id, grace, &Context::new()).await
    }

    /// [`rotate`](Self::rotate) with the caller's context for audit events.
    pub async fn rotate_with(
        &self,
        id: TokenId,
        grace: Duration,
        ctx: &Context,
    ) -> Result<IssuedToken, Error> {
        let span = spans::rotate(id);
        let result = self
            .rotate_checked(id, grace, ctx)
            .instrument(span.clone())
            .await;
        spans::issued(&span, "rotate", &result, false);
        result
    }

    async fn rotate_checked(
        &self,
        id: TokenId,
        grace: Duration,
        ctx: &Context,
    ) -> Result<IssuedToken, Error> {
        let _hashing = self.inner.hashing.read().await;
        self.flush_usage_of(id).await?;
        let old = self.inner.store.get(id).await?.ok_or(Error::NotFound(id))?;
        // After the round trips, as in `derive`.
        let now = self.now();
        if let Some(successor) = old.rotated_to {
            return Err(Error::AlreadyRotated { id, successor });
        }
        let state = self.state_of(&old, now);
        if state != TokenState::Active {
            return Err(Error::NotActive { id, state });
        }
        let max_grace = self.inner.policy.max_rotation_grace();
        if grace > max_grace {
            return Err(PolicyViolation::GraceExceedsMax {
                requested: grace,
                max: max_grace,
            }
            .into());
        }
        // The policy may have narrowed since the token was issued: a rotation re-issues, so it
        // must pass today's ceiling and expiry rules.
        self.inner.policy.check_ceiling(&old.subject, &old.scopes)?;
        if old.expires_at.is_none() && !self.inner.policy.allows_non_expiring() {
            return Err(PolicyViolation::ExpiryRequired.into());
        }
        // A use-limited token cannot have two live copies (that would double its budget): its
        // predecessor ends at once, and the store hands the successor the uses left at commit.
        let grace = if old.max_uses.is_some() {
            Duration::ZERO
        } else {
            grace
        };
        let token = PlaintextToken::generate(&self.inner.prefix)?;
        let (hash_key_id, hash) = self
            .keyring()
            .hash_current(&token.id(), token.secret_bytes());
        let mut successor = (*old).clone();
        successor.id = token.id();
        successor.hash = hash;
        successor.hash_key_id = hash_key_id;
        successor.prefix = self.inner.prefix.as_str().to_owned();
        successor.created_at = now;
        successor.created_by = ctx.actor.clone();
        successor.not_before = None;
        successor.last_used_at = None;
        successor.use_count = 0;
        successor.max_uses = old.max_uses.map(|m| m.saturating_sub(old.use_count));
        successor.rotated_from = Some(id);
        successor.rotated_to = None;
        let grace_end = add(now, grace);
        let predecessor_expires_at = old.expires_at.map_or(grace_end, |e| e.min(grace_end));
        let events = vec![
            AuditEvent::new(AuditKind::Rotated, now)
                .with_token(id, old.subject.clone())
                .with_context(ctx)
                .with_detail(format!("successor={}", successor.id)),
            AuditEvent::new(AuditKind::Issued, now)
                .with_token(successor.id, old.subject.clone())
                .with_context(ctx)
                .with_detail(format!("rotated_from={id}")),
        ];
        let rotation = RotateToken::new(id, predecessor_expires_at, successor, now, events);
        let outcome = match self.inner.store.rotate(&rotation).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // The rotation may have committed (shortening the predecessor) before the error.
                self.flush_cached();
                return Err(error.into());
            }
        };
        match outcome {
            RotateOutcome::Rotated => {
                // The predecessor's life was just shortened: no cached copy may outlive it.
                self.invalidate_cached([id]);
                self.to_sink_all(&rotation.events);
                // What the store wrote: it takes the predecessor's grants as read in its
                // transaction (`RotateToken::successor_for`), which a concurrent update may
                // have narrowed since this manager read them.
                let record = match self.inner.store.get(rotation.successor.id).await {
                    Ok(Some(stored)) => (*stored).clone(),
                    _ => rotation.successor,
                };
                Ok(IssuedToken { token, record })
            }
            RotateOutcome::NotFound => Err(Error::NotFound(id)),
            RotateOutcome::NotActive(state) => Err(Error::NotActive { id, state }),
            RotateOutcome::AlreadyRotated(successor) => {
                Err(Error::AlreadyRotated { id, successor })
            }
            RotateOutcome::BeforeRevocationCutoff { cutoff } => {
                Err(Error::BeforeRevocationCutoff {
                    issued_at: now,
                    cutoff,
                })
            }
        }
    }
}

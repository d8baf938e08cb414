//! Retention sweeps (one bounded pass: expire, revoke unused, purge, truncate the audit log) and
//! the stale-token report. The settings are [`Retention`](crate::Retention).

use std::time::Duration;

use time::OffsetDateTime;

use super::{Page, TokenManager, TokenPage, before};
use crate::audit::{Context, SWEEPER_ACTOR};
use crate::error::Error;
use crate::policy::HumanDuration;
use crate::retention::{SweepFailure, SweepReport, SweepStep};
use crate::store::{
    ListFilter, MarkExpired, PurgeRequest, RevokeRequest, RevokeSelector, TruncateAudit,
};

use tracing::Instrument as _;

use super::spans;

impl TokenManager {
    /// Runs one bounded retention pass with the manager's [`Retention`](crate::Retention):
    /// flushes coalesced usage, records newly expired tokens, revokes unused ones, purges old
    /// records and truncates old audit events. Each step is its own transaction and touches at
    /// most `batch_size` records; a sweep is idempotent and safe to run from several instances at
    /// once. The audit sink sees exactly the events each step committed.
    ///
    /// Every step runs even when an earlier one failed (a bad row that stops the usage flush
    /// must not stop expiry and purging). If any failed, the result is
    /// [`Error::SweepIncomplete`] with the report of what ran and
    /// [`SweepReport::failures`]; the next sweep retries them. One exception: unused tokens are
    /// not revoked after a failed usage flush, since the uses it could not write may be exactly
    /// the ones that show them in use.
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        let span = spans::sweep();
        let result = self.sweep_checked().instrument(span.clone()).await;
        match &result {
            Ok(report) => spans::swept(&span, report),
            Err(Error::SweepIncomplete(report)) => spans::swept(&span, report),
            Err(_) => {}
        }
        result
    }

    async fn sweep_checked(&self) -> Result<SweepReport, Error> {
        let retention = *self.retention();
        let batch = retention.batch_size();
        let mut report = SweepReport::default();
        self.flush_denials().await;
        // Refused updates (invalid rows) are reported, but the rest of the batch was written: the
        // idle decisions below see every use this process knows of.
        let (usage_written, flushed) = match self.write_buffered_usage().await {
            Ok(refused) if refused.is_empty() => (true, Ok(())),
            Ok(refused) => (true, Err(self.refused_usage(&refused))),
            Err(error) => (false, Err(error)),
        };
        note(&mut report, SweepStep::FlushUsage, flushed);
        let now: OffsetDateTime = self.now();

        let expired = self
            .inner
            .store
            .mark_expired(&MarkExpired::new(now, batch))
            .await;
        if let Some(expired) = note(&mut report, SweepStep::MarkExpired, expired) {
            report.expired = expired.len();
            self.to_sink_all(&expired);
        }

        if let Some(unused) = retention.revoke_unused_after() {
            if usage_written {
                let request = RevokeRequest::new(
                    RevokeSelector::UnusedSince(before(now, unused)),
                    now,
                    format!("unused for {}", HumanDuration(unused)),
                    Context::new().actor(SWEEPER_ACTOR),
                )
                .with_limit(batch);
                let revoked = self.revoke_request(&request).await;
                if let Some(revoked) = note(&mut report, SweepStep::RevokeUnused, revoked) {
                    report.unused_revoked = revoked.len();
                }
            } else {
                report.failures.push(SweepFailure {
                    step: SweepStep::RevokeUnused,
                    error: "skipped: buffered usage could not be written, so tokens in use may look unused".to_owned(),
                });
            }
        }

        let purge = PurgeRequest::new(
            now,
            before(now, retention.purge_revoked_after()),
            before(now, retention.purge_expired_after()),
            batch,
        );
        let purged = self.inner.store.purge(&purge).await;
        if let Some(purged) = note(&mut report, SweepStep::Purge, purged) {
            self.invalidate_cached(crate::store::event_token_ids(&purged));
            report.purged = purged.len();
            self.to_sink_all(&purged);
        }

        // A claim can go once no replay of its proof could pass verification any more.
        let claims = self.inner.store.purge_proof_claims(now, batch).await;
        if let Some(claims) = note(&mut report, SweepStep::PurgeProofClaims, claims) {
            report.proof_claims_purged = claims;
        }

        if let Some(age) = retention.audit_max_age() {
            let truncate = TruncateAudit::new(before(now, age), batch);
            let truncated = self.inner.store.truncate_audit(&truncate).await;
            if let Some(truncated) = note(&mut report, SweepStep::TruncateAudit, truncated) {
                report.audit_truncated = truncated;
            }
        }
        if report.failures.is_empty() {
            Ok(report)
        } else {
            Err(Error::SweepIncomplete(Box::new(report)))
        }
    }

    /// The stale-token report: records (in any state) not used for `unused_for` (never-used tokens
    /// count from their issue time), oldest first. Combine with a state filter through
    /// [`list`](Self::list) and [`ListFilter::unused_since`] for, e.g., only active ones.
    pub async fn stale_tokens(&self, unused_for: Duration, page: Page) -> Result<TokenPage, Error> {
        let cutoff = before(self.now(), unused_for);
        self.list(ListFilter::all().unused_since(cutoff), page)
            .await
    }
}

/// The value of a step that succeeded; a failed one is added to the report's failures.
fn note<T, E: std::fmt::Display>(
    report: &mut SweepReport,
    step: SweepStep,
    result: Result<T, E>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            report.failures.push(SweepFailure {
                step,
                error: error.to_string(),
            });
            None
        }
    }
}

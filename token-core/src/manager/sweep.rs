//! Retention sweeps (one bounded pass: expire, revoke unused, purge, truncate the audit log) and
//! the stale-token report. The settings are [`Retention`](crate::Retention).

use std::time::Duration;

use time::OffsetDateTime;

use super::{Page, TokenManager, TokenPage, before};
use crate::audit::{Context, SWEEPER_ACTOR};
use crate::error::Error;
use crate::policy::HumanDuration;
use crate::retention::SweepReport;
use crate::store::{
    ListFilter, MarkExpired, PurgeRequest, RevokeRequest, RevokeSelector, TruncateAudit,
};

impl TokenManager {
    /// Runs one bounded retention pass with the manager's [`Retention`](crate::Retention):
    /// flushes coalesced usage, records newly expired tokens, revokes unused ones, purges old
    /// records and truncates old audit events. Each step is its own transaction and touches at
    /// most `batch_size` records; a sweep is idempotent and safe to run from several instances at
    /// once. The audit sink sees exactly the events each step committed.
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        let retention = *self.retention();
        let batch = retention.batch_size();
        self.flush_usage().await?;
        let now: OffsetDateTime = self.now();
        let mut report = SweepReport::default();

        let expired = self
            .inner
            .store
            .mark_expired(&MarkExpired::new(now, batch))
            .await?;
        report.expired = expired.len();
        self.to_sink_all(&expired);

        if let Some(unused) = retention.revoke_unused_after() {
            let request = RevokeRequest::new(
                RevokeSelector::UnusedSince(before(now, unused)),
                now,
                format!("unused for {}", HumanDuration(unused)),
                Context::new().actor(SWEEPER_ACTOR),
            )
            .with_limit(batch);
            report.unused_revoked = self.revoke_request(&request).await?.len();
        }

        let purge = PurgeRequest::new(
            now,
            before(now, retention.purge_revoked_after()),
            before(now, retention.purge_expired_after()),
            batch,
        );
        let purged = self.inner.store.purge(&purge).await?;
        self.invalidate_cached(crate::store::event_token_ids(&purged));
        report.purged = purged.len();
        self.to_sink_all(&purged);

        if let Some(age) = retention.audit_max_age() {
            let truncate = TruncateAudit::new(before(now, age), batch);
            report.audit_truncated = self.inner.store.truncate_audit(&truncate).await?;
        }
        Ok(report)
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

//! Audit events the manager writes outside a lifecycle transaction: denials (coalesced), policy
//! violations and uses, written best effort by default; and the [`AuditSink`](crate::AuditSink)
//! that sees every event once the store has it.

use time::OffsetDateTime;

use super::issue::PolicyOrError;
use super::{Counters, TokenManager};
use crate::audit::{AuditEvent, AuditKind, Context};
use crate::error::{Error, ValidationError};
use crate::record::TokenRecord;
use crate::store::StoreError;
use crate::trail::Admission;

impl TokenManager {
    /// Hands a written event to the configured sink.
    pub(crate) fn to_sink(&self, event: &AuditEvent) {
        if let Some(sink) = &self.inner.sink {
            sink.record(event);
        }
    }

    /// Hands events the store committed to the configured sink, in order.
    pub(super) fn to_sink_all(&self, events: &[AuditEvent]) {
        for event in events {
            self.to_sink(event);
        }
    }

    /// Appends a validation-time or policy event. Best effort by design: an unavailable audit log
    /// must not turn validation into an outage. Failures are counted in
    /// [`ManagerStats::denied_events_dropped`](crate::ManagerStats::denied_events_dropped).
    pub(super) async fn append_best_effort(&self, event: AuditEvent) -> bool {
        let events = [event];
        if self.inner.store.append_audit(&events).await.is_err() {
            Counters::bump(&self.inner.stats.denied_events_dropped);
            return false;
        }
        self.to_sink_all(&events);
        true
    }

    /// Appends an event that must be written (strict validation audit).
    pub(super) async fn append_strict(&self, event: AuditEvent) -> Result<(), StoreError> {
        let events = [event];
        self.inner.store.append_audit(&events).await?;
        self.to_sink_all(&events);
        Ok(())
    }

    /// Writes a `Denied` event unless one for the same key was written in this window.
    async fn deny(&self, key: &str, event: AuditEvent, now: OffsetDateTime) {
        match self.inner.denials.admit(key, now) {
            Admission::Suppress => Counters::bump(&self.inner.stats.denied_events_coalesced),
            Admission::Write { suppressed } => {
                let event = if suppressed > 0 {
                    event.with_detail(format!("coalesced={suppressed}"))
                } else {
                    event
                };
                self.append_best_effort(event).await;
            }
        }
    }

    /// A `Denied` event for a well-formed token whose id is not in the store, named by its keyed
    /// fingerprint (never the string).
    pub(super) async fn deny_unknown(&self, token: &str, ctx: &Context) {
        let now = self.now();
        let fingerprint = self.keyring().fingerprint(token.as_bytes());
        let event = AuditEvent::new(AuditKind::Denied, now)
            .with_fingerprint(fingerprint.clone())
            .with_context(ctx)
            .with_reason(ValidationError::UnknownToken.reason_code());
        self.deny(&fingerprint, event, now).await;
    }

    /// A `Denied` event for a known token, with the reason code of `error`.
    pub(super) async fn deny_record(
        &self,
        record: &TokenRecord,
        error: &ValidationError,
        ctx: &Context,
        now: OffsetDateTime,
    ) {
        let event = AuditEvent::new(AuditKind::Denied, now)
            .with_token(record.id, record.subject.clone())
            .with_context(ctx)
            .with_reason(error.reason_code());
        self.deny(&record.id.to_string(), event, now).await;
    }

    /// Records a best-effort `PolicyViolation` event and converts to the caller's error.
    pub(super) async fn note_violation(
        &self,
        error: PolicyOrError,
        subject: &str,
        ctx: &Context,
        now: OffsetDateTime,
    ) -> Error {
        match error {
            PolicyOrError::Error(e) => e,
            PolicyOrError::Policy(violation) => {
                let mut event = AuditEvent::new(AuditKind::PolicyViolation, now)
                    .with_context(ctx)
                    .with_reason(violation.to_string());
                event.subject = Some(subject.to_owned());
                self.append_best_effort(event).await;
                Error::Policy(violation)
            }
        }
    }
}

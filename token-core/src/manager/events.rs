//! Audit events the manager writes outside a lifecycle transaction: denials (coalesced per token
//! id and queued off the response path, see `denial_queue.rs`), policy violations and uses,
//! written best effort by default; and the [`AuditSink`](crate::AuditSink) that sees every event
//! once the store has it.

use time::OffsetDateTime;

use super::issue::PolicyOrError;
use super::{Counters, TokenManager};
use crate::audit::{AuditEvent, AuditKind, Context};
use crate::error::{Error, ValidationError};
use crate::format::TokenId;
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
            super::spans::denied_not_written("dropped");
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

    /// Queues a `Denied` event unless one for the same token id was admitted in this window.
    ///
    /// The key is the id whether or not the store knows it: keyed by anything finer for unknown
    /// ids (the whole string, say), one id presented with two secrets would write twice when the
    /// id does not exist and once when it does, telling a prober which ids exist. The event is
    /// built before the decision, and a written one is only queued, so the refusal costs the
    /// same whatever is decided.
    async fn deny(&self, id: TokenId, event: AuditEvent, now: OffsetDateTime) {
        match self.inner.denials.admit(&id.to_string(), now) {
            Admission::Suppress => {
                Counters::bump(&self.inner.stats.denied_events_coalesced);
                super::spans::denied_not_written("coalesced");
            }
            Admission::Write { suppressed } => {
                let event = if suppressed > 0 {
                    event.with_detail(format!("coalesced={suppressed}"))
                } else {
                    event
                };
                if let Some(event) = self.inner.denial_queue.push(event) {
                    // No Tokio runtime to write it in the background: write it here.
                    self.append_best_effort(event).await;
                }
            }
        }
    }

    /// Waits until every `Denied` event queued before this call is in the store (and seen by
    /// the sink), or counted as dropped: a refused validation only queues its event (see
    /// [`ManagerStats::denied_events_queue_full`](crate::ManagerStats::denied_events_queue_full)).
    /// [`flush_usage`](Self::flush_usage), hence every sweep, calls it, and so do the manager's
    /// audit reads ([`query_audit`](Self::query_audit), [`audit`](Self::audit),
    /// [`export_audit_jsonl`](Self::export_audit_jsonl),
    /// [`verify_audit_chain`](Self::verify_audit_chain)), so they see this manager's denials. Call
    /// it (or `flush_usage`) on shutdown, before the runtime stops.
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, PlaintextToken, TokenManager, TokenPrefix};
    /// use token_store_memory::MemoryStore;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .build()?;
    /// let unknown = PlaintextToken::generate(&TokenPrefix::new("tok")?)?;
    /// assert!(manager.validate(unknown.expose_secret(), &[]).await.is_err());
    /// manager.flush_denials().await; // the Denied event is in the store now
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn flush_denials(&self) {
        self.inner.denial_queue.flush().await;
    }

    /// A `Denied` event for a well-formed token whose id is not in the store, named by the keyed
    /// fingerprint of the presented string (never the string). Coalesced by `id` like a known
    /// token's, so a written event names the fingerprint of the first string of its window.
    pub(super) async fn deny_unknown(&self, token: &str, id: TokenId, ctx: &Context) {
        let now = self.now();
        let fingerprint = self.keyring().fingerprint(token.as_bytes());
        let event = AuditEvent::new(AuditKind::Denied, now)
            .with_fingerprint(fingerprint)
            .with_context(ctx)
            .with_reason(ValidationError::UnknownToken.reason_code());
        self.deny(id, event, now).await;
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
        self.deny(record.id, event, now).await;
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

//! The audit sink sees exactly what the store committed: the same events, in the same order, with
//! every field the store wrote (bulk revocations and sweeps included).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use token_core::{
    AuditEvent, AuditQuery, AuditSink, DeriveRequest, HashKey, IssueRequest, KeyId, Keyring,
    ManualClock, Retention, RevokeSelector, ScopeSet, TokenManager,
};
use token_store_memory::MemoryStore;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<AuditEvent>>>);

impl AuditSink for Recorder {
    fn record(&self, event: &AuditEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn sink_receives_exactly_the_committed_events_of_every_lifecycle_change() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let sink = Recorder::default();
    let retention = Retention::builder()
        .purge_expired_after(DAY)
        .purge_revoked_after(DAY)
        .never_revoke_unused()
        .keep_audit_forever()
        .build()
        .unwrap();
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
    )
    .prefix("acme")
    .unwrap()
    .clock(clock.clone())
    .retention(retention)
    .audit_sink(sink.clone())
    .build()
    .unwrap();
    let scopes = || ScopeSet::parse("widgets").unwrap();

    let a = manager
        .issue(IssueRequest::new("user:42", scopes()))
        .await
        .unwrap();
    manager
        .derive(a.token.id(), DeriveRequest::new(scopes()))
        .await
        .unwrap();
    let b = manager
        .issue(IssueRequest::new("user:7", scopes()).ttl(HOUR))
        .await
        .unwrap();
    manager.rotate(b.token.id(), Duration::ZERO).await.unwrap();
    // A bulk revocation: the store knows the subject of every record it revoked.
    let revoked = manager
        .revoke(RevokeSelector::Subject("user:42".into()), "offboarded")
        .await
        .unwrap();
    assert_eq!(revoked.len(), 2);
    // A denial, then a sweep that records expiry and purges.
    let denied = manager.validate(a.token.expose_secret(), &[]).await;
    assert!(denied.is_err());
    clock.advance(3 * DAY);
    let report = manager.sweep().await.unwrap();
    assert!(report.expired > 0 && report.purged > 0, "{report:?}");

    let stored: Vec<AuditEvent> = manager
        .store()
        .query_audit(&AuditQuery::new().limit(1000))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    let seen = sink.0.lock().unwrap().clone();
    assert_eq!(seen, stored);
    assert!(
        seen.iter()
            .filter(|e| e.kind == token_core::AuditKind::Revoked)
            .all(|e| e.subject.as_deref() == Some("user:42")),
        "revocation events reach the sink with their subject: {seen:?}"
    );
}

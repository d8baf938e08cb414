//! The documented counters appear, with their labels and the right counts, after a lifecycle
//! (a recorder that keeps every counter; see the table in the manager's `spans.rs` docs, as
//! published in the CHANGELOG).

use std::time::Duration;

#[path = "support/recorder.rs"]
mod recorder;

use recorder::Counters;
use token_core::{
    DeriveRequest, HashKey, IssueRequest, KeyId, Keyring, Requirement, RevokeSelector, ScopeSet,
    TokenManager,
};
use token_store_memory::MemoryStore;

#[test]
fn a_lifecycle_is_counted_under_the_documented_names() {
    let counters = Counters::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&counters, || {
        runtime.block_on(async {
            let manager = TokenManager::builder(
                MemoryStore::new(),
                Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
            )
            .prefix("acme")
            .unwrap()
            .build()
            .unwrap();
            let scopes = |text: &str| ScopeSet::parse(text).unwrap();
            let root = manager
                .issue(IssueRequest::new("u", scopes("a b")).ttl(Duration::from_secs(3600)))
                .await
                .unwrap();
            let read = Requirement::parse("a").unwrap();
            manager
                .validate(root.token.expose_secret(), &read)
                .await
                .unwrap();
            let write = Requirement::parse("c").unwrap();
            let _ = manager.validate(root.token.expose_secret(), &write).await;
            manager
                .derive(root.token.id(), DeriveRequest::new(scopes("a")))
                .await
                .unwrap();
            let _ = manager
                .issue(IssueRequest::new("u", scopes("a")).ttl(Duration::from_secs(999_999_999)))
                .await;
            manager
                .revoke(RevokeSelector::Token(root.token.id()), "done")
                .await
                .unwrap();
            manager.sweep().await.unwrap();
        });
    });
    let seen = counters.snapshot();
    for (name, expected) in [
        ("token_validations_total{outcome=ok}", 1),
        ("token_validation_duration_seconds", 2), // values recorded
        ("token_validations_total{outcome=refused}", 1),
        (
            "token_validation_refusals_total{reason=insufficient_scope}",
            1,
        ),
        ("token_operations_total{operation=issue,outcome=ok}", 1),
        ("token_operations_total{operation=issue,outcome=refused}", 1),
        ("token_operations_total{operation=derive,outcome=ok}", 1),
        ("token_operations_total{operation=revoke,outcome=ok}", 1),
        ("token_operations_total{operation=sweep,outcome=ok}", 1),
        ("token_revoked_total", 2), // the root and its child
        ("token_swept_total{step=expired}", 0),
    ] {
        assert_eq!(seen.get(name), Some(&expected), "{name} in {seen:#?}");
    }
}

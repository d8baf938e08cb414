//! Tamper-evidence cases for SQL stores: each case builds a history through a [`TokenManager`],
//! edits the audit table behind the store's back with raw SQL, and checks that
//! [`TokenManager::verify_audit_chain`] reports the first broken link at the right event.
//!
//! A store crate implements [`TamperFixture`] (a fresh manager plus [`RawAudit`] access to its
//! audit table) and expands [`tamper_tests!`](crate::tamper_tests) once.

#![allow(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use token_core::{
    AuditQuery, AuditRecord, Error, IssueRequest, ListFilter, ManualClock, Page, RevokeSelector,
    ScopeSet, TokenManager,
};

/// Every column of an audit row but `seq`, as the SQL stores name them (for `swap_content`).
pub const EVENT_COLUMNS_BUT_SEQ: [&str; 12] = [
    "at",
    "kind",
    "token_id",
    "fingerprint",
    "subject",
    "actor",
    "client_ip",
    "user_agent",
    "request_id",
    "reason",
    "detail",
    "hash",
];

/// Raw access to a store's audit table, bypassing the store.
#[async_trait]
pub trait RawAudit: Send + Sync {
    /// Runs SQL statements; `{events}` stands for the (qualified) audit table. Panics on error.
    async fn exec(&self, sql: &str);
    /// Swaps the sequence numbers of events `a` and `b`.
    async fn swap_seq(&self, a: u64, b: u64);
    /// Swaps every column but the sequence number (hash included) of events `a` and `b`.
    async fn swap_content(&self, a: u64, b: u64);
    /// Overwrites the stored hash of event `seq` with 32 zero bytes.
    async fn zero_hash(&self, seq: u64);
    /// Makes every insert into the audit table fail (e.g. a trigger raising "audit down").
    async fn block_appends(&self);
    /// Undoes [`block_appends`](Self::block_appends).
    async fn unblock_appends(&self);
}

/// A fresh store for one case: the manager over it, its clock and raw access.
pub struct TamperEnv {
    /// Manager over the store (its clock is `clock`).
    pub manager: TokenManager,
    /// The manager's clock.
    pub clock: ManualClock,
    /// Raw access to the audit table.
    pub raw: Box<dyn RawAudit>,
}

/// Makes a fresh [`TamperEnv`] per case.
#[async_trait]
pub trait TamperFixture: Send + Sync + 'static {
    /// `Err(reason)` when the backend is not available (the case prints one line and is skipped).
    fn available(&self) -> Result<(), String> {
        Ok(())
    }
    /// A fresh, migrated, empty store.
    async fn fresh(&self) -> TamperEnv;
}

/// Expands to one `#[tokio::test]` per tamper case, against fresh stores from the fixture.
#[macro_export]
macro_rules! tamper_tests {
    ($fixture:expr) => {
        $crate::tamper_tests!(@cases $fixture;
            intact_chain_verifies_every_event,
            edited_field_breaks_the_chain_at_that_event,
            edited_time_actor_kind_or_token_breaks_the_chain,
            deleted_middle_event_breaks_the_chain_at_the_next,
            swapped_sequence_numbers_break_the_chain_at_the_earlier,
            swapped_contents_break_the_chain_at_the_earlier,
            forged_hash_is_detected,
            change_without_its_audit_event_does_not_happen,
            sweep_without_its_audit_events_changes_nothing,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture;
                if let ::std::result::Result::Err(reason) =
                    $crate::tamper::TamperFixture::available(&fixture)
                {
                    $crate::report_skip(stringify!($case), &reason);
                    return;
                }
                $crate::tamper::$case(&fixture).await;
            }
        )*
    };
}

/// Issues, rotates and revokes: a history of at least five events numbered 1..n.
pub async fn history(env: &TamperEnv) -> Vec<AuditRecord> {
    let scopes = ScopeSet::parse("a b").unwrap_or_else(|e| panic!("{e}"));
    let issue = |subject: &'static str| {
        let manager = env.manager.clone();
        let scopes = scopes.clone();
        async move {
            manager
                .issue(IssueRequest::new(subject, scopes))
                .await
                .unwrap_or_else(|e| panic!("issue: {e}"))
        }
    };
    let a = issue("alice").await;
    env.clock.advance(Duration::from_secs(10));
    let b = issue("bob").await;
    env.clock.advance(Duration::from_secs(10));
    env.manager
        .rotate(a.token.id(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("rotate: {e}"));
    env.clock.advance(Duration::from_secs(10));
    env.manager
        .revoke(RevokeSelector::Token(b.token.id()), "leaked")
        .await
        .unwrap_or_else(|e| panic!("revoke: {e}"));
    issue("carol").await;
    let events = events(env).await;
    assert!(events.len() >= 5, "a history: {events:#?}");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "a fresh history is numbered 1..n"
    );
    events
}

/// Every event, in order.
pub async fn events(env: &TamperEnv) -> Vec<AuditRecord> {
    env.manager
        .query_audit(AuditQuery::new().limit(1000))
        .await
        .unwrap_or_else(|e| panic!("query_audit: {e}"))
        .items
}

/// The sequence number of the first broken link, `None` when the chain verifies.
pub async fn first_broken(env: &TamperEnv) -> Option<u64> {
    env.manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("verify: {e}"))
        .first_broken
        .map(|b| b.seq)
}

pub async fn intact_chain_verifies_every_event(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    let events = history(&env).await;
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, events.len() as u64);
    assert_eq!(report.head, events.last().map(|e| (e.seq, e.hash)));
}

pub async fn edited_field_breaks_the_chain_at_that_event(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    history(&env).await;
    env.raw
        .exec("UPDATE {events} SET reason = 'x' WHERE seq = 3")
        .await;
    assert_eq!(first_broken(&env).await, Some(3));
}

pub async fn edited_time_actor_kind_or_token_breaks_the_chain(f: &dyn TamperFixture) {
    for (sql, seq) in [
        ("UPDATE {events} SET at = at + 1 WHERE seq = 2", 2),
        ("UPDATE {events} SET actor = 'admin:0' WHERE seq = 4", 4),
        ("UPDATE {events} SET kind = 'denied' WHERE seq = 5", 5),
        ("UPDATE {events} SET token_id = NULL WHERE seq = 1", 1),
    ] {
        let env = f.fresh().await;
        history(&env).await;
        env.raw.exec(sql).await;
        assert_eq!(first_broken(&env).await, Some(seq), "{sql}");
    }
}

pub async fn deleted_middle_event_breaks_the_chain_at_the_next(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    history(&env).await;
    env.raw.exec("DELETE FROM {events} WHERE seq = 3").await;
    assert_eq!(first_broken(&env).await, Some(4));
}

pub async fn swapped_sequence_numbers_break_the_chain_at_the_earlier(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    history(&env).await;
    env.raw.swap_seq(2, 4).await;
    assert_eq!(first_broken(&env).await, Some(2));
}

pub async fn swapped_contents_break_the_chain_at_the_earlier(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    history(&env).await;
    env.raw.swap_content(2, 3).await;
    let events = events(&env).await;
    assert_ne!(events[1].event, events[2].event, "the two events differ");
    assert_eq!(first_broken(&env).await, Some(2));
}

pub async fn forged_hash_is_detected(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    history(&env).await;
    env.raw.zero_hash(3).await;
    assert_eq!(first_broken(&env).await, Some(3));
}

async fn tokens_of(env: &TamperEnv, subject: &str) -> usize {
    env.manager
        .list(ListFilter::all().subject(subject), Page::default())
        .await
        .unwrap_or_else(|e| panic!("list: {e}"))
        .items
        .len()
}

pub async fn change_without_its_audit_event_does_not_happen(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    let scopes = ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}"));
    let kept = env
        .manager
        .issue(IssueRequest::new("alice", scopes.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events_before = events(&env).await;
    env.raw.block_appends().await;

    // Issue fails with a store error and leaves no token.
    match env.manager.issue(IssueRequest::new("bob", scopes)).await {
        Err(Error::Store(e)) => assert!(e.to_string().contains("audit down"), "{e}"),
        other => panic!("issue without its audit event: {other:?}"),
    }
    assert_eq!(tokens_of(&env, "bob").await, 0);

    // Revoke and rotate fail and change nothing: the token stays valid and unrotated.
    match env
        .manager
        .revoke(RevokeSelector::Token(kept.token.id()), "try")
        .await
    {
        Err(Error::Store(e)) => assert!(e.to_string().contains("audit down"), "{e}"),
        other => panic!("revoke without its audit event: {other:?}"),
    }
    match env
        .manager
        .rotate(kept.token.id(), Duration::from_secs(60))
        .await
    {
        Err(Error::Store(e)) => assert!(e.to_string().contains("audit down"), "{e}"),
        other => panic!("rotate without its audit event: {other:?}"),
    }
    env.manager
        .validate(kept.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("still valid: {e}"));
    let record = env
        .manager
        .inspect(kept.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("kept token missing"));
    assert!(record.revocation.is_none() && record.rotated_to.is_none());
    assert_eq!(tokens_of(&env, "alice").await, 1);
    assert_eq!(events(&env).await, events_before);

    // Once the audit trail works again, so does revocation, and the chain is intact.
    env.raw.unblock_appends().await;
    env.manager
        .revoke(RevokeSelector::Token(kept.token.id()), "now")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        env.manager.validate(kept.token.expose_secret(), &[]).await,
        Err(token_core::ValidationError::Revoked)
    ));
    assert_eq!(first_broken(&env).await, None);
}

pub async fn sweep_without_its_audit_events_changes_nothing(f: &dyn TamperFixture) {
    let env = f.fresh().await;
    env.manager
        .issue(
            IssueRequest::new(
                "alice",
                ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
            )
            .ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.clock.advance(Duration::from_secs(3600));
    env.raw.block_appends().await;
    match env.manager.sweep().await {
        // The expiry step failed with its events; the other steps ran (and found nothing).
        Err(Error::SweepIncomplete(report)) => {
            assert_eq!(report.expired, 0, "{report:?}");
            let failed = report
                .failures
                .iter()
                .find(|f| f.step == token_core::SweepStep::MarkExpired);
            assert!(
                failed.is_some_and(|f| f.error.contains("audit down")),
                "{report:?}"
            );
        }
        other => panic!("sweep without its audit events: {other:?}"),
    }
    env.raw.unblock_appends().await;
    // Had the failed pass recorded the expiry without its event, this pass would find nothing.
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.expired, 1);
    assert_eq!(first_broken(&env).await, None);
}

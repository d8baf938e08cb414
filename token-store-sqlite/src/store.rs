//! [`TokenStore`] for [`SqliteStore`]: each method is one function of the module that
//! implements it.

use std::sync::Arc;

use async_trait::async_trait;
use token_core::{
    AuditCheckpoint, AuditEvent, AuditQuery, AuditRecord, ConsumeUse, CountLiveWithKey,
    InsertOutcome, InsertToken, ListQuery, MarkExpired, PurgeRequest, RevocationStream,
    RevokeRequest, RotateOutcome, RotateToken, StoreError, SuspendRequest, TokenId, TokenRecord,
    TokenStore, TruncateAudit, UpdateOutcome, UpdateToken, UsageUpdate, UseOutcome,
};

use crate::error::STORE;
use crate::{SqliteStore, audit, feed, manage, records, revoke, sweep, usage};

#[async_trait]
impl TokenStore for SqliteStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        self.explained(records::insert(self, insert).await).await
    }

    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.explained(records::get(self, id).await).await
    }

    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        self.explained(records::rotate(self, rotation).await).await
    }

    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.explained(revoke::revoke(self, request).await).await
    }

    async fn suspend(&self, request: &SuspendRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.explained(manage::suspend(self, request).await).await
    }

    async fn update(&self, request: &UpdateToken) -> Result<UpdateOutcome, StoreError> {
        self.explained(manage::update(self, request).await).await
    }

    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        self.explained(usage::consume_use(self, request).await)
            .await
    }

    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError> {
        self.explained(usage::record_usage(self, updates).await)
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        self.explained(records::list(self, query).await).await
    }

    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError> {
        self.explained(records::count_live_with_key(self, query).await)
            .await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.explained(audit::append_audit(self, events).await)
            .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.explained(audit::query_audit(self, query).await).await
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        self.explained(audit::audit_checkpoint(self).await).await
    }

    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
        self.explained(audit::truncate_audit(self, request).await)
            .await
    }

    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        self.explained(sweep::mark_expired(self, request).await)
            .await
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.explained(sweep::purge(self, request).await).await
    }

    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        Ok(Some(feed::subscribe(self)))
    }
}

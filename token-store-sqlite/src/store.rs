//! [`TokenStore`] for [`SqliteStore`]: each method is one function of the module that
//! implements it.

use std::sync::Arc;

use async_trait::async_trait;
use token_core::{
    AuditCheckpoint, AuditEvent, AuditQuery, AuditRecord, ConsumeUse, CountLiveWithKey,
    InsertOutcome, InsertToken, ListQuery, MarkExpired, PurgeRequest, RevocationStream,
    RevokeRequest, RotateOutcome, RotateToken, StoreError, TokenId, TokenRecord, TokenStore,
    TruncateAudit, UsageUpdate, UseOutcome,
};

use crate::error::STORE;
use crate::{SqliteStore, audit, feed, records, revoke, sweep, usage};

#[async_trait]
impl TokenStore for SqliteStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        records::insert(self, insert).await
    }

    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        records::get(self, id).await
    }

    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        records::rotate(self, rotation).await
    }

    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        revoke::revoke(self, request).await
    }

    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        usage::consume_use(self, request).await
    }

    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError> {
        usage::record_usage(self, updates).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        records::list(self, query).await
    }

    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError> {
        records::count_live_with_key(self, query).await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        audit::append_audit(self, events).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        audit::query_audit(self, query).await
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        audit::audit_checkpoint(self).await
    }

    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
        audit::truncate_audit(self, request).await
    }

    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        sweep::mark_expired(self, request).await
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        sweep::purge(self, request).await
    }

    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        Ok(Some(feed::subscribe(self)))
    }
}

//! Reading records and a token's trail: `inspect`, `list`, `audit`.

use super::{MAX_PAGE_SIZE, Page, TokenManager, TokenPage};
use crate::audit::{AuditQuery, AuditRecord};
use crate::error::Error;
use crate::format::TokenId;
use crate::record::TokenRecord;
use crate::store::{Cursor, ListFilter, ListQuery};

impl TokenManager {
    /// The record of `id` (with this process's not-yet-flushed usage merged in), if it exists.
    pub async fn inspect(&self, id: TokenId) -> Result<Option<TokenRecord>, Error> {
        let Some(record) = self.inner.store.get(id).await? else {
            return Ok(None);
        };
        let mut record = (*record).clone();
        if let Some(pending) = self.inner.usage.pending(&id) {
            record.use_count += pending.uses;
            record.last_used_at = record.last_used_at.max(Some(pending.last_used_at));
        }
        Ok(Some(record))
    }

    /// Lists records matching `filter`, one page at a time, ordered by creation.
    pub async fn list(&self, filter: ListFilter, page: Page) -> Result<TokenPage, Error> {
        if page.limit == 0 || page.limit > MAX_PAGE_SIZE {
            return Err(Error::InvalidRequest {
                field: "page.limit",
                problem: format!("is {}; allowed is 1 to {MAX_PAGE_SIZE}", page.limit),
            });
        }
        let query = ListQuery::new(filter, self.now(), page.after, page.limit + 1);
        let mut items = self.inner.store.list(&query).await?;
        let next = if items.len() > page.limit as usize {
            items.truncate(page.limit as usize);
            items.last().map(Cursor::after)
        } else {
            None
        };
        Ok(TokenPage { items, next })
    }

    /// Every audit event of one token, in sequence order (read page by page through
    /// [`TokenStore::query_audit`](crate::TokenStore::query_audit); use
    /// [`query_audit`](Self::query_audit) to page yourself), denials this manager queued before
    /// the call included.
    pub async fn audit(&self, id: TokenId) -> Result<Vec<AuditRecord>, Error> {
        self.flush_denials().await;
        let mut query = AuditQuery::new().token(id).limit(MAX_PAGE_SIZE);
        let mut trail = Vec::new();
        loop {
            let page = self.inner.store.query_audit(&query).await?;
            let full = page.len() == MAX_PAGE_SIZE as usize;
            query.after_seq = page.last().map(|r| r.seq);
            trail.extend(page);
            if !full {
                return Ok(trail);
            }
        }
    }
}

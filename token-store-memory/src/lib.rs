//! # token-store-memory
//!
//! An in-process [`TokenStore`]: for tests, examples and single-process applications that accept
//! losing their tokens on restart. It implements the whole contract, including the atomic
//! conditions (live-token limits, derive from an active parent, rotate once, use limits): every
//! state change happens under one write lock together with its audit events.
//!
//! Lookups by id are a hash-map read; bulk revocations by subject, label or issue time scan all
//! records (use the SQL stores for large, long-lived data sets).
//!
//! ```
//! use token_core::{HashKey, KeyId, Keyring, TokenManager};
//! use token_store_memory::MemoryStore;
//!
//! let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
//!     .build()?;
//! # let _ = manager;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use futures_util::stream;
use time::OffsetDateTime;
use token_core::audit_key::{append_link, check_links_before_truncation, seal_checkpoint};
use token_core::store::{
    ClaimOutcome, ConsumeUse, CountLiveWithKey, ImmediateLookup, InsertOutcome, InsertToken,
    ListQuery, MarkExpired, ProofClaim, PurgeRequest, RevocationNotice, RevocationStream,
    RevokeRequest, RevokeSelector, RotateOutcome, RotateToken, StoreError, SuspendRequest,
    TokenStore, TruncateAudit, UpdateOutcome, UpdateToken, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditHash, AuditKeyring, AuditKind, AuditQuery, AuditRecord,
    Cursor, TokenId, TokenIdHasherBuilder, TokenRecord, TokenState,
};
use tokio::sync::broadcast;

/// The in-process store. Clones share the same data and the same revocation feed.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
    revocations: broadcast::Sender<RevocationNotice>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        let (revocations, _) = broadcast::channel(FEED_CAPACITY);
        Self {
            state: Arc::default(),
            revocations,
        }
    }
}

/// Revocation batches buffered per subscriber before it is told it lagged (and must flush).
const FEED_CAPACITY: usize = 1024;

/// Most unexpired proof claims held (about 80 MB); beyond, a claim is refused (fail closed).
const MAX_PROOF_CLAIMS: usize = 1_000_000;

#[derive(Debug, Default)]
struct State {
    records: HashMap<TokenId, Arc<TokenRecord>, TokenIdHasherBuilder>,
    children: HashMap<TokenId, Vec<TokenId>, TokenIdHasherBuilder>,
    audit: BTreeMap<u64, AuditRecord>,
    audit_by_token: HashMap<TokenId, Vec<u64>>,
    next_seq: u64,
    head: Option<AuditHash>,
    checkpoint: Option<AuditCheckpoint>,
    /// Records with an expiry not yet recorded by `mark_expired` (and not revoked).
    unmarked_expiry: BTreeSet<(OffsetDateTime, TokenId)>,
    /// Every record with an expiry, for purging.
    by_expiry: BTreeSet<(OffsetDateTime, TokenId)>,
    /// Every revoked record, for purging.
    by_revocation: BTreeSet<(OffsetDateTime, TokenId)>,
    /// The latest `IssuedBefore` cut-off revoked: no record created before it is inserted.
    cutoff: Option<OffsetDateTime>,
    /// Keys the chain is keyed with, when the host configured them.
    audit_keys: Option<AuditKeyring>,
    /// Claimed proof-of-possession identifiers and until when each must be kept.
    proof_claims: HashMap<[u8; 32], OffsetDateTime>,
}

impl State {
    /// Appends events to the hash chain (the write lock serializes appends).
    fn append(&mut self, events: &[AuditEvent]) {
        for event in events {
            let event = event.clone();
            self.next_seq += 1;
            let seq = self.next_seq;
            let prev = self
                .head
                .or(self.checkpoint.map(|c| c.hash))
                .unwrap_or(AuditHash::GENESIS);
            let (chain_key_id, hash) = append_link(self.audit_keys.as_ref(), &prev, seq, &event);
            self.head = Some(hash);
            if let Some(id) = event.token_id {
                self.audit_by_token.entry(id).or_default().push(seq);
            }
            self.audit.insert(
                seq,
                AuditRecord {
                    seq,
                    event,
                    hash,
                    chain_key_id,
                },
            );
        }
    }

    fn index_insert(&mut self, record: &TokenRecord) {
        if let Some(expires_at) = record.expires_at {
            self.by_expiry.insert((expires_at, record.id));
            if record.revocation.is_none() {
                self.unmarked_expiry.insert((expires_at, record.id));
            }
        }
        if let Some(revocation) = &record.revocation {
            self.by_revocation.insert((revocation.at, record.id));
        }
    }

    fn index_remove(&mut self, record: &TokenRecord) {
        if let Some(expires_at) = record.expires_at {
            self.by_expiry.remove(&(expires_at, record.id));
            self.unmarked_expiry.remove(&(expires_at, record.id));
        }
        if let Some(revocation) = &record.revocation {
            self.by_revocation.remove(&(revocation.at, record.id));
        }
    }

    /// Applies `change` to a record, keeping the indexes in step.
    fn update_indexed(&mut self, id: TokenId, change: impl FnOnce(&mut TokenRecord)) {
        let Some(current) = self.records.get(&id).cloned() else {
            return;
        };
        let marked = current
            .expires_at
            .is_some_and(|e| !self.unmarked_expiry.contains(&(e, id)));
        self.index_remove(&current);
        self.update(id, change);
        if let Some(updated) = self.records.get(&id).cloned() {
            self.index_insert(&updated);
            if (marked || updated.revocation.is_some())
                && let Some(e) = updated.expires_at
            {
                self.unmarked_expiry.remove(&(e, id));
            }
        }
    }

    fn update(&mut self, id: TokenId, change: impl FnOnce(&mut TokenRecord)) -> bool {
        match self.records.get_mut(&id) {
            Some(record) => {
                change(Arc::make_mut(record));
                true
            }
            None => false,
        }
    }

    /// `roots` plus all their derived descendants.
    fn with_descendants(&self, roots: Vec<TokenId>) -> Vec<TokenId> {
        let mut seen: HashSet<TokenId> = HashSet::new();
        let mut queue: VecDeque<TokenId> = roots.into();
        let mut out = Vec::new();
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            out.push(id);
            if let Some(children) = self.children.get(&id) {
                queue.extend(children.iter().copied());
            }
        }
        out
    }

    fn select(&self, selector: &RevokeSelector, now: OffsetDateTime) -> Vec<TokenId> {
        let matching = |pred: &dyn Fn(&TokenRecord) -> bool| -> Vec<TokenId> {
            self.records
                .values()
                .filter(|r| pred(r))
                .map(|r| r.id)
                .collect()
        };
        match selector {
            RevokeSelector::Token(id) => {
                if self.records.contains_key(id) {
                    vec![*id]
                } else {
                    Vec::new()
                }
            }
            RevokeSelector::Subject(subject) => matching(&|r| r.subject == *subject),
            RevokeSelector::Family(id) => match self.records.get(id) {
                Some(member) => {
                    let family = member.family_id;
                    matching(&|r| r.family_id == family)
                }
                None => Vec::new(),
            },
            RevokeSelector::Label { key, value } => {
                matching(&|r| r.labels.get(key).is_some_and(|v| v == value))
            }
            RevokeSelector::IssuedBefore(at) => matching(&|r| r.created_at < *at),
            RevokeSelector::UnusedSince(since) => {
                matching(&|r| is_live(r, now) && r.last_used_at.unwrap_or(r.created_at) < *since)
            }
            // Newer selectors this store does not know match nothing rather than everything.
            _ => Vec::new(),
        }
    }

    fn live_for_subject(&self, subject: &str, now: OffsetDateTime) -> usize {
        self.records
            .values()
            .filter(|r| r.subject == subject && is_live(r, now))
            .count()
    }
}

fn is_live(record: &TokenRecord, now: OffsetDateTime) -> bool {
    record.revocation.is_none() && record.expires_at.is_none_or(|e| now < e)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chains every event appended from now on with the current key of `keys` (a keyed audit
    /// chain, see [`token_core::audit_key`]); give the manager the same keyring
    /// ([`ManagerBuilder::audit_keys`](token_core::ManagerBuilder::audit_keys)) to verify it.
    /// Clones share the setting.
    ///
    /// Without audit keys (the default) the chain is unkeyed: it detects accidental or partial
    /// tampering, not a writer who rewrites events and recomputes the hashes. A store cannot
    /// invent a key that lives outside it, so keying is the host's choice.
    ///
    /// ```
    /// use token_core::{AuditKey, AuditKeyring, KeyId};
    /// use token_store_memory::MemoryStore;
    /// let keys = AuditKeyring::new(AuditKey::generate(KeyId::new(1))?);
    /// let store = MemoryStore::new().with_audit_keys(keys);
    /// # let _ = store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_audit_keys(self, keys: AuditKeyring) -> Self {
        self.write().audit_keys = Some(keys);
        self
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.read().records.len()
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.read().records.is_empty()
    }

    /// Every byte the store holds, rendered as text (records with their hashes, and audit
    /// events). Used by the conformance suite to prove no secret is stored.
    pub fn dump(&self) -> Vec<u8> {
        let state = self.read();
        let mut out = String::new();
        for record in state.records.values() {
            out.push_str(&format!("{record:?}\n"));
            out.extend(record.hash.as_bytes().iter().map(|b| format!("{b:02x}")));
            out.push('\n');
        }
        for event in &state.audit {
            out.push_str(&format!("{event:?}\n"));
        }
        let mut bytes = out.into_bytes();
        for record in state.records.values() {
            bytes.extend_from_slice(record.hash.as_bytes());
        }
        bytes
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        let mut state = self.write();
        let record = &insert.record;
        if state.records.contains_key(&record.id) {
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        if let Some(cutoff) = InsertToken::before_cutoff(record.created_at, state.cutoff) {
            return Ok(InsertOutcome::BeforeRevocationCutoff { cutoff });
        }
        if let Some(parent) = record.parent_id {
            let parent_record = state.records.get(&parent);
            let parent_state = parent_record.map(|p| p.state_at(insert.now));
            if parent_state != Some(TokenState::Active) {
                return Ok(InsertOutcome::ParentNotActive {
                    state: parent_state,
                });
            }
            if let Some(successor) = parent_record.and_then(|p| p.rotated_to) {
                return Ok(InsertOutcome::ParentRotated { successor });
            }
            if let Some(field) = parent_record.and_then(|p| InsertToken::child_widens(p, record)) {
                return Ok(InsertOutcome::WiderThanParent { field });
            }
            if let Some(parent_expires_at) =
                parent_record.and_then(|p| InsertToken::child_outlives(p, record))
            {
                return Ok(InsertOutcome::OutlivesParent { parent_expires_at });
            }
            if let Some(remaining) =
                parent_record.and_then(|p| InsertToken::child_exceeds_uses(p, record, insert.now))
            {
                return Ok(InsertOutcome::UsesExceedParent { remaining });
            }
        }
        if let Some(max) = insert.max_live_for_subject
            && state.live_for_subject(&record.subject, insert.now) >= max as usize
        {
            return Ok(InsertOutcome::SubjectLimitReached);
        }
        if let Some(parent) = record.parent_id {
            state.children.entry(parent).or_default().push(record.id);
        }
        state.index_insert(record);
        state.records.insert(record.id, Arc::new(record.clone()));
        state.append(&insert.events);
        Ok(InsertOutcome::Inserted)
    }

    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        Ok(self.read().records.get(&id).cloned())
    }

    fn get_now(&self, id: TokenId) -> ImmediateLookup {
        match self.read().records.get(&id) {
            Some(record) => ImmediateLookup::Found(Arc::clone(record)),
            None => ImmediateLookup::Absent,
        }
    }

    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        let mut state = self.write();
        let Some(old) = state.records.get(&rotation.predecessor) else {
            return Ok(RotateOutcome::NotFound);
        };
        if let Some(successor) = old.rotated_to {
            return Ok(RotateOutcome::AlreadyRotated(successor));
        }
        let old_state = old.state_at(rotation.now);
        if old_state != TokenState::Active {
            return Ok(RotateOutcome::NotActive(old_state));
        }
        if let Some(cutoff) =
            InsertToken::before_cutoff(rotation.successor.created_at, state.cutoff)
        {
            return Ok(RotateOutcome::BeforeRevocationCutoff { cutoff });
        }
        // The parent and the grants as of now (a concurrent rotation of the parent or an
        // update of the predecessor may have changed them).
        let successor = rotation.successor_for(old);
        if state.records.contains_key(&successor.id) {
            return Err(StoreError::AlreadyExists { id: successor.id });
        }
        let successor_id = successor.id;
        state.update_indexed(rotation.predecessor, |old| {
            old.rotated_to = Some(successor_id);
            old.expires_at = Some(rotation.predecessor_expires_at);
        });
        if let Some(parent) = successor.parent_id {
            state.children.entry(parent).or_default().push(successor_id);
        }
        // The predecessor's children follow the successor: revoking it reaches them.
        let children = state
            .children
            .remove(&rotation.predecessor)
            .unwrap_or_default();
        for child in &children {
            state.update(*child, |c| c.parent_id = Some(successor_id));
        }
        state
            .children
            .entry(successor_id)
            .or_default()
            .extend(children);
        state.index_insert(&successor);
        state.records.insert(successor_id, Arc::new(successor));
        state.append(&rotation.events);
        drop(state);
        // The predecessor now ends at its grace: caches must not serve its longer life.
        let _ = self
            .revocations
            .send(RevocationNotice::Changed(vec![rotation.predecessor]));
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        let mut state = self.write();
        if let RevokeSelector::IssuedBefore(cutoff) = request.selector {
            // Never past the revoker's own time: a cut-off is only ever raised.
            state.cutoff = state.cutoff.max(Some(cutoff.min(request.at)));
        }
        let mut matched = state.select(&request.selector, request.at);
        if let Some(limit) = request.limit {
            // Only unrevoked matches count; the longest-unused go first.
            matched.retain(|id| {
                state
                    .records
                    .get(id)
                    .is_some_and(|r| r.revocation.is_none())
            });
            matched.sort_by_key(|id| {
                state
                    .records
                    .get(id)
                    .map(|r| (r.last_used_at.unwrap_or(r.created_at), *id))
            });
            matched.truncate(limit as usize);
        }
        let targets = state.with_descendants(matched);
        let mut revoked = Vec::new();
        let mut events = Vec::new();
        for id in targets {
            let Some(record) = state.records.get(&id) else {
                continue;
            };
            if record.revocation.is_some() {
                continue;
            }
            events.push(request.event_for(record));
            let revocation = request.revocation();
            state.update_indexed(id, |r| r.revocation = Some(revocation));
            revoked.push(id);
        }
        state.append(&events);
        drop(state);
        if !revoked.is_empty() {
            // No subscribers is not an error.
            let _ = self.revocations.send(RevocationNotice::Revoked(revoked));
        }
        Ok(events)
    }

    async fn suspend(&self, request: &SuspendRequest) -> Result<Vec<AuditEvent>, StoreError> {
        let mut state = self.write();
        let matched = match request.selector {
            RevokeSelector::Token(_)
            | RevokeSelector::Subject(_)
            | RevokeSelector::Family(_)
            | RevokeSelector::Label { .. } => state.select(&request.selector, request.at),
            _ => Vec::new(),
        };
        let mut changed = Vec::new();
        let mut events = Vec::new();
        for id in state.with_descendants(matched) {
            let Some(record) = state.records.get(&id) else {
                continue;
            };
            if !request.applies_to(record) {
                continue;
            }
            events.push(request.event_for(record));
            let suspended_at = request.suspended_at();
            state.update(id, |r| r.suspended_at = suspended_at);
            changed.push(id);
        }
        state.append(&events);
        drop(state);
        if !changed.is_empty() {
            let _ = self.revocations.send(RevocationNotice::Changed(changed));
        }
        Ok(events)
    }

    async fn update(&self, request: &UpdateToken) -> Result<UpdateOutcome, StoreError> {
        let mut state = self.write();
        let Some(current) = state.records.get(&request.id).cloned() else {
            return Ok(UpdateOutcome::NotFound);
        };
        if let Err(refused) = request.check_state(&current) {
            return Ok(refused);
        }
        let (updated, event) = match request.apply(&current) {
            Err(widening) => return Ok(UpdateOutcome::Widens(widening)),
            Ok(None) => {
                return Ok(UpdateOutcome::Updated {
                    record: Box::new((*current).clone()),
                    events: Vec::new(),
                });
            }
            Ok(Some(change)) => change,
        };
        let mut events = vec![event];
        let mut changed = vec![updated.clone()];
        // Narrow the descendants of every changed record, parents before children.
        let mut queue: VecDeque<TokenRecord> = VecDeque::from([updated.clone()]);
        while let Some(parent) = queue.pop_front() {
            let children = state.children.get(&parent.id).cloned().unwrap_or_default();
            for child in children {
                let Some(record) = state.records.get(&child) else {
                    continue;
                };
                if let Some((narrowed, event)) = request.narrow_child(&parent, record) {
                    events.push(event);
                    changed.push(narrowed.clone());
                    queue.push_back(narrowed);
                }
            }
        }
        let ids: Vec<TokenId> = changed.iter().map(|r| r.id).collect();
        for record in changed {
            state.update_indexed(record.id, |r| *r = record);
        }
        state.append(&events);
        drop(state);
        let _ = self.revocations.send(RevocationNotice::Changed(ids));
        Ok(UpdateOutcome::Updated {
            record: Box::new(updated),
            events,
        })
    }

    async fn claim_proof(&self, claim: &ProofClaim) -> Result<ClaimOutcome, StoreError> {
        let mut state = self.write();
        if state.proof_claims.contains_key(&claim.key) {
            return Ok(ClaimOutcome::Replayed);
        }
        if state.proof_claims.len() >= MAX_PROOF_CLAIMS {
            state.proof_claims.retain(|_, until| *until >= claim.now);
            if state.proof_claims.len() >= MAX_PROOF_CLAIMS {
                // Bounded memory: refuse (fail closed) rather than forget a live claim.
                return Err(StoreError::Conflict {
                    message: format!(
                        "{MAX_PROOF_CLAIMS} unexpired proof claims are held; retry when some expire"
                    ),
                });
            }
        }
        state.proof_claims.insert(claim.key, claim.expires_at);
        Ok(ClaimOutcome::Claimed)
    }

    async fn purge_proof_claims(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut state = self.write();
        let expired: Vec<[u8; 32]> = state
            .proof_claims
            .iter()
            .filter(|(_, until)| **until < before)
            .map(|(key, _)| *key)
            .take(limit as usize)
            .collect();
        for key in &expired {
            state.proof_claims.remove(key);
        }
        Ok(expired.len() as u64)
    }

    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        let mut state = self.write();
        let Some(record) = state.records.get(&request.id) else {
            return Ok(UseOutcome::NotFound);
        };
        let counted = match request.apply(record) {
            Ok(counted) => counted,
            Err(outcome) => return Ok(outcome),
        };
        let count = counted.use_count;
        state.update(request.id, |r| *r = counted);
        Ok(UseOutcome::Counted(count))
    }

    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError> {
        let mut state = self.write();
        for update in updates {
            state.update(update.id, |r| {
                r.use_count = r.use_count.saturating_add(update.uses);
                r.last_used_at = r.last_used_at.max(Some(update.last_used_at));
            });
        }
        // Records in memory are always valid: no update is ever refused.
        Ok(Vec::new())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        let state = self.read();
        let mut items: Vec<&Arc<TokenRecord>> = state
            .records
            .values()
            .filter(|r| query.after.is_none_or(|c: Cursor| c.precedes(r)))
            .filter(|r| query.filter.matches(r, query.now))
            .collect();
        items.sort_by_key(|r| (r.created_at, r.id));
        Ok(items
            .into_iter()
            .take(query.limit as usize)
            .map(|r| (**r).clone())
            .collect())
    }

    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError> {
        Ok(self
            .read()
            .records
            .values()
            .filter(|r| r.hash_key_id == query.key && is_live(r, query.now))
            .count() as u64)
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.write().append(events);
        Ok(())
    }

    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        let receiver = self.revocations.subscribe();
        let feed = stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(notice) => Some((notice, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some((RevocationNotice::Interrupted, receiver))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Some(Box::pin(feed)))
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let state = self.read();
        let start = query.after_seq.map_or(0, |s| s.saturating_add(1));
        if let Some(id) = query.token_id {
            // One token's trail: its own index, not a walk of the whole log.
            return Ok(state
                .audit_by_token
                .get(&id)
                .into_iter()
                .flatten()
                .filter(|seq| **seq >= start)
                .filter_map(|seq| state.audit.get(seq))
                .filter(|r| query.matches(r))
                .take(query.limit as usize)
                .cloned()
                .collect());
        }
        Ok(state
            .audit
            .range(start..)
            .map(|(_, r)| r)
            .filter(|r| query.matches(r))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        Ok(self.read().checkpoint)
    }

    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
        let (before, limit) = (request.before, request.limit);
        let mut state = self.write();
        let prefix: Vec<AuditRecord> = state
            .audit
            .values()
            .take(limit as usize)
            .take_while(|r| r.event.at < before)
            .cloned()
            .collect();
        let Some(last) = prefix.last() else {
            return Ok(0);
        };
        // Never seal a checkpoint over events that do not verify.
        let start = state.checkpoint.map_or(AuditHash::GENESIS, |c| c.hash);
        check_links_before_truncation("memory", state.audit_keys.as_ref(), &start, &prefix)?;
        for record in &prefix {
            state.audit.remove(&record.seq);
            if let Some(id) = record.event.token_id
                && let Some(seqs) = state.audit_by_token.get_mut(&id)
            {
                seqs.retain(|s| *s != record.seq);
                if seqs.is_empty() {
                    state.audit_by_token.remove(&id);
                }
            }
        }
        state.checkpoint = Some(seal_checkpoint(
            state.audit_keys.as_ref(),
            last.seq,
            last.hash,
            last.event.at,
        ));
        Ok(prefix.len() as u64)
    }

    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        let (now, limit) = (request.now, request.limit);
        let mut state = self.write();
        let due: Vec<(OffsetDateTime, TokenId)> = state
            .unmarked_expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit as usize)
            .copied()
            .collect();
        let mut events = Vec::new();
        for key in due {
            state.unmarked_expiry.remove(&key);
            if let Some(record) = state.records.get(&key.1)
                && record.revocation.is_none()
            {
                events.push(AuditEvent::by_sweeper(AuditKind::Expired, record, now));
            }
        }
        state.append(&events);
        Ok(events)
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        let mut state = self.write();
        let limit = request.limit as usize;
        let mut due: Vec<TokenId> = state
            .by_revocation
            .iter()
            .take_while(|(at, _)| *at < request.revoked_before)
            .take(limit)
            .map(|(_, id)| *id)
            .collect();
        due.extend(
            state
                .by_expiry
                .iter()
                .take_while(|(at, _)| *at < request.expired_before)
                .take(limit)
                .map(|(_, id)| *id),
        );
        due.sort();
        due.dedup();
        due.truncate(limit);
        let mut events = Vec::new();
        for id in &due {
            let Some(record) = state.records.remove(id) else {
                continue;
            };
            state.index_remove(&record);
            state.children.remove(id);
            if let Some(parent) = record.parent_id
                && let Some(siblings) = state.children.get_mut(&parent)
            {
                siblings.retain(|c| c != id);
            }
            events.push(AuditEvent::by_sweeper(
                AuditKind::Purged,
                &record,
                request.now,
            ));
        }
        state.append(&events);
        Ok(events)
    }
}

//! The requests of [`TokenStore::suspend`](super::TokenStore::suspend) and
//! [`TokenStore::update`](super::TokenStore::update), with the reference semantics every store
//! applies to the records it read (and locked) inside the change's transaction: which records a
//! suspension touches, how an update narrows a token, and how it narrows each descendant.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditKind, Context};
use crate::format::TokenId;
use crate::record::{TokenRecord, TokenState};
use crate::scope::{Scope, ScopeSet};
use crate::update::TokenUpdate;

use super::RevokeSelector;
use super::narrow_limits;

/// Suspend or resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Suspension {
    /// Refuse the tokens until resumed.
    Suspend,
    /// Accept them again (if nothing else ended them).
    Resume,
}

/// A suspension or resumption of what `selector` matches ([`RevokeSelector::Token`],
/// [`Subject`](RevokeSelector::Subject), [`Family`](RevokeSelector::Family) or
/// [`Label`](RevokeSelector::Label); other selectors match nothing here) and every token derived
/// from a match, in one transaction with an event per changed token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SuspendRequest {
    /// What to suspend or resume (plus descendants).
    pub selector: RevokeSelector,
    /// Which.
    pub action: Suspension,
    /// When.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: String,
    /// Who, and from where.
    pub context: Context,
}

impl SuspendRequest {
    /// Builds a request.
    pub fn new(
        selector: RevokeSelector,
        action: Suspension,
        at: OffsetDateTime,
        reason: impl Into<String>,
        context: Context,
    ) -> Self {
        Self {
            selector,
            action,
            at,
            reason: crate::audit::bounded(reason.into()),
            context,
        }
    }

    /// Whether this request changes `record` (reference check for stores): a suspension takes
    /// a token that is neither revoked nor already suspended; a resumption takes a suspended
    /// token that is not revoked, not rotated out and not expired at `at` (resuming never
    /// revives a token something else ended; such a token stays suspended, which changes
    /// nothing).
    pub fn applies_to(&self, record: &TokenRecord) -> bool {
        if record.revocation.is_some() {
            return false;
        }
        match self.action {
            Suspension::Suspend => record.suspended_at.is_none(),
            Suspension::Resume => {
                record.suspended_at.is_some()
                    && record.rotated_to.is_none()
                    && record.expires_at.is_none_or(|end| self.at < end)
            }
        }
    }

    /// The `suspended_at` a changed record gets.
    pub fn suspended_at(&self) -> Option<OffsetDateTime> {
        match self.action {
            Suspension::Suspend => Some(self.at),
            Suspension::Resume => None,
        }
    }

    /// The `Suspended` or `Resumed` event for `record`.
    pub fn event_for(&self, record: &TokenRecord) -> AuditEvent {
        self.event_for_row(record.id, &record.subject)
    }

    /// The event for a row known only by id and subject (a row whose other columns do not
    /// decode: a suspension still reaches it, so an incident is never blocked by a bad row).
    pub fn event_for_row(&self, id: TokenId, subject: &str) -> AuditEvent {
        let kind = match self.action {
            Suspension::Suspend => AuditKind::Suspended,
            Suspension::Resume => AuditKind::Resumed,
        };
        AuditEvent::new(kind, self.at)
            .with_token(id, subject)
            .with_context(&self.context)
            .with_reason(self.reason.clone())
    }
}

/// An update of one token, applied by the store to the record as read (and locked) inside its
/// transaction with [`apply`](Self::apply), then to each descendant with
/// [`narrow_child`](Self::narrow_child), all in that transaction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpdateToken {
    /// The token.
    pub id: TokenId,
    /// The change.
    pub update: TokenUpdate,
    /// When (also the origin of [`TokenUpdate::expires_in`]).
    pub now: OffsetDateTime,
    /// Who, and from where.
    pub context: Context,
}

/// A change an update would widen: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Widening {
    /// The field (`scopes`, `expires_at`, `max_uses`, `idle_timeout`, `allowed_networks`,
    /// `use_refill`, `rate_limits`).
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub problem: String,
}

/// Result of [`TokenStore::update`](super::TokenStore::update).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UpdateOutcome {
    /// Committed: the token as updated and the events written (its `Updated` event first, then
    /// one per narrowed descendant; none when nothing changed).
    Updated {
        /// The token as updated.
        record: Box<TokenRecord>,
        /// The events committed.
        events: Vec<AuditEvent>,
    },
    /// No such token.
    NotFound,
    /// The token is revoked or expired: there is nothing left to change.
    NotActive(TokenState),
    /// The token was rotated: update its successor instead.
    Rotated {
        /// The successor.
        successor: TokenId,
    },
    /// The update would widen the token; nothing was written.
    Widens(Widening),
}

/// One changed field of an `Updated` event: its name and the old and new values.
type FieldChange = (&'static str, Value);

fn time_json(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
}

impl UpdateToken {
    /// Builds a request.
    pub fn new(id: TokenId, update: TokenUpdate, now: OffsetDateTime, context: Context) -> Self {
        Self {
            id,
            update,
            now,
            context,
        }
    }

    /// Whether `current` (as read in the transaction) may be updated at all: not revoked, not
    /// expired at `now` and not rotated out (its successor is the live token; narrowing the old
    /// copy would leave the successor wide). `Err` is the outcome to answer with.
    pub fn check_state(&self, current: &TokenRecord) -> Result<(), UpdateOutcome> {
        match current.state_at(self.now) {
            state @ (TokenState::Revoked | TokenState::Expired) => {
                Err(UpdateOutcome::NotActive(state))
            }
            _ => match current.rotated_to {
                Some(successor) => Err(UpdateOutcome::Rotated { successor }),
                None => Ok(()),
            },
        }
    }

    /// `current` with the update applied, and its `Updated` event; `Ok(None)` when nothing
    /// changes; `Err` when a change would widen the token (nothing may be written then).
    pub fn apply(
        &self,
        current: &TokenRecord,
    ) -> Result<Option<(TokenRecord, AuditEvent)>, Widening> {
        let u = &self.update;
        let mut next = current.clone();
        let mut changes: Vec<FieldChange> = Vec::new();
        if let Some(scopes) = &u.scopes {
            let uncovered = current.scopes.uncovered(scopes);
            if !uncovered.is_empty() {
                return Err(Widening {
                    field: "scopes",
                    problem: format!(
                        "{} not covered by the token's scopes ({}); an update only narrows, issue a new token to widen",
                        join(uncovered.iter().copied()),
                        current.scopes
                    ),
                });
            }
            if *scopes != current.scopes {
                changes.push((
                    "scopes",
                    json!({"old": current.scopes.to_string(), "new": scopes.to_string()}),
                ));
                next.scopes = scopes.clone();
            }
        }
        let expiry = match (u.expires_at, u.expires_in) {
            (Some(at), Some(ttl)) => Some(at.min(later(self.now, ttl))),
            (Some(at), None) => Some(at),
            (None, Some(ttl)) => Some(later(self.now, ttl)),
            (None, None) => None,
        };
        if let Some(end) = expiry {
            if current.expires_at.is_some_and(|old| end > old) {
                return Err(Widening {
                    field: "expires_at",
                    problem: format!(
                        "{} is later than the token's expiry {}; an update only moves the expiry earlier",
                        time_json(Some(end)),
                        time_json(current.expires_at)
                    ),
                });
            }
            if current.expires_at != Some(end) {
                changes.push((
                    "expires_at",
                    json!({"old": time_json(current.expires_at), "new": time_json(Some(end))}),
                ));
                next.expires_at = Some(end);
            }
        }
        if let Some(max) = u.max_uses {
            if current.max_uses.is_some_and(|old| max > old) {
                return Err(Widening {
                    field: "max_uses",
                    problem: format!(
                        "{max} is more than the token's limit of {}; an update only lowers it",
                        current.max_uses.unwrap_or_default()
                    ),
                });
            }
            if current.max_uses != Some(max) {
                changes.push(("max_uses", json!({"old": current.max_uses, "new": max})));
                next.max_uses = Some(max);
            }
        }
        if let Some(idle) = u.idle_timeout {
            if current.idle_timeout.is_some_and(|old| idle > old) {
                return Err(Widening {
                    field: "idle_timeout",
                    problem: format!(
                        "{} s is longer than the token's idle timeout of {} s; an update only shortens it",
                        idle.as_secs(),
                        current.idle_timeout.unwrap_or_default().as_secs()
                    ),
                });
            }
            if current.idle_timeout != Some(idle) {
                changes.push((
                    "idle_timeout",
                    json!({
                        "old": current.idle_timeout.map(|d| d.as_secs()),
                        "new": idle.as_secs()
                    }),
                ));
                next.idle_timeout = Some(idle);
            }
        }
        if let Some(networks) = &u.allowed_networks {
            if let Some(old) = &current.allowed_networks
                && !old.covers(networks)
            {
                return Err(Widening {
                    field: "allowed_networks",
                    problem: format!(
                        "{networks} is not within the token's allowlist ({old}); an update only shrinks it"
                    ),
                });
            }
            if current.allowed_networks.as_ref() != Some(networks) {
                changes.push((
                    "allowed_networks",
                    json!({
                        "old": current.allowed_networks.as_ref().map(ToString::to_string),
                        "new": networks.to_string()
                    }),
                ));
                next.allowed_networks = Some(networks.clone());
            }
        }
        if let Some(refill) = u.use_refill
            && let Some(change) = narrow_limits::apply_refill(current, &mut next, refill, self.now)?
        {
            changes.push(("use_refill", change));
        }
        if let Some(limits) = &u.rate_limits
            && let Some(change) = narrow_limits::apply_rate_limits(current, &mut next, limits)?
        {
            changes.push(("rate_limits", change));
        }
        if let Some(name) = &u.name
            && *name != current.name
        {
            changes.push(("name", json!({"old": current.name, "new": name})));
            next.name.clone_from(name);
        }
        if let Some(description) = &u.description
            && *description != current.description
        {
            changes.push((
                "description",
                json!({"old": current.description, "new": description}),
            ));
            next.description.clone_from(description);
        }
        if let Some(labels) = &u.labels
            && *labels != current.labels
        {
            changes.push(("labels", json!({"old": current.labels, "new": labels})));
            next.labels.clone_from(labels);
        }
        if let Some(metadata) = &u.metadata
            && *metadata != current.metadata
        {
            // Key names only: the host's values may be personal data the trail should not keep.
            let keys = |m: &Option<crate::metadata::Metadata>| {
                m.as_ref()
                    .map(|m| m.as_map().keys().cloned().collect::<Vec<_>>())
            };
            changes.push((
                "metadata",
                json!({"old_keys": keys(&current.metadata), "new_keys": keys(metadata)}),
            ));
            next.metadata.clone_from(metadata);
        }
        if changes.is_empty() {
            return Ok(None);
        }
        let event = self.event(&next, &changes, None);
        Ok(Some((next, event)))
    }

    /// `child` narrowed to fit under its (updated) `parent`, and its `Updated` event; `None` when
    /// it already fits. Scopes become those both grant (each scope of one that the other
    /// covers), the expiry and idle timeout the earlier and shorter, the uses left no more than
    /// the parent's, the allowlist the blocks both contain (the parent's when the child had
    /// none). A child left with no scope or no network in common expires at `now`: it could no
    /// longer be used for anything its parent allows.
    pub fn narrow_child(
        &self,
        parent: &TokenRecord,
        child: &TokenRecord,
    ) -> Option<(TokenRecord, AuditEvent)> {
        let mut next = child.clone();
        let mut changes: Vec<FieldChange> = Vec::new();
        let mut nothing_left = false;
        if !parent.scopes.covers(&child.scopes) {
            let both: BTreeSet<Scope> = child
                .scopes
                .iter()
                .filter(|s| parent.scopes.covers(&single(s)))
                .chain(
                    parent
                        .scopes
                        .iter()
                        .filter(|p| child.scopes.covers(&single(p))),
                )
                .cloned()
                .collect();
            let narrowed = ScopeSet::from_scopes(both).unwrap_or_default();
            nothing_left |= narrowed.is_empty();
            changes.push((
                "scopes",
                json!({"old": child.scopes.to_string(), "new": narrowed.to_string()}),
            ));
            next.scopes = narrowed;
        }
        match (&parent.allowed_networks, &child.allowed_networks) {
            (None, _) => {}
            (Some(theirs), Some(mine)) if theirs.covers(mine) => {}
            (Some(theirs), mine) => {
                let narrowed = match mine {
                    None => Some(theirs.clone()),
                    Some(mine) => theirs.intersection(mine),
                };
                nothing_left |= narrowed.is_none();
                changes.push((
                    "allowed_networks",
                    json!({
                        "old": mine.as_ref().map(ToString::to_string),
                        "new": narrowed.as_ref().map(ToString::to_string)
                    }),
                ));
                // With nothing in common the child keeps its own list and expires below.
                if narrowed.is_some() {
                    next.allowed_networks = narrowed;
                }
            }
        }
        if let Some((change, dropped)) =
            narrow_limits::narrow_child_rate_limits(parent, child, &mut next)
        {
            // Limits that would not fit with the parent's: the child cannot keep them, and
            // losing them would loosen it, so it ends instead.
            nothing_left |= dropped;
            changes.push(("rate_limits", change));
        }
        let mut end = match (parent.expires_at, child.expires_at) {
            (Some(p), Some(c)) => Some(p.min(c)),
            (Some(p), None) => Some(p),
            (None, c) => c,
        };
        if nothing_left {
            end = Some(end.map_or(self.now, |e| e.min(self.now)));
        }
        if end != child.expires_at {
            changes.push((
                "expires_at",
                json!({"old": time_json(child.expires_at), "new": time_json(end)}),
            ));
            next.expires_at = end;
        }
        if let Some(change) = narrow_limits::narrow_child_refill(parent, child, &mut next, self.now)
        {
            changes.push(("use_refill", change));
        }
        if let Some(parent_left) = parent.remaining_uses_at(self.now) {
            let child_used = next.uses_at(self.now);
            let child_left = child
                .max_uses
                .map_or(u64::MAX, |m| m.saturating_sub(child_used));
            if child_left > parent_left {
                let max = child_used.saturating_add(parent_left);
                changes.push(("max_uses", json!({"old": child.max_uses, "new": max})));
                next.max_uses = Some(max);
            }
        }
        if let Some(parent_idle) = parent.idle_timeout
            && child.idle_timeout.is_none_or(|c| c > parent_idle)
        {
            changes.push((
                "idle_timeout",
                json!({
                    "old": child.idle_timeout.map(|d| d.as_secs()),
                    "new": parent_idle.as_secs()
                }),
            ));
            next.idle_timeout = Some(parent_idle);
        }
        if changes.is_empty() {
            return None;
        }
        let event = self.event(&next, &changes, Some(parent.id));
        Some((next, event))
    }

    /// The `Updated` event of `record`: `detail` is a JSON object of the changed fields, each
    /// with its old and new value; a descendant's names the ancestor it was narrowed with.
    fn event(
        &self,
        record: &TokenRecord,
        changes: &[FieldChange],
        narrowed_with: Option<TokenId>,
    ) -> AuditEvent {
        let fields: serde_json::Map<String, Value> = changes
            .iter()
            .map(|(field, change)| ((*field).to_owned(), change.clone()))
            .collect();
        let mut event = AuditEvent::new(AuditKind::Updated, self.now)
            .with_token(record.id, record.subject.clone())
            .with_context(&self.context)
            .with_detail(Value::Object(fields).to_string());
        if let Some(parent) = narrowed_with {
            event = event.with_reason(format!("narrowed with its parent {parent}"));
        }
        event
    }
}

/// `now + ttl`, saturating at the latest representable instant (never a panic).
fn later(now: OffsetDateTime, ttl: std::time::Duration) -> OffsetDateTime {
    time::Duration::try_from(ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .unwrap_or_else(|| OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT))
}

fn single(scope: &Scope) -> ScopeSet {
    ScopeSet::from_scopes([scope.clone()]).unwrap_or_default()
}

fn join<'a>(scopes: impl Iterator<Item = &'a Scope>) -> String {
    let names: Vec<&str> = scopes.map(Scope::as_str).collect();
    let verb = if names.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", names.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{KeyId, TokenHash};

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    fn record(id: u8, scopes: &str) -> TokenRecord {
        let mut r = TokenRecord::for_tests(
            TokenId::from_bytes([id; 16]),
            TokenHash::from_bytes([0; 32]),
            KeyId::new(1),
            NOW - time::Duration::hours(1),
        );
        r.scopes = ScopeSet::parse(scopes).unwrap_or_default();
        r.expires_at = Some(NOW + time::Duration::days(30));
        r
    }

    fn update(update: TokenUpdate) -> UpdateToken {
        UpdateToken::new(TokenId::from_bytes([1; 16]), update, NOW, Context::new())
    }

    #[test]
    fn every_granting_field_only_narrows() {
        let mut current = record(1, "repo:*:read deploy");
        current.max_uses = Some(10);
        current.idle_timeout = Some(std::time::Duration::from_secs(3600));
        current.allowed_networks = "10.0.0.0/8".parse().ok();
        let widen = [
            (
                TokenUpdate::new().scopes(ScopeSet::parse("repo:*").unwrap_or_default()),
                "scopes",
            ),
            (
                TokenUpdate::new().expires_at(NOW + time::Duration::days(31)),
                "expires_at",
            ),
            (TokenUpdate::new().max_uses(11), "max_uses"),
            (
                TokenUpdate::new().idle_timeout(std::time::Duration::from_secs(3601)),
                "idle_timeout",
            ),
            (
                TokenUpdate::new()
                    .allowed_networks("11.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))),
                "allowed_networks",
            ),
        ];
        for (change, field) in widen {
            let err = update(change).apply(&current).err();
            assert_eq!(err.map(|w| w.field), Some(field));
        }
        let narrow = TokenUpdate::new()
            .scopes(ScopeSet::parse("repo:a:read").unwrap_or_default())
            .expires_in(std::time::Duration::from_secs(60))
            .max_uses(3)
            .idle_timeout(std::time::Duration::from_secs(60))
            .allowed_networks("10.1.0.0/16".parse().unwrap_or_else(|e| panic!("{e}")))
            .name("renamed");
        let (next, event) = update(narrow)
            .apply(&current)
            .unwrap_or_else(|w| panic!("{w:?}"))
            .unwrap_or_else(|| panic!("nothing changed"));
        assert_eq!(next.scopes.to_string(), "repo:a:read");
        assert_eq!(next.expires_at, Some(NOW + time::Duration::seconds(60)));
        assert_eq!(next.max_uses, Some(3));
        assert_eq!(next.name.as_deref(), Some("renamed"));
        assert_eq!(event.kind, AuditKind::Updated);
        let detail: Value =
            serde_json::from_str(event.detail.as_deref().unwrap_or("{}")).unwrap_or_default();
        for field in [
            "scopes",
            "expires_at",
            "max_uses",
            "idle_timeout",
            "allowed_networks",
            "name",
        ] {
            assert!(detail.get(field).is_some(), "{field} missing from {detail}");
        }
        assert!(update(TokenUpdate::new().name("x")).apply(&next).is_ok());
        assert!(matches!(
            update(TokenUpdate::new()).apply(&current),
            Ok(None)
        ));
    }

    #[test]
    fn children_are_narrowed_into_their_parent() {
        let mut parent = record(1, "repo:a:read");
        parent.expires_at = Some(NOW + time::Duration::days(1));
        parent.allowed_networks = "10.1.0.0/16".parse().ok();
        let mut child = record(2, "repo:*:read");
        child.allowed_networks = "10.0.0.0/8".parse().ok();
        let (narrowed, _) = update(TokenUpdate::new())
            .narrow_child(&parent, &child)
            .unwrap_or_else(|| panic!("child not narrowed"));
        assert_eq!(narrowed.scopes.to_string(), "repo:a:read");
        assert_eq!(narrowed.expires_at, parent.expires_at);
        assert_eq!(narrowed.allowed_networks, parent.allowed_networks);
        assert!(
            update(TokenUpdate::new())
                .narrow_child(&parent, &narrowed)
                .is_none()
        );
        let disjoint = record(3, "billing:read");
        let (gone, _) = update(TokenUpdate::new())
            .narrow_child(&parent, &disjoint)
            .unwrap_or_else(|| panic!("not narrowed"));
        assert_eq!(gone.expires_at, Some(NOW), "nothing in common: expires now");
    }
}

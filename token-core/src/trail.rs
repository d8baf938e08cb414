//! The audit trail as the manager exposes it: queries, JSON Lines export, chain verification,
//! denial coalescing, optional use events and the sink hook.
//!
//! **Tamper evidence.** Every stored event carries `hash = blake3(previous hash ‖ canonical
//! bytes)` ([`chain_hash`](crate::audit::chain_hash)); stores compute it while appending, inside the transaction of the
//! change and serialized per store, so concurrent writers cannot fork the chain.
//! [`TokenManager::verify_audit_chain`](crate::TokenManager::verify_audit_chain) recomputes the links and reports the first broken one: an
//! edited event, a deleted event (its successor no longer links) and reordered events are all
//! detected. Removing events from the *end* leaves a shorter but valid chain; to detect that, keep
//! the reported head (sequence number and hash) outside the database, e.g. in your log pipeline.
//! Retention truncates the oldest events and keeps a checkpoint, so the remaining chain still
//! verifies.
//!
//! **Denials.** `Denied` events are coalesced per token id, whether or not the store knows the id
//! (keyed finer for unknown ids, the count of writes would tell a prober which ids exist), per
//! interval (default 60 s): the first denial in a window is written, later ones are counted and
//! reported in the `detail` of the next written denial (`coalesced=N`), so an attacker cannot flood
//! the log. At most 10,000 keys are tracked and at most [`MAX_DENIED_EVENTS_PER_WINDOW`] denials
//! are written per window across all keys (invented unknown ids would otherwise each cost a
//! write); beyond that denials are counted in `stats().denied_events_coalesced`, not written.
//! Written denials are queued and appended by a background task, never on the response path
//! ([`TokenManager::flush_denials`](crate::TokenManager::flush_denials) waits for them).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditHash, AuditRecord};

/// Receives every audit event the manager has written to the store (after the write succeeded),
/// e.g. to forward to `tracing` or a SIEM. The store remains the record; a sink must not block.
///
/// ```
/// use token_core::{AuditEvent, AuditSink};
/// struct Stderr;
/// impl AuditSink for Stderr {
///     fn record(&self, event: &AuditEvent) {
///         let _ = (event.kind, event.token_id); // forward somewhere
///     }
/// }
/// ```
pub trait AuditSink: Send + Sync + 'static {
    /// Called once per written event, after the store committed it, with the event exactly as
    /// the store wrote it (bulk operations included: revoke by selector and sweeps hand over the
    /// events the store returned, subject and all).
    fn record(&self, event: &AuditEvent);
}

impl<T: AuditSink + ?Sized> AuditSink for std::sync::Arc<T> {
    fn record(&self, event: &AuditEvent) {
        (**self).record(event);
    }
}

/// Whether successful validations write `Used` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UseAudit {
    /// No `Used` events (the default; `last_used_at`/`use_count` still track usage).
    #[default]
    Off,
    /// One `Used` event per successful validation.
    Every,
    /// One `Used` event per `n` successful validations (process-wide).
    OneIn(u32),
}

/// One page of [`TokenManager::query_audit`](crate::TokenManager::query_audit).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditPage {
    /// The events, in sequence order.
    pub items: Vec<AuditRecord>,
    /// Pass to [`AuditQuery::after`](crate::AuditQuery::after) for the next page; `None` on the last page.
    pub next_after: Option<u64>,
}

/// A link of the chain that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenLink {
    /// The first event whose stored hash does not match.
    pub seq: u64,
    /// The hash recomputed from the previous link and this event's content.
    pub expected: AuditHash,
    /// The hash stored with the event.
    pub stored: AuditHash,
}

/// Result of [`TokenManager::verify_audit_chain`](crate::TokenManager::verify_audit_chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// Events checked.
    pub checked: u64,
    /// The first broken link, if any.
    pub first_broken: Option<BrokenLink>,
    /// The last event checked: anchor it outside the database to detect tail deletion.
    pub head: Option<(u64, AuditHash)>,
}

impl ChainReport {
    /// Whether every checked link verified.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

const MAX_DENIAL_KEYS: usize = 10_000;

/// Most `Denied` events written per coalescing window across all keys. Unknown ids are free to
/// invent (the checksum is public), so without a global cap each would cost a store write: a
/// flood could hold the write lock that revocations need.
pub const MAX_DENIED_EVENTS_PER_WINDOW: u64 = 600;

/// Per-key windows for `Denied` events.
#[derive(Debug)]
pub(crate) struct DenialCoalescer {
    window: time::Duration,
    keys: Mutex<HashMap<String, Window>>,
    budget: Mutex<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: OffsetDateTime,
    suppressed: u64,
}

/// What to do with one denial.
pub(crate) enum Admission {
    /// Write an event, reporting this many suppressed denials of the previous window.
    Write { suppressed: u64 },
    /// Count it only.
    Suppress,
}

impl DenialCoalescer {
    pub(crate) fn new(window: std::time::Duration) -> Self {
        Self {
            window: time::Duration::try_from(window).unwrap_or(time::Duration::MAX),
            keys: Mutex::new(HashMap::new()),
            budget: Mutex::new(Window {
                start: OffsetDateTime::UNIX_EPOCH,
                suppressed: 0,
            }),
        }
    }

    /// Takes one write from the global budget of the current window.
    fn spend(&self, now: OffsetDateTime) -> bool {
        let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        if now - budget.start >= self.window {
            *budget = Window {
                start: now,
                suppressed: 0,
            };
        }
        // `suppressed` counts writes spent here.
        if budget.suppressed >= MAX_DENIED_EVENTS_PER_WINDOW {
            return false;
        }
        budget.suppressed += 1;
        true
    }

    pub(crate) fn admit(&self, key: &str, now: OffsetDateTime) -> Admission {
        if self.window.is_zero() {
            return Admission::Write { suppressed: 0 };
        }
        let admission = self.admit_key(key, now);
        match admission {
            Admission::Write { .. } if !self.spend(now) => Admission::Suppress,
            other => other,
        }
    }

    fn admit_key(&self, key: &str, now: OffsetDateTime) -> Admission {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(window) = keys.get_mut(key) {
            if now - window.start < self.window {
                window.suppressed += 1;
                return Admission::Suppress;
            }
            let suppressed = window.suppressed;
            *window = Window {
                start: now,
                suppressed: 0,
            };
            return Admission::Write { suppressed };
        }
        if keys.len() >= MAX_DENIAL_KEYS {
            let window = self.window;
            keys.retain(|_, w| now - w.start < window);
            if keys.len() >= MAX_DENIAL_KEYS {
                return Admission::Suppress;
            }
        }
        keys.insert(
            key.to_owned(),
            Window {
                start: now,
                suppressed: 0,
            },
        );
        Admission::Write { suppressed: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_coalesced_per_key_and_window() {
        let c = DenialCoalescer::new(std::time::Duration::from_secs(60));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(matches!(
            c.admit("a", t0),
            Admission::Write { suppressed: 0 }
        ));
        assert!(matches!(c.admit("a", t0), Admission::Suppress));
        assert!(matches!(
            c.admit("b", t0),
            Admission::Write { suppressed: 0 }
        ));
        assert!(matches!(
            c.admit("a", t0 + time::Duration::seconds(59)),
            Admission::Suppress
        ));
        assert!(matches!(
            c.admit("a", t0 + time::Duration::seconds(60)),
            Admission::Write { suppressed: 2 }
        ));
    }

    #[test]
    fn writes_per_window_are_capped_across_keys() {
        let c = DenialCoalescer::new(std::time::Duration::from_secs(60));
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let written = (0..2000)
            .filter(|i| matches!(c.admit(&format!("k{i}"), t0), Admission::Write { .. }))
            .count();
        assert_eq!(written as u64, MAX_DENIED_EVENTS_PER_WINDOW);
        let later = t0 + time::Duration::seconds(60);
        assert!(matches!(c.admit("fresh", later), Admission::Write { .. }));
    }

    #[test]
    fn key_table_is_bounded() {
        let c = DenialCoalescer::new(std::time::Duration::from_secs(60));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for i in 0..MAX_DENIAL_KEYS {
            c.admit(&i.to_string(), t0);
        }
        assert!(matches!(c.admit("new", t0), Admission::Suppress));
        // Once old windows expire, new keys are admitted again.
        assert!(matches!(
            c.admit("new", t0 + time::Duration::seconds(61)),
            Admission::Write { .. }
        ));
    }
}

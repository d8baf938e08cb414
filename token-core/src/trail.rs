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
//! **The checkpoint is a claim, checked against the retention policy.** Whoever can write to the
//! database can delete a prefix of the trail that includes *recent* events and write a checkpoint
//! naming the last deleted one; the links then verify as after retention. Retention only removes
//! events older than [`Retention::audit_max_age`](crate::Retention::audit_max_age), so the report
//! carries the checkpoint and a [`CheckpointCheck`]: a checkpoint whose last removed event is
//! younger than the policy allows (or any checkpoint when the policy keeps the trail forever)
//! could not have been written by retention, and [`ChainReport::is_intact`] is then `false`. The
//! check needs the checkpoint's time ([`AuditCheckpoint::at`](crate::AuditCheckpoint::at)); a
//! checkpoint without one (written by a SQL store before schema version 3) yields
//! [`CheckpointCheck::TimeUnknown`], which proves nothing either way. With audit keys the
//! checkpoint is no longer just a claim: stores seal it with a keyed MAC
//! ([`AuditCheckpoint::mac`](crate::AuditCheckpoint::mac)), a MAC that does not verify is a break
//! ([`ChainReport::checkpoint_broken`]) and a missing one in front of a keyed trail is
//! [`CheckpointCheck::Unauthenticated`] (see the manual's
//! [keyed chain](crate::manual::audit_chain#the-keyed-chain)).
//!
//! **Anchoring.** Nothing inside the database can prove that its newest events, or its whole
//! history, are still there: whoever can rewrite the trail can rewrite every hash after the point
//! they changed. So copy [`ChainReport::head`] (sequence number and hash) somewhere the database's
//! writers cannot reach (your log pipeline, a ticket, another database) on a schedule, and on each
//! later verification check that the anchored event is still there with the same hash
//! ([`AuditQuery::after`](crate::AuditQuery::after) with `seq - 1`, limit 1), or, if the report's
//! checkpoint is past it, that the anchor is older than the audit retention.
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

use crate::audit::{AuditCheckpoint, AuditEvent, AuditHash, AuditRecord};
use crate::keyring::KeyId;

/// Receives every audit event the manager has written to the store (after the write succeeded),
/// e.g. to forward to `tracing` or a SIEM. The store remains the record; a sink must not block.
/// Events of one change arrive in their order, but `Denied` events are written by a background
/// task, so they may reach the sink before or after a concurrent change's events whatever their
/// sequence numbers: order by [`AuditRecord::seq`] in the store, not by arrival.
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
    /// The hash recomputed from the previous link and this event's content; `None` for a keyed
    /// link, whose correct value is a MAC under the audit key (reporting it would hand a forger
    /// the value to write).
    pub expected: Option<AuditHash>,
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
    /// The last event checked (sequence number and hash): copy it outside the database (see
    /// [anchoring](crate::trail)) to detect later deletion of the tail or a rewritten history.
    pub head: Option<(u64, AuditHash)>,
    /// The retention checkpoint verification started from (`None` without one, and when
    /// verification started at a given sequence number).
    pub checkpoint: Option<AuditCheckpoint>,
    /// Whether retention could have written that checkpoint.
    pub checkpoint_check: CheckpointCheck,
    /// Checked events whose link is keyed ([`audit_key`](crate::audit_key)). With audit keys
    /// configured since some point, `checked - keyed` is the unkeyed history before it; a count
    /// that shrinks between verifications means keyed events were rewritten as unkeyed.
    pub keyed: u64,
    /// The first event chained with an audit key this manager lacks (sequence number and key
    /// id): verification stops there, since its link can be neither verified nor followed.
    pub missing_key: Option<(u64, KeyId)>,
    /// The first unkeyed event after a keyed one, when this manager has audit keys: a store
    /// configured with audit keys never goes back to unkeyed links, so this is a keyed event
    /// rewritten by a writer without the key. Also, with
    /// [`ManagerBuilder::audit_keys_required_from`](crate::ManagerBuilder::audit_keys_required_from),
    /// the first unkeyed event at or after the required point, keyed event before it or not.
    /// Verification stops there.
    pub downgraded: Option<u64>,
    /// The retention checkpoint's MAC ([`AuditCheckpoint::mac`]) does not verify, or names an
    /// audit key this manager lacks: checked when the manager has audit keys and verification
    /// started from the checkpoint. The links after it are still verified (and reported).
    pub checkpoint_broken: Option<crate::audit_key::CheckpointBreak>,
}

impl ChainReport {
    /// Whether the trail is what this library leaves behind: every checked link verified
    /// ([`links_verify`](Self::links_verify)) and the checkpoint, if any, is one retention could
    /// have written ([`CheckpointCheck::is_suspect`] is `false`).
    ///
    /// The checkpoint verdict is part of this answer, not a separate one, because a recent
    /// prefix deleted behind a rewritten checkpoint is as much tampering as an edited event, and
    /// a host that checks one flag must see it. The fields say which it was.
    pub fn is_intact(&self) -> bool {
        self.links_verify() && !self.checkpoint_check.is_suspect()
    }

    /// Whether every checked link verified (the chain alone, without the checkpoint verdict): no
    /// broken link, no link under a missing audit key, no unkeyed link where a keyed one is
    /// due, and no checkpoint MAC that fails to verify ([`checkpoint_broken`](Self::checkpoint_broken)).
    pub fn links_verify(&self) -> bool {
        self.first_broken.is_none()
            && self.missing_key.is_none()
            && self.downgraded.is_none()
            && self.checkpoint_broken.is_none()
    }
}

/// Clock difference between instances that [`CheckpointCheck`] tolerates: a checkpoint is
/// suspect only if its last removed event is younger than the audit retention by more than
/// this (the instance that swept may run slightly ahead of the one verifying).
pub const CHECKPOINT_CLOCK_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the retention checkpoint a verification started from could have been written by
/// retention ([`ChainReport::checkpoint_check`]), judged with the manager's
/// [`Retention::audit_max_age`](crate::Retention::audit_max_age) and clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointCheck {
    /// No checkpoint was used: the trail verified from its first event, or from a given sequence
    /// number.
    NotUsed,
    /// The last removed event is older than the audit retention: retention may have removed it.
    WithinRetention,
    /// The last removed event is younger than the audit retention (by more than
    /// [`CHECKPOINT_CLOCK_ALLOWANCE`]): retention cannot have removed it, so someone else deleted
    /// the trail up to it.
    TooRecent {
        /// When the last removed event happened.
        removed_at: OffsetDateTime,
        /// Retention removes only events before this instant (now minus the audit retention, plus
        /// the allowance).
        removable_before: OffsetDateTime,
    },
    /// A checkpoint exists but the retention policy keeps the trail forever: this policy did not
    /// write it (expected only if retention was switched off after it truncated).
    RetentionOff,
    /// The checkpoint has no time (one a SQL store wrote before schema version 3), so nothing can
    /// be said about it.
    TimeUnknown,
    /// The checkpoint carries no MAC ([`AuditCheckpoint::mac`]) although this manager has audit
    /// keys and the trail after it is keyed (its first remaining event is, or the checkpoint
    /// lies past [`ManagerBuilder::audit_keys_required_from`](crate::ManagerBuilder::audit_keys_required_from)):
    /// a store with audit keys seals every checkpoint it writes, so this one was written by a
    /// writer without the key (or by an instance that swept without the audit keys). Its time
    /// is not judged: it is as unproven as the rest of the row.
    Unauthenticated,
}

impl CheckpointCheck {
    /// Whether the checkpoint is one retention could not have written (`TooRecent`,
    /// `RetentionOff`, `Unauthenticated`).
    pub fn is_suspect(&self) -> bool {
        matches!(
            self,
            Self::TooRecent { .. } | Self::RetentionOff | Self::Unauthenticated
        )
    }

    /// Judges `checkpoint` at `now` under an audit retention of `max_age` (`None`: kept forever),
    /// by its time alone: the MAC, and so [`Unauthenticated`](Self::Unauthenticated), is
    /// [`verify_audit_chain`](crate::TokenManager::verify_audit_chain)'s to check.
    ///
    /// ```
    /// use std::time::Duration;
    /// use token_core::{AuditCheckpoint, AuditHash, trail::CheckpointCheck};
    ///
    /// let now = time::macros::datetime!(2030-06-01 0:00 UTC);
    /// let day = Duration::from_secs(86_400);
    /// let removed = |days_ago: i64| AuditCheckpoint {
    ///     seq: 7,
    ///     hash: AuditHash::GENESIS,
    ///     at: Some(now - time::Duration::days(days_ago)),
    ///     mac: None,
    /// };
    /// let keep_30_days = Some(30 * day);
    /// assert_eq!(CheckpointCheck::judge(&removed(31), now, keep_30_days), CheckpointCheck::WithinRetention);
    /// assert!(CheckpointCheck::judge(&removed(2), now, keep_30_days).is_suspect());
    /// assert!(CheckpointCheck::judge(&removed(31), now, None).is_suspect());
    /// ```
    pub fn judge(
        checkpoint: &AuditCheckpoint,
        now: OffsetDateTime,
        max_age: Option<std::time::Duration>,
    ) -> Self {
        let Some(max_age) = max_age else {
            return Self::RetentionOff;
        };
        let Some(removed_at) = checkpoint.at else {
            return Self::TimeUnknown;
        };
        let span =
            |d: std::time::Duration| time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        let removable_before = now
            .saturating_sub(span(max_age))
            .saturating_add(span(CHECKPOINT_CLOCK_ALLOWANCE));
        if removed_at < removable_before {
            Self::WithinRetention
        } else {
            Self::TooRecent {
                removed_at,
                removable_before,
            }
        }
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

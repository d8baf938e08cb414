//! The reference model of the token lifecycle: pure, in memory, small enough to check by eye.
//! Its answer to each [`Op`] is what the library must answer; the model-based case
//! (`cases/model.rs`) runs random sequences of operations against it and a store, and compares
//! every step.
//!
//! It covers issue (with use limits), derive (scopes only narrow, uses no more than the parent
//! has left, the parent must be active), rotation (no grace: the predecessor ends at once, its
//! children move under the successor, the successor holds the uses left), revocation by token,
//! family and subject (descendants included), suspension and resumption (descendants included,
//! never reviving what ended), updates that narrow scopes (descendants narrowed with them, a
//! descendant left with no scope ended), usage credits that refill every hour (reset, not
//! accumulated; inherited by derived tokens; carried by rotation), validation (state precedence
//! revoked, expired, suspended, used up, then scopes; a use-limited token counts its use), the
//! clock, and restarting the manager. Time stays within the default policy's 30-day TTL and idle
//! timeout, so neither ends a token here.

use std::collections::{BTreeSet, HashMap};

/// The scopes tokens get, by bit of a mask: bit 0 is `a`, bit 1 is `b`.
pub const SCOPES: [&str; 2] = ["a", "b"];

/// The refill period of tokens issued with credits that refill, in minutes (`hourly`).
pub const REFILL_MINUTES: u64 = 60;

/// The first refill boundary after `now` on the schedule through `anchor` (a token's issue, or
/// its last stored boundary), in minutes.
fn next_boundary(anchor: u64, now: u64) -> u64 {
    anchor + ((now.saturating_sub(anchor)) / REFILL_MINUTES + 1) * REFILL_MINUTES
}

/// One step of a sequence. Token arguments index the tokens issued so far (modulo their number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Issue a root token for subject `s{subject}` with the scopes of `mask`, use-limited to
    /// `uses` if set.
    Issue {
        /// Which of a few subjects.
        subject: u8,
        /// Scopes, by bit (at least one is set).
        mask: u8,
        /// `max_uses`.
        uses: Option<u8>,
        /// With `uses`: the credits come back every [`REFILL_MINUTES`].
        refill: bool,
    },
    /// Derive from token `parent` with the scopes of `mask` and an optional use limit.
    Derive {
        /// The parent.
        parent: u8,
        /// Scopes, by bit (at least one is set).
        mask: u8,
        /// `max_uses`.
        uses: Option<u8>,
    },
    /// Rotate token `token` with no grace window.
    Rotate {
        /// The token.
        token: u8,
    },
    /// Revoke by selector.
    Revoke {
        /// The token the selector names.
        token: u8,
        /// 0: the token, 1: its family, 2: its subject.
        kind: u8,
    },
    /// Suspend token `token` (and its descendants).
    Suspend {
        /// The token.
        token: u8,
    },
    /// Resume token `token` (and its suspended descendants).
    Resume {
        /// The token.
        token: u8,
    },
    /// Validate token `token` requiring scope `scope` (an index of [`SCOPES`], or none past
    /// the end).
    Validate {
        /// The token.
        token: u8,
        /// The required scope.
        scope: u8,
    },
    /// Narrow token `token`'s scopes to those of `mask` (an update; refused when `mask` is
    /// not within its scopes or the token has ended).
    Narrow {
        /// The token.
        token: u8,
        /// Scopes, by bit (at least one is set).
        mask: u8,
    },
    /// Move the clock forward.
    Advance {
        /// Minutes.
        minutes: u16,
    },
    /// Replace the manager by a new one on the same store (usage flushed first).
    Restart,
    /// Go on with the other of two managers sharing the store (both stay alive, interleaving);
    /// with a validation cache, a restart instead (a second instance's cache may lag by the
    /// feed delay, which the model does not describe).
    Switch,
}

/// A token as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelToken {
    /// Whom it acts for.
    pub subject: u8,
    /// Its scopes (bits of [`SCOPES`]).
    pub mask: u8,
    /// Its parent (an index into the model's tokens).
    pub parent: Option<usize>,
    /// Its family's root.
    pub family: usize,
    /// Revoked.
    pub revoked: bool,
    /// Suspended.
    pub suspended: bool,
    /// Ended by a rotation (no grace).
    pub rotated: bool,
    /// Ended by an update of an ancestor that left it no scope.
    pub ended: bool,
    /// `max_uses` (per period when it refills).
    pub max_uses: Option<u64>,
    /// Uses counted (in the current period when it refills).
    pub uses: u64,
    /// When it was issued (minutes on the model's clock).
    pub issued_at: u64,
    /// When its credits next come back, if they refill.
    pub next_refill: Option<u64>,
}

impl ModelToken {
    /// The uses that count against `max_uses` at `now`: none once a refill is due.
    pub fn uses_at(&self, now: u64) -> u64 {
        if self.next_refill.is_some_and(|at| now >= at) {
            0
        } else {
            self.uses
        }
    }

    /// The reason code validation refuses it with for `scope` at `now`, or `None` when it
    /// passes.
    pub fn refusal(&self, scope: Option<u8>, now: u64) -> Option<&'static str> {
        if self.revoked {
            Some("revoked")
        } else if self.rotated || self.ended {
            Some("expired")
        } else if self.suspended {
            Some("suspended")
        } else if self.max_uses.is_some_and(|max| self.uses_at(now) >= max) {
            Some("use_limit_reached")
        } else if scope.is_some_and(|s| self.mask & (1 << s) == 0) {
            Some("insufficient_scope")
        } else {
            None
        }
    }

    /// Active at `now`: could be derived from, rotated, used.
    pub fn is_active(&self, now: u64) -> bool {
        self.refusal(None, now).is_none()
    }
}

/// What the model answers for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A new token (issue, derive, rotate) at this index.
    Created(usize),
    /// Refused (issue, derive, rotate, resume of an ended token).
    Refused,
    /// These tokens changed (revoke, suspend, resume), by index.
    Changed(BTreeSet<usize>),
    /// A validation: `None` accepted, else the reason code.
    Validated(Option<&'static str>),
    /// An update was applied (or changed nothing).
    Updated,
    /// Nothing to compare (no token yet, clock, restart).
    Nothing,
}

/// The model's state.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Every token issued, in order.
    pub tokens: Vec<ModelToken>,
    /// The clock, in minutes since the start.
    pub now: u64,
}

impl Model {
    /// The index an op's token argument names, if any token exists.
    pub fn pick(&self, index: u8) -> Option<usize> {
        (!self.tokens.is_empty()).then(|| usize::from(index) % self.tokens.len())
    }

    /// `roots` and every token derived from them, by the current parent links.
    fn with_descendants(&self, roots: BTreeSet<usize>) -> BTreeSet<usize> {
        let mut all = roots;
        loop {
            let more: Vec<usize> = (0..self.tokens.len())
                .filter(|i| !all.contains(i))
                .filter(|i| self.tokens[*i].parent.is_some_and(|p| all.contains(&p)))
                .collect();
            if more.is_empty() {
                return all;
            }
            all.extend(more);
        }
    }

    /// Applies `op` and answers as the library must.
    pub fn apply(&mut self, op: &Op) -> Answer {
        match *op {
            Op::Issue {
                subject,
                mask,
                uses,
                refill,
            } => {
                let index = self.tokens.len();
                let refills = refill && uses.is_some();
                self.tokens.push(ModelToken {
                    subject,
                    mask,
                    parent: None,
                    family: index,
                    revoked: false,
                    suspended: false,
                    rotated: false,
                    ended: false,
                    max_uses: uses.map(u64::from),
                    uses: 0,
                    issued_at: self.now,
                    next_refill: refills.then(|| next_boundary(self.now, self.now)),
                });
                Answer::Created(index)
            }
            Op::Derive { parent, mask, uses } => {
                let Some(p) = self.pick(parent) else {
                    return Answer::Nothing;
                };
                let parent = self.tokens[p].clone();
                if !parent.is_active(self.now) || mask & !parent.mask != 0 {
                    return Answer::Refused;
                }
                let left = parent.max_uses.map(|max| max - parent.uses_at(self.now));
                let max_uses = match (uses.map(u64::from), left) {
                    (Some(asked), Some(left)) if asked > left => return Answer::Refused,
                    (Some(asked), _) => Some(asked),
                    (None, left) => left,
                };
                let index = self.tokens.len();
                // A refilling parent's child refills too (it inherits the period), from its
                // own issue.
                let refills = parent.next_refill.is_some() && max_uses.is_some();
                self.tokens.push(ModelToken {
                    parent: Some(p),
                    mask,
                    max_uses,
                    uses: 0,
                    revoked: false,
                    suspended: false,
                    rotated: false,
                    ended: false,
                    issued_at: self.now,
                    next_refill: refills.then(|| next_boundary(self.now, self.now)),
                    ..parent
                });
                Answer::Created(index)
            }
            Op::Rotate { token } => {
                let Some(t) = self.pick(token) else {
                    return Answer::Nothing;
                };
                let old = self.tokens[t].clone();
                if !old.is_active(self.now) {
                    return Answer::Refused;
                }
                let index = self.tokens.len();
                self.tokens[t].rotated = true;
                for child in &mut self.tokens {
                    if child.parent == Some(t) {
                        child.parent = Some(index);
                    }
                }
                let now = self.now;
                let successor = match old.next_refill {
                    // Refilling credits carry over as they stand: the quota, this period's uses,
                    // the next refill (the one after now if it is due).
                    Some(next) => ModelToken {
                        uses: old.uses_at(now),
                        next_refill: Some(if now >= next {
                            next_boundary(next, now)
                        } else {
                            next
                        }),
                        issued_at: now,
                        ..old
                    },
                    None => ModelToken {
                        max_uses: old.max_uses.map(|max| max - old.uses),
                        uses: 0,
                        issued_at: now,
                        ..old
                    },
                };
                self.tokens.push(successor);
                Answer::Created(index)
            }
            Op::Revoke { token, kind } => {
                let Some(t) = self.pick(token) else {
                    return Answer::Nothing;
                };
                let matched: BTreeSet<usize> = match kind % 3 {
                    0 => BTreeSet::from([t]),
                    1 => (0..self.tokens.len())
                        .filter(|i| self.tokens[*i].family == self.tokens[t].family)
                        .collect(),
                    _ => (0..self.tokens.len())
                        .filter(|i| self.tokens[*i].subject == self.tokens[t].subject)
                        .collect(),
                };
                let changed: BTreeSet<usize> = self
                    .with_descendants(matched)
                    .into_iter()
                    .filter(|i| !self.tokens[*i].revoked)
                    .collect();
                for i in &changed {
                    self.tokens[*i].revoked = true;
                }
                Answer::Changed(changed)
            }
            Op::Suspend { token } => {
                let Some(t) = self.pick(token) else {
                    return Answer::Nothing;
                };
                let changed: BTreeSet<usize> = self
                    .with_descendants(BTreeSet::from([t]))
                    .into_iter()
                    .filter(|i| !self.tokens[*i].revoked && !self.tokens[*i].suspended)
                    .collect();
                for i in &changed {
                    self.tokens[*i].suspended = true;
                }
                Answer::Changed(changed)
            }
            Op::Resume { token } => {
                let Some(t) = self.pick(token) else {
                    return Answer::Nothing;
                };
                let changed: BTreeSet<usize> = self
                    .with_descendants(BTreeSet::from([t]))
                    .into_iter()
                    .filter(|i| {
                        let m = &self.tokens[*i];
                        m.suspended && !m.revoked && !m.rotated && !m.ended
                    })
                    .collect();
                for i in &changed {
                    self.tokens[*i].suspended = false;
                }
                let target = &self.tokens[t];
                if changed.is_empty() && (target.revoked || target.rotated || target.ended) {
                    return Answer::Refused;
                }
                Answer::Changed(changed)
            }
            Op::Validate { token, scope } => {
                let Some(t) = self.pick(token) else {
                    return Answer::Nothing;
                };
                let scope = (usize::from(scope) < SCOPES.len()).then_some(scope);
                let now = self.now;
                let token = &mut self.tokens[t];
                let refusal = token.refusal(scope, now);
                if refusal.is_none() && token.max_uses.is_some() {
                    match token.next_refill {
                        Some(at) if now >= at => {
                            token.uses = 1;
                            // On the schedule the stored boundary sets (a successor keeps its
                            // predecessor's), not from this token's own issue.
                            token.next_refill = Some(next_boundary(at, now));
                        }
                        _ => token.uses += 1,
                    }
                }
                Answer::Validated(refusal)
            }
            Op::Narrow { token, mask } => {
                let Some(t) = self.pick(token) else {
                    return Answer::Nothing;
                };
                let target = &self.tokens[t];
                // Revoked, expired and rotated-out tokens cannot be updated; wider scopes are
                // refused.
                if target.revoked || target.rotated || target.ended || mask & !target.mask != 0 {
                    return Answer::Refused;
                }
                if mask == target.mask {
                    return Answer::Updated;
                }
                self.tokens[t].mask = mask;
                for d in self.with_descendants(BTreeSet::from([t])) {
                    if d == t {
                        continue;
                    }
                    let child = &mut self.tokens[d];
                    child.mask &= mask;
                    if child.mask == 0 {
                        child.ended = true;
                    }
                }
                Answer::Updated
            }
            Op::Advance { minutes } => {
                self.now += u64::from(minutes);
                Answer::Nothing
            }
            Op::Restart | Op::Switch => Answer::Nothing,
        }
    }
}

/// The scopes of `mask`, space-separated.
pub fn scopes_of_mask(mask: u8) -> String {
    SCOPES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, scope)| *scope)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The model's index of every token id the library returned, and back.
#[derive(Debug, Default)]
pub struct Ids {
    /// Index → id (and token string).
    pub tokens: Vec<(token_core::TokenId, String)>,
    /// Id → index.
    pub index: HashMap<token_core::TokenId, usize>,
}

impl Ids {
    /// Records the token the model created at `index`.
    pub fn push(&mut self, id: token_core::TokenId, token: String) -> usize {
        let index = self.tokens.len();
        self.tokens.push((id, token));
        self.index.insert(id, index);
        index
    }
}

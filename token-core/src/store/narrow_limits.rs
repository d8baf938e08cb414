//! How an update changes (and a narrowed parent forces down) a token's usage credits and rate
//! limits: the reference semantics [`UpdateToken::apply`](super::UpdateToken::apply) and
//! [`UpdateToken::narrow_child`](super::UpdateToken::narrow_child) use for these two fields.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::changes::Widening;
use crate::credits::UseRefill;
use crate::rate_limit::{RATE_LIMIT_MAX_WINDOW, RateLimit, RateLimits};
use crate::record::TokenRecord;

/// Applies a requested refill change to `next` (the record being updated, whose `max_uses` the
/// same update may just have set): `Some(None)` stops the refill (the credits left then are
/// kept), `Some(Some(r))` sets a refill no more generous than the current one. A token with a
/// lifetime use limit cannot gain a refill (that would restore used credits); a token without
/// any limit may, together with `max_uses`.
pub(super) fn apply_refill(
    current: &TokenRecord,
    next: &mut TokenRecord,
    requested: Option<UseRefill>,
    now: OffsetDateTime,
) -> Result<Option<Value>, Widening> {
    if requested == current.use_refill {
        return Ok(None);
    }
    let old = current.use_refill.map(|r| r.to_string());
    match requested {
        None => {
            next.use_count = current.uses_at(now);
            next.use_refill = None;
            next.next_refill_at = None;
        }
        Some(refill) => {
            match (current.max_uses, current.use_refill) {
                (Some(_), None) => {
                    return Err(Widening {
                        field: "use_refill",
                        problem: format!(
                            "the token's {} uses do not refill; adding a refill ({refill}) would restore used credits, issue a new token instead",
                            current.max_uses.unwrap_or_default()
                        ),
                    });
                }
                (_, Some(theirs)) if !refill.is_within(&theirs) => {
                    return Err(Widening {
                        field: "use_refill",
                        problem: format!(
                            "{refill} refills more often than the token's {theirs}; an update only lengthens the period"
                        ),
                    });
                }
                _ => {}
            }
            if next.max_uses.is_none() {
                return Err(Widening {
                    field: "use_refill",
                    problem: "needs max_uses: a refill restores max_uses credits every period"
                        .to_owned(),
                });
            }
            next.use_count = current.uses_at(now);
            next.use_refill = Some(refill);
            // The period in course ends no earlier than it would have.
            let pending = current.next_refill_at.filter(|at| *at > now);
            next.next_refill_at = Some(
                refill
                    .next_after(current.created_at, now)
                    .max(pending.unwrap_or(now)),
            );
        }
    }
    Ok(Some(
        json!({"old": old, "new": requested.map(|r| r.to_string())}),
    ))
}

/// Applies requested rate limits: they must be [within](RateLimits::is_within) the current ones.
pub(super) fn apply_rate_limits(
    current: &TokenRecord,
    next: &mut TokenRecord,
    requested: &RateLimits,
) -> Result<Option<Value>, Widening> {
    if !requested.is_within(&current.rate_limits) {
        return Err(Widening {
            field: "rate_limits",
            problem: format!(
                "[{requested}] is looser than the token's [{}]; an update keeps every limit and only tightens it",
                current.rate_limits
            ),
        });
    }
    if *requested == current.rate_limits {
        return Ok(None);
    }
    next.rate_limits = requested.clone();
    Ok(Some(rate_limits_change(&current.rate_limits, requested)))
}

/// `child`'s refill forced under `parent`'s (after the parent's update): none under a
/// use-limited parent without one, else no more generous than the parent's.
pub(super) fn narrow_child_refill(
    parent: &TokenRecord,
    child: &TokenRecord,
    next: &mut TokenRecord,
    now: OffsetDateTime,
) -> Option<Value> {
    parent.max_uses?;
    let target = match (parent.use_refill, child.use_refill) {
        (_, None) => return None,
        (None, Some(_)) => None,
        (Some(theirs), Some(mine)) if !mine.is_within(&theirs) => Some(theirs),
        (Some(_), Some(_)) => return None,
    };
    next.use_count = child.uses_at(now);
    next.use_refill = target;
    next.next_refill_at = target.map(|refill| {
        let pending = child.next_refill_at.filter(|at| *at > now);
        refill
            .next_after(child.created_at, now)
            .max(pending.unwrap_or(now))
    });
    Some(json!({
        "old": child.use_refill.map(|r| r.to_string()),
        "new": target.map(|r| r.to_string())
    }))
}

/// `child`'s rate limits forced within `parent`'s: every limit of the parent, each the tighter
/// of the two (the smaller burst at the slower rate) where the child's is looser; the child's
/// extra limits stay. `true` with the change when some of the child's own limits did not fit
/// (more than [`MAX_RATE_LIMITS`](crate::rate_limit::MAX_RATE_LIMITS) in all): the caller ends
/// the child rather than let it lose them.
pub(super) fn narrow_child_rate_limits(
    parent: &TokenRecord,
    child: &TokenRecord,
    next: &mut TokenRecord,
) -> Option<(Value, bool)> {
    if child.rate_limits.is_within(&parent.rate_limits) {
        return None;
    }
    let tightened =
        parent
            .rate_limits
            .iter()
            .map(|theirs| match child.rate_limits.get(theirs.name()) {
                Some(mine) if mine.is_within(theirs) => mine.clone(),
                Some(mine) => tighter_of(mine, theirs),
                None => theirs.clone(),
            });
    let extra = child
        .rate_limits
        .iter()
        .filter(|mine| parent.rate_limits.get(mine.name()).is_none())
        .cloned();
    // Both sets hold at most MAX_RATE_LIMITS names; their union can exceed it only when the
    // child had extra ones of its own.
    let mut limits: Vec<RateLimit> = tightened.chain(extra).collect();
    let dropped = limits.len() > crate::rate_limit::MAX_RATE_LIMITS;
    limits.truncate(crate::rate_limit::MAX_RATE_LIMITS);
    let narrowed = RateLimits::new(limits).unwrap_or_else(|_| parent.rate_limits.clone());
    let change = rate_limits_change(&child.rate_limits, &narrowed);
    next.rate_limits = narrowed;
    Some((change, dropped))
}

/// A limit within both: the smaller burst, at the slower of the two steady rates (the window
/// rounded up to whole seconds, so never faster than either), automatic unless both are on
/// demand.
fn tighter_of(a: &RateLimit, b: &RateLimit) -> RateLimit {
    let limit = a.limit().min(b.limit());
    // The window at which `limit` units flow at `x`'s rate: limit * per / x.limit, rounded up.
    let window = |x: &RateLimit| {
        (u128::from(limit) * u128::from(x.per().as_secs())).div_ceil(u128::from(x.limit()))
    };
    let secs = window(a)
        .max(window(b))
        .clamp(1, u128::from(RATE_LIMIT_MAX_WINDOW.as_secs()));
    let per = Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX));
    match RateLimit::new(a.name(), limit, per) {
        Ok(both) if a.is_on_demand() && b.is_on_demand() => both.on_demand(),
        Ok(both) => both,
        Err(_) => b.clone(),
    }
}

fn rate_limits_change(old: &RateLimits, new: &RateLimits) -> Value {
    json!({"old": old.to_string(), "new": new.to_string()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(n: u32, secs: u64) -> RateLimit {
        RateLimit::new("r", n, Duration::from_secs(secs)).unwrap()
    }

    fn record(limits: RateLimits) -> TokenRecord {
        TokenRecord {
            rate_limits: limits,
            ..TokenRecord::for_tests(
                crate::format::TokenId::from_bytes([1; 16]),
                crate::keyring::TokenHash::from_bytes([0; 32]),
                crate::keyring::KeyId::new(1),
                time::macros::datetime!(2030-01-01 0:00 UTC),
            )
        }
    }

    fn named(names: impl Iterator<Item = String>) -> RateLimits {
        RateLimits::new(names.map(|n| RateLimit::new(n, 5, Duration::from_secs(60)).unwrap()))
            .unwrap()
    }

    #[test]
    fn a_child_that_cannot_keep_its_own_limits_is_told_so() {
        // The child: 15 of the parent's limits and one of its own. The parent adds a 16th.
        let child = record(named(
            (0..15).map(|i| format!("p{i:02}")).chain(["x".into()]),
        ));
        let parent = record(named((0..16).map(|i| format!("p{i:02}"))));
        let mut next = child.clone();
        let (_, dropped) = narrow_child_rate_limits(&parent, &child, &mut next).unwrap();
        assert!(
            dropped,
            "17 limits do not fit: the child must end, not lose `x`"
        );
        // Room for both: nothing dropped, the child keeps `x`.
        let parent = record(named((0..15).map(|i| format!("p{i:02}"))));
        let child = record(named(
            (0..14).map(|i| format!("p{i:02}")).chain(["x".into()]),
        ));
        let mut next = child.clone();
        let (_, dropped) = narrow_child_rate_limits(&parent, &child, &mut next).unwrap();
        assert!(!dropped);
        assert!(
            next.rate_limits.get("x").is_some() && next.rate_limits.is_within(&parent.rate_limits)
        );
    }

    #[test]
    fn the_tighter_of_two_is_within_both() {
        for (a, b) in [
            (limit(100, 60), limit(10, 1)),
            (limit(90, 30), limit(100, 60)),
            (limit(7, 3), limit(5, 11)),
            (limit(1_000_000_000, 1), limit(1, 31_622_400)),
            (limit(5, 60).on_demand(), limit(10, 60)),
            (limit(5, 60).on_demand(), limit(10, 60).on_demand()),
        ] {
            let t = tighter_of(&a, &b);
            assert!(t.is_within(&a) && t.is_within(&b), "{a} {b} -> {t}");
        }
        assert_eq!(
            tighter_of(&limit(90, 30), &limit(100, 60)).to_string(),
            "r=90/54s"
        );
    }
}

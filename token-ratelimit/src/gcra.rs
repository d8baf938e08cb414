//! GCRA, the generic cell rate algorithm: the arithmetic of one check, pure, no I/O.
//!
//! A bucket's whole state is one integer, its TAT (theoretical arrival time): the instant at
//! which the bucket would be full again. Times are integers in a unit the caller picks (the
//! in-process limiter uses nanoseconds since the Unix epoch, the Redis script microseconds);
//! [`Rate`] carries its interval and capacity in the same unit.
//!
//! For a limit of `limit` units per window with emission interval `T` (the window divided by
//! `limit`, rounded up to the unit) and capacity `C = limit × T`, a check of cost `n` at `now`:
//!
//! - `tat' = max(tat, now) + n × T`
//! - allowed iff `tat' − now ≤ C`; then `tat'` is stored
//! - `remaining = ⌊(C − (tat' − now)) / T⌋`, `reset_after = tat' − now`, and on denial
//!   `retry_after = (tat' − now) − C`.
//!
//! `C` is the window itself when `T` divides it evenly and at most `limit − 1` units more
//! otherwise: using `limit × T` rather than the window keeps the burst exactly `limit` (a
//! rounded-up `T` would otherwise lose the last unit of the burst), while the steady rate, one
//! unit every `T`, still never exceeds `limit` per window. In any interval of length `L`, at
//! most `limit + ⌊L / T⌋` units are admitted.

use token_core::RateLimit;

/// How one limit spends and refills, in one time unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// The units one unit of cost takes to come back (`T`), at least 1.
    interval: u64,
    /// The burst, in cost units.
    limit: u32,
}

impl Rate {
    /// `limit` per `per`, with `T` in nanoseconds (as [`RateLimit::emission_interval`]).
    pub(crate) fn nanos(limit: &RateLimit) -> Self {
        // Computed once when the limit was made: this runs on every check of a token's limits.
        Self::new(limit.emission_interval_nanos(), limit.limit())
    }

    /// `limit` per `per`, with `T` in microseconds (rounded up, so the rate is never exceeded).
    pub(crate) fn micros(limit: &RateLimit) -> Self {
        let nanos = u64::try_from(limit.emission_interval().as_nanos()).unwrap_or(u64::MAX);
        Self::new(nanos.div_ceil(1_000), limit.limit())
    }

    /// An interval (in the caller's unit) and a burst.
    pub(crate) fn new(interval: u64, limit: u32) -> Self {
        Self {
            interval: interval.max(1),
            limit: limit.max(1),
        }
    }

    /// `T`.
    pub(crate) fn interval(self) -> u64 {
        self.interval
    }

    /// `C = limit × T`: how far ahead of now the TAT may run.
    pub(crate) fn capacity(self) -> u64 {
        self.interval.saturating_mul(u64::from(self.limit))
    }

    /// The burst.
    #[cfg(test)]
    pub(crate) fn limit(self) -> u32 {
        self.limit
    }
}

/// Where a bucket stands at an instant: the figures a client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Units that could be spent right now.
    pub(crate) remaining: u32,
    /// Time (in the rate's unit) until the bucket is full again.
    pub(crate) reset_after: u64,
}

/// A bucket's standing when its TAT is `tat` (0 for a bucket never used).
pub(crate) fn standing(rate: Rate, tat: u64, now: u64) -> Standing {
    let ahead = tat.saturating_sub(now);
    let left = rate.capacity().saturating_sub(ahead) / rate.interval;
    Standing {
        remaining: u32::try_from(left).unwrap_or(u32::MAX).min(rate.limit),
        reset_after: ahead,
    }
}

/// The TAT after spending `cost`, or how long until that cost would pass.
///
/// The caller has checked `cost <= rate.limit()`: a larger cost never passes.
pub(crate) fn spend(rate: Rate, tat: u64, now: u64, cost: u32) -> Result<u64, u64> {
    let after = tat
        .max(now)
        .saturating_add(u64::from(cost).saturating_mul(rate.interval));
    let ahead = after - now;
    if ahead <= rate.capacity() {
        Ok(after)
    } else {
        Err(ahead - rate.capacity())
    }
}

/// On denial, the limit that denies longest (its index) and its retry delay.
pub(crate) type Denial = Option<(usize, u64)>;

/// Checks `cost` against every bucket (`(rate, tat)`, 0 for an unused bucket) at `now`, all or
/// nothing, and writes each limit's standing after the check to `standings` (as long as
/// `buckets`). When all allow, every TAT is moved (cost 0 moves nothing); when any denies, none
/// is, every standing is the unchanged one, and the denial names the limit with the longest
/// retry delay (the first of equals).
///
/// The caller has checked `cost` against every limit.
pub(crate) fn check_all(
    buckets: &mut [(Rate, u64)],
    now: u64,
    cost: u32,
    standings: &mut [Standing],
) -> Denial {
    let mut denied: Denial = None;
    for (i, &(rate, tat)) in buckets.iter().enumerate() {
        if let Err(retry) = spend(rate, tat, now, cost)
            && denied.is_none_or(|(_, longest)| retry > longest)
        {
            denied = Some((i, retry));
        }
    }
    for ((rate, tat), standing_now) in buckets.iter_mut().zip(standings.iter_mut()) {
        if denied.is_none()
            && let Ok(after) = spend(*rate, *tat, now, cost)
        {
            if cost > 0 {
                *tat = after;
            }
            *standing_now = standing(*rate, after, now);
        } else {
            *standing_now = standing(*rate, *tat, now);
        }
    }
    denied
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * S;

    fn rate(limit: u32, per_secs: u64) -> Rate {
        Rate::nanos(&RateLimit::new("r", limit, Duration::from_secs(per_secs)).unwrap())
    }

    struct Verdict {
        standings: Vec<Standing>,
        denied: Denial,
    }

    fn verdict(buckets: &mut [(Rate, u64)], now: u64, cost: u32) -> Verdict {
        let mut standings = vec![
            Standing {
                remaining: 0,
                reset_after: 0
            };
            buckets.len()
        ];
        let denied = check_all(buckets, now, cost, &mut standings);
        Verdict { standings, denied }
    }

    /// One bucket, checked alone.
    fn check(rate: Rate, tat: &mut u64, now: u64, cost: u32) -> Verdict {
        let mut buckets = [(rate, *tat)];
        let verdict = verdict(&mut buckets, now, cost);
        *tat = buckets[0].1;
        verdict
    }

    #[test]
    fn burst_then_steady_rate() {
        let r = rate(5, 60);
        let mut tat = 0;
        for left in (0..5).rev() {
            let v = check(r, &mut tat, T0, 1);
            assert_eq!(v.denied, None);
            assert_eq!(v.standings[0].remaining, left);
        }
        assert_eq!(tat, T0 + 60 * S);
        let v = check(r, &mut tat, T0, 1);
        assert_eq!(v.denied, Some((0, 12 * S)), "the 6th waits one interval");
        assert_eq!(
            v.standings[0],
            Standing {
                remaining: 0,
                reset_after: 60 * S
            }
        );
        assert_eq!(tat, T0 + 60 * S, "a denial stores nothing");
        let v = check(r, &mut tat, T0 + 12 * S - 1, 1);
        assert_eq!(v.denied, Some((0, 1)), "one nanosecond early");
        let v = check(r, &mut tat, T0 + 12 * S, 1);
        assert_eq!(v.denied, None);
        assert_eq!(v.standings[0].remaining, 0);
        assert_eq!(v.standings[0].reset_after, 60 * S);
    }

    #[test]
    fn cost_above_one_and_exactly_the_limit() {
        let r = rate(10, 10);
        let mut tat = 0;
        let v = check(r, &mut tat, T0, 3);
        assert_eq!(v.standings[0].remaining, 7);
        assert_eq!(v.standings[0].reset_after, 3 * S);
        let v = check(r, &mut tat, T0, 8);
        assert_eq!(v.denied, Some((0, S)), "8 > 7 left: one unit short, 1 s");
        let v = check(r, &mut tat, T0, 7);
        assert_eq!(v.denied, None, "exactly what is left");
        assert_eq!(v.standings[0].remaining, 0);

        let mut fresh = 0;
        let v = check(r, &mut fresh, T0, 10);
        assert_eq!(v.denied, None, "cost == limit passes on a full bucket");
        assert_eq!(v.standings[0].remaining, 0);
        let v = check(r, &mut fresh, T0 + 9 * S, 10);
        assert_eq!(v.denied, Some((0, S)));
    }

    #[test]
    fn the_boundary_tat_minus_now_equal_to_capacity_passes() {
        let r = rate(2, 2);
        let mut tat = T0 + S; // one unit spent
        assert_eq!(check(r, &mut tat, T0, 1).denied, None, "exactly 2 s ahead");
        assert_eq!(tat, T0 + 2 * S);
        assert_eq!(check(r, &mut tat, T0, 1).denied, Some((0, S)));
    }

    #[test]
    fn a_rounded_up_interval_keeps_the_whole_burst() {
        let r = rate(3, 1); // T = 333_333_334 ns
        assert_eq!(r.capacity(), 1_000_000_002);
        let mut tat = 0;
        assert_eq!(check(r, &mut tat, T0, 3).denied, None);
        let limit = RateLimit::per_second("r", 3).unwrap();
        assert_eq!(
            u128::from(Rate::nanos(&limit).interval()),
            limit.emission_interval().as_nanos()
        );
        let micros = Rate::micros(&limit);
        assert_eq!((micros.interval(), micros.capacity()), (333_334, 1_000_002));
    }

    #[test]
    fn cost_zero_is_a_peek() {
        let r = rate(5, 60);
        let mut tat = T0 + 24 * S;
        let v = check(r, &mut tat, T0, 0);
        assert_eq!(v.denied, None);
        assert_eq!(v.standings[0].remaining, 3);
        assert_eq!(tat, T0 + 24 * S);
        let mut full = T0 + 60 * S;
        assert_eq!(check(r, &mut full, T0, 0).denied, None, "even when empty");
        assert_eq!(full, T0 + 60 * S);
    }

    #[test]
    fn an_idle_bucket_refills_fully_and_not_beyond_the_burst() {
        let r = rate(5, 60);
        let mut tat = 0;
        check(r, &mut tat, T0, 5);
        let later = T0 + 3600 * S;
        assert_eq!(standing(r, tat, later).remaining, 5);
        assert_eq!(check(r, &mut tat, later, 5).denied, None);
        assert_eq!(check(r, &mut tat, later, 1).denied, Some((0, 12 * S)));
        assert_eq!(standing(r, 0, T0).remaining, 5, "an unused bucket is full");
    }

    #[test]
    fn large_windows_and_limits_do_not_overflow() {
        let year = token_core::rate_limit::RATE_LIMIT_MAX_WINDOW.as_secs();
        let max = token_core::rate_limit::RATE_LIMIT_MAX;
        for r in [rate(1, year), rate(max, year), rate(max, 1), rate(1, 1)] {
            let mut tat = 0;
            let now = u64::MAX / 2;
            let v = check(r, &mut tat, now, r.limit());
            assert_eq!(v.denied, None);
            assert_eq!(v.standings[0].remaining, 0);
            assert!(tat - now <= r.capacity());
            let v = check(r, &mut tat, now, r.limit());
            assert_eq!(
                v.denied,
                Some((0, tat - now)),
                "a full burst waits a window"
            );
        }
        assert_eq!(rate(max, 1).interval(), 1);
        assert_eq!(rate(1, year).capacity(), year * S);
    }

    #[test]
    fn a_denial_names_the_longest_wait_and_moves_nothing() {
        let slow = rate(1, 60);
        let fast = rate(10, 1);
        let mut buckets = [(fast, T0 + S / 10), (slow, T0 + 60 * S)];
        let v = verdict(&mut buckets, T0, 1);
        assert_eq!(v.denied, Some((1, 60 * S)));
        assert_eq!(
            buckets[0].1,
            T0 + S / 10,
            "the allowing bucket is not charged"
        );
        assert_eq!(v.standings[0].remaining, 9);
        let mut both_deny = [(rate(1, 5), T0 + 5 * S), (rate(1, 30), T0 + 30 * S)];
        assert_eq!(verdict(&mut both_deny, T0, 1).denied, Some((1, 30 * S)));
        let mut pass = [(fast, 0), (slow, 0)];
        assert_eq!(verdict(&mut pass, T0, 1).denied, None);
        assert_eq!(
            pass.map(|(_, tat)| tat),
            [T0 + S / 10, T0 + 60 * S],
            "all charged"
        );
    }

    proptest! {
        /// In any interval of length `L`, admitted cost ≤ limit + ⌊L / T⌋; over a window,
        /// `L = limit × T`, so at most twice the limit (a full burst at the end of one quiet
        /// window plus the refill during it).
        #[test]
        fn admitted_cost_is_bounded_in_every_interval(
            limit in 1u32..20,
            per_secs in 1u64..100,
            steps in prop::collection::vec((0u64..5_000_000_000, 0u32..25), 1..200),
        ) {
            let r = rate(limit, per_secs);
            let mut tat = 0;
            let mut now = T0;
            let mut admitted: Vec<(u64, u32)> = Vec::new();
            for (advance, cost) in steps {
                now += advance;
                if cost > limit {
                    continue;
                }
                if check(r, &mut tat, now, cost).denied.is_none() && cost > 0 {
                    admitted.push((now, cost));
                }
            }
            for (i, &(start, _)) in admitted.iter().enumerate() {
                let mut total = 0u64;
                for &(at, cost) in &admitted[i..] {
                    total += u64::from(cost);
                    let length = at - start;
                    prop_assert!(
                        total <= u64::from(limit) + length / r.interval(),
                        "{total} admitted in {length} ns"
                    );
                }
                let window_end = start + r.capacity();
                let in_window: u64 = admitted[i..]
                    .iter()
                    .take_while(|(at, _)| *at < window_end)
                    .map(|&(_, cost)| u64::from(cost))
                    .sum();
                prop_assert!(in_window <= 2 * u64::from(limit));
            }
        }
    }
}

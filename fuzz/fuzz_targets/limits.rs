//! Rate limits and refill periods as they arrive from configuration, JSON bodies and stored
//! rows: `RateLimit`'s text form (`requests=100/60s`, `?` for on demand), `RateLimits` JSON
//! (`[{"name", "limit", "per_seconds", "on_demand"?}]`) and `UseRefill` (`monthly`, `every 3600s`).
//! Never panic; an accepted value displays (or serializes) to a form that reads back equal and
//! is a fixed point; a limit is within itself; narrowing is transitive over what was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_core::{RateLimit, RateLimits, UseRefill};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(limit) = input.parse::<RateLimit>() {
        let text = limit.to_string();
        let again: RateLimit = text
            .parse()
            .unwrap_or_else(|e| panic!("displayed limit {text:?} does not parse: {e}"));
        assert_eq!(again, limit, "round trip via {text:?}");
        assert_eq!(again.to_string(), text);
        assert!(limit.is_within(&limit));
        assert!(limit.emission_interval().as_nanos() > 0);
        assert!(u128::from(limit.limit()) * limit.emission_interval().as_nanos() >= limit.per().as_nanos());
    }
    if let Ok(limits) = RateLimits::from_json(input) {
        let json = limits.to_json();
        let again = RateLimits::from_json(&json)
            .unwrap_or_else(|e| panic!("serialized limits {json:?} do not parse: {e}"));
        assert_eq!(again, limits);
        assert_eq!(again.to_json(), json);
        assert!(limits.is_within(&limits));
        let automatic = limits.applying_to::<&str>(&[]);
        assert!(automatic.all_automatic());
        assert!(automatic.len() <= limits.len());
        for limit in &limits {
            assert_eq!(limits.get(limit.name()), Some(limit));
        }
        // Tightening every limit to half its burst stays within the original.
        if let Ok(tighter) = RateLimits::new(limits.iter().map(|l| {
            RateLimit::new(l.name(), (l.limit() / 2).max(1), l.per()).expect("a valid limit halves")
        })) {
            assert!(tighter.is_within(&limits) || limits.iter().any(RateLimit::is_on_demand));
        }
    }
    if let Ok(refill) = input.parse::<UseRefill>() {
        let text = refill.to_string();
        let again: UseRefill = text
            .parse()
            .unwrap_or_else(|e| panic!("displayed refill {text:?} does not parse: {e}"));
        assert_eq!(again, refill);
        assert!(refill.is_within(&refill));
        let issued = time::macros::datetime!(2030-01-31 12:00 UTC);
        let next = refill.next_after(issued, issued);
        assert!(next > issued, "the next period starts after {issued}: {next}");
        assert!(refill.next_after(issued, next) > next);
    }
});

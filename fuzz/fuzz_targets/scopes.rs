//! `Scope::new` and `ScopeSet::parse`: never panic; parse -> to_string -> parse gives back the
//! same value; a scope covers itself; `covers` agrees with its documented segment-wise definition
//! (the fast path for concrete grants included); `permits` is `covers` of a concrete scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_core::{Scope, ScopeSet};

/// The documented rule: no more segments, each granted segment `*` or equal.
fn covers_by_definition(grant: &Scope, other: &Scope) -> bool {
    let mine: Vec<&str> = grant.segments().collect();
    let theirs: Vec<&str> = other.segments().collect();
    mine.len() <= theirs.len() && mine.iter().zip(&theirs).all(|(m, t)| *m == "*" || m == t)
}

fn check_scope(scope: &Scope) {
    let text = scope.to_string();
    assert_eq!(text, scope.as_str());
    assert_eq!(Scope::new(&text).as_ref(), Ok(scope), "scope round trip");
    assert!(scope.covers(scope), "a scope must cover itself");
    assert_eq!(scope.permits(scope), scope.is_concrete());
    assert_eq!(scope.is_concrete(), !scope.segments().any(|s| s == "*"));
}

fn check_pair(a: &Scope, b: &Scope) {
    assert_eq!(a.covers(b), covers_by_definition(a, b), "{a} covers {b}");
    assert_eq!(a.permits(b), b.is_concrete() && covers_by_definition(a, b));
}

fn check_set(set: &ScopeSet) {
    let text = set.to_string();
    let again = ScopeSet::parse(&text).expect("a displayed set must parse");
    assert_eq!(&again, set, "scope set round trip");
    assert_eq!(again.to_string(), text);
    assert!(set.covers(set));
    assert!(set.uncovered(set).is_empty());
    for scope in set {
        check_scope(scope);
        assert!(set.contains(scope));
        assert_eq!(set.permits(scope), scope.is_concrete());
    }
    // Sorted and free of duplicates.
    let scopes: Vec<&Scope> = set.iter().collect();
    assert!(scopes.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(scopes.len(), set.len());
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // The whole input as one scope.
    if let Ok(scope) = Scope::new(input) {
        check_scope(&scope);
    }
    // The whole input as a set, and every pair of its scopes.
    if let Ok(set) = ScopeSet::parse(input) {
        check_set(&set);
        for a in &set {
            for b in &set {
                check_pair(a, b);
            }
        }
    }
    // Two halves as two sets: covers/permits between them never panic and agree.
    let cut = input
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| i >= input.len() / 2)
        .unwrap_or(input.len());
    let (left, right) = input.split_at(cut);
    if let (Ok(a), Ok(b)) = (ScopeSet::parse(left), ScopeSet::parse(right)) {
        let covers = a.covers(&b);
        assert_eq!(covers, a.uncovered(&b).is_empty());
        assert_eq!(
            covers,
            b.iter()
                .all(|t| a.iter().any(|m| covers_by_definition(m, t)))
        );
        for m in &a {
            for t in &b {
                check_pair(m, t);
                check_pair(t, m);
            }
        }
    }
});

//! Scopes: what a token may do.
//!
//! A scope is one or more `:`-separated segments; each segment is `[a-z0-9_./-]+` or the wildcard
//! `*`: `repo:acme/widgets:read`, `billing`, `repo:*:read`.
//!
//! **Permits.** A granted scope permits a required (concrete, wildcard-free) scope when the grant has
//! no more segments than the requirement and, segment by segment, each granted segment is `*` or
//! equal to the required one. A grant is therefore a prefix: `billing` permits
//! `billing:invoices:read`, `repo:*:read` permits `repo:acme:read` but not `repo:acme:write`.
//!
//! **Covers.** Grant `a` covers grant `b` (used when a derived token narrows its parent, and for
//! policy ceilings) by the same rule, where a concrete segment never covers `*`. A set covers another
//! when every scope of the other is covered by some scope of the first.
//!
//! Limits: a scope is at most 256 bytes and 16 segments; a set holds at most 64 scopes.
//!
//! ```
//! use token_core::{Scope, ScopeSet};
//!
//! let granted: ScopeSet = "repo:*:read billing".parse()?;
//! assert!(granted.permits(&"repo:acme/widgets:read".parse()?));
//! assert!(granted.permits(&"billing:invoices:read".parse()?));
//! assert!(!granted.permits(&"repo:acme/widgets:write".parse()?));
//! // Requirements must be concrete: a wildcard requirement is never satisfied.
//! assert!(!granted.permits(&"repo:*:read".parse()?));
//!
//! let narrower: ScopeSet = "billing:invoices".parse()?;
//! assert!(granted.covers(&narrower));
//! assert!(!narrower.covers(&granted));
//! # Ok::<(), token_core::ScopeError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest scope, in bytes.
pub const SCOPE_MAX_BYTES: usize = 256;
/// Most segments in one scope.
pub const SCOPE_MAX_SEGMENTS: usize = 16;
/// Most scopes in one set.
pub const SCOPE_SET_MAX: usize = 64;

/// Why a scope or scope set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope string is empty.
    #[error("empty scope; a scope is ':'-separated segments of [a-z0-9_./-] or '*'")]
    Empty,
    /// A segment between two `:` is empty.
    #[error("scope has an empty segment at position {position}; segments are [a-z0-9_./-]+ or '*'")]
    EmptySegment {
        /// Zero-based segment index.
        position: usize,
    },
    /// A segment contains a disallowed character.
    #[error(
        "scope segment {position} contains {found:?}; allowed are a-z 0-9 _ . / - or a lone '*'"
    )]
    InvalidCharacter {
        /// Zero-based segment index.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// The scope is too long.
    #[error("scope is {len} bytes; the maximum is {SCOPE_MAX_BYTES}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The scope has too many segments.
    #[error("scope has {count} segments; the maximum is {SCOPE_MAX_SEGMENTS}")]
    TooManySegments {
        /// Segment count.
        count: usize,
    },
    /// The set has too many scopes.
    #[error("scope set has {count} scopes; the maximum is {SCOPE_SET_MAX}")]
    TooManyScopes {
        /// Scope count.
        count: usize,
    },
}

/// One scope, such as `repo:acme/widgets:read`.
///
/// ```
/// use token_core::Scope;
/// let scope: Scope = "repo:acme/widgets:read".parse()?;
/// assert_eq!(scope.segments().count(), 3);
/// assert!(scope.is_concrete());
/// assert!(!"repo:*".parse::<Scope>()?.is_concrete());
/// assert!("Repo".parse::<Scope>().is_err());
/// # Ok::<(), token_core::ScopeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    text: Box<str>,
    /// Whether a segment is `*`, decided once at parse time (matching runs on every validation).
    /// A function of `text`, so the derived comparisons agree with comparing the text.
    wildcard: bool,
}

impl Scope {
    /// Parses and validates a scope.
    pub fn new(text: &str) -> Result<Self, ScopeError> {
        if text.is_empty() {
            return Err(ScopeError::Empty);
        }
        if text.len() > SCOPE_MAX_BYTES {
            return Err(ScopeError::TooLong { len: text.len() });
        }
        let mut count = 0;
        for (position, segment) in text.split(':').enumerate() {
            count += 1;
            if segment.is_empty() {
                return Err(ScopeError::EmptySegment { position });
            }
            if segment == "*" {
                continue;
            }
            if let Some(found) = segment.chars().find(|c| !is_segment_char(*c)) {
                return Err(ScopeError::InvalidCharacter { position, found });
            }
        }
        if count > SCOPE_MAX_SEGMENTS {
            return Err(ScopeError::TooManySegments { count });
        }
        Ok(Self {
            text: text.into(),
            // `*` is only ever a whole segment (refused inside one above).
            wildcard: text.as_bytes().contains(&b'*'),
        })
    }

    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `:`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.text.split(':')
    }

    /// Whether the scope has no wildcard segment (required scopes must be concrete).
    pub fn is_concrete(&self) -> bool {
        !self.wildcard
    }

    /// Whether this grant covers `other`: no more segments, each `*` or equal.
    pub fn covers(&self, other: &Scope) -> bool {
        let (mine, theirs) = (self.text.as_bytes(), other.text.as_bytes());
        if !self.wildcard {
            // Without a wildcard, covering is being equal or a prefix ending at a segment
            // boundary: one comparison of bytes instead of a walk over split segments (this runs
            // on every validation).
            return theirs.starts_with(mine)
                && (theirs.len() == mine.len() || theirs[mine.len()] == b':');
        }
        let mut theirs = other.segments();
        for mine in self.segments() {
            match theirs.next() {
                Some(t) if mine == "*" || mine == t => {}
                _ => return false,
            }
        }
        true
    }

    /// Whether this grant permits the concrete requirement `required`. Always false when
    /// `required` contains a wildcard: a requirement with `*` is a programming error and fails
    /// closed.
    pub fn permits(&self, required: &Scope) -> bool {
        required.is_concrete() && self.covers(required)
    }
}

fn is_segment_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '/' | '-')
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Scope::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A set of scopes. Parses from and displays as space-separated scopes (the OAuth 2.0 `scope`
/// syntax); serializes as a JSON array of strings.
///
/// ```
/// use token_core::ScopeSet;
/// let set = ScopeSet::parse("widgets:read widgets:write")?;
/// assert_eq!(set.len(), 2);
/// assert_eq!(set.to_string(), "widgets:read widgets:write");
/// # Ok::<(), token_core::ScopeError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(Box<[Scope]>);

impl ScopeSet {
    /// An empty set (permits nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses space-separated scopes. Duplicates collapse.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        Self::try_from_iter(text.split_ascii_whitespace().map(Scope::new))
    }

    /// Builds a set from scopes, enforcing the size limit.
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, ScopeError> {
        Self::try_from_iter(scopes.into_iter().map(Ok))
    }

    fn try_from_iter(
        scopes: impl Iterator<Item = Result<Scope, ScopeError>>,
    ) -> Result<Self, ScopeError> {
        // A sorted, deduplicated boxed slice: the order and uniqueness of a set, in one
        // allocation (a `BTreeSet` node costs ~200 bytes even for one scope, and every cached
        // record carries one).
        let mut set = BTreeSet::new();
        for scope in scopes {
            set.insert(scope?);
            if set.len() > SCOPE_SET_MAX {
                return Err(ScopeError::TooManyScopes { count: set.len() });
            }
        }
        Ok(Self(set.into_iter().collect()))
    }

    /// Whether any scope in the set permits `required`.
    pub fn permits(&self, required: &Scope) -> bool {
        // A requirement with `*` fails closed (checked once, not per grant).
        required.is_concrete() && self.0.iter().any(|granted| granted.covers(required))
    }

    /// Whether every scope of `other` is covered by some scope of `self`.
    pub fn covers(&self, other: &ScopeSet) -> bool {
        other
            .0
            .iter()
            .all(|theirs| self.0.iter().any(|mine| mine.covers(theirs)))
    }

    /// The scopes of `other` that `self` does not cover.
    pub fn uncovered<'a>(&self, other: &'a ScopeSet) -> Vec<&'a Scope> {
        other
            .0
            .iter()
            .filter(|theirs| !self.0.iter().any(|mine| mine.covers(theirs)))
            .collect()
    }

    /// Iterates in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> + '_ {
        self.0.iter()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the set contains exactly this scope.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.binary_search(scope).is_ok()
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_space_separated(&self.0, f)
    }
}

/// Writes `scopes` space-separated (the OAuth `scope` syntax, RFC 6749 §3.3).
pub(crate) fn write_space_separated(scopes: &[Scope], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, scope) in scopes.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        f.write_str(scope.as_str())?;
    }
    Ok(())
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let scopes = Vec::<Scope>::deserialize(deserializer)?;
        ScopeSet::from_scopes(scopes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> Scope {
        Scope::new(text).unwrap()
    }

    #[test]
    fn permits_follows_the_prefix_rule() {
        assert!(s("billing").permits(&s("billing:invoices:read")));
        assert!(s("repo:*:read").permits(&s("repo:acme:read")));
        assert!(!s("repo:*:read").permits(&s("repo:acme:write")));
        assert!(!s("repo:acme:read").permits(&s("repo:acme")));
        assert!(!s("repo").permits(&s("repos")));
        assert!(
            !s("repo:*").permits(&s("repo:*")),
            "wildcard requirements fail closed"
        );
        assert!(s("*").permits(&s("anything:at:all")));
    }

    #[test]
    fn concrete_segment_never_covers_wildcard() {
        assert!(!s("repo:acme").covers(&s("repo:*")));
        assert!(s("repo:*").covers(&s("repo:*")));
        assert!(s("repo:*").covers(&s("repo:acme:read")));
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert_eq!(Scope::new(""), Err(ScopeError::Empty));
        assert_eq!(
            Scope::new("a::b"),
            Err(ScopeError::EmptySegment { position: 1 })
        );
        assert_eq!(
            Scope::new("a:B"),
            Err(ScopeError::InvalidCharacter {
                position: 1,
                found: 'B'
            })
        );
        assert_eq!(
            Scope::new("a:b*"),
            Err(ScopeError::InvalidCharacter {
                position: 1,
                found: '*'
            })
        );
        assert!(matches!(
            Scope::new(&"a".repeat(300)),
            Err(ScopeError::TooLong { .. })
        ));
        assert!(matches!(
            Scope::new(&["a"; 17].join(":")),
            Err(ScopeError::TooManySegments { count: 17 })
        ));
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert!(matches!(
            ScopeSet::parse(&many.join(" ")),
            Err(ScopeError::TooManyScopes { .. })
        ));
        assert!(Scope::new("a:b.c/d-e_f").is_ok());
    }

    #[test]
    fn set_serde_is_an_array_and_validates() {
        let set = ScopeSet::parse("b a").unwrap();
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["a","b"]"#);
        assert!(serde_json::from_str::<ScopeSet>(r#"["a","B"]"#).is_err());
        assert_eq!(ScopeSet::parse("a  a\tb").unwrap().len(), 2);
    }

    #[test]
    fn uncovered_lists_the_missing_scopes() {
        let parent = ScopeSet::parse("widgets:read").unwrap();
        let child = ScopeSet::parse("widgets:read:one widgets:write").unwrap();
        let missing: Vec<&str> = parent
            .uncovered(&child)
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(missing, vec!["widgets:write"]);
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![Just("*".to_string()), "[ab]{1,2}".prop_map(|s| s)]
    }

    fn scope() -> impl Strategy<Value = Scope> {
        proptest::collection::vec(segment(), 1..4)
            .prop_map(|segs| Scope::new(&segs.join(":")).unwrap())
    }

    fn concrete_scope() -> impl Strategy<Value = Scope> {
        proptest::collection::vec("[ab]{1,2}", 1..5)
            .prop_map(|segs| Scope::new(&segs.join(":")).unwrap())
    }

    fn scope_set() -> impl Strategy<Value = ScopeSet> {
        proptest::collection::vec(scope(), 0..4).prop_map(|v| ScopeSet::from_scopes(v).unwrap())
    }

    /// The segment-by-segment definition of `covers` (DESIGN.md), without the byte fast path.
    fn covers_by_segments(grant: &Scope, other: &Scope) -> bool {
        let theirs: Vec<&str> = other.segments().collect();
        let mine: Vec<&str> = grant.segments().collect();
        mine.len() <= theirs.len() && mine.iter().zip(&theirs).all(|(m, t)| *m == "*" || m == t)
    }

    fn prefix_heavy_scope() -> impl Strategy<Value = Scope> {
        proptest::collection::vec(
            prop_oneof![Just("*".to_string()), "[ab]{1,3}".prop_map(|s| s)],
            1..5,
        )
        .prop_map(|segs| Scope::new(&segs.join(":")).unwrap())
    }

    proptest! {
        #[test]
        fn covers_agrees_with_the_segment_definition(a in prefix_heavy_scope(), b in prefix_heavy_scope()) {
            prop_assert_eq!(a.covers(&b), covers_by_segments(&a, &b), "{} covers {}", a, b);
        }

        #[test]
        fn set_is_sorted_and_unique(a in proptest::collection::vec(scope(), 0..8)) {
            let set = ScopeSet::from_scopes(a.clone()).unwrap();
            let mut expected: Vec<Scope> = a;
            expected.sort();
            expected.dedup();
            prop_assert_eq!(set.iter().cloned().collect::<Vec<_>>(), expected.clone());
            prop_assert!(expected.iter().all(|s| set.contains(s)));
        }

        #[test]
        fn covers_is_reflexive(a in scope_set()) {
            prop_assert!(a.covers(&a));
        }

        #[test]
        fn covers_is_transitive(a in scope_set(), b in scope_set(), c in scope_set()) {
            if a.covers(&b) && b.covers(&c) {
                prop_assert!(a.covers(&c));
            }
        }

        #[test]
        fn covers_implies_permits(a in scope_set(), b in scope_set(), req in concrete_scope()) {
            if a.covers(&b) && b.permits(&req) {
                prop_assert!(a.permits(&req));
            }
        }

        #[test]
        fn scope_covers_is_transitive(a in scope(), b in scope(), c in scope()) {
            if a.covers(&b) && b.covers(&c) {
                prop_assert!(a.covers(&c));
            }
        }

        #[test]
        fn parsing_arbitrary_scopes_never_panics(text in ".{0,300}") {
            let _ = ScopeSet::parse(&text);
        }
    }
}

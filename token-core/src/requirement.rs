//! [`Requirement`] (every scope) and [`AnyOf`] (at least one): the scopes a request must carry,
//! parsed and checked once (at startup, say), so call sites pass `&requirement` to
//! [`validate`](crate::TokenManager::validate) or
//! [`validate_any`](crate::TokenManager::validate_any) and the hot path parses nothing.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use crate::scope::{Scope, ScopeError};

/// The scopes a request must carry, all of them: concrete scopes (no `*`, which only grants),
/// without duplicates, in the order given. It dereferences to `[Scope]`, so
/// `manager.validate(token, &requirement)` takes it as is.
///
/// ```
/// use token_core::Requirement;
///
/// let read: Requirement = "widgets:read widgets:list".parse()?;
/// assert_eq!(read.len(), 2);
/// assert_eq!(read.to_string(), "widgets:read widgets:list");
/// assert!(Requirement::parse("widgets:*").is_err()); // a requirement names what it needs
/// assert!(Requirement::none().is_empty()); // any valid token
/// # Ok::<(), token_core::RequirementError>(())
/// ```
///
/// Build one once and share it (a `static` through `std::sync::LazyLock`, or a field of your
/// handler state):
///
/// ```
/// use std::sync::LazyLock;
/// use token_core::Requirement;
///
/// static READ: LazyLock<Requirement> =
///     LazyLock::new(|| Requirement::parse("widgets:read").expect("a valid requirement"));
/// assert_eq!(READ.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requirement(Box<[Scope]>);

/// Why a [`Requirement`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequirementError {
    /// A scope does not parse.
    #[error("invalid required scope: {0}")]
    Scope(#[from] ScopeError),
    /// A scope contains `*`: a requirement must name concrete scopes (a wildcard only grants).
    #[error("required scope {0} contains '*'; name the concrete scope the request needs")]
    Wildcard(Scope),
    /// An any-of requirement with no scopes, which no token could meet.
    #[error("an any-of requirement needs at least one scope")]
    EmptyAnyOf,
}

impl Requirement {
    /// Requires nothing beyond a valid token.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses space-separated scopes (empty text requires nothing).
    pub fn parse(text: &str) -> Result<Self, RequirementError> {
        let scopes = text
            .split_ascii_whitespace()
            .map(Scope::new)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_scopes(scopes)
    }

    /// A requirement of these scopes (duplicates collapse, order is kept).
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, RequirementError> {
        concrete_and_distinct(scopes).map(Self)
    }

    /// The required scopes.
    pub fn scopes(&self) -> &[Scope] {
        &self.0
    }
}

impl Deref for Requirement {
    type Target = [Scope];
    fn deref(&self) -> &[Scope] {
        &self.0
    }
}

impl AsRef<[Scope]> for Requirement {
    fn as_ref(&self) -> &[Scope] {
        &self.0
    }
}

impl FromStr for Requirement {
    type Err = RequirementError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::scope::write_space_separated(&self.0, f)
    }
}

/// Scopes of which a request must carry at least one: concrete, distinct, in the order given, and
/// at least one. Check it with [`validate_any`](crate::TokenManager::validate_any) (one lookup,
/// like [`validate`](crate::TokenManager::validate)).
///
/// Unlike [`Requirement`] it does not dereference to `[Scope]`: a slice passed to `validate`
/// means *all of*, and an any-of list must never be read that way by accident.
///
/// ```
/// use token_core::{AnyOf, RequirementError};
///
/// let readers: AnyOf = "widgets:read widgets:admin".parse()?;
/// assert_eq!(readers.scopes().len(), 2);
/// assert_eq!(readers.to_string(), "widgets:read widgets:admin");
/// assert_eq!(AnyOf::parse(" "), Err(RequirementError::EmptyAnyOf)); // no token could meet it
/// assert!(AnyOf::parse("widgets:* admin").is_err());
/// # Ok::<(), RequirementError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AnyOf(Box<[Scope]>);

impl AnyOf {
    /// Parses space-separated alternatives (at least one).
    pub fn parse(text: &str) -> Result<Self, RequirementError> {
        let scopes = text
            .split_ascii_whitespace()
            .map(Scope::new)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_scopes(scopes)
    }

    /// Alternatives from these scopes (duplicates collapse, order is kept; at least one).
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, RequirementError> {
        let scopes = concrete_and_distinct(scopes)?;
        if scopes.is_empty() {
            return Err(RequirementError::EmptyAnyOf);
        }
        Ok(Self(scopes))
    }

    /// The alternatives.
    pub fn scopes(&self) -> &[Scope] {
        &self.0
    }
}

impl FromStr for AnyOf {
    type Err = RequirementError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for AnyOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::scope::write_space_separated(&self.0, f)
    }
}

/// `scopes` without duplicates (first occurrence kept); refuses a scope with `*`.
fn concrete_and_distinct(
    scopes: impl IntoIterator<Item = Scope>,
) -> Result<Box<[Scope]>, RequirementError> {
    let mut out: Vec<Scope> = Vec::new();
    for scope in scopes {
        if !scope.is_concrete() {
            return Err(RequirementError::Wildcard(scope));
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checks_and_collapses_duplicates() {
        let r = Requirement::parse("  b:read a:read b:read ").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.to_string(), "b:read a:read");
        assert!(matches!(
            Requirement::parse("a:*"),
            Err(RequirementError::Wildcard(_))
        ));
        assert!(matches!(
            Requirement::parse("A!"),
            Err(RequirementError::Scope(_))
        ));
        assert_eq!(Requirement::parse("").map(|r| r.len()), Ok(0));
        let round: Requirement = r.to_string().parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(round, r);
    }

    #[test]
    fn any_of_needs_one_concrete_alternative_and_collapses_duplicates() {
        let any = AnyOf::parse("b:read a:read b:read").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(any.to_string(), "b:read a:read");
        assert_eq!(AnyOf::parse(""), Err(RequirementError::EmptyAnyOf));
        assert_eq!(AnyOf::from_scopes([]), Err(RequirementError::EmptyAnyOf));
        assert!(matches!(
            AnyOf::parse("a:read b:*"),
            Err(RequirementError::Wildcard(_))
        ));
        assert!(matches!(
            AnyOf::parse("A!"),
            Err(RequirementError::Scope(_))
        ));
        let round: AnyOf = any.to_string().parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(round, any);
    }
}

//! What a layer requires: all of some scopes, any one of them, or scopes computed per request.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use token_core::{Scope, ScopeError};

/// A required scope was invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequirementError {
    /// Not a valid scope.
    Scope(ScopeError),
    /// Contains `*`; requirements name concrete actions.
    Wildcard(Scope),
    /// An any-of requirement with no scopes, which no token could meet.
    EmptyAnyOf,
}

impl fmt::Display for RequirementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scope(e) => write!(f, "invalid required scope: {e}"),
            Self::Wildcard(s) => write!(
                f,
                "required scope {s} contains '*'; requirements must be concrete (e.g. widgets:read)"
            ),
            Self::EmptyAnyOf => f.write_str("an any-of requirement needs at least one scope"),
        }
    }
}

impl std::error::Error for RequirementError {}

type Compute = dyn Fn(&Parts) -> Option<Vec<Scope>> + Send + Sync;

/// The requirement of one layer.
#[derive(Clone)]
pub(crate) enum Required {
    All(Arc<[Scope]>),
    Any(Arc<[Scope]>),
    Computed(Arc<Compute>),
}

impl fmt::Debug for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All(scopes) => f.debug_tuple("AllOf").field(scopes).finish(),
            Self::Any(scopes) => f.debug_tuple("AnyOf").field(scopes).finish(),
            Self::Computed(_) => f.write_str("Computed"),
        }
    }
}

/// A requirement resolved for one request.
pub(crate) enum Resolved {
    All(Arc<[Scope]>),
    Any(Arc<[Scope]>),
}

impl Resolved {
    pub(crate) fn scopes(&self) -> &[Scope] {
        match self {
            Self::All(s) | Self::Any(s) => s,
        }
    }

    pub(crate) fn is_any(&self) -> bool {
        matches!(self, Self::Any(_))
    }
}

impl Required {
    pub(crate) fn computed<F, I, E>(compute: F) -> Self
    where
        F: Fn(&Parts) -> Result<I, E> + Send + Sync + 'static,
        I: IntoIterator<Item = Scope>,
    {
        Self::Computed(Arc::new(move |parts: &Parts| {
            compute(parts).ok().map(|s| s.into_iter().collect())
        }))
    }

    /// The scopes for `request`; `None` when a computed requirement fails or is not concrete
    /// (a `*` taken from a path must never widen what a token is checked for).
    pub(crate) fn resolve(&self, request: &Parts) -> Option<Resolved> {
        match self {
            Self::All(s) => Some(Resolved::All(Arc::clone(s))),
            Self::Any(s) => Some(Resolved::Any(Arc::clone(s))),
            Self::Computed(compute) => {
                let scopes = compute(request)?;
                scopes
                    .iter()
                    .all(Scope::is_concrete)
                    .then(|| Resolved::All(Arc::from(scopes)))
            }
        }
    }
}

/// Parses a space-separated list of concrete scopes.
pub(crate) fn parse_list(scopes: &str) -> Result<Vec<Scope>, RequirementError> {
    scopes
        .split_ascii_whitespace()
        .map(|s| s.parse::<Scope>().map_err(RequirementError::Scope))
        .collect()
}

/// Refuses a requirement containing `*`.
pub(crate) fn concrete(scopes: Vec<Scope>) -> Result<Arc<[Scope]>, RequirementError> {
    match scopes.iter().find(|s| !s.is_concrete()) {
        Some(wild) => Err(RequirementError::Wildcard(wild.clone())),
        None => Ok(Arc::from(scopes)),
    }
}

//! What a layer requires: all of some scopes, any one of them, or scopes computed per request.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use token_core::{AnyOf, Requirement, Scope};

type Compute = dyn Fn(&Parts) -> Option<Vec<Scope>> + Send + Sync;

/// The requirement of one layer.
#[derive(Clone)]
pub(crate) enum Required {
    All(Arc<Requirement>),
    Any(Arc<AnyOf>),
    Computed(Arc<Compute>),
}

impl fmt::Debug for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All(scopes) => f.debug_tuple("AllOf").field(&scopes.scopes()).finish(),
            Self::Any(scopes) => f.debug_tuple("AnyOf").field(&scopes.scopes()).finish(),
            Self::Computed(_) => f.write_str("Computed"),
        }
    }
}

/// A requirement resolved for one request.
pub(crate) enum Resolved {
    All(Arc<Requirement>),
    Any(Arc<AnyOf>),
}

impl Resolved {
    pub(crate) fn scopes(&self) -> &[Scope] {
        match self {
            Self::All(s) => s.scopes(),
            Self::Any(s) => s.scopes(),
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
                let required = Requirement::from_scopes(compute(request)?).ok()?;
                Some(Resolved::All(Arc::new(required)))
            }
        }
    }
}

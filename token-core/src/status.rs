//! How each error is answered over HTTP: one documented mapping, [`HttpAnswer`], for
//! [`Error`], [`ValidationError`] and [`StoreError`], so a service maps all three the same way
//! (the example server and `token-tower` use it). Every variant is mapped by an exhaustive match
//! in this file: a new variant does not compile until it is given an answer.
//!
//! | error | status | code |
//! |---|---|---|
//! | a token that does not validate (malformed, unknown, wrong secret, revoked, expired, suspended, not yet valid, idle, used up, outside its network allowlist, unknown hash key) | 401 | `invalid_token` |
//! | a valid token without the required scopes | 403 | `insufficient_scope` |
//! | a refused request: policy violation, invalid field or scope, widening a parent's scopes, limits or lifetime, an update that would widen a token | 400 | `invalid_request` (`invalid_scope` for scopes) |
//! | no such token | 404 | `not_found` |
//! | a state that forbids the change (not active, already rotated, a parent narrowed meanwhile, issued before a revocation cut-off, a key still in use, a concurrent change, an id that exists) | 409 | `conflict` |
//! | the store is unreachable, or a sweep could not finish | 503 | `temporarily_unavailable` |
//! | anything else (corrupt data, schema mismatch, a bad requirement in code, randomness, keyring misuse) | 500 | `server_error` |
//!
//! The codes are RFC 6749 / RFC 6750 error codes where one fits (`invalid_token`,
//! `insufficient_scope`, `invalid_request`, `invalid_scope`, `temporarily_unavailable`,
//! `server_error`), else a plain name. Answer a 5xx with a generic description: the error's
//! `Display` may name driver details that belong in the server's log.

use crate::error::{Error, ErrorClass, ValidationError};
use crate::keyring::KeyringError;
use crate::store::StoreError;

/// An HTTP status and an error code for a response body.
///
/// ```
/// use token_core::{Error, HttpAnswer, TokenId, ValidationError};
///
/// assert_eq!(
///     ValidationError::Revoked.http(),
///     HttpAnswer { status: 401, code: "invalid_token" }
/// );
/// let missing = Error::NotFound(TokenId::from_bytes([1; 16]));
/// assert_eq!(missing.http().status, 404);
/// // `?` works across the error types: a validation failure is an `Error` too.
/// let wrapped: Error = ValidationError::Expired.into();
/// assert_eq!(wrapped.http(), ValidationError::Expired.http());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HttpAnswer {
    /// The HTTP status code.
    pub status: u16,
    /// The error code for the body (`{"error": code, ...}`).
    pub code: &'static str,
}

impl HttpAnswer {
    const fn new(status: u16, code: &'static str) -> Self {
        Self { status, code }
    }

    /// Whether the status is a 5xx (answer with a generic description, log the error).
    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }
}

const INVALID_TOKEN: HttpAnswer = HttpAnswer::new(401, "invalid_token");
const INSUFFICIENT_SCOPE: HttpAnswer = HttpAnswer::new(403, "insufficient_scope");
const INVALID_REQUEST: HttpAnswer = HttpAnswer::new(400, "invalid_request");
const INVALID_SCOPE: HttpAnswer = HttpAnswer::new(400, "invalid_scope");
const NOT_FOUND: HttpAnswer = HttpAnswer::new(404, "not_found");
const CONFLICT: HttpAnswer = HttpAnswer::new(409, "conflict");
const UNAVAILABLE: HttpAnswer = HttpAnswer::new(503, "temporarily_unavailable");
const SERVER_ERROR: HttpAnswer = HttpAnswer::new(500, "server_error");

impl ValidationError {
    /// How to answer this failure over HTTP (see the [module table](self)).
    pub fn http(&self) -> HttpAnswer {
        match self {
            Self::Store(store) => store.http(),
            Self::InvalidRequirement(_) => SERVER_ERROR,
            Self::Malformed(_)
            | Self::BadChecksum
            | Self::ForeignPrefix
            | Self::UnknownToken
            | Self::WrongSecret
            | Self::Revoked
            | Self::Expired
            | Self::NotYetValid
            | Self::IdleExpired
            | Self::UseLimitReached
            | Self::Suspended
            | Self::AddressNotAllowed
            | Self::UnknownHashKey(_)
            | Self::InsufficientScope { .. } => match self.class() {
                ErrorClass::InsufficientScope => INSUFFICIENT_SCOPE,
                _ => INVALID_TOKEN,
            },
        }
    }
}

impl StoreError {
    /// How to answer this failure over HTTP (see the [module table](self)).
    pub fn http(&self) -> HttpAnswer {
        match self {
            Self::AlreadyExists { .. } | Self::Conflict { .. } => CONFLICT,
            Self::NotFound { .. } => NOT_FOUND,
            Self::Backend { .. } => UNAVAILABLE,
            Self::Corrupt { .. } | Self::NotMigrated { .. } | Self::SchemaTooNew { .. } => {
                SERVER_ERROR
            }
        }
    }
}

impl Error {
    /// How to answer this failure over HTTP (see the [module table](self)).
    pub fn http(&self) -> HttpAnswer {
        match self {
            Self::Validation(validation) => validation.http(),
            Self::Store(store) => store.http(),
            Self::Policy(_)
            | Self::InvalidRequest { .. }
            | Self::LimitWidening { .. }
            | Self::UpdateWidens { .. }
            | Self::OutlivesParent { .. } => INVALID_REQUEST,
            Self::Scope(_) | Self::ScopeWidening { .. } => INVALID_SCOPE,
            Self::NotFound(_) => NOT_FOUND,
            Self::NotActive { .. }
            | Self::AlreadyRotated { .. }
            | Self::ParentNarrowed { .. }
            | Self::BeforeRevocationCutoff { .. } => CONFLICT,
            Self::Keyring(KeyringError::KeyInUse { .. }) => CONFLICT,
            Self::Keyring(_) | Self::Randomness(_) => SERVER_ERROR,
            Self::SweepIncomplete(_) => UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::format::{FormatError, TokenId};
    use crate::keyring::KeyId;
    use crate::policy::PolicyViolation;
    use crate::record::TokenState;
    use crate::scope::Scope;

    fn scope() -> Scope {
        "a".parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn backend() -> StoreError {
        StoreError::Backend {
            store: "s",
            source: "down".into(),
        }
    }

    /// One value of every variant and its answer: adding a variant without an answer fails to
    /// compile (the matches above are exhaustive); changing an answer fails here.
    #[test]
    fn every_variant_has_its_documented_answer() {
        let id = TokenId::from_bytes([1; 16]);
        let validation = [
            (ValidationError::Malformed(FormatError::InvalidId), 401),
            (ValidationError::BadChecksum, 401),
            (ValidationError::ForeignPrefix, 401),
            (ValidationError::UnknownToken, 401),
            (ValidationError::WrongSecret, 401),
            (ValidationError::Revoked, 401),
            (ValidationError::Expired, 401),
            (ValidationError::NotYetValid, 401),
            (ValidationError::IdleExpired, 401),
            (ValidationError::UseLimitReached, 401),
            (ValidationError::Suspended, 401),
            (ValidationError::AddressNotAllowed, 401),
            (ValidationError::UnknownHashKey(KeyId::new(9)), 401),
            (
                ValidationError::InsufficientScope {
                    missing: vec![scope()],
                },
                403,
            ),
            (ValidationError::InvalidRequirement(scope()), 500),
            (ValidationError::Store(backend()), 503),
        ];
        for (error, status) in validation {
            assert_eq!(error.http().status, status, "{error:?}");
        }
        let store = [
            (StoreError::AlreadyExists { id }, 409),
            (StoreError::NotFound { id }, 404),
            (
                StoreError::Conflict {
                    message: "x".into(),
                },
                409,
            ),
            (
                StoreError::Corrupt {
                    store: "s",
                    message: "x".into(),
                },
                500,
            ),
            (
                StoreError::NotMigrated {
                    store: "s",
                    found: None,
                    required: 3,
                },
                500,
            ),
            (
                StoreError::SchemaTooNew {
                    store: "s",
                    found: 4,
                    supported: 3,
                },
                500,
            ),
            (backend(), 503),
        ];
        for (error, status) in store {
            assert_eq!(error.http().status, status, "{error:?}");
        }
        let now = OffsetDateTime::UNIX_EPOCH;
        let errors = [
            (Error::Policy(PolicyViolation::ExpiryRequired), 400),
            (
                Error::InvalidRequest {
                    field: "f",
                    problem: "p".into(),
                },
                400,
            ),
            (Error::Scope(crate::scope::ScopeError::Empty), 400),
            (Error::NotFound(id), 404),
            (
                Error::NotActive {
                    id,
                    state: TokenState::Revoked,
                },
                409,
            ),
            (Error::AlreadyRotated { id, successor: id }, 409),
            (
                Error::ScopeWidening {
                    scopes: vec![scope()],
                },
                400,
            ),
            (
                Error::LimitWidening {
                    limit: "max_uses",
                    requested: "2".into(),
                    parent: "1".into(),
                },
                400,
            ),
            (
                Error::OutlivesParent {
                    requested: now,
                    parent: now,
                },
                400,
            ),
            (
                Error::UpdateWidens {
                    field: "scopes",
                    problem: "p".into(),
                },
                400,
            ),
            (Error::ParentNarrowed { field: "scopes" }, 409),
            (
                Error::BeforeRevocationCutoff {
                    issued_at: now,
                    cutoff: now,
                },
                409,
            ),
            (Error::SweepIncomplete(Box::default()), 503),
            (
                Error::Keyring(KeyringError::KeyInUse {
                    key: KeyId::new(1),
                    records: 1,
                }),
                409,
            ),
            (Error::Keyring(KeyringError::UnknownKey(KeyId::new(1))), 500),
            (Error::Store(backend()), 503),
            (Error::Validation(ValidationError::Revoked), 401),
        ];
        for (error, status) in errors {
            assert_eq!(error.http().status, status, "{error:?}");
        }
    }

    #[test]
    fn codes_follow_the_rfcs() {
        assert_eq!(ValidationError::Revoked.http().code, "invalid_token");
        assert_eq!(
            ValidationError::InsufficientScope {
                missing: vec![scope()]
            }
            .http()
            .code,
            "insufficient_scope"
        );
        assert_eq!(backend().http().code, "temporarily_unavailable");
        assert!(backend().http().is_server_error());
        assert!(!ValidationError::Revoked.http().is_server_error());
    }
}

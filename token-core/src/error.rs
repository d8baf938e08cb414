//! Errors of the [`TokenManager`](crate::TokenManager).

use time::OffsetDateTime;

use crate::format::{FormatError, RandomnessError, TokenId};
use crate::keyring::{KeyId, KeyringError};
use crate::policy::{PolicyError, PolicyViolation};
use crate::record::TokenState;
use crate::scope::{Scope, ScopeError};
use crate::store::StoreError;

/// Why a token was not accepted by [`TokenManager::validate`](crate::TokenManager::validate).
///
/// Each failure is its own variant, for audit, metrics and logs (messages never contain the token).
/// Anything facing the network should answer with [`ValidationError::class`] only, so a response
/// never reveals whether a token exists, was revoked or has expired.
///
/// ```
/// use token_core::{ErrorClass, ValidationError};
/// assert_eq!(ValidationError::Revoked.class(), ErrorClass::InvalidToken);
/// assert_eq!(ValidationError::UnknownToken.class(), ErrorClass::InvalidToken);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The string is not a well-formed token (checked without touching the store).
    #[error("malformed token: {0}")]
    Malformed(FormatError),
    /// The checksum does not match (checked without touching the store).
    #[error("token checksum does not match")]
    BadChecksum,
    /// Well-formed, but issued under another prefix than this manager's.
    #[error("token prefix is not this manager's")]
    ForeignPrefix,
    /// No token with this id.
    #[error("unknown token")]
    UnknownToken,
    /// The id exists but the secret does not match.
    #[error("token secret does not match")]
    WrongSecret,
    /// Revoked.
    #[error("token has been revoked")]
    Revoked,
    /// Past its expiry.
    #[error("token has expired")]
    Expired,
    /// Before its not-before time.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Unused for longer than its idle timeout.
    #[error("token expired after being idle")]
    IdleExpired,
    /// Its use limit is exhausted.
    #[error("token use limit reached")]
    UseLimitReached,
    /// Suspended ([`TokenManager::suspend`](crate::TokenManager::suspend)) until resumed.
    #[error("token is suspended")]
    Suspended,
    /// The token has a network allowlist and the caller's address is not in it, or the
    /// [`Context`](crate::Context) carries no (readable) `client_ip`.
    #[error("token may not be used from this address")]
    AddressNotAllowed,
    /// The token is valid but lacks scopes.
    #[error("token lacks required scopes: {}", join(.missing))]
    InsufficientScope {
        /// The required scopes the token does not permit.
        missing: Vec<Scope>,
    },
    /// The record was hashed with a key no longer in the keyring.
    #[error("token was hashed with {0}, which is not in the keyring")]
    UnknownHashKey(KeyId),
    /// A required scope contains `*` (a programming error in the caller).
    #[error("required scope {0} contains '*'; required scopes must be concrete")]
    InvalidRequirement(Scope),
    /// The store failed; the token is not accepted (fail closed).
    #[error("token store unavailable: {0}")]
    Store(#[from] StoreError),
}

fn join(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The only distinctions a network-facing caller should make (RFC 6750 error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// `invalid_token`: malformed, unknown, wrong secret, revoked, expired, idle, used up.
    InvalidToken,
    /// `insufficient_scope`: a valid token without the required scopes.
    InsufficientScope,
    /// The server could not decide (store down, bad requirement): answer 5xx, never accept.
    ServerError,
}

impl ValidationError {
    /// The public-facing class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InsufficientScope { .. } => ErrorClass::InsufficientScope,
            Self::Store(_) | Self::InvalidRequirement(_) => ErrorClass::ServerError,
            _ => ErrorClass::InvalidToken,
        }
    }

    /// A stable snake_case name for the failure, used in `Denied` audit events and metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadChecksum => "bad_checksum",
            Self::ForeignPrefix => "foreign_prefix",
            Self::UnknownToken => "unknown_token",
            Self::WrongSecret => "wrong_secret",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IdleExpired => "idle_expired",
            Self::UseLimitReached => "use_limit_reached",
            Self::Suspended => "suspended",
            Self::AddressNotAllowed => "address_not_allowed",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::UnknownHashKey(_) => "unknown_hash_key",
            Self::InvalidRequirement(_) => "invalid_requirement",
            Self::Store(_) => "store_error",
        }
    }

    pub(crate) fn from_state(state: TokenState) -> Option<Self> {
        match state {
            TokenState::Active => None,
            TokenState::Revoked => Some(Self::Revoked),
            TokenState::Expired => Some(Self::Expired),
            TokenState::Suspended => Some(Self::Suspended),
            TokenState::NotYetValid => Some(Self::NotYetValid),
            TokenState::IdleExpired => Some(Self::IdleExpired),
            TokenState::UsedUp => Some(Self::UseLimitReached),
        }
    }
}

/// Errors of lifecycle operations other than validation (issue, derive, rotate, revoke, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Refused by policy.
    #[error("refused by policy: {0}")]
    Policy(#[from] PolicyViolation),
    /// A request field is invalid.
    #[error("invalid {field}: {problem}")]
    InvalidRequest {
        /// The field.
        field: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A scope in the request is invalid.
    #[error("invalid scope: {0}")]
    Scope(#[from] ScopeError),
    /// No such token.
    #[error("token {0} not found")]
    NotFound(TokenId),
    /// The token is not active, so it cannot be derived from or rotated.
    #[error("token {id} is {state}, not active")]
    NotActive {
        /// The token.
        id: TokenId,
        /// Its state.
        state: TokenState,
    },
    /// The token already has a successor (it is in its grace window): rotate, or derive from,
    /// the successor instead.
    #[error("token {id} was already rotated to {successor}; use {successor} instead")]
    AlreadyRotated {
        /// The token.
        id: TokenId,
        /// Its successor.
        successor: TokenId,
    },
    /// A derived token asked for scopes its parent does not cover.
    #[error("derived token may only narrow its parent's scopes; not covered: {}", join(.scopes))]
    ScopeWidening {
        /// The requested scopes the parent does not cover.
        scopes: Vec<Scope>,
    },
    /// A derived token asked for a looser use limit or idle timeout than its parent has.
    #[error(
        "derived token may only narrow its parent's {limit}: asked for {requested}, parent has {parent}"
    )]
    LimitWidening {
        /// `max_uses` or `idle_timeout`.
        limit: &'static str,
        /// What was asked for.
        requested: String,
        /// What the parent has.
        parent: String,
    },
    /// An update would widen the token (a scope not covered, a later expiry, more uses, a longer
    /// idle timeout, a wider allowlist): nothing was changed. To widen, issue a new token.
    #[error("update refused: {field} would widen the token: {problem}")]
    UpdateWidens {
        /// The field.
        field: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// The parent was narrowed (by a concurrent update) after this derive read it, and the
    /// child would be wider than the parent now is in `field`: nothing was written; retry.
    #[error(
        "the parent's {field} were narrowed meanwhile; the derived token would be wider: retry"
    )]
    ParentNarrowed {
        /// `scopes` or `allowed_networks`.
        field: &'static str,
    },
    /// A derived token asked to outlive its parent.
    #[error(
        "derived token would expire at {requested}, after its parent ({parent}); ask for a shorter ttl"
    )]
    OutlivesParent {
        /// Requested expiry.
        requested: OffsetDateTime,
        /// Parent's expiry.
        parent: OffsetDateTime,
    },
    /// A revocation of every token issued before `cutoff` has committed, and this token would
    /// have been issued at `issued_at`, before it: nothing was written. The issue raced the
    /// revocation (retry), or this instance's clock lags the one that revoked (fix the clock).
    #[error(
        "every token issued before {cutoff} was revoked, and this one would be issued at {issued_at}; nothing was issued: retry, and if this repeats, this instance's clock lags the revoker's"
    )]
    BeforeRevocationCutoff {
        /// The refused token's issue time (the manager's clock).
        issued_at: OffsetDateTime,
        /// The store's revocation cut-off.
        cutoff: OffsetDateTime,
    },
    /// A sweep ran every step, but some failed: the report holds what the others did and the
    /// failures (each step is retried at the next sweep).
    #[error("sweep incomplete: {}", .0.failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    SweepIncomplete(Box<crate::retention::SweepReport>),
    /// A keyring operation was refused.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The OS random number generator failed.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A validation failed (so `?` works across [`validate`](crate::TokenManager::validate) and
    /// lifecycle calls in one handler; [`Error::http`] answers it as the validation would).
    #[error(transparent)]
    Validation(#[from] ValidationError),
}

/// A [`TokenManager`](crate::TokenManager) configuration that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Invalid prefix.
    #[error(transparent)]
    Prefix(#[from] FormatError),
    /// Inconsistent policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// An interval is zero.
    #[error("{setting} must be positive")]
    ZeroInterval {
        /// The setting.
        setting: &'static str,
    },
    /// A setting is out of its allowed range.
    #[error("{setting} {problem}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

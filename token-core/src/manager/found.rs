//! Found tokens: what to do with token strings someone found where they should not be (a public
//! repository, a log, a paste).
//!
//! Two calls, for two audiences:
//!
//! - [`TokenManager::revoke_found`] is for **anyone**: a third party (a secret-scanning service,
//!   a security researcher, a user who pasted a key) hands in up to [`MAX_FOUND_BATCH`] strings,
//!   and each one that proves possession (the right prefix, id and secret) is revoked. The answer
//!   is the same for every batch of the same size, [`FoundBatchReport::processed`]: it never says
//!   whether a string was a token, so the call cannot be used to test guesses. Possession is the
//!   authorization, as in RFC 7009: whoever holds a token may kill it.
//! - [`TokenManager::check_found`] is for **operators** (it reveals the state of a token:
//!   unknown, wrong secret, revoked, expired, live): `tokenctl scan --database` uses it to tell
//!   which leaked tokens still work. Never expose its answer to the network. Like
//!   [`introspect`](TokenManager::introspect), it records no use, consumes none of `max_uses`
//!   and writes no audit event.

use super::TokenManager;
use crate::audit::Context;
use crate::error::{Error, ValidationError};
use crate::keyring::KeyId;
use crate::record::TokenState;
use crate::store::StoreError;

/// The most tokens one [`TokenManager::revoke_found`] call takes.
pub const MAX_FOUND_BATCH: usize = 1000;

/// What [`TokenManager::revoke_found`] answers: how many strings it processed, nothing about
/// which of them were tokens.
///
/// ```
/// use token_core::FoundBatchReport;
/// let report = FoundBatchReport::default();
/// assert_eq!(report.processed, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FoundBatchReport {
    /// Strings processed: always the batch's length when the call succeeds.
    pub processed: usize,
}

/// What an operator learns about a found token string ([`TokenManager::check_found`]).
///
/// ```
/// use token_core::{FoundState, TokenState};
/// assert!(FoundState::Record(TokenState::Active).is_live());
/// assert!(FoundState::Record(TokenState::Suspended).is_live()); // it can be resumed
/// assert!(!FoundState::Unknown.is_live());
/// assert_eq!(FoundState::WrongSecret.as_str(), "wrong_secret");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FoundState {
    /// Not a well-formed token with a valid checksum.
    Malformed,
    /// A well-formed token of another prefix than this manager's.
    ForeignPrefix,
    /// No record with this id (never issued here, or purged).
    Unknown,
    /// A record with this id exists, but the secret does not match it.
    WrongSecret,
    /// A record with this id exists, hashed with a key this manager's keyring lacks: the
    /// secret cannot be checked (add the key to the keyring).
    HashKeyMissing(KeyId),
    /// The presented token is the record's, which is in this state now.
    Record(TokenState),
}

impl FoundState {
    /// Whether the token works now or can work again: active, not valid *yet*, or suspended
    /// (a suspension can be lifted). These are the ones to revoke.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Record(TokenState::Active | TokenState::NotYetValid | TokenState::Suspended)
        )
    }

    /// Lower-case name: `malformed`, `foreign_prefix`, `unknown`, `wrong_secret`, or the
    /// record's [`TokenState::as_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::ForeignPrefix => "foreign_prefix",
            Self::Unknown => "unknown",
            Self::WrongSecret => "wrong_secret",
            Self::HashKeyMissing(_) => "hash_key_missing",
            Self::Record(state) => state.as_str(),
        }
    }
}

impl std::fmt::Display for FoundState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TokenManager {
    /// Revokes each of `tokens` that proves possession (RFC 7009 style), with `reason` and the
    /// caller's `ctx` in each `Revoked` event, and answers only how many strings it processed.
    ///
    /// Malformed, foreign, unknown and wrong-secret strings, duplicates and already revoked
    /// tokens are processed like the others and change nothing; derived tokens of a revoked
    /// token are revoked with it. More than [`MAX_FOUND_BATCH`] strings is
    /// [`Error::InvalidRequest`] before any work. A store failure is returned as an error after
    /// the whole batch was tried (tokens revoked before it stay revoked; resubmitting the batch is
    /// safe, revocation is idempotent).
    ///
    /// A batch holding live tokens takes longer than one without (each revocation is a
    /// transaction); that tells the caller only what it proved by holding those tokens.
    ///
    /// ```
    /// use token_core::{Context, HashKey, IssueRequest, KeyId, Keyring, ScopeSet, TokenManager};
    /// use token_store_memory::MemoryStore;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let keyring = Keyring::new(HashKey::generate(KeyId::new(1))?);
    /// let manager = TokenManager::builder(MemoryStore::new(), keyring).prefix("acme")?.build()?;
    /// let leaked = manager.issue(IssueRequest::new("ci", ScopeSet::parse("deploy")?)).await?;
    ///
    /// let found = [leaked.token.expose_secret(), "acme_not-a-token", "ghp_somebody_else"];
    /// let ctx = Context::new().actor("secret scanning partner");
    /// let report = manager.revoke_found(&found, "found in a public repository", &ctx).await?;
    /// assert_eq!(report.processed, 3); // and nothing about which were tokens
    /// assert!(manager.introspect(leaked.token.expose_secret()).await?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn revoke_found<T: AsRef<str>>(
        &self,
        tokens: &[T],
        reason: &str,
        ctx: &Context,
    ) -> Result<FoundBatchReport, Error> {
        if tokens.len() > MAX_FOUND_BATCH {
            return Err(Error::InvalidRequest {
                field: "tokens",
                problem: format!(
                    "{} tokens in one batch; at most {MAX_FOUND_BATCH} are allowed",
                    tokens.len()
                ),
            });
        }
        let mut first_error = None;
        for token in tokens {
            if let Err(error) = self.revoke_presented(token.as_ref(), reason, ctx).await {
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(FoundBatchReport {
                processed: tokens.len(),
            }),
        }
    }

    /// The state of a found token string, for operators: malformed, foreign prefix, unknown,
    /// wrong secret, or the state of the record it proves possession of. Records no use,
    /// consumes none of `max_uses` and writes no audit event. Errors only when the store fails.
    ///
    /// This answer tells whether a token exists: keep it away from anything facing the network
    /// (third parties get [`revoke_found`](Self::revoke_found)).
    ///
    /// ```
    /// use token_core::{FoundState, HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, ScopeSet, TokenManager, TokenState};
    /// use token_store_memory::MemoryStore;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let keyring = Keyring::new(HashKey::generate(KeyId::new(1))?);
    /// let manager = TokenManager::builder(MemoryStore::new(), keyring).prefix("acme")?.build()?;
    /// let issued = manager.issue(IssueRequest::new("ci", ScopeSet::parse("deploy")?)).await?;
    /// let token = issued.token.expose_secret();
    ///
    /// assert_eq!(manager.check_found(token).await?, FoundState::Record(TokenState::Active));
    /// manager.revoke(RevokeSelector::Token(issued.token.id()), "leaked").await?;
    /// assert_eq!(manager.check_found(token).await?, FoundState::Record(TokenState::Revoked));
    /// assert_eq!(manager.check_found("acme_garbage").await?, FoundState::Malformed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn check_found(&self, token: &str) -> Result<FoundState, StoreError> {
        let parsed = match self.parse_own(token) {
            Ok(parsed) => parsed,
            Err(ValidationError::ForeignPrefix) => return Ok(FoundState::ForeignPrefix),
            Err(_) => return Ok(FoundState::Malformed),
        };
        let Some(record) = self.lookup(parsed.id(), self.now()).await?.record else {
            return Ok(FoundState::Unknown);
        };
        match self.verify_possession(&parsed, &record) {
            Ok(()) => {}
            Err(ValidationError::UnknownHashKey(key)) => {
                return Ok(FoundState::HashKeyMissing(key));
            }
            Err(_) => return Ok(FoundState::WrongSecret),
        }
        Ok(FoundState::Record(self.state_of(&record, self.now())))
    }
}

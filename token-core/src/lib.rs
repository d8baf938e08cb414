//! # token-core
//!
//! The heart of an embeddable API-token lifecycle library: issue, validate, scope, expire, derive,
//! rotate, revoke and audit tokens, over any [`TokenStore`] (memory, SQLite, PostgreSQL).
//!
//! Three principles decide every default:
//! - **Minimal lifetime**: every token expires (see [`Policy`]); idle tokens die; use limits.
//! - **Least privilege**: [`Scope`]s map to actions; derived tokens only narrow.
//! - **Revocation first**: one call revokes a token, a subject's tokens, a family, a label or
//!   everything issued before an instant, and derived tokens go with their parent.
//!
//! Start with [`TokenManager`]. The token string format is specified in [`format`](mod@format); scopes in
//! [`scope`]; the storage contract in [`store`]. The [`manual`] holds the long-form docs: the
//! threat model, the validation order, revocation semantics and their bounds, usage coalescing,
//! the audit chain, every default on one page, and how to implement a store.
//!
//! Secrets never appear in `Debug`, `Display`, errors or audit events: stores hold a keyed BLAKE3
//! hash ([`keyring`]), and [`PlaintextToken`] zeroizes its string on drop.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod audit;
pub mod audit_key;
pub mod binding;
pub mod cache;
pub mod clock;
pub mod credits;
mod error;
pub mod format;
pub mod keyring;
mod manager;
pub mod manual;
pub mod metadata;
pub mod network;
pub mod policy;
pub mod rate_limit;
pub mod record;
pub mod redact;
mod request;
pub mod requirement;
pub mod retention;
pub mod scope;
pub mod status;
pub mod store;
#[cfg(feature = "sweeper")]
#[cfg_attr(docsrs, doc(cfg(feature = "sweeper")))]
pub mod sweeper;
pub mod trail;
mod update;
mod usage;
mod view;

pub use audit::{
    AuditCheckpoint, AuditEvent, AuditHash, AuditKind, AuditQuery, AuditRecord, Context,
};
pub use audit_key::{AuditKey, AuditKeyring, CheckpointBreak, CheckpointMac};
pub use binding::{KeyThumbprint, ProofOfPossession, ThumbprintError};
pub use cache::CacheConfig;
pub use clock::{Clock, ManualClock, SystemClock};
pub use credits::{RefillError, UseRefill};
pub use error::{ConfigError, Error, ErrorClass, ValidationError};
pub use format::{
    FormatError, ParsedToken, PlaintextToken, RandomnessError, TokenId, TokenIdHasher,
    TokenIdHasherBuilder, TokenPrefix, parse_token,
};
pub use keyring::{HashKey, KeyId, Keyring, KeyringError, TokenHash};
pub use manager::found::{FoundBatchReport, FoundState, MAX_FOUND_BATCH};
pub use manager::{
    AdmissionError, DEFAULT_DENIED_EVENT_QUEUE, DEFAULT_PAGE_SIZE, DEFAULT_USAGE_FLUSH_INTERVAL,
    IssuedToken, MAX_DENIED_EVENT_QUEUE, MAX_PAGE_SIZE, ManagerBuilder, ManagerStats, Page,
    Required, TokenManager, TokenPage, ValidatedToken,
};
pub use metadata::{Metadata, MetadataError};
pub use network::{NetworkAllowlist, NetworkError};
pub use policy::{
    HumanDuration, Policy, PolicyBuilder, PolicyError, PolicyViolation, ScopeCeiling,
};
pub use rate_limit::{RateLimit, RateLimitError, RateLimits};
pub use record::{Labels, Revocation, TokenRecord, TokenState};
pub use request::{DeriveRequest, IssueRequest};
pub use requirement::{AnyOf, Requirement, RequirementError};
pub use retention::{Retention, RetentionBuilder, SweepFailure, SweepReport, SweepStep};
pub use scope::{Scope, ScopeError, ScopeSet};
pub use status::HttpAnswer;
pub use store::{
    ClaimOutcome, ConsumeUse, CountLiveWithKey, Cursor, ImmediateLookup, InsertOutcome,
    InsertToken, ListFilter, ListQuery, MarkExpired, ProofClaim, PurgeRequest, RevocationNotice,
    RevocationStream, RevokeRequest, RevokeSelector, RotateOutcome, RotateToken, StoreError,
    SuspendRequest, Suspension, TokenStore, TruncateAudit, UpdateOutcome, UpdateToken, UsageUpdate,
    UseOutcome, Widening,
};
pub use trail::{AuditPage, AuditSink, BrokenLink, ChainReport, CheckpointCheck, UseAudit};
pub use update::TokenUpdate;
pub use view::TokenView;

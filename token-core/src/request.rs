//! Requests to issue and derive tokens.
//!
//! Limits (checked at issue time, with an [`Error::InvalidRequest`] naming the field): subject
//! 1–256 bytes; name up to 128 bytes; description up to 1024 bytes; at most 32 labels, keys
//! `[a-z0-9_./-]{1,64}`, values up to 256 bytes; no control characters anywhere; `max_uses` at least
//! 1; at least one scope.

use std::time::Duration;

use time::OffsetDateTime;

use crate::audit::Context;
use crate::error::Error;
use crate::metadata::Metadata;
use crate::network::NetworkAllowlist;
use crate::record::Labels;
use crate::scope::ScopeSet;

/// How long a requested token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lifetime {
    #[default]
    PolicyDefault,
    Ttl(Duration),
    Never,
}

/// Idle timeout of a requested token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Idle {
    #[default]
    PolicyDefault,
    After(Duration),
    Never,
}

/// Options shared by issue and derive requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenSpec {
    pub(crate) scopes: ScopeSet,
    pub(crate) lifetime: Lifetime,
    pub(crate) not_before: Option<OffsetDateTime>,
    pub(crate) idle: Idle,
    pub(crate) max_uses: Option<u64>,
    pub(crate) use_refill: Option<crate::credits::UseRefill>,
    pub(crate) rate_limits: Option<crate::rate_limit::RateLimits>,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) labels: Labels,
    pub(crate) metadata: Option<Metadata>,
    pub(crate) allowed_networks: Option<NetworkAllowlist>,
    pub(crate) dpop_jkt: Option<crate::binding::KeyThumbprint>,
    pub(crate) context: Context,
}

macro_rules! spec_setters {
    () => {
        /// Lifetime from issue (capped by policy; a derived token is further capped by its parent).
        pub fn ttl(mut self, ttl: Duration) -> Self {
            self.spec.lifetime = Lifetime::Ttl(ttl);
            self
        }

        /// Asks for a token that never expires; refused unless the policy allows it.
        pub fn never_expires(mut self) -> Self {
            self.spec.lifetime = Lifetime::Never;
            self
        }

        /// The token is not valid before `at`.
        pub fn not_before(mut self, at: OffsetDateTime) -> Self {
            self.spec.not_before = Some(crate::clock::truncate_to_micros(at));
            self
        }

        /// The token dies after `timeout` without a successful validation.
        pub fn idle_timeout(mut self, timeout: Duration) -> Self {
            self.spec.idle = Idle::After(timeout);
            self
        }

        /// The token never idle-expires (overrides the policy default).
        pub fn no_idle_timeout(mut self) -> Self {
            self.spec.idle = Idle::Never;
            self
        }

        /// The token is valid for at most `max_uses` successful validations. Every use of such a
        /// token is an atomic conditional update in the store, never cached or coalesced.
        pub fn max_uses(mut self, max_uses: u64) -> Self {
            self.spec.max_uses = Some(max_uses);
            self
        }

        /// Usage credits that come back: with [`max_uses`](Self::max_uses), the token has
        /// `max_uses` successful validations per period of `refill` (unused ones do not carry
        /// over). The refill is applied in the store's atomic use count, so it happens exactly
        /// once per period across every instance. Requires `max_uses`. A derived token inherits
        /// its parent's refill and may only lengthen it.
        pub fn refill_uses(mut self, refill: crate::credits::UseRefill) -> Self {
            self.spec.use_refill = Some(refill);
            self
        }

        /// The token's named rate limits ([`RateLimits`](crate::RateLimits)), enforced by
        /// `token-ratelimit` (token-tower answers 429). A derived token inherits its parent's
        /// and may only tighten them: naming fewer, or a looser one, is refused.
        pub fn rate_limits(mut self, limits: crate::rate_limit::RateLimits) -> Self {
            self.spec.rate_limits = Some(limits);
            self
        }

        /// A human-readable name.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.spec.name = Some(name.into());
            self
        }

        /// A description.
        pub fn description(mut self, description: impl Into<String>) -> Self {
            self.spec.description = Some(description.into());
            self
        }

        /// Adds a label.
        pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.spec.labels.insert(key.into(), value.into());
            self
        }

        /// The host's own data on the token ([`Metadata`]: a bounded JSON object, stored and
        /// returned, never interpreted).
        pub fn metadata(mut self, metadata: Metadata) -> Self {
            self.spec.metadata = Some(metadata);
            self
        }

        /// The networks the token may be used from ([`NetworkAllowlist`]); a derived token's must
        /// lie within its parent's, and it inherits the parent's when it names none.
        pub fn allowed_networks(mut self, networks: NetworkAllowlist) -> Self {
            self.spec.allowed_networks = Some(networks);
            self
        }

        /// Binds the token to the client key with this thumbprint (DPoP `cnf.jkt`): it then
        /// validates only with a verified proof signed by that key
        /// ([`validate_with_proof`](crate::TokenManager::validate_with_proof)), never as a plain
        /// bearer token. A derived token keeps its parent's binding.
        pub fn bind_to_key(mut self, jkt: crate::binding::KeyThumbprint) -> Self {
            self.spec.dpop_jkt = Some(jkt);
            self
        }

        /// Who asks, and from where (recorded as `created_by` and in the audit event).
        pub fn context(mut self, context: Context) -> Self {
            self.spec.context = context;
            self
        }
    };
}

/// A request to issue a root token.
///
/// ```
/// use std::time::Duration;
/// use token_core::{Context, IssueRequest, ScopeSet};
/// let request = IssueRequest::new("user:42", ScopeSet::parse("widgets:read")?)
///     .ttl(Duration::from_secs(3600))
///     .name("CI deploy key")
///     .label("team", "payments")
///     .context(Context::new().actor("admin:7"));
/// # let _ = request;
/// # Ok::<(), token_core::ScopeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub(crate) subject: String,
    pub(crate) spec: TokenSpec,
}

impl IssueRequest {
    /// A token for `subject` with `scopes`; other settings from the policy.
    pub fn new(subject: impl Into<String>, scopes: ScopeSet) -> Self {
        Self {
            subject: subject.into(),
            spec: TokenSpec {
                scopes,
                ..TokenSpec::default()
            },
        }
    }

    spec_setters!();
}

/// A request to derive a child token from a parent: same subject, scopes covered by the parent's,
/// expiry no later than the parent's. Without a `ttl`, the child gets the policy default capped at
/// the parent's expiry.
///
/// ```
/// use std::time::Duration;
/// use token_core::{DeriveRequest, ScopeSet};
/// let request = DeriveRequest::new(ScopeSet::parse("widgets:read")?)
///     .ttl(Duration::from_secs(600))
///     .max_uses(1);
/// # let _ = request;
/// # Ok::<(), token_core::ScopeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DeriveRequest {
    pub(crate) spec: TokenSpec,
}

impl DeriveRequest {
    /// A child with `scopes` (which the parent's must cover).
    pub fn new(scopes: ScopeSet) -> Self {
        Self {
            spec: TokenSpec {
                scopes,
                ..TokenSpec::default()
            },
        }
    }

    spec_setters!();
}

const SUBJECT_MAX: usize = 256;
/// Longest TTL accepted, whatever the policy: longer values would saturate the calendar and
/// quietly mean "never expires".
const TTL_MAX: Duration = Duration::from_secs(100 * 365 * 86_400);
const NAME_MAX: usize = 128;
const DESCRIPTION_MAX: usize = 1024;
const LABELS_MAX: usize = 32;
const LABEL_KEY_MAX: usize = 64;
const LABEL_VALUE_MAX: usize = 256;

fn invalid(field: &'static str, problem: impl Into<String>) -> Error {
    Error::InvalidRequest {
        field,
        problem: problem.into(),
    }
}

fn check_text(field: &'static str, value: &str, min: usize, max: usize) -> Result<(), Error> {
    if value.len() < min || value.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes; allowed is {min} to {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains a control character"));
    }
    Ok(())
}

pub(crate) fn check_subject(subject: &str) -> Result<(), Error> {
    check_text("subject", subject, 1, SUBJECT_MAX)
}

impl TokenSpec {
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.scopes.is_empty() {
            return Err(invalid(
                "scopes",
                "is empty; a token must carry at least one scope",
            ));
        }
        check_descriptive(
            self.name.as_deref(),
            self.description.as_deref(),
            &self.labels,
        )?;
        if self.max_uses == Some(0) {
            return Err(invalid("max_uses", "is 0; it must be at least 1"));
        }
        if self.use_refill.is_some() && self.max_uses.is_none() {
            return Err(invalid(
                "use_refill",
                "needs max_uses: a refill restores max_uses credits every period",
            ));
        }
        if let Lifetime::Ttl(ttl) = self.lifetime {
            if ttl.is_zero() {
                return Err(invalid("ttl", "is zero; it must be positive"));
            }
            if ttl > TTL_MAX {
                return Err(invalid(
                    "ttl",
                    "exceeds 100 years; ask for never_expires() if the policy allows it",
                ));
            }
        }
        if let Idle::After(idle) = self.idle
            && idle.is_zero()
        {
            return Err(invalid("idle_timeout", "is zero; it must be positive"));
        }
        Ok(())
    }
}

/// The limits on the descriptive fields (name, description, labels) a token is issued or
/// updated with.
pub(crate) fn check_descriptive(
    name: Option<&str>,
    description: Option<&str>,
    labels: &Labels,
) -> Result<(), Error> {
    {
        if let Some(name) = name {
            check_text("name", name, 1, NAME_MAX)?;
        }
        if let Some(description) = description {
            check_text("description", description, 0, DESCRIPTION_MAX)?;
        }
        if labels.len() > LABELS_MAX {
            return Err(invalid(
                "labels",
                format!("has {} entries; at most {LABELS_MAX}", labels.len()),
            ));
        }
        for (key, value) in labels {
            let key_ok = !key.is_empty()
                && key.len() <= LABEL_KEY_MAX
                && key
                    .chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '/' | '-'));
            if !key_ok {
                return Err(invalid(
                    "label key",
                    format!("{key:?} is not [a-z0-9_./-]{{1,{LABEL_KEY_MAX}}}"),
                ));
            }
            check_text("label value", value, 0, LABEL_VALUE_MAX)?;
        }
        Ok(())
    }
}

//! Audit events: who created, used, rotated and revoked what, and when.
//!
//! Every state-changing store call receives the events describing the change and commits them in
//! the same transaction, so the trail and the token table cannot disagree. Events name tokens by
//! their public id; an unknown presented string is named by a keyed fingerprint. No event ever holds
//! a token string or a secret.
//!
//! ```
//! use token_core::{AuditEvent, AuditKind, Context, TokenId};
//! let event = AuditEvent::new(AuditKind::Revoked, time::OffsetDateTime::UNIX_EPOCH)
//!     .with_token(TokenId::from_bytes([1; 16]), "user:42")
//!     .with_context(&Context::new().actor("admin:7").request_id("req-1"))
//!     .with_reason("leaked in a CI log");
//! assert_eq!(event.kind, AuditKind::Revoked);
//! assert_eq!(event.actor.as_deref(), Some("admin:7"));
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::format::TokenId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A root token was issued.
    Issued,
    /// A child token was derived from a parent.
    Derived,
    /// A token was replaced by a successor (the event names the predecessor; `detail` the successor).
    Rotated,
    /// A token was revoked.
    Revoked,
    /// A token was marked expired by a sweep.
    Expired,
    /// A token record was purged by retention.
    Purged,
    /// A validation was refused (`reason` holds the failure).
    Denied,
    /// A request was refused by policy.
    PolicyViolation,
    /// A token was used (optional, sampled).
    Used,
}

impl AuditKind {
    /// Lower-case name, as stored and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Derived => "derived",
            Self::Rotated => "rotated",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Purged => "purged",
            Self::Denied => "denied",
            Self::PolicyViolation => "policy_violation",
            Self::Used => "used",
        }
    }

    /// Parses [`as_str`](Self::as_str) output.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "issued" => Self::Issued,
            "derived" => Self::Derived,
            "rotated" => Self::Rotated,
            "revoked" => Self::Revoked,
            "expired" => Self::Expired,
            "purged" => Self::Purged,
            "denied" => Self::Denied,
            "policy_violation" => Self::PolicyViolation,
            "used" => Self::Used,
            _ => return None,
        })
    }
}

/// Who is acting and from where, supplied by the host (e.g. from the HTTP request) and copied into
/// audit events. Nothing here is interpreted by the library.
///
/// ```
/// use token_core::Context;
/// let ctx = Context::new().actor("admin:7").client_ip("203.0.113.9").user_agent("curl/8");
/// assert_eq!(ctx.actor.as_deref(), Some("admin:7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Context {
    /// The principal performing the operation (`admin:7`, `service:billing`).
    pub actor: Option<String>,
    /// The client's IP address.
    pub client_ip: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// A request id for correlating with other logs.
    pub request_id: Option<String>,
}

/// Longest context field kept; longer values are truncated so a hostile header cannot bloat the
/// audit trail.
pub const CONTEXT_FIELD_MAX_BYTES: usize = 256;

fn bounded(value: impl Into<String>) -> String {
    let mut value = value.into();
    if value.len() > CONTEXT_FIELD_MAX_BYTES {
        let mut end = CONTEXT_FIELD_MAX_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the actor.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(bounded(actor));
        self
    }

    /// Sets the client IP.
    pub fn client_ip(mut self, ip: impl Into<String>) -> Self {
        self.client_ip = Some(bounded(ip));
        self
    }

    /// Sets the user agent.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(bounded(ua));
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(bounded(id));
        self
    }
}

/// One audit event, as handed to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub kind: AuditKind,
    /// The token concerned, when known.
    pub token_id: Option<TokenId>,
    /// For unknown tokens: a keyed fingerprint of the presented string (never the string).
    pub fingerprint: Option<String>,
    /// The token's subject, when known.
    pub subject: Option<String>,
    /// Who did it.
    pub actor: Option<String>,
    /// Client IP from the caller's [`Context`].
    pub client_ip: Option<String>,
    /// User agent from the caller's [`Context`].
    pub user_agent: Option<String>,
    /// Request id from the caller's [`Context`].
    pub request_id: Option<String>,
    /// Why (revocation reason, denial class, policy violation).
    pub reason: Option<String>,
    /// Extra structured detail (e.g. the successor id of a rotation, the parent of a derivation).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` at `at` with no other fields.
    pub fn new(kind: AuditKind, at: OffsetDateTime) -> Self {
        Self {
            at,
            kind,
            token_id: None,
            fingerprint: None,
            subject: None,
            actor: None,
            client_ip: None,
            user_agent: None,
            request_id: None,
            reason: None,
            detail: None,
        }
    }

    /// Names the token and its subject.
    pub fn with_token(mut self, id: TokenId, subject: impl Into<String>) -> Self {
        self.token_id = Some(id);
        self.subject = Some(subject.into());
        self
    }

    /// Names an unknown presented string by its keyed fingerprint.
    pub fn with_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// Copies actor, client ip, user agent and request id.
    pub fn with_context(mut self, ctx: &Context) -> Self {
        self.actor.clone_from(&ctx.actor);
        self.client_ip.clone_from(&ctx.client_ip);
        self.user_agent.clone_from(&ctx.user_agent);
        self.request_id.clone_from(&ctx.request_id);
        self
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(bounded(reason));
        self
    }

    /// Sets the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A stored audit event with its store-assigned sequence number (strictly increasing per store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in [
            AuditKind::Issued,
            AuditKind::Derived,
            AuditKind::Rotated,
            AuditKind::Revoked,
            AuditKind::Expired,
            AuditKind::Purged,
            AuditKind::Denied,
            AuditKind::PolicyViolation,
            AuditKind::Used,
        ] {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(AuditKind::parse("nope"), None);
    }

    #[test]
    fn context_fields_are_bounded() {
        let ctx = Context::new().user_agent("é".repeat(300));
        assert!(ctx.user_agent.unwrap().len() <= CONTEXT_FIELD_MAX_BYTES);
    }
}

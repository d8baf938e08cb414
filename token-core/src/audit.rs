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
    /// A token was suspended (reversibly; `reason` says why).
    Suspended,
    /// A suspended token was resumed.
    Resumed,
    /// A token was changed in place (`detail`: a JSON object of the changed fields with their
    /// old and new values; a descendant narrowed with its parent names it in `reason`).
    Updated,
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
            Self::Suspended => "suspended",
            Self::Resumed => "resumed",
            Self::Updated => "updated",
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
            "suspended" => Self::Suspended,
            "resumed" => Self::Resumed,
            "updated" => Self::Updated,
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

pub(crate) fn bounded(value: impl Into<String>) -> String {
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

impl AuditEvent {
    /// The deterministic byte encoding that the hash chain covers: a version tag, the sequence
    /// number, the time (Unix microseconds), the kind and every field, each optional field as a
    /// presence byte plus a length-prefixed value. Any edit to a stored event changes it.
    pub fn canonical_bytes(&self, seq: u64) -> Vec<u8> {
        fn text(out: &mut Vec<u8>, value: Option<&str>) {
            match value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u64).to_be_bytes());
                    out.extend_from_slice(v.as_bytes());
                }
            }
        }
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"token-audit/v1\0");
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&crate::clock::to_unix_micros(self.at).to_be_bytes());
        text(&mut out, Some(self.kind.as_str()));
        match self.token_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                out.extend_from_slice(id.as_bytes());
            }
        }
        for field in [
            &self.fingerprint,
            &self.subject,
            &self.actor,
            &self.client_ip,
            &self.user_agent,
            &self.request_id,
            &self.reason,
            &self.detail,
        ] {
            text(&mut out, field.as_deref());
        }
        out
    }

    /// The event a sweep writes when it finds `record` expired, revokes or purges it.
    pub fn by_sweeper(
        kind: AuditKind,
        record: &crate::record::TokenRecord,
        at: OffsetDateTime,
    ) -> Self {
        Self::by_sweeper_row(kind, record.id, &record.subject, at)
    }

    /// [`by_sweeper`](Self::by_sweeper) for a row known only by id and subject (a row whose
    /// other columns fail to decode is still expired or purged, with its event).
    pub fn by_sweeper_row(kind: AuditKind, id: TokenId, subject: &str, at: OffsetDateTime) -> Self {
        AuditEvent::new(kind, at)
            .with_token(id, subject)
            .with_context(&Context::new().actor(SWEEPER_ACTOR))
    }
}

/// The actor named in events written by [`TokenManager::sweep`](crate::TokenManager::sweep).
pub const SWEEPER_ACTOR: &str = "sweeper";

/// A link of the tamper-evident audit chain: `blake3(previous hash ‖ canonical bytes)`.
///
/// ```
/// use token_core::audit::{AuditHash, chain_hash};
/// use token_core::{AuditEvent, AuditKind};
/// let event = AuditEvent::new(AuditKind::Issued, time::OffsetDateTime::UNIX_EPOCH);
/// let first = chain_hash(&AuditHash::GENESIS, 1, &event);
/// assert_ne!(first, chain_hash(&AuditHash::GENESIS, 2, &event)); // the position is covered
/// assert_eq!(first.to_string().parse::<AuditHash>().unwrap(), first);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditHash([u8; 32]);

impl AuditHash {
    /// The hash the first event of a store chains from.
    pub const GENESIS: AuditHash = AuditHash([0; 32]);

    /// From raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From stored bytes; `None` unless exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for AuditHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for AuditHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditHash({self})")
    }
}

impl std::str::FromStr for AuditHash {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ERR: &str = "an audit hash is 64 hexadecimal characters";
        if s.len() != 64 || !s.is_ascii() {
            return Err(ERR);
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| ERR)?;
            *slot = u8::from_str_radix(text, 16).map_err(|_| ERR)?;
        }
        Ok(Self(out))
    }
}

impl Serialize for AuditHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuditHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The hash of event `seq` given the previous link: `blake3(prev ‖ event.canonical_bytes(seq))`.
pub fn chain_hash(prev: &AuditHash, seq: u64, event: &AuditEvent) -> AuditHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev.0);
    hasher.update(&event.canonical_bytes(seq));
    AuditHash(*hasher.finalize().as_bytes())
}

/// A stored audit event: its store-assigned sequence number (strictly increasing per store, gaps
/// allowed), the event, and its chain hash.
///
/// Exported as one JSON object per line with these stable field names: `seq`, `at` (RFC 3339),
/// `kind`, `token_id`, `fingerprint`, `subject`, `actor`, `client_ip`, `user_agent`, `request_id`,
/// `reason`, `detail`, `hash` (64 hex characters) and, for a keyed link, `chain_key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// `chain_hash(previous record's hash, seq, event)`, or, when `chain_key_id` is set, the
    /// keyed link under that audit key ([`AuditKeyring::link`](crate::AuditKeyring::link)).
    pub hash: AuditHash,
    /// The audit key that chained this event; `None` for an unkeyed link (see
    /// [`audit_key`](crate::audit_key)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_key_id: Option<crate::keyring::KeyId>,
}

/// Where the chain resumes after old events were truncated: the last removed event's sequence
/// number, hash and (where the store keeps it) time. Stores write it in the same transaction as
/// the truncation.
///
/// The time is what lets [`verify_audit_chain`](crate::TokenManager::verify_audit_chain) tell
/// retention from deletion: retention only removes events older than the audit retention, so a
/// checkpoint naming a younger event was written by someone else (see
/// [`CheckpointCheck`](crate::trail::CheckpointCheck)).
///
/// ```
/// use token_core::{AuditCheckpoint, AuditHash};
/// let checkpoint = AuditCheckpoint {
///     seq: 41,
///     hash: AuditHash::GENESIS,
///     at: Some(time::macros::datetime!(2030-01-01 0:00 UTC)),
///     mac: None,
/// };
/// assert_eq!(checkpoint.seq, 41);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// Sequence number of the last removed event.
    pub seq: u64,
    /// Its hash: the first remaining event chains from it.
    pub hash: AuditHash,
    /// Its time (`at`); `None` for a checkpoint a SQL store wrote before schema version 3, whose
    /// row kept only the sequence number and hash.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    /// The keyed MAC of `seq`, `hash` and `at`, written by a store with audit keys
    /// ([`seal_checkpoint`](crate::audit_key::seal_checkpoint)); `None` from a store without
    /// them. A verifier with audit keys rejects one that does not verify and flags a missing
    /// one where the trail after it is keyed
    /// ([`CheckpointCheck::Unauthenticated`](crate::trail::CheckpointCheck::Unauthenticated)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<crate::audit_key::CheckpointMac>,
}

/// Filters for audit queries; all set filters must match. Results are in sequence order, after
/// `after_seq` (keyset pagination).
///
/// ```
/// use token_core::{AuditKind, AuditQuery};
/// let query = AuditQuery::new().subject("user:42").kind(AuditKind::Revoked).limit(100);
/// assert_eq!(query.limit, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only this token.
    pub token_id: Option<TokenId>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this kind.
    pub kind: Option<AuditKind>,
    /// Only events at or after this instant.
    pub from: Option<OffsetDateTime>,
    /// Only events before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only events with a greater sequence number.
    pub after_seq: Option<u64>,
    /// At most this many (1 to 1000; default 100).
    pub limit: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            token_id: None,
            subject: None,
            actor: None,
            kind: None,
            from: None,
            until: None,
            after_seq: None,
            limit: 100,
        }
    }
}

impl AuditQuery {
    /// Every event, 100 per page.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only `id`'s events.
    pub fn token(mut self, id: TokenId) -> Self {
        self.token_id = Some(id);
        self
    }
    /// Only `subject`'s events.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    /// Only events by `actor`.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    /// Only events of `kind`.
    pub fn kind(mut self, kind: AuditKind) -> Self {
        self.kind = Some(kind);
        self
    }
    /// Only events in `[from, until)`.
    pub fn between(mut self, from: OffsetDateTime, until: OffsetDateTime) -> Self {
        self.from = Some(from);
        self.until = Some(until);
        self
    }
    /// Only events after sequence number `seq` (the next page).
    pub fn after(mut self, seq: u64) -> Self {
        self.after_seq = Some(seq);
        self
    }
    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Whether `record` matches (reference semantics for stores).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let e = &record.event;
        self.after_seq.is_none_or(|s| record.seq > s)
            && self.token_id.is_none_or(|id| e.token_id == Some(id))
            && self
                .subject
                .as_ref()
                .is_none_or(|s| e.subject.as_ref() == Some(s))
            && self
                .actor
                .as_ref()
                .is_none_or(|a| e.actor.as_ref() == Some(a))
            && self.kind.is_none_or(|k| e.kind == k)
            && self.from.is_none_or(|f| e.at >= f)
            && self.until.is_none_or(|u| e.at < u)
    }
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
    fn every_field_is_covered_by_the_canonical_encoding() {
        let base = AuditEvent::new(AuditKind::Revoked, OffsetDateTime::UNIX_EPOCH)
            .with_token(TokenId::from_bytes([1; 16]), "s")
            .with_context(
                &Context::new()
                    .actor("a")
                    .client_ip("i")
                    .user_agent("u")
                    .request_id("r"),
            )
            .with_reason("why")
            .with_detail("d");
        let h = chain_hash(&AuditHash::GENESIS, 7, &base);
        let mut variants = Vec::new();
        let mut e = base.clone();
        e.at += time::Duration::microseconds(1);
        variants.push(e);
        let mut e = base.clone();
        e.kind = AuditKind::Issued;
        variants.push(e);
        let mut e = base.clone();
        e.token_id = None;
        variants.push(e);
        let mut e = base.clone();
        e.fingerprint = Some(String::new());
        variants.push(e);
        for field in 0..7 {
            let mut e = base.clone();
            let slot = match field {
                0 => &mut e.subject,
                1 => &mut e.actor,
                2 => &mut e.client_ip,
                3 => &mut e.user_agent,
                4 => &mut e.request_id,
                5 => &mut e.reason,
                _ => &mut e.detail,
            };
            *slot = None;
            variants.push(e);
        }
        for v in &variants {
            assert_ne!(chain_hash(&AuditHash::GENESIS, 7, v), h, "{v:?}");
        }
        // Moving a value between adjacent fields changes the encoding too.
        let mut a = base.clone();
        a.reason = Some("ab".into());
        a.detail = Some(String::new());
        let mut b = base.clone();
        b.reason = Some("a".into());
        b.detail = Some("b".into());
        assert_ne!(a.canonical_bytes(1), b.canonical_bytes(1));
        assert_ne!(chain_hash(&AuditHash::from_bytes([1; 32]), 7, &base), h);
    }

    #[test]
    fn audit_record_json_has_stable_field_names() {
        let record = AuditRecord {
            seq: 3,
            event: AuditEvent::new(AuditKind::Issued, OffsetDateTime::UNIX_EPOCH)
                .with_token(TokenId::from_bytes([0; 16]), "s"),
            hash: AuditHash::GENESIS,
            chain_key_id: None,
        };
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "seq",
            "at",
            "kind",
            "token_id",
            "fingerprint",
            "subject",
            "actor",
            "client_ip",
            "user_agent",
            "request_id",
            "reason",
            "detail",
            "hash",
        ] {
            assert!(keys.contains(&key), "missing {key}");
        }
        assert_eq!(json["at"], "1970-01-01T00:00:00Z");
        assert_eq!(json["kind"], "issued");
        let back: AuditRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn context_fields_are_bounded() {
        let ctx = Context::new().user_agent("é".repeat(300));
        assert!(ctx.user_agent.unwrap().len() <= CONTEXT_FIELD_MAX_BYTES);
    }
}

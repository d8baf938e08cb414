//! Tracing spans of the manager's operations: `token.validate` (DEBUG) and the lifecycle changes
//! `token.issue`, `token.derive`, `token.rotate`, `token.revoke` and `token.sweep` (INFO). Their
//! fields are the token id (public), the subject, the outcome (`ok` or `refused`) and a reason
//! code; never a secret, a token string or a hash. With no subscriber listening a span costs a
//! check of a static flag and allocates nothing.
//!
//! | span | level | fields |
//! |---|---|---|
//! | `token.validate` | DEBUG | `token.id`, `subject` (when valid), `outcome`, `reason` ([`ValidationError::reason_code`]) |
//! | `token.issue`, `token.derive`, `token.rotate` | INFO | `subject`, `token.id` (the new token), `parent` or `predecessor` when there is one, `outcome`, `reason` ([`HttpAnswer::code`](crate::HttpAnswer::code)) |
//! | `token.revoke` | INFO | `selector` (its kind), `revoked` (how many), `outcome`, `reason` |
//! | `token.sweep` | INFO | `expired`, `unused_revoked`, `purged`, `audit_truncated`, `failed_steps`, `outcome` |

use tracing::Span;
use tracing::field::{Empty, display};

use crate::error::{Error, ValidationError};
use crate::format::{TokenId, parse_token};
use crate::manager::{IssuedToken, ValidatedToken};
use crate::retention::SweepReport;
use crate::store::RevokeSelector;

pub(super) fn validate() -> Span {
    tracing::debug_span!(
        "token.validate",
        token.id = Empty,
        subject = Empty,
        outcome = Empty,
        reason = Empty
    )
}

/// Records a validation's outcome on its span (`token` only for the id of a well-formed one).
pub(super) fn validated(
    span: &Span,
    token: &str,
    result: &Result<ValidatedToken, ValidationError>,
) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(valid) => {
            span.record("token.id", display(valid.id()));
            span.record("subject", valid.subject());
            span.record("outcome", "ok");
        }
        Err(error) => {
            if let Ok(parsed) = parse_token(token) {
                span.record("token.id", display(parsed.id()));
            }
            span.record("outcome", "refused");
            span.record("reason", error.reason_code());
        }
    }
}

pub(super) fn issue(subject: &str) -> Span {
    tracing::info_span!(
        "token.issue",
        subject,
        token.id = Empty,
        outcome = Empty,
        reason = Empty
    )
}

pub(super) fn derive(parent: TokenId) -> Span {
    tracing::info_span!(
        "token.derive",
        parent = %parent,
        subject = Empty,
        token.id = Empty,
        outcome = Empty,
        reason = Empty
    )
}

pub(super) fn rotate(predecessor: TokenId) -> Span {
    tracing::info_span!(
        "token.rotate",
        predecessor = %predecessor,
        subject = Empty,
        token.id = Empty,
        outcome = Empty,
        reason = Empty
    )
}

/// Records an issue's, derive's or rotation's outcome on its span (the subject too, for a
/// derive or rotation, whose span could not name it up front).
pub(super) fn issued(span: &Span, result: &Result<IssuedToken, Error>, subject_known: bool) {
    match result {
        Ok(issued) => {
            span.record("token.id", display(issued.record.id));
            if !subject_known {
                span.record("subject", issued.record.subject.as_str());
            }
            span.record("outcome", "ok");
        }
        Err(error) => refused(span, error),
    }
}

pub(super) fn revoke(selector: &RevokeSelector) -> Span {
    let kind = match selector {
        RevokeSelector::Token(_) => "token",
        RevokeSelector::Subject(_) => "subject",
        RevokeSelector::Family(_) => "family",
        RevokeSelector::Label { .. } => "label",
        RevokeSelector::IssuedBefore(_) => "issued_before",
        RevokeSelector::UnusedSince(_) => "unused_since",
    };
    tracing::info_span!(
        "token.revoke",
        selector = kind,
        revoked = Empty,
        outcome = Empty,
        reason = Empty
    )
}

/// Records a revocation's outcome on its span.
pub(super) fn revoked(span: &Span, result: &Result<Vec<TokenId>, Error>) {
    match result {
        Ok(ids) => {
            span.record("revoked", ids.len());
            span.record("outcome", "ok");
        }
        Err(error) => refused(span, error),
    }
}

pub(super) fn sweep() -> Span {
    tracing::info_span!(
        "token.sweep",
        expired = Empty,
        unused_revoked = Empty,
        purged = Empty,
        audit_truncated = Empty,
        failed_steps = Empty,
        outcome = Empty
    )
}

/// Records a sweep's report on its span.
pub(super) fn swept(span: &Span, report: &SweepReport) {
    span.record("expired", report.expired);
    span.record("unused_revoked", report.unused_revoked);
    span.record("purged", report.purged);
    span.record("audit_truncated", report.audit_truncated);
    span.record("failed_steps", report.failures.len());
    span.record(
        "outcome",
        if report.failures.is_empty() {
            "ok"
        } else {
            "incomplete"
        },
    );
}

fn refused(span: &Span, error: &Error) {
    span.record("outcome", "refused");
    span.record("reason", error.http().code);
}

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
//! | `token.manage` | INFO | `operation` (`suspend`, `resume`, `update`), `target` (the token id or the selector's kind), `changed` (how many tokens), `outcome`, `reason` |
//! | `token.sweep` | INFO | `expired`, `unused_revoked`, `purged`, `audit_truncated`, `failed_steps`, `outcome` |
//!
//! The same outcomes are counted through the [`metrics`](https://docs.rs/metrics) facade (install
//! any recorder, e.g. `metrics-exporter-prometheus`; without one a count costs a check of a
//! global and allocates nothing):
//!
//! | counter | labels | counts |
//! |---|---|---|
//! | `token_validations_total` | `outcome` (`ok`, `refused`) | validations |
//! | `token_validation_duration_seconds` (histogram) | | time from the call to the answer |
//! | `token_validation_refusals_total` | `reason` ([`ValidationError::reason_code`]) | refused validations |
//! | `token_operations_total` | `operation` (`issue`, `derive`, `rotate`, `revoke`, `suspend`, `resume`, `update`, `sweep`), `outcome` (`ok`, `refused`, `incomplete`) | lifecycle calls |
//! | `token_revoked_total` | | tokens revoked (a cascade counts each) |
//! | `token_swept_total` | `step` (`expired`, `unused_revoked`, `purged`, `proof_claims_purged`, `audit_truncated`) | records a sweep changed |
//! | `token_usage_flush_failures_total` | | usage batches the store did not take (kept for the next flush) |
//! | `token_usage_updates_refused_total` | | usage updates refused for an invalid row (dropped) |
//! | `token_denied_events_total` | `fate` (`coalesced`, `queue_full`, `dropped`) | `Denied` events not written |
//! | `token_usage_flush_batches_total` | | usage batches written |
//! | `token_cache_lookups_total` | `result` (`hit`, `negative_hit`, `miss`) | validation-cache lookups |
//! | `token_cache_invalidations_total` | | cache entries dropped by a change or the feed |
//! | `token_cache_flushes_total` | | whole-cache flushes (feed interrupted, unknown outcome) |

use std::time::Instant;

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
    result: Result<&ValidatedToken, &ValidationError>,
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

/// Counts a validation (whether or not a span records it) and records its duration since
/// `started`.
pub(super) fn counted(result: Result<&ValidatedToken, &ValidationError>, started: Instant) {
    metrics::histogram!("token_validation_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(_) => metrics::counter!("token_validations_total", "outcome" => "ok").increment(1),
        Err(error) => {
            metrics::counter!("token_validations_total", "outcome" => "refused").increment(1);
            metrics::counter!("token_validation_refusals_total", "reason" => error.reason_code())
                .increment(1);
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
/// derive or rotation, whose span could not name it up front) and counts it.
pub(super) fn issued(
    span: &Span,
    operation: &'static str,
    result: &Result<IssuedToken, Error>,
    subject_known: bool,
) {
    operation_done(operation, if result.is_ok() { "ok" } else { "refused" });
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

/// The kind of `selector`, as spans name it.
pub(super) fn selector_kind(selector: &RevokeSelector) -> &'static str {
    match selector {
        RevokeSelector::Token(_) => "token",
        RevokeSelector::Subject(_) => "subject",
        RevokeSelector::Family(_) => "family",
        RevokeSelector::Label { .. } => "label",
        RevokeSelector::IssuedBefore(_) => "issued_before",
        RevokeSelector::UnusedSince(_) => "unused_since",
    }
}

pub(super) fn revoke(selector: &RevokeSelector) -> Span {
    let kind = selector_kind(selector);
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
    operation_done("revoke", if result.is_ok() { "ok" } else { "refused" });
    match result {
        Ok(ids) => {
            metrics::counter!("token_revoked_total").increment(ids.len() as u64);
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
    let outcome = if report.failures.is_empty() {
        "ok"
    } else {
        "incomplete"
    };
    operation_done("sweep", outcome);
    metrics::counter!("token_swept_total", "step" => "expired").increment(report.expired as u64);
    metrics::counter!("token_swept_total", "step" => "unused_revoked")
        .increment(report.unused_revoked as u64);
    metrics::counter!("token_swept_total", "step" => "purged").increment(report.purged as u64);
    metrics::counter!("token_swept_total", "step" => "proof_claims_purged")
        .increment(report.proof_claims_purged);
    metrics::counter!("token_swept_total", "step" => "audit_truncated")
        .increment(report.audit_truncated);
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

/// A span for `suspend`, `resume` or `update` (INFO): the operation, the selector's kind or the
/// token id, how many tokens changed, the outcome and the reason code.
pub(super) fn manage(operation: &'static str, target: &str) -> Span {
    tracing::info_span!(
        "token.manage",
        operation,
        target,
        changed = Empty,
        outcome = Empty,
        reason = Empty
    )
}

/// Records and counts the outcome of a `manage` span's operation.
pub(super) fn managed<T>(
    span: &Span,
    operation: &'static str,
    result: &Result<T, Error>,
    changed: impl FnOnce(&T) -> usize,
) {
    match result {
        Ok(value) => {
            operation_done(operation, "ok");
            span.record("changed", changed(value));
            span.record("outcome", "ok");
        }
        Err(error) => {
            operation_done(operation, "refused");
            span.record("outcome", "refused");
            span.record("reason", error.http().code);
        }
    }
}

fn operation_done(operation: &'static str, outcome: &'static str) {
    metrics::counter!("token_operations_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
}

/// Counts a usage batch the store did not take.
pub(super) fn usage_flush_failed() {
    metrics::counter!("token_usage_flush_failures_total").increment(1);
}

/// Counts usage updates refused for invalid rows.
pub(super) fn usage_refused(count: usize) {
    metrics::counter!("token_usage_updates_refused_total").increment(count as u64);
}

/// Counts a `Denied` event not written (`coalesced` or `dropped`).
pub(super) fn denied_not_written(fate: &'static str) {
    metrics::counter!("token_denied_events_total", "fate" => fate).increment(1);
}

fn refused(span: &Span, error: &Error) {
    span.record("outcome", "refused");
    span.record("reason", error.http().code);
}

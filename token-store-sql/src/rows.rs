//! Events for rows that fail to decode: a sweep, a revocation or a suspension must not stall on
//! a corrupt row, so it names the row by what can still be read (its id and subject).

use time::OffsetDateTime;
use token_core::{
    AuditEvent, AuditKind, RevokeRequest, StoreError, SuspendRequest, Suspension, TokenId,
    TokenRecord,
};

use crate::columns::Columns;
use crate::values::{hex, id_from_bytes};

/// A row of `tokens` as a store selects it: its columns, and the store's complete decoding of
/// it (usually [`decode_token`](crate::decode_token) with the store's own way of reading labels).
///
/// ```
/// use token_core::{Labels, StoreError, TokenRecord};
/// use token_store_sql::{Columns, TokenRow, decode_token, row_id, row_subject};
///
/// struct Row; // a driver's row, or a newtype around it
/// impl Columns for Row {
///     fn bytes(&self, c: &str) -> Result<Option<Vec<u8>>, String> {
///         Ok((c == "id").then(|| vec![7; 16]))
///     }
///     fn int(&self, _: &str) -> Result<Option<i64>, String> { Ok(None) }
///     fn text(&self, c: &str) -> Result<Option<String>, String> {
///         Ok((c == "subject").then(|| "alice".to_owned()))
///     }
/// }
/// impl TokenRow for Row {
///     fn record(&self) -> Result<TokenRecord, StoreError> {
///         decode_token(self, "example", |_| Ok(Labels::new()))
///     }
/// }
/// // The hash is missing, so the row does not decode; it can still be named.
/// assert!(Row.record().is_err());
/// assert_eq!(row_id(&Row).map(|id| id.as_bytes()[0]), Some(7));
/// assert_eq!(row_subject(&Row), "alice");
/// ```
pub trait TokenRow: Columns {
    /// The record this row holds, every column checked.
    fn record(&self) -> Result<TokenRecord, StoreError>;
}

/// The id of a row, if its `id` column holds 16 bytes (used to name rows that fail to decode).
pub fn row_id<C: Columns + ?Sized>(row: &C) -> Option<TokenId> {
    row.bytes("id")
        .ok()
        .flatten()
        .and_then(|raw| id_from_bytes(&raw))
}

/// The subject of a row that cannot be decoded (empty if even that is unreadable).
pub fn row_subject<C: Columns + ?Sized>(row: &C) -> String {
    row.text("subject").ok().flatten().unwrap_or_default()
}

/// The sweep event for `row` ([`AuditKind::Expired`], [`AuditKind::Purged`], ...):
/// [`AuditEvent::by_sweeper`] of the decoded record, else [`AuditEvent::by_sweeper_row`] from its
/// id and subject; `None` when even the id is unreadable (the row cannot be named).
pub fn sweeper_event<R: TokenRow + ?Sized>(
    kind: AuditKind,
    row: &R,
    at: OffsetDateTime,
) -> Option<AuditEvent> {
    match row.record() {
        Ok(record) => Some(AuditEvent::by_sweeper(kind, &record, at)),
        Err(_) => row_id(row).map(|id| AuditEvent::by_sweeper_row(kind, id, &row_subject(row), at)),
    }
}

/// The `Revoked` event for `row`: [`RevokeRequest::event_for`] of the decoded record, or, when
/// the row is corrupt, [`RevokeRequest::event_for_row`] from its id and subject (revocation must
/// reach corrupt rows); `None` when even the id is unreadable (see [`unnamed_revoke_event`]).
pub fn revoke_event<R: TokenRow + ?Sized>(request: &RevokeRequest, row: &R) -> Option<AuditEvent> {
    match row.record() {
        Ok(record) => Some(request.event_for(&record)),
        Err(_) => row_id(row).map(|id| request.event_for_row(id, &row_subject(row))),
    }
}

/// Whether a suspension or resumption changes `row`, and its event: for a row that decodes,
/// [`SuspendRequest::applies_to`]; a row that does not decode is still suspended (refusing a
/// token that cannot be read is safe, and a bad row must not block an incident), by its id
/// when that reads, but never resumed (nothing unreadable is let through). `None`: leave it.
pub fn suspend_event<R: TokenRow + ?Sized>(
    request: &SuspendRequest,
    row: &R,
) -> Option<AuditEvent> {
    match row.record() {
        Ok(record) => request
            .applies_to(&record)
            .then(|| request.event_for(&record)),
        Err(_) if request.action == Suspension::Suspend => {
            let mut event = request.event_for_row(
                row_id(row).unwrap_or(TokenId::from_bytes([0; 16])),
                &row_subject(row),
            );
            if row_id(row).is_none() {
                event.token_id = None;
            }
            Some(event.with_detail("corrupt token row, suspended by its raw id"))
        }
        Err(_) => None,
    }
}

/// The `Revoked` event for a row whose id is not a token id (not 16 bytes): it names no token
/// and carries the raw id bytes, in hex, in `detail`.
pub fn unnamed_revoke_event<C: Columns + ?Sized>(request: &RevokeRequest, row: &C) -> AuditEvent {
    let raw = row.bytes("id").ok().flatten().unwrap_or_default();
    let mut event = request
        .event_for_row(TokenId::from_bytes([0; 16]), &row_subject(row))
        .with_detail(format!("corrupt token row, id bytes x'{}'", hex(&raw)));
    event.token_id = None;
    event
}

#[cfg(test)]
mod tests {
    use token_core::{AuditKind, Context, RevokeRequest, RevokeSelector, TokenId};

    use super::*;
    use crate::Param;
    use crate::testing::{MapRow, at, full_record};

    fn request() -> RevokeRequest {
        RevokeRequest::new(
            RevokeSelector::Subject("alice".into()),
            at(9),
            "leaked",
            Context::new().actor("admin"),
        )
    }

    /// A row whose scopes do not parse: it cannot be decoded, but has its id and subject.
    fn corrupt() -> MapRow {
        MapRow::of(&full_record()).set("scopes", Param::Text("NOT A SCOPE".into()))
    }

    #[test]
    fn decodable_rows_get_the_record_events() {
        let record = full_record();
        let row = MapRow::of(&record);
        assert_eq!(
            sweeper_event(AuditKind::Expired, &row, at(9)),
            Some(AuditEvent::by_sweeper(AuditKind::Expired, &record, at(9)))
        );
        assert_eq!(
            revoke_event(&request(), &row),
            Some(request().event_for(&record))
        );
    }

    #[test]
    fn corrupt_rows_are_named_by_id_and_subject() {
        let row = corrupt();
        assert!(row.record().is_err());
        let id = TokenId::from_bytes([1; 16]);
        assert_eq!(row_id(&row), Some(id));
        assert_eq!(row_subject(&row), "alice");
        assert_eq!(
            sweeper_event(AuditKind::Purged, &row, at(9)),
            Some(AuditEvent::by_sweeper_row(
                AuditKind::Purged,
                id,
                "alice",
                at(9)
            ))
        );
        assert_eq!(
            revoke_event(&request(), &row),
            Some(request().event_for_row(id, "alice"))
        );
    }

    #[test]
    fn rows_without_a_token_id_cannot_be_named() {
        let row = corrupt()
            .set("id", Param::Bytes(vec![0xab, 0x01]))
            .set("subject", Param::Int(5));
        assert_eq!(row_id(&row), None);
        assert_eq!(row_subject(&row), "");
        assert_eq!(sweeper_event(AuditKind::Expired, &row, at(9)), None);
        assert_eq!(revoke_event(&request(), &row), None);
        let event = unnamed_revoke_event(&request(), &row);
        assert_eq!(event.token_id, None);
        assert_eq!(event.kind, AuditKind::Revoked);
        assert_eq!(event.reason.as_deref(), Some("leaked"));
        assert_eq!(
            event.detail.as_deref(),
            Some("corrupt token row, id bytes x'ab01'")
        );
    }
}

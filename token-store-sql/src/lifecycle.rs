//! The checks a store makes inside an insert's or a rotation's transaction, on the records it
//! read (and locked) there.

use time::OffsetDateTime;
use token_core::clock::from_unix_micros;
use token_core::{
    InsertOutcome, InsertToken, RotateOutcome, RotateToken, StoreError, TokenRecord, TokenState,
};

/// The store's revocation cut-off if a record created at `created_at` falls before it
/// ([`InsertToken::before_cutoff`]). `cutoff_micros` is `revocation_cutoff.issued_before` as read
/// inside the insert's or rotation's transaction (under the lock a
/// [`RevokeSelector::IssuedBefore`](token_core::RevokeSelector::IssuedBefore) revocation also
/// takes); the revocation stores its instant rounded up to a microsecond, as its selector
/// compares. An unreadable value is [`StoreError::Corrupt`]: the record is refused, not let
/// through.
pub fn cutoff_refusal(
    store: &'static str,
    created_at: OffsetDateTime,
    cutoff_micros: Option<i64>,
) -> Result<Option<OffsetDateTime>, StoreError> {
    let cutoff = cutoff_micros
        .map(|micros| {
            from_unix_micros(micros).ok_or_else(|| StoreError::Corrupt {
                store,
                message: format!(
                    "revocation_cutoff.issued_before: timestamp {micros} µs is out of range"
                ),
            })
        })
        .transpose()?;
    Ok(InsertToken::before_cutoff(created_at, cutoff))
}

/// Why `insert`, a derived token, may not be inserted under `parent` (the parent as read inside
/// the insert's transaction, under the lock a revocation of it also takes; `None`: not found):
/// the parent is not active, it was rotated (a token in its grace window gets no new children,
/// which would hang out of its successor's reach), the child would outlive it, or it would grant
/// more uses than the parent has left. `None`: it may.
pub fn parent_refusal(insert: &InsertToken, parent: Option<&TokenRecord>) -> Option<InsertOutcome> {
    let state = parent.map(|p| p.state_at(insert.now));
    if state != Some(TokenState::Active) {
        return Some(InsertOutcome::ParentNotActive { state });
    }
    let parent = parent?;
    if let Some(successor) = parent.rotated_to {
        return Some(InsertOutcome::ParentRotated { successor });
    }
    if let Some(field) = InsertToken::child_widens(parent, &insert.record) {
        return Some(InsertOutcome::WiderThanParent { field });
    }
    if let Some(parent_expires_at) = InsertToken::child_outlives(parent, &insert.record) {
        return Some(InsertOutcome::OutlivesParent { parent_expires_at });
    }
    if let Some(remaining) = InsertToken::child_exceeds_uses(parent, &insert.record, insert.now) {
        return Some(InsertOutcome::UsesExceedParent { remaining });
    }
    None
}

/// The successor `rotation` inserts, given its predecessor as read (and locked) inside the
/// rotation's transaction: the requested successor, under the predecessor's parent as read there
/// (a concurrent rotation of the parent may have moved it), whose `max_uses` becomes the
/// predecessor's uses left when it has a limit (no use is granted twice). `Err`: the outcome refusing the
/// rotation (not found, already rotated, not active).
pub fn rotation_successor(
    rotation: &RotateToken,
    predecessor: Option<&TokenRecord>,
) -> Result<TokenRecord, RotateOutcome> {
    let Some(old) = predecessor else {
        return Err(RotateOutcome::NotFound);
    };
    if let Some(successor) = old.rotated_to {
        return Err(RotateOutcome::AlreadyRotated(successor));
    }
    let state = old.state_at(rotation.now);
    if state != TokenState::Active {
        return Err(RotateOutcome::NotActive(state));
    }
    // The parent and the grants as of this transaction (RotateToken::successor_for).
    Ok(rotation.successor_for(old))
}

#[cfg(test)]
mod tests {
    use token_core::{TokenId, TokenState};

    use super::*;
    use crate::testing::{at, full_record, revoked};

    fn child(expires: i64, max_uses: Option<u64>) -> InsertToken {
        let mut record = full_record();
        record.id = TokenId::from_bytes([8; 16]);
        record.expires_at = Some(at(expires));
        record.max_uses = max_uses;
        InsertToken::new(record, None, at(10), Vec::new())
    }

    #[test]
    fn parent_refusals_in_order() {
        let parent = full_record(); // active until 1000 s, 8 of 10 uses left
        assert_eq!(parent.state_at(at(10)), TokenState::Active);
        assert_eq!(parent_refusal(&child(500, Some(8)), Some(&parent)), None);
        assert_eq!(
            parent_refusal(&child(500, Some(8)), None),
            Some(InsertOutcome::ParentNotActive { state: None })
        );
        assert_eq!(
            parent_refusal(&child(500, Some(8)), Some(&revoked(parent.clone()))),
            Some(InsertOutcome::ParentNotActive {
                state: Some(TokenState::Revoked)
            })
        );
        assert_eq!(
            parent_refusal(&child(2000, Some(20)), Some(&parent)),
            Some(InsertOutcome::OutlivesParent {
                parent_expires_at: at(1000)
            })
        );
        assert_eq!(
            parent_refusal(&child(500, Some(9)), Some(&parent)),
            Some(InsertOutcome::UsesExceedParent { remaining: 8 })
        );
        assert_eq!(
            parent_refusal(&child(500, None), Some(&parent)),
            Some(InsertOutcome::UsesExceedParent { remaining: 8 })
        );
    }

    #[test]
    fn a_rotated_parent_gets_no_children() {
        let mut parent = full_record();
        parent.rotated_to = Some(TokenId::from_bytes([9; 16]));
        assert_eq!(
            parent_refusal(&child(500, Some(8)), Some(&parent)),
            Some(InsertOutcome::ParentRotated {
                successor: TokenId::from_bytes([9; 16])
            })
        );
    }

    #[test]
    fn records_created_before_the_cutoff_are_refused() {
        let cutoff = 20_000_000; // 20 s
        let refusal = |created: i64, cutoff: Option<i64>| {
            cutoff_refusal("t", at(created), cutoff).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(refusal(19, Some(cutoff)), Some(at(20)));
        assert_eq!(refusal(20, Some(cutoff)), None);
        assert_eq!(refusal(19, None), None);
        assert!(matches!(
            cutoff_refusal("t", at(19), Some(i64::MAX)),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn rotation_successor_gets_the_uses_left() {
        let old = full_record(); // 2 of 10 uses taken
        let mut successor = full_record();
        successor.id = TokenId::from_bytes([8; 16]);
        successor.max_uses = Some(10);
        let rotation = RotateToken::new(old.id, at(20), successor.clone(), at(10), Vec::new());
        let new = rotation_successor(&rotation, Some(&old)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(new.max_uses, Some(8));
        assert_eq!(new.id, successor.id);

        let mut unlimited = old.clone();
        unlimited.max_uses = None;
        let new = rotation_successor(&rotation, Some(&unlimited));
        assert_eq!(new.map(|s| s.max_uses), Ok(Some(10)));

        assert_eq!(
            rotation_successor(&rotation, None),
            Err(RotateOutcome::NotFound)
        );
        let mut rotated = old.clone();
        rotated.rotated_to = Some(successor.id);
        assert_eq!(
            rotation_successor(&rotation, Some(&rotated)),
            Err(RotateOutcome::AlreadyRotated(successor.id))
        );
        assert_eq!(
            rotation_successor(&rotation, Some(&revoked(old))),
            Err(RotateOutcome::NotActive(TokenState::Revoked))
        );
    }
}

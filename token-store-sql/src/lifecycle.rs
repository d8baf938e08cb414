//! The checks a store makes inside an insert's or a rotation's transaction, on the records it
//! read (and locked) there.

use token_core::{InsertOutcome, InsertToken, RotateOutcome, RotateToken, TokenRecord, TokenState};

/// Why `insert`, a derived token, may not be inserted under `parent` (the parent as read inside
/// the insert's transaction, under the lock a revocation of it also takes; `None`: not found):
/// the parent is not active, the child would outlive it, or it would grant more uses than the
/// parent has left. `None`: it may.
pub fn parent_refusal(insert: &InsertToken, parent: Option<&TokenRecord>) -> Option<InsertOutcome> {
    let state = parent.map(|p| p.state_at(insert.now));
    if state != Some(TokenState::Active) {
        return Some(InsertOutcome::ParentNotActive { state });
    }
    let parent = parent?;
    if let Some(parent_expires_at) = InsertToken::child_outlives(parent, &insert.record) {
        return Some(InsertOutcome::OutlivesParent { parent_expires_at });
    }
    if let Some(remaining) = InsertToken::child_exceeds_uses(parent, &insert.record) {
        return Some(InsertOutcome::UsesExceedParent { remaining });
    }
    None
}

/// The successor `rotation` inserts, given its predecessor as read (and locked) inside the
/// rotation's transaction: the requested successor, whose `max_uses` becomes the predecessor's
/// uses left when it has a limit (no use is granted twice). `Err`: the outcome refusing the
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
    let mut successor = rotation.successor.clone();
    if let Some(max) = old.max_uses {
        successor.max_uses = Some(max.saturating_sub(old.use_count));
    }
    Ok(successor)
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

//! The revocation feed: an in-process broadcast of the ids each committed revocation revoked
//! (and of each rotated predecessor, whose life the rotation shortened), to every subscriber of
//! the store and its clones. Other processes sharing the file are not notified.

use futures_util::stream;
use token_core::{RevocationNotice, RevocationStream, TokenId};
use tokio::sync::broadcast;

use crate::SqliteStore;

/// Revocation batches buffered per subscriber before it is told it lagged (and must flush).
const FEED_CAPACITY: usize = 1024;

/// The sending side, shared by a store and its clones.
pub(crate) type Sender = broadcast::Sender<RevocationNotice>;

/// A feed nobody listens to yet.
pub(crate) fn channel() -> Sender {
    broadcast::channel(FEED_CAPACITY).0
}

/// Announces `revoked` (after its commit). No subscribers is not an error.
pub(crate) fn announce(store: &SqliteStore, revoked: Vec<TokenId>) {
    if !revoked.is_empty() {
        let _ = store
            .inner
            .revocations
            .send(RevocationNotice::Revoked(revoked));
    }
}

/// Announces that `changed` were suspended, resumed or narrowed (after the commit).
pub(crate) fn announce_changed(store: &SqliteStore, changed: Vec<TokenId>) {
    if !changed.is_empty() {
        let _ = store
            .inner
            .revocations
            .send(RevocationNotice::Changed(changed));
    }
}

/// Announces that a rotation shortened `predecessor`'s life (after its commit).
pub(crate) fn announce_rotation(store: &SqliteStore, predecessor: TokenId) {
    let _ = store
        .inner
        .revocations
        .send(RevocationNotice::Changed(vec![predecessor]));
}

/// [`TokenStore::subscribe_revocations`](token_core::TokenStore::subscribe_revocations): a
/// subscriber that lagged behind by more than [`FEED_CAPACITY`] batches is told it was
/// interrupted.
pub(crate) fn subscribe(store: &SqliteStore) -> RevocationStream {
    let receiver = store.inner.revocations.subscribe();
    let feed = stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(notice) => Some((notice, receiver)),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Some((RevocationNotice::Interrupted, receiver))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Box::pin(feed)
}

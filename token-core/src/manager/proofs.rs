//! Claiming proof-of-possession identifiers: once across every instance sharing the store, with
//! an in-process front cache so a replay within one instance costs no store round trip.

use quick_cache::sync::Cache;
use time::OffsetDateTime;

use super::TokenManager;
use crate::binding::ProofOfPossession;
use crate::clock::to_unix_micros;
use crate::error::ValidationError;
use crate::store::{ClaimOutcome, ProofClaim};

/// Claims this process has seen (claimed or found replayed), by claim key, with their expiry in
/// Unix microseconds. Bounded: an evicted claim is still in the store, which answers the replay.
pub(super) struct SeenProofs(Cache<[u8; 32], i64>);

/// Most claims the front cache keeps.
const SEEN_PROOFS: usize = 65_536;

impl SeenProofs {
    pub(super) fn new() -> Self {
        Self(Cache::new(SEEN_PROOFS))
    }
}

impl TokenManager {
    /// Claims `proof`'s identifier: refused as [`ValidationError::ProofReplayed`] when this
    /// process saw it before (no store call) or the store holds an earlier claim.
    pub(super) async fn claim_proof(
        &self,
        proof: &ProofOfPossession,
        now: OffsetDateTime,
    ) -> Result<(), ValidationError> {
        let key = proof.claim_key();
        let seen = &self.inner.seen_proofs.0;
        if seen
            .get(&key)
            .is_some_and(|until| until >= to_unix_micros(now))
        {
            return Err(ValidationError::ProofReplayed);
        }
        let until = proof.replayable_until().max(now);
        let outcome = self
            .inner
            .store
            .claim_proof(&ProofClaim::new(key, until, now))
            .await?;
        seen.insert(key, to_unix_micros(until));
        match outcome {
            ClaimOutcome::Claimed => Ok(()),
            ClaimOutcome::Replayed => Err(ValidationError::ProofReplayed),
        }
    }
}

//! Proof-of-possession claims: one `INSERT` that conflicts on the claim key, under the write
//! lock every instance sharing the file takes.

use time::OffsetDateTime;
use token_core::{ClaimOutcome, ProofClaim, StoreError};
use token_store_sql::micros;

use crate::SqliteStore;
use crate::error::backend;

const CLAIM: &str =
    "INSERT INTO dpop_proofs (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING";
const PURGE: &str = "DELETE FROM dpop_proofs WHERE key IN \
    (SELECT key FROM dpop_proofs WHERE expires_at < ? ORDER BY expires_at LIMIT ?)";

/// [`TokenStore::claim_proof`](token_core::TokenStore::claim_proof).
pub(crate) async fn claim_proof(
    store: &SqliteStore,
    claim: &ProofClaim,
) -> Result<ClaimOutcome, StoreError> {
    let done = sqlx::query(CLAIM)
        .bind(claim.key.to_vec())
        .bind(micros(claim.expires_at))
        .execute(store.pool())
        .await
        .map_err(backend)?;
    Ok(if done.rows_affected() == 1 {
        ClaimOutcome::Claimed
    } else {
        ClaimOutcome::Replayed
    })
}

/// [`TokenStore::purge_proof_claims`](token_core::TokenStore::purge_proof_claims).
pub(crate) async fn purge_proof_claims(
    store: &SqliteStore,
    before: OffsetDateTime,
    limit: u32,
) -> Result<u64, StoreError> {
    let done = sqlx::query(PURGE)
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(store.pool())
        .await
        .map_err(backend)?;
    Ok(done.rows_affected())
}

//! Proof-of-possession claims: one `INSERT ... ON CONFLICT DO NOTHING` on the claim key, which
//! PostgreSQL makes atomic across every connection and instance.

use time::OffsetDateTime;
use token_core::{ClaimOutcome, ProofClaim, StoreError};
use token_store_sql::micros;

use crate::PgStore;
use crate::error::backend;
use crate::statements::q;

/// [`TokenStore::claim_proof`](token_core::TokenStore::claim_proof).
pub(crate) async fn claim_proof(
    store: &PgStore,
    claim: &ProofClaim,
) -> Result<ClaimOutcome, StoreError> {
    let done = sqlx::query(q(&store.inner.sql.claim_proof))
        .bind(claim.key.to_vec())
        .bind(micros(claim.expires_at))
        .execute(&store.inner.pool)
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
    store: &PgStore,
    before: OffsetDateTime,
    limit: u32,
) -> Result<u64, StoreError> {
    let done = sqlx::query(q(&store.inner.sql.purge_proof_claims))
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&store.inner.pool)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected())
}

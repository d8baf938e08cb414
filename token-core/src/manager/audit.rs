//! The audit trail as the manager exposes it: paged queries, JSON Lines export and hash-chain
//! verification (see [`trail`](crate::trail) for the chain's guarantees).

use std::io::Write;

use super::TokenManager;
use crate::audit::{AuditCheckpoint, AuditHash, AuditQuery, AuditRecord, chain_hash};
use crate::audit_key::{AuditKeyring, check_link};
use crate::error::Error;
use crate::trail::{AuditPage, BrokenLink, ChainReport, CheckpointCheck};

impl TokenManager {
    /// Audit events matching `query`, one page at a time (keyset pagination on the sequence
    /// number). Denials this manager queued before the call are written first.
    pub async fn query_audit(&self, query: AuditQuery) -> Result<AuditPage, Error> {
        if query.limit == 0 || query.limit > 1000 {
            return Err(Error::InvalidRequest {
                field: "query.limit",
                problem: format!("is {}; allowed is 1 to 1000", query.limit),
            });
        }
        self.flush_denials().await;
        let mut probe = query.clone();
        probe.limit = query.limit + 1;
        let mut items = self.store().query_audit(&probe).await?;
        let next_after = if items.len() > query.limit as usize {
            items.truncate(query.limit as usize);
            items.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(AuditPage { items, next_after })
    }

    /// Streams every event matching `query` (its `after_seq` is the starting point; its `limit`
    /// is the page size used while streaming) to `out` as JSON Lines, one [`AuditRecord`](crate::AuditRecord) per
    /// line with the field names documented there. Returns the number of lines written.
    pub async fn export_audit_jsonl(
        &self,
        mut query: AuditQuery,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, Error> {
        let mut written = 0;
        loop {
            let page = self.query_audit(query.clone()).await?;
            for record in &page.items {
                serde_json::to_writer(&mut *out, record).map_err(|e| Error::InvalidRequest {
                    field: "export output",
                    problem: e.to_string(),
                })?;
                out.write_all(b"\n").map_err(|e| Error::InvalidRequest {
                    field: "export output",
                    problem: e.to_string(),
                })?;
                written += 1;
            }
            match page.next_after {
                Some(seq) => query.after_seq = Some(seq),
                None => return Ok(written),
            }
        }
    }

    /// Recomputes the hash chain over events with sequence numbers in `from..=to` and reports the
    /// first broken link.
    ///
    /// With `from = None`, verification starts at the beginning of the trail: from the retention
    /// checkpoint if old events were truncated, else from [`AuditHash::GENESIS`], so the first
    /// event is verified too. The checkpoint is reported and judged against this manager's
    /// audit retention ([`CheckpointCheck`]): one naming an event younger than retention removes
    /// makes [`ChainReport::is_intact`] `false`. With `from = Some(seq)`, the first event at or
    /// after `seq` is trusted as the anchor and every later link is verified.
    ///
    /// Keyed links ([`audit_key`](crate::audit_key)) are verified with the keys given to
    /// [`ManagerBuilder::audit_keys`](crate::ManagerBuilder::audit_keys); an event chained with
    /// a key this manager lacks stops verification and is reported in
    /// [`missing_key`](ChainReport::missing_key), and with keys configured an unkeyed event after
    /// a keyed one in [`downgraded`](ChainReport::downgraded), as is any unkeyed event from
    /// [`ManagerBuilder::audit_keys_required_from`](crate::ManagerBuilder::audit_keys_required_from)
    /// on. With keys, the checkpoint's MAC ([`AuditCheckpoint::mac`]) is verified too: one that
    /// does not verify is reported in [`checkpoint_broken`](ChainReport::checkpoint_broken), a
    /// missing one where the trail after the checkpoint is keyed makes the verdict
    /// [`CheckpointCheck::Unauthenticated`]. This holds only if every instance that runs
    /// [`sweep`](TokenManager::sweep) (so truncates the trail) has its store configured with
    /// the audit keys: a checkpoint written without them is flagged.
    ///
    /// No check inside the database proves that its newest events are still there: keep the
    /// reported [`head`](ChainReport::head) elsewhere and compare (see
    /// [anchoring](crate::trail)).
    pub async fn verify_audit_chain(
        &self,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<ChainReport, Error> {
        self.flush_denials().await;
        let mut prev: Option<AuditHash> = None;
        let mut after = None;
        let mut checkpoint = None;
        match from {
            None => {
                checkpoint = self.store().audit_checkpoint().await?;
                prev = Some(checkpoint.map_or(AuditHash::GENESIS, |c| c.hash));
                after = checkpoint.map(|c| c.seq);
            }
            Some(seq) => {
                if seq > 0 {
                    after = Some(seq - 1);
                }
            }
        }
        let checkpoint_check = checkpoint.map_or(CheckpointCheck::NotUsed, |c| {
            CheckpointCheck::judge(&c, self.now(), self.retention().audit_max_age())
        });
        let mut report = ChainReport {
            checked: 0,
            first_broken: None,
            head: None,
            checkpoint,
            checkpoint_check,
            keyed: 0,
            missing_key: None,
            downgraded: None,
            checkpoint_broken: None,
        };
        let keys = self.inner.audit_keys.as_ref();
        let required_from = self.inner.keyed_required_from;
        let mut seen_keyed = false;
        // The checkpoint's MAC is judged once the first remaining event is known.
        let mut checkpoint_pending = checkpoint.is_some();
        loop {
            let mut query = AuditQuery::new().limit(1000);
            query.after_seq = after;
            let page = self.store().query_audit(&query).await?;
            if checkpoint_pending {
                checkpoint_pending = false;
                if let (Some(c), Some(keys)) = (checkpoint, keys) {
                    judge_checkpoint_mac(&mut report, &c, keys, page.first(), required_from);
                }
            }
            let Some(last) = page.last() else {
                return Ok(report);
            };
            after = Some(last.seq);
            for record in &page {
                if to.is_some_and(|to| record.seq > to) {
                    return Ok(report);
                }
                match record.chain_key_id {
                    Some(id) => {
                        if keys.is_none_or(|k| !k.contains(id)) {
                            report.missing_key = Some((record.seq, id));
                            return Ok(report);
                        }
                        seen_keyed = true;
                    }
                    None if (seen_keyed && keys.is_some())
                        || required_from.is_some_and(|from| record.seq >= from) =>
                    {
                        report.downgraded = Some(record.seq);
                        return Ok(report);
                    }
                    None => {}
                }
                if let Some(p) = prev
                    && check_link(keys, &p, record).is_err()
                {
                    // (A missing key was reported above.) The correct value of a keyed link is
                    // a MAC: never reported.
                    let expected = record
                        .chain_key_id
                        .is_none()
                        .then(|| chain_hash(&p, record.seq, &record.event));
                    report.first_broken = Some(BrokenLink {
                        seq: record.seq,
                        expected,
                        stored: record.hash,
                    });
                    return Ok(report);
                }
                prev = Some(record.hash);
                report.checked += 1;
                report.keyed += u64::from(record.chain_key_id.is_some());
                report.head = Some((record.seq, record.hash));
            }
        }
    }
}

/// With audit keys: a checkpoint MAC that does not verify is a break; a missing one is suspect
/// where the trail after the checkpoint is keyed (its first remaining event, or the checkpoint
/// past the point from which keyed events are required), since a store with audit keys seals
/// every checkpoint it writes.
fn judge_checkpoint_mac(
    report: &mut ChainReport,
    checkpoint: &AuditCheckpoint,
    keys: &AuditKeyring,
    first: Option<&AuditRecord>,
    required_from: Option<u64>,
) {
    match keys.check_checkpoint(checkpoint) {
        Ok(true) => {}
        Ok(false) => {
            let keyed_after = first.is_some_and(|r| r.chain_key_id.is_some())
                || required_from.is_some_and(|from| checkpoint.seq >= from);
            if keyed_after {
                report.checkpoint_check = CheckpointCheck::Unauthenticated;
            }
        }
        Err(broken) => report.checkpoint_broken = Some(broken),
    }
}

//! `tokenctl audit`: query, `--jsonl` export, `verify`.

use serde_json::json;
use token_core::{AuditQuery, AuditRecord, MAX_PAGE_SIZE};

use crate::cli::{AuditAction, AuditArgs, AuditQueryArgs, Global};
use crate::connect::{Hashing, manager};
use crate::duration::rfc3339_or_dash;
use crate::error::{CliError, Outcome};
use crate::output;

/// Runs `audit verify`, or the query (as a table, a JSON array with `--json`, or JSON Lines with
/// `--jsonl`).
pub async fn run(global: &Global, args: AuditArgs) -> Result<Outcome, CliError> {
    let manager = manager(global, Hashing::NotNeeded, None).await?;
    match args.action {
        Some(AuditAction::Verify) => verify(global, &manager).await,
        None => query(global, &manager, args.query).await,
    }
}

fn build_query(args: &AuditQueryArgs, now: time::OffsetDateTime) -> AuditQuery {
    let mut query = AuditQuery::new();
    if let Some(id) = args.token {
        query = query.token(id);
    }
    if let Some(subject) = &args.subject {
        query = query.subject(subject.clone());
    }
    if let Some(actor) = &args.by_actor {
        query = query.actor(actor.clone());
    }
    if let Some(kind) = args.kind {
        query = query.kind(kind);
    }
    if args.since.is_some() || args.until.is_some() {
        let from = args
            .since
            .map_or(time::OffsetDateTime::UNIX_EPOCH, |s| s.resolve(now));
        let until = args.until.map_or(
            time::OffsetDateTime::now_utc() + time::Duration::days(1),
            |u| u.resolve(now),
        );
        query = query.between(from, until);
    }
    query
}

async fn query(
    global: &Global,
    manager: &token_core::TokenManager,
    args: AuditQueryArgs,
) -> Result<Outcome, CliError> {
    let query = build_query(&args, manager.clock().now());
    if let Some(limit) = args.limit
        && !(1..=MAX_PAGE_SIZE).contains(&limit)
    {
        return Err(CliError::Config(format!(
            "--limit {limit}: allowed is 1 to {MAX_PAGE_SIZE}"
        )));
    }
    if args.jsonl && args.limit.is_none() {
        let mut out = std::io::stdout();
        manager
            .export_audit_jsonl(query.limit(MAX_PAGE_SIZE), &mut out)
            .await?;
        return Ok(Outcome::Success);
    }
    let page = manager
        .query_audit(query.limit(args.limit.unwrap_or(100)))
        .await?;
    if args.jsonl {
        for record in &page.items {
            output::line(
                serde_json::to_string(record).map_err(|e| CliError::Config(e.to_string()))?,
            )?;
        }
    } else if global.json {
        output::json_line(
            &serde_json::to_value(&page.items).map_err(|e| CliError::Config(e.to_string()))?,
        )?;
    } else {
        let mut table = output::table(["SEQ", "AT", "KIND", "TOKEN", "SUBJECT", "ACTOR", "REASON"]);
        for record in &page.items {
            table.add_row(row(record));
        }
        output::print_table(&table)?;
        if let Some(next) = page.next_after {
            eprintln!("more events follow; the next page starts after seq {next}");
        }
    }
    Ok(Outcome::Success)
}

fn row(record: &AuditRecord) -> [String; 7] {
    let event = &record.event;
    let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    [
        record.seq.to_string(),
        rfc3339_or_dash(Some(event.at)),
        event.kind.as_str().to_owned(),
        dash(event.token_id.map(|id| id.to_string()).as_deref()),
        dash(event.subject.as_deref()),
        dash(event.actor.as_deref()),
        dash(event.reason.as_deref()),
    ]
}

async fn verify(global: &Global, manager: &token_core::TokenManager) -> Result<Outcome, CliError> {
    let report = manager.verify_audit_chain(None, None).await?;
    let intact = report.is_intact();
    let head = report
        .head
        .map(|(seq, hash)| json!({"seq": seq, "hash": hash}));
    if global.json {
        output::json_line(&json!({
            "intact": intact,
            "checked": report.checked,
            "keyed": report.keyed,
            "head": head,
            "first_broken": report.first_broken.map(|b| b.seq),
            "checkpoint_check": format!("{:?}", report.checkpoint_check),
        }))?;
    } else {
        output::line(format_args!(
            "checked {} events ({} keyed); chain {}",
            report.checked,
            report.keyed,
            if intact { "intact" } else { "BROKEN" }
        ))?;
        if let Some((seq, hash)) = report.head {
            output::line(format_args!(
                "head: seq {seq} hash {} (keep it outside the database to detect a cut-back trail)",
                serde_json::to_value(hash)
                    .map_err(|e| CliError::Config(e.to_string()))?
                    .as_str()
                    .unwrap_or("-")
            ))?;
        }
    }
    if intact {
        Ok(Outcome::Success)
    } else {
        Err(CliError::AuditBroken(format!(
            "the audit trail does not verify: first broken link {:?}, missing key {:?}, downgraded {:?}, checkpoint {:?}",
            report.first_broken.map(|b| b.seq),
            report.missing_key.map(|(seq, _)| seq),
            report.downgraded,
            report.checkpoint_check
        )))
    }
}

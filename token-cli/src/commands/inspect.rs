//! `tokenctl inspect ID`.

use crate::cli::{Global, InspectArgs};
use crate::connect::{Hashing, manager};
use crate::duration::rfc3339_or_dash;
use crate::error::{CliError, Outcome};
use crate::output::{self, json_line, record_json, state_of};

/// Prints one record as `field  value` lines, or one JSON object with `--json` (at least `id`,
/// `subject`, `state`, `expires_at`). An unknown id is an error.
pub async fn run(global: &Global, args: InspectArgs) -> Result<Outcome, CliError> {
    let manager = manager(global, Hashing::NotNeeded, None).await?;
    let Some(record) = manager.inspect(args.id).await? else {
        return Err(CliError::Config(format!(
            "no token with id {} in this store (it was never issued here, or was purged)",
            args.id
        )));
    };
    if global.json {
        json_line(&record_json(&record))?;
        return Ok(Outcome::Success);
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let id = |v: Option<token_core::TokenId>| dash(v.map(|id| id.to_string()));
    let labels = record
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let revocation = record.revocation.as_ref();
    let mut table = output::table(["FIELD", "VALUE"]);
    for (field, value) in [
        ("id", record.id.to_string()),
        ("prefix", record.prefix.clone()),
        ("subject", record.subject.clone()),
        ("state", state_of(&record).as_str().to_owned()),
        ("scopes", record.scopes.to_string()),
        ("name", dash(record.name.clone())),
        ("description", dash(record.description.clone())),
        (
            "labels",
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels
            },
        ),
        ("created_at", rfc3339_or_dash(Some(record.created_at))),
        ("created_by", dash(record.created_by.clone())),
        ("expires_at", rfc3339_or_dash(record.expires_at)),
        ("not_before", rfc3339_or_dash(record.not_before)),
        (
            "idle_timeout",
            dash(
                record
                    .idle_timeout
                    .map(|d| token_core::HumanDuration(d).to_string()),
            ),
        ),
        ("last_used_at", rfc3339_or_dash(record.last_used_at)),
        ("use_count", record.use_count.to_string()),
        ("max_uses", dash(record.max_uses.map(|n| n.to_string()))),
        ("parent_id", id(record.parent_id)),
        ("family_id", record.family_id.to_string()),
        ("rotated_from", id(record.rotated_from)),
        ("rotated_to", id(record.rotated_to)),
        ("revoked_at", rfc3339_or_dash(revocation.map(|r| r.at))),
        (
            "revocation_reason",
            dash(revocation.map(|r| r.reason.clone())),
        ),
        ("revoked_by", dash(revocation.and_then(|r| r.actor.clone()))),
        ("suspended_at", rfc3339_or_dash(record.suspended_at)),
        (
            "metadata",
            dash(record.metadata.as_ref().map(ToString::to_string)),
        ),
        (
            "allowed_cidrs",
            dash(record.allowed_networks.as_ref().map(ToString::to_string)),
        ),
    ] {
        table.add_row([field.to_owned(), value]);
    }
    output::print_table(&table)?;
    Ok(Outcome::Success)
}

//! `tokenctl revoke`: by id, subject, family, label or issue time.

use serde_json::json;
use token_core::{Context, RevokeSelector};

use crate::cli::{Global, RevokeArgs};
use crate::confirm::confirm;
use crate::connect::{Hashing, manager};
use crate::error::{CliError, Outcome};
use crate::output;

/// Revokes what the selector matches (and derived tokens) and prints the ids revoked by this
/// call (one per line; `--json`: `{"revoked": [ids], "count": n}`). Bulk selectors (subject,
/// family, label, issued-before) ask once on stderr unless `--yes`.
pub async fn run(global: &Global, args: RevokeArgs) -> Result<Outcome, CliError> {
    let manager = manager(global, Hashing::NotNeeded, None).await?;
    let now = manager.clock().now();
    let chosen = crate::selector::chosen(args.id, args.subject, args.family, args.label);
    let (selector, bulk) = if let Some(chosen) = chosen {
        chosen
    } else if let Some(before) = args.issued_before {
        let at = before.resolve(now);
        (
            RevokeSelector::IssuedBefore(at),
            Some(format!(
                "every token issued before {}",
                crate::duration::rfc3339_or_dash(Some(at))
            )),
        )
    } else {
        return Err(CliError::Config(
            "name what to revoke: an ID, --subject, --family, --label or --issued-before"
                .to_owned(),
        ));
    };
    if let Some(what) = bulk
        && !args.yes
    {
        confirm(&format!(
            "Revoke {what} (and the tokens derived from them)?"
        ))?;
    }
    let ctx = Context::new().actor(global.actor.clone());
    let revoked = manager.revoke_with(selector, args.reason, &ctx).await?;
    if global.json {
        output::json_line(&json!({"revoked": revoked, "count": revoked.len()}))?;
    } else {
        for id in &revoked {
            output::line(id)?;
        }
        eprintln!("revoked {} token(s)", revoked.len());
    }
    Ok(Outcome::Success)
}

//! `tokenctl sweep`: one retention pass with the library's default retention.

use serde_json::json;

use crate::cli::Global;
use crate::connect::{Hashing, manager};
use crate::error::{CliError, Outcome};
use crate::output;

/// Runs one sweep and prints what it did; a failed step is an error (exit 1) after the report.
pub async fn run(global: &Global) -> Result<Outcome, CliError> {
    let manager = manager(global, Hashing::NotNeeded, None).await?;
    let report = manager.sweep().await?;
    let failures: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    if global.json {
        output::json_line(&json!({
            "expired": report.expired,
            "unused_revoked": report.unused_revoked,
            "purged": report.purged,
            "audit_truncated": report.audit_truncated,
            "failures": failures,
        }))?;
    } else {
        let mut table = output::table(["STEP", "COUNT"]);
        table.add_row(["expired".to_owned(), report.expired.to_string()]);
        table.add_row([
            "unused revoked".to_owned(),
            report.unused_revoked.to_string(),
        ]);
        table.add_row(["purged".to_owned(), report.purged.to_string()]);
        table.add_row([
            "audit truncated".to_owned(),
            report.audit_truncated.to_string(),
        ]);
        output::print_table(&table)?;
    }
    if failures.is_empty() {
        Ok(Outcome::Success)
    } else {
        Err(CliError::Config(format!(
            "sweep steps failed: {}",
            failures.join("; ")
        )))
    }
}

//! `tokenctl migrate`: create or upgrade the store's tables.

use serde_json::json;
use token_store_sql::redacted_url;

use crate::cli::Global;
use crate::connect::{Create, database_url, open_store};
use crate::error::{CliError, Outcome};
use crate::output;

/// Runs the store's migrations (creating a missing SQLite file).
pub async fn run(global: &Global) -> Result<Outcome, CliError> {
    let store = open_store(global, Create::IfMissing).await?;
    store.migrate().await?;
    let url = redacted_url(database_url(global)?);
    if global.json {
        output::json_line(&json!({"migrated": true, "database": url}))?;
    } else {
        output::line(format_args!("migrated {url}"))?;
    }
    Ok(Outcome::Success)
}

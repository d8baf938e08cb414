//! `tokenctl suspend` and `tokenctl resume`: pause tokens during an investigation, reversibly.

use serde_json::json;
use token_core::Context;

use crate::cli::{Global, PauseArgs};
use crate::confirm::confirm;
use crate::connect::{Hashing, manager};
use crate::error::{CliError, Outcome};
use crate::output;

/// Which way a pause goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Refuse the tokens like revoked ones until resumed.
    Suspend,
    /// Lift a suspension.
    Resume,
}

impl Pause {
    fn verb(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Resume => "resume",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Self::Suspend => "suspended",
            Self::Resume => "resumed",
        }
    }
}

/// Suspends or resumes what the selector matches (and derived tokens) and prints the ids changed
/// by this call (one per line; `--json`: `{"suspended"|"resumed": [ids], "count": n}`). Bulk
/// selectors ask once on stderr unless `--yes`. Resuming a revoked, expired or rotated-out
/// token is an error: a suspension never revives what something else ended.
pub async fn run(global: &Global, args: PauseArgs, pause: Pause) -> Result<Outcome, CliError> {
    let manager = manager(global, Hashing::NotNeeded, None).await?;
    let Some((selector, bulk)) =
        crate::selector::chosen(args.id, args.subject, args.family, args.label)
    else {
        return Err(CliError::Config(format!(
            "name what to {}: an ID, --subject, --family or --label",
            pause.verb()
        )));
    };
    if let Some(what) = bulk
        && !args.yes
    {
        let verb = pause.verb();
        let mut first = verb.chars();
        let verb = first
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + first.as_str())
            .unwrap_or_default();
        confirm(&format!(
            "{verb} {what} (and the tokens derived from them)?"
        ))?;
    }
    let ctx = Context::new().actor(global.actor.clone());
    let changed = match pause {
        Pause::Suspend => manager.suspend_with(selector, args.reason, &ctx).await?,
        Pause::Resume => manager.resume_with(selector, args.reason, &ctx).await?,
    };
    if global.json {
        output::json_line(&json!({pause.done(): changed, "count": changed.len()}))?;
    } else {
        for id in &changed {
            output::line(id)?;
        }
        eprintln!("{} {} token(s)", pause.done(), changed.len());
    }
    Ok(Outcome::Success)
}

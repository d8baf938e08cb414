//! `tokenctl issue`: a new token, printed once.

use serde_json::json;
use token_core::{Context, IssueRequest, ScopeSet};

use crate::cli::{Global, IssueArgs};
use crate::connect::{Hashing, manager};
use crate::duration::rfc3339_or_dash;
use crate::error::{CliError, Outcome};
use crate::output::{record_json, secret_line};

/// Issues a token. Prints the token alone on stdout's first line (its id and expiry go to
/// stderr); with `--json`, one object `{token, id, subject, expires_at, record}` on stdout.
pub async fn run(global: &Global, args: IssueArgs) -> Result<Outcome, CliError> {
    if global.prefix.is_none() {
        return Err(CliError::Config(
            "no token prefix; pass --prefix (e.g. acme_live) or set TOKEN_PREFIX to the application's prefix".to_owned(),
        ));
    }
    let scopes = ScopeSet::parse(&args.scopes.join(" ")).map_err(token_core::Error::from)?;
    let manager = manager(global, Hashing::Required, None).await?;
    let mut request =
        IssueRequest::new(args.subject, scopes).context(Context::new().actor(global.actor.clone()));
    if let Some(ttl) = args.ttl {
        request = request.ttl(ttl);
    }
    if let Some(max_uses) = args.max_uses {
        request = request.max_uses(max_uses);
    }
    if let Some(refill) = args.refill {
        request = request.refill_uses(refill);
    }
    if !args.rate_limits.is_empty() {
        let limits = token_core::RateLimits::new(args.rate_limits)
            .map_err(|e| CliError::Config(e.to_string()))?;
        request = request.rate_limits(limits);
    }
    if let Some(name) = args.name {
        request = request.name(name);
    }
    if let Some(description) = args.description {
        request = request.description(description);
    }
    for (key, value) in args.labels {
        request = request.label(key, value);
    }
    let issued = manager.issue(request).await?;
    print_issued(global, &issued)?;
    Ok(Outcome::Success)
}

/// Prints a newly issued (or rotated) token: alone on stdout's first line, or in one JSON
/// object with `--json`.
pub fn print_issued(global: &Global, issued: &token_core::IssuedToken) -> Result<(), CliError> {
    let record = &issued.record;
    if global.json {
        let document = zeroize::Zeroizing::new(
            json!({
                "token": issued.token.expose_secret(),
                "id": record.id,
                "subject": record.subject,
                "expires_at": record.expires_at.map(|at| rfc3339_or_dash(Some(at))),
                "record": record_json(record),
            })
            .to_string(),
        );
        secret_line(&[&document])
    } else {
        secret_line(&[issued.token.expose_secret()])?;
        eprintln!(
            "issued {} for {} (expires {}); the token above is shown once",
            record.id,
            record.subject,
            rfc3339_or_dash(record.expires_at)
        );
        Ok(())
    }
}

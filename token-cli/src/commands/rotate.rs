//! `tokenctl rotate ID --grace D`.

use token_core::Context;

use crate::cli::{Global, RotateArgs};
use crate::connect::{Hashing, manager};
use crate::error::{CliError, Outcome};

/// Rotates a token: the successor is printed alone on stdout's first line (or as `issue
/// --json` prints it). Without `--prefix` / `TOKEN_PREFIX`, the successor keeps the old token's
/// prefix.
pub async fn run(global: &Global, args: RotateArgs) -> Result<Outcome, CliError> {
    let prefix = match &global.prefix {
        Some(_) => None,
        None => {
            let reader = manager(global, Hashing::NotNeeded, None).await?;
            let record = reader.inspect(args.id).await?.ok_or_else(|| {
                CliError::Config(format!("no token with id {} in this store", args.id))
            })?;
            Some(record.prefix)
        }
    };
    let manager = manager(global, Hashing::Required, prefix.as_deref()).await?;
    let ctx = Context::new().actor(global.actor.clone());
    let issued = manager.rotate_with(args.id, args.grace, &ctx).await?;
    super::issue::print_issued(global, &issued)?;
    Ok(Outcome::Success)
}

//! `tokenctl stale --unused-for D`.

use token_core::{ListFilter, TokenState};

use crate::cli::{Global, StaleArgs};
use crate::connect::{Hashing, manager};
use crate::error::{CliError, Outcome};
use crate::output::print_records;

/// Lists active tokens nobody has used for `--unused-for` (default 30d; never-used tokens count
/// from their issue time); `--any-state` includes revoked and expired ones.
pub async fn run(global: &Global, args: StaleArgs) -> Result<Outcome, CliError> {
    let manager = manager(global, Hashing::NotNeeded, None).await?;
    let cutoff = crate::duration::Instant::Ago(args.unused_for).resolve(manager.clock().now());
    let mut filter = ListFilter::all().unused_since(cutoff);
    if !args.any_state {
        filter = filter.state(TokenState::Active);
    }
    // `stale_tokens` is this list in any state; the state filter keeps the ones still usable.
    let records =
        super::list::collect(args.limit, |page| manager.list(filter.clone(), page)).await?;
    print_records(&records, global.json)?;
    Ok(Outcome::Success)
}

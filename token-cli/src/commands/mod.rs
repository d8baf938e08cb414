//! One file per subcommand; [`run`] dispatches.

use crate::cli::{Cli, Command};
use crate::error::{CliError, Outcome};

pub mod audit;
pub mod inspect;
pub mod issue;
pub mod keygen;
pub mod list;
pub mod migrate;
pub mod revoke;
pub mod rotate;
pub mod scan;
pub mod stale;
pub mod suspend;
pub mod sweep;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    let global = &cli.global;
    match cli.command {
        Command::Keygen => keygen::run(global),
        Command::Migrate => migrate::run(global).await,
        Command::Issue(args) => issue::run(global, args).await,
        Command::List(args) => list::run(global, args).await,
        Command::Inspect(args) => inspect::run(global, args).await,
        Command::Revoke(args) => revoke::run(global, args).await,
        Command::Suspend(args) => suspend::run(global, args, suspend::Pause::Suspend).await,
        Command::Resume(args) => suspend::run(global, args, suspend::Pause::Resume).await,
        Command::Rotate(args) => rotate::run(global, args).await,
        Command::Audit(args) => audit::run(global, args).await,
        Command::Sweep => sweep::run(global).await,
        Command::Stale(args) => stale::run(global, args).await,
        Command::Scan(args) => scan::run(global, args).await,
    }
}

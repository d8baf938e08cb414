//! The `tokenctl` binary: parses the command line, runs the command, maps the result to an exit
//! code (0 ok, 1 error, 2 usage, 3 live tokens found by `scan`; see the crate docs).

use std::process::ExitCode;

use clap::Parser;
use token_cli::cli::Cli;
use token_cli::error::EXIT_ERROR;

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's default); --help and --version with 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokenctl: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(token_cli::commands::run(cli)) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            eprintln!("tokenctl: error: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

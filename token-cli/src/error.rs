//! Errors and outcomes of a command, and the exit codes they map to.

use std::process::ExitCode;

/// Why a command failed. Messages say what was wrong and what is allowed; none contains a
/// secret (keys and tokens are never quoted, database URLs are redacted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A setting is missing or malformed.
    #[error("{0}")]
    Config(String),
    /// The library refused the operation.
    #[error(transparent)]
    Library(#[from] token_core::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] token_core::StoreError),
    /// Reading or writing a file or stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The operator declined a confirmation (or none could be asked).
    #[error("{0}")]
    Declined(String),
    /// The audit chain does not verify.
    #[error("{0}")]
    AuditBroken(String),
}

impl CliError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// `scan` found live tokens: exit code 3.
    LiveTokensFound,
}

/// Exit code of a command that failed.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of bad usage (clap's).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a scan that found live tokens.
pub const EXIT_LIVE_TOKENS: u8 = 3;

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::Success => ExitCode::SUCCESS,
            Self::LiveTokensFound => ExitCode::from(EXIT_LIVE_TOKENS),
        }
    }
}

//! The command line (clap derive): global options and one struct per subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use token_core::TokenId;

use crate::duration::{Instant, parse_duration};

/// Operate API tokens from a terminal; find leaked tokens and kill them.
#[derive(Debug, Parser)]
#[command(
    name = "tokenctl",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 `scan` found live tokens.\n\
                  Keys come from the environment only: TOKEN_HASH_KEY ([ID:]HEX), TOKEN_HASH_KEYS_OLD (ID:HEX,...), TOKEN_AUDIT_KEY."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The store: sqlite://path/to/tokens.db or postgres://user@host:5432/db.
    #[arg(
        long,
        global = true,
        env = "TOKEN_DATABASE_URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// PostgreSQL schema holding the store's tables (default token_store).
    #[arg(long, global = true, env = "TOKEN_DATABASE_SCHEMA")]
    pub schema: Option<String>,
    /// The token prefix, e.g. acme_live (needed by `issue`; filters `scan`).
    #[arg(long, global = true, env = "TOKEN_PREFIX")]
    pub prefix: Option<String>,
    /// Who is acting, as written in audit events.
    #[arg(long, global = true, env = "TOKEN_ACTOR", default_value = "tokenctl")]
    pub actor: String,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new hash key (64 hex characters) for TOKEN_HASH_KEY.
    Keygen,
    /// Create or upgrade the store's tables.
    Migrate,
    /// Issue a token; prints it once, alone on stdout's first line.
    Issue(IssueArgs),
    /// List tokens (all pages unless --limit).
    List(ListArgs),
    /// Show one token's record (never its secret or hash).
    Inspect(InspectArgs),
    /// Revoke by id, subject, family, label or issue time (bulk selectors ask first).
    Revoke(RevokeArgs),
    /// Suspend by id, subject, family or label: refused like revoked until resumed.
    Suspend(PauseArgs),
    /// Resume what a suspension paused (never what was revoked or expired).
    Resume(PauseArgs),
    /// Rotate a token; prints the new token once, alone on stdout's first line.
    Rotate(RotateArgs),
    /// Query, export (--jsonl) or verify the audit trail.
    Audit(AuditArgs),
    /// Run one retention sweep.
    Sweep,
    /// List tokens nobody has used for a while.
    Stale(StaleArgs),
    /// Find tokens in files, directories or stdin (-); check and revoke them.
    Scan(ScanArgs),
}

/// `tokenctl issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Whom the token acts for (a user, a service account).
    #[arg(long)]
    pub subject: String,
    /// A scope the token grants (repeat for several), e.g. repo:acme/widgets:read.
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// Lifetime, e.g. 30d, 12h (default: the policy's, 30d).
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Most successful validations allowed (per period with --refill).
    #[arg(long)]
    pub max_uses: Option<u64>,
    /// When the --max-uses credits come back: monthly, daily, hourly, weekly or "every 3600s".
    #[arg(long, value_parser = parse_refill, requires = "max_uses")]
    pub refill: Option<token_core::UseRefill>,
    /// A rate limit `name=limit/<seconds>s` (repeat for several), e.g. `requests=100/60s`; a
    /// trailing ? applies it only where a route spends it (expensive=10/3600s?).
    #[arg(long = "rate-limit", value_parser = parse_rate_limit)]
    pub rate_limits: Vec<token_core::RateLimit>,
    /// A human-readable name.
    #[arg(long)]
    pub name: Option<String>,
    /// A longer description.
    #[arg(long)]
    pub description: Option<String>,
    /// A label key=value (repeat for several).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

/// `tokenctl list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only tokens with this label key=value (repeat: all must match).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Only tokens in this state now.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Only this family (the root token's id).
    #[arg(long)]
    pub family: Option<TokenId>,
    /// Only tokens unused since this instant (RFC 3339, `now`, or a duration ago such as 30d).
    #[arg(long)]
    pub unused_since: Option<Instant>,
    /// At most this many (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// A token state, as `list --state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Valid now.
    Active,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Suspended until resumed.
    Suspended,
    /// Before its not-before time.
    NotYetValid,
    /// Unused longer than its idle timeout.
    IdleExpired,
    /// Its use limit is reached.
    UsedUp,
}

impl From<StateArg> for token_core::TokenState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Active => Self::Active,
            StateArg::Revoked => Self::Revoked,
            StateArg::Expired => Self::Expired,
            StateArg::Suspended => Self::Suspended,
            StateArg::NotYetValid => Self::NotYetValid,
            StateArg::IdleExpired => Self::IdleExpired,
            StateArg::UsedUp => Self::UsedUp,
        }
    }
}

/// `tokenctl inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The token id (the 22 characters after the prefix).
    pub id: TokenId,
}

/// `tokenctl revoke`: exactly one selector.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selector").required(true).args(["id", "subject", "family", "label", "issued_before"])))]
pub struct RevokeArgs {
    /// One token (and its derived tokens).
    pub id: Option<TokenId>,
    /// Every token of this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Every token of this family (the root's id).
    #[arg(long)]
    pub family: Option<TokenId>,
    /// Every token with this label key=value.
    #[arg(long, value_parser = parse_label)]
    pub label: Option<(String, String)>,
    /// Every token issued before this instant (RFC 3339, `now`, or a duration ago).
    #[arg(long)]
    pub issued_before: Option<Instant>,
    /// Why (written in each Revoked event).
    #[arg(long, default_value = "revoked with tokenctl")]
    pub reason: String,
    /// Do not ask before a bulk revocation.
    #[arg(long, short)]
    pub yes: bool,
}

/// `tokenctl suspend` and `tokenctl resume`: exactly one selector.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("selector").required(true).args(["id", "subject", "family", "label"])))]
pub struct PauseArgs {
    /// One token (and its derived tokens).
    pub id: Option<TokenId>,
    /// Every token of this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Every token of this family (the root's id).
    #[arg(long)]
    pub family: Option<TokenId>,
    /// Every token with this label key=value.
    #[arg(long, value_parser = parse_label)]
    pub label: Option<(String, String)>,
    /// Why (written in each Suspended or Resumed event), e.g. an incident number.
    #[arg(long, default_value = "with tokenctl")]
    pub reason: String,
    /// Do not ask before a bulk change.
    #[arg(long, short)]
    pub yes: bool,
}

/// `tokenctl rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The token to replace.
    pub id: TokenId,
    /// How long the old token stays valid (at most its remaining lifetime), e.g. 1h; 0s ends it now.
    #[arg(long, value_parser = parse_duration)]
    pub grace: Duration,
}

/// `tokenctl audit`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// `verify`, or none to query.
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// The query.
    #[command(flatten)]
    pub query: AuditQueryArgs,
}

/// `tokenctl audit verify`.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Verify the audit hash chain (exit 1 if it does not verify).
    Verify,
}

/// Filters of `tokenctl audit`.
#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    /// Only events of this token.
    #[arg(long)]
    pub token: Option<TokenId>,
    /// Only events of this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events by this actor.
    #[arg(long = "by")]
    pub by_actor: Option<String>,
    /// Only events of this kind (issued, derived, rotated, revoked, expired, purged, denied, policy_violation, used, suspended, resumed, updated).
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<token_core::AuditKind>,
    /// Only events at or after this instant.
    #[arg(long)]
    pub since: Option<Instant>,
    /// Only events before this instant.
    #[arg(long)]
    pub until: Option<Instant>,
    /// At most this many events (default 100; --jsonl exports all unless set).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Export as JSON Lines (one event per line, the library's stable field names).
    #[arg(long)]
    pub jsonl: bool,
}

/// `tokenctl stale`.
#[derive(Debug, Args)]
pub struct StaleArgs {
    /// Unused for at least this long, e.g. 30d.
    #[arg(long, value_parser = parse_duration, default_value = "30d")]
    pub unused_for: Duration,
    /// Include revoked and expired tokens (default: only active ones).
    #[arg(long)]
    pub any_state: bool,
    /// At most this many (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `tokenctl scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan; `-` reads stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also scan files that .gitignore, .ignore and hidden-file rules would skip.
    #[arg(long)]
    pub no_ignore: bool,
    /// Report tokens of every prefix, not only --prefix's.
    #[arg(long)]
    pub any_prefix: bool,
    /// Output format (json: one object per line per finding).
    #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
    pub format: ScanFormat,
    /// Do not check found tokens against the store even when --database / TOKEN_DATABASE_URL is set.
    #[arg(long, conflicts_with = "revoke")]
    pub offline: bool,
    /// Revoke every live token found (needs --database; asks once unless --yes).
    #[arg(long)]
    pub revoke: bool,
    /// Do not ask before revoking.
    #[arg(long, short)]
    pub yes: bool,
    /// Skip files larger than this many bytes (default 256 MiB).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub max_file_size: u64,
}

/// Output formats of `tokenctl scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    /// `path:line:column: prefix id [state]`, one line per finding, and a summary on stderr.
    Text,
    /// One JSON object per finding per line.
    Json,
    /// One SARIF 2.1.0 log (for code-scanning tools).
    Sarif,
}

/// Parses a refill period (`monthly`, `daily`, `every 3600s`).
fn parse_refill(text: &str) -> Result<token_core::UseRefill, String> {
    text.parse()
        .map_err(|e: token_core::RefillError| e.to_string())
}

/// Parses a rate limit (`requests=100/60s`, a trailing `?` for on demand).
fn parse_rate_limit(text: &str) -> Result<token_core::RateLimit, String> {
    text.parse()
        .map_err(|e: token_core::RateLimitError| e.to_string())
}

/// Parses `key=value`.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!(
            "{text:?} is not a label; write key=value, e.g. team=payments"
        )),
    }
}

fn parse_kind(text: &str) -> Result<token_core::AuditKind, String> {
    token_core::AuditKind::parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not an audit event kind; use issued, derived, rotated, revoked, expired, purged, denied, policy_violation, used, suspended, resumed or updated"
        )
    })
}

//! `tokenctl scan`: find tokens, check them against the store, revoke the live ones.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use token_core::{
    Context, FoundState, RevokeSelector, TokenId, TokenManager, TokenPrefix, TokenStore,
};

use crate::cli::{Global, ScanArgs, ScanFormat};
use crate::confirm::confirm;
use crate::connect::{Create, open_store};
use crate::error::{CliError, Outcome};
use crate::scan::report::{self, Finding};
use crate::scan::walk::{self, WalkOptions};
use crate::scan::{PrefixFilter, Scanner};

/// The actor of revocations made by `scan --revoke`.
pub const SCAN_ACTOR: &str = "tokenctl scan";

/// Scans, checks (when a store is configured and not `--offline`), revokes (with `--revoke`),
/// prints the findings and returns [`Outcome::LiveTokensFound`] when live tokens remain.
pub async fn run(global: &Global, args: ScanArgs) -> Result<Outcome, CliError> {
    let filter = match (&global.prefix, args.any_prefix) {
        (Some(prefix), false) => PrefixFilter::Only(
            TokenPrefix::new(prefix)
                .map_err(|e| CliError::Config(format!("--prefix / TOKEN_PREFIX: {e}")))?,
        ),
        _ => PrefixFilter::Any,
    };
    let check = global.database.is_some() && !args.offline;
    if args.revoke && !check {
        return Err(CliError::Config(
            "--revoke needs the store: pass --database or set TOKEN_DATABASE_URL".to_owned(),
        ));
    }
    let reads_stdin = args.paths.iter().any(|p| p.as_os_str() == walk::STDIN);
    if args.revoke && !args.yes && reads_stdin {
        return Err(CliError::Config(
            "stdin is being scanned, so the revocation cannot be confirmed there; pass --yes"
                .to_owned(),
        ));
    }
    // Connect before the (possibly long) scan, so a bad URL or key fails at once.
    let checker = if check {
        Some(Checker::open(global).await?)
    } else {
        None
    };

    let mut findings = scan_paths(&args, filter);
    if let Some(checker) = &checker {
        checker.check(&mut findings).await?;
        if args.revoke {
            revoke_live(checker, &mut findings, args.yes).await?;
        }
    }

    let mut out = std::io::stdout().lock();
    let written = match args.format {
        ScanFormat::Text => report::write_text(&mut out, &findings),
        ScanFormat::Json => report::write_json_lines(&mut out, &findings),
        ScanFormat::Sarif => writeln!(out, "{}", report::sarif(&findings)),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))?;

    let live_left = findings.iter().any(|f| match f.state {
        None => true,
        Some(state) => state.is_live() && !f.revoked_now,
    });
    Ok(if live_left {
        Outcome::LiveTokensFound
    } else {
        Outcome::Success
    })
}

fn progress() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar
}

fn scan_paths(args: &ScanArgs, filter: PrefixFilter) -> Vec<Finding> {
    let scanner = Scanner::new(filter);
    let options = WalkOptions {
        respect_ignore_files: !args.no_ignore,
        max_file_size: args.max_file_size,
    };
    let bar = progress();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut findings = Vec::new();
    let skipped = walk::walk(&args.paths, &options, |source| {
        files += 1;
        bytes += source.bytes.len() as u64;
        for hit in scanner.scan(&source.bytes) {
            findings.push(Finding {
                path: source.path.clone(),
                hit,
                state: None,
                revoked_now: false,
            });
        }
        bar.set_message(format!(
            "{files} files, {} MiB, {} tokens",
            bytes / (1024 * 1024),
            findings.len()
        ));
        bar.tick();
    });
    bar.finish_and_clear();
    for skip in &skipped {
        eprintln!("tokenctl: warning: skipped {}: {}", skip.path, skip.reason);
    }
    eprintln!(
        "scanned {files} file(s), {bytes} bytes: {} token(s) found",
        findings.len()
    );
    findings
}

/// Checks found tokens against the store, one manager per prefix found (a manager accepts only
/// its own prefix), all over one connection pool.
struct Checker {
    store: Arc<dyn TokenStore>,
    keyring: token_core::Keyring,
    audit_keys: Option<token_core::AuditKeyring>,
}

impl Checker {
    async fn open(global: &Global) -> Result<Self, CliError> {
        let keyring = crate::keys::hash_keyring()?.ok_or_else(|| {
            CliError::Config(format!(
                "{} is not set; checking found tokens against the store needs the hash key (or pass --offline)",
                crate::keys::HASH_KEY_VAR
            ))
        })?;
        let store: Arc<dyn TokenStore> =
            Arc::from(open_store(global, Create::Never).await?.into_store());
        Ok(Self {
            store,
            keyring,
            audit_keys: crate::keys::audit_keyring()?,
        })
    }

    fn manager(&self, prefix: &str) -> Result<TokenManager, CliError> {
        let mut builder = TokenManager::builder(self.store.clone(), self.keyring.clone())
            .prefix(prefix)
            .map_err(|e| CliError::Config(e.to_string()))?;
        if let Some(keys) = &self.audit_keys {
            builder = builder.audit_keys(keys.clone());
        }
        builder
            .build()
            .map_err(|e| CliError::Config(format!("cannot configure the token manager: {e}")))
    }

    async fn check(&self, findings: &mut [Finding]) -> Result<(), CliError> {
        let mut managers: HashMap<String, TokenManager> = HashMap::new();
        // One check per distinct token string (the same token may be in many places).
        let mut checked: HashMap<TokenId, Vec<(usize, FoundState)>> = HashMap::new();
        for at in 0..findings.len() {
            let same = checked.get(&findings[at].hit.id).and_then(|seen| {
                seen.iter()
                    .find(|(earlier, _)| {
                        findings[*earlier].hit.expose_token() == findings[at].hit.expose_token()
                    })
                    .map(|(_, state)| *state)
            });
            if let Some(state) = same {
                findings[at].state = Some(state);
                continue;
            }
            let finding = &findings[at];
            let manager = match managers.get(&finding.hit.prefix) {
                Some(manager) => manager,
                None => {
                    let manager = self.manager(&finding.hit.prefix)?;
                    managers
                        .entry(finding.hit.prefix.clone())
                        .or_insert(manager)
                }
            };
            let state = manager.check_found(finding.hit.expose_token()).await?;
            checked.entry(finding.hit.id).or_default().push((at, state));
            findings[at].state = Some(state);
        }
        Ok(())
    }

    fn any_manager(&self) -> Result<TokenManager, CliError> {
        self.manager("tokenctl")
    }
}

async fn revoke_live(
    checker: &Checker,
    findings: &mut [Finding],
    yes: bool,
) -> Result<(), CliError> {
    // The first file each live token was found in names it in the reason.
    let mut live: BTreeMap<TokenId, String> = BTreeMap::new();
    for finding in findings.iter() {
        if finding.state.is_some_and(FoundState::is_live) {
            live.entry(finding.hit.id)
                .or_insert_with(|| finding.path.clone());
        }
    }
    if live.is_empty() {
        eprintln!("no live token to revoke");
        return Ok(());
    }
    if !yes {
        let files: std::collections::BTreeSet<&str> = live.values().map(String::as_str).collect();
        let question = format!(
            "Revoke {} live token(s) found in {} file(s)?",
            live.len(),
            files.len()
        );
        // Declining is not an error: the findings are still reported (and the exit code says
        // live tokens remain).
        if let Err(declined) = confirm(&question) {
            eprintln!("tokenctl: {declined}");
            return Ok(());
        }
    }
    // Revocation by id needs no prefix check: any manager over the store will do.
    let manager = checker.any_manager()?;
    let ctx = Context::new().actor(SCAN_ACTOR);
    let mut revoked = 0usize;
    for (id, path) in &live {
        let ids = manager
            .revoke_with(
                RevokeSelector::Token(*id),
                format!("leaked: found in {path}"),
                &ctx,
            )
            .await?;
        revoked += ids.len();
    }
    for finding in findings.iter_mut() {
        if live.contains_key(&finding.hit.id) {
            finding.revoked_now = true;
        }
    }
    eprintln!(
        "revoked {} leaked token(s) ({} with derived tokens)",
        live.len(),
        revoked
    );
    Ok(())
}

//! Runs the built `tokenctl` as a process against a fresh store: a SQLite file in a temporary
//! directory, or a fresh schema on the PostgreSQL server named by `TOKEN_TEST_POSTGRES_URL`
//! (dropped afterwards).

#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The variable naming the PostgreSQL test server.
pub const POSTGRES_VAR: &str = "TOKEN_TEST_POSTGRES_URL";

/// A fixed test hash key (never a real one).
pub const HASH_KEY: &str = "0707070707070707070707070707070707070707070707070707070707070707";
/// The prefix the tests issue under.
pub const PREFIX: &str = "acme_live";

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's store and working directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub schema: Option<String>,
    pub backend: Backend,
}

impl Env {
    /// A fresh, migrated store, or `None` (after one skip line) for PostgreSQL without a server.
    pub fn new(backend: Backend, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (url, schema) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("tokens.db").display()),
                None,
            ),
            Backend::Postgres => match std::env::var(POSTGRES_VAR) {
                Ok(url) if !url.trim().is_empty() => (url, Some(fresh_schema())),
                _ => {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "skipped {test}: {POSTGRES_VAR} is not set"
                    );
                    return None;
                }
            },
        };
        let env = Self {
            dir,
            url,
            schema,
            backend,
        };
        let migrated = env.run(&["migrate"]);
        assert_eq!(
            migrated.code,
            Some(0),
            "migrate failed: {}",
            migrated.stderr
        );
        Some(env)
    }

    /// The working directory of the process.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command with the store, key and prefix in its environment (and nothing inherited
    /// that starts with `TOKEN_`).
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenctl"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TOKEN_") {
                command.env_remove(name);
            }
        }
        command
            .current_dir(self.dir.path())
            .env("TOKEN_DATABASE_URL", &self.url)
            .env("TOKEN_HASH_KEY", HASH_KEY)
            .env("TOKEN_PREFIX", PREFIX);
        if let Some(schema) = &self.schema {
            command.env("TOKEN_DATABASE_SCHEMA", schema);
        }
        command
    }

    /// Runs `tokenctl args` with empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// Runs `tokenctl args` with `stdin` as its input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        run_command(self.command().args(args), stdin)
    }

    /// Issues a token and returns (token, id).
    pub fn issue(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec!["issue", "--scope", "deploy"];
        if !extra.contains(&"--subject") {
            args.extend_from_slice(&["--subject", "ci"]);
        }
        args.extend_from_slice(extra);
        let run = self.run(&args);
        assert_eq!(run.code, Some(0), "issue failed: {}", run.stderr);
        let token = run.first_line().to_owned();
        let parsed = token_core::parse_token(&token).unwrap_or_else(|e| panic!("{e}"));
        (token.clone(), parsed.id().to_string())
    }

    /// `inspect ID --json`.
    pub fn inspect(&self, id: &str) -> Value {
        let run = self.run(&["inspect", id, "--json"]);
        assert_eq!(run.code, Some(0), "inspect failed: {}", run.stderr);
        run.json()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            drop_schema(&self.url, schema);
        }
    }
}

/// What a run of the process gave.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout's first line.
    pub fn first_line(&self) -> &str {
        self.stdout.lines().next().unwrap_or("")
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// stdout as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Asserts that neither stream contains `secret`.
    pub fn assert_hides(&self, secret: &str) {
        assert!(!self.stdout.contains(secret), "stdout shows a secret");
        assert!(!self.stderr.contains(secret), "stderr shows a secret");
    }
}

/// Runs `command` with `stdin` piped in.
pub fn run_command(command: &mut Command, stdin: &str) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn tokenctl: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // The process may exit before reading (a usage error): a broken pipe is fine.
        let _ = input.write_all(stdin.as_bytes());
    }
    let output: Output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for tokenctl: {e}"));
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `tokenctl` without any store or key in its environment.
pub fn bare(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenctl"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TOKEN_") {
            command.env_remove(name);
        }
    }
    command.current_dir(dir);
    command
}

/// A fresh schema name (`tctl_` and 16 hex digits).
pub fn fresh_schema() -> String {
    let id = token_core::TokenId::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut name = String::from("tctl_");
    for b in &id.as_bytes()[..8] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to drop {schema}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("drop schema {schema}: {e}"));
    });
}

/// Writes `text` to `dir/name` (creating parent directories).
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    path
}

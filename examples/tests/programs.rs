//! Runs the example programs as a newcomer does, as separate processes: the quickstart on a
//! SQLite file, and the server from start-up (its printed admin token) to a clean exit on
//! SIGTERM.
//!
//! The binaries are the ones `cargo test` builds next to this test (`target/<profile>/examples/`;
//! examples are built by default when testing). Run through `cargo test --workspace` or
//! `cargo test -p examples`, not with a `--test` filter alone, which does not rebuild them.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<name>`, found from this test's own path (`…/deps/programs-…`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p examples` (it builds the examples)",
        path.display()
    );
    path
}

#[test]
fn quickstart_runs_every_step_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quickstart.db");
    let output = Command::new(example("quickstart"))
        .env("TOKEN_QUICKSTART_DB", &db)
        .env_remove("TOKEN_HASH_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for step in [
        "1. store: SQLite file",
        "2. issued token",
        "3. validate for widgets:read -> ok, subject user:42",
        "4. validate for widgets:write -> refused",
        "5. revoked 1 token(s)",
        "6. validate after revoke -> refused: token has been revoked",
        "audit #1: issued",
        "denied (reason: insufficient_scope)",
        "revoked (reason: quickstart finished)",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    assert!(db.exists(), "the SQLite file was created");
}

/// Kills the child if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn server_prints_its_admin_token_and_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("server.db").display());
    let child = Command::new(example("server"))
        .env("TOKEN_EXAMPLE_ADDR", "127.0.0.1:0")
        .env("TOKEN_EXAMPLE_DATABASE_URL", &url)
        .env_remove("TOKEN_HASH_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Running(child);
    // Lines are read on a thread, so a server that hangs before printing fails the test after a
    // deadline instead of hanging it.
    let stdout = server.0.stdout.take().unwrap();
    let (lines, printed) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let (mut base, mut admin) = (None, None);
    while admin.is_none() {
        let line = printed
            .recv_timeout(Duration::from_secs(60))
            .expect("no admin token line within 60 s (or the server exited)");
        if let Some(address) = line.strip_prefix("listening on ") {
            base = Some(address.to_owned());
        }
        // The contract: the token alone after `admin token: `, on a line of its own.
        if let Some(token) = line.strip_prefix("admin token: ") {
            assert!(!token.contains(' '), "{line:?}");
            admin = Some(token.to_owned());
        }
    }
    let (base, admin) = (base.expect("no listening line"), admin.unwrap_or_default());
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    // The printed token is the bootstrap admin: it can issue.
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"subject": "s", "scopes": ["widgets:read"], "ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);

    let pid = server.0.id().to_string();
    // The shell's builtin `kill`: no procps needed.
    let status = Command::new("sh")
        .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    reader.join().unwrap();
    let rest: Vec<String> = printed.try_iter().collect();
    let mut stderr = String::new();
    if let Some(mut pipe) = server.0.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    assert!(exit.success(), "exit {exit:?}; stderr: {stderr}");
    assert!(rest.iter().any(|l| l == "shut down cleanly"), "{rest:?}");
}

#[test]
fn server_never_prints_a_database_password() {
    let output = Command::new(example("server"))
        .env("TOKEN_EXAMPLE_ADDR", "127.0.0.1:0")
        .env("TOKEN_EXAMPLE_DATABASE_URL", "mysql://app:s3cr3t-pw@db/x")
        .env_remove("TOKEN_HASH_KEY")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "MySQL is not supported");
    assert!(
        !stdout.contains("s3cr3t-pw") && !stderr.contains("s3cr3t-pw"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("storage: mysql://app:***@db/x"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
}

#[test]
fn dpop_client_gets_a_bound_token_and_sees_replays_and_bearer_refused() {
    let output = Command::new(example("dpop_client")).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for step in [
        "2. issued a token bound to that key",
        "3. GET /widgets with a fresh proof -> 200 OK",
        "4. GET /widgets with another fresh proof -> 200 OK",
        "5. the first proof replayed -> 401 Unauthorized",
        "error=\"invalid_dpop_proof\"",
        "6. the token sent as Bearer, without a proof -> 401 Unauthorized",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("example_"),
        "a token string was printed:\n{stdout}"
    );
}

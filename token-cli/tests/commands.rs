//! Every subcommand end to end: the built `tokenctl` as a process against a SQLite file and
//! against PostgreSQL, asserting on stdout, stderr and exit codes.

mod common;

use common::{Backend, Env, PREFIX, bare, run_command, write};
use serde_json::Value;

/// One `#[test]` per backend for each scenario.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $scenario() {
                    if let Some(env) = super::Env::new(super::Backend::Sqlite, stringify!($scenario)) {
                        super::$scenario(&env);
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $scenario() {
                    if let Some(env) = super::Env::new(super::Backend::Postgres, stringify!($scenario)) {
                        super::$scenario(&env);
                    }
                }
            )*
        }
    };
}

on_both_stores!(
    issue_prints_the_token_alone_and_list_and_inspect_show_it,
    issue_json_and_bad_requests_say_what_is_wrong,
    revoke_by_id_subject_family_label_and_issue_time,
    bulk_revoke_asks_first_and_a_no_changes_nothing,
    suspend_and_resume_pause_without_ending,
    rotate_prints_the_successor_once,
    audit_queries_exports_and_verifies_the_trail,
    sweep_and_stale_report_what_they_find,
    scan_checks_revokes_and_the_audit_trail_says_who_and_why,
);

fn issue_prints_the_token_alone_and_list_and_inspect_show_it(env: &Env) {
    let run = env.run(&[
        "issue",
        "--subject",
        "user:42",
        "--scope",
        "widgets:read",
        "--scope",
        "widgets:write",
        "--ttl",
        "30d",
        "--name",
        "laptop",
        "--label",
        "team=payments",
        "--max-uses",
        "9",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let token = run.first_line().to_owned();
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "the token is alone on stdout"
    );
    let parsed = token_core::parse_token(&token).unwrap();
    assert_eq!(parsed.prefix(), PREFIX);
    let id = parsed.id().to_string();
    assert!(
        run.stderr.contains(&id),
        "stderr names the id: {}",
        run.stderr
    );
    assert!(!run.stderr.contains(&token));

    let list = env.run(&["list"]);
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let header = list.stdout.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("SUBJECT") && header.contains("STATE"));
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .expect("the token is listed");
    assert!(row.contains("user:42") && row.contains("active") && row.contains("laptop"));
    // Aligned: every column starts at the same offset in the header and the row.
    assert_eq!(header.find("SUBJECT"), row.find("user:42"));
    list.assert_hides(&token);

    let listed = env
        .run(&[
            "list",
            "--json",
            "--label",
            "team=payments",
            "--state",
            "active",
        ])
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let none = env.run(&["list", "--json", "--subject", "nobody"]).json();
    assert_eq!(none, Value::Array(vec![]));

    let record = env.inspect(&id);
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["subject"], "user:42");
    assert_eq!(record["state"], "active");
    assert_eq!(record["max_uses"], 9);
    assert_eq!(record["labels"]["team"], "payments");
    assert_eq!(
        record["scopes"],
        serde_json::json!(["widgets:read", "widgets:write"])
    );
    let expires = time::OffsetDateTime::parse(
        record["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_30_days = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    assert!((expires - in_30_days).abs() < time::Duration::minutes(5));
    let table = env.run(&["inspect", &id]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("subject") && l.contains("user:42"))
    );
    assert!(!table.stdout.contains(&token) && !record.to_string().contains(&token));

    let unknown = env.run(&["inspect", "0000000000000000000000"]);
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown.stderr.contains("no token with id"),
        "{}",
        unknown.stderr
    );
    let malformed = env.run(&["inspect", "nope"]);
    assert_eq!(malformed.code, Some(2), "a malformed id is a usage error");
}

fn issue_json_and_bad_requests_say_what_is_wrong(env: &Env) {
    let run = env.run(&["issue", "--subject", "ci", "--scope", "deploy", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let issued = run.json();
    let token = issued["token"].as_str().unwrap();
    assert_eq!(
        token_core::parse_token(token).unwrap().id().to_string(),
        issued["id"].as_str().unwrap()
    );
    assert_eq!(issued["record"]["state"], "active");

    let limited = env.run(&[
        "issue",
        "--subject",
        "ci",
        "--scope",
        "deploy",
        "--max-uses",
        "10",
        "--refill",
        "daily",
        "--rate-limit",
        "requests=5/60s",
        "--rate-limit",
        "expensive=1/3600s?",
        "--json",
    ]);
    assert_eq!(limited.code, Some(0), "{}", limited.stderr);
    let record = &limited.json()["record"];
    assert_eq!(record["use_refill"], "every 86400s");
    assert_eq!(record["remaining_uses"], 10);
    assert_eq!(
        record["rate_limits"],
        serde_json::json!([
            {"name": "expensive", "limit": 1, "per_seconds": 3600, "on_demand": true},
            {"name": "requests", "limit": 5, "per_seconds": 60}
        ])
    );
    let bad_limit = env.run(&[
        "issue",
        "--subject",
        "ci",
        "--scope",
        "deploy",
        "--rate-limit",
        "requests=5/minute",
    ]);
    assert_eq!(bad_limit.code, Some(2));
    assert!(
        bad_limit.stderr.contains("requests=100/60s"),
        "{}",
        bad_limit.stderr
    );
    let refill_alone = env.run(&[
        "issue",
        "--subject",
        "ci",
        "--scope",
        "deploy",
        "--refill",
        "daily",
    ]);
    assert_eq!(refill_alone.code, Some(2), "{}", refill_alone.stderr);

    let too_long = env.run(&[
        "issue",
        "--subject",
        "ci",
        "--scope",
        "deploy",
        "--ttl",
        "400d",
    ]);
    assert_eq!(too_long.code, Some(1));
    assert!(
        too_long
            .stderr
            .contains("400d exceeds the policy maximum 90d"),
        "{}",
        too_long.stderr
    );
    assert!(too_long.stdout.is_empty());

    let bad_scope = env.run(&["issue", "--subject", "ci", "--scope", "Widgets:READ"]);
    assert_eq!(bad_scope.code, Some(1));
    assert!(bad_scope.stderr.contains("scope"), "{}", bad_scope.stderr);

    let bad_ttl = env.run(&[
        "issue",
        "--subject",
        "ci",
        "--scope",
        "deploy",
        "--ttl",
        "soon",
    ]);
    assert_eq!(bad_ttl.code, Some(2));
    assert!(bad_ttl.stderr.contains("30d"), "{}", bad_ttl.stderr);

    let no_prefix = run_command(
        env.command().env_remove("TOKEN_PREFIX").args([
            "issue",
            "--subject",
            "ci",
            "--scope",
            "deploy",
        ]),
        "",
    );
    assert_eq!(no_prefix.code, Some(1));
    assert!(
        no_prefix.stderr.contains("--prefix"),
        "{}",
        no_prefix.stderr
    );

    let no_key = run_command(
        env.command().env_remove("TOKEN_HASH_KEY").args([
            "issue",
            "--subject",
            "ci",
            "--scope",
            "deploy",
        ]),
        "",
    );
    assert_eq!(no_key.code, Some(1));
    assert!(
        no_key.stderr.contains("TOKEN_HASH_KEY is not set"),
        "{}",
        no_key.stderr
    );

    let short_key = "abcdef0123";
    let bad_key = run_command(
        env.command().env("TOKEN_HASH_KEY", short_key).args([
            "issue",
            "--subject",
            "ci",
            "--scope",
            "deploy",
        ]),
        "",
    );
    assert_eq!(bad_key.code, Some(1));
    assert!(
        bad_key.stderr.contains("64 hexadecimal characters"),
        "{}",
        bad_key.stderr
    );
    bad_key.assert_hides(short_key);

    // A token issued under an old key still checks once the key is rotated.
    let (old_token, _) = env.issue(&[]);
    let new_key = "0808080808080808080808080808080808080808080808080808080808080808";
    let leak = write(env.path(), "leak.txt", &format!("key={old_token}\n"));
    let rotated_env = |cmd: &mut std::process::Command| {
        cmd.env("TOKEN_HASH_KEY", format!("2:{new_key}"))
            .env("TOKEN_HASH_KEYS_OLD", format!("1:{}", common::HASH_KEY));
    };
    let mut scan = env.command();
    rotated_env(&mut scan);
    let checked = run_command(
        scan.args(["scan", "--format", "json", leak.to_str().unwrap()]),
        "",
    );
    assert_eq!(checked.code, Some(3), "{}", checked.stderr);
    assert_eq!(checked.json_lines()[0]["state"], "live");
    let mut without_old = env.command();
    without_old.env("TOKEN_HASH_KEY", format!("2:{new_key}"));
    let missing = run_command(
        without_old.args(["scan", "--format", "json", leak.to_str().unwrap()]),
        "",
    );
    assert_eq!(missing.json_lines()[0]["state"], "hash_key_missing");
}

fn revoke_by_id_subject_family_label_and_issue_time(env: &Env) {
    let (_, by_id) = env.issue(&[]);
    let run = env.run(&["revoke", &by_id, "--reason", "rotated out"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), by_id, "prints what it revoked");
    let record = env.inspect(&by_id);
    assert_eq!(record["state"], "revoked");
    assert_eq!(record["revoke_reason"], "rotated out");
    assert_eq!(record["revoked_by"], "tokenctl");
    let again = env.run(&["revoke", &by_id, "--json"]).json();
    assert_eq!(again["count"], 0, "idempotent: nothing new revoked");

    let subject = |s: &str| env.issue(&["--subject", s]).1;
    let (a, b) = (subject("alice"), subject("alice"));
    let other = subject("bob");
    let revoked = env
        .run(&["revoke", "--subject", "alice", "--yes", "--json"])
        .json();
    let mut ids: Vec<&str> = revoked["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(env.inspect(&other)["state"], "active");

    let labelled = env.issue(&["--label", "team=payments"]).1;
    let run = env.run(&["revoke", "--label", "team=payments", "--yes"]);
    assert_eq!(run.stdout.trim(), labelled);
    assert_eq!(env.inspect(&other)["state"], "active");

    let family = env.issue(&[]).1;
    let run = env.run(&[
        "revoke",
        "--family",
        &family,
        "--yes",
        "--actor",
        "oncall:ann",
    ]);
    assert_eq!(run.stdout.trim(), family);
    assert_eq!(env.inspect(&family)["revoked_by"], "oncall:ann");

    let run = env.run(&["revoke", "--issued-before", "now", "--yes", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.json()["revoked"][0], other.as_str());

    let future = env.run(&["revoke", "--issued-before", "2999-01-01T00:00:00Z", "--yes"]);
    assert_eq!(future.code, Some(1));
    assert!(future.stderr.contains("after now"), "{}", future.stderr);
    let none = env.run(&["revoke"]);
    assert_eq!(none.code, Some(2), "a selector is required");
    let two = env.run(&["revoke", &by_id, "--subject", "x"]);
    assert_eq!(two.code, Some(2), "one selector at a time");
}

fn suspend_and_resume_pause_without_ending(env: &Env) {
    let (_, id) = env.issue(&["--subject", "dave"]);
    let run = env.run(&["suspend", &id, "--reason", "INC-7"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), id, "prints what it suspended");
    let record = env.inspect(&id);
    assert_eq!(record["state"], "suspended");
    assert!(record["suspended_at"].is_string());
    let resumed = env.run(&["resume", &id, "--json"]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(resumed.json()["resumed"][0], id.as_str());
    assert_eq!(env.inspect(&id)["state"], "active");

    let other = env.issue(&["--subject", "dave"]).1;
    let refused = env.run_with_stdin(&["suspend", "--subject", "dave"], "n\n");
    assert_eq!(refused.code, Some(1), "a bulk suspension asks first");
    assert_eq!(env.inspect(&other)["state"], "active");
    let bulk = env
        .run(&["suspend", "--subject", "dave", "--yes", "--json"])
        .json();
    assert_eq!(bulk["count"], 2);

    env.run(&["revoke", &id]);
    let revive = env.run(&["resume", &id]);
    assert_eq!(revive.code, Some(1), "a revoked token is never resumed");
    assert_eq!(env.inspect(&id)["state"], "revoked");
    let none = env.run(&["suspend"]);
    assert_eq!(none.code, Some(2), "a selector is required");
    let audit = env.run(&["audit", "--kind", "suspended", "--json"]);
    assert!(audit.stdout.contains("INC-7"), "{}", audit.stdout);
}

fn bulk_revoke_asks_first_and_a_no_changes_nothing(env: &Env) {
    let (_, id) = env.issue(&["--subject", "carol"]);
    for answer in ["", "n\n", "yes please\n"] {
        let run = env.run_with_stdin(&["revoke", "--subject", "carol"], answer);
        assert_eq!(run.code, Some(1), "answer {answer:?}");
        assert!(
            run.stderr.contains("[y/N]") && run.stderr.contains("--yes"),
            "{}",
            run.stderr
        );
        assert_eq!(env.inspect(&id)["state"], "active");
    }
    let run = env.run_with_stdin(&["revoke", "--subject", "carol"], "y\n");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), id);
    assert_eq!(env.inspect(&id)["state"], "revoked");
}

fn rotate_prints_the_successor_once(env: &Env) {
    let (old_token, old) = env.issue(&["--ttl", "7d"]);
    let run = env.run(&["rotate", &old, "--grace", "1h"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let new_token = run.first_line();
    assert_eq!(run.stdout.lines().count(), 1);
    let new = token_core::parse_token(new_token).unwrap().id().to_string();
    assert_ne!(new, old);
    assert!(!run.stderr.contains(&old_token) && !run.stderr.contains(new_token));
    let successor = env.inspect(&new);
    assert_eq!(successor["rotated_from"], old.as_str());
    assert_eq!(env.inspect(&old)["rotated_to"], new.as_str());
    // Rotation never extends the lifetime.
    assert!(
        successor["expires_at"].as_str()
            <= env.inspect(&old)["expires_at"]
                .as_str()
                .map(|_| successor["expires_at"].as_str().unwrap())
    );

    let again = env.run(&["rotate", &old, "--grace", "0s"]);
    assert_eq!(again.code, Some(1), "a token has at most one successor");
    assert!(again.stdout.is_empty());
    let json = env.run(&["rotate", &new, "--grace", "0s", "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    assert!(
        json.json()["token"]
            .as_str()
            .unwrap()
            .starts_with("acme_live_")
    );
}

fn audit_queries_exports_and_verifies_the_trail(env: &Env) {
    let (_, id) = env.issue(&[]);
    env.run(&["revoke", &id, "--reason", "done"]);
    let events = env.run(&["audit", "--token", &id, "--json"]).json();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["issued", "revoked"]);
    let revoked = env.run(&["audit", "--kind", "revoked", "--json"]).json();
    assert_eq!(revoked.as_array().unwrap().len(), 1);
    assert_eq!(revoked[0]["reason"], "done");
    let table = env.run(&["audit", "--by", "tokenctl"]);
    assert!(table.stdout.lines().next().unwrap().starts_with("SEQ"));
    assert_eq!(table.stdout.lines().count(), 3, "{}", table.stdout);

    let lines = env.run(&["audit", "--jsonl"]).json_lines();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["hash"].as_str().is_some_and(|h| h.len() == 64))
    );
    let recent = env.run(&["audit", "--since", "1h", "--jsonl"]).json_lines();
    assert_eq!(recent.len(), 2);
    let none = env.run(&["audit", "--until", "1h", "--jsonl"]).json_lines();
    assert!(none.is_empty());
    let bad_kind = env.run(&["audit", "--kind", "exploded"]);
    assert_eq!(bad_kind.code, Some(2));
    assert!(bad_kind.stderr.contains("policy_violation"));

    let verify = env.run(&["audit", "verify", "--json"]);
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    let report = verify.json();
    assert_eq!(report["intact"], true);
    assert_eq!(report["checked"], 2);
    let human = env.run(&["audit", "verify"]);
    assert!(human.stdout.contains("chain intact"), "{}", human.stdout);

    tamper_with_first_event(env);
    let broken = env.run(&["audit", "verify"]);
    assert_eq!(broken.code, Some(1), "{}", broken.stdout);
    assert!(broken.stdout.contains("BROKEN"));
    assert!(
        broken.stderr.contains("does not verify"),
        "{}",
        broken.stderr
    );
}

/// Edits the first audit event's actor behind the library's back.
fn tamper_with_first_event(env: &Env) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        match env.backend {
            Backend::Sqlite => {
                let mut db = sqlx::SqliteConnection::connect(&env.url).await.unwrap();
                sqlx::query("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
                    .execute(&mut db)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let mut db = sqlx::PgConnection::connect(&env.url).await.unwrap();
                let schema = env.schema.as_deref().unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE \"{schema}\".audit_events SET actor = 'mallory' WHERE seq = 1"
                )))
                .execute(&mut db)
                .await
                .unwrap();
            }
        }
    });
}

fn sweep_and_stale_report_what_they_find(env: &Env) {
    let (_, id) = env.issue(&[]);
    let sweep = env.run(&["sweep", "--json"]);
    assert_eq!(sweep.code, Some(0), "{}", sweep.stderr);
    let report = sweep.json();
    for field in ["expired", "unused_revoked", "purged", "audit_truncated"] {
        assert_eq!(report[field], 0, "{field}");
    }
    let table = env.run(&["sweep"]);
    assert!(table.stdout.contains("purged"));

    let stale = env.run(&["stale", "--unused-for", "0s", "--json"]).json();
    assert_eq!(stale[0]["id"], id.as_str());
    let fresh = env.run(&["stale", "--unused-for", "1d", "--json"]).json();
    assert_eq!(fresh, Value::Array(vec![]));
    env.run(&["revoke", &id]);
    let active_only = env.run(&["stale", "--unused-for", "0s", "--json"]).json();
    assert_eq!(active_only, Value::Array(vec![]));
    let any = env
        .run(&["stale", "--unused-for", "0s", "--any-state", "--json"])
        .json();
    assert_eq!(any[0]["state"], "revoked");
}

fn scan_checks_revokes_and_the_audit_trail_says_who_and_why(env: &Env) {
    let (leaked, id) = env.issue(&["--subject", "deploy-bot"]);
    let (kept, kept_id) = env.issue(&[]);
    let _ = kept;
    let (gone, gone_id) = env.issue(&[]);
    env.run(&["revoke", &gone_id]);
    write(
        env.path(),
        "repo/.env",
        &format!("DEPLOY_TOKEN={leaked}\nOLD={gone}\n"),
    );
    write(env.path(), "repo/notes.md", "nothing here\n");

    let offline = env.run(&["scan", "repo", "--offline"]);
    assert_eq!(offline.code, Some(3), "unchecked tokens count as live");
    assert!(
        offline
            .stdout
            .contains(&format!("repo/.env:1:14: acme_live token {id}")),
        "{}",
        offline.stdout
    );

    let checked = env.run(&["scan", "repo", "--format", "json"]);
    assert_eq!(checked.code, Some(3), "{}", checked.stderr);
    let findings = checked.json_lines();
    assert_eq!(findings.len(), 2);
    assert_eq!(
        (findings[0]["id"].as_str(), findings[0]["state"].as_str()),
        (Some(id.as_str()), Some("live"))
    );
    assert_eq!(
        (findings[1]["id"].as_str(), findings[1]["state"].as_str()),
        (Some(gone_id.as_str()), Some("revoked"))
    );
    assert_eq!(env.inspect(&id)["use_count"], 0, "checking records no use");

    let declined = env.run_with_stdin(&["scan", "repo", "--revoke"], "n\n");
    assert_eq!(declined.code, Some(3), "declined: live tokens remain");
    assert!(
        declined.stderr.contains("not confirmed"),
        "{}",
        declined.stderr
    );
    assert!(
        declined.stdout.contains(&format!("{id} live")),
        "{}",
        declined.stdout
    );
    assert_eq!(env.inspect(&id)["state"], "active");

    let revoke = env.run(&["scan", "repo", "--revoke", "--yes"]);
    assert_eq!(
        revoke.code,
        Some(0),
        "every live token is dead now: {}",
        revoke.stderr
    );
    assert!(
        revoke.stderr.contains("revoked 1 leaked token"),
        "{}",
        revoke.stderr
    );
    for run in [&offline, &checked, &declined, &revoke] {
        run.assert_hides(&leaked);
        run.assert_hides(&gone);
    }
    let record = env.inspect(&id);
    assert_eq!(record["state"], "revoked");
    assert_eq!(record["revoked_by"], "tokenctl scan");
    assert_eq!(record["revoke_reason"], "leaked: found in repo/.env");
    assert_eq!(
        env.inspect(&kept_id)["state"],
        "active",
        "only found tokens are revoked"
    );
    let trail = env
        .run(&["audit", "--token", &id, "--kind", "revoked", "--json"])
        .json();
    assert_eq!(trail[0]["actor"], "tokenctl scan");
    assert_eq!(trail[0]["reason"], "leaked: found in repo/.env");

    // stdin, and a confirmation that cannot be asked there.
    let from_stdin = env.run_with_stdin(&["scan", "-", "--format", "json"], &format!("x {kept}\n"));
    assert_eq!(from_stdin.code, Some(3));
    assert_eq!(from_stdin.json_lines()[0]["path"], "-");
    let ask = env.run_with_stdin(&["scan", "-", "--revoke"], &format!("x {kept}\n"));
    assert_eq!(ask.code, Some(1));
    assert!(ask.stderr.contains("--yes"), "{}", ask.stderr);
    from_stdin.assert_hides(&kept);
    assert_eq!(env.inspect(&kept_id)["state"], "active");
}

#[test]
fn keygen_prints_the_key_alone_on_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_command(bare(dir.path()).arg("keygen"), "");
    assert_eq!(run.code, Some(0));
    let key = run.first_line();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(run.stderr.contains("TOKEN_HASH_KEY"));
    let second = run_command(bare(dir.path()).args(["keygen", "--json"]), "").json();
    assert_eq!(second["key"].as_str().unwrap().len(), 64);
    assert_ne!(second["key"].as_str().unwrap(), key, "keys are random");
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = run_command(bare(dir.path()).arg("frobnicate"), "");
    assert_eq!(unknown.code, Some(2));
    let help = run_command(bare(dir.path()).arg("--help"), "");
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("scan") && help.stdout.contains("Exit codes"));

    let no_store = run_command(bare(dir.path()).arg("list"), "");
    assert_eq!(no_store.code, Some(1));
    assert!(
        no_store.stderr.contains("--database") && no_store.stderr.contains("TOKEN_DATABASE_URL"),
        "{}",
        no_store.stderr
    );

    let password = "hunter2secret";
    let url = format!("mysql://admin:{password}@db.internal/tokens");
    let unsupported = run_command(bare(dir.path()).args(["list", "--database", &url]), "");
    assert_eq!(unsupported.code, Some(1));
    assert!(
        unsupported.stderr.contains("sqlite://"),
        "{}",
        unsupported.stderr
    );
    unsupported.assert_hides(password);

    let missing = dir.path().join("missing.db");
    let absent = run_command(
        bare(dir.path()).args([
            "list",
            "--database",
            &format!("sqlite://{}", missing.display()),
        ]),
        "",
    );
    assert_eq!(absent.code, Some(1));
    assert!(
        absent.stderr.contains("tokenctl migrate"),
        "{}",
        absent.stderr
    );
    assert!(
        !missing.exists(),
        "a typo does not leave an empty database behind"
    );
}

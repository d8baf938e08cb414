//! The scanner over a generated corpus: thousands of tokens in varied files and encodings, plus
//! near misses (wrong checksum, wrong length, other prefixes, other vendors' tokens, random
//! base64). `tokenctl scan` must find every token at its line and column and nothing else,
//! never print a secret, and `--revoke` must leave none of the issued ones valid.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use common::{Backend, Env, HASH_KEY, PREFIX};
use rand::Rng as _;
use rand::SeedableRng as _;
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, PlaintextToken, RevokeSelector, ScopeSet, TokenManager,
    TokenPrefix,
};

/// Tokens issued into the store (the rest are well-formed tokens the store never saw).
const ISSUED: usize = 400;
/// Issued tokens that are suspended (a suspension can be lifted: `--revoke` kills them too).
const SUSPENDED: usize = 10;
/// Every token embedded in the corpus.
const TOTAL: usize = 3000;

/// Where a token was put: (path, line, column) -> id.
type Expected = BTreeMap<(String, usize, usize), String>;

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_alnum(rng: &mut impl rand::Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())]))
        .collect()
}

fn percent_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// One line holding `token`, and the 1-based column (in characters) the scanner reports.
fn embed(rng: &mut impl rand::Rng, token: &str) -> (String, usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let at = |before: &str| before.chars().count() + 1;
    match rng.random_range(0..14) {
        0 => (format!("API_KEY={token}"), at("API_KEY=")),
        1 => (
            format!("export ACME_TOKEN=\"{token}\""),
            at("export ACME_TOKEN=\""),
        ),
        2 => (
            format!("  token: {token}  # do not commit"),
            at("  token: "),
        ),
        3 => (
            format!("{{\"service\": \"billing\", \"token\": \"{token}\"}}"),
            at("{\"service\": \"billing\", \"token\": \""),
        ),
        4 => (
            format!("curl -H 'Authorization: Bearer {token}' https://api.example/v1"),
            at("curl -H 'Authorization: Bearer "),
        ),
        5 => (
            format!("2026-12-01T10:00:00Z INFO request token={token} user=42 ms=3"),
            at("2026-12-01T10:00:00Z INFO request token="),
        ),
        6 => (
            format!("    let key = \"{token}\"; // café ☕"),
            at("    let key = \""),
        ),
        7 => (format!("« {token} »"), at("« ")),
        8 => {
            let before = "GET /cb?next=https%3A%2F%2Fapp%2Fhome%3Ftoken%3D";
            (format!("{before}{token}%26x%3D1 HTTP/1.1"), at(before))
        }
        9 => (
            format!("redirect_uri=x&token={}", percent_all(token)),
            at("redirect_uri=x&token="),
        ),
        10 => {
            let before = "{\"msg\":\"first line\\n";
            (format!("{before}{token}\\nlast line\"}}"), at(before))
        }
        11 => {
            let escaped = token.replace('_', "\\u005f");
            (format!("{{\"k\":\"{escaped}\"}}"), at("{\"k\":\""))
        }
        12 => {
            let encoded = b64.encode(format!("ci:{token}"));
            (
                format!("Authorization: Basic {encoded}"),
                at("Authorization: Basic "),
            )
        }
        _ => {
            let encoded = url_safe.encode(format!("ACME_TOKEN={token}\n"));
            (format!("  acme-token: {encoded}"), at("  acme-token: "))
        }
    }
}

/// A line that looks like it could hold a token and does not.
fn near_miss(rng: &mut impl rand::Rng, sample: &str) -> String {
    let prefix = TokenPrefix::new(PREFIX).unwrap();
    match rng.random_range(0..12) {
        0 => {
            // Wrong checksum: one checksum character changed.
            let mut bytes = sample.as_bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
            format!("TOKEN={}", String::from_utf8(bytes).unwrap())
        }
        1 => format!("TOKEN={}", &sample[..sample.len() - 1]), // one short
        2 => format!("TOKEN={}{}", sample, random_alnum(rng, 1)), // one long
        3 => format!("TOKEN={PREFIX}_{}", random_alnum(rng, 71)), // random body: CRC fails
        4 => {
            let other = PlaintextToken::generate(&TokenPrefix::new("other_live").unwrap()).unwrap();
            format!("OTHER={}", other.expose_secret())
        }
        5 => format!("GITHUB_TOKEN=ghp_{}", random_alnum(rng, 36)),
        6 => format!(
            "aws_access_key_id = AKIA{}",
            random_alnum(rng, 16).to_uppercase()
        ),
        7 => format!(
            "SLACK=xoxb-{}-{}-{}",
            rng.random_range(100_000..999_999),
            rng.random_range(100_000..999_999),
            random_alnum(rng, 24)
        ),
        8 => format!("STRIPE=sk_live_{}", random_alnum(rng, 99)),
        9 => format!(
            "blob: {}",
            base64::engine::general_purpose::STANDARD
                .encode((0..120).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
        ),
        10 => {
            // A token glued to a word on the right: not a token boundary.
            let token = PlaintextToken::generate(&prefix).unwrap();
            format!("id={}x", token.expose_secret())
        }
        _ => format!("sha256:{} uuid {}", hex(rng, 32), hex(rng, 16)),
    }
}

fn hex(rng: &mut impl rand::Rng, bytes: usize) -> String {
    (0..bytes).fold(String::new(), |mut out, _| {
        let _ = write!(out, "{:02x}", rng.random::<u8>());
        out
    })
}

const FILES: [&str; 9] = [
    ".env",
    "config/app.json",
    "deploy/values.yaml",
    "logs/app.log",
    ".bash_history",
    "src/lib.rs",
    "k8s/secret.yaml",
    "docs/notes.md",
    "vendor/deep/nested/dir/settings.ini",
];

struct Corpus {
    expected: Expected,
    ignored_ids: Vec<String>,
    secrets: Vec<String>,
}

fn generate(env: &Env, tokens: &[PlaintextToken]) -> Corpus {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut files: Vec<String> = vec![String::new(); FILES.len()];
    let mut lines = vec![0usize; FILES.len()];
    let mut expected = Expected::new();
    let sample = tokens[0].expose_secret().to_owned();
    let push = |files: &mut Vec<String>, lines: &mut Vec<usize>, file: usize, line: &str| {
        files[file].push_str(line);
        files[file].push('\n');
        lines[file] += 1;
        lines[file]
    };
    for token in tokens {
        let file = rng.random_range(0..FILES.len());
        for _ in 0..rng.random_range(0..3) {
            let filler = near_miss(&mut rng, &sample);
            push(&mut files, &mut lines, file, &filler);
        }
        let (text, column) = embed(&mut rng, token.expose_secret());
        let line = push(&mut files, &mut lines, file, &text);
        expected.insert(
            (FILES[file].to_owned(), line, column),
            token.id().to_string(),
        );
    }
    for (name, text) in FILES.iter().zip(&files) {
        common::write(env.path(), &format!("corpus/{name}"), text);
    }
    // Ignored by .gitignore: found only with --no-ignore.
    let hidden = PlaintextToken::generate(&TokenPrefix::new(PREFIX).unwrap()).unwrap();
    common::write(env.path(), "corpus/.gitignore", "build/\n");
    common::write(
        env.path(),
        "corpus/build/out.txt",
        &format!("KEY={}\n", hidden.expose_secret()),
    );
    Corpus {
        expected,
        ignored_ids: vec![hidden.id().to_string()],
        secrets: tokens
            .iter()
            .map(|t| t.expose_secret().to_owned())
            .chain([hidden.expose_secret().to_owned()])
            .collect(),
    }
}

/// Issues `ISSUED` tokens into the store and generates the rest offline.
fn tokens(env: &Env) -> Vec<PlaintextToken> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tokens = runtime.block_on(async {
        let options = token_store_sqlite::SqliteStoreOptions::new(&env.url)
            .unwrap()
            .synchronous(token_store_sqlite::Synchronous::Normal);
        let store = token_store_sqlite::SqliteStore::connect_with(options)
            .await
            .unwrap();
        let key = HashKey::from_hex(KeyId::new(1), HASH_KEY).unwrap();
        let manager = TokenManager::builder(store, Keyring::new(key))
            .prefix(PREFIX)
            .unwrap()
            .build()
            .unwrap();
        let mut issued = Vec::new();
        for n in 0..ISSUED {
            let request = IssueRequest::new(
                format!("svc:{}", n % 40),
                ScopeSet::parse("deploy").unwrap(),
            );
            issued.push(manager.issue(request).await.unwrap().token);
        }
        for token in &issued[..SUSPENDED] {
            manager
                .suspend(RevokeSelector::Token(token.id()), "paused")
                .await
                .unwrap();
        }
        issued
    });
    let prefix = TokenPrefix::new(PREFIX).unwrap();
    while tokens.len() < TOTAL {
        tokens.push(PlaintextToken::generate(&prefix).unwrap());
    }
    tokens
}

fn found(run: &common::Run) -> Expected {
    run.json_lines()
        .into_iter()
        .map(|f| {
            assert_eq!(f["prefix"], PREFIX);
            let path = f["path"]
                .as_str()
                .unwrap()
                .strip_prefix("corpus/")
                .unwrap()
                .to_owned();
            let key = (
                path,
                f["line"].as_u64().unwrap() as usize,
                f["column"].as_u64().unwrap() as usize,
            );
            (key, f["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn scan_finds_every_token_in_the_corpus_and_nothing_else_and_revoke_kills_them() {
    let Some(env) = Env::new(Backend::Sqlite, "scan_corpus") else {
        return;
    };
    let tokens = tokens(&env);
    let corpus = generate(&env, &tokens);
    assert_eq!(corpus.expected.len(), TOTAL);
    let secrets = &corpus.secrets;
    let hides = |run: &common::Run| {
        for secret in secrets {
            run.assert_hides(secret);
        }
    };

    // Offline: every token at its place, nothing else.
    let offline = env.run(&["scan", "corpus", "--offline", "--format", "json"]);
    assert_eq!(offline.code, Some(3), "{}", offline.stderr);
    hides(&offline);
    let found_offline = found(&offline);
    let missing: Vec<_> = corpus
        .expected
        .iter()
        .filter(|(k, _)| !found_offline.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = found_offline
        .iter()
        .filter(|(k, _)| !corpus.expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(found_offline, corpus.expected);

    // --no-ignore also reads what .gitignore hides.
    let everything = env.run(&[
        "scan",
        "corpus",
        "--offline",
        "--no-ignore",
        "--format",
        "json",
    ]);
    let all = found(&everything);
    assert_eq!(all.len(), TOTAL + 1);
    assert!(all.values().any(|id| *id == corpus.ignored_ids[0]));

    // Checked against the store: the issued ones live, the others unknown.
    let checked = env.run(&["scan", "corpus", "--format", "json"]);
    assert_eq!(checked.code, Some(3), "{}", checked.stderr);
    let states: BTreeMap<String, usize> =
        checked
            .json_lines()
            .iter()
            .fold(BTreeMap::new(), |mut counts, f| {
                *counts
                    .entry(f["state"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                counts
            });
    assert_eq!(states.get("live"), Some(&(ISSUED - SUSPENDED)));
    assert_eq!(states.get("suspended"), Some(&SUSPENDED));
    assert_eq!(states.get("unknown"), Some(&(TOTAL - ISSUED)));

    // SARIF: one result per finding, at the same places.
    let sarif = env
        .run(&["scan", "corpus", "--offline", "--format", "sarif"])
        .json();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), TOTAL);
    let region = &results[0]["locations"][0]["physicalLocation"]["region"];
    assert!(region["startLine"].as_u64().is_some() && region["startColumn"].as_u64().is_some());
    assert!(!sarif.to_string().contains(tokens[0].expose_secret()));

    // Revoke: one confirmation, then none of the issued tokens is valid.
    let revoke = env.run_with_stdin(&["scan", "corpus", "--revoke"], "y\n");
    assert_eq!(revoke.code, Some(0), "{}", revoke.stderr);
    assert!(
        revoke
            .stderr
            .contains(&format!("revoked {ISSUED} leaked token(s)")),
        "{}",
        revoke.stderr
    );
    assert_eq!(revoke.stderr.matches("[y/N]").count(), 1, "asked once");
    hides(&revoke);
    let after = env.run(&["scan", "corpus", "--format", "json"]);
    assert_eq!(
        after.code,
        Some(0),
        "no live token is left: {}",
        after.stderr
    );
    assert!(after.json_lines().iter().all(|f| f["state"] != "live"));
    let live = env.run(&["list", "--state", "active", "--json"]).json();
    assert_eq!(
        live,
        serde_json::Value::Array(vec![]),
        "none of the issued tokens is valid"
    );
    let suspended = env.run(&["list", "--state", "suspended", "--json"]).json();
    assert_eq!(
        suspended,
        serde_json::Value::Array(vec![]),
        "nor can any be resumed"
    );
    let revoked = env.run(&["list", "--state", "revoked", "--json"]).json();
    assert_eq!(revoked.as_array().map(Vec::len), Some(ISSUED));
    let revocations = env
        .run(&[
            "audit",
            "--kind",
            "revoked",
            "--by",
            "tokenctl scan",
            "--jsonl",
        ])
        .json_lines();
    assert_eq!(revocations.len(), ISSUED);
    assert!(revocations.iter().all(|e| {
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("leaked: found in corpus/")
    }));
}

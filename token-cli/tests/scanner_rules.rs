//! The rules shipped for other scanners (`docs/secret-scanning/`) against a generated corpus.
//!
//! Always: the patterns in `gitleaks.toml`, `trufflehog.yaml` and `.secretlintrc.json` are the
//! documented one and find every token (these tools match by shape, so they also report
//! same-shaped strings whose CRC fails; nothing of another shape). When the tools are installed,
//! they run for real: `detect-secrets` (on PATH, or the `DETECT_SECRETS` variable) with the
//! plugin must report exactly the tokens (it checks the CRC), and secretlint (`SECRETLINT_DIR`:
//! a directory whose `node_modules` has `secretlint` and `@secretlint/secretlint-rule-pattern`)
//! every token-shaped line. Without them, one skip line each.

use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use token_core::{PlaintextToken, TokenPrefix};

const DOCUMENTED: &str =
    r"\b([a-z][a-z0-9_]{0,31})_([0-9A-Za-z]{22})([0-9A-Za-z]{43})([0-9A-Za-z]{6})\b";

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/secret-scanning")
}

fn read_rule(name: &str) -> String {
    std::fs::read_to_string(rules_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The corpus: one candidate per line. Returns (text, lines holding tokens, lines holding
/// same-shaped strings with a wrong CRC), 1-based.
fn corpus() -> (String, Vec<usize>, Vec<usize>) {
    let prefix = TokenPrefix::new("acme_live").unwrap();
    let mut text = String::new();
    let (mut tokens, mut bad_crc) = (Vec::new(), Vec::new());
    let mut line = 0;
    for n in 0..300 {
        let token = PlaintextToken::generate(&prefix).unwrap();
        let secret = token.expose_secret();
        let mut push = |l: String| {
            text.push_str(&l);
            text.push('\n');
            line += 1;
            line
        };
        let at = match n % 4 {
            0 => push(format!("API_KEY={secret}")),
            1 => push(format!("  token: \"{secret}\"")),
            2 => push(format!(
                "curl -H 'Authorization: Bearer {secret}' https://api"
            )),
            _ => push(format!("{{\"token\": \"{secret}\", \"n\": {n}}}")),
        };
        tokens.push(at);
        // Same shape, checksum off by one character.
        let mut altered = secret.as_bytes().to_vec();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'a' { b'b' } else { b'a' };
        bad_crc.push(push(format!(
            "OLD_KEY={}",
            String::from_utf8(altered).unwrap()
        )));
        // Other shapes: one short, another vendor, a hash.
        push(format!("SHORT={}", &secret[..secret.len() - 1]));
        push(format!("GITHUB_TOKEN=ghp_{}", &secret[10..46]));
        push(format!("sha256:{}", "ab".repeat(32)));
    }
    (text, tokens, bad_crc)
}

fn matching_lines(regex: &Regex, text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| regex.is_match(line))
        .map(|(n, _)| n + 1)
        .collect()
}

fn shape_lines(tokens: &[usize], bad_crc: &[usize]) -> Vec<usize> {
    let mut all: Vec<usize> = tokens.iter().chain(bad_crc).copied().collect();
    all.sort_unstable();
    all
}

#[test]
fn shipped_patterns_are_the_documented_one_and_find_every_token() {
    let gitleaks = read_rule("gitleaks.toml");
    let trufflehog = read_rule("trufflehog.yaml");
    let secretlint: serde_json::Value =
        serde_json::from_str(&read_rule(".secretlintrc.json")).unwrap();
    assert!(
        gitleaks.contains(&format!("regex = '''{DOCUMENTED}'''")),
        "gitleaks.toml"
    );
    assert!(
        trufflehog.contains(&format!("token: '{DOCUMENTED}'")),
        "trufflehog.yaml"
    );
    let pattern = secretlint["rules"][0]["options"]["patterns"][0]["patterns"][0]
        .as_str()
        .unwrap();
    assert_eq!(pattern, format!("/{DOCUMENTED}/"), ".secretlintrc.json");
    assert!(read_rule("detect_secrets_plugin.py").contains(&format!("r\"{DOCUMENTED}\"")));

    let (text, tokens, bad_crc) = corpus();
    let regex = Regex::new(DOCUMENTED).unwrap();
    assert_eq!(
        matching_lines(&regex, &text),
        shape_lines(&tokens, &bad_crc)
    );
}

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.into());
    Command::new(&candidate)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| candidate)
}

fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "skipped {test}: {reason}");
}

#[test]
fn detect_secrets_plugin_reports_exactly_the_tokens() {
    let Some(detect_secrets) = tool("DETECT_SECRETS", "detect-secrets") else {
        return skip(
            "detect_secrets_plugin_reports_exactly_the_tokens",
            "detect-secrets is not installed (pip install detect-secrets; or set DETECT_SECRETS)",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let (text, tokens, _) = corpus();
    std::fs::write(dir.path().join("corpus.txt"), &text).unwrap();
    let output = Command::new(detect_secrets)
        .current_dir(dir.path())
        .args(["scan", "--all-files", "--plugin"])
        .arg(rules_dir().join("detect_secrets_plugin.py"))
        .arg("corpus.txt")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let baseline: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut found: Vec<usize> = baseline["results"]["corpus.txt"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|f| f["type"] == "token-lifecycle API token")
                .map(|f| f["line_number"].as_u64().unwrap() as usize)
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    assert_eq!(
        found, tokens,
        "every token, and no same-shaped string whose CRC fails"
    );
    // The baseline holds hashes of what it found, never a token.
    assert!(!String::from_utf8_lossy(&output.stdout).contains("acme_live_"));
}

#[test]
fn secretlint_rule_reports_every_token_shaped_line() {
    let Some(dir) = std::env::var_os("SECRETLINT_DIR").map(PathBuf::from) else {
        return skip(
            "secretlint_rule_reports_every_token_shaped_line",
            "SECRETLINT_DIR is not set (npm i secretlint @secretlint/secretlint-rule-pattern there)",
        );
    };
    let work = tempfile::tempdir().unwrap();
    let (text, tokens, bad_crc) = corpus();
    let file = work.path().join("corpus.txt");
    std::fs::write(&file, &text).unwrap();
    // Through a file: node cuts piped stdout short when secretlint exits.
    let out = work.path().join("report.json");
    let output = Command::new(dir.join("node_modules/.bin/secretlint"))
        .current_dir(&dir)
        .arg("--secretlintrc")
        .arg(rules_dir().join(".secretlintrc.json"))
        .args(["--format", "json", "--output"])
        .arg(&out)
        .arg(&file)
        .output()
        .unwrap();
    let written = std::fs::read(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    let report: serde_json::Value = serde_json::from_slice(&written).unwrap();
    let mut lines: Vec<usize> = report[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["loc"]["start"]["line"].as_u64().unwrap() as usize)
        .collect();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines, shape_lines(&tokens, &bad_crc));
}

//! Printing findings: text lines, JSON lines, or one SARIF 2.1.0 log. No format contains a
//! token's secret: a finding names the path, line, column, prefix and public id.

use std::io::Write;

use serde_json::{Value, json};
use token_core::{FoundState, TokenState};

use super::Hit;

/// A token found in a file, with its state when checked against a store.
#[derive(Debug)]
pub struct Finding {
    /// The file (`-` for stdin).
    pub path: String,
    /// What and where.
    pub hit: Hit,
    /// The state in the store, when checked.
    pub state: Option<FoundState>,
    /// Whether this run revoked it.
    pub revoked_now: bool,
}

/// The state as the scanner reports it: `live`, `suspended` (revoked by `--revoke` too: a
/// suspension can be lifted), `revoked`, `expired` (expired, idle or used up), `unknown`,
/// `wrong_secret`, `hash_key_missing`, `foreign_prefix` or `malformed`.
///
/// ```
/// use token_core::{FoundState, TokenState};
/// use token_cli::scan::report::state_name;
/// assert_eq!(state_name(FoundState::Record(TokenState::IdleExpired)), "expired");
/// assert_eq!(state_name(FoundState::Record(TokenState::NotYetValid)), "live");
/// ```
pub fn state_name(state: FoundState) -> &'static str {
    match state {
        FoundState::Record(TokenState::Active | TokenState::NotYetValid) => "live",
        FoundState::Record(TokenState::Revoked) => "revoked",
        FoundState::Record(TokenState::Suspended) => "suspended",
        FoundState::Record(_) => "expired",
        other => other.as_str(),
    }
}

impl Finding {
    /// The finding as one JSON object: `path`, `line`, `column`, `prefix`, `id`, `encoding`,
    /// and, when checked, `state` (see [`state_name`]), `detail` (the record's exact state) and
    /// `revoked` (whether this run revoked it).
    pub fn to_json(&self) -> Value {
        let mut object = json!({
            "path": self.path,
            "line": self.hit.line,
            "column": self.hit.column,
            "prefix": self.hit.prefix,
            "id": self.hit.id,
            "encoding": self.hit.encoding.as_str(),
        });
        if let Some(state) = self.state {
            object["state"] = json!(state_name(state));
            object["detail"] = json!(state.as_str());
            object["revoked"] = json!(self.revoked_now);
        }
        object
    }

    /// `path:line:column: prefix id (encoding) state`.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}:{}:{}: {} token {}",
            self.path, self.hit.line, self.hit.column, self.hit.prefix, self.hit.id
        );
        if self.hit.encoding != super::Encoding::Plain {
            text.push_str(&format!(" ({})", self.hit.encoding.as_str()));
        }
        if let Some(state) = self.state {
            text.push(' ');
            text.push_str(state_name(state));
            if self.revoked_now {
                text.push_str(", revoked now");
            }
        }
        text
    }
}

/// Writes one line per finding.
pub fn write_text(out: &mut dyn Write, findings: &[Finding]) -> std::io::Result<()> {
    for finding in findings {
        writeln!(out, "{}", finding.to_text())?;
    }
    Ok(())
}

/// Writes one JSON object per finding per line.
pub fn write_json_lines(out: &mut dyn Write, findings: &[Finding]) -> std::io::Result<()> {
    for finding in findings {
        writeln!(out, "{}", finding.to_json())?;
    }
    Ok(())
}

/// The SARIF rule id of a found token.
pub const SARIF_RULE: &str = "leaked-api-token";

/// The findings as one SARIF 2.1.0 log: one run of the `tokenctl` tool with one rule; each
/// finding a result at its file, line and column (columns in Unicode code points), with the
/// token id as a partial fingerprint so tools track it across runs. Live and unchecked tokens
/// are `error`s; revoked, expired and unknown ones `note`s.
pub fn sarif(findings: &[Finding]) -> Value {
    let results: Vec<Value> = findings
        .iter()
        .map(|finding| {
            let state = finding.state.map(state_name);
            let level = match state {
                None | Some("live" | "suspended" | "wrong_secret" | "hash_key_missing") => "error",
                Some(_) => "note",
            };
            let uri = if finding.path == super::walk::STDIN {
                "stdin".to_owned()
            } else {
                finding.path.replace('\\', "/")
            };
            let mut message = format!(
                "A {} API token (id {}) is in this file{}.",
                finding.hit.prefix,
                finding.hit.id,
                match finding.hit.encoding {
                    super::Encoding::Plain => String::new(),
                    other => format!(" ({})", other.as_str()),
                }
            );
            if let Some(state) = state {
                message.push_str(&format!(" State in the store: {state}."));
            }
            if finding.revoked_now {
                message.push_str(" Revoked by this scan.");
            }
            json!({
                "ruleId": SARIF_RULE,
                "ruleIndex": 0,
                "level": level,
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri},
                        "region": {"startLine": finding.hit.line, "startColumn": finding.hit.column},
                    }
                }],
                "partialFingerprints": {"tokenId/v1": finding.hit.id},
                "properties": {"prefix": finding.hit.prefix, "tokenId": finding.hit.id, "state": state},
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "tokenctl",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": [{
                    "id": SARIF_RULE,
                    "name": "LeakedApiToken",
                    "shortDescription": {"text": "An API token is stored in the repository"},
                    "fullDescription": {"text": "A string matching the token format with a valid CRC-32 checksum: a real token, not a random string. Revoke it (tokenctl scan --database ... --revoke) and remove it from the file and its history."},
                    "defaultConfiguration": {"level": "error"},
                    "help": {"text": "Revoke the token with `tokenctl revoke <id>` or `tokenctl scan --revoke`, then remove it from the file."},
                }],
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

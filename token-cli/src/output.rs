//! Printing: aligned tables for people, JSON for scripts, and the one print of a secret.

use std::io::{self, Write};

use comfy_table::{Table, presets};
use serde_json::{Value, json};
use token_core::TokenRecord;
use zeroize::Zeroizing;

use crate::duration::rfc3339_or_dash;
use crate::error::CliError;

/// An aligned table with `header`, no borders (columns separated by spaces).
///
/// ```
/// let mut table = token_cli::output::table(["ID", "SUBJECT"]);
/// table.add_row(["abc", "ci"]);
/// assert!(table.to_string().contains("SUBJECT"));
/// ```
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header);
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Writes `text` and a newline to stdout.
pub fn line(text: impl std::fmt::Display) -> Result<(), CliError> {
    writeln!(io::stdout().lock(), "{text}").map_err(|e| CliError::io("writing to stdout", e))
}

/// Writes a table to stdout (each row's trailing spaces trimmed).
pub fn print_table(table: &Table) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    for row in table.lines() {
        writeln!(out, "{}", row.trim_end()).map_err(|e| CliError::io("writing to stdout", e))?;
    }
    Ok(())
}

/// Writes one JSON document and a newline to stdout.
pub fn json_line(value: &Value) -> Result<(), CliError> {
    line(value)
}

/// Writes a line holding a secret (a new token, a new key) to stdout: from a zeroizing buffer,
/// in one write that ends with the newline, after flushing whatever stdout held, so the bytes go
/// straight to the file descriptor and no unwiped copy stays in stdout's buffer.
pub fn secret_line(parts: &[&str]) -> Result<(), CliError> {
    let mut buffer = Zeroizing::new(Vec::with_capacity(
        parts.iter().map(|p| p.len()).sum::<usize>() + 1,
    ));
    for part in parts {
        buffer.extend_from_slice(part.as_bytes());
    }
    buffer.push(b'\n');
    let mut out = io::stdout().lock();
    out.flush()
        .and_then(|()| out.write_all(&buffer))
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))
}

/// The state a record is in now.
pub fn state_of(record: &TokenRecord) -> token_core::TokenState {
    record.state_at(time::OffsetDateTime::now_utc())
}

/// A record as JSON: the library's [`TokenView`](token_core::TokenView) (the fields the
/// example server's API answers with: `id`, `subject`, `state`, `expires_at`, ...) and the
/// numeric `hash_key_id`; never the hash.
pub fn record_json(record: &TokenRecord) -> Value {
    let mut value = serde_json::to_value(record.view_at(time::OffsetDateTime::now_utc()))
        .unwrap_or_else(|e| json!({"id": record.id, "error": e.to_string()}));
    value["hash_key_id"] = json!(record.hash_key_id.get());
    value
}

/// The columns of a token list.
pub const LIST_HEADER: [&str; 7] = [
    "ID",
    "SUBJECT",
    "STATE",
    "NAME",
    "SCOPES",
    "EXPIRES",
    "LAST USED",
];

/// One row of a token list.
pub fn list_row(record: &TokenRecord) -> [String; 7] {
    [
        record.id.to_string(),
        record.subject.clone(),
        state_of(record).as_str().to_owned(),
        record.name.clone().unwrap_or_else(|| "-".to_owned()),
        record.scopes.to_string(),
        rfc3339_or_dash(record.expires_at),
        rfc3339_or_dash(record.last_used_at),
    ]
}

/// Prints records as a table, or as a JSON array with `--json`.
pub fn print_records(records: &[TokenRecord], json: bool) -> Result<(), CliError> {
    if json {
        return json_line(&Value::Array(records.iter().map(record_json).collect()));
    }
    let mut table = table(LIST_HEADER);
    for record in records {
        table.add_row(list_row(record));
    }
    print_table(&table)
}

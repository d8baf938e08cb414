//! `tokenctl keygen`: a new hash key.

use serde_json::json;
use token_core::{HashKey, KeyId};

use crate::cli::Global;
use crate::error::{CliError, Outcome};
use crate::output::secret_line;

/// Prints a new random key (64 hex characters) alone on stdout's first line, and on stderr
/// where to put it. With `--json`: `{"key": HEX, "env": "TOKEN_HASH_KEY"}` on stdout.
pub fn run(global: &Global) -> Result<Outcome, CliError> {
    let key = HashKey::generate(KeyId::new(1)).map_err(|e| CliError::Config(e.to_string()))?;
    let hex = key.to_hex();
    if global.json {
        let document = zeroize::Zeroizing::new(
            json!({"key": hex.as_str(), "env": crate::keys::HASH_KEY_VAR}).to_string(),
        );
        secret_line(&[&document])?;
    } else {
        secret_line(&[&hex])?;
        eprintln!(
            "Put it in your secret manager and give it to the application and to tokenctl as {}=<key>.\n\
             Keep the old key in {}=1:<old key> while tokens issued under it live.",
            crate::keys::HASH_KEY_VAR,
            crate::keys::OLD_HASH_KEYS_VAR
        );
    }
    Ok(Outcome::Success)
}

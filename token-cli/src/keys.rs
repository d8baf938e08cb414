//! Keys from the environment: `TOKEN_HASH_KEY` (+ `TOKEN_HASH_KEYS_OLD`) and `TOKEN_AUDIT_KEY`
//! (+ `TOKEN_AUDIT_KEYS_OLD`), each `[ID:]HEX`, the old ones a comma-separated list of `ID:HEX`.
//! Error messages name the variable and the problem, never the key material.

use token_core::{AuditKey, AuditKeyring, HashKey, KeyId, Keyring};
use zeroize::Zeroizing;

use crate::error::CliError;

/// The current hash key.
pub const HASH_KEY_VAR: &str = "TOKEN_HASH_KEY";
/// Older hash keys.
pub const OLD_HASH_KEYS_VAR: &str = "TOKEN_HASH_KEYS_OLD";
/// The current audit chain key.
pub const AUDIT_KEY_VAR: &str = "TOKEN_AUDIT_KEY";
/// Older audit chain keys.
pub const OLD_AUDIT_KEYS_VAR: &str = "TOKEN_AUDIT_KEYS_OLD";

/// One key as written in a variable: its id and 32 bytes.
struct KeyText {
    id: KeyId,
    bytes: Zeroizing<[u8; 32]>,
}

fn parse_key(var: &str, text: &str, id_required: bool) -> Result<KeyText, CliError> {
    let text = text.trim();
    let (id, hex_text) = match text.split_once(':') {
        Some((id, hex_text)) => {
            let id: u32 = id.trim().parse().map_err(|_| {
                CliError::Config(format!(
                    "{var}: the key id before ':' is not a number; write ID:HEX, e.g. 2:<64 hex characters>"
                ))
            })?;
            (id, hex_text.trim())
        }
        None if id_required => {
            return Err(CliError::Config(format!(
                "{var}: each key needs its id; write a comma-separated list of ID:HEX (1:<64 hex characters>)"
            )));
        }
        None => (1, text),
    };
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_text, &mut bytes[..]).map_err(|_| {
        CliError::Config(format!(
            "{var}: the key is not 64 hexadecimal characters (32 bytes); generate one with `tokenctl keygen`"
        ))
    })?;
    Ok(KeyText {
        id: KeyId::new(id),
        bytes,
    })
}

fn parse_list(var: &str, text: &str) -> Result<Vec<KeyText>, CliError> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| parse_key(var, part, true))
        .collect()
}

fn var(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(Zeroizing::new)
}

/// The hash keyring from `TOKEN_HASH_KEY` and `TOKEN_HASH_KEYS_OLD`, or `None` when
/// `TOKEN_HASH_KEY` is unset.
pub fn hash_keyring() -> Result<Option<Keyring>, CliError> {
    let Some(current) = var(HASH_KEY_VAR) else {
        return Ok(None);
    };
    let current = parse_key(HASH_KEY_VAR, &current, false)?;
    let current_id = current.id;
    let mut keyring = Keyring::new(HashKey::new(current.id, *current.bytes));
    if let Some(old) = var(OLD_HASH_KEYS_VAR) {
        for key in parse_list(OLD_HASH_KEYS_VAR, &old)? {
            if key.id == current_id {
                return Err(CliError::Config(format!(
                    "{OLD_HASH_KEYS_VAR}: key id {} is also {HASH_KEY_VAR}'s; give each key its own id",
                    key.id
                )));
            }
            keyring = keyring.with_key(HashKey::new(key.id, *key.bytes));
        }
    }
    Ok(Some(keyring))
}

/// The audit keyring from `TOKEN_AUDIT_KEY` and `TOKEN_AUDIT_KEYS_OLD`, or `None` when
/// `TOKEN_AUDIT_KEY` is unset (an unkeyed chain).
pub fn audit_keyring() -> Result<Option<AuditKeyring>, CliError> {
    let Some(current) = var(AUDIT_KEY_VAR) else {
        return Ok(None);
    };
    let current = parse_key(AUDIT_KEY_VAR, &current, false)?;
    let current_id = current.id;
    let mut keyring = AuditKeyring::new(AuditKey::new(current.id, *current.bytes));
    if let Some(old) = var(OLD_AUDIT_KEYS_VAR) {
        for key in parse_list(OLD_AUDIT_KEYS_VAR, &old)? {
            if key.id == current_id {
                return Err(CliError::Config(format!(
                    "{OLD_AUDIT_KEYS_VAR}: key id {} is also {AUDIT_KEY_VAR}'s; give each key its own id",
                    key.id
                )));
            }
            keyring = keyring.with_key(AuditKey::new(key.id, *key.bytes));
        }
    }
    Ok(Some(keyring))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn a_key_without_an_id_is_key_one() {
        let key = parse_key("V", HEX, false).unwrap();
        assert_eq!(key.id, KeyId::new(1));
        assert_eq!(key.bytes[1], 0x11);
        let key = parse_key("V", &format!("7:{HEX}"), false).unwrap();
        assert_eq!(key.id, KeyId::new(7));
    }

    #[test]
    fn bad_keys_are_named_without_their_material() {
        let short = &HEX[..60];
        let error = parse_key("TOKEN_HASH_KEY", short, false)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("64 hexadecimal characters"), "{error}");
        assert!(!error.contains(short));
        let error = parse_list("OLD", HEX).err().unwrap().to_string();
        assert!(error.contains("ID:HEX"), "{error}");
        assert!(!error.contains(HEX));
        let error = parse_key("V", &format!("x:{HEX}"), false)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("key id"), "{error}");
    }
}

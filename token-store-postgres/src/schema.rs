//! The schema name: validated, quoted, and used to derive the notification channel.

use std::fmt;

/// A schema name the store was asked to use is not acceptable. Reported as the source of
/// [`StoreError::Backend`](token_core::StoreError::Backend) (find it with
/// `source.downcast_ref::<InvalidSchemaName>()`).
///
/// The name is interpolated into SQL (quoted), so it is validated strictly: 1 to 63 characters,
/// `[a-z_][a-z0-9_]*`, and not starting with `pg_` (reserved by PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidSchemaName {
    /// The refused name (control characters escaped when displayed).
    pub name: String,
    /// Why it was refused.
    pub problem: &'static str,
}

impl fmt::Display for InvalidSchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid schema name {:?}: {} (allowed: 1 to 63 characters of [a-z0-9_], not starting with a digit or pg_)",
            self.name, self.problem
        )
    }
}

impl std::error::Error for InvalidSchemaName {}

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// Checks `name` against `[a-z_][a-z0-9_]{0,62}` (and refuses the reserved `pg_` prefix).
pub(crate) fn validate(name: &str) -> Result<(), InvalidSchemaName> {
    let refuse = |problem| InvalidSchemaName {
        name: name.chars().take(80).collect(),
        problem,
    };
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(refuse("empty"));
    };
    if bytes.len() > MAX_IDENT {
        return Err(refuse("longer than 63 bytes"));
    }
    if !(first.is_ascii_lowercase() || *first == b'_') {
        return Err(refuse("must start with a-z or _"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err(refuse("only a-z, 0-9 and _ are allowed"));
    }
    if name.starts_with("pg_") {
        return Err(refuse("the pg_ prefix is reserved for system schemas"));
    }
    Ok(())
}

/// The `LISTEN`/`NOTIFY` channel for revocations of the store in `schema`:
/// `<schema>_revoked` when that fits in 63 bytes, else `token_store_revoked_<16 hex digits>`
/// (64-bit FNV-1a of the schema name). Stable across versions and processes.
pub(crate) fn channel_for(schema: &str) -> String {
    const SUFFIX: &str = "_revoked";
    if schema.len() + SUFFIX.len() <= MAX_IDENT {
        format!("{schema}{SUFFIX}")
    } else {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in schema.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("token_store_revoked_{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["token_store", "_x", "a", "t1_2", &"a".repeat(63)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_hostile_names() {
        for bad in [
            "",
            "Token",
            "1abc",
            "a-b",
            "a\"; DROP TABLE x; --",
            "a b",
            "pg_catalog",
            "é",
            &"a".repeat(64),
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channels_fit_and_differ() {
        let long_a = format!("{}a", "x".repeat(62));
        let long_b = format!("{}b", "x".repeat(62));
        assert_eq!(channel_for("token_store"), "token_store_revoked");
        assert!(channel_for(&long_a).len() <= MAX_IDENT);
        assert_ne!(channel_for(&long_a), channel_for(&long_b));
    }
}

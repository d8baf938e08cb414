//! Mapping of driver errors onto [`StoreError`], and the store's own error details.

use token_core::StoreError;

pub(crate) const STORE: &str = "sqlite";

pub(crate) fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt {
        store: STORE,
        message,
    }
}

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_ERROR: i64 = 1;
const SQLITE_CONSTRAINT: i64 = 19;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOTADB: i64 = 26;

/// Whether a change of the schema by another process (a newer library migrating the file) could
/// explain `error`: a missing table or column, or a constraint the library does not know.
pub(crate) fn schema_may_explain(error: &StoreError) -> bool {
    let StoreError::Backend { source, .. } = error else {
        return matches!(error, StoreError::NotMigrated { .. });
    };
    let Some(sqlx::Error::Database(db)) = source.downcast_ref::<sqlx::Error>() else {
        return false;
    };
    let primary = db
        .code()
        .and_then(|code| code.parse::<i64>().ok())
        .map(|code| code & 0xff);
    let message = db.message();
    match primary {
        Some(SQLITE_ERROR) => {
            message.contains("no such table") || message.contains("no such column")
        }
        Some(SQLITE_CONSTRAINT) => true,
        _ => false,
    }
}

/// Maps a driver error: busy/locked -> `Conflict` (retrying may succeed), a file that is not a
/// database or is corrupt -> `Corrupt`, anything else -> `Backend`.
pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        let primary = db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .map(|code| code & 0xff);
        match primary {
            Some(SQLITE_BUSY | SQLITE_LOCKED) => {
                return StoreError::Conflict {
                    message: format!("the SQLite database is locked by another writer: {db}"),
                };
            }
            Some(SQLITE_NOTADB | SQLITE_CORRUPT) => {
                return corrupt(format!(
                    "the database file is not a valid SQLite database or is damaged: {db}"
                ));
            }
            _ => {}
        }
    }
    StoreError::Backend {
        store: STORE,
        source: Box::new(error),
    }
}

/// Whether `error` is a constraint violation (a `CHECK`, `NOT NULL` or key the row breaks).
pub(crate) fn is_constraint_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_check_violation()
        || db.is_unique_violation() || db.is_foreign_key_violation()
        || matches!(db.kind(), sqlx::error::ErrorKind::NotNullViolation))
}

/// Whether `error` is a uniqueness (primary key) violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

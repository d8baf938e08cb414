//! Mapping of driver errors onto [`StoreError`], and the store's own error details.

use token_core::StoreError;

pub(crate) const STORE: &str = "postgres";

/// [`StoreError::NotMigrated`]: the schema is at `found` (`None`: no store tables in it), this
/// library needs [`SCHEMA_VERSION`](crate::SCHEMA_VERSION).
pub(crate) fn not_migrated(found: Option<i64>) -> StoreError {
    StoreError::NotMigrated {
        store: STORE,
        found,
        required: crate::SCHEMA_VERSION,
    }
}

pub(crate) fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt {
        store: STORE,
        message,
    }
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    sqlstate(error).as_deref() == Some("23505")
}

/// Maps a driver error: serialization failures and deadlocks are [`StoreError::Conflict`]
/// (retrying may succeed); everything else is [`StoreError::Backend`].
pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    match sqlstate(&error).as_deref() {
        Some("40001") => StoreError::Conflict {
            message: format!("serialization failure: {error}"),
        },
        Some("40P01") => StoreError::Conflict {
            message: format!("deadlock detected: {error}"),
        },
        Some("55P03") => StoreError::Conflict {
            message: format!("lock not available: {error}"),
        },
        _ => StoreError::Backend {
            store: STORE,
            source: Box::new(error),
        },
    }
}

/// Like [`backend`], but a missing table, schema or column (the schema was never migrated, or
/// only partly) becomes [`StoreError::NotMigrated`].
pub(crate) fn backend_in(error: sqlx::Error) -> StoreError {
    match sqlstate(&error).as_deref() {
        // undefined_table, invalid_schema_name, undefined_column
        Some("42P01" | "3F000" | "42703") => not_migrated(None),
        _ => backend(error),
    }
}

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

/// How [`backend`] starts the message of a serialization failure's [`StoreError::Conflict`].
const SERIALIZATION_FAILURE: &str = "serialization failure: ";
/// How [`backend`] starts the message of a deadlock's [`StoreError::Conflict`].
const DEADLOCK: &str = "deadlock detected: ";

/// Whether `error` is a conflict that running the whole transaction again resolves (a deadlock
/// the server broke, or a serialization failure), as [`backend`] maps them.
pub(crate) fn is_retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Conflict { message }
        if message.starts_with(SERIALIZATION_FAILURE) || message.starts_with(DEADLOCK))
}

/// Whether a change of the schema by another deployment could explain `error`: a missing table,
/// column or function, or a value a constraint or type the library does not know refuses.
pub(crate) fn schema_may_explain(error: &StoreError) -> bool {
    match error {
        StoreError::NotMigrated { .. } => true,
        StoreError::Backend { source, .. } => source
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlstate)
            .is_some_and(|code| {
                // undefined_function, datatype_mismatch, not_null_violation, check_violation,
                // foreign_key_violation
                matches!(
                    code.as_str(),
                    "42883" | "42804" | "23502" | "23514" | "23503"
                )
            }),
        _ => false,
    }
}

/// Maps a driver error: serialization failures and deadlocks are [`StoreError::Conflict`]
/// (retrying may succeed); everything else is [`StoreError::Backend`].
pub(crate) fn backend(error: sqlx::Error) -> StoreError {
    match sqlstate(&error).as_deref() {
        Some("40001") => StoreError::Conflict {
            message: format!("{SERIALIZATION_FAILURE}{error}"),
        },
        Some("40P01") => StoreError::Conflict {
            message: format!("{DEADLOCK}{error}"),
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

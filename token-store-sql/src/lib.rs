//! # token-store-sql
//!
//! What the SQL [`TokenStore`](token_core::TokenStore)s (`token-store-sqlite`,
//! `token-store-postgres`) share, published for people who write another one (MySQL, a
//! different driver) on top of `token-core`. Applications never need it: they use a store.
//!
//! It has no database driver dependency: a store implements [`Columns`] (three small methods)
//! and [`TokenRow`] for (a newtype around) its driver's row type, and uses the rest as plain
//! functions.
//!
//! - **Reading rows** ([`decode_token`], [`decode_event`], [`decode_audit_record`],
//!   [`decode_audit_hash`], [`decode_checkpoint`], [`RowReader`]): every column is checked, and
//!   bad database contents become a [`StoreError::Corrupt`](token_core::StoreError::Corrupt)
//!   naming the table, the column and the row, never a panic and never a record built from
//!   garbage. [`EVENT_COLUMNS`] and [`AUDIT_COLUMNS`] are the matching select lists.
//! - **Writing values** ([`token_params`] for a whole row of [`TOKEN_INSERT_COLUMNS`],
//!   [`micros`], [`micros_ceil`], [`id_bytes`], [`count_to_column`], [`duration_to_column`]):
//!   times as Unix microseconds, ids as 16 raw bytes, counters and durations as `i64`, or
//!   [`UnrepresentableValue`] when they do not fit; statement parameters as [`Param`]s.
//! - **Rows that fail to decode** ([`sweeper_event`], [`revoke_event`],
//!   [`unnamed_revoke_event`], [`row_id`], [`row_subject`]): sweeps and revocations must not
//!   stall on a corrupt row, so their events name it by what can still be read.
//! - **Checks inside a transaction** ([`parent_refusal`], [`rotation_successor`],
//!   [`cutoff_refusal`]) on records the
//!   store read (and locked) there, and the **conditions of an audit query**
//!   ([`audit_conditions`]), each store adding its own placeholders.
//! - **Printing a database URL** ([`redacted_url`]): the password and `password` parameters as
//!   `***`, for `Debug`, logs and errors.
//! - **Migration bookkeeping** ([`Migrations`], [`Migration`], [`Step`], [`MIGRATIONS_TABLE`]):
//!   which migrations are pending, and what a recorded version means (current,
//!   [`SchemaTooNew`](token_core::StoreError::SchemaTooNew),
//!   [`NotMigrated`](token_core::StoreError::NotMigrated)). Running them — transactions, locks,
//!   the versions table's DDL — stays with each store, in its own dialect.
//!
//! The expected schema is the one the two stores share: a `tokens` table (ids as raw bytes,
//! times and durations as `BIGINT`/`INTEGER` microseconds, scopes as the space-separated scope
//! string) and an `audit_events` table (the columns of [`AUDIT_COLUMNS`]); see the stores' schema
//! docs.
//!
//! **Stability.** This is plumbing: it follows what the SQL stores of this workspace need, and
//! may change in a minor release when they do (the changelog says so). Pin the exact version if
//! you build on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod columns;
mod lifecycle;
mod migrate;
mod query;
mod rows;
#[cfg(test)]
mod testing;
mod values;

pub use crate::columns::{
    AUDIT_COLUMNS, Columns, EVENT_COLUMNS, RowReader, decode_audit_hash, decode_audit_record,
    decode_checkpoint, decode_event, decode_token, encode_checkpoint_mac,
};
pub use crate::lifecycle::{cutoff_refusal, parent_refusal, rotation_successor};
pub use crate::migrate::{MIGRATIONS_TABLE, Migration, Migrations, Step};
pub use crate::query::{
    Param, TOKEN_INSERT_COLUMNS, TOKEN_UPDATE_COLUMNS, audit_conditions, token_params,
    update_params,
};
pub use crate::rows::{
    TokenRow, revoke_event, row_id, row_subject, suspend_event, sweeper_event, unnamed_revoke_event,
};
pub use crate::values::{
    UnrepresentableValue, count_to_column, duration_to_column, hex, id_bytes, id_from_bytes,
    micros, micros_ceil, opt_micros,
};
pub use token_core::redact::redacted_url;

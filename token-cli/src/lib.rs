//! # tokenctl
//!
//! Operate a token store from a terminal, and find leaked tokens anywhere and kill them.
//!
//! ```text
//! tokenctl keygen                                   # a new hash key, hex, alone on stdout's first line
//! tokenctl migrate                                  # create or upgrade the store's tables
//! tokenctl issue --subject ci --scope deploy --ttl 30d   # the token alone on stdout's first line
//! tokenctl list [--subject S] [--label k=v] [--state active] [--family ID] [--unused-since TIME]
//! tokenctl inspect ID                               # one record (no secret, no hash)
//! tokenctl revoke ID | --subject S | --family ID | --label k=v | --issued-before TIME  [--yes]
//! tokenctl rotate ID --grace 1h                     # the new token alone on stdout's first line
//! tokenctl audit [--token ID] [--subject S] [--kind revoked] [--since T] [--until T] [--jsonl]
//! tokenctl audit verify                             # the hash chain; exit 1 if it is broken
//! tokenctl sweep                                    # one retention pass
//! tokenctl stale --unused-for 30d                   # tokens nobody used lately
//! tokenctl scan PATH... [-] [--database URL] [--revoke [--yes]] [--format text|json|sarif]
//! ```
//!
//! Every command takes `--json` (one JSON document, or one JSON object per line where a command
//! prints a stream: `scan`, `audit --jsonl`); human output is an aligned table.
//!
//! # Configuration
//!
//! | setting | flag | environment | used by |
//! |---|---|---|---|
//! | the store | `--database URL` | `TOKEN_DATABASE_URL` | every command but `keygen` and `scan` without a check |
//! | PostgreSQL schema | `--schema NAME` | `TOKEN_DATABASE_SCHEMA` | PostgreSQL URLs (default `token_store`) |
//! | the token prefix | `--prefix P` | `TOKEN_PREFIX` | `issue` (required); `rotate` (default: the record's); `scan` (only tokens of this prefix) |
//! | the current hash key | — | `TOKEN_HASH_KEY` | `issue`, `rotate`, `scan --database` |
//! | older hash keys | — | `TOKEN_HASH_KEYS_OLD` | the same (tokens hashed with them still check) |
//! | the audit chain key | — | `TOKEN_AUDIT_KEY`, `TOKEN_AUDIT_KEYS_OLD` | every command that writes or verifies events, when the host keys its audit chain |
//! | the actor in audit events | `--actor NAME` | `TOKEN_ACTOR` | every command that changes tokens (default `tokenctl`) |
//!
//! Database URLs are `sqlite://path/to/tokens.db` or `postgres://user@host:5432/db`; they are
//! printed with the password replaced by `***`. Keys are never read from flags (a flag shows in
//! `ps` and shell history). A key is written `[ID:]HEX`: 64 hexadecimal characters (32 bytes),
//! optionally preceded by its numeric key id and a colon; without an id it is key `1`. Older keys
//! are a comma-separated list of `ID:HEX`: to rotate the hash key, put the old one in
//! `TOKEN_HASH_KEYS_OLD` (`1:<old hex>`) and the new one in `TOKEN_HASH_KEY` (`2:<new hex>`).
//! Commands that hash nothing (`list`, `inspect`, `revoke`, `audit`, `sweep`, `stale`) need no
//! hash key. `tokenctl` applies the library's default policy and retention.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `scan`: no live token found, or every live one was revoked) |
//! | 1 | an error (the message on stderr says what was wrong and what is allowed), a declined confirmation, or an audit chain that does not verify |
//! | 2 | bad usage: unknown flag, missing argument, malformed value (clap's answer) |
//! | 3 | `scan` found live tokens: checked against `--database` and still live, or, without `--database`, any confirmed token (it may be live) |
//!
//! # Secrets
//!
//! The only secrets `tokenctl` prints are a newly issued or rotated token and a newly generated
//! key, once, on stdout. `scan` reports the prefix and the public id of what it finds, never the
//! secret, in every format.
//!
//! # The scanner
//!
//! [`scan`] finds tokens by the documented pattern and confirms each by its CRC (see
//! [`token_core::format`]), so random strings are not reported. It looks inside URL-encoded
//! text, JSON string escapes and base64 runs of at least 100 characters (a base64-encoded line,
//! a Kubernetes secret value). The library API ([`scan::Scanner`]) is public so benchmarks and
//! other tools can use it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod confirm;
pub mod connect;
pub mod duration;
pub mod error;
pub mod keys;
pub mod output;
pub mod scan;
mod selector;

pub use error::{CliError, Outcome};

//! Database URLs as the example programs print them: without their password (the helper the
//! store crates' redacted `Debug` uses, [`token_store_sql::redacted_url`]).

pub use token_store_sql::redacted_url;

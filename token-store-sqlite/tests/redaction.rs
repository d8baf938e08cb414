//! Secrets in connection settings (SQLCipher's `key` pragma) never reach `Debug` output or errors.

use sqlx::sqlite::SqliteConnectOptions;
use token_store_sqlite::{SqliteStore, SqliteStoreOptions};

// Bare: sqlx writes pragma values into the statement unquoted.
const SECRET: &str = "Zq9distinctiveSqliteKey";

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
}

fn keyed_options(dir: &tempfile::TempDir) -> SqliteStoreOptions {
    let connect = SqliteConnectOptions::new()
        .filename(dir.path().join("tokens.db"))
        .create_if_missing(true)
        .pragma("key", SECRET);
    SqliteStoreOptions::from_connect_options(connect)
}

#[test]
fn options_debug_hides_pragma_values_and_keeps_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let options = keyed_options(&dir);
    let debug = format!("{options:?}");
    assert_hidden("Debug of the options", &debug);
    assert_hidden("pretty Debug of the options", &format!("{options:#?}"));
    assert!(debug.contains("tokens.db"), "{debug}");
    assert!(debug.contains("Full"), "{debug}");
}

#[test]
fn url_options_debug_keeps_the_file_name() {
    let options = SqliteStoreOptions::new("sqlite://some/dir/tokens.db").unwrap();
    let debug = format!("{options:?}");
    assert!(debug.contains("some/dir/tokens.db"), "{debug}");
}

#[test]
fn a_bad_url_error_does_not_echo_parameter_values() {
    let error = SqliteStoreOptions::new(&format!("sqlite://tokens.db?key={SECRET}"))
        .expect_err("`key` is not a URL parameter sqlx knows");
    assert_hidden("Display of the URL error", &error.to_string());
    assert_hidden("Debug of the URL error", &format!("{error:?}"));
}

#[tokio::test]
async fn store_debug_hides_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect_with(keyed_options(&dir))
        .await
        .unwrap();
    assert_hidden("Debug of the store", &format!("{store:?}"));
}

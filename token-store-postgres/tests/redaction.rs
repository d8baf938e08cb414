//! Passwords in connection settings never reach `Debug` output or errors. None of these tests
//! needs a running server: stores are connected lazily, or to a port nothing listens on.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use token_store_postgres::{PgStore, PgStoreOptions};

const PASSWORD: &str = "Zq9-distinctive-pg-password";

fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the password: {text}"
    );
}

#[test]
fn url_options_debug_hides_the_password_and_keeps_the_rest() {
    let options = PgStoreOptions::new(&format!(
        "postgres://app:{PASSWORD}@db.internal:6432/tokens?sslmode=require"
    ))
    .schema("tok");
    let debug = format!("{options:?}");
    assert_hidden("Debug of URL options", &debug);
    let pretty = format!("{options:#?}");
    assert_hidden("pretty Debug of URL options", &pretty);
    for kept in [
        "postgres://app:***@db.internal:6432/tokens",
        "sslmode=require",
        "\"tok\"",
    ] {
        assert!(debug.contains(kept), "{kept} missing from {debug}");
    }
}

#[test]
fn url_options_debug_hides_a_password_query_parameter() {
    let options = PgStoreOptions::new(&format!(
        "postgres://app@db.internal/tokens?password={PASSWORD}&sslmode=disable"
    ));
    let debug = format!("{options:?}");
    assert_hidden("Debug of URL options", &debug);
    assert!(debug.contains("password=***"), "{debug}");
    assert!(debug.contains("sslmode=disable"), "{debug}");
}

#[test]
fn unparsable_url_debug_hides_the_password() {
    // A '/' in an unencoded password ends the authority for every URL parser, so the password
    // could be mistaken for a port and a path.
    for url in [
        format!("postgres://app:{PASSWORD}/x@db/tokens"),
        format!("postgres://app:1/{PASSWORD}@db/tokens"),
        format!("app:{PASSWORD}@db"),
    ] {
        let debug = format!("{:?}", PgStoreOptions::new(&url));
        assert_hidden("Debug of unparsable URL options", &debug);
    }
}

#[test]
fn connect_options_debug_hides_the_password_and_keeps_the_rest() {
    let connect = PgConnectOptions::new_without_pgpass()
        .host("db.internal")
        .port(6432)
        .username("app")
        .password(PASSWORD)
        .database("tokens");
    let options = PgStoreOptions::from_connect_options(connect);
    let debug = format!("{options:?}");
    assert_hidden("Debug of connect options", &debug);
    for kept in ["db.internal", "6432", "\"app\"", "\"tokens\""] {
        assert!(debug.contains(kept), "{kept} missing from {debug}");
    }
}

#[test]
fn a_bad_url_error_does_not_echo_the_password() {
    let options = PgStoreOptions::new(&format!("postgres://app:{PASSWORD}@db:port/tokens"));
    let error = options
        .connect_options()
        .expect_err("the port is not a number");
    assert_hidden("Display of the URL error", &error.to_string());
    assert_hidden("Debug of the URL error", &format!("{error:?}"));
}

#[tokio::test]
async fn connect_errors_and_store_debug_do_not_echo_the_password() {
    // Nothing listens on port 1.
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/tokens");
    let options = PgStoreOptions::new(&url).acquire_timeout(Duration::from_millis(300));
    let error = PgStore::connect_with(options)
        .await
        .expect_err("nothing listens on port 1");
    assert_hidden("Display of the connect error", &error.to_string());
    assert_hidden("Debug of the connect error", &format!("{error:?}"));

    let store = PgStore::connect_with(PgStoreOptions::new(&url).lazy(true))
        .await
        .expect("a lazy connect opens nothing");
    assert_hidden("Debug of the store", &format!("{store:?}"));
    assert_hidden("Debug of the store's pool", &format!("{:?}", store.pool()));
}

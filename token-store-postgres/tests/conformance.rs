//! The whole token-testkit conformance suite against a real PostgreSQL server
//! (`TOKEN_TEST_POSTGRES_URL`); each case gets a fresh schema, dropped when the case ends.

mod common;

use std::sync::Arc;

use token_store_postgres::{PgStore, PgStoreOptions};
use token_testkit::{Fixture, TestStore};

use common::{SchemaJanitor, URL_VAR, fresh_schema, raw_dump, url};

struct PgFixture {
    janitor: SchemaJanitor,
}

impl PgFixture {
    fn new() -> Self {
        Self {
            janitor: SchemaJanitor::default(),
        }
    }
}

#[async_trait::async_trait]
impl Fixture for PgFixture {
    fn feed_may_interrupt(&self) -> bool {
        // A LISTEN connection can be lost and re-established.
        true
    }

    fn available(&self) -> Result<(), String> {
        match url() {
            Some(_) => Ok(()),
            None => Err(format!("{URL_VAR} is not set")),
        }
    }

    async fn new_store(&self) -> TestStore {
        let url = url().unwrap_or_else(|| panic!("{URL_VAR} is not set"));
        let schema = fresh_schema();
        self.janitor.track(&schema);
        let store =
            PgStore::connect_with(PgStoreOptions::new(&url).schema(&schema).max_connections(8))
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        let keyed = store.clone();
        TestStore {
            audit_keys: Some(Arc::new(move |keys| {
                keyed.clone().with_audit_keys(keys);
            })),
            store: Arc::new(store),
            raw: Arc::new(move || {
                let url = url.clone();
                let schema = schema.clone();
                Box::pin(async move { raw_dump(&url, &schema).await })
            }),
        }
    }
}

token_testkit::conformance_tests!(PgFixture::new());

/// The suite again, with the validation cache in front of the store (the feed is LISTEN/NOTIFY).
mod cached {
    token_testkit::conformance_tests!(token_testkit::Cached::new(super::PgFixture::new()));
}

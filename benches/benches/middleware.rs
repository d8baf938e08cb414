//! Cost of the tower layer: a request through `BearerAuthLayer` vs a direct `validate`, same run,
//! same store (memory, 10,000 tokens).
//!
//! ```text
//! cargo bench -p benches --bench middleware
//! ```

use std::convert::Infallible;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{Request, Response};
use token_core::{HashKey, IssueRequest, KeyId, Keyring, Scope, ScopeSet, TokenManager};
use token_store_memory::MemoryStore;
use token_tower::BearerAuth;
use tower::{Layer, ServiceExt, service_fn};

const TOKENS: usize = 10_000;

fn bench_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let manager = TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [7; 32])),
    )
    .prefix("acme_live")
    .expect("prefix")
    .build()
    .expect("manager");
    let scopes = ScopeSet::parse("widgets:read").expect("scopes");
    let tokens: Vec<String> = runtime.block_on(async {
        let mut out = Vec::with_capacity(TOKENS);
        for i in 0..TOKENS {
            let issued = manager
                .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
                .await
                .expect("issue");
            out.push(issued.token.expose_secret().to_owned());
        }
        out
    });
    let headers: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
    let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];
    let layer = BearerAuth::new(manager.clone())
        .require("widgets:read")
        .expect("layer");
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));

    let mut group = c.benchmark_group("layer_vs_direct");
    let mut i = 0usize;
    group.bench_function("direct_validate", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 7919) % TOKENS;
            let token = &tokens[i];
            let manager = &manager;
            let required = &required;
            async move { manager.validate(token, required).await.expect("valid") }
        })
    });
    let mut j = 0usize;
    group.bench_function("through_layer", |b| {
        b.to_async(&runtime).iter(|| {
            j = (j + 7919) % TOKENS;
            let request = Request::get("/widgets")
                .header(AUTHORIZATION, headers[j].as_str())
                .body(())
                .expect("request");
            let service = service.clone();
            async move {
                let response = service.oneshot(request).await.expect("infallible");
                assert!(response.status().is_success());
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(50);
    targets = bench_layer
}
criterion_main!(benches);

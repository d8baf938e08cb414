//! Token parsing and in-memory validation, against `jsonwebtoken` HS256 verification in the same
//! run.
//!
//! ```text
//! cargo bench -p benches --bench validate
//! TOKEN_BENCH_TOKENS=100000 cargo bench -p benches --bench validate   # smaller store
//! ```

use benches::{Jwts, Walk, token_count};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use token_core::{IssueRequest, PlaintextToken, Scope, ScopeSet, TokenPrefix, parse_token};

fn bench_parse(c: &mut Criterion) {
    let prefix = TokenPrefix::new("acme_live").expect("prefix");
    let token = PlaintextToken::generate(&prefix).expect("token");
    c.bench_function("parse_token", |b| {
        b.iter(|| parse_token(black_box(token.expose_secret())).map(|p| p.id()))
    });
}

fn bench_validate(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let count = token_count("TOKEN_BENCH_TOKENS", 1_000_000);
    let manager = benches::memory_manager();
    let scopes =
        ScopeSet::parse("widgets:read widgets:write billing:invoices:read").expect("scopes");
    let tokens: Vec<String> = runtime.block_on(async {
        let mut tokens = Vec::with_capacity(count);
        for i in 0..count {
            let issued = manager
                .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
                .await
                .expect("issue");
            tokens.push(issued.token.expose_secret().to_owned());
        }
        tokens
    });
    let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];

    let mut group = c.benchmark_group(format!("validate_{count}_tokens"));
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("memory_store_random", |b| {
        b.to_async(&runtime).iter(|| {
            let token = &tokens[walk.next_index(tokens.len())];
            let manager = &manager;
            let required = &required;
            async move { manager.validate(token, required).await.expect("valid") }
        })
    });
    // The memory store never suspends, so a caller can poll validation once, without a runtime:
    // this arm measures validation itself, like the (synchronous) JWT arm below.
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("memory_store_random_polled_once", |b| {
        b.iter(|| {
            let token = &tokens[walk.next_index(tokens.len())];
            manager
                .validate(token, &required)
                .now_or_never()
                .expect("the memory store never suspends")
                .expect("valid")
        })
    });

    let jwts = Jwts::new(&[7; 32], &scopes.to_string(), 1000);
    let mut walk = Walk(0x1234_5678_9ABC_DEF1);
    group.bench_function("jsonwebtoken_hs256_verify", |b| {
        b.iter(|| black_box(jwts.verify(walk.next_index(jwts.len()), "widgets:read")))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(50);
    targets = bench_parse, bench_validate
}
criterion_main!(benches);

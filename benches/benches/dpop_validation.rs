//! DPoP validation end to end against Bearer validation, in one run, on the memory store: a
//! Bearer token's `validate`, and a bound token's proof verification (`token-dpop`, EdDSA and
//! ES256) plus `validate_with_proof` (binding check and the `jti` claim). Each DPoP iteration
//! gets a fresh proof, made outside the timed part.
//!
//! ```text
//! cargo bench -p benches --bench dpop_validation
//! ```

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use time::OffsetDateTime;
use token_core::{
    Context, HashKey, IssueRequest, KeyId, KeyThumbprint, Keyring, ProofOfPossession, Scope,
    ScopeSet, TokenManager,
};
use token_dpop::client::ProofKey;
use token_dpop::{DpopConfig, DpopVerifier};
use token_store_memory::MemoryStore;

const HTU: &str = "https://api.example.com/widgets";

fn manager() -> TokenManager {
    TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [4; 32])),
    )
    .prefix("acme_live")
    .expect("prefix")
    .build()
    .expect("manager")
}

fn issue(manager: &TokenManager, key: Option<&ProofKey>) -> String {
    let mut request = IssueRequest::new("user:1", ScopeSet::parse("widgets:read").expect("scopes"));
    if let Some(key) = key {
        let jkt: KeyThumbprint = key.thumbprint().as_str().parse().expect("thumbprint");
        request = request.bind_to_key(jkt);
    }
    manager
        .issue(request)
        .now_or_never()
        .expect("the memory store never waits")
        .expect("issue")
        .token
        .expose_secret()
        .to_owned()
}

fn bench_validation(c: &mut Criterion) {
    let manager = manager();
    let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];
    let verifier = DpopVerifier::new(DpopConfig::new());
    let ctx = Context::new();
    let mut group = c.benchmark_group("validation");

    let bearer = issue(&manager, None);
    group.bench_function("bearer", |b| {
        b.iter(|| {
            manager
                .validate(black_box(&bearer), &required)
                .now_or_never()
                .expect("no wait")
                .expect("valid")
        });
    });

    for (name, key) in [
        ("dpop_eddsa", ProofKey::generate_ed25519().expect("key")),
        ("dpop_es256", ProofKey::generate_es256().expect("key")),
    ] {
        let token = issue(&manager, Some(&key));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let now = OffsetDateTime::now_utc();
                    let proof = key
                        .proof("GET", HTU, Some(&token), None, now)
                        .expect("proof");
                    (proof, now)
                },
                |(proof, now)| {
                    let verified = verifier
                        .verify(&proof, "GET", HTU, Some(&token), now)
                        .expect("a valid proof");
                    let jkt: KeyThumbprint = verified.jkt.as_str().parse().expect("jkt");
                    let pop = ProofOfPossession::new(jkt, verified.jti, verified.jti_expires_at);
                    manager
                        .validate_with_proof(black_box(&token), &required, &ctx, &pop)
                        .now_or_never()
                        .expect("no wait")
                        .expect("valid")
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_validation);
criterion_main!(benches);

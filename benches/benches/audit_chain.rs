//! The cost of a keyed audit chain: one link computed unkeyed (`chain_hash`) and keyed
//! (`append_link` with an audit key), for a typical `Revoked` event, in the same run. A store
//! computes one link per event it appends; the keyed chain is the default as soon as the host
//! configures an audit key, so this is what it costs.
//!
//! ```text
//! cargo bench -p benches --bench audit_chain
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use token_core::audit::chain_hash;
use token_core::audit_key::{AuditKey, AuditKeyring, append_link};
use token_core::{AuditEvent, AuditHash, AuditKind, Context, KeyId, TokenId};

fn bench_links(c: &mut Criterion) {
    let event = AuditEvent::new(AuditKind::Revoked, time::OffsetDateTime::UNIX_EPOCH)
        .with_token(TokenId::from_bytes([7; 16]), "user:42")
        .with_context(&Context::new().actor("admin:1").client_ip("203.0.113.9"))
        .with_reason("leaked in a public repository");
    let keys = AuditKeyring::new(AuditKey::new(KeyId::new(1), [9; 32]));
    let prev = AuditHash::GENESIS;
    let mut group = c.benchmark_group("audit_link");
    group.bench_function("unkeyed", |b| {
        b.iter(|| chain_hash(black_box(&prev), black_box(1234), black_box(&event)))
    });
    group.bench_function("keyed", |b| {
        b.iter(|| {
            append_link(
                Some(black_box(&keys)),
                black_box(&prev),
                1234,
                black_box(&event),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_links);
criterion_main!(benches);

//! Which cache crate holds the validation cache: the cost of a hit, measured on the same keys and
//! values (`TokenId` keys hashed by their own random bytes, `Arc`'d record-sized values, 100,000
//! entries, random access) for `quick_cache`, `moka` and a sharded `RwLock<HashMap>` (no
//! eviction: the lower bound of a concurrent map).
//!
//! ```text
//! cargo bench -p benches --bench cache
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use benches::Walk;
use criterion::{Criterion, criterion_group, criterion_main};
use token_core::{TokenId, TokenIdHasherBuilder};

const ENTRIES: usize = 100_000;
const SHARDS: usize = 64;

#[derive(Clone)]
struct Value {
    record: Arc<[u8; 448]>,
    cached_at: i64,
}

fn ids() -> Vec<TokenId> {
    let mut walk = Walk(0xDEAD_BEEF_CAFE_F00D);
    (0..ENTRIES)
        .map(|_| {
            let mut bytes = [0u8; 16];
            for chunk in bytes.chunks_mut(8) {
                chunk.copy_from_slice(&(walk.next_index(usize::MAX) as u64).to_le_bytes());
            }
            TokenId::from_bytes(bytes)
        })
        .collect()
}

fn value(i: usize) -> Value {
    Value {
        record: Arc::new([i as u8; 448]),
        cached_at: i as i64,
    }
}

fn bench_hits(c: &mut Criterion) {
    let ids = ids();
    let mut group = c.benchmark_group("cache_hit_100k");

    let quick: quick_cache::sync::Cache<
        TokenId,
        Value,
        quick_cache::UnitWeighter,
        TokenIdHasherBuilder,
    > = quick_cache::sync::Cache::with(
        ENTRIES,
        ENTRIES as u64 * 2,
        quick_cache::UnitWeighter,
        TokenIdHasherBuilder,
        Default::default(),
    );
    let moka: moka::sync::Cache<TokenId, Value, TokenIdHasherBuilder> =
        moka::sync::Cache::builder()
            .max_capacity(ENTRIES as u64 * 2)
            .build_with_hasher(TokenIdHasherBuilder);
    let sharded: Vec<RwLock<HashMap<TokenId, Value, TokenIdHasherBuilder>>> = (0..SHARDS)
        .map(|_| RwLock::new(HashMap::default()))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        quick.insert(*id, value(i));
        moka.insert(*id, value(i));
        sharded[usize::from(id.as_bytes()[0]) % SHARDS]
            .write()
            .expect("lock")
            .insert(*id, value(i));
    }

    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            black_box(
                quick
                    .get(&ids[walk.next_index(ENTRIES)])
                    .map(|v| (v.record[0], v.cached_at)),
            )
        })
    });
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("moka", |b| {
        b.iter(|| {
            black_box(
                moka.get(&ids[walk.next_index(ENTRIES)])
                    .map(|v| (v.record[0], v.cached_at)),
            )
        })
    });
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("sharded_rwlock_hashmap", |b| {
        b.iter(|| {
            let id = &ids[walk.next_index(ENTRIES)];
            let shard = sharded[usize::from(id.as_bytes()[0]) % SHARDS]
                .read()
                .expect("lock");
            black_box(shard.get(id).cloned().map(|v| (v.record[0], v.cached_at)))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = bench_hits
}
criterion_main!(benches);

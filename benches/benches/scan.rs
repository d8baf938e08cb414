//! Throughput of `tokenctl scan`'s scanner (`token_cli::scan::Scanner`) over 16 MiB of mixed
//! text (`benches::mixed_text`), with the prefix filter and without. Figures in BENCHMARKS.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use token_cli::scan::{PrefixFilter, Scanner};
use token_core::TokenPrefix;

fn scan(c: &mut Criterion) {
    let mut text = Vec::new();
    let planted = benches::mixed_text::write(&mut text, 16 * 1024 * 1024, 7).expect("corpus");
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(10);
    let prefix = TokenPrefix::new("acme_live").expect("prefix");
    for (name, scanner) in [
        (
            "mixed_16MiB/prefix",
            Scanner::new(PrefixFilter::Only(prefix)),
        ),
        ("mixed_16MiB/any_prefix", Scanner::new(PrefixFilter::Any)),
    ] {
        assert_eq!(
            scanner.scan(&text).len(),
            planted,
            "{name} finds every planted token"
        );
        group.bench_function(name, |b| {
            b.iter(|| scanner.scan(std::hint::black_box(&text)).len())
        });
    }
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);

//! Query-protocol parsing cost per parameter.
//!
//! `cargo bench -p keycard-proto --bench query`
//!
//! The case: a signed request whose form body carries many parameters
//! (GetCallerIdentity plus `Tags.member.N.Key=…`). Parsing plus the views a
//! handler uses should cost the same per parameter at 1k and 10k; 100k is over
//! [`MAX_PARAMS`] and is refused after reading at most 10k pairs.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keycard_proto::query::Params;

fn body(n: usize) -> String {
    let mut b = String::from("Action=GetCallerIdentity&Version=2011-06-15");
    for i in 1..=n {
        b.push_str(&format!("&Tags.member.{i}.Key=key{i}&P{i}=v"));
    }
    b
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("query_parse");
    for pairs in [1_000usize, 10_000, 100_000] {
        // Two parameters per step, two fixed ones: `pairs` in all.
        let b = body((pairs - 2) / 2);
        g.throughput(Throughput::Elements(pairs as u64));
        g.bench_with_input(BenchmarkId::from_parameter(pairs), &b, |bench, b| {
            bench.iter(|| {
                let p = Params::parse(black_box(b.as_bytes()));
                if let Ok(p) = &p {
                    black_box(p.structs("Tags.member"));
                    black_box(p.list("InstanceId"));
                }
                p.is_ok()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);

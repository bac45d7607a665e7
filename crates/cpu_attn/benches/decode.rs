//! Criterion bench of one layer's decode attention at the SmolLM2-135M batch-32 shape (q heads
//! 9, KV heads 3, head dim 64, ~130-token contexts, bf16 and f32), slots scattered over the pool
//! as after some churn, on 1 and 2 threads.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sglrs_cpu_attn::{Bf16, DecodeShape, Element, PagedDecode};

const BATCH: usize = 32;
const Q_HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const STRIDE: usize = 256;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

struct Inputs<T> {
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    table: Vec<i32>,
    rows: Vec<u32>,
    seq_lens: Vec<u32>,
}

fn inputs<T: Element>() -> Inputs<T> {
    let mut rng = Rng(0x5eed);
    let seq_lens: Vec<u32> = (0..BATCH as u32).map(|i| 120 + i % 20).collect();
    let num_slots = BATCH * STRIDE;
    let mut slots: Vec<i32> = (0..num_slots as i32).collect();
    for i in (1..slots.len()).rev() {
        slots.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let kv = num_slots * KV_HEADS * HEAD_DIM;
    let mut vals = |n: usize| (0..n).map(|_| T::from_f32(rng.unit())).collect::<Vec<T>>();
    Inputs {
        q: vals(BATCH * Q_HEADS * HEAD_DIM),
        k: vals(kv),
        v: vals(kv),
        table: slots,
        rows: (0..BATCH as u32).collect(),
        seq_lens,
    }
}

fn bench_dtype<T: Element>(c: &mut Criterion, name: &str) {
    let x = inputs::<T>();
    let p = PagedDecode {
        shape: DecodeShape {
            batch: BATCH,
            q_heads: Q_HEADS,
            kv_heads: KV_HEADS,
            head_dim: HEAD_DIM,
        },
        q: &x.q,
        q_strides: [Q_HEADS * HEAD_DIM, HEAD_DIM],
        k: &x.k,
        v: &x.v,
        req_to_token: &x.table,
        table_stride: STRIDE,
        req_pool_indices: &x.rows,
        seq_lens: &x.seq_lens,
        scale: (HEAD_DIM as f32).powf(-0.5),
        sliding_window: None,
    };
    let mut out = vec![T::from_f32(0.0); BATCH * Q_HEADS * HEAD_DIM];
    let positions: u64 = x.seq_lens.iter().map(|&s| u64::from(s)).sum();
    let mut group = c.benchmark_group(format!("decode_b32_smollm2_{name}"));
    // K and V bytes read per call.
    group.throughput(Throughput::Bytes(
        positions * (KV_HEADS * HEAD_DIM * 2 * std::mem::size_of::<T>()) as u64,
    ));
    for threads in [1, 2] {
        group.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &t| {
            b.iter(|| p.run(black_box(&mut out), t).unwrap())
        });
    }
    group.finish();
}

fn all(c: &mut Criterion) {
    bench_dtype::<Bf16>(c, "bf16");
    bench_dtype::<f32>(c, "f32");
}

criterion_group!(benches, all);
criterion_main!(benches);

//! The per-layer ops at SmolLM2's sizes (576 hidden, 1536 intermediate, 9 + 3 rope heads of
//! 64): a decode step's 32 rows and a prefill chunk's 512, float32 and bfloat16, one thread.

use criterion::{criterion_group, criterion_main, Criterion};
use sglrs_cpu_attn::layer_ops::{add_rms_norm, rope, silu_and_mul};
use sglrs_cpu_attn::{Bf16, Element};

fn values<T: Element>(n: usize) -> Vec<T> {
    (0..n)
        .map(|i| T::from_f32(((i * 37) % 101) as f32 / 50.0 - 1.0))
        .collect()
}

fn bench_type<T: Element>(c: &mut Criterion, name: &str) {
    let (hidden, inter, d) = (576, 1536, 64);
    let (cos, sin): (Vec<f32>, Vec<f32>) = (0..4096 * d)
        .map(|i| ((i as f32) * 0.001).sin_cos())
        .unzip();
    for rows in [32usize, 512] {
        let (x, res, w) = (
            values::<T>(rows * hidden),
            values::<T>(rows * hidden),
            values::<T>(hidden),
        );
        let (mut out, mut res_out) = (x.clone(), x.clone());
        c.bench_function(&format!("add_rms_norm/{name}/{rows}"), |b| {
            b.iter(|| add_rms_norm(&x, &res, &w, 1e-5, &mut out, &mut res_out, 1).unwrap())
        });
        let gu = values::<T>(rows * 2 * inter);
        let mut act = values::<T>(rows * inter);
        c.bench_function(&format!("silu_and_mul/{name}/{rows}"), |b| {
            b.iter(|| silu_and_mul(&gu, inter, &mut act, 1).unwrap())
        });
        let stride = 15 * d;
        let src = values::<T>(rows * stride);
        let mut qkv = src.clone();
        let positions: Vec<i64> = (0..rows as i64).map(|r| (r * 13) % 4096).collect();
        // Each call starts from the same values (rotating in place over and over would drift
        // bf16 values towards subnormals); the copy is timed too.
        c.bench_function(&format!("rope/{name}/{rows}"), |b| {
            b.iter(|| {
                qkv.copy_from_slice(&src);
                let n = (rows - 1) * stride + 12 * d;
                rope(&mut qkv[..n], stride, 12, d, &positions, &cos, &sin, 1).unwrap()
            })
        });
    }
}

fn benches(c: &mut Criterion) {
    bench_type::<f32>(c, "f32");
    bench_type::<Bf16>(c, "bf16");
}

criterion_group!(layer_ops, benches);
criterion_main!(layer_ops);

//! Cost of one `schedule_into_shared` + `update_into` step (what the Python binding runs):
//! steady decode of 32 / 256 / 1024 requests (512-token prompts), and a prefill step admitting
//! 64 requests with 2048-token prompts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sglrs_sched::{FinishedBatch, RequestOptions, Scheduler, SchedulerConfig, StepKind, StepPlan};

const PROMPT: usize = 512;
const MAX_NEW: usize = 2048;

fn prompt(id: u64, len: usize) -> Vec<u32> {
    (0..len as u64)
        .map(|p| ((id * 7919 + p * 104_729) % 30_000) as u32 + 3)
        .collect()
}

/// `n` requests past their prefill, decoding.
fn decoding(n: usize) -> (Scheduler, StepPlan, FinishedBatch, Vec<u32>) {
    let mut cfg = SchedulerConfig::new(n * (PROMPT + MAX_NEW + 8));
    cfg.max_running_requests = n;
    cfg.context_length = PROMPT + MAX_NEW;
    cfg.max_prefill_tokens = n * PROMPT;
    cfg.chunked_prefill_size = None;
    let mut s = Scheduler::new(cfg).unwrap();
    for id in 0..n as u64 {
        let opts = RequestOptions {
            ignore_eos: true,
            ..Default::default()
        };
        s.add_request(id, prompt(id, PROMPT), MAX_NEW, opts)
            .unwrap();
    }
    let (mut plan, mut done) = (StepPlan::default(), FinishedBatch::default());
    let mut tokens = Vec::new();
    loop {
        s.schedule_into(&mut plan).unwrap();
        tokens.clear();
        tokens.extend((0..plan.num_sampled()).map(|i| i as u32 + 3));
        s.update_into(&tokens, &[], &mut done).unwrap();
        if plan.kind == StepKind::Prefill && s.stats().waiting == 0 {
            break;
        }
    }
    (s, plan, done, tokens)
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_step");
    for n in [32usize, 256, 1024] {
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    // A fresh batch every MAX_NEW - 8 steps keeps every request decoding.
                    let (mut s, mut plan, mut done, mut tokens) = decoding(n);
                    let steps = left.min(MAX_NEW as u64 - 8);
                    tokens.clear();
                    tokens.extend((0..n).map(|i| i as u32 + 3));
                    let start = Instant::now();
                    for _ in 0..steps {
                        s.schedule_into_shared(&mut plan).unwrap();
                        s.update_into(black_box(&tokens), &[], &mut done).unwrap();
                    }
                    total += start.elapsed();
                    debug_assert_eq!(plan.kind, StepKind::Decode);
                    left -= steps;
                }
                total
            });
        });
    }
    g.finish();
}

/// A fresh scheduler per iteration (built and dropped untimed), with one `StepPlan` and
/// `FinishedBatch` reused across iterations, as a long-lived engine (and the Python binding)
/// reuses them: the timed step writes into buffers that were written before.
fn bench_prefill(c: &mut Criterion) {
    const N: usize = 64;
    const LEN: usize = 2048;
    let prompts: Vec<Vec<u32>> = (0..N as u64).map(|id| prompt(id, LEN)).collect();
    let fresh = || {
        let mut cfg = SchedulerConfig::new(N * (LEN + 64));
        cfg.max_running_requests = N;
        cfg.context_length = LEN + 64;
        cfg.max_prefill_tokens = N * LEN;
        cfg.chunked_prefill_size = None;
        let mut s = Scheduler::new(cfg).unwrap();
        for (id, p) in prompts.iter().enumerate() {
            s.add_request(id as u64, p.clone(), 32, RequestOptions::default())
                .unwrap();
        }
        s
    };
    let (mut plan, mut done, tokens) = (StepPlan::default(), FinishedBatch::default(), [3u32; N]);
    c.bench_function("prefill_step_64x2048", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut s = fresh();
                let start = Instant::now();
                s.schedule_into_shared(&mut plan).unwrap();
                s.update_into(black_box(&tokens), &[], &mut done).unwrap();
                total += start.elapsed();
                assert_eq!(plan.batch_size(), N);
            }
            total
        });
    });
}

criterion_group!(benches, bench_decode, bench_prefill);
criterion_main!(benches);

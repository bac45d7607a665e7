//! Cost of one `schedule_into_shared` + `update_into` step (what the Python binding runs):
//! steady decode of 32 / 256 / 1024 requests (512-token prompts), and a prefill step admitting
//! 64 requests with 2048-token prompts, also split into its two halves (`schedule` alone:
//! admission and the plan; `update` alone: caching the 64 prompts in the radix tree), and the
//! memory work those halves consist of, each alone (`prefill_64x2048_parts`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sglrs_radix::{RadixTree, SlotAllocator};
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

/// Which part of the prefill step a measurement times.
#[derive(Clone, Copy)]
enum Part {
    Step,
    Schedule,
    Update,
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
    let mut g = c.benchmark_group("prefill_64x2048");
    for (name, part) in [
        ("step", Part::Step),
        ("schedule", Part::Schedule),
        ("update", Part::Update),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut s = fresh();
                    let start = Instant::now();
                    s.schedule_into_shared(&mut plan).unwrap();
                    let planned = Instant::now();
                    s.update_into(black_box(&tokens), &[], &mut done).unwrap();
                    let end = Instant::now();
                    total += match part {
                        Part::Step => end - start,
                        Part::Schedule => planned - start,
                        Part::Update => end - planned,
                    };
                    assert_eq!(plan.batch_size(), N);
                }
                total
            });
        });
    }
    g.finish();
}

/// The prefill step's memory work, each part alone, on the same 64 x 2048 prompts: the slot
/// allocation (admission writes every new token's slot), the plan's per-token arrays (input
/// ids, positions, KV locations: three 512 KiB arrays), and caching the prompts in a fresh
/// radix tree (the update: it copies every token and slot into the tree's edges).
fn bench_prefill_parts(c: &mut Criterion) {
    const N: usize = 64;
    const LEN: usize = 2048;
    let prompts: Vec<Vec<u32>> = (0..N as u64).map(|id| prompt(id, LEN)).collect();
    let slots: Vec<Vec<u32>> = (0..N as u32)
        .map(|r| (r * LEN as u32..(r + 1) * LEN as u32).collect())
        .collect();
    let mut g = c.benchmark_group("prefill_64x2048_parts");
    g.bench_function("slot_alloc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut alloc = SlotAllocator::new(N * (LEN + 64), 1);
                let mut out: Vec<Vec<u32>> = (0..N).map(|_| Vec::with_capacity(LEN + 32)).collect();
                let start = Instant::now();
                for o in &mut out {
                    assert!(alloc.alloc_into(LEN, o));
                }
                total += start.elapsed();
                black_box(&out);
            }
            total
        });
    });
    // The scheduler copies its u32 ids into the int32 arrays as plain memory copies.
    let as_i32 = |v: &[Vec<u32>]| -> Vec<Vec<i32>> {
        v.iter()
            .map(|x| x.iter().map(|&t| t as i32).collect())
            .collect()
    };
    let (prompts_i32, slots_i32) = (as_i32(&prompts), as_i32(&slots));
    let (mut input_ids, mut positions, mut out_cache_loc) = (Vec::new(), Vec::new(), Vec::new());
    g.bench_function("plan_arrays", |b| {
        b.iter(|| {
            for v in [&mut input_ids, &mut positions, &mut out_cache_loc] {
                v.clear();
                v.reserve(N * LEN);
            }
            for (p, s) in prompts_i32.iter().zip(&slots_i32) {
                input_ids.extend_from_slice(p);
                positions.extend(0..LEN as i32);
                out_cache_loc.extend_from_slice(s);
            }
            black_box((&input_ids, &positions, &out_cache_loc));
        });
    });
    g.bench_function("radix_insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut tree = RadixTree::new(1);
                let start = Instant::now();
                for (p, s) in prompts.iter().zip(&slots) {
                    let (cached, node) = tree.insert_and_match(p, s).unwrap();
                    assert_eq!(cached, 0);
                    tree.lock(node).unwrap();
                }
                total += start.elapsed();
                black_box(&tree);
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_prefill, bench_prefill_parts);
criterion_main!(benches);

//! The 32k-token shared document of `benches/radix_vs_sglang.py` (trace `doc_32k`) in Rust
//! alone, so that the Python binding's share of a call can be told apart: match and insert of
//! the document plus a short question with uint16, int32 and int64 ids (what numpy arrays hold,
//! read in place; uint16 when the vocabulary is below 65,536), next to the floor: a plain sum
//! over the same bytes (query ids + the edge's 32,768 tokens, which the tree stores as u16 since
//! all are below 65,536; the sum over a u32 copy of the edge is shown too). Four inputs are used
//! in turn: like a fresh request's, each is in L2 but not in L1.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sglrs_radix::{IdElem, RadixError, RadixTree};

const DOC: usize = 32_768;
const INPUTS: usize = 4;

/// Deterministic xorshift, so the inputs are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }

    fn tokens(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.next() % 32_000).collect()
    }
}

/// A tree holding the document as one edge under the root (split from its first question's
/// leaf, as in the trace), and the document's tokens.
fn doc_tree() -> (RadixTree, Vec<u32>) {
    let mut rng = Rng(5);
    let doc = rng.tokens(DOC);
    let mut tree = RadixTree::new(1);
    let mut first = doc.clone();
    first.extend(rng.tokens(50).iter().map(|t| t + 40_000));
    let slots: Vec<u32> = (0..first.len() as u32).collect();
    tree.insert(&first, &slots).unwrap();
    let mut split = doc.clone();
    split.push(70_000);
    let (n, _) = tree.match_prefix(&split, &mut Vec::new());
    assert_eq!(n, DOC);
    (tree, doc)
}

/// `INPUTS` documents + distinct questions (`extra` tokens each), as `E`.
fn inputs<E: IdElem>(doc: &[u32], extra: usize, conv: fn(u32) -> E) -> Vec<Vec<E>> {
    let mut rng = Rng(9);
    (0..INPUTS)
        .map(|k| {
            let mut q: Vec<E> = doc.iter().map(|&t| conv(t)).collect();
            // A token the tree does not hold after the document (below 65,536, for u16).
            q.push(conv(65_000 + k as u32));
            q.extend(rng.tokens(extra - 1).into_iter().map(conv));
            q
        })
        .collect()
}

/// A plain sum over `q` and `t` (wrapping), read the fastest way found for this loop: 512-bit
/// loads from 64-byte aligned addresses, four accumulators, a prefetch 1 KiB ahead. What
/// reading the bytes costs, with no compare and no early exit.
fn sum<E: IdElem, T: Copy + Into<u64>>(q: &[E], t: &[T]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { sum_avx512(as_bytes(q)).wrapping_add(sum_avx512(as_bytes(t))) };
        }
    }
    let a = q.iter().fold(0u64, |s, &x| s.wrapping_add(x.wide()));
    t.iter().fold(a, |s, &x| s.wrapping_add(x.into()))
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: integer ids have no padding; any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_avx512(bytes: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let p = bytes.as_ptr();
    let head = p.align_offset(64).min(bytes.len());
    let mut total = bytes[..head].iter().map(|&b| u64::from(b)).sum::<u64>();
    let mut acc = [_mm512_setzero_si512(); 4];
    let mut off = head;
    while off + 256 <= bytes.len() {
        for k in 0..4 {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off + 1024 + 64 * k).cast());
        }
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: `off + 256 <= len`, and `p + off` is 64-byte aligned.
            let v = unsafe { _mm512_load_si512(p.add(off + 64 * k).cast()) };
            *a = _mm512_add_epi64(*a, v);
        }
        off += 256;
    }
    total += bytes[off..].iter().map(|&b| u64::from(b)).sum::<u64>();
    let all = _mm512_add_epi64(
        _mm512_add_epi64(acc[0], acc[1]),
        _mm512_add_epi64(acc[2], acc[3]),
    );
    total.wrapping_add(_mm512_reduce_add_epi64(all) as u64)
}

fn bench_floor_and_match(c: &mut Criterion) {
    let (mut tree, doc) = doc_tree();
    let q32 = inputs(&doc, 50, |t| t as i32);
    let q64 = inputs(&doc, 50, i64::from);
    let q16 = inputs(&doc, 50, |t| t as u16);
    let doc16: Vec<u16> = doc.iter().map(|&t| t as u16).collect();
    let mut out = Vec::with_capacity(DOC + 100);
    let mut i = 0;
    c.bench_function("floor/doc_32k_sum_i32_query_and_edge", |b| {
        b.iter(|| {
            i = (i + 1) % INPUTS;
            black_box(sum(&q32[i][..DOC], &doc))
        })
    });
    c.bench_function("floor/doc_32k_sum_i32_query_and_u16_edge", |b| {
        b.iter(|| {
            i = (i + 1) % INPUTS;
            black_box(sum(&q32[i][..DOC], &doc16))
        })
    });
    c.bench_function("floor/doc_32k_sum_u16_query_and_u16_edge", |b| {
        b.iter(|| {
            i = (i + 1) % INPUTS;
            black_box(sum(&q16[i][..DOC], &doc16))
        })
    });
    c.bench_function("floor/doc_32k_sum_i64_query_and_edge", |b| {
        b.iter(|| {
            i = (i + 1) % INPUTS;
            black_box(sum(&q64[i][..DOC], &doc))
        })
    });
    c.bench_function("floor/doc_32k_sum_i64_query_and_u16_edge", |b| {
        b.iter(|| {
            i = (i + 1) % INPUTS;
            black_box(sum(&q64[i][..DOC], &doc16))
        })
    });
    for q in &q16 {
        assert_eq!(tree.match_prefix_shared(q, &mut out).unwrap().0, DOC);
    }
    c.bench_function("match/doc_32k_u16_shared", |b| {
        b.iter(|| {
            out.clear();
            i = (i + 1) % INPUTS;
            black_box(tree.match_prefix_shared(&q16[i], &mut out).unwrap())
        })
    });
    c.bench_function("match/doc_32k_i32_shared", |b| {
        b.iter(|| {
            out.clear();
            i = (i + 1) % INPUTS;
            black_box(tree.match_prefix_shared(&q32[i], &mut out).unwrap())
        })
    });
    c.bench_function("match/doc_32k_i64_shared", |b| {
        b.iter(|| {
            out.clear();
            i = (i + 1) % INPUTS;
            black_box(tree.match_prefix_shared(&q64[i], &mut out).unwrap())
        })
    });
}

/// Insert of the document + a 150-token question and answer (a new leaf) with int32 slots
/// (what `RadixCache` hands out), and the slot range check the Python binding adds (the slots
/// the tree adopts; the 32,768 duplicates are not read). The new leaves are evicted outside
/// the timed part.
fn bench_insert<E: IdElem>(c: &mut Criterion, name: &str, conv: fn(u32) -> E) {
    let (mut tree, doc) = doc_tree();
    let (_, doc_node) = tree.match_prefix(&doc, &mut Vec::new());
    tree.lock(doc_node).unwrap();
    let tokens = inputs(&doc, 150, conv);
    let slots: Vec<Vec<i32>> = tokens
        .iter()
        .map(|t| (0..t.len() as i32).collect())
        .collect();
    let mut freed = Vec::new();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(INPUTS as u64) as usize;
                let start = Instant::now();
                for (t, s) in tokens.iter().zip(&slots).take(n) {
                    let r = tree.insert_ids_checked(t, s, |_, new| {
                        assert_eq!(u32::first_at_least(new, 1 << 30), None);
                        Ok::<(), RadixError>(())
                    });
                    black_box(r.unwrap());
                }
                elapsed += start.elapsed();
                freed.clear();
                tree.evict(tree.evictable_size(), &mut freed);
                done += n as u64;
            }
            elapsed
        })
    });
}

fn bench_inserts(c: &mut Criterion) {
    bench_insert(c, "insert/doc_32k_u16", |t| t as u16);
    bench_insert(c, "insert/doc_32k_i32", |t| t as i32);
    bench_insert(c, "insert/doc_32k_i64", i64::from);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_floor_and_match, bench_inserts
}
criterion_main!(benches);

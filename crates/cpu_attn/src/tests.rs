//! The kernel against a naive f64 reference: every variant, element type, GQA layout, sliding
//! window, long contexts, bad inputs, and random shapes and tables.

use proptest::prelude::*;

use crate::dispatch::{self, ItemFn};
use crate::{Bf16, DecodeError, DecodeShape, Element, PagedDecode, F16};

/// A test case in f32; converted to the element type under test.
#[derive(Clone, Debug)]
struct Case {
    shape: DecodeShape,
    num_slots: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    table: Vec<i32>,
    stride: usize,
    rows: Vec<u32>,
    seq_lens: Vec<u32>,
    scale: f32,
    window: Option<usize>,
}

/// Deterministic xorshift for the hand-written cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

impl Case {
    /// Random values; each request gets its own table row (rows reversed) with distinct
    /// shuffled slots, like a pool after some churn.
    fn random(shape: DecodeShape, seq_lens: &[u32], stride: usize, seed: u64) -> Case {
        let mut rng = Rng(seed | 1);
        let total: usize = seq_lens.iter().map(|&s| s as usize).sum();
        let num_slots = total + 3;
        let mut free: Vec<i32> = (0..num_slots as i32).collect();
        for i in (1..free.len()).rev() {
            free.swap(i, rng.below(i + 1));
        }
        let b = shape.batch;
        let mut table = vec![-1i32; b * stride];
        let rows: Vec<u32> = (0..b as u32).rev().collect();
        for (r, &len) in seq_lens.iter().enumerate() {
            for pos in 0..len as usize {
                table[rows[r] as usize * stride + pos] = free.pop().unwrap();
            }
        }
        let kv = num_slots * shape.kv_heads * shape.head_dim;
        let mut vals = |n: usize| (0..n).map(|_| rng.unit()).collect::<Vec<f32>>();
        Case {
            shape,
            num_slots,
            q: vals(shape.out_len()),
            k: vals(kv),
            v: vals(kv),
            table,
            stride,
            rows,
            seq_lens: seq_lens.to_vec(),
            scale: (shape.head_dim as f32).powf(-0.5),
            window: None,
        }
    }

    /// The attention output in f64 from the values as stored in `T` (two-pass softmax).
    fn reference<T: Element>(&self) -> Vec<f64> {
        let DecodeShape {
            batch,
            q_heads,
            kv_heads,
            head_dim: d,
        } = self.shape;
        let stored = |x: f32| f64::from(T::from_f32(x).to_f32());
        let mut out = vec![0.0; self.shape.out_len()];
        for b in 0..batch {
            let seq = self.seq_lens[b] as usize;
            let first = self.window.map_or(0, |w| seq.saturating_sub(w));
            let row = self.rows[b] as usize * self.stride;
            for h in 0..q_heads {
                let kvh = h / (q_heads / kv_heads);
                let q = &self.q[(b * q_heads + h) * d..][..d];
                let at = |pos: usize| (self.table[row + pos] as usize * kv_heads + kvh) * d;
                let scores: Vec<f64> = (first..seq)
                    .map(|pos| {
                        let k = &self.k[at(pos)..][..d];
                        let dot: f64 = q.iter().zip(k).map(|(&x, &y)| stored(x) * stored(y)).sum();
                        dot * f64::from(self.scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for (pos, w) in (first..seq).zip(&weights) {
                    let v = &self.v[at(pos)..][..d];
                    for (o, &x) in out[(b * q_heads + h) * d..][..d].iter_mut().zip(v) {
                        *o += w / total * stored(x);
                    }
                }
            }
        }
        out
    }

    fn run<T: Element>(&self, threads: usize, item_fn: ItemFn<T>) -> Result<Vec<f64>, DecodeError> {
        let conv = |x: &[f32]| x.iter().map(|&v| T::from_f32(v)).collect::<Vec<T>>();
        let (q, k, v) = (conv(&self.q), conv(&self.k), conv(&self.v));
        let p = PagedDecode {
            shape: self.shape,
            q: &q,
            q_strides: [
                self.shape.q_heads * self.shape.head_dim,
                self.shape.head_dim,
            ],
            k: &k,
            v: &v,
            req_to_token: &self.table,
            table_stride: self.stride,
            req_pool_indices: &self.rows,
            seq_lens: &self.seq_lens,
            scale: self.scale,
            sliding_window: self.window,
        };
        let mut out = vec![T::from_f32(f32::NAN); self.shape.out_len()];
        p.run_with(&mut out, threads, item_fn)?;
        Ok(out.iter().map(|x| f64::from(x.to_f32())).collect())
    }

    /// Every compiled variant on 1 and 3 threads, within `tol` of the reference (relative to
    /// the largest |value| of V, which bounds every output).
    fn check<T: Element>(&self, tol: f64) {
        let want = self.reference::<T>();
        let bound = self
            .v
            .iter()
            .fold(0.0f64, |m, &x| m.max(f64::from(x).abs()))
            .max(1e-30);
        for item_fn in variants::<T>() {
            for threads in [1, 3] {
                let got = self.run::<T>(threads, item_fn).unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol * bound,
                        "output {i}: {g} vs reference {w} ({threads} threads, {:?})",
                        self.shape
                    );
                }
            }
        }
    }
}

/// The portable build and every SIMD variant this CPU runs.
fn variants<T: Element>() -> Vec<ItemFn<T>> {
    dispatch::available::<T>()
}

const F32_TOL: f64 = 2e-5;
/// bf16 keeps 8 significant bits: the output's own rounding is 2^-9 relative.
const BF16_TOL: f64 = 8e-3;
const F16_TOL: f64 = 1e-3;

fn shape(batch: usize, q_heads: usize, kv_heads: usize, head_dim: usize) -> DecodeShape {
    DecodeShape {
        batch,
        q_heads,
        kv_heads,
        head_dim,
    }
}

#[test]
fn mha_matches_reference() {
    let case = Case::random(shape(3, 4, 4, 64), &[5, 40, 17], 48, 1);
    case.check::<f32>(F32_TOL);
    case.check::<Bf16>(BF16_TOL);
    case.check::<F16>(F16_TOL);
}

#[test]
fn gqa_smollm_shape_matches_reference() {
    let lens: Vec<u32> = (0..32).map(|i| 120 + i % 20).collect();
    let case = Case::random(shape(32, 9, 3, 64), &lens, 160, 2);
    case.check::<f32>(F32_TOL);
    case.check::<Bf16>(BF16_TOL);
}

#[test]
fn head_dims_other_than_64_and_128() {
    for d in [1, 8, 80, 96, 128, 130] {
        let case = Case::random(shape(2, 8, 2, d), &[33, 70], 70, d as u64);
        case.check::<f32>(F32_TOL);
        case.check::<Bf16>(BF16_TOL);
    }
}

#[test]
fn seq_len_one_returns_v() {
    let case = Case::random(shape(4, 6, 2, 64), &[1, 1, 1, 1], 4, 3);
    case.check::<f32>(F32_TOL);
    // With one position the softmax weight is exactly 1: the output is that V row.
    let got = case.run::<f32>(1, dispatch::select()).unwrap();
    let slot = case.table[case.rows[0] as usize * case.stride] as usize;
    for h in 0..6 {
        let v = &case.v[(slot * 2 + h / 3) * 64..][..64];
        for (g, &w) in got[h * 64..(h + 1) * 64].iter().zip(v) {
            assert!((g - f64::from(w)).abs() < 1e-6);
        }
    }
}

#[test]
fn sliding_window_attends_the_last_positions() {
    let mut case = Case::random(shape(3, 4, 2, 64), &[10, 3, 50], 64, 4);
    for w in [1, 2, 3, 7, 10, 49, 50, 51, 1000] {
        case.window = Some(w);
        case.check::<f32>(F32_TOL);
        case.check::<Bf16>(BF16_TOL);
    }
    // The window ignores what lies before it: scribbling on an older slot changes nothing.
    case.window = Some(5);
    let before = case.run::<f32>(1, dispatch::select()).unwrap();
    let old = case.table[case.rows[2] as usize * case.stride] as usize; // position 0 of req 2
    for x in &mut case.k[old * 2 * 64..(old + 1) * 2 * 64] {
        *x = 100.0;
    }
    assert_eq!(case.run::<f32>(1, dispatch::select()).unwrap(), before);
}

#[test]
fn long_context_with_large_scores_stays_stable() {
    let mut case = Case::random(shape(2, 4, 1, 64), &[20_000, 3_001], 20_000, 5);
    // Scores in the hundreds: a softmax without the running max would overflow.
    case.scale = 40.0;
    case.check::<f32>(1e-4);
    case.check::<Bf16>(BF16_TOL);
    let got = case.run::<f32>(2, dispatch::select()).unwrap();
    assert!(got.iter().all(|x| x.is_finite()));
}

#[test]
fn strided_queries_are_read_in_place() {
    let case = Case::random(shape(2, 4, 2, 16), &[9, 4], 9, 6);
    let want = case.reference::<f32>();
    // Each token's q heads inside a wider row (as in a fused qkv projection output).
    let row = 4 * 16 + 2 * 2 * 16;
    let mut wide = vec![f32::NAN; 2 * row];
    for b in 0..2 {
        wide[b * row..b * row + 64].copy_from_slice(&case.q[b * 64..(b + 1) * 64]);
    }
    let p = PagedDecode {
        shape: case.shape,
        q: &wide,
        q_strides: [row, 16],
        k: &case.k,
        v: &case.v,
        req_to_token: &case.table,
        table_stride: case.stride,
        req_pool_indices: &case.rows,
        seq_lens: &case.seq_lens,
        scale: case.scale,
        sliding_window: None,
    };
    let mut out = vec![0.0f32; 128];
    p.run(&mut out, 1).unwrap();
    for (g, w) in out.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() < 1e-5);
    }
}

fn run_f32(case: &Case, threads: usize) -> Result<Vec<f64>, DecodeError> {
    case.run::<f32>(threads, dispatch::select())
}

#[test]
fn bad_inputs_are_errors_not_reads() {
    let good = Case::random(shape(2, 4, 2, 8), &[3, 5], 6, 7);
    assert!(run_f32(&good, 1).is_ok());

    let mut c = good.clone();
    c.table[c.rows[1] as usize * c.stride + 4] = c.num_slots as i32;
    let err = run_f32(&c, 2).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Slot {
            request: 1,
            position: 4,
            ..
        }
    ));
    assert!(err.to_string().contains("outside the"));

    let mut c = good.clone();
    c.table[c.rows[0] as usize * c.stride] = -5;
    assert!(matches!(
        run_f32(&c, 1),
        Err(DecodeError::Slot { slot: -5, .. })
    ));

    let mut c = good.clone();
    c.seq_lens[0] = 7; // > stride
    assert!(matches!(
        run_f32(&c, 1),
        Err(DecodeError::Request { request: 0, .. })
    ));

    let mut c = good.clone();
    c.seq_lens[1] = 0;
    assert!(matches!(
        run_f32(&c, 1),
        Err(DecodeError::Request { request: 1, .. })
    ));

    let mut c = good.clone();
    c.rows[1] = 2; // the table has 2 rows
    assert!(matches!(
        run_f32(&c, 1),
        Err(DecodeError::Request { request: 1, .. })
    ));

    let mut c = good.clone();
    c.shape.q_heads = 3;
    assert!(matches!(run_f32(&c, 1), Err(DecodeError::Shape(_))));

    let mut c = good.clone();
    c.v.pop();
    assert!(matches!(run_f32(&c, 1), Err(DecodeError::Shape(_))));

    let mut c = good.clone();
    c.window = Some(0);
    assert!(matches!(run_f32(&c, 1), Err(DecodeError::Shape(_))));

    let mut c = good.clone();
    c.seq_lens.pop();
    assert!(matches!(run_f32(&c, 1), Err(DecodeError::Shape(_))));

    assert!(matches!(run_f32(&good, 0), Err(DecodeError::Threads(_))));

    // q too short for its strides.
    let p = PagedDecode {
        shape: good.shape,
        q: &good.q[..good.q.len() - 1],
        q_strides: [32, 8],
        k: &good.k,
        v: &good.v,
        req_to_token: &good.table,
        table_stride: good.stride,
        req_pool_indices: &good.rows,
        seq_lens: &good.seq_lens,
        scale: 1.0,
        sliding_window: None,
    };
    let mut out = vec![0.0f32; 64];
    assert!(matches!(p.run(&mut out, 1), Err(DecodeError::Shape(_))));
    let mut short = vec![0.0f32; 63];
    assert!(matches!(
        PagedDecode { q: &good.q, ..p }.run(&mut short, 1),
        Err(DecodeError::Shape(_))
    ));
}

#[test]
fn empty_batch_is_a_no_op() {
    let case = Case::random(shape(0, 4, 2, 8), &[], 4, 8);
    assert_eq!(run_f32(&case, 2).unwrap(), Vec::<f64>::new());
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        1usize..5,                                     // batch
        1usize..4,                                     // kv heads
        1usize..5,                                     // group
        prop_oneof![1usize..40, Just(64), Just(128)],  // head dim
        1usize..100,                                   // stride
        any::<u64>(),                                  // seed
        proptest::option::of(1usize..120),             // window
        proptest::collection::vec(any::<u32>(), 1..5), // seq len draws
    )
        .prop_map(|(b, hkv, g, d, stride, seed, window, draws)| {
            let lens: Vec<u32> = (0..b)
                .map(|i| 1 + draws[i % draws.len()] % stride as u32)
                .collect();
            let mut case = Case::random(shape(b, hkv * g, hkv, d), &lens, stride, seed);
            case.window = window;
            case
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_shapes_match_reference(case in arb_case()) {
        case.check::<f32>(F32_TOL);
        case.check::<Bf16>(BF16_TOL);
    }
}

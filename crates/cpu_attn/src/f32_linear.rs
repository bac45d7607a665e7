//! float32 linear layers `y = x W^T (+ b)` on AVX-512, for the few rows of a CPU decode step.
//!
//! A float32 decode step on SmolLM2 spends most of its linear time either waiting on memory
//! (one row: each weight is read once) or, at 32 rows, in oneDNN's matmul at ~110 GFLOP/s on
//! two cores, a third of what the FMA units do: its loads of a cold weight wait on memory one
//! after another. Here the weight is packed once so that each thread streams one contiguous
//! range, prefetched ahead into L2, while up to 12 rows of `x` are multiplied with it in
//! registers.
//!
//! Packed layout of a `[n, k]` weight: blocks of 32 output columns, each `k` steps of the 32
//! weights of those columns at one reduction index (128 bytes, two vectors). Each output is the
//! plain sequential f32 sum over `k` (the order differs from MKL's, by rounding only).

use crate::DecodeError;

/// Output columns of one packed block (two 16-lane vectors).
pub const BLOCK_N: usize = 32;
/// Rows of `x` multiplied with a streamed block at once (two accumulators each).
const MAX_GROUP: usize = 12;

fn shape_err<T>(message: String) -> Result<T, DecodeError> {
    Err(DecodeError::Shape(format!("f32 linear: {message}")))
}

/// Whether the weight shape `[n, k]` has a packed form (`n` a positive multiple of 32).
pub fn shape_supported(n: usize, k: usize) -> bool {
    n > 0 && k > 0 && n.is_multiple_of(BLOCK_N)
}

fn check_weight(n: usize, k: usize) -> Result<(), DecodeError> {
    if !shape_supported(n, k) {
        return shape_err(format!(
            "weight [{n}, {k}]: n must be a positive multiple of 32 and k positive"
        ));
    }
    Ok(())
}

/// Packs a row-major `[n, k]` weight into `out` (same length) in the kernel's layout.
pub fn pack(weight: &[f32], n: usize, k: usize, out: &mut [f32]) -> Result<(), DecodeError> {
    check_weight(n, k)?;
    if weight.len() != n * k || out.len() != n * k {
        return shape_err(format!(
            "weight ({}) and packed ({}) must both hold {n} x {k} elements",
            weight.len(),
            out.len()
        ));
    }
    for (nb, block) in out.chunks_exact_mut(BLOCK_N * k).enumerate() {
        for (col, w) in weight[nb * BLOCK_N * k..][..BLOCK_N * k]
            .chunks_exact(k)
            .enumerate()
        {
            for (kk, &v) in w.iter().enumerate() {
                block[kk * BLOCK_N + col] = v;
            }
        }
    }
    Ok(())
}

/// Whether this CPU runs the kernel (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out = x W^T (+ bias)` for `m` rows `x` `[m, k]` (row-major) and a weight packed by [`pack`]
/// (`[n, k]`), into `out` `[m, n]`, on `threads` threads (each streams its own column blocks).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    packed: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    threads: usize,
) -> Result<(), DecodeError> {
    check_weight(n, k)?;
    crate::check_linear_call(
        "f32 linear",
        m,
        k,
        n,
        x.len(),
        packed.len(),
        out.len(),
        bias.map(|b| b.len()),
        threads,
    )?;
    if !available() {
        return shape_err("this CPU has no AVX-512".into());
    }
    if m == 0 {
        return Ok(());
    }
    // x in groups of up to 12 rows, each transposed to [k][rows]: the kernel broadcasts one
    // value per row and step from a single moving pointer.
    let mut xt = vec![0.0f32; m * k];
    for r0 in (0..m).step_by(MAX_GROUP) {
        let rows = (m - r0).min(MAX_GROUP);
        let group = &mut xt[r0 * k..(r0 + rows) * k];
        for r in 0..rows {
            for (kk, &v) in x[(r0 + r) * k..(r0 + r + 1) * k].iter().enumerate() {
                group[kk * rows + r] = v;
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        let job = x86::Job {
            xt: xt.as_ptr() as usize,
            m,
            k,
            w: packed.as_ptr() as usize,
            n,
            bias: bias.map_or(0, |b| b.as_ptr() as usize),
            out: out.as_mut_ptr() as usize,
        };
        x86::run(&job, threads)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        unreachable!("available() is false off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;

    use super::{BLOCK_N, MAX_GROUP};
    use crate::{thread_pool, DecodeError};

    /// How far ahead of the current step the first row group prefetches into L2.
    const PREFETCH_BYTES: usize = 16 * 1024;

    /// One call's buffers as addresses (checked by the caller), shared by the threads; each
    /// thread writes only its own output columns.
    pub(super) struct Job {
        pub xt: usize,
        pub m: usize,
        pub k: usize,
        pub w: usize,
        pub n: usize,
        pub bias: usize,
        pub out: usize,
    }

    pub(super) fn run(job: &Job, threads: usize) -> Result<(), DecodeError> {
        let blocks = job.n / BLOCK_N;
        let threads = threads.min(blocks);
        if threads <= 1 {
            // SAFETY: `available()` held and the caller checked every buffer's size.
            unsafe { blocks_range(job, 0, blocks) };
            return Ok(());
        }
        thread_pool(threads)?.broadcast(|ctx| {
            let (t, all) = (ctx.index(), ctx.num_threads());
            // SAFETY: as above; the column ranges of the threads are disjoint.
            unsafe { blocks_range(job, blocks * t / all, blocks * (t + 1) / all) };
        });
        Ok(())
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn blocks_range(job: &Job, b0: usize, b1: usize) {
        let k = job.k;
        for b in b0..b1 {
            let w = (job.w as *const f32).add(b * BLOCK_N * k);
            for r0 in (0..job.m).step_by(MAX_GROUP) {
                let rows = (job.m - r0).min(MAX_GROUP);
                let xt = (job.xt as *const f32).add(r0 * k);
                // Only the first group reads the block from memory; the others find it in L2.
                let pf = r0 == 0;
                let col = b * BLOCK_N;
                match rows {
                    1 => group::<1>(job, xt, w, pf, r0, col),
                    2 => group::<2>(job, xt, w, pf, r0, col),
                    3 => group::<3>(job, xt, w, pf, r0, col),
                    4 => group::<4>(job, xt, w, pf, r0, col),
                    5 => group::<5>(job, xt, w, pf, r0, col),
                    6 => group::<6>(job, xt, w, pf, r0, col),
                    7 => group::<7>(job, xt, w, pf, r0, col),
                    8 => group::<8>(job, xt, w, pf, r0, col),
                    9 => group::<9>(job, xt, w, pf, r0, col),
                    10 => group::<10>(job, xt, w, pf, r0, col),
                    11 => group::<11>(job, xt, w, pf, r0, col),
                    _ => group::<MAX_GROUP>(job, xt, w, pf, r0, col),
                }
            }
        }
    }

    /// Output rows `r0 .. r0 + R`, columns `col .. col + 32`: the products of `R` transposed
    /// rows of `x` with one packed column block, plus the bias.
    #[inline(always)]
    unsafe fn group<const R: usize>(
        job: &Job,
        xt: *const f32,
        w: *const f32,
        prefetch: bool,
        r0: usize,
        col: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for kk in 0..job.k {
            let wp = w.add(kk * BLOCK_N);
            if prefetch {
                let ahead = (wp as *const u8).wrapping_add(PREFETCH_BYTES);
                // Prefetches never fault, so reading past the end of the weight is harmless.
                asm!("prefetcht2 [{p}]", "prefetcht2 [{p} + 64]", p = in(reg) ahead,
                     options(nostack, readonly, preserves_flags));
            }
            let w0 = _mm512_loadu_ps(wp);
            let w1 = _mm512_loadu_ps(wp.add(16));
            let x = xt.add(kk * R);
            for (r, a) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*x.add(r));
                a[0] = _mm512_fmadd_ps(w0, v, a[0]);
                a[1] = _mm512_fmadd_ps(w1, v, a[1]);
            }
        }
        let bias = |t: usize| {
            if job.bias == 0 {
                _mm512_setzero_ps()
            } else {
                _mm512_loadu_ps((job.bias as *const f32).add(col + 16 * t))
            }
        };
        let (b0, b1) = (bias(0), bias(1));
        for (r, a) in acc.iter().enumerate() {
            let at = (job.out as *mut f32).add((r0 + r) * job.n + col);
            _mm512_storeu_ps(at, _mm512_add_ps(a[0], b0));
            _mm512_storeu_ps(at.add(16), _mm512_add_ps(a[1], b1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn check(m: usize, nb: usize, k: usize, with_bias: bool, threads: usize, seed: u64) {
        let n = nb * BLOCK_N;
        let (x, w, b) = (
            values(m * k, seed),
            values(n * k, seed + 1),
            values(n, seed + 2),
        );
        let bias = with_bias.then_some(b.as_slice());
        let mut packed = vec![0.0; n * k];
        pack(&w, n, k, &mut packed).unwrap();
        let mut got = vec![0.0f32; m * n];
        linear(&x, m, k, &packed, n, bias, &mut got, threads).unwrap();
        for i in 0..m {
            for j in 0..n {
                // The kernel's order: a sequential f32 sum over k, then the bias.
                let mut want = 0.0f32;
                for l in 0..k {
                    want = x[i * k + l].mul_add(w[j * k + l], want);
                }
                want += bias.map_or(0.0, |b| b[j]);
                assert_eq!(got[i * n + j], want, "[{i}, {j}]");
            }
        }
    }

    #[test]
    fn decode_shapes_match_the_sequential_sum_exactly() {
        if !available() {
            eprintln!("skipped: no AVX-512 on this machine");
            return;
        }
        for (m, nb, k) in [
            (1, 1, 1),
            (1, 3, 576),
            (4, 2, 33),
            (12, 1, 64),
            (13, 2, 7),
            (32, 3, 96),
        ] {
            for threads in [1, 2, 3] {
                check(m, nb, k, m % 2 == 1, threads, (m * 31 + nb) as u64);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_rows_and_blocks_match(m in 1usize..40, nb in 1usize..4, k in 1usize..80,
                                     bias in any::<bool>(), threads in 1usize..4, seed in any::<u64>()) {
            if available() {
                check(m, nb, k, bias, threads, seed);
            }
        }
    }

    #[test]
    fn unsupported_shapes_and_sizes_are_errors() {
        let w = vec![0.0f32; 48 * 8];
        let mut p = w.clone();
        assert!(pack(&w, 48, 8, &mut p).is_err()); // n not a multiple of 32
        let w = vec![0.0f32; 32 * 8];
        let mut p = vec![0.0f32; 32 * 7];
        assert!(pack(&w, 32, 8, &mut p).is_err()); // packed too short
        let mut p = vec![0.0f32; 32 * 8];
        pack(&w, 32, 8, &mut p).unwrap();
        let x = vec![0.0f32; 2 * 8];
        let mut out = vec![0.0f32; 2 * 31];
        assert!(linear(&x, 2, 8, &p, 32, None, &mut out, 1).is_err()); // out too short
        let mut out = vec![0.0f32; 2 * 32];
        let b = vec![0.0f32; 31];
        assert!(linear(&x, 2, 8, &p, 32, Some(&b), &mut out, 1).is_err());
        assert!(linear(&x, 2, 8, &p, 32, None, &mut out, 0).is_err());
    }
}

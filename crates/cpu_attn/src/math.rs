//! The vector building blocks: a dot product, weighted sums of rows, and an `exp` on a
//! polynomial (libm's `expf` is a scalar call). Portable versions are fixed-width lane loops
//! that LLVM turns into SIMD; the AVX2 + FMA versions (`x86.rs`) are intrinsics.

use crate::element::Element;

/// Lanes of the portable dot product's accumulators: two AVX2 registers, four NEON registers.
const LANES: usize = 16;

/// How `a * b + c` is computed: fused where the target has FMA instructions, else as a
/// multiply and an add (`f32::mul_add` without hardware FMA is a slow libm call); and the dot
/// product, which LLVM vectorizes poorly on its own (it pairs lanes into 2-wide pieces).
pub(crate) trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;

    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes::<Self>(a, b)
    }

    /// `scores[g * stride + j] = q_g . k[offsets[j] ..][..d]` for the `group` query rows of `q`
    /// (`[group, d]`); every `offsets[j] + d <= k.len()`. `tile` holds `offsets.len() * d`
    /// values of scratch.
    #[inline(always)]
    fn scores<T: Element>(
        q: &[f32],
        k: &[T],
        offsets: &[usize],
        scores: &mut [f32],
        stride: usize,
        tile: &mut [f32],
    ) {
        scores_via_tile::<Self, T>(q, k, offsets, scores, stride, tile);
    }

    /// `acc_g += sum_j weights[g * stride + j] * v[offsets[j] ..][..d]` for the `group` rows of
    /// `acc` (`[group, d]`); every `offsets[j] + d <= v.len()`. `tile` holds
    /// `offsets.len() * d` values of scratch.
    #[inline(always)]
    fn weighted_v<T: Element>(
        weights: &[f32],
        stride: usize,
        v: &[T],
        offsets: &[usize],
        acc: &mut [f32],
        tile: &mut [f32],
    ) {
        weighted_v_via_tile::<Self, T>(weights, stride, v, offsets, acc, tile);
    }

    /// `acc += sum_j weights[j] * rows[j]` for the `weights.len()` rows of `acc.len()` values
    /// back to back in `rows`.
    #[inline(always)]
    fn weighted_rows(weights: &[f32], rows: &[f32], acc: &mut [f32]) {
        let d = acc.len();
        if d == 0 {
            return;
        }
        for (&w, row) in weights.iter().zip(rows.chunks_exact(d)) {
            axpy::<Self>(w, row, acc);
        }
    }
}

/// Fused multiply-add (one rounding).
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub(crate) struct Fused;

/// Multiply, then add.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
pub(crate) struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// [`MulAdd::scores`] by converting the K rows into `tile` (f32), then one dot per score.
#[inline(always)]
pub(crate) fn scores_via_tile<M: MulAdd + ?Sized, T: Element>(
    q: &[f32],
    k: &[T],
    offsets: &[usize],
    scores: &mut [f32],
    stride: usize,
    tile: &mut [f32],
) {
    let d = tile.len() / offsets.len().max(1);
    if d == 0 {
        return;
    }
    for (row, &at) in tile.chunks_exact_mut(d).zip(offsets) {
        T::to_f32_row(&k[at..at + d], row);
    }
    for (g, qg) in q.chunks_exact(d).enumerate() {
        let out = &mut scores[g * stride..][..offsets.len()];
        for (score, row) in out.iter_mut().zip(tile.chunks_exact(d)) {
            *score = M::dot(qg, row);
        }
    }
}

/// [`MulAdd::weighted_v`] by converting the V rows into `tile` (f32) first.
#[inline(always)]
pub(crate) fn weighted_v_via_tile<M: MulAdd + ?Sized, T: Element>(
    weights: &[f32],
    stride: usize,
    v: &[T],
    offsets: &[usize],
    acc: &mut [f32],
    tile: &mut [f32],
) {
    let n = offsets.len();
    let d = tile.len() / n.max(1);
    if d == 0 {
        return;
    }
    for (row, &at) in tile.chunks_exact_mut(d).zip(offsets) {
        T::to_f32_row(&v[at..at + d], row);
    }
    for (g, acc) in acc.chunks_exact_mut(d).enumerate() {
        M::weighted_rows(&weights[g * stride..][..n], tile, acc);
    }
}

/// `sum(a[i] * b[i])` over the common length, in `LANES` partial sums.
#[inline(always)]
pub(crate) fn dot_lanes<M: MulAdd + ?Sized>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        let (x, y): (&[f32; LANES], &[f32; LANES]) = (x.try_into().unwrap(), y.try_into().unwrap());
        for i in 0..LANES {
            acc[i] = M::mul_add(x[i], y[i], acc[i]);
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail = M::mul_add(*x, *y, tail);
    }
    reduce(acc) + tail
}

/// `sum(x)` in `LANES` partial sums (a vector loop, unlike a sequential `f32` sum).
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    reduce(acc) + tail
}

/// The largest value of `x` (NaN values are skipped; -inf for an empty `x`), in lanes.
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            // A comparison, not `f32::max`: LLVM vectorizes this reduction.
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

/// The sum of the lanes, by pairwise halves: vector shuffles rather than dependent scalar adds.
#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Asks for the cache lines of the `bytes` at `at` ahead of their use; a hint only.
#[inline(always)]
pub(crate) fn prefetch<T>(at: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = at.cast::<i8>();
        for line in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults and reads nothing, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, bytes);
}

/// `acc[i] += p * v[i]`.
#[inline(always)]
pub(crate) fn axpy<M: MulAdd + ?Sized>(p: f32, v: &[f32], acc: &mut [f32]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a = M::mul_add(p, *x, *a);
    }
}

/// `e^x` within 2 ulp for `x <= 88`, exactly 0 below `-87.3` (past the smallest normal).
/// Range reduction to `r` in `[-ln2/2, ln2/2]` and Cephes' degree-6 polynomial; branch-free so
/// a loop over scores vectorizes.
#[inline(always)]
pub(crate) fn exp<M: MulAdd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer (to nearest even) and leaves it in the low bits.
    const ROUND: f32 = 12_582_912.0;
    const MIN: f32 = -87.3;
    let xc = x.clamp(MIN, 88.3);
    let shifted = M::mul_add(xc, LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = M::mul_add(n, -LN2_LO, M::mul_add(n, -LN2_HI, xc));
    let mut p = 1.987_569_1e-4;
    p = M::mul_add(p, r, 1.398_199_9e-3);
    p = M::mul_add(p, r, 8.333_452e-3);
    p = M::mul_add(p, r, 4.166_579_6e-2);
    p = M::mul_add(p, r, 1.666_666_5e-1);
    p = M::mul_add(p, r, 0.5);
    p = M::mul_add(p * r, r, r) + 1.0;
    let k = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((k + 127) as u32) << 23);
    if x < MIN {
        0.0
    } else {
        p * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut x = -90.0f32;
        while x <= 88.0 {
            for got in [exp::<Fused>(x), exp::<Separate>(x)] {
                let want = f64::from(x).exp();
                if x < -87.3 {
                    assert_eq!(got, 0.0);
                } else {
                    let rel = ((f64::from(got) - want) / want).abs();
                    assert!(rel < 3e-7, "exp({x}) = {got}, want {want}");
                }
            }
            x += 0.0137;
        }
        assert_eq!(exp::<Fused>(0.0), 1.0);
        assert_eq!(exp::<Fused>(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn max_skips_nan() {
        for n in [0usize, 1, 5, 16, 33] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let want = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&x), want, "n={n}");
        }
        assert_eq!(max(&[f32::NAN, 2.0, f32::NAN]), 2.0);
    }

    #[test]
    fn dot_and_axpy_handle_tails() {
        for n in [0usize, 1, 15, 16, 17, 64, 80, 131] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 2.0).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((Fused::dot(&a, &b) - want).abs() < 1e-3, "n={n}");
            assert!((Separate::dot(&a, &b) - want).abs() < 1e-3, "n={n}");
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                assert!(
                    (crate::x86::Avx2Fma::dot(&a, &b) - want).abs() < 1e-3,
                    "n={n}"
                );
            }
            let mut acc = b.clone();
            axpy::<Separate>(2.0, &a, &mut acc);
            for i in 0..n {
                assert_eq!(acc[i], b[i] + 2.0 * a[i]);
            }
            // Three rows of n values weighted into b.
            let rows: Vec<f32> = (0..3 * n).map(|i| (i % 11) as f32 - 5.0).collect();
            let weights = [0.5f32, -1.0, 2.0];
            let want: Vec<f32> = (0..n)
                .map(|i| b[i] + (0..3).map(|j| weights[j] * rows[j * n + i]).sum::<f32>())
                .collect();
            let mut got = vec![b.clone(); 2];
            Separate::weighted_rows(&weights, &rows, &mut got[0]);
            Fused::weighted_rows(&weights, &rows, &mut got[1]);
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                got.push(b.clone());
                crate::x86::Avx2Fma::weighted_rows(&weights, &rows, &mut got[2]);
            }
            for g in &got {
                for i in 0..n {
                    assert!((g[i] - want[i]).abs() < 1e-4, "n={n} col {i}");
                }
            }
        }
    }
}

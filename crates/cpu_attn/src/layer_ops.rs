//! The small per-layer ops of a decoder layer, each in one pass over its rows: RMSNorm (with the
//! residual add), SiLU(gate) * up, and the half-split rotary embedding in place. On the CPU
//! torch runs each of these as several elementwise kernels with a temporary between every two
//! (and a bf16 <-> f32 conversion in each); here a row is read once and written once.
//!
//! Rounding follows HF transformers' Llama code step by step, so results are bit-identical to
//! it in float32 (up to the order of the RMSNorm sum) and in bfloat16/float16 the intermediate
//! values are rounded to the storage type where HF's are: the residual sum, the normalized row
//! before the weight, SiLU's output, and each rope product.
//!
//! Rows are split over `threads` threads of the crate's pool when there are enough of them.

use rayon::prelude::*;

use crate::dispatch::PortableMulAdd;
use crate::element::Element;
use crate::math::{exp, Fused, MulAdd};
use crate::{thread_pool, DecodeError};

/// Elements below which a call stays on the calling thread (waking workers costs more).
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

fn shape_err<T>(message: String) -> Result<T, DecodeError> {
    Err(DecodeError::Shape(message))
}

/// `T -> f32 -> T`: the storage rounding of an intermediate value (identity for `f32`).
#[inline(always)]
fn round<T: Element>(x: f32) -> f32 {
    T::from_f32(x).to_f32()
}

/// Runs `f(first_row, rows)` over `chunk`-row pieces of `data` (rows of `row_len`), in parallel
/// when it is large enough.
fn for_rows<T: Send, F>(
    data: &mut [T],
    row_len: usize,
    threads: usize,
    f: F,
) -> Result<(), DecodeError>
where
    F: Fn(usize, &mut [T]) + Sync,
{
    if threads == 0 {
        return shape_err("threads must be at least 1".into());
    }
    let rows = data.len() / row_len.max(1);
    if threads == 1 || rows < 2 || data.len() < PARALLEL_MIN_ELEMENTS {
        f(0, data);
        return Ok(());
    }
    let chunk = rows.div_ceil(threads) * row_len;
    thread_pool(threads)?.install(|| {
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, part)| f(i * chunk / row_len, part));
    });
    Ok(())
}

/// Which instruction sets the row loops are compiled for (picked at run time).
#[derive(Clone, Copy)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        // Exactly the features each variant is compiled with (`dispatched!`).
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// Defines `$name(args)` calling `$generic::<M>(args)` in a variant compiled for the best
/// instruction set of this CPU (LLVM vectorizes the generic row loops for it).
macro_rules! dispatched {
    ($name:ident, $generic:ident, ($($arg:ident: $ty:ty),*)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name<T: Element>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512<T: Element>($($arg: $ty),*) {
                $generic::<T, Fused>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2<T: Element>($($arg: $ty),*) {
                $generic::<T, Fused>($($arg),*)
            }
            match isa() {
                // SAFETY: `isa` detected the features each variant is compiled for.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { avx512::<T>($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { avx2::<T>($($arg),*) },
                Isa::Portable => $generic::<T, PortableMulAdd>($($arg),*),
            }
        }
    };
}

/// One row of RMSNorm: `out = weight * T(s / sqrt(mean(s^2) + eps))`, `s` in f32 scratch.
#[inline(always)]
fn norm_row<T: Element>(s: &[f32], weight: &[T], eps: f32, out: &mut [T]) {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let mut chunks = s.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i] * c[i];
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    let sum = acc.iter().sum::<f32>() + tail;
    let inv = 1.0 / (sum / s.len() as f32 + eps).sqrt();
    for ((o, &x), w) in out.iter_mut().zip(s).zip(weight) {
        *o = T::from_f32(w.to_f32() * round::<T>(x * inv));
    }
}

#[inline(always)]
fn rms_norm_rows<T: Element, M: MulAdd>(x: &[T], weight: &[T], eps: f32, out: &mut [T]) {
    let d = weight.len();
    let mut s = vec![0.0f32; d];
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        T::to_f32_row(xr, &mut s);
        norm_row(&s, weight, eps, or);
    }
}
dispatched!(rms_norm_any, rms_norm_rows, (x: &[T], weight: &[T], eps: f32, out: &mut [T]));

#[inline(always)]
fn add_rms_norm_rows<T: Element, M: MulAdd>(
    x: &[T],
    residual: &[T],
    weight: &[T],
    eps: f32,
    out: &mut [T],
    res_out: &mut [T],
) {
    let d = weight.len();
    let mut s = vec![0.0f32; d];
    let rows = x.chunks_exact(d).zip(residual.chunks_exact(d));
    for ((xr, rr), (or, ro)) in rows.zip(out.chunks_exact_mut(d).zip(res_out.chunks_exact_mut(d))) {
        for (((sv, xv), rv), ov) in s.iter_mut().zip(xr).zip(rr).zip(ro.iter_mut()) {
            let sum = T::from_f32(xv.to_f32() + rv.to_f32());
            *ov = sum;
            *sv = sum.to_f32();
        }
        norm_row(&s, weight, eps, or);
    }
}
dispatched!(add_rms_norm_any, add_rms_norm_rows, (x: &[T], residual: &[T], weight: &[T], eps: f32,
    out: &mut [T], res_out: &mut [T]));

#[inline(always)]
fn silu_mul_rows<T: Element, M: MulAdd>(gate_up: &[T], inter: usize, out: &mut [T]) {
    for (gu, o) in gate_up.chunks(2 * inter).zip(out.chunks_exact_mut(inter)) {
        let (gate, up) = gu.split_at(inter);
        for ((o, g), u) in o.iter_mut().zip(gate).zip(up) {
            let g = g.to_f32();
            let silu = round::<T>(g / (1.0 + exp::<M>(-g)));
            *o = T::from_f32(silu * u.to_f32());
        }
    }
}
dispatched!(silu_mul_any, silu_mul_rows, (gate_up: &[T], inter: usize, out: &mut [T]));

/// Rope on the first `heads` heads of each row of `x` (rows `row_stride` apart, the first being
/// row `first_row`): `x1' = x1 cos - x2 sin`, `x2' = x2 cos + x1 sin` over the two halves.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rope_rows<T: Element, M: MulAdd>(
    x: &mut [T],
    row_stride: usize,
    heads: usize,
    head_dim: usize,
    positions: &[i64],
    cos: &[f32],
    sin: &[f32],
    first_row: usize,
) {
    let half = head_dim / 2;
    let mut c = vec![0.0f32; half];
    let mut s = vec![0.0f32; half];
    for (r, row) in x.chunks_mut(row_stride).enumerate() {
        let at = positions[first_row + r] as usize * head_dim;
        // The table in the storage type, as HF casts cos/sin to the activations' dtype.
        for ((c, s), (&cv, &sv)) in c
            .iter_mut()
            .zip(&mut s)
            .zip(cos[at..at + half].iter().zip(&sin[at..at + half]))
        {
            *c = round::<T>(cv);
            *s = round::<T>(sv);
        }
        for head in row[..heads * head_dim].chunks_exact_mut(head_dim) {
            let (x1, x2) = head.split_at_mut(half);
            // Zipped iterators, not indexing: no bounds checks, so the loop vectorizes.
            for (((x1, x2), &c), &s) in x1.iter_mut().zip(x2.iter_mut()).zip(&c).zip(&s) {
                let (a, b) = (x1.to_f32(), x2.to_f32());
                *x1 = T::from_f32(round::<T>(a * c) + round::<T>(-(b * s)));
                *x2 = T::from_f32(round::<T>(b * c) + round::<T>(a * s));
            }
        }
    }
}
dispatched!(rope_any, rope_rows, (x: &mut [T], row_stride: usize, heads: usize, head_dim: usize,
    positions: &[i64], cos: &[f32], sin: &[f32], first_row: usize));

fn check_rows(what: &str, len: usize, row_len: usize) -> Result<usize, DecodeError> {
    if row_len == 0 || !len.is_multiple_of(row_len) {
        return shape_err(format!(
            "{what} has {len} elements, not whole rows of {row_len}"
        ));
    }
    Ok(len / row_len)
}

/// `out = RMSNorm(x) * weight` over rows of `weight.len()` values.
pub fn rms_norm<T: Element>(
    x: &[T],
    weight: &[T],
    eps: f32,
    out: &mut [T],
    threads: usize,
) -> Result<(), DecodeError> {
    let d = weight.len();
    check_rows("x", x.len(), d)?;
    if out.len() != x.len() {
        return shape_err(format!("out has {} elements, x {}", out.len(), x.len()));
    }
    for_rows(out, d, threads, |row, part| {
        rms_norm_any(&x[row * d..row * d + part.len()], weight, eps, part)
    })
}

/// `res_out = x + residual; out = RMSNorm(res_out) * weight` (HF's `hidden + residual`, then
/// the norm, the sum being the next residual).
pub fn add_rms_norm<T: Element>(
    x: &[T],
    residual: &[T],
    weight: &[T],
    eps: f32,
    out: &mut [T],
    res_out: &mut [T],
    threads: usize,
) -> Result<(), DecodeError> {
    let d = weight.len();
    let rows = check_rows("x", x.len(), d)?;
    if [residual.len(), out.len(), res_out.len()] != [x.len(); 3] {
        return shape_err(format!(
            "x, residual, out and res_out must have equal sizes, got {}, {}, {}, {}",
            x.len(),
            residual.len(),
            out.len(),
            res_out.len()
        ));
    }
    if threads == 0 {
        return shape_err("threads must be at least 1".into());
    }
    if threads == 1 || rows < 2 || x.len() < PARALLEL_MIN_ELEMENTS {
        add_rms_norm_any(x, residual, weight, eps, out, res_out);
        return Ok(());
    }
    let chunk = rows.div_ceil(threads) * d;
    thread_pool(threads)?.install(|| {
        out.par_chunks_mut(chunk)
            .zip(res_out.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(i, (op, rp))| {
                let at = i * chunk..i * chunk + op.len();
                add_rms_norm_any(&x[at.clone()], &residual[at], weight, eps, op, rp)
            });
    });
    Ok(())
}

/// `out[r] = silu(gate[r]) * up[r]` for rows `[gate | up]` of `2 * inter` values.
pub fn silu_and_mul<T: Element>(
    gate_up: &[T],
    inter: usize,
    out: &mut [T],
    threads: usize,
) -> Result<(), DecodeError> {
    let rows = check_rows("gate_up", gate_up.len(), 2 * inter)?;
    if out.len() != rows * inter {
        return shape_err(format!(
            "out has {} elements, expected {rows} x {inter}",
            out.len()
        ));
    }
    for_rows(out, inter, threads, |row, part| {
        let rows = part.len() / inter;
        silu_mul_any(
            &gate_up[row * 2 * inter..(row + rows) * 2 * inter],
            inter,
            part,
        )
    })
}

/// Rotary embedding (HF's half-split layout) in place on the first `heads` heads of each of the
/// `positions.len()` rows of `x` (rows `row_stride` apart; the last may end after its heads).
/// `cos`/`sin` are `[max_position, head_dim]` tables whose first half per position is used.
#[allow(clippy::too_many_arguments)]
pub fn rope<T: Element>(
    x: &mut [T],
    row_stride: usize,
    heads: usize,
    head_dim: usize,
    positions: &[i64],
    cos: &[f32],
    sin: &[f32],
    threads: usize,
) -> Result<(), DecodeError> {
    let rows = positions.len();
    let width = heads * head_dim;
    if head_dim == 0 || !head_dim.is_multiple_of(2) || width > row_stride {
        return shape_err(format!(
            "rope: head_dim {head_dim} must be even and positive, {heads} heads within the \
             row stride {row_stride}"
        ));
    }
    if rows > 0 && x.len() != (rows - 1) * row_stride + width {
        return shape_err(format!(
            "rope: x has {} elements, expected {rows} rows {row_stride} apart",
            x.len()
        ));
    }
    if cos.len() != sin.len() || !cos.len().is_multiple_of(head_dim) {
        return shape_err("rope: cos and sin must both be [max_position, head_dim]".into());
    }
    let max_pos = cos.len() / head_dim;
    if let Some(&p) = positions.iter().find(|&&p| p < 0 || p as usize >= max_pos) {
        return shape_err(format!(
            "rope: position {p} outside the table's {max_pos} positions"
        ));
    }
    if rows == 0 {
        return Ok(());
    }
    if threads == 0 {
        return shape_err("threads must be at least 1".into());
    }
    if threads == 1 || rows < 2 || rows * width < PARALLEL_MIN_ELEMENTS {
        rope_any(x, row_stride, heads, head_dim, positions, cos, sin, 0);
        return Ok(());
    }
    let per = rows.div_ceil(threads);
    thread_pool(threads)?.install(|| {
        x.par_chunks_mut(per * row_stride)
            .enumerate()
            .for_each(|(i, part)| {
                rope_any(
                    part,
                    row_stride,
                    heads,
                    head_dim,
                    positions,
                    cos,
                    sin,
                    i * per,
                )
            });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bf16, F16};
    use proptest::prelude::*;

    fn rounded<T: Element>(v: &[f32]) -> Vec<T> {
        v.iter().map(|&x| T::from_f32(x)).collect()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001)
            .map(|u| u as f32 / 500.0 - 2.0)
            .collect()
    }

    /// HF's steps in f64 with the storage rounding `r` applied where HF's tensors are stored.
    fn reference_norm(
        x: &[f32],
        res: Option<&[f32]>,
        w: &[f32],
        eps: f64,
        r: impl Fn(f64) -> f64,
    ) -> (Vec<f64>, Vec<f64>) {
        let d = w.len();
        let mut out = vec![];
        let mut sums = vec![];
        for (i, row) in x.chunks(d).enumerate() {
            let s: Vec<f64> = row
                .iter()
                .enumerate()
                .map(|(j, &v)| r(v as f64 + res.map_or(0.0, |rr| rr[i * d + j] as f64)))
                .collect();
            let inv = 1.0 / (s.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
            out.extend(s.iter().zip(w).map(|(v, &w)| r(w as f64 * r(v * inv))));
            sums.extend(s);
        }
        (out, sums)
    }

    fn check_norm<T: Element>(rows: usize, d: usize, threads: usize, tol: f64) {
        let r = |v: f64| T::from_f32(v as f32).to_f32() as f64;
        let x = rounded::<T>(&values(rows * d, 1));
        let res = rounded::<T>(&values(rows * d, 2));
        let w = rounded::<T>(&values(d, 3));
        let f = |v: &[T]| v.iter().map(|e| e.to_f32()).collect::<Vec<f32>>();
        let (want, _) = reference_norm(&f(&x), None, &f(&w), 1e-5, r);
        let mut out = vec![T::from_f32(0.0); rows * d];
        rms_norm(&x, &w, 1e-5, &mut out, threads).unwrap();
        for (g, w) in f(&out).iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{g} vs {w}");
        }
        let (want, sums) = reference_norm(&f(&x), Some(&f(&res)), &f(&w), 1e-5, r);
        let (mut xm, mut rm) = (x.clone(), res.clone());
        add_rms_norm(&x, &res, &w, 1e-5, &mut xm, &mut rm, threads).unwrap();
        for (g, w) in f(&xm).iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{g} vs {w}");
        }
        for (g, w) in f(&rm).iter().zip(&sums) {
            assert_eq!(*g as f64, *w, "the residual sum is one rounded add");
        }
    }

    #[test]
    fn norms_match_reference() {
        for threads in [1, 2] {
            check_norm::<f32>(3, 576, threads, 1e-6);
            check_norm::<f32>(300, 576, threads, 1e-6); // parallel path
            check_norm::<Bf16>(5, 64, threads, 8e-3);
            check_norm::<F16>(7, 40, threads, 1e-3);
        }
    }

    #[test]
    fn silu_mul_matches_reference() {
        for (rows, inter, threads) in [(1, 8, 1), (4, 1536, 1), (64, 1536, 2), (3, 17, 2)] {
            let gu = values(rows * 2 * inter, 5);
            let mut out = vec![0.0f32; rows * inter];
            silu_and_mul(&gu, inter, &mut out, threads).unwrap();
            let mut out16 = vec![Bf16(0); rows * inter];
            let gu16 = rounded::<Bf16>(&gu);
            silu_and_mul(&gu16, inter, &mut out16, threads).unwrap();
            for r in 0..rows {
                for i in 0..inter {
                    let g = gu[r * 2 * inter + i] as f64;
                    let u = gu[r * 2 * inter + inter + i] as f64;
                    let want = g / (1.0 + (-g).exp()) * u;
                    let got = out[r * inter + i] as f64;
                    assert!(
                        (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "{got} {want}"
                    );
                    let got = out16[r * inter + i].to_f32() as f64;
                    assert!(
                        (got - want).abs() < 2e-2 * (1.0 + want.abs()),
                        "{got} {want}"
                    );
                }
            }
        }
    }

    fn tables(max_pos: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut c, mut s) = (vec![], vec![]);
        for p in 0..max_pos {
            for i in 0..d {
                let f = p as f32 * 10000f32.powf(-((2 * (i % (d / 2))) as f32) / d as f32);
                c.push(f.cos());
                s.push(f.sin());
            }
        }
        (c, s)
    }

    #[test]
    fn rope_f32_equals_hf_formula_exactly() {
        let (d, heads, stride, rows) = (8, 3, 40, 5);
        let (c, s) = tables(16, d);
        let positions: Vec<i64> = vec![3, 0, 15, 7, 7];
        let x0 = values((rows - 1) * stride + heads * d, 9);
        let mut x = x0.clone();
        rope(&mut x, stride, heads, d, &positions, &c, &s, 1).unwrap();
        for (r, &p) in positions.iter().enumerate() {
            for h in 0..heads {
                for i in 0..d {
                    let at = r * stride + h * d;
                    let (cv, sv) = (c[p as usize * d + i], s[p as usize * d + i]);
                    // x * cos + rotate_half(x) * sin, rotate_half = (-x2, x1).
                    let rot = if i < d / 2 {
                        -x0[at + i + d / 2]
                    } else {
                        x0[at + i - d / 2]
                    };
                    assert_eq!(x[at + i], x0[at + i] * cv + rot * sv);
                }
            }
            // Past the rotated heads the row is untouched.
            if r + 1 < rows {
                assert_eq!(
                    x[r * stride + heads * d..(r + 1) * stride],
                    x0[r * stride + heads * d..(r + 1) * stride]
                );
            }
        }
        assert!(rope(&mut x, stride, heads, d, &[16], &c, &s, 1).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Splitting rows over threads changes nothing.
        #[test]
        fn threads_do_not_change_results(rows in 1usize..300, heads in 1usize..4) {
            let d = 64;
            let stride = heads * d + 64;
            let (c, s) = tables(512, d);
            let positions: Vec<i64> = (0..rows as i64).map(|r| (r * 7) % 512).collect();
            let x0 = rounded::<Bf16>(&values((rows - 1) * stride + heads * d, 4));
            let (mut a, mut b) = (x0.clone(), x0);
            rope(&mut a, stride, heads, d, &positions, &c, &s, 1).unwrap();
            rope(&mut b, stride, heads, d, &positions, &c, &s, 2).unwrap();
            prop_assert_eq!(a, b);
            let gu = values(rows * 2 * 384, 6);
            let (mut o1, mut o2) = (vec![0.0f32; rows * 384], vec![0.0f32; rows * 384]);
            silu_and_mul(&gu, 384, &mut o1, 1).unwrap();
            silu_and_mul(&gu, 384, &mut o2, 2).unwrap();
            prop_assert_eq!(o1, o2);
        }
    }
}

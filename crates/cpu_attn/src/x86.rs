//! The AVX2 + FMA (+ F16C) building blocks of the x86-64 kernel variant: explicit 8-lane
//! intrinsics where LLVM's vectorizer falls short. Only the variant that runs after detecting
//! these features (dispatch::available) uses them.

use std::arch::x86_64::*;

use crate::element::{Element, ElementKind};
use crate::math::{scores_via_tile, weighted_v_via_tile, MulAdd};

/// AVX2 + FMA + F16C: fused multiply-add, and dot products, scores and weighted V sums in
/// explicit 8-lane intrinsics. Only the kernel variant compiled for those features (run after
/// detecting them) uses it.
pub(crate) struct Avx2Fma;

impl MulAdd for Avx2Fma {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `Avx2Fma` is only used by the kernel variant that runs after detecting AVX2,
        // FMA and F16C (dispatch::available).
        unsafe { dot_avx2(a, b) }
    }

    #[inline(always)]
    fn weighted_rows(weights: &[f32], rows: &[f32], acc: &mut [f32]) {
        // SAFETY: as for `dot`.
        unsafe { weighted_rows_avx2(weights, rows, acc) }
    }

    #[inline(always)]
    fn scores<T: Element>(
        q: &[f32],
        k: &[T],
        offsets: &[usize],
        scores: &mut [f32],
        stride: usize,
        tile: &mut [f32],
    ) {
        let d = tile.len() / offsets.len().max(1);
        if !d.is_multiple_of(8) || d == 0 {
            return scores_via_tile::<Self, T>(q, k, offsets, scores, stride, tile);
        }
        // SAFETY: as for `dot`; the bounds `scores_avx2` relies on are asserted here.
        let group = q.len() / d;
        assert!(offsets.iter().all(|&at| at + d <= k.len()));
        assert!(group == 0 || scores.len() >= (group - 1) * stride + offsets.len());
        unsafe { scores_avx2(q, d, k, offsets, scores, stride) }
    }

    #[inline(always)]
    fn weighted_v<T: Element>(
        weights: &[f32],
        stride: usize,
        v: &[T],
        offsets: &[usize],
        acc: &mut [f32],
        tile: &mut [f32],
    ) {
        let d = tile.len() / offsets.len().max(1);
        if !d.is_multiple_of(32) || d == 0 {
            return weighted_v_via_tile::<Self, T>(weights, stride, v, offsets, acc, tile);
        }
        // SAFETY: as for `dot`; the bounds `weighted_v_avx2` relies on are asserted here.
        let group = acc.len() / d;
        assert!(offsets.iter().all(|&at| at + d <= v.len()));
        assert!(group == 0 || weights.len() >= (group - 1) * stride + offsets.len());
        unsafe { weighted_v_avx2(weights, stride, v, offsets, acc, d) }
    }
}

/// [`MulAdd::weighted_rows`] keeping 32 accumulator columns in registers across all rows (the
/// autovectorized loop reloads and stores `acc` for every row).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn weighted_rows_avx2(weights: &[f32], rows: &[f32], acc: &mut [f32]) {
    let d = acc.len();
    let n = weights.len().min(rows.len() / d.max(1));
    let (pr, pa) = (rows.as_ptr(), acc.as_mut_ptr());
    let mut c = 0;
    // SAFETY (all loads and stores): columns `c .. c + width <= d` of rows `j < n`, inside
    // `rows` (`n * d` values) and `acc` (`d` values).
    while c + 32 <= d {
        let mut r = [0, 1, 2, 3].map(|t| _mm256_loadu_ps(pa.add(c + 8 * t)));
        for (j, &w) in weights[..n].iter().enumerate() {
            let w = _mm256_set1_ps(w);
            for (t, r) in r.iter_mut().enumerate() {
                *r = _mm256_fmadd_ps(w, _mm256_loadu_ps(pr.add(j * d + c + 8 * t)), *r);
            }
        }
        for (t, r) in r.iter().enumerate() {
            _mm256_storeu_ps(pa.add(c + 8 * t), *r);
        }
        c += 32;
    }
    while c + 8 <= d {
        let mut r = _mm256_loadu_ps(pa.add(c));
        for (j, &w) in weights[..n].iter().enumerate() {
            r = _mm256_fmadd_ps(_mm256_set1_ps(w), _mm256_loadu_ps(pr.add(j * d + c)), r);
        }
        _mm256_storeu_ps(pa.add(c), r);
        c += 8;
    }
    for col in c..d {
        for (j, &w) in weights[..n].iter().enumerate() {
            acc[col] = w.mul_add(rows[j * d + col], acc[col]);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): `i + 8 <= n` and both slices hold at least `n` values.
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let at = i + 8 * j;
            *acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(at)),
                _mm256_loadu_ps(pb.add(at)),
                *acc,
            );
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i)),
            _mm256_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    let v = _mm_add_ss(v, _mm_movehdup_ps(v));
    let mut total = _mm_cvtss_f32(v);
    while i < n {
        total = a[i].mul_add(b[i], total);
        i += 1;
    }
    total
}

/// Eight K values as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load8<T: Element>(at: *const T) -> __m256 {
    match T::KIND {
        ElementKind::F32 => _mm256_loadu_ps(at.cast()),
        ElementKind::Bf16 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
            _mm_loadu_si128(at.cast()),
        ))),
        ElementKind::F16 => _mm256_cvtph_ps(_mm_loadu_si128(at.cast())),
    }
}

/// [`MulAdd::scores`] for `d % 8 == 0`: K is converted in registers and each chunk serves up to
/// three query rows, and four positions' dot products are reduced together (`hadd`) rather
/// than one at a time.
///
/// # Safety
/// AVX2, FMA and F16C; `q` holds `group * d` values; every `offsets[j] + d <= k.len()`;
/// `scores` holds `(group - 1) * stride + offsets.len()` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores_avx2<T: Element>(
    q: &[f32],
    d: usize,
    k: &[T],
    offsets: &[usize],
    scores: &mut [f32],
    stride: usize,
) {
    let group = q.len() / d;
    let n = offsets.len();
    let mut g0 = 0;
    while g0 < group {
        let rows = (group - g0).min(3);
        let qp = q.as_ptr().add(g0 * d);
        let mut j = 0;
        while j < n {
            let m = (n - j).min(4);
            // A short last tile repeats its last row (computed, not stored).
            let offs = [0, 1, 2, 3].map(|t| offsets[j + t.min(m - 1)]);
            let mut out = [[0.0f32; 4]; 3];
            match rows {
                3 => tile_scores::<T, 3>(qp, d, k.as_ptr(), offs, &mut out),
                2 => tile_scores::<T, 2>(qp, d, k.as_ptr(), offs, &mut out),
                _ => tile_scores::<T, 1>(qp, d, k.as_ptr(), offs, &mut out),
            }
            for (g, row) in out[..rows].iter().enumerate() {
                scores[(g0 + g) * stride + j..][..m].copy_from_slice(&row[..m]);
            }
            j += 4;
        }
        g0 += rows;
    }
}

/// Scores of `ROWS` query rows (at `q`, `d` apart) against the four K rows at `offs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_scores<T: Element, const ROWS: usize>(
    q: *const f32,
    d: usize,
    k: *const T,
    offs: [usize; 4],
    out: &mut [[f32; 4]; 3],
) {
    let mut acc = [[_mm256_setzero_ps(); 4]; ROWS];
    let mut c = 0;
    while c < d {
        for (p, &at) in offs.iter().enumerate() {
            let kc = load8(k.add(at + c));
            for (g, acc) in acc.iter_mut().enumerate() {
                acc[p] = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(g * d + c)), kc, acc[p]);
            }
        }
        c += 8;
    }
    for (g, a) in acc.iter().enumerate() {
        // [p0 01, p0 23, p1 01, p1 23 | p0 45, ...] -> [p0, p1, p2, p3 (low) | (high)]
        let h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
        let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        _mm_storeu_ps(out[g].as_mut_ptr(), s);
    }
}

/// [`MulAdd::weighted_v`] for `d % 32 == 0`: V is converted in registers (no f32 copy), each
/// 32-column chunk of up to three accumulator rows stays in registers over all positions.
///
/// # Safety
/// AVX2, FMA and F16C; `acc` holds `group * d` values; every `offsets[j] + d <= v.len()`;
/// `weights` holds `(group - 1) * stride + offsets.len()` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn weighted_v_avx2<T: Element>(
    weights: &[f32],
    stride: usize,
    v: &[T],
    offsets: &[usize],
    acc: &mut [f32],
    d: usize,
) {
    let group = acc.len() / d;
    let mut g0 = 0;
    while g0 < group {
        let rows = (group - g0).min(3);
        let w = weights.as_ptr().add(g0 * stride);
        let a = acc.as_mut_ptr().add(g0 * d);
        let mut col = 0;
        while col < d {
            match rows {
                3 => tile_v::<T, 3>(w, stride, v.as_ptr(), offsets, col, a, d),
                2 => tile_v::<T, 2>(w, stride, v.as_ptr(), offsets, col, a, d),
                _ => tile_v::<T, 1>(w, stride, v.as_ptr(), offsets, col, a, d),
            }
            col += 32;
        }
        g0 += rows;
    }
}

/// Columns `col .. col + 32` of `ROWS` accumulator rows (at `acc`, `d` apart) plus the weighted
/// V rows at `offsets` (weights at `w`, `stride` apart per row).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_v<T: Element, const ROWS: usize>(
    w: *const f32,
    stride: usize,
    v: *const T,
    offsets: &[usize],
    col: usize,
    acc: *mut f32,
    d: usize,
) {
    let mut r = [[_mm256_setzero_ps(); 4]; ROWS];
    for (g, r) in r.iter_mut().enumerate() {
        for (t, r) in r.iter_mut().enumerate() {
            *r = _mm256_loadu_ps(acc.add(g * d + col + 8 * t));
        }
    }
    for (j, &at) in offsets.iter().enumerate() {
        let mut wj = [_mm256_setzero_ps(); ROWS];
        for (g, wj) in wj.iter_mut().enumerate() {
            *wj = _mm256_set1_ps(*w.add(g * stride + j));
        }
        for t in 0..4 {
            let vc = load8(v.add(at + col + 8 * t));
            for (g, r) in r.iter_mut().enumerate() {
                r[t] = _mm256_fmadd_ps(wj[g], vc, r[t]);
            }
        }
    }
    for (g, r) in r.iter().enumerate() {
        for (t, r) in r.iter().enumerate() {
            _mm256_storeu_ps(acc.add(g * d + col + 8 * t), *r);
        }
    }
}

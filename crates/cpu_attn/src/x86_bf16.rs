//! The bf16 work item on AVX-512 with BF16 dot products (Sapphire Rapids and later), for head
//! sizes that are multiples of 32. The AVX2 item is bound by its arithmetic, not by reading K/V
//! (as fast on cache-hot K/V as on cold): per position and KV head it converts K and V to f32
//! and reduces dot products in 8 lanes. Here scores come from `vdpbf16ps` on the stored bf16 q
//! and K (no conversion; exact products, f32 sums, the scale applied after), 16 positions'
//! dot products are reduced together in one transpose-add tree, and V is widened two lanes at
//! a time (even elements by a shift, odd ones by a mask) into de-interleaved f32 accumulators.
//! The softmax has the same `exp` polynomial as `kernel.rs`, in 16 lanes, over the whole
//! sequence at once (see [`attend`]).

use std::arch::x86_64::*;

use crate::element::Bf16;
use crate::kernel::{row_offsets, Scratch};
use crate::{DecodeError, PagedDecode};

/// Positions per block: one 16-lane vector of scores per query head.
const BLOCK: usize = 16;
/// Query heads whose V accumulators stay in registers together.
const HEADS_AT_ONCE: usize = 4;
/// Blocks between the rows asked for and the rows read.
const AHEAD: usize = 1;

/// Whether the item runs here (the caller checks the CPU features).
pub(crate) fn supports(head_dim: usize) -> bool {
    head_dim.is_multiple_of(32) && head_dim > 0
}

/// Sum of each of 16 vectors, lane `j` of the result being the sum of `v[j]`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn reduce16(v: &[__m512; 16]) -> __m512 {
    // Pairs within 128-bit blocks, then whole blocks, then across blocks.
    let mut w = [_mm512_setzero_ps(); 8];
    for i in 0..8 {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        w[i] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    let mut x = [_mm512_setzero_ps(); 4];
    for i in 0..4 {
        let (a, b) = (_mm512_castps_pd(w[2 * i]), _mm512_castps_pd(w[2 * i + 1]));
        x[i] = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
        );
    }
    // x[i] block k = [s_k(v4i), s_k(v4i+1), s_k(v4i+2), s_k(v4i+3)], s_k: lanes 4k..4k+4.
    let z0 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(x[0], x[1]),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(x[0], x[1]),
    );
    let z1 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(x[2], x[3]),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(x[2], x[3]),
    );
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(z0, z1),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(z0, z1),
    )
}

/// `crate::math::exp` in 16 lanes (the same operations, so the same results).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn exp16(x: __m512) -> __m512 {
    const MIN: f32 = -87.3;
    let round = _mm512_set1_ps(12_582_912.0);
    let xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(MIN)), _mm512_set1_ps(88.3));
    let shifted = _mm512_fmadd_ps(xc, _mm512_set1_ps(std::f32::consts::LOG2_E), round);
    let n = _mm512_sub_ps(shifted, round);
    let r = _mm512_fmadd_ps(
        n,
        _mm512_set1_ps(2.121_944_4e-4),
        _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693_359_4), xc),
    );
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    p = _mm512_add_ps(
        _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r),
        _mm512_set1_ps(1.0),
    );
    let k = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(round));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        k,
        _mm512_set1_epi32(127),
    )));
    let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(MIN));
    _mm512_maskz_mul_ps(!below, p, scale)
}

/// Asks for the `d` K and V values at `at` of each slot's row (a prefetch never faults, so the
/// slots are not checked here; the reads check them).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn prefetch_rows(
    k: *const u16,
    v: *const u16,
    slots: &[i32],
    row_len: usize,
    at: usize,
    d: usize,
) {
    for &slot in slots {
        let off = (slot as usize).wrapping_mul(row_len).wrapping_add(at);
        for line in (0..2 * d).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>((k.wrapping_add(off) as *const i8).wrapping_add(line));
            _mm_prefetch::<_MM_HINT_T0>((v.wrapping_add(off) as *const i8).wrapping_add(line));
        }
    }
}

/// Attention of work item `item` (request `item / kv_heads`, KV head `item % kv_heads`) into
/// `out`, as `kernel::attend` does but in three passes over the whole sequence rather than an
/// online softmax: every score, then each head's max and its exponentials and sum, then the
/// weighted V rows. The online form's per-block horizontal max, rescale and sum sit on one
/// dependency chain per head and block; here the blocks are independent and each head does
/// one horizontal max and one sum (SmolLM2's shapes at 135 positions: 28 vs 43 us per call
/// at batch 1; no measurable change at batch 32, where reading K/V dominates).
///
/// # Safety
/// AVX-512 F/BW/BF16 are available, `supports(head_dim)` holds, and `p` was validated.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn attend(
    p: &PagedDecode<'_, Bf16>,
    item: usize,
    out: &mut [Bf16],
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    let d = p.shape.head_dim;
    let hkv = p.shape.kv_heads;
    let group = p.shape.q_heads / hkv;
    let (b, kvh) = (item / hkv, item % hkv);
    let seq = p.seq_lens[b] as usize;
    let first = p.sliding_window.map_or(0, |w| seq.saturating_sub(w));
    let row = p.req_pool_indices[b] as usize * p.table_stride;
    let slots = &p.req_to_token[row + first..row + seq];
    let n = slots.len(); // >= 1: validated seq_len >= 1 and window >= 1
    let row_len = hkv * d;
    let num_slots = p.k.len() / row_len;
    let chunks = d / 32;
    let blocks = n.div_ceil(BLOCK);
    let padded = blocks * BLOCK;
    if s.row_offsets.len() < padded {
        s.row_offsets.resize(padded, 0);
    }
    if s.probs.len() < group * padded {
        s.probs.resize(group * padded, 0.0);
    }
    for (block_at, block) in slots.chunks(BLOCK).enumerate() {
        let at = block_at * BLOCK;
        let offsets = &mut s.row_offsets[at..at + block.len()];
        row_offsets(block, b, first + at, num_slots, row_len, kvh * d, offsets)?;
    }
    let last = s.row_offsets[n - 1];
    s.row_offsets[n..padded].fill(last); // computed, then masked out
    let offsets = &s.row_offsets[..padded];
    let (kp, vp) = (p.k.as_ptr() as *const u16, p.v.as_ptr() as *const u16);
    let scale = _mm512_set1_ps(p.scale);
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    prefetch_rows(
        kp,
        vp,
        &slots[..(AHEAD * BLOCK).min(n)],
        row_len,
        kvh * d,
        d,
    );

    // Pass 1: the scaled scores of every position and head (-inf past the sequence).
    for block_at in 0..blocks {
        // Scattered slots defeat the hardware prefetcher: ask for the rows `AHEAD` blocks on
        // (V too: pass 3 reads it while it is still in cache).
        let ahead = ((block_at + AHEAD) * BLOCK).min(n);
        prefetch_rows(
            kp,
            vp,
            &slots[ahead..(ahead + BLOCK).min(n)],
            row_len,
            kvh * d,
            d,
        );
        let valid_n = (n - block_at * BLOCK).min(BLOCK);
        let valid: __mmask16 = if valid_n == BLOCK {
            0xffff
        } else {
            (1u16 << valid_n) - 1
        };
        let offs = &offsets[block_at * BLOCK..(block_at + 1) * BLOCK];
        for g in 0..group {
            let at = b * p.q_strides[0] + (kvh * group + g) * p.q_strides[1];
            let q = p.q.as_ptr().add(at) as *const u16;
            let mut dots = [_mm512_setzero_ps(); BLOCK];
            for (dot, &off) in dots.iter_mut().zip(offs) {
                let k = kp.add(off);
                for c in 0..chunks {
                    let qc = _mm512_loadu_si512(q.add(32 * c).cast());
                    let kc = _mm512_loadu_si512(k.add(32 * c).cast());
                    *dot = _mm512_dpbf16_ps(
                        *dot,
                        std::mem::transmute::<__m512i, __m512bh>(qc),
                        std::mem::transmute::<__m512i, __m512bh>(kc),
                    );
                }
            }
            let scores = _mm512_mul_ps(reduce16(&dots), scale);
            let scores = _mm512_mask_blend_ps(valid, neg_inf, scores);
            _mm512_storeu_ps(
                s.probs.as_mut_ptr().add(g * padded + block_at * BLOCK),
                scores,
            );
        }
    }
    // Pass 2: per head, the max, the exponentials (0 past the sequence) and their sum.
    for g in 0..group {
        let row = s.probs.as_mut_ptr().add(g * padded);
        let mut vmax = neg_inf;
        for block_at in 0..blocks {
            vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(row.add(block_at * BLOCK)));
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
        let mut vsum = _mm512_setzero_ps();
        for block_at in 0..blocks {
            let e = exp16(_mm512_sub_ps(
                _mm512_loadu_ps(row.add(block_at * BLOCK)),
                max,
            ));
            vsum = _mm512_add_ps(vsum, e);
            _mm512_storeu_ps(row.add(block_at * BLOCK), e);
        }
        s.sum[g] = _mm512_reduce_add_ps(vsum);
    }
    // Pass 3: the probability-weighted V rows, 32 columns (even and odd halves) of up to
    // `HEADS_AT_ONCE` heads at a time.
    let odd_mask = _mm512_set1_epi32(0xffff_0000u32 as i32);
    for g0 in (0..group).step_by(HEADS_AT_ONCE) {
        let heads = (group - g0).min(HEADS_AT_ONCE);
        for c in 0..chunks {
            let mut acc = [[_mm512_setzero_ps(); 2]; HEADS_AT_ONCE];
            for (j, &off) in offsets.iter().enumerate().take(n) {
                let raw = _mm512_loadu_si512(vp.add(off + 32 * c).cast());
                let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(raw));
                let odd = _mm512_castsi512_ps(_mm512_and_si512(raw, odd_mask));
                for (h, a) in acc.iter_mut().enumerate().take(heads) {
                    let w = _mm512_set1_ps(*s.probs.get_unchecked((g0 + h) * padded + j));
                    a[0] = _mm512_fmadd_ps(w, even, a[0]);
                    a[1] = _mm512_fmadd_ps(w, odd, a[1]);
                }
            }
            for (h, a) in acc.iter().enumerate().take(heads) {
                let base = s.acc.as_mut_ptr().add((g0 + h) * d + 32 * c);
                _mm512_storeu_ps(base, a[0]);
                _mm512_storeu_ps(base.add(16), a[1]);
            }
        }
    }
    for g in 0..group {
        let inv = 1.0 / s.sum[g];
        let acc = &s.acc[g * d..(g + 1) * d];
        for c in 0..chunks {
            let (even, odd) = acc[32 * c..32 * c + 32].split_at(16);
            let o = &mut out[g * d + 32 * c..g * d + 32 * c + 32];
            for i in 0..16 {
                o[2 * i] = <Bf16 as crate::element::Element>::from_f32(even[i] * inv);
                o[2 * i + 1] = <Bf16 as crate::element::Element>::from_f32(odd[i] * inv);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce16_sums_each_vector_and_exp16_matches_exp() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let vals: Vec<[f32; 16]> = (0..16)
            .map(|j| std::array::from_fn(|i| (j * 16 + i) as f32 * 0.25 - 7.0))
            .collect();
        // SAFETY: AVX-512 F detected above.
        let (sums, exps) = unsafe {
            let v: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(vals[j].as_ptr()));
            let mut out = [0.0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), reduce16(&v));
            let mut e = [0.0f32; 16];
            _mm512_storeu_ps(e.as_mut_ptr(), exp16(v[3]));
            (out, e)
        };
        for j in 0..16 {
            assert_eq!(sums[j], vals[j].iter().sum::<f32>(), "vector {j}");
            let want = crate::math::exp::<crate::math::Fused>(vals[3][j]);
            assert_eq!(exps[j], want, "exp lane {j}");
        }
    }
}

//! AVX-512 scans of long id slices, selected at run time: the fused compare + validate pass of
//! a match or insert (a 32k-token prompt against a 32k-token edge), and the range check of
//! slot ids. From L2 these loops are bound by how fast lines arrive, not by arithmetic: 512-bit
//! loads, four independent accumulators per block, and a software prefetch 1 KiB ahead in each
//! stream (a 256 KiB int32-vs-u32 compare from L2 measured 3.4 µs without it, 2.7 µs with it).

use std::arch::x86_64::*;

use crate::ids::{IdElem, TreeToken};

/// Ids per block between early-exit tests (8 vectors of 16).
const BLOCK: usize = 128;
/// Bytes ahead of the current position that each stream is prefetched.
const PREFETCH_AHEAD: usize = 1024;

/// Whether the CPU runs this module's code (`std` caches the answer).
#[inline]
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

/// A tree token type loaded 16 at a time into 32-bit lanes.
pub(crate) trait KeyLanes: TreeToken {
    /// # Safety
    /// AVX-512F/BW available; 16 tokens readable at `t`.
    unsafe fn load16(t: *const Self) -> __m512i;
}

impl KeyLanes for u32 {
    #[inline(always)]
    unsafe fn load16(t: *const u32) -> __m512i {
        _mm512_loadu_si512(t.cast())
    }
}

impl KeyLanes for u16 {
    /// Zero-extended (`vpmovzxwd` from memory): 32 bytes read for 16 tokens.
    #[inline(always)]
    unsafe fn load16(t: *const u16) -> __m512i {
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(t.cast()))
    }
}

/// An id type with a 512-bit compare step: 16 ids of `Self` against 16 tree tokens.
pub(crate) trait Lanes: IdElem {
    /// What a step ORs into: nonzero (after [`Lanes::any`]) iff some id differed or was not a
    /// valid id.
    type Acc: Copy;
    const ZERO: Self::Acc;

    /// Folds `q[0..16]` vs the 16 tokens `t` into `acc`.
    ///
    /// # Safety
    /// AVX-512F/BW available; 16 ids readable at `q`.
    unsafe fn step(acc: Self::Acc, q: *const Self, t: __m512i) -> Self::Acc;

    /// # Safety
    /// AVX-512F/BW available.
    unsafe fn or(a: Self::Acc, b: Self::Acc) -> Self::Acc;

    /// # Safety
    /// AVX-512F/BW available.
    unsafe fn any(acc: Self::Acc) -> bool;
}

/// `a | (b ^ c)`, one `vpternlogd` (the truth table of A | (B ^ C) over 0xF0, 0xCC, 0xAA).
#[inline(always)]
unsafe fn or_xor(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    _mm512_ternarylogic_epi32::<0xF6>(a, b, c)
}

#[inline(always)]
unsafe fn nonzero(v: __m512i) -> bool {
    _mm512_test_epi32_mask(v, v) != 0
}

impl Lanes for u32 {
    type Acc = __m512i;
    const ZERO: __m512i = unsafe { std::mem::transmute([0u64; 8]) };

    #[inline(always)]
    unsafe fn step(acc: __m512i, q: *const u32, t: __m512i) -> __m512i {
        or_xor(acc, _mm512_loadu_si512(q.cast()), t)
    }

    #[inline(always)]
    unsafe fn or(a: __m512i, b: __m512i) -> __m512i {
        _mm512_or_si512(a, b)
    }

    #[inline(always)]
    unsafe fn any(acc: __m512i) -> bool {
        nonzero(acc)
    }
}

impl Lanes for u16 {
    type Acc = __m512i;
    const ZERO: __m512i = <u32 as Lanes>::ZERO;

    /// Widened to 32-bit lanes, for wide (`u32`) tree tokens; narrow ones are compared at
    /// their own width by [`common_prefix_u16`].
    #[inline(always)]
    unsafe fn step(acc: __m512i, q: *const u16, t: __m512i) -> __m512i {
        or_xor(acc, <u16 as KeyLanes>::load16(q), t)
    }

    #[inline(always)]
    unsafe fn or(a: __m512i, b: __m512i) -> __m512i {
        _mm512_or_si512(a, b)
    }

    #[inline(always)]
    unsafe fn any(acc: __m512i) -> bool {
        nonzero(acc)
    }
}

impl Lanes for i32 {
    type Acc = __m512i;
    const ZERO: __m512i = <u32 as Lanes>::ZERO;

    /// A negative id never matches: its sign bit is ORed in (`a | (b & c)` with the sign mask),
    /// since as `u32` it could equal a tree token >= 2^31.
    #[inline(always)]
    unsafe fn step(acc: __m512i, q: *const i32, t: __m512i) -> __m512i {
        let q = _mm512_loadu_si512(q.cast());
        let acc = or_xor(acc, q, t);
        _mm512_ternarylogic_epi32::<0xF8>(acc, q, _mm512_set1_epi32(i32::MIN))
    }

    #[inline(always)]
    unsafe fn or(a: __m512i, b: __m512i) -> __m512i {
        _mm512_or_si512(a, b)
    }

    #[inline(always)]
    unsafe fn any(acc: __m512i) -> bool {
        nonzero(acc)
    }
}

impl Lanes for i64 {
    /// (low dwords XOR tree tokens, OR of whole ids whose high dwords must stay zero).
    type Acc = (__m512i, __m512i);
    const ZERO: Self::Acc = (<u32 as Lanes>::ZERO, <u32 as Lanes>::ZERO);

    /// The low dwords of two vectors of 8 ids are gathered into one (`vpermt2d`) and compared
    /// with 16 tokens in 32-bit lanes: one shuffle per 16 ids, where widening the tokens to
    /// 64 bits takes two.
    #[inline(always)]
    unsafe fn step(acc: Self::Acc, q: *const i64, t: __m512i) -> Self::Acc {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let a = _mm512_loadu_si512(q.cast());
        let b = _mm512_loadu_si512(q.add(8).cast());
        let low = _mm512_permutex2var_epi32(a, even, b);
        (
            or_xor(acc.0, low, t),
            // a | b | acc
            _mm512_ternarylogic_epi32::<0xFE>(acc.1, a, b),
        )
    }

    #[inline(always)]
    unsafe fn or(a: Self::Acc, b: Self::Acc) -> Self::Acc {
        (_mm512_or_si512(a.0, b.0), _mm512_or_si512(a.1, b.1))
    }

    #[inline(always)]
    unsafe fn any(acc: Self::Acc) -> bool {
        let high = _mm512_set1_epi64(0xFFFF_FFFF_0000_0000u64 as i64);
        nonzero(acc.0) || _mm512_test_epi64_mask(acc.1, high) != 0
    }
}

/// Prefetches the lines `PREFETCH_AHEAD` bytes past `bytes` bytes of `p`.
#[inline(always)]
unsafe fn prefetch<T>(p: *const T, bytes: usize) {
    let p = p.cast::<i8>().wrapping_add(PREFETCH_AHEAD);
    let mut off = 0;
    while off < bytes {
        // A prefetch never faults, so running past the end is harmless.
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off));
        off += 64;
    }
}

/// Length of the longest common prefix of `q` and `t`, an id not in `0..2^32` ending it.
///
/// # Safety
/// AVX-512F/BW available ([`available`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn common_prefix<E: Lanes, K: KeyLanes>(q: &[E], t: &[K]) -> usize {
    let n = q.len().min(t.len());
    let (pq, pt) = (q.as_ptr(), t.as_ptr());
    let mut i = 0;
    if n >= 16 + BLOCK {
        // Start the blocks where the query's loads are 64-byte aligned: a load that splits two
        // cache lines costs two (a 256 KiB compare from L2 took 2.8 µs with both streams
        // misaligned, 2.2 µs with one aligned). The first 16 ids cover the ones skipped.
        // SAFETY: 16 ids readable.
        if !unsafe { E::any(E::step(E::ZERO, pq, K::load16(pt))) } {
            i = pq.align_offset(64).min(16);
        }
    }
    while i + BLOCK <= n {
        // SAFETY (this loop and the next): `i + BLOCK <= n` (resp. `i + 16 <= n`) ids are
        // readable in both slices.
        let (bq, bt) = unsafe { (pq.add(i), pt.add(i)) };
        unsafe {
            prefetch(bq, BLOCK * size_of::<E>());
            prefetch(bt, BLOCK * size_of::<K>());
        }
        let mut acc = [E::ZERO; 4];
        for k in 0..BLOCK / 16 {
            let tk = unsafe { K::load16(bt.add(16 * k)) };
            acc[k % 4] = unsafe { E::step(acc[k % 4], bq.add(16 * k), tk) };
        }
        let all = unsafe { E::or(E::or(acc[0], acc[1]), E::or(acc[2], acc[3])) };
        if unsafe { E::any(all) } {
            break;
        }
        i += BLOCK;
    }
    while i + 16 <= n {
        if unsafe { E::any(E::step(E::ZERO, pq.add(i), K::load16(pt.add(i)))) } {
            break;
        }
        i += 16;
    }
    while i < n && q[i].wide() == u64::from(t[i].get()) {
        i += 1;
    }
    i
}

/// Length of the longest common prefix of `u16` ids and narrow tree tokens, at their own width:
/// 32 per vector, so a 32k-token match reads 64 KiB of query instead of the 128 KiB of int32.
/// Every `u16` is a valid id: nothing to validate.
///
/// # Safety
/// AVX-512F/BW available ([`available`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn common_prefix_u16(q: &[u16], t: &[u16]) -> usize {
    const V: usize = 32;
    const B: usize = 8 * V;
    #[inline(always)]
    unsafe fn differs(q: *const u16, t: *const u16, acc: __m512i) -> __m512i {
        // SAFETY: the caller has 32 ids readable at both.
        unsafe {
            or_xor(
                acc,
                _mm512_loadu_si512(q.cast()),
                _mm512_loadu_si512(t.cast()),
            )
        }
    }
    let zero = _mm512_setzero_si512();
    let n = q.len().min(t.len());
    let (pq, pt) = (q.as_ptr(), t.as_ptr());
    let mut i = 0;
    // SAFETY (all loads below): `i + B <= n`, `i + V <= n` or `V + B <= n` ids are readable
    // from `i` in both slices.
    if n >= V + B && !nonzero(unsafe { differs(pq, pt, zero) }) {
        // Aligned query loads from here on (see `common_prefix`).
        i = pq.align_offset(64).min(V);
    }
    while i + B <= n {
        let (bq, bt) = unsafe { (pq.add(i), pt.add(i)) };
        unsafe {
            prefetch(bq, B * 2);
            prefetch(bt, B * 2);
        }
        let mut acc = [zero; 4];
        for k in 0..B / V {
            acc[k % 4] = unsafe { differs(bq.add(V * k), bt.add(V * k), acc[k % 4]) };
        }
        let all = _mm512_or_si512(
            _mm512_or_si512(acc[0], acc[1]),
            _mm512_or_si512(acc[2], acc[3]),
        );
        if nonzero(all) {
            break;
        }
        i += B;
    }
    while i + V <= n {
        let diff = unsafe { differs(pq.add(i), pt.add(i), zero) };
        let mask = _mm512_test_epi16_mask(diff, diff);
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += V;
    }
    while i < n && q[i] == t[i] {
        i += 1;
    }
    i
}

/// Whether any of `q` is >= `bound` as `u32` (`bound <= 2^31`, so a negative `i32` counts:
/// it is >= 2^31 as `u32`).
///
/// # Safety
/// AVX-512F/BW available ([`available`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn any_at_least_u32(q: &[u32], bound: u32) -> bool {
    let n = q.len();
    let p = q.as_ptr();
    let mut acc = [_mm512_setzero_si512(); 4];
    // Aligned loads from here (see `common_prefix`); the ids before are checked at the end.
    let start = p.align_offset(64).min(n);
    let mut i = start;
    while i + 64 <= n {
        // SAFETY: 64 ids readable from `i`.
        unsafe {
            prefetch(p.add(i), 256);
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm512_max_epu32(*a, _mm512_loadu_si512(p.add(i + 16 * k).cast()));
            }
        }
        i += 64;
    }
    let max = _mm512_max_epu32(
        _mm512_max_epu32(acc[0], acc[1]),
        _mm512_max_epu32(acc[2], acc[3]),
    );
    let max = _mm512_reduce_max_epu32(max);
    (max >= bound && i > start) || q[..start].iter().chain(&q[i..]).any(|&x| x >= bound)
}

/// Whether any of `q` is not in `0..bound` (negative values are huge as `u64`).
///
/// # Safety
/// AVX-512F/BW available ([`available`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn any_at_least_i64(q: &[i64], bound: u32) -> bool {
    let n = q.len();
    let p = q.as_ptr();
    let mut acc = [_mm512_setzero_si512(); 4];
    let start = p.align_offset(64).min(n);
    let mut i = start;
    while i + 32 <= n {
        // SAFETY: 32 ids readable from `i`.
        unsafe {
            prefetch(p.add(i), 256);
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm512_max_epu64(*a, _mm512_loadu_si512(p.add(i + 8 * k).cast()));
            }
        }
        i += 32;
    }
    let max = _mm512_max_epu64(
        _mm512_max_epu64(acc[0], acc[1]),
        _mm512_max_epu64(acc[2], acc[3]),
    );
    let max = _mm512_reduce_max_epu64(max);
    let big = |&x: &i64| x as u64 >= u64::from(bound);
    (max >= u64::from(bound) && i > start) || q[..start].iter().chain(&q[i..]).any(big)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position of a difference or an invalid id, in each loop (the first 16 ids, the
    /// aligned blocks, single vectors, the tail), for each id type and query alignment.
    #[test]
    fn common_prefix_matches_the_scalar_definition() {
        if !available() {
            return;
        }
        let t: Vec<u32> = (0..700u32)
            .map(|x| x.wrapping_mul(2_654_435_761) % 100_000)
            .collect();
        let scalar = |q: &[i64], t: &[u32]| {
            q.iter()
                .zip(t)
                .take_while(|&(&x, &y)| x == i64::from(y))
                .count()
        };
        for len in [0usize, 1, 15, 16, 17, 128, 143, 144, 145, 300, 700] {
            for cut in (0..len).step_by(5).chain([len.saturating_sub(1)]) {
                for bad in [1_000_000i64, -1, i64::from(t[cut]) + (1 << 32)] {
                    let mut q: Vec<i64> = t[..len].iter().map(|&x| i64::from(x)).collect();
                    if cut < len {
                        q[cut] = bad;
                    }
                    let want = scalar(&q, &t);
                    let narrow = q
                        .iter()
                        .map(|&x| i32::try_from(x))
                        .collect::<Result<Vec<_>, _>>();
                    let qu: Vec<u32> = q.iter().map(|&x| x as u32).collect();
                    let want_u = qu.iter().zip(&t).take_while(|(x, y)| x == y).count();
                    // The query at every offset from a 64-byte line (7 ids in front of it).
                    for skew in [0, 1, 2, 3, 5, 7] {
                        let msg = format!("len {len} cut {cut} bad {bad} skew {skew}");
                        let mut w = vec![0i64; skew];
                        w.extend(&q);
                        assert_eq!(unsafe { common_prefix(&w[skew..], &t) }, want, "i64 {msg}");
                        if let Ok(q32) = &narrow {
                            let mut w = vec![0i32; skew];
                            w.extend(q32);
                            let got = unsafe { common_prefix(&w[skew..], &t) };
                            assert_eq!(got, want, "i32 {msg}");
                        }
                        let mut w = vec![0u32; skew];
                        w.extend(&qu);
                        assert_eq!(
                            unsafe { common_prefix(&w[skew..], &t) },
                            want_u,
                            "u32 {msg}"
                        );
                    }
                }
            }
        }
    }

    /// Narrow (`u16`) tree tokens: every position of a difference or an invalid id, for each
    /// query type and alignment, and a query id equal to a tree token modulo 2^16 differs.
    #[test]
    fn common_prefix_with_narrow_tokens_matches_the_scalar_definition() {
        if !available() {
            return;
        }
        let t: Vec<u16> = (0..700u32)
            .map(|x| (x.wrapping_mul(2_654_435_761) >> 16) as u16)
            .collect();
        for len in [0usize, 1, 15, 16, 17, 128, 143, 144, 145, 300, 700] {
            for cut in (0..len).step_by(7).chain([len.saturating_sub(1)]) {
                for bad in [
                    -1i64,
                    i64::from(t[cut]) + (1 << 16),
                    i64::from(t[cut]) + (1 << 32),
                ] {
                    let mut q: Vec<i64> = t[..len].iter().map(|&x| i64::from(x)).collect();
                    if cut < len {
                        q[cut] = bad;
                    }
                    let want = cut.min(len);
                    for skew in [0, 1, 3, 7] {
                        let msg = format!("len {len} cut {cut} bad {bad} skew {skew}");
                        let mut w = vec![0i64; skew];
                        w.extend(&q);
                        assert_eq!(unsafe { common_prefix(&w[skew..], &t) }, want, "i64 {msg}");
                        let mut w32 = vec![0i32; skew];
                        w32.extend(q.iter().map(|&x| i32::try_from(x).unwrap_or(-9)));
                        let got = unsafe { common_prefix(&w32[skew..], &t) };
                        assert_eq!(got, want, "i32 {msg}");
                        // As u32, -1 is 2^32 - 1 (differs); `t + 2^32` would equal `t`.
                        if bad >> 32 == 0 || bad == -1 {
                            let mut wu = vec![0u32; skew];
                            wu.extend(q.iter().map(|&x| x as u32));
                            let got = unsafe { common_prefix(&wu[skew..], &t) };
                            assert_eq!(got, want, "u32 {msg}");
                        }
                    }
                }
            }
        }
    }

    /// `u16` ids: the same-width compare with narrow tokens and the widened one with wide
    /// tokens, against the scalar definition, for every loop, difference and alignment.
    #[test]
    fn u16_ids_match_the_scalar_definition_at_both_widths() {
        if !available() {
            return;
        }
        let t16: Vec<u16> = (0..900u32)
            .map(|x| (x.wrapping_mul(2_654_435_761) >> 16) as u16)
            .collect();
        let t32: Vec<u32> = t16.iter().map(|&x| u32::from(x)).collect();
        for len in [0usize, 1, 31, 32, 33, 256, 287, 288, 289, 300, 900] {
            for cut in (0..len).step_by(7).chain([len.saturating_sub(1)]) {
                // A flip of the top bit, of the low bit; and (wide tokens) a token >= 2^16
                // whose low half equals the id.
                for flip in [1u16 << 15, 1] {
                    let mut q: Vec<u16> = t16[..len].to_vec();
                    if cut < len {
                        q[cut] ^= flip;
                    }
                    let want = cut.min(len);
                    let mut wide = t32.clone();
                    if cut < len {
                        wide[cut] = u32::from(t16[cut]) + (1 << 16);
                    }
                    for skew in [0, 1, 3, 7, 16, 31] {
                        let msg = format!("len {len} cut {cut} flip {flip} skew {skew}");
                        let mut w = vec![0u16; skew];
                        w.extend(&q);
                        let got = unsafe { common_prefix_u16(&w[skew..], &t16) };
                        assert_eq!(got, want, "u16/u16 {msg}");
                        let got = unsafe { common_prefix(&w[skew..], &t32) };
                        assert_eq!(got, want, "u16/u32 {msg}");
                        let mut w = vec![0u16; skew];
                        w.extend(&t16[..len]);
                        let got = unsafe { common_prefix(&w[skew..], &wide) };
                        assert_eq!(got, want, "u16/u32 high tokens {msg}");
                    }
                }
            }
        }
    }

    /// A negative `i32` whose bits equal a tree token >= 2^31 does not match it.
    #[test]
    fn negative_i32_never_equals_a_large_token() {
        if !available() {
            return;
        }
        let t = vec![u32::MAX; 300];
        for cut in [0, 5, 130, 299] {
            let mut q = vec![0i32; 300];
            let mut t = t.clone();
            for (x, y) in q.iter_mut().zip(&mut t) {
                *y = 7;
                *x = 7;
            }
            t[cut] = u32::MAX;
            q[cut] = -1;
            assert_eq!(unsafe { common_prefix(&q, &t) }, cut);
        }
    }

    #[test]
    fn range_checks_find_any_value_at_or_above_the_bound() {
        if !available() {
            return;
        }
        for len in [1usize, 15, 63, 64, 65, 80, 200] {
            for at in [0, 1, 7, 15, len / 2, len - 1] {
                let at = at.min(len - 1);
                for skew in [0, 1, 3, 7] {
                    let mut q: Vec<u32> = vec![0; skew];
                    q.extend((0..len as u32).map(|x| x % 50));
                    let q = &mut q[skew..];
                    assert!(!unsafe { any_at_least_u32(q, 50) });
                    q[at] = 50;
                    assert!(unsafe { any_at_least_u32(q, 50) }, "{len} {at} {skew}");
                    let mut w: Vec<i64> = vec![0; skew];
                    w.extend((0..len as i64).map(|x| x % 50));
                    let w = &mut w[skew..];
                    assert!(!unsafe { any_at_least_i64(w, 50) });
                    w[at] = -1;
                    assert!(unsafe { any_at_least_i64(w, 50) }, "{len} {at} {skew}");
                    w[at] = 1 << 40;
                    assert!(
                        unsafe { any_at_least_i64(w, u32::MAX) },
                        "{len} {at} {skew}"
                    );
                }
            }
        }
        assert!(!unsafe { any_at_least_u32(&[], 0) });
        assert!(!unsafe { any_at_least_i64(&[], 0) });
    }
}

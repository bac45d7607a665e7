//! Id slices the tree reads in place: `u32`, or the `u16` / `i32` / `i64` that caller buffers
//! (numpy arrays) hold. A 32k-token int64 query is compared and validated in one pass over it,
//! with no conversion to `u32` first: that pass is what bounds a long match. Tree edges store
//! their tokens as `u16` when all fit ([`TreeToken`]), so a query is compared with either width;
//! a `u16` query (a vocabulary below 65,536) against a narrow edge is a plain same-width compare
//! that reads half the bytes of an int32 one. With AVX-512 the long passes (compare, slot range
//! check) run in `avx512.rs`; the code here serves other CPUs.
//!
//! An id is valid when it is in `0..2^32`. An invalid one never equals a tree token, so a
//! comparison stops there and the caller reports it.

mod sealed {
    pub trait Sealed {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
}

/// How an edge stores its tokens: `u16` when every token of the edge is below 65,536 (most
/// vocabularies), else `u32`. A narrow edge halves the bytes a long match reads.
pub(crate) trait TreeToken: Copy + Send + Sync + 'static {
    fn get(self) -> u32;
}

impl TreeToken for u16 {
    #[inline(always)]
    fn get(self) -> u32 {
        u32::from(self)
    }
}

impl TreeToken for u32 {
    #[inline(always)]
    fn get(self) -> u32 {
        self
    }
}

use std::mem::MaybeUninit;

use crate::prefix::common_prefix as same_width_prefix;
use crate::simd::{avx512_first, dispatch};

/// Ids compared per step: a branch-free XOR/OR over a fixed block vectorizes. Long runs go
/// in big blocks (one branch per 1.5 KB of int64 query: 20% faster on a 32k-token match than
/// 16-id blocks), the block that differs again in small ones, the last few ids one at a time.
const BIG_BLOCK: usize = 128;
const BLOCK: usize = 16;

macro_rules! avx2_version {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $name<E: IdElem>($($arg: $ty),*) -> $ret {
            $body($($arg),*)
        }
    };
}

/// An integer type whose slices the tree accepts as token or slot ids.
pub trait IdElem: Copy + Send + Sync + sealed::Sealed + 'static {
    /// `true` when every value of the type is a valid id (no validation pass needed).
    const ALWAYS_VALID: bool;

    /// `true` when every value fits a narrow (`u16`) edge: an insert then stores the new
    /// tokens as they are, with no pass to find their largest.
    const ALWAYS_NARROW: bool = false;

    /// The value as `u64`, with a bit above bit 31 set iff it is not in `0..2^32` (negative
    /// values sign-extend).
    fn wide(self) -> u64;

    /// The value, for error messages.
    fn value(self) -> i64;

    /// Whether the value is not a valid id below `bound`.
    fn at_least(self, bound: u32) -> bool;

    /// Whether any value of `q` is not a valid id below `bound`: max/OR reductions, which
    /// vectorize (a fold of per-value comparisons ran at half the speed).
    fn any_at_least(q: &[Self], bound: u32) -> bool;

    /// Index of the first value of `q` that is not a valid id below `bound` (a range check of
    /// slot ids against a capacity).
    fn first_at_least(q: &[Self], bound: u32) -> Option<usize> {
        dispatch!(first_at_least_body, first_at_least_avx2, (q, bound))
    }

    /// Length of the longest common prefix of `q` and `t`.
    fn common_prefix(q: &[Self], t: &[u32]) -> usize;

    /// Length of the longest common prefix of `q` and the narrow tree tokens `t`.
    fn common_prefix_u16(q: &[Self], t: &[u16]) -> usize;

    /// Index of the first value of `q` that is not a valid id.
    fn first_invalid(q: &[Self]) -> Option<usize>;

    /// The largest value of `q` (0 if empty), or `Err(index of the first invalid value)`.
    fn max_id(q: &[Self]) -> Result<u32, usize> {
        let (high, max) = max_wide(q);
        if high >> 32 != 0 {
            return Err(Self::first_invalid(q).unwrap_or(0));
        }
        Ok(max)
    }

    /// Writes `q` as `u32` to `out` (of the same length); `Err(index of the first invalid
    /// value)` if there is one (then `out` may be partly written).
    fn write_u32(q: &[Self], out: &mut [MaybeUninit<u32>]) -> Result<(), usize>;

    /// Appends `q` to `out` as `u32`; `Err(index of the first invalid value)` with `out`
    /// unchanged if there is one.
    fn extend_u32(q: &[Self], out: &mut Vec<u32>) -> Result<(), usize> {
        out.reserve(q.len());
        Self::write_u32(q, &mut out.spare_capacity_mut()[..q.len()])?;
        // SAFETY: `write_u32` initialised the `q.len()` elements after the current end.
        unsafe { out.set_len(out.len() + q.len()) };
        Ok(())
    }
}

impl IdElem for u16 {
    const ALWAYS_VALID: bool = true;
    const ALWAYS_NARROW: bool = true;

    #[inline(always)]
    fn wide(self) -> u64 {
        u64::from(self)
    }

    fn value(self) -> i64 {
        i64::from(self)
    }

    #[inline(always)]
    fn at_least(self, bound: u32) -> bool {
        u32::from(self) >= bound
    }

    #[inline]
    fn any_at_least(q: &[u16], bound: u32) -> bool {
        // No u16 reaches a bound above its range: no pass at all.
        bound <= u32::from(u16::MAX) && !q.is_empty() && u32::from(max_u16(q)) >= bound
    }

    /// Widened to 32 bits (wide edges only hold a `u16`-sized prefix of a query's tokens up
    /// to their first large token).
    #[inline]
    fn common_prefix(q: &[u16], t: &[u32]) -> usize {
        avx512_first!(common_prefix(q, t));
        dispatch!(common_prefix_wide, common_prefix_wide_avx2, (q, t))
    }

    /// Same width: a plain bitwise compare.
    #[inline]
    fn common_prefix_u16(q: &[u16], t: &[u16]) -> usize {
        avx512_first!(common_prefix_u16(q, t));
        dispatch!(same_width_prefix, common_prefix_same_avx2, (q, t))
    }

    #[inline]
    fn first_invalid(_: &[u16]) -> Option<usize> {
        None
    }

    #[inline]
    fn max_id(q: &[u16]) -> Result<u32, usize> {
        Ok(if q.is_empty() { 0 } else { max_u16(q).into() })
    }

    #[inline]
    fn write_u32(q: &[u16], out: &mut [MaybeUninit<u32>]) -> Result<(), usize> {
        assert_eq!(q.len(), out.len());
        dispatch!(widen_u16_body, widen_u16_avx2, (q, out))
    }
}

impl IdElem for u32 {
    const ALWAYS_VALID: bool = true;

    #[inline(always)]
    fn wide(self) -> u64 {
        u64::from(self)
    }

    fn value(self) -> i64 {
        i64::from(self)
    }

    #[inline(always)]
    fn at_least(self, bound: u32) -> bool {
        self >= bound
    }

    #[inline(always)]
    fn any_at_least(q: &[u32], bound: u32) -> bool {
        avx512_first!(any_at_least_u32(q, bound));
        max_at_least(q, bound)
    }

    #[inline]
    fn common_prefix(q: &[u32], t: &[u32]) -> usize {
        avx512_first!(common_prefix(q, t));
        dispatch!(same_width_prefix, common_prefix_same_avx2, (q, t))
    }

    #[inline]
    fn common_prefix_u16(q: &[u32], t: &[u16]) -> usize {
        avx512_first!(common_prefix(q, t));
        dispatch!(common_prefix_wide, common_prefix_wide_avx2, (q, t))
    }

    #[inline]
    fn first_invalid(_: &[u32]) -> Option<usize> {
        None
    }

    #[inline]
    fn write_u32(q: &[u32], out: &mut [MaybeUninit<u32>]) -> Result<(), usize> {
        for (o, &x) in out.iter_mut().zip(q) {
            o.write(x);
        }
        Ok(())
    }
}

macro_rules! wide_elem {
    ($t:ty, |$x:ident, $bound:ident| $at_least:expr, |$q:ident, $b:ident| $any:block) => {
        impl IdElem for $t {
            const ALWAYS_VALID: bool = false;

            #[inline(always)]
            fn wide(self) -> u64 {
                // Sign-extends: a negative value sets the high bits.
                i64::from(self) as u64
            }

            fn value(self) -> i64 {
                i64::from(self)
            }

            #[inline(always)]
            fn at_least(self, $bound: u32) -> bool {
                let $x = self;
                $at_least
            }

            #[inline(always)]
            fn any_at_least($q: &[$t], $b: u32) -> bool $any

            #[inline]
            fn common_prefix(q: &[$t], t: &[u32]) -> usize {
                avx512_first!(common_prefix(q, t));
                dispatch!(common_prefix_wide, common_prefix_wide_avx2, (q, t))
            }

            #[inline]
            fn common_prefix_u16(q: &[$t], t: &[u16]) -> usize {
                avx512_first!(common_prefix(q, t));
                dispatch!(common_prefix_wide, common_prefix_wide_avx2, (q, t))
            }

            #[inline]
            fn first_invalid(q: &[$t]) -> Option<usize> {
                dispatch!(first_invalid_wide, first_invalid_wide_avx2, (q))
            }

            #[inline]
            fn write_u32(q: &[$t], out: &mut [MaybeUninit<u32>]) -> Result<(), usize> {
                if narrow(q, out) >> 32 != 0 {
                    return Err(Self::first_invalid(q).unwrap_or(0));
                }
                Ok(())
            }
        }
    };
}

// A negative i32 is >= 2^31 as u32 but maybe below a larger bound: tested on its own.
wide_elem!(i32, |x, bound| (x as u32 >= bound) | (x < 0), |q, bound| {
    // In 32-bit lanes. A negative value is >= 2^31 as u32, so up to that bound (a slot
    // capacity) the max alone decides (40% faster); above it the sign bit comes from an OR.
    if bound <= 1 << 31 {
        return u32::any_at_least(as_u32(q), bound);
    }
    let (mut or, mut max) = (0i32, 0u32);
    for &x in q {
        or |= x;
        max = max.max(x as u32);
    }
    or < 0 || (max >= bound && !q.is_empty())
});
wide_elem!(i64, |x, bound| x as u64 >= u64::from(bound), |q, bound| {
    avx512_first!(any_at_least_i64(q, bound));
    wide_any_at_least(q, bound)
});

/// Whether the largest of `q` is at least `bound` (a max reduction, which vectorizes).
#[inline(always)]
fn max_at_least(q: &[u32], bound: u32) -> bool {
    q.iter().fold(0, |m, &x| m.max(x)) >= bound && !q.is_empty()
}

/// The bits of `q` as `u32` (same size and alignment).
fn as_u32(q: &[i32]) -> &[u32] {
    // SAFETY: every bit pattern is a valid u32.
    unsafe { std::slice::from_raw_parts(q.as_ptr().cast(), q.len()) }
}

/// Whether any of `q` is not a valid id below `bound`: max of the low 32 bits and OR of the
/// rest, exact once no value has high bits.
#[inline(always)]
fn wide_any_at_least<E: IdElem>(q: &[E], bound: u32) -> bool {
    let (mut high, mut max) = (0u64, 0u32);
    for &x in q {
        high |= x.wide();
        max = max.max(x.wide() as u32);
    }
    high >> 32 != 0 || (max >= bound && !q.is_empty())
}

#[inline(always)]
fn first_at_least_body<E: IdElem>(q: &[E], bound: u32) -> Option<usize> {
    if !E::any_at_least(q, bound) {
        return None;
    }
    q.iter().position(|&x| x.at_least(bound))
}
avx2_version!(first_at_least_avx2, first_at_least_body, (q: &[E], bound: u32) -> Option<usize>);

#[inline(always)]
fn common_prefix_wide<E: IdElem, K: TreeToken>(q: &[E], t: &[K]) -> usize {
    let n = q.len().min(t.len());
    let (q, t) = (&q[..n], &t[..n]);
    let i = equal_blocks::<E, K, BIG_BLOCK>(q, t, 0);
    let mut i = equal_blocks::<E, K, BLOCK>(q, t, i);
    while i < n && q[i].wide() == u64::from(t[i].get()) {
        i += 1;
    }
    i
}

/// From `i`, the end of the run of equal `B`-id blocks (`q` and `t` of equal length).
#[inline(always)]
fn equal_blocks<E: IdElem, K: TreeToken, const B: usize>(q: &[E], t: &[K], mut i: usize) -> usize {
    for (cq, ct) in q[i..].chunks_exact(B).zip(t[i..].chunks_exact(B)) {
        let diff = cq
            .iter()
            .zip(ct)
            .fold(0u64, |acc, (&x, &y)| acc | (x.wide() ^ u64::from(y.get())));
        if diff != 0 {
            break;
        }
        i += B;
    }
    i
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn common_prefix_same_avx2<T: crate::prefix::Word>(q: &[T], t: &[T]) -> usize {
    crate::prefix::common_prefix(q, t)
}

/// The largest of `q` (0 if empty): a `u16` max reduction, 16 ids per AVX2 vector.
fn max_u16(q: &[u16]) -> u16 {
    dispatch!(max_u16_body, max_u16_avx2, (q))
}

#[inline(always)]
fn max_u16_body(q: &[u16]) -> u16 {
    q.iter().fold(0, |m, &x| m.max(x))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_u16_avx2(q: &[u16]) -> u16 {
    max_u16_body(q)
}

#[inline(always)]
fn widen_u16_body(q: &[u16], out: &mut [MaybeUninit<u32>]) -> Result<(), usize> {
    for (o, &x) in out.iter_mut().zip(q) {
        o.write(x.into());
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn widen_u16_avx2(q: &[u16], out: &mut [MaybeUninit<u32>]) -> Result<(), usize> {
    widen_u16_body(q, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn common_prefix_wide_avx2<E: IdElem, K: TreeToken>(q: &[E], t: &[K]) -> usize {
    common_prefix_wide(q, t)
}

#[inline(always)]
fn first_invalid_wide<E: IdElem>(q: &[E]) -> Option<usize> {
    if q.iter().fold(0u64, |acc, &x| acc | x.wide()) >> 32 == 0 {
        return None;
    }
    q.iter().position(|&x| x.wide() >> 32 != 0)
}
avx2_version!(first_invalid_wide_avx2, first_invalid_wide, (q: &[E]) -> Option<usize>);

/// `(OR of the widened values, largest low 32 bits)`: the first has a bit above 31 set iff some
/// value is invalid.
fn max_wide<E: IdElem>(q: &[E]) -> (u64, u32) {
    dispatch!(max_wide_body, max_wide_avx2, (q))
}

/// Reductions only, so that the loop vectorizes.
#[inline(always)]
fn max_wide_body<E: IdElem>(q: &[E]) -> (u64, u32) {
    let (mut high, mut max) = (0u64, 0u32);
    for &x in q {
        high |= x.wide();
        max = max.max(x.wide() as u32);
    }
    (high, max)
}
avx2_version!(max_wide_avx2, max_wide_body, (q: &[E]) -> (u64, u32));

/// Writes `q[i]` as `u16` to `out[i]` (of the same length); every value of `q` must be valid
/// and below 65,536 (checked by the caller with [`IdElem::max_id`]).
pub(crate) fn write_u16<E: IdElem>(q: &[E], out: &mut [MaybeUninit<u16>]) {
    assert_eq!(q.len(), out.len());
    dispatch!(write_u16_body, write_u16_avx2, (q, out))
}

#[inline(always)]
fn write_u16_body<E: IdElem>(q: &[E], out: &mut [MaybeUninit<u16>]) {
    for (o, &x) in out.iter_mut().zip(q) {
        o.write(x.wide() as u16);
    }
}
avx2_version!(write_u16_avx2, write_u16_body, (q: &[E], out: &mut [MaybeUninit<u16>]) -> ());

/// Writes `q[i] as u32` to `out[i]`; returns the OR of the widened values (a bit above 31 set
/// iff some value is invalid).
fn narrow<E: IdElem>(q: &[E], out: &mut [MaybeUninit<u32>]) -> u64 {
    assert_eq!(q.len(), out.len());
    dispatch!(narrow_body, narrow_avx2, (q, out))
}

#[inline(always)]
fn narrow_body<E: IdElem>(q: &[E], out: &mut [MaybeUninit<u32>]) -> u64 {
    let mut high = 0u64;
    for (o, &x) in out.iter_mut().zip(q) {
        let w = x.wide();
        high |= w;
        o.write(w as u32);
    }
    high
}
avx2_version!(narrow_avx2, narrow_body, (q: &[E], out: &mut [MaybeUninit<u32>]) -> u64);

#[cfg(test)]
mod tests {
    use super::IdElem;

    #[test]
    fn common_prefix_stops_at_difference_or_invalid_id() {
        let t: Vec<u32> = (0..300).collect();
        for cut in 0..300 {
            let mut q: Vec<i64> = (0..300).collect();
            q[cut] = 1000;
            assert_eq!(i64::common_prefix(&q, &t), cut);
            q[cut] = i64::from(t[cut]) - (1 << 32);
            assert_eq!(
                i64::common_prefix(&q, &t),
                cut,
                "low bits equal, high bits not"
            );
            q[cut] = -1;
            assert_eq!(i64::common_prefix(&q, &t), cut);
            let q32: Vec<i32> = (0..300)
                .map(|x| if x == cut as i32 { -7 } else { x })
                .collect();
            assert_eq!(i32::common_prefix(&q32, &t), cut);
        }
        let q: Vec<i64> = (0..300).collect();
        assert_eq!(i64::common_prefix(&q, &t), 300);
        assert_eq!(i64::common_prefix(&q[..200], &t), 200);
        assert_eq!(i64::common_prefix(&q[..40], &t), 40);
        assert_eq!(i64::common_prefix(&q, &t[..33]), 33);
        assert_eq!(i64::common_prefix(&[], &t), 0);
    }

    /// The portable and AVX2 code still serve CPUs without AVX-512: each path (the ones this
    /// CPU runs) gives the same answers as the dispatched one.
    #[test]
    fn every_code_path_agrees() {
        let t: Vec<u32> = (0..600u32)
            .map(|x| x.wrapping_mul(2_654_435_761) >> 8)
            .collect();
        for cut in (0..600).step_by(13).chain([599]) {
            for bad in [-1i64, 1 << 32, i64::from(t[cut]) + 1] {
                let mut q: Vec<i64> = t.iter().map(|&x| i64::from(x)).collect();
                q[cut] = bad;
                // An id too large for i32 becomes a negative one: invalid either way.
                let q32: Vec<i32> = q.iter().map(|&x| i32::try_from(x).unwrap_or(-5)).collect();
                let want = cut;
                assert_eq!(super::common_prefix_wide(&q, &t), want);
                assert_eq!(i64::common_prefix(&q, &t), want);
                assert_eq!(super::common_prefix_wide(&q32, &t), want);
                assert_eq!(i32::common_prefix(&q32, &t), want);
                let qu: Vec<u32> = q32.iter().map(|&x| x as u32).collect();
                let want_u = crate::prefix::common_prefix(&qu, &t);
                assert_eq!(u32::common_prefix(&qu, &t), want_u);
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    unsafe {
                        assert_eq!(super::common_prefix_wide_avx2(&q, &t), want);
                        assert_eq!(super::common_prefix_wide_avx2(&q32, &t), want);
                        assert_eq!(super::common_prefix_same_avx2(&qu, &t), want_u);
                    }
                }
                let slots: Vec<i32> = (0..600)
                    .map(|x| if x == cut as i32 { -1 } else { x })
                    .collect();
                assert_eq!(i32::first_at_least(&slots, 600), Some(cut));
                assert_eq!(super::first_at_least_body(&slots, 600), Some(cut));
                assert!(super::wide_any_at_least(&slots, 600));
                assert!(super::max_at_least(super::as_u32(&slots), 600));
                assert!(!super::max_at_least(&qu[..cut.min(5)], u32::MAX));
                let wide: Vec<i64> = slots.iter().map(|&x| i64::from(x)).collect();
                assert_eq!(i64::first_at_least(&wide, 600), Some(cut));
                assert_eq!(super::first_at_least_body(&wide, 600), Some(cut));
            }
        }
    }

    /// Narrow tree tokens: the portable, AVX2 and dispatched compares agree, and `max_id` /
    /// `write_u16` convert what an insert stores.
    #[test]
    fn narrow_tokens_agree_on_every_code_path() {
        let t: Vec<u16> = (0..600u32).map(|x| (x * 97 % 65_536) as u16).collect();
        for cut in (0..600).step_by(11).chain([599]) {
            for bad in [-1i64, 1 << 16, i64::from(t[cut]) + (1 << 32)] {
                let mut q: Vec<i64> = t.iter().map(|&x| i64::from(x)).collect();
                q[cut] = bad;
                let q32: Vec<i32> = q.iter().map(|&x| i32::try_from(x).unwrap_or(-5)).collect();
                assert_eq!(super::common_prefix_wide(&q, &t), cut);
                assert_eq!(i64::common_prefix_u16(&q, &t), cut);
                assert_eq!(super::common_prefix_wide(&q32, &t), cut);
                assert_eq!(i32::common_prefix_u16(&q32, &t), cut);
                if bad == 1 << 16 {
                    let qu: Vec<u32> = q32.iter().map(|&x| x as u32).collect();
                    assert_eq!(u32::common_prefix_u16(&qu, &t), cut);
                    assert_eq!(super::common_prefix_wide(&qu, &t), cut);
                }
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    unsafe {
                        assert_eq!(super::common_prefix_wide_avx2(&q, &t), cut);
                        assert_eq!(super::common_prefix_wide_avx2(&q32, &t), cut);
                    }
                }
            }
        }
        assert_eq!(i64::max_id(&[3, 65_535, 7]), Ok(65_535));
        assert_eq!(i64::max_id(&[3, -1, 1 << 40]), Err(1));
        assert_eq!(i32::max_id(&[]), Ok(0));
        assert_eq!(u32::max_id(&[70_000, 1]), Ok(70_000));
        let mut out = [std::mem::MaybeUninit::new(0u16); 3];
        super::write_u16(&[1i32, 65_535, 0], &mut out);
        assert_eq!(out.map(|x| unsafe { x.assume_init() }), [1, 65_535, 0]);
    }

    /// `u16` ids: same-width compares with narrow tokens and widened ones with wide tokens
    /// agree on every code path this CPU runs, and equal the `u32` answers on the same ids.
    #[test]
    fn u16_ids_agree_with_u32_ids_on_every_code_path() {
        let t16: Vec<u16> = (0..700u32).map(|x| ((x * 40_503) >> 3) as u16).collect();
        let t32: Vec<u32> = t16.iter().map(|&x| u32::from(x)).collect();
        for cut in (0..700).step_by(9).chain([699]) {
            for flip in [1u16, 1 << 15] {
                let mut q: Vec<u16> = t16.clone();
                q[cut] ^= flip;
                let qu: Vec<u32> = q.iter().map(|&x| u32::from(x)).collect();
                assert_eq!(u32::common_prefix_u16(&qu, &t16), cut);
                assert_eq!(u16::common_prefix_u16(&q, &t16), cut);
                assert_eq!(crate::prefix::common_prefix(&q, &t16), cut);
                assert_eq!(u16::common_prefix(&q, &t32), cut);
                assert_eq!(super::common_prefix_wide(&q, &t32), cut);
                // A wide token whose low 16 bits equal the id.
                let mut wide = t32.clone();
                wide[cut] += 1 << 16;
                assert_eq!(u16::common_prefix(&t16, &wide), cut);
                assert_eq!(super::common_prefix_wide(&t16, &wide), cut);
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    unsafe {
                        assert_eq!(super::common_prefix_same_avx2(&q, &t16), cut);
                        assert_eq!(super::common_prefix_wide_avx2(&q, &t32), cut);
                        assert_eq!(super::max_u16_avx2(&q), super::max_u16_body(&q));
                    }
                }
            }
        }
        assert_eq!(u16::common_prefix_u16(&t16, &t16[..650]), 650);
        assert_eq!(u16::common_prefix_u16(&[], &t16), 0);
        assert_eq!(u16::max_id(&[3, 65_535, 7]), Ok(65_535));
        assert_eq!(u16::max_id(&[]), Ok(0));
        assert_eq!(u16::first_invalid(&[0, 65_535]), None);
        assert_eq!(u16::first_at_least(&[0, 9, 10, 11], 10), Some(2));
        assert_eq!(u16::first_at_least(&[0, 65_535], 65_535), Some(1));
        assert_eq!(u16::first_at_least(&[0, 65_535], 65_536), None);
        assert_eq!(u16::first_at_least(&[], 0), None);
        let long: Vec<u16> = (0..1000).collect();
        assert_eq!(u16::first_at_least(&long, 1000), None);
        assert_eq!(u16::first_at_least(&long, 999), Some(999));
        let mut out = vec![9u32];
        assert_eq!(u16::extend_u32(&[1, 65_535, 0], &mut out), Ok(()));
        assert_eq!(out, [9, 1, 65_535, 0]);
        let mut narrow = [std::mem::MaybeUninit::new(0u16); 3];
        super::write_u16(&[1u16, 65_535, 0], &mut narrow);
        assert_eq!(narrow.map(|x| unsafe { x.assume_init() }), [1, 65_535, 0]);
    }

    #[test]
    fn validation_finds_the_first_invalid_id() {
        let mut q: Vec<i64> = (0..70).collect();
        assert_eq!(i64::first_invalid(&q), None);
        q[50] = 1 << 32;
        q[60] = -1;
        assert_eq!(i64::first_invalid(&q), Some(50));
        assert_eq!(i64::first_invalid(&q[51..]), Some(9));
        q[50] = u32::MAX.into();
        assert_eq!(i64::first_invalid(&q), Some(60));
        assert_eq!(i32::first_invalid(&[0, 5, i32::MIN]), Some(2));
        assert_eq!(i32::first_invalid(&[0, i32::MAX]), None);
    }

    #[test]
    fn range_check_catches_large_and_negative_ids() {
        assert_eq!(u32::first_at_least(&[0, 9, 10, 11], 10), Some(2));
        assert_eq!(u32::first_at_least(&[0, 9], 10), None);
        assert_eq!(i64::first_at_least(&[0, 9, -1], 10), Some(2));
        assert_eq!(i64::first_at_least(&[0, 1 << 40], u32::MAX), Some(1));
        assert_eq!(i32::first_at_least(&[5, -1], 10), Some(1));
        assert_eq!(i32::first_at_least(&[5, -1], u32::MAX), Some(1));
        assert_eq!(i32::first_at_least(&[5, i32::MAX], u32::MAX), None);
        let long: Vec<i32> = (0..1000).collect();
        assert_eq!(i32::first_at_least(&long, 1000), None);
        assert_eq!(i32::first_at_least(&long, 999), Some(999));
    }

    #[test]
    fn extend_converts_or_leaves_out_unchanged() {
        let mut out = vec![9u32];
        assert_eq!(i64::extend_u32(&[1, 2, u32::MAX.into()], &mut out), Ok(()));
        assert_eq!(out, [9, 1, 2, u32::MAX]);
        assert_eq!(i64::extend_u32(&[3, -4, 5], &mut out), Err(1));
        assert_eq!(i32::extend_u32(&[3, 4, -5], &mut out), Err(2));
        assert_eq!(out, [9, 1, 2, u32::MAX]);
        assert_eq!(u32::extend_u32(&[7], &mut out), Ok(()));
        assert_eq!(out.len(), 5);
    }
}

//! Longest common prefix of two token slices of one width (`u32` ids against wide edges, `u16`
//! ids against narrow ones), the inner loop of every match and insert.

use std::ops::{BitOr, BitXor};

/// An unsigned id width compared bit for bit.
pub(crate) trait Word:
    Copy + Eq + Default + BitXor<Output = Self> + BitOr<Output = Self>
{
}
impl Word for u16 {}
impl Word for u32 {}

/// Tokens compared per step; the XOR/OR reduction over a fixed-size block vectorizes. Long
/// runs go in big blocks (fewer branches), the block that differs again in small ones.
const BIG_BLOCK: usize = 128;
const BLOCK: usize = 32;

/// Length of the longest common prefix of `a` and `b`.
#[inline(always)]
pub(crate) fn common_prefix<T: Word>(a: &[T], b: &[T]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let i = equal_blocks::<T, BIG_BLOCK>(a, b, 0);
    let mut i = equal_blocks::<T, BLOCK>(a, b, i);
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// From `i`, the end of the run of equal `B`-token blocks (`a` and `b` of equal length).
#[inline(always)]
fn equal_blocks<T: Word, const B: usize>(a: &[T], b: &[T], mut i: usize) -> usize {
    for (ca, cb) in a[i..].chunks_exact(B).zip(b[i..].chunks_exact(B)) {
        let diff = ca
            .iter()
            .zip(cb)
            .fold(T::default(), |acc, (&x, &y)| acc | (x ^ y));
        if diff != T::default() {
            break;
        }
        i += B;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn finds_first_difference_everywhere() {
        let a: Vec<u32> = (0..300).collect();
        for cut in 0..300 {
            let mut b = a.clone();
            b[cut] = 1000;
            assert_eq!(common_prefix(&a, &b), cut);
        }
        assert_eq!(common_prefix(&a, &a), 300);
        assert_eq!(common_prefix(&a[..40], &a), 40);
        assert_eq!(common_prefix(&[], &a), 0);
        let a16: Vec<u16> = (0..300).map(|x| x * 211).collect();
        for cut in 0..300 {
            let mut b = a16.clone();
            b[cut] ^= 1 << 15;
            assert_eq!(common_prefix(&a16, &b), cut);
        }
        assert_eq!(common_prefix(&a16, &a16[..299]), 299);
    }
}

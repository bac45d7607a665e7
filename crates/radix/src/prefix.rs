//! Longest common prefix of two token slices, the inner loop of every match and insert.

/// Tokens compared per step; the XOR/OR reduction over a fixed-size block vectorizes. Long
/// runs go in big blocks (fewer branches), the block that differs again in small ones.
const BIG_BLOCK: usize = 128;
const BLOCK: usize = 32;

/// Length of the longest common prefix of `a` and `b`.
#[inline(always)]
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let i = equal_blocks::<BIG_BLOCK>(a, b, 0);
    let mut i = equal_blocks::<BLOCK>(a, b, i);
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// From `i`, the end of the run of equal `B`-token blocks (`a` and `b` of equal length).
#[inline(always)]
fn equal_blocks<const B: usize>(a: &[u32], b: &[u32], mut i: usize) -> usize {
    for (ca, cb) in a[i..].chunks_exact(B).zip(b[i..].chunks_exact(B)) {
        let diff = ca.iter().zip(cb).fold(0u32, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
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
    }
}

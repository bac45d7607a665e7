//! Longest common prefix of two token slices, the inner loop of every match and insert.

/// Tokens compared per step; the XOR/OR reduction over a fixed-size block vectorizes.
const BLOCK: usize = 32;

/// Length of the longest common prefix of `a` and `b`.
#[inline]
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    for (ca, cb) in a.chunks_exact(BLOCK).zip(b.chunks_exact(BLOCK)) {
        let diff = ca.iter().zip(cb).fold(0u32, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            break;
        }
        i += BLOCK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn finds_first_difference_everywhere() {
        let a: Vec<u32> = (0..100).collect();
        for cut in 0..100 {
            let mut b = a.clone();
            b[cut] = 1000;
            assert_eq!(common_prefix(&a, &b), cut);
        }
        assert_eq!(common_prefix(&a, &a), 100);
        assert_eq!(common_prefix(&a[..40], &a), 40);
        assert_eq!(common_prefix(&[], &a), 0);
    }
}

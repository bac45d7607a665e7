//! Bitmaps over slot ids, shared by the allocator and by callers that track slot ownership.

use crate::simd::dispatch;
use crate::SlotId;

/// Maximal runs of consecutive ascending slots: `(first slot, length)`.
pub fn runs(slots: &[SlotId]) -> impl Iterator<Item = (SlotId, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let start = *slots.get(i)?;
        let len = run_len(&slots[i..]);
        i += len;
        Some((start, len))
    })
}

/// Length of the run of consecutive ascending slots that starts `s` (non-empty). Freed and
/// adopted slots mostly come in long runs, and a slot-by-slot loop was the main cost of
/// freeing them: blocks are checked branch-free (vectorized), big ones first.
fn run_len(s: &[SlotId]) -> usize {
    dispatch!(run_len_body, run_len_avx2, (s))
}

#[inline(always)]
fn run_len_body(s: &[SlotId]) -> usize {
    let start = s[0];
    let len = consecutive_blocks::<64>(s, start, 1);
    let mut len = consecutive_blocks::<8>(s, start, len);
    while len < s.len() && s[len] == start.wrapping_add(len as u32) {
        len += 1;
    }
    len
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_len_avx2(s: &[SlotId]) -> usize {
    run_len_body(s)
}

/// From `len`, the end of the run of `B`-slot blocks continuing `start, start + 1, ...`.
#[inline(always)]
fn consecutive_blocks<const B: usize>(s: &[SlotId], start: SlotId, mut len: usize) -> usize {
    while let Some(block) = s.get(len..len + B) {
        let next = start.wrapping_add(len as u32);
        let mut diff = 0;
        for (k, &x) in block.iter().enumerate() {
            diff |= x ^ next.wrapping_add(k as u32);
        }
        if diff != 0 {
            break;
        }
        len += B;
    }
    len
}

/// Bit masks covering bits `a..b` (`a < b`), one per 64-bit word.
pub fn word_masks(a: usize, b: usize) -> impl Iterator<Item = (usize, u64)> {
    let (first, last) = (a / 64, (b - 1) / 64);
    (first..=last).map(move |w| {
        let lo = if w == first { a % 64 } else { 0 };
        let hi = if w == last { (b - 1) % 64 + 1 } else { 64 };
        (w, (u64::MAX >> (64 - (hi - lo))) << lo)
    })
}

/// Whether any bit in `a..b` is set.
pub fn any_bit(bits: &[u64], a: usize, b: usize) -> bool {
    a < b && word_masks(a, b).any(|(w, m)| bits[w] & m != 0)
}

/// Sets (or clears) every bit in `a..b`.
pub fn set_bits(bits: &mut [u64], a: usize, b: usize, on: bool) {
    if a >= b {
        return;
    }
    for (w, m) in word_masks(a, b) {
        if on {
            bits[w] |= m;
        } else {
            bits[w] &= !m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_split_at_every_break() {
        let runs_of = |s: &[u32]| runs(s).collect::<Vec<_>>();
        assert_eq!(runs_of(&[]), vec![]);
        assert_eq!(runs_of(&[5]), vec![(5, 1)]);
        for cut in 1..300u32 {
            // 0..cut, then a jump, then a run up to 300 slots long.
            let mut s: Vec<u32> = (0..cut).collect();
            s.extend(1000..1300 - cut);
            assert_eq!(
                runs_of(&s),
                vec![(0, cut as usize), (1000, 300 - cut as usize)]
            );
        }
        assert_eq!(runs_of(&[3, 2, 1]), vec![(3, 1), (2, 1), (1, 1)]);
        assert_eq!(runs_of(&[u32::MAX, 0, 1]), vec![(u32::MAX, 3)]);
    }
}

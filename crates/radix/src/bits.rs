//! Bitmaps over slot ids, shared by the allocator and by callers that track slot ownership.

use crate::SlotId;

/// Maximal runs of consecutive ascending slots: `(first slot, length)`.
pub fn runs(slots: &[SlotId]) -> impl Iterator<Item = (SlotId, usize)> + '_ {
    /// Slots checked per step while a run continues (a branch-free block compare that
    /// vectorizes: freed slots mostly come in long runs, and a slot-by-slot loop was the main
    /// cost of freeing them).
    const BLOCK: usize = 16;
    let mut i = 0;
    std::iter::from_fn(move || {
        let start = *slots.get(i)?;
        let mut len = 1;
        while let Some(block) = slots.get(i + len..i + len + BLOCK) {
            let next = start.wrapping_add(len as u32);
            let diff = block
                .iter()
                .zip(0u32..)
                .fold(0, |acc, (&s, k)| acc | (s ^ next.wrapping_add(k)));
            if diff != 0 {
                break;
            }
            len += BLOCK;
        }
        while i + len < slots.len() && slots[i + len] == start.wrapping_add(len as u32) {
            len += 1;
        }
        i += len;
        Some((start, len))
    })
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

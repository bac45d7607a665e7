//! An edge's storage: one allocation holding its slots, then its tokens, stored as `u16` when
//! every token of the edge is below 65,536 (most vocabularies) and as `u32` otherwise. Narrow
//! tokens halve what a long match reads and cut a cached token from 8 to 6 bytes.

use std::mem::MaybeUninit;
use std::sync::Arc;

use crate::ids::IdElem;
use crate::{SlotId, TokenId};

/// Tokens below this fit a narrow edge.
pub(crate) const NARROW_LIMIT: u32 = 1 << 16;

/// The tokens of an edge, in the width the edge stores them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Key<'a> {
    Narrow(&'a [u16]),
    Wide(&'a [u32]),
}

impl<'a> Key<'a> {
    #[inline]
    pub fn len(self) -> usize {
        match self {
            Self::Narrow(t) => t.len(),
            Self::Wide(t) => t.len(),
        }
    }

    #[inline]
    pub fn get(self, i: usize) -> TokenId {
        match self {
            Self::Narrow(t) => TokenId::from(t[i]),
            Self::Wide(t) => t[i],
        }
    }

    /// Tokens `a..b`.
    #[inline]
    pub fn slice(self, a: usize, b: usize) -> Key<'a> {
        match self {
            Self::Narrow(t) => Self::Narrow(&t[a..b]),
            Self::Wide(t) => Self::Wide(&t[a..b]),
        }
    }

    /// Length of the longest common prefix of `q` and these tokens.
    #[inline]
    pub fn common_prefix<E: IdElem>(self, q: &[E]) -> usize {
        match self {
            Self::Narrow(t) => E::common_prefix_u16(q, t),
            Self::Wide(t) => E::common_prefix(q, t),
        }
    }

    /// Whether every token is below [`NARROW_LIMIT`] (an edge made of them is narrow).
    pub fn fits_narrow(self) -> bool {
        match self {
            Self::Narrow(_) => true,
            // A max reduction (vectorizes); an early exit would not.
            Self::Wide(t) => t.iter().fold(0, |m, &x| m.max(x)) < NARROW_LIMIT,
        }
    }

    pub fn iter(self) -> impl Iterator<Item = TokenId> + 'a {
        let (narrow, wide) = match self {
            Self::Narrow(t) => (t, &[][..]),
            Self::Wide(t) => (&[][..], t),
        };
        narrow
            .iter()
            .map(|&x| TokenId::from(x))
            .chain(wide.iter().copied())
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

/// `u32` words an edge of `len` tokens takes (slots, then tokens).
#[inline]
pub(crate) fn edge_words(len: usize, narrow: bool) -> usize {
    len + if narrow { len.div_ceil(2) } else { len }
}

/// Tokens on an edge of `words` words (the inverse of [`edge_words`]: `len + ceil(len / 2)`
/// words give back `len` through `2 * words / 3`).
#[inline]
pub(crate) fn edge_len(words: usize, narrow: bool) -> usize {
    if narrow {
        words * 2 / 3
    } else {
        words / 2
    }
}

/// The key of edge storage `data` (`len` tokens).
#[inline]
pub(crate) fn key_of(data: &[u32], len: usize, narrow: bool) -> Key<'_> {
    let words = &data[len..];
    if narrow {
        // SAFETY: `u16` is smaller and less aligned than `u32`, every bit pattern is valid,
        // and `words` holds at least `len` halves.
        Key::Narrow(unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), len) })
    } else {
        Key::Wide(words)
    }
}

/// Where an edge's tokens are written.
pub(crate) enum KeyOut<'a> {
    Narrow(&'a mut [MaybeUninit<u16>]),
    Wide(&'a mut [MaybeUninit<u32>]),
}

/// Storage of a new edge, written in place (slots, then tokens) before it is shared.
pub(crate) struct EdgeBuf {
    data: Arc<[MaybeUninit<u32>]>,
    len: usize,
    narrow: bool,
}

impl EdgeBuf {
    pub fn new(len: usize, narrow: bool) -> Self {
        let mut data = Arc::new_uninit_slice(edge_words(len, narrow));
        if narrow && len % 2 == 1 {
            // The unused upper half of the last word: initialised like the rest.
            let buf = Arc::get_mut(&mut data).expect("a new Arc is unique");
            buf[buf.len() - 1].write(0);
        }
        Self { data, len, narrow }
    }

    /// The slot and token parts, to be written in full before [`EdgeBuf::finish`].
    pub fn parts(&mut self) -> (&mut [MaybeUninit<SlotId>], KeyOut<'_>) {
        let buf = Arc::get_mut(&mut self.data).expect("edge storage is unique until finished");
        let (slots, words) = buf.split_at_mut(self.len);
        let key = if self.narrow {
            // SAFETY: the words cover at least `len` halves; `MaybeUninit<u16>` is smaller and
            // less aligned than `MaybeUninit<u32>`, and the borrow of `words` moves into it.
            KeyOut::Narrow(unsafe {
                std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), self.len)
            })
        } else {
            KeyOut::Wide(words)
        };
        (slots, key)
    }

    /// The storage, once every slot and token was written through [`EdgeBuf::parts`].
    ///
    /// # Safety
    /// All `len` slots and `len` tokens were written.
    pub unsafe fn finish(self) -> Edge {
        Edge {
            // SAFETY: the caller wrote the slots and tokens; `new` wrote the padding.
            data: unsafe { self.data.assume_init() },
            narrow: self.narrow,
        }
    }
}

/// An edge's storage and whether its tokens are narrow.
#[derive(Debug)]
pub(crate) struct Edge {
    pub data: Arc<[u32]>,
    pub narrow: bool,
}

impl Edge {
    /// An edge with `key` and `slots` (same length, non-empty), narrow when every token fits.
    pub fn copy_of(key: Key<'_>, slots: &[SlotId]) -> Self {
        debug_assert_eq!(key.len(), slots.len());
        let mut buf = EdgeBuf::new(slots.len(), key.fits_narrow());
        let (s, out) = buf.parts();
        write(s, slots);
        match (out, key) {
            (KeyOut::Wide(o), Key::Wide(t)) => write(o, t),
            (KeyOut::Narrow(o), Key::Narrow(t)) => write(o, t),
            (KeyOut::Narrow(o), Key::Wide(t)) => {
                for (o, &x) in o.iter_mut().zip(t) {
                    o.write(x as u16);
                }
            }
            (KeyOut::Wide(_), Key::Narrow(_)) => unreachable!("narrow tokens always fit"),
        }
        // SAFETY: the slots and tokens were written above.
        unsafe { buf.finish() }
    }

    pub fn len(&self) -> usize {
        edge_len(self.data.len(), self.narrow)
    }

    pub fn key(&self) -> Key<'_> {
        key_of(&self.data, self.len(), self.narrow)
    }
}

fn write<T: Copy>(out: &mut [MaybeUninit<T>], src: &[T]) {
    assert_eq!(out.len(), src.len());
    for (o, &x) in out.iter_mut().zip(src) {
        o.write(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_length_round_trips_for_both_widths() {
        for len in 1..2000 {
            for narrow in [false, true] {
                assert_eq!(edge_len(edge_words(len, narrow), narrow), len, "{len}");
            }
        }
    }

    #[test]
    fn width_is_decided_by_the_largest_token() {
        let narrow = Edge::copy_of(Key::Wide(&[0, 65_535, 7]), &[1, 2, 3]);
        assert!(narrow.narrow);
        assert_eq!(narrow.data.len(), 3 + 2);
        assert_eq!(narrow.key(), Key::Wide(&[0, 65_535, 7]));
        assert_eq!(&narrow.data[..3], &[1, 2, 3]);
        let wide = Edge::copy_of(Key::Wide(&[0, 65_536]), &[4, 5]);
        assert!(!wide.narrow);
        assert_eq!(wide.key().iter().collect::<Vec<_>>(), [0, 65_536]);
        let from_narrow = Edge::copy_of(Key::Narrow(&[9, 8]), &[1, 2]);
        assert_eq!((from_narrow.narrow, from_narrow.len()), (true, 2));
        assert_eq!(from_narrow.key().slice(1, 2), Key::Wide(&[8]));
        assert_ne!(from_narrow.key(), Key::Wide(&[9]));
    }
}

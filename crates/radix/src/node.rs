//! Arena nodes and the opaque handles that name them.

use crate::{SlotId, TokenId};

/// Arena index meaning "no node" (the root's parent, a free node's parent).
pub(crate) const NIL: u32 = u32::MAX;
/// The root always sits at arena index 0 and is never freed.
pub(crate) const ROOT: u32 = 0;

/// Opaque node handle: arena index + generation (+ the issuing tree), so a stale or foreign
/// handle is detected and reported, never misused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) tree: u32,
}

/// One edge of the tree. 64 bytes plus the edge data (8 bytes per token) and the children list.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// The edge's tokens followed by their slots (so `data.len() == 2 * edge_len`); one
    /// allocation per node, and exactly sized.
    data: Box<[u32]>,
    /// `(first token, child index)`, sorted by first token. With pages, several children may
    /// share a first token (they then differ later in the first page).
    pub children: Vec<(TokenId, u32)>,
    /// Logical-clock stamp of the last match/insert through this node (or of its creation).
    pub last_access: u64,
    pub parent: u32,
    pub generation: u32,
    /// Number of locks held on this node or on any node below it.
    pub lock_ref: u32,
}

impl Node {
    /// The root: no edge, no parent.
    pub fn root() -> Self {
        Self {
            parent: NIL,
            ..Self::default()
        }
    }

    pub fn new(tokens: &[TokenId], slots: &[SlotId], parent: u32, last_access: u64) -> Self {
        debug_assert_eq!(tokens.len(), slots.len());
        let mut data = Vec::with_capacity(tokens.len() * 2);
        data.extend_from_slice(tokens);
        data.extend_from_slice(slots);
        Self {
            data: data.into_boxed_slice(),
            children: Vec::new(),
            last_access,
            parent,
            generation: 0,
            lock_ref: 0,
        }
    }

    /// Number of tokens on the edge into this node.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len() / 2
    }

    #[inline]
    pub fn tokens(&self) -> &[TokenId] {
        &self.data[..self.len()]
    }

    #[inline]
    pub fn slots(&self) -> &[SlotId] {
        &self.data[self.len()..]
    }

    #[inline]
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    /// Cut the edge after `at` tokens: `self` keeps the lower part, the upper part is returned
    /// as `(tokens, slots)` data for a new parent node.
    pub fn split_off_upper(&mut self, at: usize) -> Box<[u32]> {
        let len = self.len();
        debug_assert!(at > 0 && at < len);
        let (tokens, slots) = self.data.split_at(len);
        let mut upper = Vec::with_capacity(at * 2);
        upper.extend_from_slice(&tokens[..at]);
        upper.extend_from_slice(&slots[..at]);
        let mut lower = Vec::with_capacity((len - at) * 2);
        lower.extend_from_slice(&tokens[at..]);
        lower.extend_from_slice(&slots[at..]);
        self.data = lower.into_boxed_slice();
        upper.into_boxed_slice()
    }

    /// A node made from `data` produced by [`Node::split_off_upper`].
    pub fn from_data(data: Box<[u32]>, parent: u32, last_access: u64, lock_ref: u32) -> Self {
        Self {
            data,
            children: Vec::new(),
            last_access,
            parent,
            generation: 0,
            lock_ref,
        }
    }

    /// Heap bytes owned by this node (edge data and children list).
    pub fn heap_bytes(&self) -> usize {
        self.data.len() * 4 + self.children.capacity() * std::mem::size_of::<(TokenId, u32)>()
    }

    /// Drop the node's contents and invalidate its handles (the arena slot is reused later).
    pub fn release(&mut self) {
        let generation = self.generation.wrapping_add(1);
        *self = Self {
            parent: NIL,
            generation,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_is_compact() {
        assert!(std::mem::size_of::<Node>() <= 64);
    }

    #[test]
    fn split_keeps_lower_part() {
        let mut n = Node::new(&[1, 2, 3, 4], &[10, 20, 30, 40], ROOT, 5);
        let upper = n.split_off_upper(1);
        assert_eq!(&*upper, &[1, 10]);
        assert_eq!(n.tokens(), &[2, 3, 4]);
        assert_eq!(n.slots(), &[20, 30, 40]);
        let p = Node::from_data(upper, ROOT, 6, 2);
        assert_eq!(
            (p.len(), p.tokens(), p.slots(), p.lock_ref),
            (1, &[1][..], &[10][..], 2)
        );
    }

    #[test]
    fn release_bumps_generation() {
        let mut n = Node::new(&[1], &[2], ROOT, 0);
        n.generation = 7;
        n.release();
        assert_eq!((n.generation, n.parent, n.len()), (8, NIL, 0));
    }
}

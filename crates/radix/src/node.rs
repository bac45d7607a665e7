//! Arena nodes and the opaque handles that name them.

use std::sync::Arc;

use crate::key::{edge_len, key_of, Edge, Key};
use crate::shared::SharedSlots;
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

/// One edge of the tree. 64 bytes plus the edge data (4 bytes of slot and 2 or 4 of token per
/// token, and a 16-byte reference count) and the children list.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// The edge's slots followed by its tokens (see `key.rs`); one allocation per node,
    /// exactly sized, never modified (a split makes new ones), and shared so that a caller can
    /// keep matched slots without a copy. `None` for the root and for free nodes.
    data: Option<Arc<[u32]>>,
    /// `(first token, child index)`, sorted by first token. With pages, several children may
    /// share a first token (they then differ later in the first page).
    pub children: Vec<(TokenId, u32)>,
    /// Logical-clock stamp of the last match/insert through this node (or of its creation).
    pub last_access: u64,
    pub parent: u32,
    pub generation: u32,
    /// Number of locks held on this node or on any node below it.
    pub lock_ref: u32,
    /// The edge's tokens are stored as `u16` (every one is below 65,536).
    narrow: bool,
}

impl Node {
    /// The root: no edge, no parent.
    pub fn root() -> Self {
        Self {
            parent: NIL,
            ..Self::default()
        }
    }

    #[cfg(test)]
    pub fn new(tokens: &[TokenId], slots: &[SlotId], parent: u32, last_access: u64) -> Self {
        Self::from_edge(
            Edge::copy_of(Key::Wide(tokens), slots),
            parent,
            last_access,
            0,
        )
    }

    #[inline]
    fn data(&self) -> &[u32] {
        self.data.as_deref().unwrap_or(&[])
    }

    /// Number of tokens on the edge into this node.
    #[inline]
    pub fn len(&self) -> usize {
        edge_len(self.data().len(), self.narrow)
    }

    #[inline]
    pub fn key(&self) -> Key<'_> {
        key_of(self.data(), self.len(), self.narrow)
    }

    /// The first token of the edge (which must not be empty).
    #[inline]
    pub fn first_token(&self) -> TokenId {
        self.key().get(0)
    }

    #[inline]
    pub fn slots(&self) -> &[SlotId] {
        &self.data()[..self.len()]
    }

    pub fn is_narrow(&self) -> bool {
        self.narrow
    }

    /// The first `len` slots of the edge, shared with the node.
    pub fn shared_slots(&self, len: usize) -> SharedSlots {
        let data = self
            .data
            .clone()
            .expect("shared slots of a node without an edge");
        SharedSlots::new(data, 0, len)
    }

    #[inline]
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    /// Cut the edge after `at` tokens: `self` keeps the lower part, the upper part is returned
    /// for a new parent node. Each part is narrow if its tokens fit (a wide edge's part may).
    pub fn split_off_upper(&mut self, at: usize) -> Edge {
        let len = self.len();
        debug_assert!(at > 0 && at < len);
        let (key, slots) = (self.key(), self.slots());
        let upper = Edge::copy_of(key.slice(0, at), &slots[..at]);
        let lower = Edge::copy_of(key.slice(at, len), &slots[at..]);
        self.data = Some(lower.data);
        self.narrow = lower.narrow;
        upper
    }

    /// A node with `edge` (non-empty).
    pub fn from_edge(edge: Edge, parent: u32, last_access: u64, lock_ref: u32) -> Self {
        debug_assert!(edge.len() > 0);
        Self {
            data: Some(edge.data),
            children: Vec::new(),
            last_access,
            parent,
            generation: 0,
            lock_ref,
            narrow: edge.narrow,
        }
    }

    /// Heap bytes owned by this node (edge data with its two reference counts, and the
    /// children list).
    pub fn heap_bytes(&self) -> usize {
        let data = self.data.as_ref().map_or(0, |d| d.len() * 4 + 16);
        data + self.children.capacity() * std::mem::size_of::<(TokenId, u32)>()
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
        assert_eq!(
            (upper.key(), &upper.data[..1]),
            (Key::Wide(&[1]), &[10][..])
        );
        let shared = n.shared_slots(2);
        assert_eq!(n.key(), Key::Wide(&[2, 3, 4]));
        assert_eq!(n.slots(), &[20, 30, 40]);
        assert_eq!(&*shared, &[20, 30]);
        let p = Node::from_edge(upper, ROOT, 6, 2);
        assert_eq!(
            (p.len(), p.key(), p.slots(), p.lock_ref),
            (1, Key::Wide(&[1]), &[10][..], 2)
        );
    }

    #[test]
    fn split_decides_the_width_of_each_part() {
        let mut n = Node::new(&[1, 70_000, 3, 4, 5], &[10, 20, 30, 40, 50], ROOT, 5);
        assert!(!n.is_narrow());
        let upper = n.split_off_upper(2);
        assert!(!upper.narrow && n.is_narrow());
        assert_eq!(n.key(), Key::Wide(&[3, 4, 5]));
        assert_eq!(n.slots(), &[30, 40, 50]);
        assert_eq!(n.heap_bytes(), 4 * (3 + 2) + 16);
        let lower_narrow = n.split_off_upper(1);
        assert!(lower_narrow.narrow && n.is_narrow());
        assert_eq!((n.key(), n.slots()), (Key::Wide(&[4, 5]), &[40, 50][..]));
    }

    #[test]
    fn release_bumps_generation() {
        let mut n = Node::new(&[1], &[2], ROOT, 0);
        n.generation = 7;
        n.release();
        assert_eq!((n.generation, n.parent, n.len()), (8, NIL, 0));
    }
}

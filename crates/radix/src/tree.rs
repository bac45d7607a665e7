//! The radix tree: cached token prefixes -> KV slots, page-aligned, with LRU eviction.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{IdKind, RadixError};
use crate::ids::{self, IdElem};
use crate::key::{Edge, EdgeBuf, KeyOut, NARROW_LIMIT};
use crate::node::{Node, NodeHandle, NIL, ROOT};
use crate::shared::SharedSlots;
use crate::{CacheStats, SlotId, TokenId};

/// Distinguishes trees so that a handle from another tree is rejected.
static NEXT_TREE_ID: AtomicU32 = AtomicU32::new(1);

/// A radix tree over token ids whose edges carry the KV slot of every token.
///
/// Recency is a logical clock: every match/insert stamps the nodes on its path with one tick,
/// and every node it creates (split parent, new leaf) with a later tick of its own, so among
/// unlocked leaves no two stamps are ever equal and the eviction order is fully determined.
#[derive(Debug)]
pub struct RadixTree {
    pub(crate) nodes: Vec<Node>,
    pub(crate) free_nodes: Vec<u32>,
    /// `(last_access, index)` of every unlocked leaf (the root excluded): the eviction order.
    pub(crate) lru: BTreeSet<(u64, u32)>,
    clock: u64,
    page_size: usize,
    pub(crate) evictable: usize,
    pub(crate) protected: usize,
    stats: CacheStats,
    tree_id: u32,
}

/// Where a read-only walk of a key ended.
struct Walk {
    /// Deepest node whose whole edge matched (the root if none).
    node: u32,
    /// Tokens matched, including a partial edge.
    matched: usize,
    /// A child of `node` whose edge matched only its first `m` tokens (`0 < m < len`).
    partial: Option<(u32, usize)>,
}

impl Default for RadixTree {
    fn default() -> Self {
        Self::new(1)
    }
}

impl RadixTree {
    /// A tree whose keys match and split only at multiples of `page_size`.
    ///
    /// # Panics
    /// If `page_size` is 0 (use [`RadixTree::try_new`] to get an error instead).
    pub fn new(page_size: usize) -> Self {
        Self::try_new(page_size).expect("page_size must be >= 1")
    }

    /// Like [`RadixTree::new`], with `page_size == 0` reported as an error.
    pub fn try_new(page_size: usize) -> Result<Self, RadixError> {
        if page_size == 0 {
            return Err(RadixError::InvalidPageSize);
        }
        Ok(Self {
            nodes: vec![Node::root()],
            free_nodes: Vec::new(),
            lru: BTreeSet::new(),
            clock: 0,
            page_size,
            evictable: 0,
            protected: 0,
            stats: CacheStats::default(),
            tree_id: NEXT_TREE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn root(&self) -> NodeHandle {
        self.handle(ROOT)
    }

    /// Longest cached prefix of `tokens` (a multiple of `page_size`). Appends the matched slots
    /// to `slots_out`; returns `(matched_len, handle of the node ending exactly at the match)`,
    /// splitting an edge if the match ends inside it (the root if nothing matched). Marks the
    /// path as recently used.
    pub fn match_prefix(
        &mut self,
        tokens: &[TokenId],
        slots_out: &mut Vec<SlotId>,
    ) -> (usize, NodeHandle) {
        match self.match_prefix_ids(tokens, slots_out) {
            Ok(found) => found,
            Err(_) => unreachable!("every u32 is a valid token id"),
        }
    }

    /// [`RadixTree::match_prefix`] for tokens of any [`IdElem`] type (e.g. the `i64` or
    /// `u16` of a numpy array, read in place). A token outside `0..2^32` is an error, with the tree and
    /// `slots_out` unchanged.
    pub fn match_prefix_ids<E: IdElem>(
        &mut self,
        tokens: &[E],
        slots_out: &mut Vec<SlotId>,
    ) -> Result<(usize, NodeHandle), RadixError> {
        let mut out = SlotCollector::new(slots_out, false);
        self.match_with(tokens, &mut out)
            .map(|(matched, node, _)| (matched, node))
    }

    /// [`RadixTree::match_prefix_ids`] that shares instead of copying when the matched slots
    /// all lie on one edge (a long document under the root, say): they are then returned as
    /// [`SharedSlots`] and `slots_out` is left as it was; otherwise they are appended to
    /// `slots_out` and `None` is returned.
    pub fn match_prefix_shared<E: IdElem>(
        &mut self,
        tokens: &[E],
        slots_out: &mut Vec<SlotId>,
    ) -> Result<(usize, NodeHandle, Option<SharedSlots>), RadixError> {
        let mut out = SlotCollector::new(slots_out, true);
        self.match_with(tokens, &mut out)
    }

    fn match_with<E: IdElem>(
        &mut self,
        tokens: &[E],
        out: &mut SlotCollector<'_>,
    ) -> Result<(usize, NodeHandle, Option<SharedSlots>), RadixError> {
        let key = &tokens[..self.aligned_len(tokens.len())];
        let walk = self.walk(key, Some(&mut *out));
        // The matched part equals tree tokens, so only the rest can hold an invalid id.
        if let Some(i) = E::first_invalid(&tokens[walk.matched..]) {
            out.undo();
            return Err(id_error(IdKind::Token, tokens, walk.matched + i));
        }
        // Taken before the commit, which may split (and so replace the storage of) the edge.
        let shared = out
            .first
            .map(|(node, m)| self.nodes[node as usize].shared_slots(m));
        self.stats.match_calls += 1;
        self.stats.queried_tokens += tokens.len() as u64;
        self.stats.hit_tokens += walk.matched as u64;
        let end = self.commit_walk(&walk);
        Ok((walk.matched, self.handle(end), shared))
    }

    /// Caches `tokens` with their `slots` (same length, else an error). With `page_size > 1`
    /// only the first `floor(len / page_size) * page_size` tokens are cached; the tail stays
    /// the caller's. Returns how many leading tokens were already cached: the caller's slots
    /// for those are duplicates the caller must free. Marks the path as recently used.
    pub fn insert(&mut self, tokens: &[TokenId], slots: &[SlotId]) -> Result<usize, RadixError> {
        self.insert_and_match(tokens, slots)
            .map(|(cached, _)| cached)
    }

    /// Same as [`RadixTree::insert`], and also returns the handle of the node ending at the
    /// cached length (what a scheduler locks after caching a prefill chunk).
    pub fn insert_and_match(
        &mut self,
        tokens: &[TokenId],
        slots: &[SlotId],
    ) -> Result<(usize, NodeHandle), RadixError> {
        self.insert_checked(tokens, slots, |_, _| Ok(()))
    }

    /// [`RadixTree::insert_and_match`] with a veto: before anything changes, `accept` gets the
    /// already-cached length and the slots the tree would adopt; if it returns an error the
    /// tree is left untouched and the error is returned. (Lets an owner of the slots, e.g. a
    /// binding, verify that the adopted slots are really held by the caller.)
    pub fn insert_checked<E: From<RadixError>>(
        &mut self,
        tokens: &[TokenId],
        slots: &[SlotId],
        accept: impl FnOnce(usize, &[SlotId]) -> Result<(), E>,
    ) -> Result<(usize, NodeHandle), E> {
        self.insert_ids_checked(tokens, slots, accept)
    }

    /// [`RadixTree::insert_checked`] for tokens and slots of any [`IdElem`] types (e.g. a numpy
    /// `i64` token array and `i32` slot array, read in place). Every token, and every slot the
    /// tree adopts, must be in `0..2^32`, else an error with the tree unchanged; the slots of
    /// the already-cached prefix and of an unaligned tail are not read.
    pub fn insert_ids_checked<T: IdElem, S: IdElem, E: From<RadixError>>(
        &mut self,
        tokens: &[T],
        slots: &[S],
        accept: impl FnOnce(usize, &[SlotId]) -> Result<(), E>,
    ) -> Result<(usize, NodeHandle), E> {
        if tokens.len() != slots.len() {
            return Err(RadixError::LengthMismatch {
                tokens: tokens.len(),
                slots: slots.len(),
            }
            .into());
        }
        let len = self.aligned_len(tokens.len());
        // The cached part equals tree tokens (valid by construction): the compare is its only
        // read, and its slots are not read at all.
        let walk = self.walk(&tokens[..len], None);
        let (cached, new) = (walk.matched, len - walk.matched);
        // The new edge's slots then tokens, converted (and checked) straight into the storage
        // of the leaf that will hold them; the tokens narrow if they all fit.
        let edge = if new > 0 {
            let toks = &tokens[cached..len];
            let narrow = T::ALWAYS_NARROW
                || T::max_id(toks).map_err(|i| id_error(IdKind::Token, tokens, cached + i))?
                    < NARROW_LIMIT;
            let mut buf = EdgeBuf::new(new, narrow);
            let (sl, key) = buf.parts();
            S::write_u32(&slots[cached..len], sl)
                .map_err(|i| id_error(IdKind::Slot, slots, cached + i))?;
            match key {
                KeyOut::Narrow(out) => ids::write_u16(toks, out),
                KeyOut::Wide(out) => T::write_u32(toks, out)
                    .map_err(|i| id_error(IdKind::Token, tokens, cached + i))?,
            }
            // SAFETY: both parts were written.
            Some(unsafe { buf.finish() })
        } else {
            None
        };
        if let Some(i) = T::first_invalid(&tokens[len..]) {
            return Err(id_error(IdKind::Token, tokens, len + i).into());
        }
        accept(cached, edge.as_ref().map_or(&[], |e| &e.data[..new]))?;
        let mut end = self.commit_walk(&walk);
        if let Some(edge) = edge {
            end = self.add_leaf(end, edge);
            self.stats.inserted_tokens += new as u64;
        }
        Ok((cached, self.handle(end)))
    }

    /// Adds a reference on every node from the root to `node`. Locked nodes are never evicted.
    pub fn lock(&mut self, node: NodeHandle) -> Result<(), RadixError> {
        let mut idx = self.resolve(node)?;
        while idx != ROOT {
            let n = &mut self.nodes[idx as usize];
            if n.lock_ref == 0 {
                self.evictable -= n.len();
                self.protected += n.len();
                if n.is_leaf() {
                    self.lru.remove(&(n.last_access, idx));
                }
            }
            n.lock_ref += 1;
            idx = n.parent;
        }
        Ok(())
    }

    /// Drops a reference taken by [`RadixTree::lock`]; an error (tree unchanged) if `node`'s
    /// count is already zero.
    pub fn unlock(&mut self, node: NodeHandle) -> Result<(), RadixError> {
        let mut idx = self.resolve(node)?;
        if idx != ROOT && self.nodes[idx as usize].lock_ref == 0 {
            return Err(RadixError::NotLocked);
        }
        // Ancestors' counts are >= this node's (checked by `check_integrity`), so none of the
        // decrements below can underflow.
        while idx != ROOT {
            let n = &mut self.nodes[idx as usize];
            n.lock_ref -= 1;
            if n.lock_ref == 0 {
                self.evictable += n.len();
                self.protected -= n.len();
                if n.is_leaf() {
                    self.lru.insert((n.last_access, idx));
                }
            }
            idx = n.parent;
        }
        Ok(())
    }

    /// Frees unlocked leaves, least recently used first (a parent that becomes an unlocked leaf
    /// becomes a candidate), until at least `num_tokens` slots are freed or nothing is
    /// evictable. Appends the freed slots to `freed_out`; returns how many were freed.
    pub fn evict(&mut self, num_tokens: usize, freed_out: &mut Vec<SlotId>) -> usize {
        let mut freed = 0;
        while freed < num_tokens {
            let Some((_, idx)) = self.lru.pop_first() else {
                break;
            };
            let node = &self.nodes[idx as usize];
            let (parent, first, len) = (node.parent, node.first_token(), node.len());
            freed_out.extend_from_slice(node.slots());
            freed += len;
            self.evictable -= len;
            let at = self.child_position(parent, first, idx);
            let p = &mut self.nodes[parent as usize];
            p.children.remove(at);
            if parent != ROOT && p.is_leaf() && p.lock_ref == 0 {
                self.lru.insert((p.last_access, parent));
            }
            self.free_node(idx);
        }
        self.stats.evicted_tokens += freed as u64;
        freed
    }

    /// Tokens in unlocked nodes.
    pub fn evictable_size(&self) -> usize {
        self.evictable
    }

    /// Tokens in locked nodes.
    pub fn protected_size(&self) -> usize {
        self.protected
    }

    /// All cached tokens (evictable + protected).
    pub fn total_size(&self) -> usize {
        self.evictable + self.protected
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Appends every cached slot to `out` (in no particular order).
    pub fn cached_slots(&self, out: &mut Vec<SlotId>) {
        out.reserve(self.total_size());
        for node in &self.nodes {
            out.extend_from_slice(node.slots());
        }
    }

    /// Drops every node (an error, tree unchanged, if any is locked); appends every cached slot
    /// to `freed_out`. Handles issued before become stale; the stats are kept.
    pub fn reset(&mut self, freed_out: &mut Vec<SlotId>) -> Result<(), RadixError> {
        if self.protected > 0 {
            return Err(RadixError::Locked {
                protected_tokens: self.protected,
            });
        }
        for idx in 1..self.nodes.len() {
            let node = &mut self.nodes[idx];
            if node.parent != NIL {
                freed_out.extend_from_slice(node.slots());
                node.release();
            }
        }
        self.nodes[ROOT as usize].children = Vec::new();
        // Reuse low indices first.
        self.free_nodes = (1..self.nodes.len() as u32).rev().collect();
        self.lru.clear();
        self.evictable = 0;
        Ok(())
    }

    /// Bytes of heap memory the tree uses: the arena, every node's edge data and children list,
    /// the free list, and the LRU set (estimated from B-tree node sizes: the std `BTreeSet`
    /// does not report its allocation).
    pub fn memory_bytes(&self) -> usize {
        // A std B-tree leaf holds up to 11 keys; nodes are on average about 3/4 full, and each
        // leaf is ~ 16 bytes of header plus its keys.
        const KEYS_PER_LEAF: usize = 8;
        let key_size = std::mem::size_of::<(u64, u32)>();
        let lru_leaves = self.lru.len().div_ceil(KEYS_PER_LEAF);
        let lru_bytes = lru_leaves * (16 + 11 * key_size) * 9 / 8;
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.nodes.iter().map(Node::heap_bytes).sum::<usize>()
            + self.free_nodes.capacity() * std::mem::size_of::<u32>()
            + lru_bytes
    }

    /// Checks every invariant; see `integrity.rs`.
    pub fn check_integrity(&self) -> Result<(), String> {
        crate::integrity::check(self)
    }

    // ---- internals ----

    #[inline]
    fn aligned_len(&self, len: usize) -> usize {
        if self.page_size == 1 {
            len
        } else {
            len / self.page_size * self.page_size
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(crate) fn handle(&self, idx: u32) -> NodeHandle {
        NodeHandle {
            index: idx,
            generation: self.nodes[idx as usize].generation,
            tree: self.tree_id,
        }
    }

    /// The live node `h` names, or why not.
    fn resolve(&self, h: NodeHandle) -> Result<u32, RadixError> {
        if h.tree != self.tree_id {
            return Err(RadixError::ForeignHandle);
        }
        match self.nodes.get(h.index as usize) {
            Some(n) if n.generation == h.generation && (h.index == ROOT || n.parent != NIL) => {
                Ok(h.index)
            }
            _ => Err(RadixError::StaleHandle),
        }
    }

    /// The child of `node` whose first page equals the first page of `key` (`key` non-empty,
    /// page-aligned).
    #[inline]
    fn find_child<E: IdElem>(&self, node: u32, key: &[E]) -> Option<u32> {
        let first = u32::try_from(key[0].wide()).ok()?;
        let children = &self.nodes[node as usize].children;
        let start = children.partition_point(|&(t, _)| t < first);
        for &(t, child) in &children[start..] {
            if t != first {
                break;
            }
            if self.page_size == 1 {
                return Some(child);
            }
            let page = self.page_size;
            let first_page = self.nodes[child as usize].key().slice(0, page);
            if first_page.common_prefix(&key[..page]) == page {
                return Some(child);
            }
        }
        None
    }

    /// Index of `child` in `parent`'s children list (`first` is the child's first token).
    fn child_position(&self, parent: u32, first: TokenId, child: u32) -> usize {
        let children = &self.nodes[parent as usize].children;
        let start = children.partition_point(|&(t, _)| t < first);
        start
            + children[start..]
                .iter()
                .position(|&(_, c)| c == child)
                .expect("child missing from its parent's list")
    }

    /// Follows `key` (page-aligned) down the tree without changing anything; gives the
    /// matched slots to `slots_out` if given.
    fn walk<E: IdElem>(&self, key: &[E], mut slots_out: Option<&mut SlotCollector<'_>>) -> Walk {
        let mut node = ROOT;
        let mut pos = 0;
        while pos < key.len() {
            let rest = &key[pos..];
            let Some(child) = self.find_child(node, rest) else {
                break;
            };
            let c = &self.nodes[child as usize];
            let m = self.aligned_len(c.key().common_prefix(rest));
            if let Some(out) = slots_out.as_deref_mut() {
                out.add(&self.nodes, child, m, key.len() - pos);
            }
            pos += m;
            if m < c.len() {
                return Walk {
                    node,
                    matched: pos,
                    partial: Some((child, m)),
                };
            }
            node = child;
        }
        Walk {
            node,
            matched: pos,
            partial: None,
        }
    }

    /// Stamps the walked path as used now and splits the partial edge, if any; returns the
    /// node ending exactly at the matched length.
    fn commit_walk(&mut self, walk: &Walk) -> u32 {
        let stamp = self.tick();
        match walk.partial {
            Some((child, m)) => {
                self.touch_path(child, stamp);
                self.split(child, m)
            }
            None => {
                self.touch_path(walk.node, stamp);
                walk.node
            }
        }
    }

    /// Sets `last_access = stamp` on `idx` and its ancestors, keeping the LRU set in step.
    fn touch_path(&mut self, mut idx: u32, stamp: u64) {
        if idx == ROOT {
            return;
        }
        // Only the deepest node of a path can be a leaf.
        let n = &self.nodes[idx as usize];
        if n.is_leaf() && n.lock_ref == 0 {
            self.lru.remove(&(n.last_access, idx));
            self.lru.insert((stamp, idx));
        }
        while idx != ROOT {
            let n = &mut self.nodes[idx as usize];
            n.last_access = stamp;
            idx = n.parent;
        }
    }

    /// Splits `child`'s edge after `at` tokens. `child` keeps its identity (and handles) as the
    /// lower part; a new parent takes the upper part with the same lock count. Returns the new
    /// parent. Sizes and the LRU set are unchanged (the lower part stays what it was).
    fn split(&mut self, child: u32, at: usize) -> u32 {
        let stamp = self.tick();
        let c = &mut self.nodes[child as usize];
        let first = c.first_token();
        let (parent, lock_ref) = (c.parent, c.lock_ref);
        let upper = c.split_off_upper(at);
        let lower_first = c.first_token();
        let mut node = Node::from_edge(upper, parent, stamp, lock_ref);
        node.children.push((lower_first, child));
        let new = self.alloc_node(node);
        self.nodes[child as usize].parent = new;
        // The new parent starts with the same first token, so the list stays sorted.
        let at = self.child_position(parent, first, child);
        self.nodes[parent as usize].children[at].1 = new;
        new
    }

    /// Adds a new unlocked leaf under `parent` with `edge`.
    fn add_leaf(&mut self, parent: u32, edge: Edge) -> u32 {
        let p = &self.nodes[parent as usize];
        if parent != ROOT && p.is_leaf() && p.lock_ref == 0 {
            self.lru.remove(&(p.last_access, parent));
        }
        let stamp = self.tick();
        let (first, len) = (edge.key().get(0), edge.len());
        let leaf = self.alloc_node(Node::from_edge(edge, parent, stamp, 0));
        let children = &mut self.nodes[parent as usize].children;
        let at = children.partition_point(|&(t, _)| t <= first);
        children.insert(at, (first, leaf));
        self.lru.insert((stamp, leaf));
        self.evictable += len;
        leaf
    }

    fn alloc_node(&mut self, mut node: Node) -> u32 {
        match self.free_nodes.pop() {
            Some(idx) => {
                node.generation = self.nodes[idx as usize].generation;
                self.nodes[idx as usize] = node;
                idx
            }
            None => {
                let idx = u32::try_from(self.nodes.len())
                    .ok()
                    .filter(|&i| i != NIL)
                    .expect("radix tree node arena exceeds u32::MAX nodes");
                self.nodes.push(node);
                idx
            }
        }
    }

    fn free_node(&mut self, idx: u32) {
        self.nodes[idx as usize].release();
        self.free_nodes.push(idx);
    }
}

/// Where a walk puts the matched slots: appended to `out`, except that when sharing, the first
/// edge's are only noted until a second edge matches (a one-edge match is then shared).
struct SlotCollector<'a> {
    out: &'a mut Vec<SlotId>,
    start: usize,
    share: bool,
    /// `(node, matched length)` of the one edge matched so far, not yet copied.
    first: Option<(u32, usize)>,
}

impl<'a> SlotCollector<'a> {
    fn new(out: &'a mut Vec<SlotId>, share: bool) -> Self {
        let start = out.len();
        Self {
            out,
            start,
            share,
            first: None,
        }
    }

    /// Takes the first `m` slots of `child`'s edge; `rest` is how many key tokens were left
    /// before this edge (what the output can still grow by).
    #[inline]
    fn add(&mut self, nodes: &[Node], child: u32, m: usize, rest: usize) {
        if self.share && self.out.len() == self.start {
            match self.first.take() {
                None => {
                    self.first = Some((child, m));
                    return;
                }
                Some((node, m0)) => {
                    // Sized for a full hit, so the copy never reallocates.
                    self.out.reserve(m0 + rest);
                    self.out
                        .extend_from_slice(&nodes[node as usize].slots()[..m0]);
                }
            }
        }
        self.out
            .extend_from_slice(&nodes[child as usize].slots()[..m]);
    }

    /// Drops what this walk collected.
    fn undo(&mut self) {
        self.out.truncate(self.start);
        self.first = None;
    }
}

/// The error for the invalid id at `ids[position]`.
fn id_error<E: IdElem>(what: IdKind, ids: &[E], position: usize) -> RadixError {
    RadixError::IdOutOfRange {
        what,
        position,
        value: ids[position].value(),
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;

//! KV glue: the radix tree plus the slot allocator, and the page arithmetic of a request's slots.
//!
//! A request's slots are `[cached prefix (tree-owned, locked)] [own pages]`. With
//! `page_size > 1` a request owns whole pages, and position `q` always sits at offset
//! `q % page_size` of its page (cached prefixes and chunks are page aligned), so a page is
//! identified by the slot of its first position and the next slot inside a page is `prev + 1`.

use sglrs_radix::{NodeHandle, RadixTree, SlotAllocator};

use crate::error::SchedError;

pub(crate) struct KvPool {
    pub tree: RadixTree,
    pub alloc: SlotAllocator,
    pub page: usize,
    pub radix_enabled: bool,
    root: NodeHandle,
    freed: Vec<u32>,
    scratch: Vec<u32>,
}

impl KvPool {
    pub fn new(capacity_tokens: usize, page_size: usize, radix_enabled: bool) -> Self {
        let tree = RadixTree::new(page_size);
        let root = tree.root();
        KvPool {
            tree,
            alloc: SlotAllocator::new(capacity_tokens, page_size),
            page: page_size,
            radix_enabled,
            root,
            freed: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.alloc.capacity()
    }

    /// Free slots plus slots the tree could free.
    pub fn reclaimable(&self) -> usize {
        self.alloc.available() + self.tree.evictable_size()
    }

    /// Pages covering `n` positions.
    pub fn pages_for(&self, n: usize) -> usize {
        n.div_ceil(self.page)
    }

    /// Tokens of new pages needed to give positions `len .. len + extend` slots.
    pub fn new_page_tokens(&self, len: usize, extend: usize) -> usize {
        (self.pages_for(len + extend) - self.pages_for(len)) * self.page
    }

    /// Longest cached prefix of `tokens` (its slots are appended to `slots_out`).
    pub fn match_prefix(
        &mut self,
        tokens: &[u32],
        slots_out: &mut Vec<u32>,
    ) -> (usize, NodeHandle) {
        if !self.radix_enabled || tokens.is_empty() {
            return (0, self.root);
        }
        self.tree.match_prefix(tokens, slots_out)
    }

    /// Like `match_prefix` but only the length (for ordering the waiting queue).
    pub fn match_len(&mut self, tokens: &[u32]) -> usize {
        if !self.radix_enabled || tokens.is_empty() {
            return 0;
        }
        self.scratch.clear();
        self.tree.match_prefix(tokens, &mut self.scratch).0
    }

    /// Locks `node` unless it is the root; returns the handle to unlock later.
    pub fn lock(&mut self, node: NodeHandle) -> Result<Option<NodeHandle>, SchedError> {
        if node == self.root {
            return Ok(None);
        }
        self.tree.lock(node)?;
        Ok(Some(node))
    }

    pub fn unlock(&mut self, lock: &mut Option<NodeHandle>) -> Result<(), SchedError> {
        if let Some(node) = lock.take() {
            self.tree.unlock(node)?;
        }
        Ok(())
    }

    /// Makes at least `n` slots free, evicting from the tree if needed; false if impossible.
    pub fn make_free(&mut self, n: usize) -> Result<bool, SchedError> {
        let avail = self.alloc.available();
        if avail >= n {
            return Ok(true);
        }
        self.freed.clear();
        self.tree.evict(n - avail, &mut self.freed);
        if !self.freed.is_empty() {
            self.alloc.free(&self.freed)?;
        }
        Ok(self.alloc.available() >= n)
    }

    /// Appends `n` slots (whole pages) to `out`, evicting if needed; false (nothing taken) if
    /// the pool cannot supply them.
    pub fn alloc(&mut self, n: usize, out: &mut Vec<u32>) -> Result<bool, SchedError> {
        if n == 0 {
            return Ok(true);
        }
        Ok(self.make_free(n)? && self.alloc.alloc_into(n, out))
    }

    /// Gives positions `slots.len() .. + extend` new slots, evicting if needed; false (and
    /// `slots` untouched) if the pool cannot supply them. Without pages the allocator writes
    /// straight into `slots`; with pages it goes through `pages` (scratch) and `assign`.
    pub fn extend_slots(
        &mut self,
        slots: &mut Vec<u32>,
        extend: usize,
        pages: &mut Vec<u32>,
    ) -> Result<bool, SchedError> {
        let need = self.new_page_tokens(slots.len(), extend);
        if self.page == 1 {
            return self.alloc(need, slots);
        }
        pages.clear();
        if !self.alloc(need, pages)? {
            return Ok(false);
        }
        let mut cursor = 0;
        self.assign(slots, extend, pages, &mut cursor);
        Ok(true)
    }

    /// Gives positions `slots.len() .. + extend` their slots: a position starting a page takes
    /// the next page of `pages` (from `*cursor`), the others continue the current page.
    pub fn assign(&self, slots: &mut Vec<u32>, extend: usize, pages: &[u32], cursor: &mut usize) {
        let ps = self.page;
        if ps == 1 {
            slots.extend_from_slice(&pages[*cursor..*cursor + extend]);
            *cursor += extend;
            return;
        }
        for _ in 0..extend {
            let q = slots.len();
            let slot = if q % ps == 0 {
                let first = pages[*cursor];
                *cursor += ps;
                first - first % ps as u32
            } else {
                slots[q - 1] + 1
            };
            slots.push(slot);
        }
    }

    /// Returns the pages holding positions `from .. to` (`from` page aligned) to the allocator.
    pub fn free_positions(
        &mut self,
        slots: &[u32],
        from: usize,
        to: usize,
    ) -> Result<(), SchedError> {
        if from >= to {
            return Ok(());
        }
        let ps = self.page;
        debug_assert_eq!(from % ps, 0);
        if ps == 1 {
            self.alloc.free(&slots[from..to])?;
            return Ok(());
        }
        self.scratch.clear();
        for q in (from..to).step_by(ps) {
            let base = slots[q] - slots[q] % ps as u32;
            self.scratch.extend(base..base + ps as u32);
        }
        self.alloc.free(&self.scratch)?;
        Ok(())
    }

    /// Caches the computed positions `0 .. kv_len` in the tree. Slots the tree already had are
    /// duplicates: ours are freed and the tree's adopted. With `relock` the lock moves to the
    /// node ending at the new cached length; without it the old lock is released (the request is
    /// leaving). Returns the first position whose slot changed, if any.
    pub fn cache_computed(
        &mut self,
        tokens: &[u32],
        slots: &mut [u32],
        kv_len: usize,
        cached_len: &mut usize,
        lock: &mut Option<NodeHandle>,
        relock: bool,
    ) -> Result<Option<usize>, SchedError> {
        let new_cached = kv_len / self.page * self.page;
        let mut changed = None;
        if self.radix_enabled && new_cached > *cached_len {
            let (already, node) = self
                .tree
                .insert_and_match(&tokens[..kv_len], &slots[..kv_len])?;
            debug_assert!(already >= *cached_len, "a locked prefix cannot disappear");
            if already > *cached_len {
                self.free_positions(slots, *cached_len, already)?;
                self.scratch.clear();
                let (matched, _) = self
                    .tree
                    .match_prefix(&tokens[..already], &mut self.scratch);
                debug_assert_eq!(matched, already);
                slots[*cached_len..already].copy_from_slice(&self.scratch[*cached_len..already]);
                changed = Some(*cached_len);
            }
            let new_lock = if relock { self.lock(node)? } else { None };
            self.unlock(lock)?;
            *lock = new_lock;
            *cached_len = new_cached;
        } else if !relock {
            self.unlock(lock)?;
        }
        Ok(changed)
    }

    /// Drops every cached node (all must be unlocked) and frees their slots.
    pub fn flush(&mut self) -> Result<(), SchedError> {
        self.freed.clear();
        self.tree.reset(&mut self.freed)?;
        if !self.freed.is_empty() {
            self.alloc.free(&self.freed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_arithmetic_and_assignment() {
        let mut kv = KvPool::new(32, 4, true);
        assert_eq!(kv.new_page_tokens(0, 5), 8);
        assert_eq!(kv.new_page_tokens(5, 3), 0);
        assert_eq!(kv.new_page_tokens(8, 1), 4);
        let mut pages = Vec::new();
        assert!(kv.alloc(8, &mut pages).unwrap());
        let mut slots = Vec::new();
        let mut cursor = 0;
        kv.assign(&mut slots, 6, &pages, &mut cursor);
        assert_eq!(cursor, 8);
        for (q, &slot) in slots.iter().enumerate() {
            assert_eq!(slot % 4, q as u32 % 4);
        }
        kv.free_positions(&slots, 0, 6).unwrap();
        assert_eq!(kv.alloc.available(), 32);
    }

    #[test]
    fn caching_adopts_the_trees_slots_and_moves_the_lock() {
        let mut kv = KvPool::new(64, 1, true);
        let tokens: Vec<u32> = (10..20).collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(kv.alloc(10, &mut a).unwrap());
        assert!(kv.alloc(10, &mut b).unwrap());
        let (mut ca, mut la, mut cb, mut lb) = (0, None, 0, None);
        assert_eq!(
            kv.cache_computed(&tokens, &mut a, 10, &mut ca, &mut la, true)
                .unwrap(),
            None
        );
        // The second request computed the same tokens: its slots are duplicates.
        let changed = kv
            .cache_computed(&tokens, &mut b, 10, &mut cb, &mut lb, true)
            .unwrap();
        assert_eq!(changed, Some(0));
        assert_eq!(a, b);
        assert_eq!((ca, cb), (10, 10));
        assert_eq!(kv.alloc.available(), 54);
        assert_eq!(kv.tree.protected_size(), 10);
        kv.cache_computed(&tokens, &mut a, 10, &mut ca, &mut la, false)
            .unwrap();
        kv.cache_computed(&tokens, &mut b, 10, &mut cb, &mut lb, false)
            .unwrap();
        assert_eq!((la, lb), (None, None));
        assert_eq!(kv.tree.evictable_size(), 10);
        kv.flush().unwrap();
        assert_eq!(kv.alloc.available(), 64);
    }
}

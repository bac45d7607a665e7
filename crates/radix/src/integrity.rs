//! `RadixTree::check_integrity`: verifies every structural invariant, iteratively.

use std::collections::BTreeSet;

use crate::node::{NIL, ROOT};
use crate::tree::RadixTree;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

pub(crate) fn check(tree: &RadixTree) -> Result<(), String> {
    let page = tree.page_size();
    let nodes = &tree.nodes;
    let root = &nodes[ROOT as usize];
    ensure!(root.parent == NIL, "root has a parent");
    ensure!(root.len() == 0, "root has an edge of {} tokens", root.len());
    ensure!(root.lock_ref == 0, "root lock count is {}", root.lock_ref);

    let mut reached = vec![false; nodes.len()];
    reached[ROOT as usize] = true;
    let mut stack = vec![ROOT];
    let mut slots = Vec::with_capacity(tree.total_size());
    let (mut evictable, mut protected) = (0usize, 0usize);
    let mut unlocked_leaves = BTreeSet::new();
    while let Some(idx) = stack.pop() {
        let node = &nodes[idx as usize];
        if idx != ROOT {
            let len = node.len();
            ensure!(len > 0, "node {idx} has an empty edge");
            ensure!(
                len.is_multiple_of(page),
                "node {idx}: edge of {len} tokens is not page-aligned"
            );
            // Narrow whenever every token fits (decided at each write and split).
            ensure!(
                node.is_narrow() || !node.key().fits_narrow(),
                "node {idx}: every token is below 65,536 but the edge stores them as u32"
            );
            slots.extend_from_slice(node.slots());
            if node.lock_ref == 0 {
                evictable += len;
                if node.is_leaf() {
                    unlocked_leaves.insert((node.last_access, idx));
                }
            } else {
                protected += len;
            }
        }
        let mut child_locks = 0u64;
        let mut prev_first = None;
        for (i, &(first, child)) in node.children.iter().enumerate() {
            let Some(c) = nodes.get(child as usize) else {
                return Err(format!("node {idx} lists child {child} outside the arena"));
            };
            ensure!(
                !reached[child as usize],
                "node {child} is reached twice (a cycle or DAG)"
            );
            reached[child as usize] = true;
            ensure!(
                c.parent == idx,
                "node {child}'s parent is {}, not {idx}",
                c.parent
            );
            ensure!(c.len() > 0, "node {child} has an empty edge");
            ensure!(
                c.first_token() == first,
                "node {idx}: child {child} listed under the wrong key"
            );
            ensure!(
                prev_first <= Some(first),
                "node {idx}: children are not sorted"
            );
            prev_first = Some(first);
            // No two children may share their first page (they would have been merged).
            for &(other_first, other) in &node.children[i + 1..] {
                if other_first != first {
                    break;
                }
                let a = c.key().slice(0, page.min(c.len()));
                let b = nodes[other as usize].key();
                ensure!(
                    b.len() < page || a != b.slice(0, page),
                    "node {idx}: children {child} and {other} share their first page"
                );
            }
            child_locks += u64::from(c.lock_ref);
            stack.push(child);
        }
        if idx != ROOT {
            ensure!(
                u64::from(node.lock_ref) >= child_locks,
                "node {idx}: lock count {} below its children's total {child_locks}",
                node.lock_ref
            );
        }
    }

    let mut free = vec![false; nodes.len()];
    for &f in &tree.free_nodes {
        ensure!(
            (f as usize) < nodes.len() && f != ROOT,
            "free list holds invalid index {f}"
        );
        ensure!(!free[f as usize], "index {f} is on the free list twice");
        free[f as usize] = true;
    }
    for (idx, node) in nodes.iter().enumerate() {
        let live = idx == ROOT as usize || node.parent != NIL;
        ensure!(
            live != free[idx],
            "node {idx}: live = {live} but on the free list = {}",
            !live
        );
        ensure!(
            live == reached[idx],
            "node {idx}: live = {live} but reachable = {}",
            reached[idx]
        );
        if !live {
            ensure!(
                node.len() == 0 && node.children.is_empty(),
                "free node {idx} holds data"
            );
        }
    }

    ensure!(
        evictable == tree.evictable,
        "evictable size {} but the unlocked nodes hold {evictable} tokens",
        tree.evictable
    );
    ensure!(
        protected == tree.protected,
        "protected size {} but the locked nodes hold {protected} tokens",
        tree.protected
    );
    ensure!(
        unlocked_leaves == tree.lru,
        "LRU set ({} entries) differs from the unlocked leaves ({} entries)",
        tree.lru.len(),
        unlocked_leaves.len()
    );
    slots.sort_unstable();
    if let Some(w) = slots.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("slot {} is cached twice", w[0]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::tree::RadixTree;

    #[test]
    fn detects_corruption() {
        let mut t = RadixTree::new(1);
        t.insert(&[1, 2, 3], &[7, 8, 9]).unwrap();
        t.insert(&[1, 5], &[7, 6]).unwrap();
        t.check_integrity().unwrap();

        t.evictable += 1;
        assert!(t.check_integrity().unwrap_err().contains("evictable size"));
        t.evictable -= 1;

        let leaf = t.lru.pop_first().unwrap();
        assert!(t.check_integrity().unwrap_err().contains("LRU set"));
        t.lru.insert(leaf);

        // Make two nodes share a slot.
        t.insert(&[4], &[9]).unwrap();
        assert!(t
            .check_integrity()
            .unwrap_err()
            .contains("slot 9 is cached twice"));
    }
}

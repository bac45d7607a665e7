//! SGLang's `dfs-weight` order: walk the radix tree depth first, visiting the children with
//! more waiting requests under them first, and emit the requests whose cached prefix ends at a
//! node after everything below it. Requests sharing a cached prefix are thus admitted together,
//! while their prefix is still cached.
//!
//! The tree is not walked directly: the part of it that matters is exactly the trie of the
//! waiting requests' matched prefixes (their branch points are branch points of the radix tree,
//! and a match that ends inside an edge splits it there), so it is rebuilt from the sorted
//! prefixes. Iterative, so a deep chain of nested prefixes cannot overflow the stack.

use std::cmp::Reverse;

#[derive(Debug, Clone, Copy)]
pub(crate) struct DfsItem {
    pub idx: u32,
    /// Length of the request's cached prefix.
    pub len: usize,
    pub arrival: u64,
}

enum Task {
    Visit { lo: usize, hi: usize, depth: usize },
    Emit { lo: usize, hi: usize },
}

/// Appends the `idx` of every item to `out` in dfs-weight order. `tokens(idx)` gives the
/// request's tokens; its first `len` are the cached prefix.
pub(crate) fn dfs_weight_order<'a>(
    items: &mut [DfsItem],
    tokens: impl Fn(u32) -> &'a [u32],
    out: &mut Vec<u32>,
) {
    let prefix = |it: &DfsItem| &tokens(it.idx)[..it.len];
    items.sort_by(|a, b| prefix(a).cmp(prefix(b)).then(a.arrival.cmp(&b.arrival)));
    let mut stack = vec![Task::Visit {
        lo: 0,
        hi: items.len(),
        depth: 0,
    }];
    // (start, end, earliest arrival) of each child group of the node being visited.
    let mut groups: Vec<(usize, usize, u64)> = Vec::new();
    while let Some(task) = stack.pop() {
        let (lo, hi, depth) = match task {
            Task::Emit { lo, hi } => {
                out.extend(items[lo..hi].iter().map(|it| it.idx));
                continue;
            }
            Task::Visit { lo, hi, depth } => (lo, hi, depth),
        };
        // Sorted order puts the requests ending at this node (a prefix of the others) first.
        let mut here_end = lo;
        while here_end < hi && items[here_end].len == depth {
            here_end += 1;
        }
        groups.clear();
        let mut start = here_end;
        while start < hi {
            let tok = prefix(&items[start])[depth];
            let mut end = start + 1;
            let mut earliest = items[start].arrival;
            while end < hi && prefix(&items[end])[depth] == tok {
                earliest = earliest.min(items[end].arrival);
                end += 1;
            }
            groups.push((start, end, earliest));
            start = end;
        }
        // Heavier subtrees first; ties go to the subtree holding the oldest request.
        groups.sort_by_key(|&(s, e, earliest)| (Reverse(e - s), earliest));
        stack.push(Task::Emit { lo, hi: here_end });
        for &(s, e, _) in groups.iter().rev() {
            // The child node sits at the longest prefix the whole group shares, which for
            // sorted sequences is the common prefix of the first and the last.
            let (first, last) = (prefix(&items[s]), prefix(&items[e - 1]));
            let child_depth = first.iter().zip(last).take_while(|(a, b)| a == b).count();
            stack.push(Task::Visit {
                lo: s,
                hi: e,
                depth: child_depth,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(seqs: &[(&[u32], usize)]) -> Vec<u32> {
        let mut items: Vec<DfsItem> = seqs
            .iter()
            .enumerate()
            .map(|(i, &(_, len))| DfsItem {
                idx: i as u32,
                len,
                arrival: i as u64,
            })
            .collect();
        let mut out = Vec::new();
        dfs_weight_order(&mut items, |i| seqs[i as usize].0, &mut out);
        out
    }

    #[test]
    fn heavier_subtree_first_and_node_after_children() {
        // Prefix [1,2] holds requests 1, 2, 3 (3 at the node itself); [5] holds 0 and 4.
        let seqs: &[(&[u32], usize)] = &[
            (&[5, 6, 7], 1),
            (&[1, 2, 3, 9], 3),
            (&[1, 2, 4, 9], 3),
            (&[1, 2, 8, 8], 2),
            (&[5, 6, 0], 1),
        ];
        assert_eq!(order(seqs), vec![1, 2, 3, 0, 4]);
    }

    #[test]
    fn unmatched_requests_come_last_in_arrival_order() {
        let seqs: &[(&[u32], usize)] = &[(&[9], 0), (&[1, 1], 2), (&[8], 0), (&[1, 1, 2], 2)];
        assert_eq!(order(seqs), vec![1, 3, 0, 2]);
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let long: Vec<u32> = (0..3_000).collect();
        let mut items: Vec<DfsItem> = (0..3_000)
            .map(|i| DfsItem {
                idx: i,
                len: i as usize,
                arrival: u64::from(i),
            })
            .collect();
        let mut out = Vec::new();
        dfs_weight_order(&mut items, |_| &long, &mut out);
        // Deepest first (post-order along the chain).
        assert_eq!(out.first(), Some(&2_999));
        assert_eq!(out.last(), Some(&0));
    }
}

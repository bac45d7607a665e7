//! Property test: random match/insert/lock/unlock/evict/reset sequences on `RadixTree` against a
//! naive reference radix tree (linear child search, eviction by scanning every node for the
//! oldest unlocked leaf), with `check_integrity()` after every step. The mixed-width properties
//! draw some tokens at or above 65,536, so that edges stored as `u16` and as `u32` meet: splits
//! of either kind, a narrow edge continued by a wide one, wide edges split into narrow parts.
//! Whenever a query's tokens all fit `u16`, the same ids as a `u16` slice (compared at their own
//! width with narrow edges, widened with wide ones) must give what the `u32` path gives.

use proptest::prelude::*;
use sglrs_radix::{NodeHandle, RadixError, RadixTree};

/// The reference: the same observable semantics, implemented as plainly as possible.
#[derive(Default)]
struct Model {
    page: usize,
    clock: u64,
    nodes: Vec<MNode>,
}

#[derive(Clone, Default)]
struct MNode {
    key: Vec<u32>,
    slots: Vec<u32>,
    parent: usize,
    children: Vec<usize>,
    lock: u32,
    time: u64,
    alive: bool,
}

impl Model {
    fn new(page: usize) -> Self {
        let root = MNode {
            alive: true,
            ..MNode::default()
        };
        Self {
            page,
            clock: 0,
            nodes: vec![root],
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn child_for(&self, node: usize, key: &[u32]) -> Option<usize> {
        let p = self.page;
        self.nodes[node]
            .children
            .iter()
            .copied()
            .find(|&c| self.nodes[c].key[..p] == key[..p])
    }

    /// Walks `key`; returns (matched, slots, end node), splitting a partially matched edge.
    /// Path nodes get one stamp; created nodes get later ones (the tree's clock rules).
    fn walk(&mut self, key: &[u32]) -> (usize, Vec<u32>, usize) {
        let p = self.page;
        let key = &key[..key.len() / p * p];
        let stamp = self.tick();
        let (mut node, mut pos, mut slots) = (0, 0, Vec::new());
        while pos < key.len() {
            let Some(c) = self.child_for(node, &key[pos..]) else {
                break;
            };
            self.nodes[c].time = stamp;
            let ck = &self.nodes[c].key;
            let mut m = ck
                .iter()
                .zip(&key[pos..])
                .take_while(|(a, b)| a == b)
                .count();
            m = m / p * p;
            slots.extend_from_slice(&self.nodes[c].slots[..m]);
            pos += m;
            if m < self.nodes[c].key.len() {
                node = self.split(c, m);
                break;
            }
            node = c;
        }
        (pos, slots, node)
    }

    fn split(&mut self, c: usize, m: usize) -> usize {
        let time = self.tick();
        let parent = self.nodes[c].parent;
        let upper = MNode {
            key: self.nodes[c].key[..m].to_vec(),
            slots: self.nodes[c].slots[..m].to_vec(),
            parent,
            children: vec![c],
            lock: self.nodes[c].lock,
            time,
            alive: true,
        };
        let new = self.nodes.len();
        self.nodes.push(upper);
        let n = &mut self.nodes[c];
        n.key.drain(..m);
        n.slots.drain(..m);
        n.parent = new;
        for ch in &mut self.nodes[parent].children {
            if *ch == c {
                *ch = new;
            }
        }
        new
    }

    fn insert(&mut self, key: &[u32], slots: &[u32]) -> (usize, usize) {
        let len = key.len() / self.page * self.page;
        let (cached, _, node) = self.walk(&key[..len]);
        if cached == len {
            return (cached, node);
        }
        let time = self.tick();
        let leaf = MNode {
            key: key[cached..len].to_vec(),
            slots: slots[cached..len].to_vec(),
            parent: node,
            time,
            alive: true,
            ..MNode::default()
        };
        self.nodes.push(leaf);
        let id = self.nodes.len() - 1;
        self.nodes[node].children.push(id);
        (cached, id)
    }

    fn lock(&mut self, mut n: usize, delta: i32) {
        while n != 0 {
            self.nodes[n].lock = self.nodes[n].lock.checked_add_signed(delta).unwrap();
            n = self.nodes[n].parent;
        }
    }

    fn evict(&mut self, num: usize) -> Vec<u32> {
        let mut freed = Vec::new();
        while freed.len() < num {
            let leaves: Vec<usize> = (1..self.nodes.len())
                .filter(|&i| {
                    let n = &self.nodes[i];
                    n.alive && n.lock == 0 && n.children.is_empty()
                })
                .collect();
            let Some(&oldest) = leaves.iter().min_by_key(|&&i| self.nodes[i].time) else {
                break;
            };
            let t = self.nodes[oldest].time;
            assert_eq!(
                leaves.iter().filter(|&&i| self.nodes[i].time == t).count(),
                1
            );
            freed.extend_from_slice(&self.nodes[oldest].slots);
            let parent = self.nodes[oldest].parent;
            self.nodes[parent].children.retain(|&c| c != oldest);
            self.nodes[oldest].alive = false;
        }
        freed
    }

    fn size(&self, locked: bool) -> usize {
        self.nodes[1..]
            .iter()
            .filter(|n| n.alive && (n.lock > 0) == locked)
            .map(|n| n.key.len())
            .sum()
    }

    fn reset(&mut self) {
        for n in &mut self.nodes[1..] {
            n.alive = false;
        }
        self.nodes[0].children.clear();
    }
}

#[derive(Debug, Clone)]
enum Op {
    Match(Vec<u32>),
    Insert(Vec<u32>),
    Lock(usize),
    Unlock(usize),
    Evict(usize),
    Reset,
}

fn op(alphabet: u32) -> impl Strategy<Value = Op> {
    op_with(0..alphabet)
}

/// Tokens of a small alphabet, and now and then one at either side of the `u16` limit or far
/// above it (still below 2^31, so that the int32 entry points take every token).
fn mixed_token(alphabet: u32) -> impl Strategy<Value = u32> + Clone {
    prop_oneof![
        12 => 0..alphabet,
        1 => Just(65_535u32),
        1 => Just(65_536u32),
        1 => Just((1u32 << 31) - 1),
    ]
}

fn op_with(token: impl Strategy<Value = u32> + Clone + 'static) -> impl Strategy<Value = Op> {
    let tokens = prop::collection::vec(token, 0..24);
    prop_oneof![
        3 => tokens.clone().prop_map(Op::Match),
        4 => tokens.prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Lock),
        2 => any::<usize>().prop_map(Op::Unlock),
        2 => (1usize..20).prop_map(Op::Evict),
        1 => Just(Op::Reset),
    ]
}

/// The tokens as `u16` if all fit.
fn as_u16(tokens: &[u32]) -> Option<Vec<u16>> {
    tokens.iter().map(|&t| u16::try_from(t).ok()).collect()
}

fn run(page: usize, ops: Vec<Op>) {
    let mut tree = RadixTree::new(page);
    let mut model = Model::new(page);
    let mut next_slot = 0u32;
    // Handles seen (ours, the model's node), and the locks currently held.
    let mut seen: Vec<(NodeHandle, usize)> = vec![(tree.root(), 0)];
    let mut held: Vec<(NodeHandle, usize)> = Vec::new();
    for op in ops {
        match op {
            Op::Match(tokens) => {
                // Every entry point, by the query's length: u32 tokens, int64 tokens read in
                // place, and shared slots with int64 or int32 tokens.
                let mut slots = Vec::new();
                let wide: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
                let narrow: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
                let (n, h) = match tokens.len() % 4 {
                    0 => tree.match_prefix(&tokens, &mut slots),
                    1 => tree.match_prefix_ids(&wide, &mut slots).unwrap(),
                    k => {
                        let (n, h, shared) = if k == 2 {
                            tree.match_prefix_shared(&wide, &mut slots).unwrap()
                        } else {
                            tree.match_prefix_shared(&narrow, &mut slots).unwrap()
                        };
                        if let Some(shared) = shared {
                            assert!(slots.is_empty());
                            slots.extend_from_slice(&shared);
                        }
                        (n, h)
                    }
                };
                let (mn, mslots, mnode) = model.walk(&tokens);
                assert_eq!((n, &slots), (mn, &mslots));
                // Matched again as u16 ids: the same length, slots and node (a repeated match
                // splits nothing and only re-stamps the path that is already the newest).
                if let Some(t16) = as_u16(&tokens) {
                    let mut again = Vec::new();
                    let (n16, h16, shared) = if tokens.len() % 2 == 0 {
                        let (n, h) = tree.match_prefix_ids(&t16, &mut again).unwrap();
                        (n, h, None)
                    } else {
                        tree.match_prefix_shared(&t16, &mut again).unwrap()
                    };
                    if let Some(shared) = shared {
                        again.extend_from_slice(&shared);
                    }
                    assert_eq!((n16, &again, h16), (n, &slots, h));
                }
                seen.push((h, mnode));
            }
            Op::Insert(tokens) => {
                let slots: Vec<u32> = (next_slot..next_slot + tokens.len() as u32).collect();
                next_slot += tokens.len() as u32;
                let narrow: Vec<i32> = slots.iter().map(|&s| s as i32).collect();
                // u16 tokens (narrow edges written as they come) when they all fit.
                let t16 = as_u16(&tokens).filter(|_| tokens.len() % 4 == 2);
                let (cached, h) = match (tokens.len() % 4, t16) {
                    (_, Some(t16)) => tree
                        .insert_ids_checked(&t16, &slots, |_, _| Ok::<_, RadixError>(()))
                        .unwrap(),
                    (0 | 2, None) => tree.insert_and_match(&tokens, &slots).unwrap(),
                    (1, None) => {
                        let wide: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
                        tree.insert_ids_checked(&wide, &narrow, |_, _| Ok::<_, RadixError>(()))
                            .unwrap()
                    }
                    _ => {
                        let t32: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
                        tree.insert_ids_checked(&t32, &narrow, |_, _| Ok::<_, RadixError>(()))
                            .unwrap()
                    }
                };
                let (mcached, mnode) = model.insert(&tokens, &slots);
                assert_eq!(cached, mcached);
                seen.push((h, mnode));
            }
            Op::Lock(i) => {
                let (h, m) = seen[i % seen.len()];
                match tree.lock(h) {
                    Ok(()) => {
                        assert!(model.nodes[m].alive);
                        model.lock(m, 1);
                        held.push((h, m));
                    }
                    Err(e) => {
                        assert_eq!(e, RadixError::StaleHandle);
                        assert!(!model.nodes[m].alive);
                    }
                }
            }
            Op::Unlock(i) => {
                if !held.is_empty() {
                    let (h, m) = held.swap_remove(i % held.len());
                    tree.unlock(h).unwrap();
                    model.lock(m, -1);
                }
            }
            Op::Evict(n) => {
                let mut freed = Vec::new();
                let count = tree.evict(n, &mut freed);
                assert_eq!(count, freed.len());
                assert_eq!(freed, model.evict(n));
            }
            Op::Reset => {
                let mut freed = Vec::new();
                // Locks on the root hold nothing.
                if model.size(true) == 0 {
                    tree.reset(&mut freed).unwrap();
                    model.reset();
                    seen.truncate(1);
                } else {
                    assert!(matches!(
                        tree.reset(&mut freed),
                        Err(RadixError::Locked { .. })
                    ));
                    assert!(freed.is_empty());
                }
            }
        }
        tree.check_integrity().unwrap();
        assert_eq!(tree.evictable_size(), model.size(false));
        assert_eq!(tree.protected_size(), model.size(true));
    }
    // Everything unlocked and evicted: the tree frees exactly what the model frees.
    for (h, m) in held.drain(..) {
        tree.unlock(h).unwrap();
        model.lock(m, -1);
    }
    let mut freed = Vec::new();
    tree.evict(usize::MAX, &mut freed);
    assert_eq!(freed, model.evict(usize::MAX));
    assert_eq!(tree.total_size(), 0);
    tree.check_integrity().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_reference_page_1(ops in prop::collection::vec(op(3), 1..80)) {
        run(1, ops);
    }

    #[test]
    fn matches_reference_page_4(ops in prop::collection::vec(op(2), 1..80)) {
        run(4, ops);
    }

    #[test]
    fn matches_reference_mixed_widths_page_1(
        ops in prop::collection::vec(op_with(mixed_token(3)), 1..80)
    ) {
        run(1, ops);
    }

    #[test]
    fn matches_reference_mixed_widths_page_2(
        ops in prop::collection::vec(op_with(mixed_token(2)), 1..80)
    ) {
        run(2, ops);
    }
}

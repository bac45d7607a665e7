//! Criterion benches of match, insert and evict on realistic trees: a chat tree (a shared
//! 1,000-token system prompt, 1,000 users with 4-turn histories) and a tree-search tree
//! (4-way branching, 6 levels of 32-token steps under a 500-token prompt).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sglrs_radix::RadixTree;

/// Deterministic xorshift, so the trees are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }

    fn tokens(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.next() % 32_000).collect()
    }
}

/// Inserts `tokens` with fresh slots (wrapping: a long bench run issues billions, and slot
/// values do not matter here).
fn insert_fresh(tree: &mut RadixTree, tokens: &[u32], slot: &mut u32) {
    let base = *slot;
    let slots: Vec<u32> = (0..tokens.len() as u32)
        .map(|i| base.wrapping_add(i))
        .collect();
    *slot = base.wrapping_add(tokens.len() as u32);
    tree.insert(tokens, &slots).unwrap();
}

/// The chat tree and its conversations (each the full 4-turn history).
fn chat_tree() -> (RadixTree, Vec<Vec<u32>>) {
    let mut rng = Rng(7);
    let system = rng.tokens(1000);
    let mut tree = RadixTree::new(1);
    let mut slot = 0;
    let mut conversations = Vec::new();
    for _ in 0..1000 {
        let mut conv = system.clone();
        for _ in 0..4 {
            conv.extend(rng.tokens(150));
            insert_fresh(&mut tree, &conv, &mut slot);
        }
        conversations.push(conv);
    }
    (tree, conversations)
}

/// The tree-search tree and its deepest paths.
fn search_tree() -> (RadixTree, Vec<Vec<u32>>) {
    let mut rng = Rng(11);
    let mut tree = RadixTree::new(1);
    let mut frontier = vec![rng.tokens(500)];
    let mut slot = 0;
    for _ in 0..6 {
        let mut next = Vec::new();
        for path in &frontier {
            for _ in 0..4 {
                let mut p = path.clone();
                p.extend(rng.tokens(32));
                insert_fresh(&mut tree, &p, &mut slot);
                next.push(p);
            }
        }
        frontier = next;
    }
    (tree, frontier)
}

fn bench_match(c: &mut Criterion) {
    for (name, (mut tree, requests)) in [("chat", chat_tree()), ("search", search_tree())] {
        let mut i = 0;
        let mut out = Vec::with_capacity(8192);
        c.bench_function(&format!("match/{name}"), |b| {
            b.iter(|| {
                out.clear();
                i = (i + 7919) % requests.len();
                black_box(tree.match_prefix(&requests[i], &mut out));
            })
        });
    }
}

/// A new 150-token turn appended to a cached conversation: walk ~1,600 cached tokens, add a
/// leaf. Inputs are prepared, and the tree is trimmed back, outside the timed part.
fn bench_insert(c: &mut Criterion) {
    const BATCH: u64 = 1000;
    let (mut tree, conversations) = chat_tree();
    let size = tree.total_size();
    let mut rng = Rng(3);
    let mut turn = 0u32;
    c.bench_function("insert/chat_new_turn", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(BATCH);
                let inputs: Vec<(Vec<u32>, Vec<u32>)> = (0..n)
                    .map(|k| {
                        let mut t =
                            conversations[(k as usize * 7919) % conversations.len()].clone();
                        turn += 1;
                        t.push(100_000 + turn);
                        t.extend(rng.tokens(149));
                        let s = (0..t.len() as u32).map(|x| x + 50_000_000).collect();
                        (t, s)
                    })
                    .collect();
                let start = Instant::now();
                for (t, s) in &inputs {
                    black_box(tree.insert(t, s).unwrap());
                }
                elapsed += start.elapsed();
                tree.evict(tree.total_size() - size, &mut Vec::new());
                done += n;
            }
            elapsed
        })
    });
}

/// Evictions of 1,000 tokens (a handful of leaves) from the chat tree; the tree is refilled
/// outside the timed part.
fn bench_evict(c: &mut Criterion) {
    const BATCH: u64 = 200;
    let (mut tree, conversations) = chat_tree();
    let mut slot = 100_000_000;
    let mut freed = Vec::with_capacity(4096);
    c.bench_function("evict/chat_1000_tokens", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    freed.clear();
                    black_box(tree.evict(1000, &mut freed));
                }
                elapsed += start.elapsed();
                for conv in &conversations {
                    insert_fresh(&mut tree, conv, &mut slot);
                }
                done += n;
            }
            elapsed
        })
    });
}

criterion_group!(benches, bench_match, bench_insert, bench_evict);
criterion_main!(benches);

//! Unit tests of `RadixTree` (split, paging, locks, eviction order, stale handles, deep trees).

use super::*;
use crate::SlotAllocator;

fn seq(r: std::ops::Range<u32>) -> Vec<u32> {
    r.collect()
}

fn matched(t: &mut RadixTree, tokens: &[u32]) -> (usize, Vec<u32>, NodeHandle) {
    let mut out = Vec::new();
    let (n, h) = t.match_prefix(tokens, &mut out);
    assert_eq!(n, out.len());
    t.check_integrity().unwrap();
    (n, out, h)
}

#[test]
fn insert_then_match_and_split() {
    let mut t = RadixTree::new(1);
    assert_eq!(t.insert(&[1, 2, 3, 4], &[10, 11, 12, 13]).unwrap(), 0);
    assert_eq!(t.insert(&[1, 2, 3, 4], &[20, 21, 22, 23]).unwrap(), 4);
    assert_eq!(t.node_count(), 2);
    // A match ending inside the edge splits it.
    let (n, slots, h) = matched(&mut t, &[1, 2, 9]);
    assert_eq!((n, slots), (2, vec![10, 11]));
    assert_eq!(t.node_count(), 3);
    assert_ne!(h, t.root());
    // Insert a branch at the split point.
    assert_eq!(t.insert(&[1, 2, 7, 8], &[30, 31, 32, 33]).unwrap(), 2);
    assert_eq!(t.total_size(), 6);
    assert_eq!(matched(&mut t, &[1, 2, 7, 8, 9]).1, vec![10, 11, 32, 33]);
    assert_eq!(matched(&mut t, &[1, 2, 3, 4]).1, vec![10, 11, 12, 13]);
    assert_eq!(matched(&mut t, &[5]).0, 0);
    assert_eq!(matched(&mut t, &[]).2, t.root());
    t.check_integrity().unwrap();
}

#[test]
fn insert_prefix_of_existing_edge_splits() {
    let mut t = RadixTree::new(1);
    t.insert(&[1, 2, 3], &[1, 2, 3]).unwrap();
    let (cached, h) = t.insert_and_match(&[1, 2], &[7, 8]).unwrap();
    assert_eq!(cached, 2);
    t.lock(h).unwrap();
    assert_eq!((t.protected_size(), t.evictable_size()), (2, 1));
    t.check_integrity().unwrap();
}

#[test]
fn length_mismatch_is_an_error() {
    let mut t = RadixTree::new(1);
    assert_eq!(
        t.insert(&[1, 2], &[1]),
        Err(RadixError::LengthMismatch {
            tokens: 2,
            slots: 1
        })
    );
    assert_eq!(t.total_size(), 0);
}

#[test]
fn rejected_insert_leaves_tree_untouched() {
    let mut t = RadixTree::new(1);
    t.insert(&[1, 2, 3], &[1, 2, 3]).unwrap();
    let r: Result<_, RadixError> = t.insert_checked(&[1, 2, 9], &[0, 0, 9], |cached, new| {
        assert_eq!((cached, new), (2, &[9][..]));
        Err(RadixError::DoubleFree { slot: 9 })
    });
    assert!(r.is_err());
    assert_eq!((t.node_count(), t.total_size()), (2, 3));
    t.check_integrity().unwrap();
}

#[test]
fn paging_matches_whole_pages_only() {
    let mut t = RadixTree::new(4);
    // The tail past the last whole page is not cached.
    assert_eq!(t.insert(&seq(0..10), &seq(100..110)).unwrap(), 0);
    assert_eq!(t.total_size(), 8);
    // A difference inside the second page matches only the first.
    let mut q = seq(0..8);
    q[6] = 99;
    let (n, slots, _) = matched(&mut t, &q);
    assert_eq!((n, slots), (4, seq(100..104)));
    // Children differing only after the first token of a page are distinct.
    assert_eq!(
        t.insert(&[0, 1, 2, 3, 4, 5, 9, 9], &seq(200..208)).unwrap(),
        4
    );
    assert_eq!(
        t.insert(&[0, 1, 2, 3, 4, 5, 9, 8], &seq(300..308)).unwrap(),
        4
    );
    assert_eq!(
        matched(&mut t, &[0, 1, 2, 3, 4, 5, 9, 8, 1]).1[4..],
        seq(304..308)[..]
    );
    assert_eq!(matched(&mut t, &[0, 1, 2]).0, 0);
    t.check_integrity().unwrap();
}

#[test]
fn lock_protects_from_eviction() {
    let mut t = RadixTree::new(1);
    let (_, h) = t.insert_and_match(&[1, 2, 3], &[1, 2, 3]).unwrap();
    t.insert(&[4, 5], &[4, 5]).unwrap();
    t.lock(h).unwrap();
    t.lock(h).unwrap();
    assert_eq!((t.evictable_size(), t.protected_size()), (2, 3));
    let mut freed = Vec::new();
    assert_eq!(t.evict(100, &mut freed), 2);
    assert_eq!(freed, vec![4, 5]);
    t.unlock(h).unwrap();
    assert_eq!(t.evict(100, &mut freed), 0);
    t.unlock(h).unwrap();
    assert_eq!(t.unlock(h), Err(RadixError::NotLocked));
    assert_eq!(t.evict(1, &mut freed), 3);
    assert_eq!(t.lock(h), Err(RadixError::StaleHandle));
    t.check_integrity().unwrap();
}

#[test]
fn split_keeps_handles_and_lock_counts() {
    let mut t = RadixTree::new(1);
    let (_, h) = t.insert_and_match(&[1, 2, 3, 4], &[1, 2, 3, 4]).unwrap();
    t.lock(h).unwrap();
    // Split the locked edge; the handle still names the lower part.
    let (_, upper) = t.match_prefix(&[1, 2], &mut Vec::new());
    assert_ne!(upper, h);
    assert_eq!(t.protected_size(), 4);
    t.check_integrity().unwrap();
    t.unlock(h).unwrap();
    assert_eq!((t.protected_size(), t.evictable_size()), (0, 4));
    assert_eq!(t.unlock(upper), Err(RadixError::NotLocked));
    t.check_integrity().unwrap();
}

#[test]
fn evicts_least_recently_used_first() {
    let mut t = RadixTree::new(1);
    t.insert(&[1, 1], &[10, 11]).unwrap();
    t.insert(&[2, 2], &[20, 21]).unwrap();
    t.insert(&[3, 3], &[30, 31]).unwrap();
    // Touch [1, 1] so that [2, 2] becomes the oldest.
    matched(&mut t, &[1, 1]);
    let mut freed = Vec::new();
    assert_eq!(t.evict(1, &mut freed), 2);
    assert_eq!(freed, vec![20, 21]);
    assert_eq!(t.evict(3, &mut freed), 4);
    assert_eq!(freed, vec![20, 21, 30, 31, 10, 11]);
    assert_eq!(t.stats().evicted_tokens, 6);
    t.check_integrity().unwrap();
}

#[test]
fn parent_becomes_candidate_after_its_children() {
    let mut t = RadixTree::new(1);
    t.insert(&[1, 2, 3], &[1, 2, 3]).unwrap();
    t.insert(&[1, 2, 4], &[1, 2, 4]).unwrap(); // splits: [1 2] -> {[3], [4]}
    t.insert(&[9], &[9]).unwrap(); // newest
    let mut freed = Vec::new();
    // [3] (touched by the second insert's walk, before the split created [4]) goes first,
    // then [4]; their parent [1 2] is then an unlocked leaf older than [9].
    t.evict(3, &mut freed);
    assert_eq!(freed, vec![3, 4, 1, 2]);
    t.evict(1, &mut freed);
    assert_eq!(freed, vec![3, 4, 1, 2, 9]);
    assert_eq!(t.node_count(), 1);
    t.check_integrity().unwrap();
}

#[test]
fn stale_and_foreign_handles_are_errors() {
    let mut t = RadixTree::new(1);
    let mut other = RadixTree::new(1);
    let (_, h) = t.insert_and_match(&[1], &[1]).unwrap();
    assert_eq!(other.lock(h), Err(RadixError::ForeignHandle));
    t.evict(1, &mut Vec::new());
    // The arena slot is reused with a new generation.
    let (_, h2) = t.insert_and_match(&[2], &[2]).unwrap();
    assert_eq!(h2.index, h.index);
    assert_eq!(t.lock(h), Err(RadixError::StaleHandle));
    assert_eq!(t.unlock(h), Err(RadixError::StaleHandle));
    t.lock(h2).unwrap();
    assert_eq!(
        t.reset(&mut Vec::new()),
        Err(RadixError::Locked {
            protected_tokens: 1
        })
    );
    t.unlock(h2).unwrap();
    let mut freed = Vec::new();
    t.reset(&mut freed).unwrap();
    assert_eq!(freed, vec![2]);
    assert_eq!(t.lock(h2), Err(RadixError::StaleHandle));
    // The root is always valid; locking it is a no-op.
    t.lock(t.root()).unwrap();
    t.unlock(t.root()).unwrap();
    assert_eq!(t.total_size(), 0);
    t.check_integrity().unwrap();
}

#[test]
fn zero_page_size_is_an_error() {
    assert_eq!(
        RadixTree::try_new(0).unwrap_err(),
        RadixError::InvalidPageSize
    );
}

#[test]
fn deep_chain_of_ten_thousand_branches() {
    const DEPTH: u32 = 10_000;
    let mut t = RadixTree::new(1);
    let base = seq(0..DEPTH);
    t.insert(&base, &base).unwrap();
    // Branch off at every depth, deepest first (so each insert walks one long edge): the
    // result is a chain of 10,000 one-token nodes, each with a one-token leaf beside it.
    for d in (0..DEPTH).rev() {
        let mut tokens = base[..d as usize].to_vec();
        tokens.push(DEPTH + d);
        let mut slots = base[..d as usize].to_vec();
        slots.push(2 * DEPTH - 1 - d);
        assert_eq!(t.insert(&tokens, &slots).unwrap(), d as usize);
    }
    assert_eq!(t.node_count(), 1 + 2 * DEPTH as usize);
    t.check_integrity().unwrap();
    let (n, slots, deepest) = matched(&mut t, &base);
    assert_eq!((n, slots), (DEPTH as usize, base.clone()));
    t.lock(deepest).unwrap();
    assert_eq!(t.protected_size(), DEPTH as usize);
    t.unlock(deepest).unwrap();
    let mut freed = Vec::new();
    assert_eq!(t.evict(usize::MAX, &mut freed), 2 * DEPTH as usize);
    assert_eq!(t.node_count(), 1);
    t.check_integrity().unwrap();
    drop(t);
}

#[test]
fn prompt_of_128k_tokens() {
    const LEN: u32 = 128 * 1024;
    let mut t = RadixTree::new(16);
    let tokens = seq(0..LEN);
    assert_eq!(t.insert(&tokens, &tokens).unwrap(), 0);
    let mut q = tokens.clone();
    q[LEN as usize / 2 + 3] = u32::MAX;
    let (n, slots, h) = matched(&mut t, &q);
    assert_eq!(n, LEN as usize / 2);
    assert_eq!(slots[..], tokens[..n]);
    t.lock(h).unwrap();
    let mut freed = Vec::new();
    assert_eq!(t.evict(1, &mut freed), LEN as usize / 2);
    t.unlock(h).unwrap();
    t.check_integrity().unwrap();
    assert!(t.memory_bytes() / t.total_size() <= 16);
}

#[test]
fn memory_per_token_is_small() {
    let mut t = RadixTree::new(1);
    // 200 requests of 1,000 tokens sharing a 500-token prefix.
    let mut slot = 0;
    for r in 0..200u32 {
        let mut tokens = seq(0..500);
        tokens.extend(seq(10_000 * (r + 1)..10_000 * (r + 1) + 500));
        let slots = seq(slot..slot + 1000);
        slot += 1000;
        t.insert(&tokens, &slots).unwrap();
    }
    let per_token = t.memory_bytes() as f64 / t.total_size() as f64;
    assert!(per_token <= 9.0, "{per_token} bytes per token");
}

#[test]
fn allocator_and_tree_account_for_every_slot() {
    const CAP: usize = 64;
    let mut a = SlotAllocator::new(CAP, 4);
    let mut t = RadixTree::new(4);
    let mut held: Vec<u32> = Vec::new(); // what "requests" hold beyond the tree
    let conserved = |a: &SlotAllocator, t: &RadixTree, held: &[u32]| {
        assert_eq!(a.available() + t.total_size() + held.len(), a.capacity());
    };
    for r in 0..20u32 {
        // A request: shared 8-token prefix + 8 own tokens + a 2-token unpageable tail.
        let mut tokens = vec![7; 8];
        tokens.extend((0..10).map(|i| r * 100 + i));
        let mut prefix = Vec::new();
        let (cached, node) = t.match_prefix(&tokens, &mut prefix);
        t.lock(node).unwrap();
        let need = (tokens.len() - cached).div_ceil(4) * 4;
        let mut own = Vec::new();
        if !a.alloc_into(need, &mut own) {
            let mut freed = Vec::new();
            t.evict(need - a.available(), &mut freed);
            a.free(&freed).unwrap();
            assert!(a.alloc_into(need, &mut own));
        }
        held.extend(&own);
        conserved(&a, &t, &held);
        // Finish: cache the pageable part, free the duplicates and the tail.
        let mut row = prefix.clone();
        row.extend(&own[..tokens.len() - cached]);
        let (already, _) = t.insert_and_match(&tokens, &row).unwrap();
        let adopted = (tokens.len() / 4 * 4).saturating_sub(already);
        let own_dups = already - cached;
        let mut to_free = own[..own_dups].to_vec();
        to_free.extend(&own[own_dups + adopted..]);
        a.free(&to_free).unwrap();
        held.clear();
        t.unlock(node).unwrap();
        conserved(&a, &t, &held);
        t.check_integrity().unwrap();
    }
    let mut freed = Vec::new();
    t.reset(&mut freed).unwrap();
    a.free(&freed).unwrap();
    assert_eq!(a.available(), CAP);
}

#[test]
fn one_edge_match_is_shared_and_survives_split_and_eviction() {
    let mut t = RadixTree::new(1);
    t.insert(&seq(0..100), &seq(1000..1100)).unwrap();
    let mut out = vec![7];
    // Ends inside the edge: the commit splits it after the slots were taken.
    let query: Vec<i64> = (0..60).chain([999]).collect();
    let (n, _, shared) = t.match_prefix_shared(&query, &mut out).unwrap();
    let shared = shared.expect("one edge matched");
    assert_eq!(
        (n, out.as_slice(), &*shared),
        (60, &[7][..], &seq(1000..1060)[..])
    );
    assert_eq!(t.node_count(), 3);
    t.check_integrity().unwrap();
    // Two edges: copied.
    let (n, _, two) = t.match_prefix_shared(&seq(0..80), &mut out).unwrap();
    assert!(two.is_none());
    assert_eq!((n, &out[1..]), (80, &seq(1000..1080)[..]));
    // Evicting everything leaves the shared slots readable and unchanged.
    let mut freed = Vec::new();
    t.evict(usize::MAX, &mut freed);
    assert_eq!(t.total_size(), 0);
    assert_eq!(&*shared, &seq(1000..1060)[..]);
    // Nothing matched: nothing shared.
    assert!(t
        .match_prefix_shared(&seq(0..5), &mut out)
        .unwrap()
        .2
        .is_none());
}

#[test]
fn wide_ids_are_validated_and_leave_the_tree_unchanged() {
    let mut t = RadixTree::new(1);
    t.insert(&[1, 2, 3], &[10, 11, 12]).unwrap();
    let mut out = Vec::new();
    let err = t.match_prefix_ids(&[1i64, 2, -1], &mut out).unwrap_err();
    assert_eq!(
        err,
        RadixError::IdOutOfRange {
            what: crate::IdKind::Token,
            position: 2,
            value: -1
        }
    );
    assert!(out.is_empty());
    assert_eq!((t.node_count(), t.stats().match_calls), (2, 0));
    let bad_token = t.insert_ids_checked(&[1i64, 5, 1 << 32], &[10i32, 20, 21], |_, _| {
        Ok::<_, RadixError>(())
    });
    assert!(matches!(
        bad_token,
        Err(RadixError::IdOutOfRange { position: 2, .. })
    ));
    let bad_slot = t.insert_ids_checked(&[1i64, 5, 6], &[10i32, 20, -21], |_, _| {
        Ok::<_, RadixError>(())
    });
    assert!(matches!(
        bad_slot,
        Err(RadixError::IdOutOfRange {
            what: crate::IdKind::Slot,
            position: 2,
            value: -21
        })
    ));
    // Slots of the cached prefix are not read (the caller keeps them).
    let (cached, _) = t
        .insert_ids_checked(&[1i64, 2, 7], &[-1i32, -1, 30], |_, new| {
            assert_eq!(new, &[30]);
            Ok::<_, RadixError>(())
        })
        .unwrap();
    assert_eq!(cached, 2);
    assert_eq!(matched(&mut t, &[1, 2, 7]).1, vec![10, 11, 30]);
    t.check_integrity().unwrap();
}

/// Whether the edge into the node `h` names stores its tokens as `u16`.
fn narrow(t: &RadixTree, h: NodeHandle) -> bool {
    t.nodes[h.index as usize].is_narrow()
}

#[test]
fn edges_narrow_when_their_tokens_fit_u16() {
    let mut t = RadixTree::new(1);
    let doc = seq(65_000..65_536);
    let (_, a) = t.insert_and_match(&doc, &seq(0..536)).unwrap();
    assert!(narrow(&t, a));
    // Continued by tokens crossing 65,535: a wide child under the narrow edge.
    let mut longer = doc.clone();
    longer.extend([65_536, 70_000, 7]);
    let (cached, b) = t.insert_and_match(&longer, &seq(1000..1539)).unwrap();
    assert_eq!(cached, 536);
    assert!(!narrow(&t, b));
    // Queries of every id type compare with both widths.
    let mut q64: Vec<i64> = longer.iter().map(|&x| i64::from(x)).collect();
    let want: Vec<u32> = seq(0..536).into_iter().chain(seq(1536..1539)).collect();
    let mut out = Vec::new();
    assert_eq!(t.match_prefix_ids(&q64, &mut out).unwrap().0, 539);
    assert_eq!(out, want);
    // Low bits equal to the tree's token, high bits not.
    q64[538] = 7 + (1 << 32);
    out.clear();
    assert_eq!(t.match_prefix_ids(&q64[..538], &mut out).unwrap().0, 538);
    let err = t.match_prefix_ids(&q64, &mut out).unwrap_err();
    assert!(matches!(
        err,
        RadixError::IdOutOfRange { position: 538, .. }
    ));
    // A split of the wide edge after its large tokens leaves a narrow lower part.
    let (n, _, c) = matched(&mut t, &longer[..538]);
    assert_eq!(n, 538);
    assert!(!narrow(&t, c) && narrow(&t, b));
    // A split of the narrow edge: both parts narrow.
    let (n, _, d) = matched(&mut t, &doc[..100]);
    assert_eq!(n, 100);
    assert!(narrow(&t, d) && narrow(&t, a));
    assert_eq!(matched(&mut t, &longer).1, want);
    let mut freed = Vec::new();
    t.evict(3, &mut freed);
    assert_eq!(freed, [1538, 1536, 1537]);
    t.check_integrity().unwrap();
    t.reset(&mut freed).unwrap();
    assert_eq!(t.total_size(), 0);
    t.check_integrity().unwrap();
}

#[test]
fn wide_edge_split_into_two_narrow_parts() {
    let mut t = RadixTree::new(2);
    let (_, wide) = t
        .insert_and_match(&[1, 2, 80_000, 4, 5, 6], &seq(10..16))
        .unwrap();
    assert!(!narrow(&t, wide));
    // Page-aligned split before and after the large token.
    let (n, _, upper) = matched(&mut t, &[1, 2, 9, 9]);
    assert_eq!(n, 2);
    assert!(narrow(&t, upper) && !narrow(&t, wide));
    let (n, _, mid) = matched(&mut t, &[1, 2, 80_000, 4, 9, 9]);
    assert_eq!(n, 4);
    assert!(!narrow(&t, mid) && narrow(&t, wide));
    assert_eq!(matched(&mut t, &[1, 2, 80_000, 4, 5, 6]).1, seq(10..16));
}

#[test]
fn memory_bytes_counts_two_bytes_per_narrow_token() {
    let tree_with = |tokens: &[u32]| {
        let mut t = RadixTree::new(1);
        t.insert(tokens, &seq(0..tokens.len() as u32)).unwrap();
        t.memory_bytes()
    };
    let small = seq(0..1000);
    let mut large = small.clone();
    large[0] = 65_536;
    // Same shape: the edge data alone differs, 2 bytes per token.
    assert_eq!(tree_with(&large) - tree_with(&small), 2 * 1000);
    let mut t = RadixTree::new(1);
    t.insert(&small, &seq(0..1000)).unwrap();
    // 6 bytes per token, plus the arena, the children list and the LRU set.
    assert!(t.memory_bytes() <= 6 * 1000 + 600, "{}", t.memory_bytes());
}

/// `u16` ids read in place: an insert writes a narrow edge as the ids come, and long matches
/// against narrow and wide edges give what the same ids as `u32` give.
#[test]
fn u16_ids_insert_narrow_edges_and_match_like_u32_ids() {
    let mut t = RadixTree::new(2);
    let doc: Vec<u16> = (0..5_000u32).map(|x| (x * 7_919 % 65_536) as u16).collect();
    let doc32: Vec<u32> = doc.iter().map(|&x| u32::from(x)).collect();
    let accept = |_: usize, _: &[u32]| Ok::<_, RadixError>(());
    let (cached, a) = t.insert_ids_checked(&doc, &seq(0..5_000), accept).unwrap();
    assert_eq!(cached, 0);
    assert!(narrow(&t, a));
    // A wide edge below it: u16 queries compare with it widened.
    let mut longer = doc32.clone();
    longer.extend([70_000, 1, 2, 3]);
    let (_, b) = t.insert_and_match(&longer, &seq(0..5_004)).unwrap();
    assert!(!narrow(&t, b));
    for cut in [0, 1, 31, 32, 287, 288, 2_501, 4_998, 4_999] {
        let mut q = doc.clone();
        q[cut] ^= 1 << 15;
        let q32: Vec<u32> = q.iter().map(|&x| u32::from(x)).collect();
        let (mut o16, mut o32) = (Vec::new(), Vec::new());
        let (n16, h16) = t.match_prefix_ids(&q, &mut o16).unwrap();
        let (n32, h32) = t.match_prefix(&q32, &mut o32);
        assert_eq!((n16, &o16, h16), (n32, &o32, h32));
        assert_eq!(n16, cut / 2 * 2, "{cut}");
    }
    // Up to the wide edge's large token, which no u16 equals.
    let mut q = doc.clone();
    q.extend([70_000u32 as u16, 1]);
    let mut out = Vec::new();
    assert_eq!(t.match_prefix_ids(&q, &mut out).unwrap().0, 5_000);
    assert_eq!(out, seq(0..5_000));
    let (cached, _) = t
        .insert_ids_checked(&q, &seq(9_000..14_002), accept)
        .unwrap();
    assert_eq!(cached, 5_000);
    assert_eq!(t.total_size(), 5_006);
    t.check_integrity().unwrap();
}

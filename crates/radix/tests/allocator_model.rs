//! Property test of `SlotAllocator` against a reference model: a sorted set of free pages,
//! allocation takes the lowest ones.

use std::collections::BTreeSet;

use proptest::prelude::*;
use sglrs_radix::SlotAllocator;

#[derive(Debug, Clone)]
enum Op {
    /// Allocate this many pages.
    Alloc(usize),
    /// Free the held block at this index (modulo the number held).
    Free(usize),
    /// Free one page of a held block (modulo both).
    FreeOne(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..150).prop_map(Op::Alloc),
        any::<usize>().prop_map(Op::Free),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::FreeOne(a, b)),
    ]
}

fn run(pages: usize, page: usize, ops: Vec<Op>) {
    let mut a = SlotAllocator::new(pages * page, page);
    let mut free: BTreeSet<usize> = (0..pages).collect();
    // Blocks of slots handed out and not yet returned.
    let mut held: Vec<Vec<u32>> = Vec::new();
    for op in ops {
        match op {
            Op::Alloc(k) => {
                let mut out = vec![7];
                let ok = a.alloc_into(k * page, &mut out);
                assert_eq!(ok, k <= free.len());
                if !ok {
                    assert_eq!(out, vec![7]);
                    continue;
                }
                let want: Vec<usize> = free.iter().copied().take(k).collect();
                for p in &want {
                    free.remove(p);
                }
                let expect: Vec<u32> = want
                    .iter()
                    .flat_map(|&p| (p * page) as u32..((p + 1) * page) as u32)
                    .collect();
                assert_eq!(&out[1..], &expect[..]);
                held.push(out.split_off(1));
            }
            Op::Free(i) if !held.is_empty() => {
                let block = held.swap_remove(i % held.len());
                a.free(&block).unwrap();
                free.extend(block.iter().step_by(page).map(|&s| s as usize / page));
                // A second free of the same block is refused and changes nothing.
                if !block.is_empty() {
                    assert!(a.free(&block).is_err());
                }
            }
            Op::FreeOne(i, j) if !held.is_empty() => {
                let i = i % held.len();
                let n = held[i].len() / page;
                if n == 0 {
                    continue;
                }
                let at = j % n * page;
                let one: Vec<u32> = held[i].drain(at..at + page).collect();
                a.free(&one).unwrap();
                free.insert(one[0] as usize / page);
            }
            _ => {}
        }
        assert_eq!(a.available(), free.len() * page);
        for p in 0..pages {
            assert_eq!(a.is_free((p * page) as u32), free.contains(&p), "page {p}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_reference_page_1(ops in prop::collection::vec(op(), 1..60)) {
        run(300, 1, ops);
    }

    #[test]
    fn matches_reference_page_3(ops in prop::collection::vec(op(), 1..60)) {
        run(200, 3, ops);
    }

    #[test]
    fn matches_reference_page_4(ops in prop::collection::vec(op(), 1..60)) {
        run(130, 4, ops);
    }
}

//! Property tests of the matcher against the `regex` crate (anchored full match) as oracle.

use proptest::prelude::*;
use regex::bytes::Regex;
use sglrs_grammar::{Grammar, Matcher, Vocabulary};
use std::sync::Arc;

/// Single bytes 0..=255 (ids 0..256), then multi-byte tokens, a special token and EOS.
const MULTI: &[&[u8]] = &[
    b"ab",
    b"bc",
    b"abc",
    b"a.",
    b".b",
    b"@a",
    b".org",
    b"com",
    b"xx",
    b"aa",
    b"\xC3",
    b"\xA9a",
    "é".as_bytes(),
    "éb".as_bytes(),
    b"b@",
    b"ba",
];

const PATTERNS: &[&str] = &[
    r"[a-z]+(\.[a-z]+)*",
    r"[a-z0-9._]+@[a-z0-9]+\.(com|org)",
    r"(ab|a)(c|bc)*",
    r"a{2,4}b?",
    r"(a|b)*abb",
    r"é+[ab]?",
    r"x?(ab|ba){1,3}",
    r"[^@]{0,5}@",
    r"",
];

struct Setup {
    vocab: Arc<Vocabulary>,
    tokens: Vec<Vec<u8>>,
    eos: u32,
    special: u32,
}

fn setup() -> Setup {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.extend(MULTI.iter().map(|t| t.to_vec()));
    let mut table: Vec<Option<Vec<u8>>> = tokens.iter().cloned().map(Some).collect();
    let special = table.len() as u32;
    table.push(None);
    let eos = table.len() as u32;
    table.push(None);
    // Padding ids past the tokenizer, as in models whose embedding is rounded up.
    let vocab = Vocabulary::from_token_bytes(&table, &[eos], Some(table.len() + 7)).unwrap();
    Setup {
        vocab: Arc::new(vocab),
        tokens,
        eos,
        special,
    }
}

fn grammars(s: &Setup) -> Vec<(Arc<Grammar>, Regex)> {
    PATTERNS
        .iter()
        .map(|p| {
            let g = Arc::new(Grammar::from_regex(p, s.vocab.clone()).unwrap());
            (g, Regex::new(&format!("^(?:{p})$")).unwrap())
        })
        .collect()
}

fn bit(row: &[i32], id: u32) -> bool {
    row[(id >> 5) as usize] & (1 << (id & 31)) != 0
}

/// Split `bytes` into tokens, choosing among the tokens that fit at each position.
fn tokenize(s: &Setup, bytes: &[u8], choices: &[usize]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < bytes.len() {
        let fits: Vec<u32> = (0..s.tokens.len() as u32)
            .filter(|&t| bytes[i..].starts_with(&s.tokens[t as usize]))
            .collect();
        let t = fits[choices.get(k).copied().unwrap_or(0) % fits.len()];
        k += 1;
        out.push(t);
        i += s.tokens[t as usize].len();
    }
    out
}

fn case_strategy() -> impl Strategy<Value = (usize, Vec<u8>, Vec<usize>)> {
    let from_regex = (0..PATTERNS.len()).prop_flat_map(|i| {
        let gen = proptest::string::string_regex(PATTERNS[i]).unwrap();
        (Just(i), gen.prop_map(String::into_bytes))
    });
    let alphabet = prop::sample::select(b"abcx.@o\xC3\xA9".to_vec());
    let random = (0..PATTERNS.len(), prop::collection::vec(alphabet, 0..12));
    (
        prop_oneof![from_regex, random],
        prop::collection::vec(any::<usize>(), 0..16),
    )
        .prop_map(|((i, b), c)| (i, b, c))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A token sequence is accepted (then EOS) iff its bytes match; the mask agrees with
    /// `accept_token` on every id at every step; EOS is allowed exactly in accepting states.
    #[test]
    fn accepts_exactly_the_language((pattern, bytes, choices) in case_strategy()) {
        let s = setup();
        let (grammar, oracle) = grammars(&s).swap_remove(pattern);
        let ids = tokenize(&s, &bytes, &choices);
        let mut m = Matcher::new(grammar.clone());
        let mut row = vec![0i32; s.vocab.mask_words()];
        let mut accepted = 0;
        for &id in &ids {
            m.fill_next_token_bitmask(&mut row).unwrap();
            for probe in 0..s.vocab.vocab_size() as u32 {
                let ok = m.accept_token(probe).unwrap();
                prop_assert_eq!(ok, bit(&row, probe), "id {}", probe);
                if ok {
                    m.rollback(1).unwrap();
                }
            }
            prop_assert!(!bit(&row, s.special));
            if !m.accept_token(id).unwrap() {
                break;
            }
            accepted += 1;
        }
        let all = accepted == ids.len();
        let done = all && m.can_end().unwrap();
        prop_assert_eq!(done, oracle.is_match(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
        m.fill_next_token_bitmask(&mut row).unwrap();
        let can_end = m.can_end().unwrap();
        prop_assert_eq!(bit(&row, s.eos), can_end);
        prop_assert_eq!(m.accept_token(s.eos).unwrap(), can_end);
    }

    /// Rolling back n tokens gives the same mask and flags as replaying the shorter prefix.
    #[test]
    fn rollback_restores_state((pattern, bytes, choices) in case_strategy(), back in 0usize..8) {
        let s = setup();
        let (grammar, _) = grammars(&s).swap_remove(pattern);
        let ids = tokenize(&s, &bytes, &choices);
        let mut m = Matcher::new(grammar.clone());
        let mut taken = Vec::new();
        for &id in &ids {
            if !m.accept_token(id).unwrap() {
                break;
            }
            taken.push(id);
        }
        if m.can_end().unwrap() {
            prop_assert!(m.accept_token(s.eos).unwrap());
            taken.push(s.eos);
        }
        let back = back.min(taken.len());
        m.rollback(back).unwrap();
        let mut replay = Matcher::new(grammar);
        for &id in &taken[..taken.len() - back] {
            prop_assert!(replay.accept_token(id).unwrap());
        }
        let (mut a, mut b) = (vec![0i32; s.vocab.mask_words()], vec![0i32; s.vocab.mask_words()]);
        m.fill_next_token_bitmask(&mut a).unwrap();
        replay.fill_next_token_bitmask(&mut b).unwrap();
        prop_assert_eq!(a, b);
        prop_assert_eq!(m.can_end().unwrap(), replay.can_end().unwrap());
        prop_assert_eq!(m.is_terminated().unwrap(), replay.is_terminated().unwrap());
        prop_assert_eq!(m.forced_continuation().unwrap(), replay.forced_continuation().unwrap());
    }
}

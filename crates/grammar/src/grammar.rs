//! A compiled grammar: a lazily determinized byte DFA plus a per-state cache of token masks.

use crate::error::{GrammarError, Result};
use crate::json::{self, JsonOptions};
use crate::nfa;
use crate::vocab::Vocabulary;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::CacheError;
use regex_automata::hybrid::LazyStateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// Memory budget of a grammar's lazy DFA; beyond it operations fail with `TooLarge` (the cache
/// is never cleared, because cleared state ids would invalidate every live matcher).
const DFA_CACHE_BYTES: usize = 512 << 20;
/// Budget of the Thompson NFA (e.g. large bounded repetitions).
const NFA_BYTES: usize = 64 << 20;

/// Where a grammar came from; part of its cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GrammarKind {
    Regex,
    JsonSchema,
    JsonObject,
}

/// Everything a matcher needs about one DFA state, computed once.
#[derive(Debug)]
pub struct StateInfo {
    /// Bit `i` of word `w` set iff token `32 w + i` is allowed (EOS bits iff `can_end`).
    pub mask: Box<[i32]>,
    /// The bytes read so far form a complete match (the EOI transition matches).
    pub can_end: bool,
    /// Some text token is allowed.
    pub has_text_token: bool,
}

/// Multiplicative hashing of lazy state ids (already well spread integers).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<LazyStateID, V, BuildHasherDefault<IdHasher>>;

struct Lazy {
    cache: Cache,
    states: IdMap<Arc<StateInfo>>,
    /// Liveness of match-tagged states whose own position is not a match (see [`step`]).
    live: IdMap<bool>,
    /// Scratch DFA states of the trie walk, one per depth.
    walk_states: Vec<LazyStateID>,
}

/// An immutable, shareable grammar (`Send + Sync`); matchers hold it through an `Arc`.
pub struct Grammar {
    vocab: Arc<Vocabulary>,
    kind: GrammarKind,
    source: String,
    regex: String,
    dfa: DFA,
    start: LazyStateID,
    lazy: Mutex<Lazy>,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar")
            .field("kind", &self.kind)
            .field("regex", &self.regex)
            .finish()
    }
}

fn too_large(e: impl std::fmt::Display) -> GrammarError {
    GrammarError::TooLarge(format!(
        "the lazy DFA ran out of its {DFA_CACHE_BYTES} byte budget ({e})"
    ))
}

impl Grammar {
    /// Compile an anchored regex (full match: the output must match it entirely).
    pub fn from_regex(pattern: &str, vocab: Arc<Vocabulary>) -> Result<Grammar> {
        Grammar::build(
            GrammarKind::Regex,
            pattern.to_string(),
            pattern.to_string(),
            vocab,
        )
    }

    /// Compile a JSON schema (see [`crate::json`] for what is supported).
    pub fn from_json_schema(
        schema: &str,
        options: &JsonOptions,
        vocab: Arc<Vocabulary>,
    ) -> Result<Grammar> {
        let value: serde_json::Value = serde_json::from_str(schema)
            .map_err(|e| GrammarError::Schema(format!("not valid JSON: {e}")))?;
        let regex = json::schema_to_regex(&value, options)?;
        Grammar::build(GrammarKind::JsonSchema, schema.to_string(), regex, vocab)
    }

    /// Any JSON value, nested at most `options.max_depth` containers deep.
    pub fn json_object(options: &JsonOptions, vocab: Arc<Vocabulary>) -> Result<Grammar> {
        let regex = json::any_value_regex(options);
        Grammar::build(GrammarKind::JsonObject, String::new(), regex, vocab)
    }

    fn build(
        kind: GrammarKind,
        source: String,
        regex: String,
        vocab: Arc<Vocabulary>,
    ) -> Result<Grammar> {
        let config = DFA::config()
            .match_kind(MatchKind::All)
            .cache_capacity(DFA_CACHE_BYTES)
            .minimum_cache_clear_count(Some(0))
            .unicode_word_boundary(true);
        let bad = |e: String| match kind {
            GrammarKind::Regex => GrammarError::Regex(e),
            _ => GrammarError::Schema(format!("generated regex does not compile: {e}")),
        };
        // Generated regexes spell UTF-8 out byte by byte (much faster to compile than repeated
        // Unicode classes), which the UTF-8 validity check would refuse.
        let hir = syntax::parse_with(&regex, &syntax::Config::new().utf8(false))
            .map_err(|e| bad(format!("{e}")))?;
        let nfa = nfa::compile(&hir, NFA_BYTES).map_err(bad)?;
        let dfa = DFA::builder()
            .configure(config)
            .build_from_nfa(nfa)
            .map_err(|e| bad(format!("{e}")))?;
        let mut cache = dfa.create_cache();
        let start = dfa
            .start_state(&mut cache, &start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| GrammarError::Regex(format!("no anchored start state: {e}")))?;
        let lazy = Lazy {
            cache,
            states: IdMap::default(),
            live: IdMap::default(),
            walk_states: Vec::new(),
        };
        Ok(Grammar {
            vocab,
            kind,
            source,
            regex,
            dfa,
            start,
            lazy: Mutex::new(lazy),
        })
    }

    pub fn vocab(&self) -> &Arc<Vocabulary> {
        &self.vocab
    }

    pub fn kind(&self) -> &GrammarKind {
        &self.kind
    }

    /// The schema text (JSON schema), the pattern (regex) or empty (`json_object`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The regex the DFA was built from.
    pub fn regex(&self) -> &str {
        &self.regex
    }

    pub(crate) fn start(&self) -> LazyStateID {
        self.start
    }

    /// Number of DFA states whose mask has been computed so far.
    pub fn num_cached_states(&self) -> usize {
        self.lock().states.len()
    }

    fn lock(&self) -> MutexGuard<'_, Lazy> {
        // A panic while holding the lock cannot leave the cache inconsistent for readers that
        // only look states up, so poisoning is ignored.
        self.lazy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mask and flags of `state`, computed on first use by walking the token trie.
    pub(crate) fn state_info(&self, state: LazyStateID) -> Result<Arc<StateInfo>> {
        let mut lazy = self.lock();
        if let Some(info) = lazy.states.get(&state) {
            return Ok(info.clone());
        }
        let info = Arc::new(self.compute_state(&mut lazy, state)?);
        lazy.states.insert(state, info.clone());
        Ok(info)
    }

    fn compute_state(&self, lazy: &mut Lazy, state: LazyStateID) -> Result<StateInfo> {
        let Lazy {
            cache,
            walk_states,
            live,
            ..
        } = lazy;
        let mut mask = vec![0i32; self.vocab.mask_words()].into_boxed_slice();
        let mut error = None;
        let mut has_text_token = false;
        let dfa = &self.dfa;
        self.vocab.trie().walk(
            state,
            walk_states,
            |s, b| match step(dfa, cache, live, s, b) {
                Ok(n) => n,
                Err(e) => {
                    error.get_or_insert(e);
                    None
                }
            },
            |ids| {
                has_text_token = true;
                for &id in ids {
                    mask[(id >> 5) as usize] |= 1 << (id & 31);
                }
            },
        );
        if let Some(e) = error {
            return Err(too_large(e));
        }
        let can_end = dfa
            .next_eoi_state(cache, state)
            .map_err(too_large)?
            .is_match();
        if can_end {
            for &id in self.vocab.eos_token_ids() {
                mask[(id >> 5) as usize] |= 1 << (id & 31);
            }
        }
        Ok(StateInfo {
            mask,
            can_end,
            has_text_token,
        })
    }

    /// The state after reading `bytes` from `state`, or `None` if the DFA dies on them.
    pub(crate) fn advance(&self, state: LazyStateID, bytes: &[u8]) -> Result<Option<LazyStateID>> {
        let mut lazy = self.lock();
        let Lazy { cache, live, .. } = &mut *lazy;
        let mut s = state;
        for &b in bytes {
            match step(&self.dfa, cache, live, s, b).map_err(too_large)? {
                Some(n) => s = n,
                None => return Ok(None),
            }
        }
        Ok(Some(s))
    }

    /// The bytes every continuation from `state` starts with, stopping where the grammar may
    /// end or branch (at most `limit` bytes).
    pub(crate) fn forced_bytes(&self, state: LazyStateID, limit: usize) -> Result<Vec<u8>> {
        let mut lazy = self.lock();
        let Lazy { cache, live, .. } = &mut *lazy;
        let mut out = Vec::new();
        let mut s = state;
        while out.len() < limit {
            if self
                .dfa
                .next_eoi_state(cache, s)
                .map_err(too_large)?
                .is_match()
            {
                break;
            }
            let mut only = None;
            let mut count = 0;
            for b in 0..=255u8 {
                if let Some(n) = step(&self.dfa, cache, live, s, b).map_err(too_large)? {
                    count += 1;
                    only = Some((b, n));
                }
            }
            let (1, Some((b, n))) = (count, only) else {
                break;
            };
            out.push(b);
            s = n;
        }
        Ok(out)
    }
}

/// One byte of input: the next state, or `None` when no complete output can follow.
///
/// Besides the dead state, the lazy DFA has states that are dead in disguise: it reports
/// matches one byte late, so one byte past a complete match it enters a state tagged "match"
/// (for the previous position) even when nothing can continue. A match-tagged state is live
/// iff its own position is a match (its EOI transition matches) or some byte leads on.
#[inline]
fn step(
    dfa: &DFA,
    cache: &mut Cache,
    live: &mut IdMap<bool>,
    s: LazyStateID,
    b: u8,
) -> std::result::Result<Option<LazyStateID>, CacheError> {
    let n = dfa.next_state(cache, s, b)?;
    if !n.is_tagged() {
        return Ok(Some(n));
    }
    if n.is_dead() || n.is_quit() {
        return Ok(None);
    }
    if !n.is_match() || dfa.next_eoi_state(cache, n)?.is_match() {
        return Ok(Some(n));
    }
    if let Some(&is_live) = live.get(&n) {
        return Ok(is_live.then_some(n));
    }
    let mut is_live = false;
    for b in 0..=255u8 {
        let next = dfa.next_state(cache, n, b)?;
        if !next.is_dead() && !next.is_quit() {
            is_live = true;
            break;
        }
    }
    live.insert(n, is_live);
    Ok(is_live.then_some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascii_vocab() -> Arc<Vocabulary> {
        // ids 0..128: single ASCII bytes; 128: "ab"; 129: EOS.
        let mut toks: Vec<Option<Vec<u8>>> = (0..128u8).map(|b| Some(vec![b])).collect();
        toks.push(Some(b"ab".to_vec()));
        toks.push(None);
        Arc::new(Vocabulary::from_token_bytes(&toks, &[129], None).unwrap())
    }

    #[test]
    fn grammar_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Grammar>();
    }

    #[test]
    fn forced_bytes_stop_at_branches_and_ends() {
        let g = Grammar::from_regex(r#"\{"name":(true|false)\}x?"#, ascii_vocab()).unwrap();
        assert_eq!(g.forced_bytes(g.start(), 100).unwrap(), br#"{"name":"#);
        let s = g.advance(g.start(), br#"{"name":t"#).unwrap().unwrap();
        assert_eq!(g.forced_bytes(s, 100).unwrap(), b"rue}");
        assert_eq!(g.forced_bytes(s, 2).unwrap(), b"ru");
    }

    #[test]
    fn invalid_regex_is_an_error() {
        let err = Grammar::from_regex("a(", ascii_vocab()).unwrap_err();
        assert!(matches!(err, GrammarError::Regex(_)), "{err}");
    }
}

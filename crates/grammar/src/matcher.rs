//! Per-request matching state: a DFA state, a rollback history and the EOS flag.

use crate::error::{GrammarError, Result};
use crate::grammar::{Grammar, StateInfo};
use regex_automata::hybrid::LazyStateID;
use std::sync::Arc;

/// Upper bound of [`Matcher::forced_continuation`], so a long forced literal is handed out in
/// pieces rather than all at once.
const MAX_FORCED_BYTES: usize = 4096;

/// One request's position in a grammar. Cheap to create; `Send`, so matchers of one shared
/// grammar can run on different threads.
#[derive(Debug)]
pub struct Matcher {
    grammar: Arc<Grammar>,
    state: LazyStateID,
    terminated: bool,
    /// `(state, terminated)` before each accepted token, for rollback.
    history: Vec<(LazyStateID, bool)>,
    /// Info of `state`, fetched on first need.
    info: Option<Arc<StateInfo>>,
}

impl Matcher {
    pub fn new(grammar: Arc<Grammar>) -> Matcher {
        let state = grammar.start();
        Matcher {
            grammar,
            state,
            terminated: false,
            history: Vec::new(),
            info: None,
        }
    }

    pub fn grammar(&self) -> &Arc<Grammar> {
        &self.grammar
    }

    fn info(&mut self) -> Result<&Arc<StateInfo>> {
        if self.info.is_none() {
            self.info = Some(self.grammar.state_info(self.state)?);
        }
        Ok(self.info.as_ref().expect("just set"))
    }

    /// Write the allowed tokens into `row` (`ceil(vocab_size / 32)` words or more; extra words
    /// are zeroed). After EOS was accepted only the EOS ids are set.
    pub fn fill_next_token_bitmask(&mut self, row: &mut [i32]) -> Result<()> {
        let words = self.grammar.vocab().mask_words();
        if row.len() < words {
            return Err(GrammarError::Tokenizer(format!(
                "bitmask row has {} words, the vocabulary needs {words}",
                row.len()
            )));
        }
        let (head, tail) = row.split_at_mut(words);
        tail.fill(0);
        if self.terminated {
            head.fill(0);
            for &id in self.grammar.vocab().eos_token_ids() {
                head[(id >> 5) as usize] |= 1 << (id & 31);
            }
            return Ok(());
        }
        head.copy_from_slice(&self.info()?.mask);
        Ok(())
    }

    /// Advance by one token; `false` (state unchanged) when the grammar does not allow it.
    pub fn accept_token(&mut self, id: u32) -> Result<bool> {
        if self.terminated {
            return Ok(false);
        }
        if self.grammar.vocab().is_eos(id) {
            if !self.can_end()? {
                return Ok(false);
            }
            self.history.push((self.state, false));
            self.terminated = true;
            return Ok(true);
        }
        let bytes = self.grammar.vocab().token_bytes(id);
        if bytes.is_empty() {
            return Ok(false);
        }
        match self.grammar.advance(self.state, bytes)? {
            None => Ok(false),
            Some(next) => {
                self.history.push((self.state, false));
                if next != self.state {
                    self.info = None;
                }
                self.state = next;
                Ok(true)
            }
        }
    }

    /// Whether the output so far is a complete match (EOS would be accepted).
    pub fn can_end(&mut self) -> Result<bool> {
        Ok(!self.terminated && self.info()?.can_end)
    }

    /// EOS was accepted, or the output is complete and no text token can extend it.
    pub fn is_terminated(&mut self) -> Result<bool> {
        if self.terminated {
            return Ok(true);
        }
        let info = self.info()?;
        Ok(info.can_end && !info.has_text_token)
    }

    /// Undo the last `n` accepted tokens (EOS included).
    pub fn rollback(&mut self, n: usize) -> Result<()> {
        if n > self.history.len() {
            return Err(GrammarError::Tokenizer(format!(
                "cannot roll back {n} tokens, only {} were accepted",
                self.history.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let keep = self.history.len() - n;
        let (state, terminated) = self.history[keep];
        self.history.truncate(keep);
        self.state = state;
        self.terminated = terminated;
        self.info = None;
        Ok(())
    }

    /// Number of tokens that can be rolled back.
    pub fn num_accepted(&self) -> usize {
        self.history.len()
    }

    /// Back to the start of the grammar.
    pub fn reset(&mut self) {
        self.state = self.grammar.start();
        self.terminated = false;
        self.history.clear();
        self.info = None;
    }

    /// The bytes the grammar forces next (empty where it may end or branch), for jump-forward
    /// decoding. The state does not change; feed the retokenized bytes through `accept_token`.
    pub fn forced_continuation(&self) -> Result<Vec<u8>> {
        if self.terminated {
            return Ok(Vec::new());
        }
        self.grammar.forced_bytes(self.state, MAX_FORCED_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Vocabulary;

    /// Ids 0..256: one byte each; then multi-byte tokens; then `<s>` (special) and EOS.
    fn vocab(extra: &[&[u8]]) -> (Arc<Vocabulary>, u32, u32) {
        let mut toks: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        toks.extend(extra.iter().map(|t| Some(t.to_vec())));
        let special = toks.len() as u32;
        toks.push(None);
        let eos = toks.len() as u32;
        toks.push(None);
        (
            Arc::new(Vocabulary::from_token_bytes(&toks, &[eos], None).unwrap()),
            special,
            eos,
        )
    }

    fn accepts(m: &mut Matcher, ids: &[u32]) -> bool {
        ids.iter().all(|&id| m.accept_token(id).unwrap())
    }

    fn bytes(s: &[u8]) -> Vec<u32> {
        s.iter().map(|&b| b as u32).collect()
    }

    #[test]
    fn delayed_matches_are_accepted() {
        let (v, _, eos) = vocab(&[]);
        let g = Arc::new(Grammar::from_regex(r"[a-z]+(\.[a-z]+)*", v.clone()).unwrap());
        let mut m = Matcher::new(g);
        assert!(accepts(&mut m, &bytes(b"a.b")));
        assert!(m.can_end().unwrap());
        assert!(m.accept_token(eos).unwrap() && m.is_terminated().unwrap());
        let email = r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}";
        let mut m = Matcher::new(Arc::new(Grammar::from_regex(email, v).unwrap()));
        assert!(accepts(&mut m, &bytes(b"x.y@a.org")));
        assert!(m.can_end().unwrap());
        let mut row = vec![0i32; 9];
        m.fill_next_token_bitmask(&mut row).unwrap();
        assert!(row[(eos >> 5) as usize] & (1 << (eos & 31)) != 0);
    }

    #[test]
    fn tokens_may_split_utf8_chars() {
        let e = "é".as_bytes();
        let (v, _, eos) = vocab(&[b"a\xC3", b"\xA9b"]);
        let g = Arc::new(Grammar::from_regex("aé+b", v).unwrap());
        let mut m = Matcher::new(g);
        assert!(m.accept_token(256).unwrap()); // "a\xC3"
        assert!(!m.accept_token(b'b' as u32).unwrap());
        assert!(m.accept_token(e[1] as u32).unwrap());
        assert!(m.accept_token(e[0] as u32).unwrap());
        assert!(m.accept_token(257).unwrap()); // "\xA9b"
        assert!(m.accept_token(eos).unwrap());
    }

    #[test]
    fn special_tokens_and_eos_only_where_allowed() {
        let (v, special, eos) = vocab(&[]);
        let g = Arc::new(Grammar::from_regex("ab?", v.clone()).unwrap());
        let mut m = Matcher::new(g);
        let mut row = vec![0i32; v.mask_words()];
        m.fill_next_token_bitmask(&mut row).unwrap();
        let bit = |row: &[i32], id: u32| row[(id >> 5) as usize] & (1 << (id & 31)) != 0;
        assert!(!bit(&row, special) && !bit(&row, eos) && bit(&row, b'a' as u32));
        assert!(!m.accept_token(eos).unwrap() && !m.accept_token(special).unwrap());
        assert!(m.accept_token(b'a' as u32).unwrap());
        m.fill_next_token_bitmask(&mut row).unwrap();
        assert!(!bit(&row, special) && bit(&row, eos) && bit(&row, b'b' as u32));
        assert!(!m.is_terminated().unwrap());
        assert!(m.accept_token(b'b' as u32).unwrap());
        assert!(m.is_terminated().unwrap(), "nothing but EOS can follow");
        assert!(m.accept_token(eos).unwrap());
        assert!(!m.accept_token(b'b' as u32).unwrap());
        m.rollback(2).unwrap();
        assert!(!m.is_terminated().unwrap() && m.can_end().unwrap());
        assert!(m.rollback(2).is_err());
    }

    #[test]
    fn sentencepiece_byte_fallback_tokens() {
        let json = r#"{
            "added_tokens": [{"id": 0, "content": "</s>", "special": true}],
            "model": {"type": "BPE", "byte_fallback": true, "vocab": {
                "</s>": 0, "<0xC3>": 1, "<0xA9>": 2, "▁caf": 3, "é": 4, "▁": 5}}
        }"#;
        let v = Arc::new(Vocabulary::from_tokenizer_json(json, &[0], None).unwrap());
        let g = Arc::new(Grammar::from_regex(" café( café)*", v).unwrap());
        let mut m = Matcher::new(g.clone());
        assert!(accepts(&mut m, &[3, 1, 2, 5]));
        assert!(!m.can_end().unwrap());
        assert!(!m.accept_token(4).unwrap(), "no ' é' after a space");
        let mut m = Matcher::new(g);
        assert!(accepts(&mut m, &[3, 4, 3, 1, 2, 0]));
        assert!(m.is_terminated().unwrap());
    }

    #[test]
    fn forced_continuation_does_not_move() {
        let (v, _, _) = vocab(&[]);
        let g = Arc::new(Grammar::from_regex(r#"\{"id":[0-9]+\}"#, v).unwrap());
        let mut m = Matcher::new(g);
        assert_eq!(m.forced_continuation().unwrap(), br#"{"id":"#);
        assert!(m.accept_token(b'{' as u32).unwrap());
        assert_eq!(m.forced_continuation().unwrap(), br#""id":"#);
        assert!(accepts(&mut m, &bytes(br#""id":7"#)));
        assert_eq!(m.forced_continuation().unwrap(), b"");
    }
}

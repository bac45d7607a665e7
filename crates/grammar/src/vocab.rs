//! The byte string of every token of a HuggingFace `tokenizer.json`, and the trie over them.
//!
//! Two decodings of token strings into bytes are supported:
//! - byte-level BPE (GPT-2 style; a `ByteLevel` decoder or pre-tokenizer): every char of a
//!   token stands for one byte through the GPT-2 byte map;
//! - SentencePiece style (everything else): `▁` is a space, `<0xNN>` is the raw byte `NN`
//!   (byte fallback), any other char is its own UTF-8.
//!
//! Added tokens (special or not) and the EOS ids are never text: a grammar never produces them
//! as bytes, and EOS is allowed exactly where the grammar may end. A byte-level token with a
//! char outside the byte map (none in well-formed vocabularies) is likewise never produced; its
//! id is listed by [`Vocabulary::undecodable`].

use crate::error::{GrammarError, Result};
use crate::trie::TokenTrie;
use serde_json::Value;

/// A tokenizer's vocabulary prepared for masking; build once and share with `Arc`.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    vocab_size: usize,
    /// Bytes of token `i`: `bytes[offsets[i]..offsets[i + 1]]`; empty for non-text tokens.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    eos: Vec<u32>,
    undecodable: Vec<u32>,
    trie: TokenTrie,
}

impl Vocabulary {
    /// A vocabulary from the byte string of each id (`None`: never text, e.g. a special token).
    /// `vocab_size` (the model's logit width) may exceed `tokens.len()`; the extra ids are never
    /// allowed.
    pub fn from_token_bytes(
        tokens: &[Option<Vec<u8>>],
        eos_token_ids: &[u32],
        vocab_size: Option<usize>,
    ) -> Result<Vocabulary> {
        let vocab_size = vocab_size.unwrap_or(tokens.len());
        if vocab_size < tokens.len() {
            return Err(GrammarError::Tokenizer(format!(
                "vocab_size {vocab_size} is smaller than the tokenizer's {} ids",
                tokens.len()
            )));
        }
        if vocab_size > u32::MAX as usize / 2 {
            return Err(GrammarError::Tokenizer(format!(
                "vocab_size {vocab_size} is too large"
            )));
        }
        for &e in eos_token_ids {
            if e as usize >= vocab_size {
                return Err(GrammarError::Tokenizer(format!(
                    "EOS id {e} is outside the vocabulary (size {vocab_size})"
                )));
            }
        }
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(vocab_size + 1);
        offsets.push(0u32);
        for id in 0..vocab_size {
            let is_eos = eos_token_ids.contains(&(id as u32));
            if let (Some(Some(b)), false) = (tokens.get(id), is_eos) {
                bytes.extend_from_slice(b);
            }
            offsets.push(u32::try_from(bytes.len()).map_err(|_| {
                GrammarError::Tokenizer("token bytes exceed 4 GiB in total".into())
            })?);
        }
        let mut eos = eos_token_ids.to_vec();
        eos.sort_unstable();
        eos.dedup();
        let trie = TokenTrie::new((0..vocab_size).map(|i| {
            (
                i as u32,
                &bytes[offsets[i] as usize..offsets[i + 1] as usize],
            )
        }));
        Ok(Vocabulary {
            vocab_size,
            bytes,
            offsets,
            eos,
            undecodable: Vec::new(),
            trie,
        })
    }

    /// Parse a HuggingFace `tokenizer.json` (BPE or Unigram models).
    pub fn from_tokenizer_json(
        json: &str,
        eos_token_ids: &[u32],
        vocab_size: Option<usize>,
    ) -> Result<Vocabulary> {
        let root: Value = serde_json::from_str(json)
            .map_err(|e| GrammarError::Tokenizer(format!("invalid tokenizer.json: {e}")))?;
        let model = root
            .get("model")
            .ok_or_else(|| GrammarError::Tokenizer("tokenizer.json has no 'model'".into()))?;
        let kind = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
        let pieces: Vec<(String, usize)> = match kind {
            "BPE" | "WordLevel" => model
                .get("vocab")
                .and_then(Value::as_object)
                .ok_or_else(|| GrammarError::Tokenizer("model.vocab is not an object".into()))?
                .iter()
                .map(|(k, v)| {
                    let id = v.as_u64().ok_or_else(|| {
                        GrammarError::Tokenizer(format!("token {k:?} has a non-integer id"))
                    })?;
                    Ok((k.clone(), id as usize))
                })
                .collect::<Result<_>>()?,
            "Unigram" => model
                .get("vocab")
                .and_then(Value::as_array)
                .ok_or_else(|| GrammarError::Tokenizer("model.vocab is not an array".into()))?
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let piece = p.get(0).and_then(Value::as_str).ok_or_else(|| {
                        GrammarError::Tokenizer(format!("Unigram piece {i} is malformed"))
                    })?;
                    Ok((piece.to_string(), i))
                })
                .collect::<Result<_>>()?,
            other => {
                return Err(GrammarError::Tokenizer(format!(
                    "tokenizer model type '{other}' is not supported (BPE, WordLevel and \
                     Unigram are)"
                )))
            }
        };
        let mut added: Vec<usize> = Vec::new();
        if let Some(list) = root.get("added_tokens").and_then(Value::as_array) {
            for t in list {
                let id = t.get("id").and_then(Value::as_u64).ok_or_else(|| {
                    GrammarError::Tokenizer("an added token has no integer 'id'".into())
                })?;
                added.push(id as usize);
            }
        }
        let byte_level = mentions_type(root.get("decoder"), "ByteLevel")
            || mentions_type(root.get("pre_tokenizer"), "ByteLevel");
        let max_id = pieces
            .iter()
            .map(|p| p.1)
            .chain(added.iter().copied())
            .max();
        let n = max_id.map_or(0, |m| m + 1);
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut undecodable = Vec::new();
        let unmap = gpt2_byte_unmap();
        for (piece, id) in &pieces {
            let decoded = if byte_level {
                decode_byte_level(piece, &unmap)
            } else {
                Some(decode_sp(piece))
            };
            match decoded {
                Some(b) => tokens[*id] = Some(b),
                None => undecodable.push(*id as u32),
            }
        }
        for &id in &added {
            tokens[id] = None;
        }
        undecodable.sort_unstable();
        let mut vocab = Vocabulary::from_token_bytes(&tokens, eos_token_ids, vocab_size)?;
        vocab.undecodable = undecodable;
        Ok(vocab)
    }

    /// Number of ids (the logit width); masks have `ceil(vocab_size / 32)` words.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Number of 32-bit words of a mask row.
    pub fn mask_words(&self) -> usize {
        self.vocab_size.div_ceil(32)
    }

    /// The EOS ids, sorted.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Byte-level tokens whose string could not be mapped to bytes (never allowed).
    pub fn undecodable(&self) -> &[u32] {
        &self.undecodable
    }

    /// The bytes a token stands for; empty for special, added, EOS and padding ids.
    #[inline]
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.vocab_size {
            return &[];
        }
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Whether `id` is one of the EOS ids.
    #[inline]
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos.binary_search(&id).is_ok()
    }

    pub(crate) fn trie(&self) -> &TokenTrie {
        &self.trie
    }
}

/// Whether a decoder/pre-tokenizer (possibly a `Sequence`) contains a component of `ty`.
fn mentions_type(v: Option<&Value>, ty: &str) -> bool {
    let Some(v) = v else { return false };
    if v.get("type").and_then(Value::as_str) == Some(ty) {
        return true;
    }
    ["decoders", "pretokenizers"].iter().any(|key| {
        v.get(*key)
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|x| mentions_type(Some(x), ty)))
    })
}

/// GPT-2's map from printable chars back to bytes: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes are shifted to U+0100 onwards, in order.
fn gpt2_byte_unmap() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0u32..256 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        let c = if printable {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        map.insert(char::from_u32(c).expect("valid char"), b as u8);
    }
    map
}

fn decode_byte_level(piece: &str, unmap: &std::collections::HashMap<char, u8>) -> Option<Vec<u8>> {
    piece.chars().map(|c| unmap.get(&c).copied()).collect()
}

fn decode_sp(piece: &str) -> Vec<u8> {
    let b = piece.as_bytes();
    if b.len() == 6 && b.starts_with(b"<0x") && b[5] == b'>' {
        if let Ok(byte) = u8::from_str_radix(&piece[3..5], 16) {
            return vec![byte];
        }
    }
    piece.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_map_through_gpt2_bytes() {
        let json = r#"{
            "added_tokens": [{"id": 0, "content": "<eos>", "special": true}],
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": {"<eos>": 0, "Ġhi": 1, "Ċ": 2, "Ã©": 3, "Ã": 4}}
        }"#;
        let v = Vocabulary::from_tokenizer_json(json, &[0], Some(40)).unwrap();
        assert_eq!(v.vocab_size(), 40);
        assert_eq!(v.mask_words(), 2);
        assert_eq!(v.token_bytes(0), b"");
        assert_eq!(v.token_bytes(1), b" hi");
        assert_eq!(v.token_bytes(2), b"\n");
        assert_eq!(v.token_bytes(3), "é".as_bytes());
        assert_eq!(v.token_bytes(4), &[0xC3]);
        assert_eq!(v.token_bytes(39), b"");
        assert!(v.is_eos(0) && !v.is_eos(1));
    }

    #[test]
    fn sentencepiece_tokens_use_space_marker_and_byte_fallback() {
        let json = r#"{
            "added_tokens": [{"id": 1, "content": "</s>", "special": true},
                             {"id": 5, "content": "<tool>", "special": false}],
            "decoder": {"type": "Sequence", "decoders": [{"type": "Replace"},
                        {"type": "ByteFallback"}]},
            "model": {"type": "BPE", "byte_fallback": true,
                      "vocab": {"<unk>": 0, "</s>": 1, "<0x0A>": 2, "▁the": 3, "<0xE2>": 4}}
        }"#;
        let v = Vocabulary::from_tokenizer_json(json, &[1], None).unwrap();
        assert_eq!(v.vocab_size(), 6);
        assert_eq!(v.token_bytes(2), b"\n");
        assert_eq!(v.token_bytes(3), b" the");
        assert_eq!(v.token_bytes(4), &[0xE2]);
        assert_eq!(v.token_bytes(1), b"");
        assert_eq!(v.token_bytes(5), b"");
    }

    #[test]
    fn unigram_and_errors() {
        let json = r#"{"model": {"type": "Unigram", "vocab": [["<unk>", 0.0], ["▁a", -1.0]]}}"#;
        let v = Vocabulary::from_tokenizer_json(json, &[], None).unwrap();
        assert_eq!(v.token_bytes(1), b" a");
        let bad = r#"{"model": {"type": "WordPiece", "vocab": {}}}"#;
        let err = Vocabulary::from_tokenizer_json(bad, &[], None).unwrap_err();
        assert!(err.to_string().contains("WordPiece"));
        let err = Vocabulary::from_tokenizer_json(json, &[7], None).unwrap_err();
        assert!(err.to_string().contains("EOS id 7"));
    }
}

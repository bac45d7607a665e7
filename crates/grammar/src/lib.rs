//! `sglrs-grammar`: token masks for regex- and JSON-schema-constrained decoding.
//!
//! # Design
//! - [`Vocabulary`] turns a `tokenizer.json` into the byte string of every token and a
//!   pre-order [`trie`] over them; built once per tokenizer and shared through `Arc`.
//! - [`Grammar`] compiles a regex (JSON schemas are first translated to one by [`json`]) into
//!   a *lazy* DFA over bytes (`regex_automata::hybrid`, `MatchKind::All`, anchored), so
//!   compilation only builds the Thompson NFA (`nfa.rs`: built back to front so that disjoint
//!   alternatives share one state): a bounded repetition like `"[^"]{0,200}"` costs little
//!   until its states are visited. Acceptance is read from the EOI transition, so the
//!   DFA's one-byte match delay never rejects a complete output.
//! - Masks are computed per DFA state on first visit, by walking the token trie through the
//!   DFA (a dead transition prunes the whole subtree), and cached in the grammar; every later
//!   visit of the state, by any matcher, is a lookup plus a copy of `ceil(V / 32)` words.
//! - The DFA cache and the mask cache sit behind one mutex per grammar (held for a lookup or a
//!   few transitions; a mask computation holds it for one trie walk). The lazy DFA is never
//!   cleared, so state ids stay valid for every live matcher; past its memory budget an
//!   operation fails with [`GrammarError::TooLarge`].
//! - [`Matcher`] is a DFA state, a rollback history and an EOS flag: cheap to create, `Send`.

pub mod error;
pub mod grammar;
pub mod json;
pub mod matcher;
mod nfa;
pub mod trie;
pub mod vocab;

pub use error::{GrammarError, Result};
pub use grammar::{Grammar, GrammarKind};
pub use json::{JsonOptions, Whitespace};
pub use matcher::Matcher;
pub use vocab::Vocabulary;

//! The one error type of the crate: every failure names what could not be honoured.

use std::fmt;

/// What went wrong, with a message naming the offending input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrammarError {
    /// The `tokenizer.json` (or a synthetic vocabulary) is malformed or of an unsupported kind.
    Tokenizer(String),
    /// The regex does not parse or does not compile.
    Regex(String),
    /// The JSON schema is malformed or uses a keyword or value this crate cannot honour.
    Schema(String),
    /// The lazy DFA outgrew its memory budget.
    TooLarge(String),
}

impl fmt::Display for GrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrammarError::Tokenizer(m) => write!(f, "tokenizer: {m}"),
            GrammarError::Regex(m) => write!(f, "regex: {m}"),
            GrammarError::Schema(m) => write!(f, "JSON schema: {m}"),
            GrammarError::TooLarge(m) => write!(f, "grammar too large: {m}"),
        }
    }
}

impl std::error::Error for GrammarError {}

pub type Result<T> = std::result::Result<T, GrammarError>;

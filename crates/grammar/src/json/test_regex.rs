//! Test helper: a regex that must match the whole input, as the compiled grammar does.

pub(crate) struct Full(regex::bytes::Regex);

impl Full {
    pub(crate) fn is_match(&self, s: impl AsRef<[u8]>) -> bool {
        self.0.is_match(s.as_ref())
    }
}

/// `re` anchored at both ends.
pub(crate) fn full(re: &str) -> Full {
    Full(regex::bytes::Regex::new(&format!("^(?:{re})$")).unwrap())
}

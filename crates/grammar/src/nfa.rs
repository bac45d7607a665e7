//! A regex's HIR to a compact Thompson NFA, for the lazy DFA of a [`crate::Grammar`].
//!
//! Compile time is dominated by NFA construction when a bounded repetition copies its body
//! (`maxLength: 200` makes 200 copies of a JSON string char). Two things make it cheap here:
//! - The NFA is built back to front (each piece knows its successor), so an alternation whose
//!   branches start with disjoint bytes is *one* sparse state: a JSON string char is 13 states
//!   where `regex-automata`'s compiler makes 29 (a union and glue states per alternation).
//! - States go to a flat intermediate list first; a repetition compiles its body once and
//!   stamps the other copies by copying that body's states with shifted ids.
//!
//! Non-ASCII Unicode classes are compiled by `regex-automata` (its UTF-8 automata share
//! suffixes) and imported. The language is exactly the regex's: only the state graph differs.
//! Capture groups are dropped (masks never need offsets) and greediness is ignored (the DFA
//! reports all matches).

use regex_automata::nfa::thompson::{self, Builder, State, Transition, WhichCaptures, NFA};
use regex_automata::util::look::Look;
use regex_automata::util::primitives::StateID;
use regex_syntax::hir::{self, Class, Hir, HirKind};

/// Compile `hir` (to be matched anchored) into an NFA of about `size_limit` heap bytes at most.
pub fn compile(hir: &Hir, size_limit: usize) -> Result<NFA, String> {
    let mut c = Compiler {
        states: Vec::new(),
        trans: Vec::new(),
        alts: Vec::new(),
        classes: Vec::new(),
        size_limit,
    };
    let matched = c.push(St::Match)?;
    let start = c.compile(hir, matched)?;
    let start = c.materialize(start)?;
    c.build(start)
}

/// An intermediate state; transitions and union alternates live in the compiler's flat lists.
#[derive(Clone, Copy)]
enum St {
    /// `trans[lo..hi]`, sorted and disjoint (none at all: a dead end).
    Trans {
        lo: u32,
        hi: u32,
    },
    /// `alts[lo..hi]`.
    Union {
        lo: u32,
        hi: u32,
    },
    Look {
        look: Look,
        next: StateID,
    },
    Match,
}

/// A compiled piece whose first state may not exist yet.
#[derive(Clone)]
enum Frag {
    State(StateID),
    /// A byte-consuming state still to be added, so that an enclosing alternation can merge
    /// it with its siblings. Sorted by byte, non-overlapping.
    Trans(Vec<Transition>),
}

struct Compiler {
    states: Vec<St>,
    trans: Vec<Transition>,
    alts: Vec<StateID>,
    /// Unicode classes imported so far, to stamp when they occur again.
    classes: Vec<(hir::ClassUnicode, Template)>,
    size_limit: usize,
}

const STATE_BYTES: usize = std::mem::size_of::<St>();
const TRANS_BYTES: usize = std::mem::size_of::<Transition>();

impl Compiler {
    fn push(&mut self, st: St) -> Result<StateID, String> {
        let bytes = self.states.len() * STATE_BYTES
            + self.trans.len() * TRANS_BYTES
            + self.alts.len() * std::mem::size_of::<StateID>();
        if bytes > self.size_limit {
            return Err(format!(
                "the NFA exceeds its {} byte budget (a repetition too large?)",
                self.size_limit
            ));
        }
        self.states.push(st);
        Ok(StateID::must(self.states.len() - 1))
    }

    fn push_trans(&mut self, t: &[Transition]) -> Result<StateID, String> {
        let lo = self.trans.len() as u32;
        self.trans.extend_from_slice(t);
        let hi = self.trans.len() as u32;
        self.push(St::Trans { lo, hi })
    }

    fn push_union(&mut self, alts: &[StateID]) -> Result<StateID, String> {
        let lo = self.alts.len() as u32;
        self.alts.extend_from_slice(alts);
        let hi = self.alts.len() as u32;
        self.push(St::Union { lo, hi })
    }

    fn materialize(&mut self, f: Frag) -> Result<StateID, String> {
        match f {
            Frag::State(id) => Ok(id),
            Frag::Trans(t) => self.push_trans(&t),
        }
    }

    /// `h` followed by the state `next`.
    fn compile(&mut self, h: &Hir, next: StateID) -> Result<Frag, String> {
        Ok(match h.kind() {
            HirKind::Empty => Frag::State(next),
            HirKind::Literal(hir::Literal(bytes)) => {
                let Some((&first, rest)) = bytes.split_first() else {
                    return Ok(Frag::State(next));
                };
                let mut s = next;
                for &b in rest.iter().rev() {
                    s = self.push_trans(&[range(b, b, s)])?;
                }
                Frag::Trans(vec![range(first, first, s)])
            }
            HirKind::Class(Class::Bytes(c)) => Frag::Trans(
                c.ranges()
                    .iter()
                    .map(|r| range(r.start(), r.end(), next))
                    .collect(),
            ),
            HirKind::Class(Class::Unicode(c)) => match c.to_byte_class() {
                // ASCII only: one byte per char.
                Some(bytes) => Frag::Trans(
                    bytes
                        .ranges()
                        .iter()
                        .map(|r| range(r.start(), r.end(), next))
                        .collect(),
                ),
                None => self.unicode_class(c, h, next)?,
            },
            HirKind::Look(look) => Frag::State(self.push(St::Look {
                look: map_look(*look),
                next,
            })?),
            HirKind::Capture(cap) => self.compile(&cap.sub, next)?,
            HirKind::Concat(parts) => {
                let mut s = next;
                for part in parts[1..].iter().rev() {
                    let f = self.compile(part, s)?;
                    s = self.materialize(f)?;
                }
                self.compile(&parts[0], s)?
            }
            HirKind::Alternation(alts) => {
                let mut frags = Vec::with_capacity(alts.len());
                for a in alts {
                    frags.push(self.compile(a, next)?);
                }
                self.alternation(frags)?
            }
            HirKind::Repetition(rep) => self.repetition(rep, next)?,
        })
    }

    /// Alternatives sharing a successor: byte-consuming ones merge into one state when their
    /// bytes are disjoint; the rest become a union.
    fn alternation(&mut self, frags: Vec<Frag>) -> Result<Frag, String> {
        let mut trans = Vec::new();
        let mut states = Vec::new();
        for f in frags {
            match f {
                Frag::Trans(t) => trans.push(t),
                Frag::State(id) if !states.contains(&id) => states.push(id),
                Frag::State(_) => {}
            }
        }
        let mut merged: Vec<Transition> = trans.iter().flatten().copied().collect();
        merged.sort_unstable_by_key(|t| t.start);
        if merged.windows(2).all(|w| w[0].end < w[1].start) {
            if states.is_empty() {
                return Ok(Frag::Trans(merged));
            }
            if !trans.is_empty() {
                states.push(self.push_trans(&merged)?);
            }
        } else {
            for t in trans {
                states.push(self.push_trans(&t)?);
            }
        }
        if states.len() == 1 {
            return Ok(Frag::State(states[0]));
        }
        Ok(Frag::State(self.push_union(&states)?))
    }

    fn repetition(&mut self, rep: &hir::Repetition, next: StateID) -> Result<Frag, String> {
        let (min, max) = (rep.min, rep.max);
        if max == Some(0) {
            return Ok(Frag::State(next));
        }
        let mut body = None;
        let mut s = match max {
            // `sub*` is a union looping through `sub`; a first mandatory copy enters the loop
            // directly (`sub+` needs one copy, not two).
            None => {
                let lp = self.push(St::Union { lo: 0, hi: 0 })?;
                let first = self.compile(&rep.sub, lp)?;
                let first = self.materialize(first)?;
                let alts: &[StateID] = if first == lp { &[next] } else { &[first, next] };
                let lo = self.alts.len() as u32;
                self.alts.extend_from_slice(alts);
                self.states[lp.as_usize()] = St::Union {
                    lo,
                    hi: self.alts.len() as u32,
                };
                match min {
                    0 => return Ok(Frag::State(lp)),
                    1 => return Ok(Frag::State(first)),
                    _ => first,
                }
            }
            // `sub{0,k}` nested as `(sub(sub(...)?)?)?`: every skip goes straight to `next`.
            Some(max) => {
                let mut s = next;
                for i in min..max {
                    let f = self.copy(&rep.sub, s, &mut body)?;
                    if i == min {
                        // Room for the other copies at once (growth would copy the lists).
                        self.reserve(body.as_ref(), (max - min) as usize + min as usize)?;
                    }
                    let f = self.materialize(f)?;
                    s = if f == next {
                        next
                    } else {
                        self.push_union(&[f, next])?
                    };
                }
                s
            }
        };
        // The mandatory copies (for `sub{min,}` the looping copy is one of them).
        let mandatory = if max.is_none() { min - 1 } else { min };
        for i in 0..mandatory {
            let f = self.copy(&rep.sub, s, &mut body)?;
            if i + 1 == mandatory {
                return Ok(f);
            }
            s = self.materialize(f)?;
        }
        Ok(Frag::State(s))
    }

    /// Capacity for `copies` more stamps of `template` (plus a union each).
    fn reserve(&mut self, template: Option<&Template>, copies: usize) -> Result<(), String> {
        let Some(t) = template else { return Ok(()) };
        let states = (t.hi - t.lo + 1).saturating_mul(copies);
        let (mut trans, mut alts) = (0, 2 * copies);
        for st in &self.states[t.lo..t.hi] {
            match *st {
                St::Trans { lo, hi } => trans += (hi - lo) as usize,
                St::Union { lo, hi } => alts += (hi - lo) as usize,
                _ => {}
            }
        }
        let trans = (trans + 16).saturating_mul(copies);
        let alts = alts.saturating_mul(copies);
        let bytes = states
            .saturating_mul(STATE_BYTES)
            .saturating_add(trans.saturating_mul(TRANS_BYTES));
        if bytes > self.size_limit {
            return Err(format!(
                "the NFA exceeds its {} byte budget (a repetition too large?)",
                self.size_limit
            ));
        }
        self.states.reserve(states);
        self.trans.reserve(trans);
        self.alts.reserve(alts);
        Ok(())
    }

    /// `sub` followed by `next`: compiled the first time, then stamped from that copy.
    fn copy(
        &mut self,
        sub: &Hir,
        next: StateID,
        template: &mut Option<Template>,
    ) -> Result<Frag, String> {
        if let Some(t) = template {
            return self.stamp(t, next);
        }
        let lo = self.states.len();
        let f = self.compile(sub, next)?;
        *template = Some(Template::new(lo, self, next, &f));
        Ok(f)
    }

    fn unicode_class(
        &mut self,
        c: &hir::ClassUnicode,
        h: &Hir,
        next: StateID,
    ) -> Result<Frag, String> {
        if let Some(i) = self.classes.iter().position(|(k, _)| k == c) {
            let t = self.classes[i].1.clone();
            return self.stamp(&t, next);
        }
        let lo = self.states.len();
        let f = self.import(h, next)?;
        let t = Template::new(lo, self, next, &f);
        self.classes.push((c.clone(), t));
        Ok(f)
    }

    /// A copy of a template's states followed by `next` instead of its successor.
    fn stamp(&mut self, t: &Template, next: StateID) -> Result<Frag, String> {
        let (lo, hi, old_next) = (t.lo, t.hi, t.next);
        let shift = self.states.len() - lo;
        let map = |id: StateID| {
            let i = id.as_usize();
            if id == old_next {
                next
            } else if (lo..hi).contains(&i) {
                StateID::must(i + shift)
            } else {
                id
            }
        };
        for i in lo..hi {
            let st = match self.states[i] {
                St::Trans { lo: a, hi: b } => {
                    let start = self.trans.len() as u32;
                    for j in a as usize..b as usize {
                        let t = self.trans[j];
                        self.trans.push(range(t.start, t.end, map(t.next)));
                    }
                    St::Trans {
                        lo: start,
                        hi: self.trans.len() as u32,
                    }
                }
                St::Union { lo: a, hi: b } => {
                    let start = self.alts.len() as u32;
                    for j in a as usize..b as usize {
                        let alt = self.alts[j];
                        self.alts.push(map(alt));
                    }
                    St::Union {
                        lo: start,
                        hi: self.alts.len() as u32,
                    }
                }
                St::Look { look, next } => St::Look {
                    look,
                    next: map(next),
                },
                St::Match => St::Match,
            };
            self.push(st)?;
        }
        Ok(match &t.entry {
            Frag::State(id) => Frag::State(map(*id)),
            Frag::Trans(t) => Frag::Trans(
                t.iter()
                    .map(|t| range(t.start, t.end, map(t.next)))
                    .collect(),
            ),
        })
    }

    /// A non-ASCII Unicode class, compiled by `regex-automata` and copied in: its match state
    /// becomes `next`, its start state (if byte-consuming) the returned transitions.
    fn import(&mut self, class: &Hir, next: StateID) -> Result<Frag, String> {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .which_captures(WhichCaptures::None)
                    .nfa_size_limit(Some(self.size_limit)),
            )
            .build_from_hir(class)
            .map_err(|e| e.to_string())?;
        let start = nfa.start_anchored();
        // New ids for every state reachable past the start; matches map to `next`.
        let mut ids: Vec<Option<StateID>> = vec![None; nfa.states().len()];
        let mut order = Vec::new();
        let mut stack: Vec<StateID> = Vec::new();
        successors(nfa.state(start), &mut stack);
        let base = self.states.len();
        while let Some(s) = stack.pop() {
            if ids[s.as_usize()].is_some() {
                continue;
            }
            if let State::Match { .. } = nfa.state(s) {
                ids[s.as_usize()] = Some(next);
                continue;
            }
            ids[s.as_usize()] = Some(StateID::must(base + order.len()));
            order.push(s);
            successors(nfa.state(s), &mut stack);
        }
        let map = |s: StateID| ids[s.as_usize()].expect("reachable state");
        let remap = |t: Vec<Transition>| -> Vec<Transition> {
            t.into_iter()
                .map(|t| range(t.start, t.end, map(t.next)))
                .collect()
        };
        for &s in &order {
            match nfa.state(s) {
                State::Union { alternates } => {
                    let alts: Vec<StateID> = alternates.iter().map(|&a| map(a)).collect();
                    self.push_union(&alts)?;
                }
                State::BinaryUnion { alt1, alt2 } => {
                    self.push_union(&[map(*alt1), map(*alt2)])?;
                }
                State::Look { look, next } => {
                    self.push(St::Look {
                        look: *look,
                        next: map(*next),
                    })?;
                }
                st => {
                    let t = remap(transitions(st)?);
                    self.push_trans(&t)?;
                }
            }
        }
        let st = nfa.state(start);
        Ok(match st {
            State::ByteRange { .. } | State::Sparse(_) | State::Dense(_) | State::Fail => {
                Frag::Trans(remap(transitions(st)?))
            }
            State::Match { .. } => Frag::State(next),
            _ => {
                // Not byte-consuming: emit the start state itself.
                ids[start.as_usize()] = Some(StateID::must(self.states.len()));
                let map = |s: StateID| ids[s.as_usize()].expect("reachable state");
                match st {
                    State::Union { alternates } => {
                        let alts: Vec<StateID> = alternates.iter().map(|&a| map(a)).collect();
                        Frag::State(self.push_union(&alts)?)
                    }
                    State::BinaryUnion { alt1, alt2 } => {
                        Frag::State(self.push_union(&[map(*alt1), map(*alt2)])?)
                    }
                    State::Look { look, next } => Frag::State(self.push(St::Look {
                        look: *look,
                        next: map(*next),
                    })?),
                    other => return Err(format!("unexpected class NFA state {other:?}")),
                }
            }
        })
    }

    /// Hand the states to `regex-automata`'s builder; ids are kept (both count from 0).
    fn build(&self, start: StateID) -> Result<NFA, String> {
        let e = |e: thompson::BuildError| e.to_string();
        let mut b = Builder::new();
        b.set_utf8(false);
        b.set_reverse(false);
        b.set_size_limit(Some(self.size_limit)).map_err(e)?;
        b.start_pattern().map_err(e)?;
        for st in &self.states {
            match *st {
                St::Trans { lo, hi } => {
                    let t = &self.trans[lo as usize..hi as usize];
                    if t.len() == 1 {
                        b.add_range(t[0]).map_err(e)?;
                    } else {
                        b.add_sparse(t.to_vec()).map_err(e)?;
                    }
                }
                St::Union { lo, hi } => {
                    b.add_union(self.alts[lo as usize..hi as usize].to_vec())
                        .map_err(e)?;
                }
                St::Look { look, next } => {
                    b.add_look(next, look).map_err(e)?;
                }
                St::Match => {
                    b.add_match().map_err(e)?;
                }
            }
        }
        b.finish_pattern(start).map_err(e)?;
        // Anchored searches only: the unanchored start is the anchored one.
        b.build(start, start).map_err(e)
    }
}

/// A compiled piece to copy: its states `lo..hi` (which only lead to each other or to
/// `next`), the successor it was compiled with, and its entry.
#[derive(Clone)]
struct Template {
    lo: usize,
    hi: usize,
    next: StateID,
    entry: Frag,
}

impl Template {
    fn new(lo: usize, c: &Compiler, next: StateID, entry: &Frag) -> Template {
        Template {
            lo,
            hi: c.states.len(),
            next,
            entry: entry.clone(),
        }
    }
}

/// The byte transitions of a byte-consuming state of a compiled NFA.
fn transitions(st: &State) -> Result<Vec<Transition>, String> {
    Ok(match st {
        State::ByteRange { trans } => vec![*trans],
        State::Sparse(s) => s.transitions.to_vec(),
        State::Dense(d) => {
            let mut out: Vec<Transition> = Vec::new();
            for (b, &next) in d.transitions.iter().enumerate() {
                if next == StateID::ZERO {
                    continue; // the fail state
                }
                let b = b as u8;
                match out.last_mut() {
                    Some(last) if last.next == next && last.end + 1 == b => last.end = b,
                    _ => out.push(range(b, b, next)),
                }
            }
            out
        }
        State::Fail => Vec::new(),
        other => return Err(format!("unexpected class NFA state {other:?}")),
    })
}

fn successors(st: &State, out: &mut Vec<StateID>) {
    match st {
        State::ByteRange { trans } => out.push(trans.next),
        State::Sparse(s) => out.extend(s.transitions.iter().map(|t| t.next)),
        State::Dense(d) => out.extend(d.transitions.iter().filter(|&&n| n != StateID::ZERO)),
        State::Look { next, .. } | State::Capture { next, .. } => out.push(*next),
        State::Union { alternates } => out.extend_from_slice(alternates),
        State::BinaryUnion { alt1, alt2 } => out.extend([*alt1, *alt2]),
        State::Fail | State::Match { .. } => {}
    }
}

fn range(start: u8, end: u8, next: StateID) -> Transition {
    Transition { start, end, next }
}

fn map_look(l: hir::Look) -> Look {
    match l {
        hir::Look::Start => Look::Start,
        hir::Look::End => Look::End,
        hir::Look::StartLF => Look::StartLF,
        hir::Look::EndLF => Look::EndLF,
        hir::Look::StartCRLF => Look::StartCRLF,
        hir::Look::EndCRLF => Look::EndCRLF,
        hir::Look::WordAscii => Look::WordAscii,
        hir::Look::WordAsciiNegate => Look::WordAsciiNegate,
        hir::Look::WordUnicode => Look::WordUnicode,
        hir::Look::WordUnicodeNegate => Look::WordUnicodeNegate,
        hir::Look::WordStartAscii => Look::WordStartAscii,
        hir::Look::WordEndAscii => Look::WordEndAscii,
        hir::Look::WordStartUnicode => Look::WordStartUnicode,
        hir::Look::WordEndUnicode => Look::WordEndUnicode,
        hir::Look::WordStartHalfAscii => Look::WordStartHalfAscii,
        hir::Look::WordEndHalfAscii => Look::WordEndHalfAscii,
        hir::Look::WordStartHalfUnicode => Look::WordStartHalfUnicode,
        hir::Look::WordEndHalfUnicode => Look::WordEndHalfUnicode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::strings::{JSON_CHAR, JSON_CHAR_ANY_ESCAPE};
    use proptest::prelude::*;
    use regex_automata::nfa::thompson::pikevm::PikeVM;
    use regex_automata::util::syntax;
    use regex_automata::{Anchored, Input};

    /// Full match through our NFA (an anchored search of `(?:p)\z`).
    fn ours(pattern: &str) -> impl Fn(&[u8]) -> bool {
        let hir = syntax::parse_with(
            &format!(r"(?:{pattern})\z"),
            &syntax::Config::new().utf8(false),
        )
        .unwrap();
        let vm = PikeVM::new_from_nfa(compile(&hir, 1 << 24).unwrap()).unwrap();
        move |h: &[u8]| {
            let mut cache = vm.create_cache();
            vm.is_match(&mut cache, Input::new(h).anchored(Anchored::Yes))
        }
    }

    fn oracle(pattern: &str) -> regex::bytes::Regex {
        regex::bytes::RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
            .unicode(true)
            .build()
            .unwrap()
    }

    const PATTERNS: &[&str] = &[
        r"(ab|a)(c|bcd)*",
        r"a{2,4}b?",
        r"(ab|a)*b",
        r"x{3,}|y+|z*",
        r"(é|e)+[ab]?",
        r"(?i)straße\w?",
        r"(a*)*b|(|a)+c",
        r"[^@]{0,5}@\w+",
        r"\w+@\w+(\.\w+)*",
        r"(a|b){2,3}(u|\\u[0-9a-f]{2}){0,2}",
        r"\bab\b|^x$",
        r"(?-u:[\x80-\xFF]{1,2})é",
        r"[a-c&&b-d]{1,}|[\p{Greek}é]{2}",
        r"",
    ];

    fn pieces() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: Vec<&'static [u8]> = vec![
            b"a",
            b"b",
            b"c",
            b"d",
            b"e",
            b"x",
            b"y",
            b"z",
            b"u",
            b"0",
            b"f",
            b"@",
            b".",
            b" ",
            b"\\",
            b"\"",
            b"S",
            b"s",
            b"\xC3",
            b"\xFF",
            "é".as_bytes(),
            "ß".as_bytes(),
            "α".as_bytes(),
            "\u{1F600}".as_bytes(),
        ];
        proptest::collection::vec(proptest::sample::select(alphabet), 0..9)
            .prop_map(|parts| parts.concat())
    }

    /// Strings generated from the pattern where proptest can (not with assertions).
    fn members(pattern: &str) -> BoxedStrategy<Vec<u8>> {
        match proptest::string::bytes_regex(pattern) {
            Ok(s) => s.boxed(),
            Err(_) => pieces().boxed(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn same_language_as_the_regex_crate(i in 0..PATTERNS.len(), h in pieces()) {
            let p = PATTERNS[i];
            prop_assert_eq!(ours(p)(&h), oracle(p).is_match(&h), "{} on {:?}", p, h);
        }

        /// Strings of the language, and the same with their last byte dropped.
        #[test]
        fn members_and_near_members(
            (i, h) in (0..PATTERNS.len()).prop_flat_map(|i| (Just(i), members(PATTERNS[i])))
        ) {
            let p = PATTERNS[i];
            let (m, o) = (ours(p), oracle(p));
            prop_assert!(!o.is_match(&h) || m(&h), "{} rejects {:?}", p, h);
            let cut = &h[..h.len().saturating_sub(1)];
            prop_assert_eq!(m(cut), o.is_match(cut), "{} on {:?}", p, cut);
        }
    }

    #[test]
    fn json_chars_in_bounded_repetitions() {
        for (char_re, min) in [(JSON_CHAR, 1), (JSON_CHAR_ANY_ESCAPE, 0)] {
            let p = format!("\"{char_re}{{{min},3}}\"");
            let (m, o) = (ours(&p), oracle(&p));
            for s in [
                "\"\"",
                "\"a\"",
                "\"abc\"",
                "\"abcd\"",
                "\"\\u00e9\"",
                "\"\\ud800\"",
                "\"é€😀\"",
                "\"\\n\\t\"",
                "\"\\x\"",
                "\"a\"b\"",
            ] {
                assert_eq!(m(s.as_bytes()), o.is_match(s.as_bytes()), "{p} on {s}");
            }
            for bad in [
                b"\"\xC0\x80\"".as_slice(),
                b"\"\xED\xA0\x80\"",
                b"\"\xF5\x80\x80\x80\"",
            ] {
                assert!(!m(bad), "{p} on {bad:?}");
            }
        }
    }

    #[test]
    fn disjoint_alternatives_share_one_state() {
        let hir = syntax::parse_with(
            &format!("{JSON_CHAR_ANY_ESCAPE}{{0,200}}"),
            &syntax::Config::new().utf8(false),
        )
        .unwrap();
        // 13 states per char plus the union that may skip it (regex-automata: 27).
        let nfa = compile(&hir, 1 << 24).unwrap();
        assert!(nfa.states().len() <= 14 * 200 + 2, "{}", nfa.states().len());
    }

    #[test]
    fn repeated_unicode_classes_are_stamped() {
        let hir = syntax::parse(r"\w\w").unwrap();
        let one = compile(&syntax::parse(r"\w").unwrap(), 1 << 24).unwrap();
        let two = compile(&hir, 1 << 24).unwrap();
        assert!(two.states().len() <= 2 * one.states().len());
        let m = ours(r"\w\w");
        assert!(m("aé".as_bytes()) && m("αβ".as_bytes()) && !m(b"a") && !m(b"a-"));
    }

    #[test]
    fn empty_classes_never_match() {
        let p = r"x[a&&b]|y(?:[é&&e])*z";
        let (m, o) = (ours(p), oracle(p));
        for s in ["x", "xa", "yz", "y", "yéz", ""] {
            assert_eq!(m(s.as_bytes()), o.is_match(s.as_bytes()), "{p} on {s}");
        }
        assert!(m(b"yz") && !m(b"x"));
    }

    #[test]
    fn oversized_repetitions_are_an_error() {
        let hir = syntax::parse(r"(a{1000}){1000}").unwrap();
        let err = compile(&hir, 1 << 20).unwrap_err();
        assert!(err.contains("byte budget"), "{err}");
    }
}

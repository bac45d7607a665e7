//! Regexes for JSON strings: free text with length bounds, formats, and `pattern`.

use crate::error::{GrammarError, Result};
use regex_syntax::hir::{self, Class, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Look};

/// One character of a JSON string as written in JSON text: an unescaped char or an escape.
///
/// Unescaped chars are spelled as UTF-8 bytes with the continuation bytes shared between
/// lead-byte branches: it compiles to the same language as `[^"\\\x00-\x1F]` but ~30% faster,
/// which matters for bounded repetitions like `maxLength: 200`. `\u` escapes of surrogates
/// are left out so that one regex char is one code point (which keeps `minLength` and
/// `maxLength` exact).
pub const JSON_CHAR: &str = concat!(
    r"(?-u:[\x20\x21\x23-\x5B\x5D-\x7F]",
    r"|([\xC2-\xDF]|\xE0[\xA0-\xBF]|\xED[\x80-\x9F]",
    r"|([\xE1-\xEC\xEE\xEF]|\xF0[\x90-\xBF]|\xF4[\x80-\x8F]|[\xF1-\xF3][\x80-\xBF])[\x80-\xBF])",
    r"[\x80-\xBF]",
    r#"|\\(["\\/bfnrt]|u([0-9a-cA-CeEfF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})))"#
);

/// [`JSON_CHAR`] with every `\u` escape allowed: a surrogate pair then counts as two chars
/// while a validator counts one code point, so this form is only used where no lower length
/// bound is at stake (it has fewer NFA states, which speeds up compiling long bounded strings).
pub const JSON_CHAR_ANY_ESCAPE: &str = concat!(
    r"(?-u:[\x20\x21\x23-\x5B\x5D-\x7F]",
    r"|([\xC2-\xDF]|\xE0[\xA0-\xBF]|\xED[\x80-\x9F]",
    r"|([\xE1-\xEC\xEE\xEF]|\xF0[\x90-\xBF]|\xF4[\x80-\x8F]|[\xF1-\xF3][\x80-\xBF])[\x80-\xBF])",
    r"[\x80-\xBF]",
    r#"|\\(["\\/bfnrt]|u[0-9a-fA-F]{4}))"#
);

/// A JSON string of any content.
pub fn any_string() -> String {
    format!("\"{JSON_CHAR_ANY_ESCAPE}*\"")
}

/// A JSON string of `min..=max` characters.
pub fn string_with_length(min: u64, max: Option<u64>) -> Result<String> {
    match max {
        Some(max) if max < min => Err(GrammarError::Schema(format!(
            "maxLength {max} is smaller than minLength {min}"
        ))),
        Some(max) if min == 0 => Ok(format!("\"{JSON_CHAR_ANY_ESCAPE}{{0,{max}}}\"")),
        Some(max) => Ok(format!("\"{JSON_CHAR}{{{min},{max}}}\"")),
        None if min == 0 => Ok(any_string()),
        None => Ok(format!("\"{JSON_CHAR}{{{min},}}\"")),
    }
}

const YEAR: &str = "([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)";
const LEAP_YEAR: &str =
    "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)";
const TIME: &str =
    "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";

/// A calendar date (RFC 3339 full-date), exact: month lengths and leap years included.
fn date() -> String {
    format!(
        "({YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)\
         |02-(0[1-9]|1[0-9]|2[0-8]))|{LEAP_YEAR}-02-29)"
    )
}

/// The content regex (between the quotes) of a supported `format`.
pub fn format_regex(format: &str) -> Result<String> {
    let atom = "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+";
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?";
    Ok(match format {
        "date" => date(),
        "time" => TIME.to_string(),
        "date-time" => format!("{}T{TIME}", date()),
        "email" => format!("{atom}(\\.{atom})*@{label}(\\.{label})+"),
        "uuid" => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
            .to_string(),
        other => {
            return Err(GrammarError::Schema(format!(
                "format '{other}' is not supported (date, time, date-time, email and uuid are)"
            )))
        }
    })
}

/// The JSON-text form of a char that must be escaped inside a string.
fn escaped(c: char) -> String {
    match c {
        '"' => "\\\"".into(),
        '\\' => "\\\\".into(),
        '\n' => "\\n".into(),
        '\t' => "\\t".into(),
        '\r' => "\\r".into(),
        '\u{8}' => "\\b".into(),
        '\u{c}' => "\\f".into(),
        c => format!("\\u{:04x}", c as u32),
    }
}

fn needs_escape(c: char) -> bool {
    c == '"' || c == '\\' || (c as u32) < 0x20
}

/// Rewrite a pattern's HIR so that it matches the JSON text of the strings it matches: literal
/// chars that need it are escaped; classes lose the chars that need escaping and gain their
/// escaped forms as alternatives.
fn to_json_text(h: &Hir) -> Result<Hir> {
    Ok(match h.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(hir::Literal(bytes)) => {
            let s = std::str::from_utf8(bytes)
                .map_err(|_| GrammarError::Schema("pattern: non-UTF-8 literal".into()))?;
            let text: String = s
                .chars()
                .map(|c| {
                    if needs_escape(c) {
                        escaped(c)
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            Hir::literal(text.into_bytes())
        }
        HirKind::Class(Class::Unicode(cls)) => {
            let unsafe_chars = ClassUnicode::new([
                ClassUnicodeRange::new('\0', '\u{1f}'),
                ClassUnicodeRange::new('"', '"'),
                ClassUnicodeRange::new('\\', '\\'),
            ]);
            let mut plain = cls.clone();
            plain.difference(&unsafe_chars);
            let mut special = cls.clone();
            special.intersect(&unsafe_chars);
            let mut alts = vec![Hir::class(Class::Unicode(plain))];
            for r in special.iter() {
                for c in r.start()..=r.end() {
                    alts.push(Hir::literal(escaped(c).into_bytes()));
                }
            }
            Hir::alternation(alts)
        }
        HirKind::Class(Class::Bytes(_)) => {
            return Err(GrammarError::Schema(
                "pattern: byte classes are not supported".into(),
            ))
        }
        HirKind::Look(look) => {
            return Err(GrammarError::Schema(format!(
                "pattern: the assertion {look:?} is only supported as a leading ^ or trailing $"
            )))
        }
        HirKind::Repetition(rep) => Hir::repetition(hir::Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(to_json_text(&rep.sub)?),
        }),
        HirKind::Capture(cap) => to_json_text(&cap.sub)?,
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(to_json_text).collect::<Result<_>>()?),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.iter().map(to_json_text).collect::<Result<_>>()?)
        }
    })
}

/// A branch of a pattern with its leading `^` / trailing `$` removed, and whether they were
/// there (an unanchored side may be extended by any text, as JSON schema patterns search).
fn strip_anchors(h: &Hir) -> (Hir, bool, bool) {
    let is_start = |h: &Hir| matches!(h.kind(), HirKind::Look(Look::Start));
    let is_end = |h: &Hir| matches!(h.kind(), HirKind::Look(Look::End));
    match h.kind() {
        HirKind::Look(Look::Start) => (Hir::empty(), true, false),
        HirKind::Look(Look::End) => (Hir::empty(), false, true),
        HirKind::Concat(subs) => {
            let mut subs: Vec<Hir> = subs.clone();
            let start = subs.first().is_some_and(is_start);
            if start {
                subs.remove(0);
            }
            let end = subs.last().is_some_and(is_end);
            if end {
                subs.pop();
            }
            (Hir::concat(subs), start, end)
        }
        HirKind::Capture(cap) => strip_anchors(&cap.sub),
        _ => (h.clone(), false, false),
    }
}

/// The string regex (quotes included) of a JSON schema `pattern` (a search, as in JSON
/// schema, unless anchored with `^...$`).
pub fn pattern_string(pattern: &str) -> Result<String> {
    // Split the top-level alternation on the AST: HIR construction factors common prefixes
    // (like a shared `^`) out of alternations, which would hide per-branch anchors.
    let parse_err = |e: &dyn std::fmt::Display| {
        GrammarError::Schema(format!("pattern {pattern:?} does not parse: {e}"))
    };
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| parse_err(&e))?;
    let asts = match &ast {
        regex_syntax::ast::Ast::Alternation(a) => a.asts.clone(),
        other => vec![other.clone()],
    };
    let branches = asts
        .iter()
        .map(|a| {
            regex_syntax::hir::translate::Translator::new()
                .translate(pattern, a)
                .map_err(|e| parse_err(&e))
        })
        .collect::<Result<Vec<Hir>>>()?;
    let any = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(&format!("{JSON_CHAR_ANY_ESCAPE}*"))
        .expect("valid regex");
    let mut alts = Vec::new();
    for b in &branches {
        let (core, start, end) = strip_anchors(b);
        let mut parts = Vec::new();
        if !start {
            parts.push(any.clone());
        }
        parts.push(to_json_text(&core)?);
        if !end {
            parts.push(any.clone());
        }
        alts.push(Hir::concat(parts));
    }
    let mut out = String::from("\"");
    regex_syntax::hir::print::Printer::new()
        .print(&Hir::alternation(alts), &mut out)
        .map_err(|e| GrammarError::Schema(format!("pattern {pattern:?}: {e}")))?;
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::test_regex::full;

    #[test]
    fn json_char_is_one_unescaped_code_point_or_escape() {
        let re = full(JSON_CHAR);
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let want = !needs_escape(c);
            assert_eq!(
                re.is_match(c.encode_utf8(&mut buf).as_bytes()),
                want,
                "{c:?}"
            );
        }
        assert!(
            !re.is_match(b"\xED\xA0\x80") && !re.is_match(b"\xC0\x80") && !re.is_match(b"\xFF")
        );
        assert!(re.is_match(br"\u00e9") && re.is_match(br"\n") && !re.is_match(br"\ud800"));
    }

    #[test]
    fn strings_and_lengths() {
        let re = full(&string_with_length(2, Some(3)).unwrap());
        assert!(re.is_match(r#""ab""#) && re.is_match(r#""a\"b""#) && re.is_match(r#""é\u00e9""#));
        assert!(!re.is_match(r#""a""#) && !re.is_match(r#""abcd""#) && !re.is_match("\"a\nb\""));
        assert!(!re.is_match(r#""\ud800x""#));
        let re = full(&string_with_length(0, Some(1)).unwrap());
        assert!(re.is_match(r#""\ud800""#) && re.is_match(r#""""#) && !re.is_match(r#""ab""#));
        assert!(string_with_length(3, Some(2)).is_err());
    }

    #[test]
    fn formats() {
        let date = full(&format_regex("date").unwrap());
        for ok in [
            "2024-02-29",
            "2023-12-31",
            "0001-01-01",
            "2000-02-29",
            "2023-04-30",
        ] {
            assert!(date.is_match(ok), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2023-04-31",
            "0000-01-01",
            "2023-13-01",
        ] {
            assert!(!date.is_match(bad), "{bad}");
        }
        let email = full(&format_regex("email").unwrap());
        assert!(email.is_match("x.y@a.org") && !email.is_match("x@y") && !email.is_match(".@a.b"));
        let dt = full(&format_regex("date-time").unwrap());
        assert!(
            dt.is_match("2024-01-02T03:04:05.123+01:00") && dt.is_match("2024-01-02T03:04:05Z")
        );
        assert!(format_regex("hostname")
            .unwrap_err()
            .to_string()
            .contains("hostname"));
    }

    #[test]
    fn patterns_search_unless_anchored_and_escape_json() {
        let re = full(&pattern_string("^[a-z]+$").unwrap());
        assert!(re.is_match(r#""abc""#) && !re.is_match(r#""ab1""#) && !re.is_match(r#""""#));
        let re = full(&pattern_string("ab").unwrap());
        assert!(re.is_match(r#""xxabyy""#) && !re.is_match(r#""a b""#));
        let re = full(&pattern_string(r#"^a"b\\c[\n"x]$"#).unwrap());
        assert!(re.is_match(r#""a\"b\\c\n""#) && re.is_match(r#""a\"b\\c\"""#));
        assert!(re.is_match(r#""a\"b\\cx""#) && !re.is_match(r#""a"b\c""#));
        let re = full(&pattern_string("^a$|^b").unwrap());
        assert!(re.is_match(r#""a""#) && re.is_match(r#""bzz""#) && !re.is_match(r#""az""#));
        assert!(pattern_string(r"\bx").is_err());
        assert!(pattern_string("(").is_err());
    }
}

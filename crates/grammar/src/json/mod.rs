//! JSON schema to regex.
//!
//! Supported: `type` (one or a list), `enum`, `const`, `anyOf`, `oneOf` (as `anyOf`: branches
//! are not made mutually exclusive), `allOf` with one member, `$ref` into the same document
//! (`#`, `#/$defs/..`, `#/definitions/..`; recursion is an error), objects (`properties` in
//! schema order, `required`, `additionalProperties`: `false`, or absent — then no extra
//! properties are generated, which still validates — or a schema/`true` on an object without
//! `properties`, i.e. a map), arrays (`items`, `minItems`, `maxItems`, `uniqueItems: false`),
//! strings (`minLength`, `maxLength`, `pattern`, `format` date / time / date-time / email /
//! uuid), integers (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, as exact
//! ranges), numbers (the same bounds when they are integers; then no exponent is generated),
//! `boolean` and `null`. Keywords that only annotate ([`ANNOTATIONS`]) are ignored; any other
//! keyword is an error naming it. A schema without `type` takes it from its keywords (object,
//! array, string or number keywords), else it is any JSON value.
//!
//! Any JSON value (`{}`, `json_object`) is nested at most [`JsonOptions::max_depth`] deep
//! because a regex cannot count brackets.

mod numbers;
pub(crate) mod strings;
#[cfg(test)]
pub(crate) mod test_regex;

use crate::error::{GrammarError, Result};
use serde_json::{Map, Value};

/// Keywords that do not constrain the output.
pub const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

/// Keywords this module honours.
const KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

const OBJECT_KEYS: &[&str] = &["properties", "required", "additionalProperties"];
const ARRAY_KEYS: &[&str] = &["items", "minItems", "maxItems", "uniqueItems"];
const STRING_KEYS: &[&str] = &["minLength", "maxLength", "pattern", "format"];
const NUMBER_KEYS: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// Whitespace between JSON tokens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Whitespace {
    /// None at all: `{"a":1,"b":[1,2]}`.
    Compact,
    /// Up to `max` of space, newline or tab around every structural character.
    Flexible { max: u32 },
}

/// Options of the JSON-to-regex translation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JsonOptions {
    pub whitespace: Whitespace,
    /// Nesting bound of "any JSON value" (objects and arrays inside each other).
    pub max_depth: u32,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            whitespace: Whitespace::Compact,
            max_depth: 3,
        }
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(GrammarError::Schema(msg.into()))
}

/// Translate a JSON schema into an (anchored, full-match) regex.
pub fn schema_to_regex(schema: &Value, options: &JsonOptions) -> Result<String> {
    let mut conv = Converter {
        root: schema,
        options,
        ws: ws(options),
        refs: Vec::new(),
    };
    conv.schema(schema, "#")
}

/// Any JSON value, nested at most `options.max_depth` deep.
pub fn any_value_regex(options: &JsonOptions) -> String {
    let conv = Converter {
        root: &Value::Null,
        options,
        ws: ws(options),
        refs: Vec::new(),
    };
    conv.any_value(options.max_depth)
}

fn ws(options: &JsonOptions) -> String {
    match options.whitespace {
        Whitespace::Compact => String::new(),
        Whitespace::Flexible { max } => format!("[ \\n\\t]{{0,{max}}}"),
    }
}

struct Converter<'a> {
    root: &'a Value,
    options: &'a JsonOptions,
    ws: String,
    /// `$ref`s being expanded (recursion check).
    refs: Vec<String>,
}

fn literal(v: &Value) -> String {
    regex_syntax::escape(&serde_json::to_string(v).expect("serializable"))
}

fn alternation(alts: Vec<String>) -> String {
    if alts.len() == 1 {
        alts.into_iter().next().expect("one")
    } else {
        format!("({})", alts.join("|"))
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Converter<'_> {
    fn schema(&mut self, s: &Value, path: &str) -> Result<String> {
        let obj = match s {
            Value::Bool(true) => return Ok(self.any_value(self.options.max_depth)),
            Value::Bool(false) => return err(format!("{path}: the schema `false` allows nothing")),
            Value::Object(o) => o,
            _ => return err(format!("{path}: a schema must be an object or a boolean")),
        };
        for key in obj.keys() {
            if !KEYWORDS.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                return err(format!("{path}: keyword '{key}' is not supported"));
            }
        }
        let constraining: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| !ANNOTATIONS.contains(k))
            .collect();
        let alone = |key: &str| -> Result<()> {
            match constraining.iter().find(|k| **k != key) {
                Some(other) => err(format!(
                    "{path}: '{key}' combined with '{other}' is not supported"
                )),
                None => Ok(()),
            }
        };
        if let Some(r) = obj.get("$ref") {
            alone("$ref")?;
            return self.reference(r, path);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(key) {
                alone(key)?;
                let list = list.as_array().filter(|l| !l.is_empty()).ok_or_else(|| {
                    GrammarError::Schema(format!("{path}/{key}: expected a non-empty array"))
                })?;
                let alts = list
                    .iter()
                    .enumerate()
                    .map(|(i, sub)| self.schema(sub, &format!("{path}/{key}/{i}")))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(alternation(alts));
            }
        }
        if let Some(list) = obj.get("allOf") {
            alone("allOf")?;
            return match list.as_array().map(Vec::as_slice) {
                Some([one]) => self.schema(one, &format!("{path}/allOf/0")),
                _ => err(format!(
                    "{path}/allOf: only a single-member allOf is supported"
                )),
            };
        }
        let types = self.types(obj, path)?;
        for key in ["enum", "const"] {
            if let Some(v) = obj.get(key) {
                if let Some(other) = constraining.iter().find(|k| **k != key && **k != "type") {
                    return err(format!(
                        "{path}: '{key}' combined with '{other}' is not supported"
                    ));
                }
                let values = match (key, v) {
                    ("enum", Value::Array(list)) => list.clone(),
                    ("enum", _) => return err(format!("{path}/enum: expected an array")),
                    _ => vec![v.clone()],
                };
                let fits = |x: &Value| {
                    let t = type_of(x);
                    types.is_empty()
                        || types.contains(&t)
                        || (t == "integer" && types.contains(&"number"))
                };
                let alts: Vec<String> = values.iter().filter(|x| fits(x)).map(literal).collect();
                if alts.is_empty() {
                    return err(format!("{path}/{key}: no value of the allowed type"));
                }
                return Ok(alternation(alts));
            }
        }
        let types = if types.is_empty() {
            self.infer_type(obj, path)?
        } else {
            types
        };
        let Some(types) = types_or_any(types) else {
            return Ok(self.any_value(self.options.max_depth));
        };
        let alts = types
            .iter()
            .map(|t| self.typed(t, obj, path))
            .collect::<Result<Vec<_>>>()?;
        Ok(alternation(alts))
    }

    fn types(&self, obj: &Map<String, Value>, path: &str) -> Result<Vec<&'static str>> {
        const TYPES: [&str; 7] = [
            "object", "array", "string", "integer", "number", "boolean", "null",
        ];
        let names: Vec<&Value> = match obj.get("type") {
            None => return Ok(Vec::new()),
            Some(Value::Array(list)) => list.iter().collect(),
            Some(v) => vec![v],
        };
        names
            .into_iter()
            .map(|n| {
                n.as_str()
                    .and_then(|s| TYPES.iter().find(|t| **t == s).copied())
                    .ok_or_else(|| GrammarError::Schema(format!("{path}/type: unknown type {n}")))
            })
            .collect()
    }

    fn infer_type(&self, obj: &Map<String, Value>, path: &str) -> Result<Vec<&'static str>> {
        let groups = [
            ("object", OBJECT_KEYS),
            ("array", ARRAY_KEYS),
            ("string", STRING_KEYS),
            ("number", NUMBER_KEYS),
        ];
        let found: Vec<&'static str> = groups
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| obj.contains_key(*k)))
            .map(|(t, _)| *t)
            .collect();
        if found.len() > 1 {
            return err(format!(
                "{path}: no 'type', and keywords of several types ({}) are present",
                found.join(", ")
            ));
        }
        Ok(found)
    }

    fn reference(&mut self, r: &Value, path: &str) -> Result<String> {
        let Some(r) = r.as_str() else {
            return err(format!("{path}/$ref: expected a string"));
        };
        let Some(pointer) = r.strip_prefix('#') else {
            return err(format!(
                "{path}/$ref: only local references ('#...') are supported, got {r:?}"
            ));
        };
        if self.refs.iter().any(|x| x == r) {
            return err(format!(
                "{path}/$ref: recursive reference {r:?} is not supported"
            ));
        }
        let root = self.root;
        let target = root
            .pointer(pointer)
            .ok_or_else(|| GrammarError::Schema(format!("{path}/$ref: {r:?} does not resolve")))?;
        self.refs.push(r.to_string());
        let out = self.schema(target, r);
        self.refs.pop();
        out
    }

    fn typed(&mut self, t: &str, obj: &Map<String, Value>, path: &str) -> Result<String> {
        match t {
            "object" => self.object(obj, path),
            "array" => self.array(obj, path),
            "string" => self.string(obj, path),
            "integer" => self.integer(obj, path),
            "number" => self.number(obj, path),
            "boolean" => Ok("(true|false)".into()),
            "null" => Ok("null".into()),
            _ => unreachable!("types are validated"),
        }
    }

    fn uint(&self, obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>> {
        match obj.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                GrammarError::Schema(format!("{path}/{key}: expected a non-negative integer"))
            }),
        }
    }

    fn string(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String> {
        let min = self.uint(obj, "minLength", path)?;
        let max = self.uint(obj, "maxLength", path)?;
        let lengths = min.is_some() || max.is_some();
        let format = obj.get("format");
        let pattern = obj.get("pattern");
        if let (Some(_), Some(_)) = (format, pattern) {
            return err(format!(
                "{path}: 'pattern' combined with 'format' is not supported"
            ));
        }
        if lengths && (format.is_some() || pattern.is_some()) {
            let other = if format.is_some() {
                "format"
            } else {
                "pattern"
            };
            return err(format!(
                "{path}: minLength/maxLength combined with '{other}' is not supported"
            ));
        }
        if let Some(f) = format {
            let f = f
                .as_str()
                .ok_or_else(|| GrammarError::Schema(format!("{path}/format: expected a string")))?;
            return Ok(format!(
                "\"{}\"",
                strings::format_regex(f).map_err(|e| at(path, e))?
            ));
        }
        if let Some(p) = pattern {
            let p = p.as_str().ok_or_else(|| {
                GrammarError::Schema(format!("{path}/pattern: expected a string"))
            })?;
            return strings::pattern_string(p).map_err(|e| at(path, e));
        }
        strings::string_with_length(min.unwrap_or(0), max).map_err(|e| at(path, e))
    }

    /// `(value, inclusive)` of a lower or upper bound, draft 4 boolean exclusives included.
    fn bound(
        &self,
        obj: &Map<String, Value>,
        plain: &str,
        exclusive: &str,
        path: &str,
    ) -> Result<Option<(f64, bool)>> {
        let num = |key: &str, v: &Value| {
            v.as_f64()
                .ok_or_else(|| GrammarError::Schema(format!("{path}/{key}: expected a number")))
        };
        let mut out = match obj.get(plain) {
            Some(v) => Some((num(plain, v)?, true)),
            None => None,
        };
        match obj.get(exclusive) {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => match out.as_mut() {
                Some(b) => b.1 = false,
                None => return err(format!("{path}/{exclusive}: `true` without '{plain}'")),
            },
            Some(v) => {
                let x = num(exclusive, v)?;
                let tighter = match out {
                    None => true,
                    Some((y, _)) if plain == "minimum" => x >= y,
                    Some((y, _)) => x <= y,
                };
                if tighter {
                    out = Some((x, false));
                }
            }
        }
        Ok(out)
    }

    fn integer(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String> {
        let lo = self.bound(obj, "minimum", "exclusiveMinimum", path)?;
        let hi = self.bound(obj, "maximum", "exclusiveMaximum", path)?;
        let to_i64 = |x: f64, key: &str| {
            if x.abs() < 9.2e18 {
                Ok(x as i64)
            } else {
                err(format!(
                    "{path}/{key}: {x} is outside the 64-bit integer range"
                ))
            }
        };
        let lo = match lo {
            None => None,
            Some((x, inc)) => {
                let v = if inc { x.ceil() } else { x.floor() + 1.0 };
                Some(to_i64(v, "minimum")?)
            }
        };
        let hi = match hi {
            None => None,
            Some((x, inc)) => {
                let v = if inc { x.floor() } else { x.ceil() - 1.0 };
                Some(to_i64(v, "maximum")?)
            }
        };
        if lo.is_none() && hi.is_none() {
            return Ok(numbers::ANY_INTEGER.into());
        }
        numbers::integer_range(lo, hi)
            .ok_or_else(|| GrammarError::Schema(format!("{path}: the integer range is empty")))
    }

    fn number(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String> {
        let lo = self.bound(obj, "minimum", "exclusiveMinimum", path)?;
        let hi = self.bound(obj, "maximum", "exclusiveMaximum", path)?;
        if lo.is_none() && hi.is_none() {
            return Ok(numbers::ANY_NUMBER.into());
        }
        let int = |b: Option<(f64, bool)>| -> Result<numbers::Bound> {
            match b {
                None => Ok(None),
                Some((x, inc)) if x.fract() == 0.0 && x.abs() < 9.2e18 => Ok(Some((x as i64, inc))),
                Some((x, _)) => err(format!(
                    "{path}: number bounds must be integers (got {x}); fractional bounds are not supported"
                )),
            }
        };
        numbers::number_range(int(lo)?, int(hi)?)
            .ok_or_else(|| GrammarError::Schema(format!("{path}: the number range is empty")))
    }

    fn array(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String> {
        match obj.get("uniqueItems") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => return err(format!("{path}: 'uniqueItems' is not supported")),
        }
        let item = match obj.get("items") {
            None => self.any_value(self.options.max_depth.saturating_sub(1)),
            Some(Value::Array(_)) => {
                return err(format!(
                    "{path}/items: tuple (array) form of 'items' is not supported"
                ))
            }
            Some(s) => self.schema(s, &format!("{path}/items"))?,
        };
        let min = self.uint(obj, "minItems", path)?.unwrap_or(0);
        let max = self.uint(obj, "maxItems", path)?;
        if max.is_some_and(|m| m < min) {
            return err(format!("{path}: maxItems is smaller than minItems"));
        }
        Ok(self.sequence("\\[", "\\]", &item, min, max))
    }

    /// `open item (, item)* close` with `min..=max` items.
    fn sequence(&self, open: &str, close: &str, item: &str, min: u64, max: Option<u64>) -> String {
        let ws = &self.ws;
        let sep = format!("{ws},{ws}");
        let more_min = min.saturating_sub(1);
        let more = match max {
            Some(m) => format!("({sep}{item}){{{more_min},{}}}", m.saturating_sub(1)),
            None => format!("({sep}{item}){{{more_min},}}"),
        };
        if max == Some(0) {
            return format!("{open}{ws}{close}");
        }
        let body = format!("{item}{more}");
        if min == 0 {
            format!("{open}{ws}({body}{ws})?{close}")
        } else {
            format!("{open}{ws}{body}{ws}{close}")
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String> {
        let empty = Map::new();
        let props = match obj.get("properties") {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => return err(format!("{path}/properties: expected an object")),
        };
        let mut required: Vec<&str> = Vec::new();
        if let Some(r) = obj.get("required") {
            let list = r.as_array().ok_or_else(|| {
                GrammarError::Schema(format!("{path}/required: expected an array"))
            })?;
            for name in list {
                let name = name.as_str().ok_or_else(|| {
                    GrammarError::Schema(format!("{path}/required: expected strings"))
                })?;
                required.push(name);
            }
        }
        let additional = obj.get("additionalProperties");
        let ws = self.ws.clone();
        match additional {
            None | Some(Value::Bool(false)) => {}
            Some(extra) if props.is_empty() && required.is_empty() => {
                // A map: any keys, values of the given schema.
                let value = self.schema(extra, &format!("{path}/additionalProperties"))?;
                let entry = format!("{}{ws}:{ws}{value}", strings::any_string());
                return Ok(self.sequence("\\{", "\\}", &entry, 0, None));
            }
            Some(_) => {
                return err(format!(
                    "{path}/additionalProperties: extra properties beside 'properties' are not \
                     supported (set it to false)"
                ))
            }
        }
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return err(format!(
                "{path}/required: '{missing}' is not among the properties"
            ));
        }
        let mut entries = Vec::new();
        for (name, sub) in props {
            let value = self.schema(sub, &format!("{path}/properties/{name}"))?;
            let key = literal(&Value::String(name.clone()));
            entries.push((
                format!("{key}{ws}:{ws}{value}"),
                required.contains(&name.as_str()),
            ));
        }
        // after[i]: the properties from i on, when some property was already written (each
        // needs a leading comma); first[i]: the same when none was.
        let sep = format!("{ws},{ws}");
        let n = entries.len();
        let mut after = vec![String::new(); n + 1];
        let mut first = vec![String::new(); n + 1];
        for i in (0..n).rev() {
            let (entry, req) = &entries[i];
            if *req {
                after[i] = format!("{sep}{entry}{}", after[i + 1]);
                first[i] = format!("{entry}{}", after[i + 1]);
            } else {
                after[i] = format!("({sep}{entry})?{}", after[i + 1]);
                first[i] = if first[i + 1].is_empty() {
                    format!("({entry}{})?", after[i + 1])
                } else {
                    format!("({entry}{}|{})", after[i + 1], first[i + 1])
                };
            }
        }
        let body = &first[0];
        if body.is_empty() {
            return Ok(format!("\\{{{ws}\\}}"));
        }
        Ok(format!("\\{{{ws}{body}{ws}\\}}"))
    }

    fn any_value(&self, depth: u32) -> String {
        let scalar = format!(
            "({}|{}|true|false|null)",
            strings::any_string(),
            numbers::ANY_NUMBER
        );
        if depth == 0 {
            return scalar;
        }
        let inner = self.any_value(depth - 1);
        let ws = &self.ws;
        let array = self.sequence("\\[", "\\]", &inner, 0, None);
        let entry = format!("{}{ws}:{ws}{inner}", strings::any_string());
        let object = self.sequence("\\{", "\\}", &entry, 0, None);
        format!("({scalar}|{array}|{object})")
    }
}

fn types_or_any(types: Vec<&'static str>) -> Option<Vec<&'static str>> {
    if types.is_empty() {
        None
    } else {
        Some(types)
    }
}

fn at(path: &str, e: GrammarError) -> GrammarError {
    match e {
        GrammarError::Schema(m) => GrammarError::Schema(format!("{path}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::test_regex::{full, Full};
    use serde_json::json;

    fn compile(schema: Value) -> Full {
        full(&schema_to_regex(&schema, &JsonOptions::default()).unwrap())
    }

    fn error(schema: Value) -> String {
        schema_to_regex(&schema, &JsonOptions::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn objects_keep_order_and_optional_properties() {
        let re = compile(json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
            "required": ["b"]
        }));
        for ok in [
            r#"{"b":"x"}"#,
            r#"{"a":1,"b":""}"#,
            r#"{"b":"","c":true}"#,
            r#"{"a":-3,"b":"","c":false}"#,
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"b":"x","a":1}"#,
            r#"{"b":"x",}"#,
            r#"{,"b":"x"}"#,
        ] {
            assert!(!re.is_match(bad), "{bad}");
        }
        let all_optional =
            compile(json!({"properties": {"a": {"type": "null"}, "b": {"type": "null"}}}));
        for ok in [
            "{}",
            r#"{"a":null}"#,
            r#"{"b":null}"#,
            r#"{"a":null,"b":null}"#,
        ] {
            assert!(all_optional.is_match(ok), "{ok}");
        }
        assert!(!all_optional.is_match(r#"{"a":null,}"#));
    }

    #[test]
    fn properties_keep_schema_order() {
        let schema = r#"{"type": "object", "properties": {"z": {"type": "null"}, "a": {"type": "null"}},
                         "required": ["z", "a"]}"#;
        let schema: Value = serde_json::from_str(schema).unwrap();
        let re = compile(schema);
        assert!(re.is_match(r#"{"z":null,"a":null}"#) && !re.is_match(r#"{"a":null,"z":null}"#));
    }

    #[test]
    fn arrays_enums_refs_and_unions() {
        let re = compile(
            json!({"type": "array", "items": {"enum": ["x", 1, null]}, "minItems": 1, "maxItems": 2}),
        );
        assert!(re.is_match(r#"["x"]"#) && re.is_match(r#"[1,null]"#));
        assert!(!re.is_match("[]") && !re.is_match(r#"[1,1,1]"#) && !re.is_match(r#"["y"]"#));
        let re = compile(json!({
            "$defs": {"p": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 12}}, "required": ["n"]}},
            "anyOf": [{"$ref": "#/$defs/p"}, {"type": "null"}]
        }));
        assert!(re.is_match(r#"{"n":12}"#) && re.is_match("null") && !re.is_match(r#"{"n":13}"#));
        let re = compile(json!({"type": ["string", "null"], "maxLength": 1}));
        assert!(re.is_match("null") && re.is_match(r#""a""#) && !re.is_match(r#""ab""#));
        let map = compile(json!({"type": "object", "additionalProperties": {"type": "integer"}}));
        assert!(
            map.is_match(r#"{"x":1,"y":2}"#) && map.is_match("{}") && !map.is_match(r#"{"x":"1"}"#)
        );
    }

    #[test]
    fn unsupported_keywords_are_named() {
        assert!(error(json!({"type": "string", "minProperties": 1})).contains("'minProperties'"));
        assert!(error(json!({"type": "array", "uniqueItems": true})).contains("uniqueItems"));
        assert!(error(json!({"type": "number", "multipleOf": 2})).contains("multipleOf"));
        assert!(error(json!({"type": "string", "format": "ipv4"})).contains("ipv4"));
        assert!(error(json!({"type": "number", "minimum": 0.5})).contains("0.5"));
        let rec = json!({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"});
        assert!(error(rec).contains("recursive"));
        assert!(error(
            json!({"type": "object", "properties": {"a": {}}, "additionalProperties": true})
        )
        .contains("additionalProperties"));
        assert!(error(json!({"type": "object", "required": ["z"]})).contains("'z'"));
        assert!(error(json!({"$ref": "other.json#/x"})).contains("local"));
    }

    #[test]
    fn flexible_whitespace_and_any_value() {
        let options = JsonOptions {
            whitespace: Whitespace::Flexible { max: 4 },
            max_depth: 2,
        };
        let schema = json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}});
        let re = full(&schema_to_regex(&schema, &options).unwrap());
        assert!(re.is_match("{ \"a\" : [ 1 ,\n2 ] }") && re.is_match(r#"{"a":[]}"#));
        assert!(!re.is_match("{      \"a\":[]}"));
        let any = full(&any_value_regex(&options));
        assert!(
            any.is_match(r#"{"a": [1, 2]}"#) && any.is_match("[[1]]") && any.is_match("-1.5e3")
        );
        assert!(!any.is_match("[[[1]]]") && !any.is_match("{"));
    }
}

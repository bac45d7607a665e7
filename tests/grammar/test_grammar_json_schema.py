"""JSON schemas on SmolLM2's vocabulary: random walks over the masks validate; gaps error."""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest
from grammar_helpers import ByteTokens, accepts_fully, random_walk

from sglrs.grammar import Grammar, TokenizerInfo

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

SCHEMAS: list[dict[str, Any]] = [
    PERSON,
    {
        "$defs": {
            "point": {
                "type": "object",
                "properties": {
                    "x": {"type": "number", "minimum": -10, "exclusiveMaximum": 10},
                    "y": {"type": "integer", "exclusiveMinimum": -5, "maximum": 1000},
                },
                "required": ["x", "y"],
            }
        },
        "type": "object",
        "properties": {
            "kind": {"enum": ["line", "polygon"]},
            "points": {
                "type": "array",
                "items": {"$ref": "#/$defs/point"},
                "minItems": 1,
                "maxItems": 3,
            },
            "closed": {"type": "boolean"},
            "note": {
                "anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[A-Z][a-z]{0,5}$"}]
            },
        },
        "required": ["kind", "points", "note"],
    },
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "time"},
            "when": {"type": "string", "format": "date-time"},
            "code": {"const": "X-1"},
            "level": {"type": ["integer", "null"], "minimum": 1, "maximum": 3},
        },
        "required": ["id", "day", "at", "when", "code", "level"],
    },
    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 4},
    {"type": "object", "additionalProperties": {"type": "boolean"}},
    {"type": "string", "pattern": r"^[0-9]+-"},
]


def validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_random_walks_validate(smol_info: TokenizerInfo, index: int) -> None:
    schema = SCHEMAS[index]
    grammar = Grammar.from_json_schema(schema, smol_info)
    check = validator(schema)
    rng = random.Random(index)
    finished = 0
    for _ in range(6):
        out = random_walk(grammar, smol_info, rng)
        if out is None:
            continue
        finished += 1
        value = json.loads(out.decode("utf-8"))
        check.validate(value)
    assert finished >= 3


def test_flexible_whitespace_and_any_json(smol_info: TokenizerInfo) -> None:
    rng = random.Random(7)
    flexible = Grammar.from_json_schema(PERSON, smol_info, whitespace="flexible", max_whitespace=4)
    check = validator(PERSON)
    for _ in range(4):
        out = random_walk(flexible, smol_info, rng)
        if out is not None:
            check.validate(json.loads(out))
    tok = ByteTokens(smol_info)
    pretty = json.dumps({"name": "Al", "age": 3, "tags": ["a"]}, indent=1).encode()
    assert accepts_fully(flexible, tok.encode(pretty))
    assert not accepts_fully(Grammar.from_json_schema(PERSON, smol_info), tok.encode(pretty))
    any_json = Grammar.json_object(smol_info, max_depth=2)
    for _ in range(4):
        out = random_walk(any_json, smol_info, rng)
        if out is not None:
            json.loads(out)


@pytest.mark.parametrize(
    ("bounds", "window"),
    [
        ({"minimum": -17, "maximum": 1234}, range(-60, 1300)),
        ({"exclusiveMinimum": 99, "exclusiveMaximum": 1000}, range(50, 1050)),
        ({"minimum": 7}, range(-20, 120)),
        ({"maximum": -3}, range(-120, 20)),
        ({"minimum": 1.5, "maximum": 9.5}, range(-5, 15)),
    ],
)
def test_integer_ranges_are_exact(
    smol_info: TokenizerInfo, bounds: dict[str, float], window: range
) -> None:
    schema = {"type": "integer", **bounds}
    grammar = Grammar.from_json_schema(schema, smol_info)
    check = validator(schema)
    tok = ByteTokens(smol_info)
    for x in window:
        want = check.is_valid(x)
        assert accepts_fully(grammar, tok.encode(str(x).encode())) == want, x
    for bad in ["-0", "01", "+1", "1.0"]:
        assert not accepts_fully(grammar, tok.encode(bad.encode()))


def test_number_ranges_on_a_grid(smol_info: TokenizerInfo) -> None:
    schema = {"type": "number", "exclusiveMinimum": -2, "maximum": 3}
    grammar = Grammar.from_json_schema(schema, smol_info)
    check = validator(schema)
    tok = ByteTokens(smol_info)
    for tenths in range(-40, 50):
        text = f"{tenths / 10:.1f}"
        assert accepts_fully(grammar, tok.encode(text.encode())) == check.is_valid(tenths / 10)


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "string", "minProperties": 1}, "minProperties"),
        ({"type": "object", "patternProperties": {"a": {}}}, "patternProperties"),
        ({"type": "number", "multipleOf": 3}, "multipleOf"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "array", "contains": {"type": "null"}}, "contains"),
        ({"type": "array", "prefixItems": [{"type": "null"}]}, "prefixItems"),
        ({"type": "string", "format": "ipv4"}, "ipv4"),
        ({"if": {"type": "null"}}, "if"),
        ({"not": {"type": "null"}}, "not"),
        ({"type": "number", "maximum": 2.5}, "2.5"),
        ({"allOf": [{"type": "null"}, {"type": "null"}]}, "allOf"),
        ({"type": "object", "properties": {"a": {}}, "additionalProperties": True}, "additional"),
        (
            {"$defs": {"n": {"properties": {"n": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"},
            "recursive",
        ),
        ({"$ref": "https://example.com/s.json"}, "local"),
        ({"type": "thing"}, "unknown type"),
        ({"type": "string", "pattern": "a", "maxLength": 3}, "maxLength"),
    ],
)
def test_unsupported_keywords_are_named(
    tiny_info: TokenizerInfo, schema: dict[str, Any], keyword: str
) -> None:
    with pytest.raises(ValueError, match=keyword):
        Grammar.from_json_schema(schema, tiny_info)


def test_annotations_are_ignored(tiny_info: TokenizerInfo) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "T",
        "description": "d",
        "type": "object",
        "properties": {"a": {"type": "null", "default": None, "examples": [None]}},
        "required": ["a"],
    }
    tok = ByteTokens(tiny_info)
    assert accepts_fully(Grammar.from_json_schema(schema, tiny_info), tok.encode(b'{"a":null}'))

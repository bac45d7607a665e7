"""The expressions a program appends to its state: text, gen, select and role markers.

`s += "a" + gen("x")` builds a `Concat`; the executor runs its parts in order. Expressions are
immutable values, so one may be appended to many states (e.g. every branch of a fork).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sglrs.lang.choices import ChoicesMethod

ROLES = ("system", "user", "assistant")


class Expr:
    """An expression; `+` with a str or another expression concatenates."""

    def __add__(self, other: Any) -> Concat:
        return Concat((self, to_expr(other)))

    def __radd__(self, other: Any) -> Concat:
        return Concat((to_expr(other), self))


@dataclass(frozen=True)
class Text(Expr):
    value: str


@dataclass(frozen=True)
class Concat(Expr):
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Gen(Expr):
    """Generate text into variable `name`; `params` use SGLang's `sampling_params` names."""

    name: str | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Select(Expr):
    """Append the best of `choices` (scored by `method`) and capture it as `name`."""

    name: str | None
    choices: tuple[str, ...]
    temperature: float = 0.0
    method: ChoicesMethod | None = None


@dataclass(frozen=True)
class RoleBegin(Expr):
    role: str


@dataclass(frozen=True)
class RoleEnd(Expr):
    role: str


def to_expr(value: Any) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, str):
        return Text(value)
    raise TypeError(
        f"a program can append str or sglrs.lang expressions, not {type(value).__name__}"
    )


def flatten(expr: Expr) -> list[Expr]:
    """The primitive expressions of `expr`, in order."""
    if isinstance(expr, Concat):
        return [leaf for part in expr.parts for leaf in flatten(part)]
    return [expr]


def role(name: str, content: Any = None) -> Expr:
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r}; roles are {', '.join(ROLES)}")
    if content is None:
        return Concat((RoleBegin(name), RoleEnd(name)))
    return Concat((RoleBegin(name), to_expr(content), RoleEnd(name)))


# gen() keyword -> SGLang sampling_params field.
_GEN_PARAMS = {
    "max_tokens": "max_new_tokens",
    "min_tokens": "min_new_tokens",
    "stop": "stop",
    "stop_token_ids": "stop_token_ids",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repetition_penalty": "repetition_penalty",
    "ignore_eos": "ignore_eos",
    "sampling_seed": "sampling_seed",
    "regex": "regex",
    "json_schema": "json_schema",
}


def sampling_params(**kwargs: Any) -> dict[str, Any]:
    """gen()'s keywords as `sampling_params` (None: not set, the run's default applies)."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key not in _GEN_PARAMS:
            raise TypeError(f"unknown generation parameter {key!r}")
        if key == "stop" and isinstance(value, str):
            value = [value]
        elif key == "stop" or key == "stop_token_ids":
            value = list(value)
        elif key == "json_schema" and not isinstance(value, str):
            if not isinstance(value, dict):
                raise TypeError("json_schema must be a dict or a JSON string")
            value = json.dumps(value)
        out[_GEN_PARAMS[key]] = value
    if "regex" in out and "json_schema" in out:
        raise ValueError("gen(): give at most one of regex and json_schema")
    return out

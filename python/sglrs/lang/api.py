"""The public names of the frontend language (`import sglrs as sgl; sgl.gen(...)`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sglrs.lang.backends.base import Backend, get_default_backend, set_default_backend
from sglrs.lang.backends.engine_backend import EngineBackend
from sglrs.lang.backends.runtime_endpoint import RuntimeEndpoint
from sglrs.lang.choices import (
    ChoicesMethod,
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)
from sglrs.lang.ir import Expr, Gen, RoleBegin, RoleEnd, Select, role, sampling_params
from sglrs.lang.program import SglFunction
from sglrs.lang.state import ProgramState, ProgramStateGroup


def function(func: Callable[..., Any] | None = None) -> Any:
    """Decorate `def prog(s, ...)`; use as `@function` or `@function()`."""
    if func is None:
        return SglFunction
    return SglFunction(func)


def gen(
    name: str | None = None,
    max_tokens: int | None = None,
    *,
    min_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    stop_token_ids: Sequence[int] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    min_p: float | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    repetition_penalty: float | None = None,
    ignore_eos: bool | None = None,
    sampling_seed: int | None = None,
    regex: str | None = None,
    json_schema: str | dict[str, Any] | None = None,
    choices: Sequence[str] | None = None,
    choices_method: ChoicesMethod | None = None,
) -> Expr:
    """Generate into variable `name`; unset parameters take the run's defaults.

    With `choices`, this is `select(name, choices)`."""
    if choices is not None:
        given = {"max_tokens": max_tokens, "stop": stop, "regex": regex, "json_schema": json_schema}
        clash = [k for k, v in given.items() if v is not None]
        if clash:
            raise ValueError(f"gen(choices=...) cannot also take {clash[0]}")
        return select(name, choices, temperature=temperature or 0.0, choices_method=choices_method)
    if choices_method is not None:
        raise ValueError("choices_method needs choices")
    _check_name(name)
    params = sampling_params(
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        stop=stop,
        stop_token_ids=stop_token_ids,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        min_p=min_p,
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
        repetition_penalty=repetition_penalty,
        ignore_eos=ignore_eos,
        sampling_seed=sampling_seed,
        regex=regex,
        json_schema=json_schema,
    )
    return Gen(name, params)


def select(
    name: str | None = None,
    choices: Sequence[str] | None = None,
    temperature: float = 0.0,
    choices_method: ChoicesMethod | None = None,
) -> Expr:
    """Append the most likely of `choices` (token-length-normalized logprob by default)."""
    _check_name(name)
    if choices is None or isinstance(choices, str) or len(choices) == 0:
        raise ValueError(f"select({name!r}): choices must be a non-empty list of strings")
    if not all(isinstance(c, str) for c in choices):
        raise TypeError(f"select({name!r}): every choice must be a string")
    if temperature < 0:
        raise ValueError(f"select({name!r}): temperature must be >= 0")
    if choices_method is not None and not isinstance(choices_method, ChoicesMethod):
        raise TypeError(f"select({name!r}): choices_method must be a ChoicesMethod")
    return Select(name, tuple(choices), float(temperature), choices_method)


def _check_name(name: Any) -> None:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"a variable name must be a string, not {type(name).__name__}")


def system(content: Any = None) -> Expr:
    return role("system", content)


def user(content: Any = None) -> Expr:
    return role("user", content)


def assistant(content: Any = None) -> Expr:
    return role("assistant", content)


def system_begin() -> Expr:
    return RoleBegin("system")


def system_end() -> Expr:
    return RoleEnd("system")


def user_begin() -> Expr:
    return RoleBegin("user")


def user_end() -> Expr:
    return RoleEnd("user")


def assistant_begin() -> Expr:
    return RoleBegin("assistant")


def assistant_end() -> Expr:
    return RoleEnd("assistant")


def flush_cache(backend: Backend | None = None) -> None:
    chosen = backend or get_default_backend()
    if chosen is None:
        raise ValueError("no backend to flush")
    chosen.flush_cache()


__all__ = [
    "Backend",
    "ChoicesMethod",
    "EngineBackend",
    "ProgramState",
    "ProgramStateGroup",
    "RuntimeEndpoint",
    "SglFunction",
    "assistant",
    "assistant_begin",
    "assistant_end",
    "flush_cache",
    "function",
    "gen",
    "get_default_backend",
    "greedy_token_selection",
    "select",
    "set_default_backend",
    "system",
    "system_begin",
    "system_end",
    "token_length_normalized",
    "unconditional_likelihood_normalized",
    "user",
    "user_begin",
    "user_end",
]

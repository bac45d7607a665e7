"""SamplingParams: SGLang's per-request sampling parameters, their defaults and validation.

`from_dict` is the only way in from a request body: it rejects unknown fields, SGLang fields
sglrs does not implement, wrong types and out-of-range values with a `ValueError` whose message
names the field (`sampling_params.<name> ...`). `null` means "the default", as in SGLang, except
for `max_new_tokens` (SGLang's null means "up to the context length", which sglrs does not do).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# Below this temperature a request is greedy (SGLang's _SAMPLING_EPS).
GREEDY_TEMPERATURE = 1e-6
MAX_N = 64
_U64 = (1 << 64) - 1

# SGLang sampling fields sglrs rejects instead of ignoring.
UNSUPPORTED_FIELDS = ("ebnf", "structural_tag", "stop_regex", "custom_params")
# Accepted alias -> canonical name.
_ALIASES = {"seed": "sampling_seed"}


def _err(name: str, what: str, value: Any) -> ValueError:
    return ValueError(f"sampling_params.{name} {what}, got {value!r}")


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(name, "must be an integer", value)
    return value


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(name, "must be a number", value)
    if not math.isfinite(value):
        raise _err(name, "must be finite", value)
    return float(value)


def _ranged(name: str, value: Any, ok: Any, what: str) -> float:
    """A finite number for which `ok(x)` holds; the error shows the value as sent."""
    x = _float(name, value)
    if not ok(x):
        raise _err(name, what, value)
    return x


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _err(name, "must be a boolean", value)
    return value


def _str_list(name: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise _err(name, "must be a string or a list of strings", value)
    if any(s == "" for s in items):
        raise _err(name, "must not contain empty strings", value)
    return list(items)


def _token_id_list(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple, set)):
        raise _err(name, "must be a list of token ids", value)
    ids = []
    for t in value:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise _err(name, "must contain only non-negative integer token ids", value)
        ids.append(t)
    return sorted(set(ids))


def _logit_bias(value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        raise _err("logit_bias", "must be an object of token id -> bias", value)
    out: dict[int, float] = {}
    for key, bias in value.items():
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():
            token = int(key)
        elif isinstance(key, int) and not isinstance(key, bool):
            token = key
        else:
            raise _err("logit_bias", "keys must be token ids (integers or integer strings)", key)
        if token < 0:
            raise _err("logit_bias", "keys must be non-negative token ids", key)
        out[token] = _float(f"logit_bias[{key!r}]", bias)
    return out


@dataclass
class SamplingParams:
    """One request's sampling parameters (SGLang names and defaults)."""

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    logit_bias: dict[int, float] = field(default_factory=dict)
    sampling_seed: int | None = None
    n: int = 1
    regex: str | None = None
    json_schema: str | None = None
    stream_interval: int | None = None

    def __post_init__(self) -> None:
        self._check()

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplingParams:
        """Parse a request's `sampling_params` object; `ValueError` names any bad field."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"sampling_params must be an object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            name = _ALIASES.get(key, key)
            if key in UNSUPPORTED_FIELDS:
                # Null or empty asks for nothing (SGLang's client always sends stop_regex: []).
                if value is None or value == [] or value == "":
                    continue
                raise ValueError(f"sampling_params.{key} is not supported by sglrs")
            if name not in known:
                raise ValueError(f"sampling_params.{key} is not a known sampling parameter")
            if name in kwargs and kwargs[name] != value:
                raise ValueError(f"sampling_params.{key} conflicts with sampling_params.{name}")
            if value is None and name != "max_new_tokens" and name not in _NULLABLE:
                continue  # SGLang: null means the default
            if name != key and value is not None:
                _int(key, value)  # an alias's error names the alias as sent
            kwargs[name] = cls._coerce(name, value)
        return cls(**kwargs)

    @staticmethod
    def _coerce(name: str, value: Any) -> Any:
        """Normalize the JSON shapes SGLang accepts (str stop, str-keyed logit_bias, ...)."""
        if name == "stop":
            return _str_list(name, value)
        if name == "stop_token_ids":
            return _token_id_list(name, value)
        if name == "logit_bias":
            return _logit_bias(value)
        return value

    def to_dict(self) -> dict[str, Any]:
        """A JSON/msgpack-safe dict that `from_dict` turns back into an equal object."""
        d = dataclasses.asdict(self)
        d["logit_bias"] = {str(k): v for k, v in self.logit_bias.items()}
        return d

    # ---- validation ---------------------------------------------------------------------------

    def _check(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise _err("max_new_tokens", "must be an integer >= 0", self.max_new_tokens)
        if self.max_new_tokens < 0:
            raise _err("max_new_tokens", "must be >= 0", self.max_new_tokens)
        if not 0 <= _int("min_new_tokens", self.min_new_tokens) <= self.max_new_tokens:
            raise _err(
                "min_new_tokens", f"must be in [0, max_new_tokens={self.max_new_tokens}]",
                self.min_new_tokens,
            )  # fmt: skip
        self.temperature = _ranged(
            "temperature", self.temperature, lambda x: x >= 0, "must be >= 0"
        )
        self.top_p = _ranged("top_p", self.top_p, lambda x: 0 < x <= 1, "must be in (0, 1]")
        top_k = _int("top_k", self.top_k)
        if top_k != -1 and top_k < 1:
            raise _err("top_k", "must be -1 (all tokens) or >= 1", top_k)
        self.min_p = _ranged("min_p", self.min_p, lambda x: 0 <= x <= 1, "must be in [0, 1]")
        for name in ("frequency_penalty", "presence_penalty"):
            value = _ranged(name, getattr(self, name), lambda x: -2 <= x <= 2, "must be in [-2, 2]")
            setattr(self, name, value)
        self.repetition_penalty = _ranged(
            "repetition_penalty", self.repetition_penalty, lambda x: 0 < x <= 2, "must be in (0, 2]"
        )
        self.stop = _str_list("stop", self.stop)
        self.stop_token_ids = _token_id_list("stop_token_ids", self.stop_token_ids)
        for name in ("ignore_eos", "skip_special_tokens", "spaces_between_special_tokens"):
            _bool(name, getattr(self, name))
        _bool("no_stop_trim", self.no_stop_trim)
        self.logit_bias = _logit_bias(self.logit_bias)
        if self.sampling_seed is not None:
            # Fold any integer (negative ones included) into the 64 bits the sampler hashes.
            self.sampling_seed = _int("sampling_seed", self.sampling_seed) & _U64
        if not 1 <= _int("n", self.n) <= MAX_N:
            raise _err("n", f"must be in [1, {MAX_N}]", self.n)
        for name in ("regex", "json_schema"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise _err(name, "must be a string", value)
        if self.regex is not None and self.json_schema is not None:
            raise ValueError("sampling_params: at most one of regex and json_schema may be set")
        if self.stream_interval is not None and _int("stream_interval", self.stream_interval) < 1:
            raise _err("stream_interval", "must be >= 1", self.stream_interval)

    def verify(self, vocab_size: int) -> None:
        """Check the token ids (logit_bias keys, stop_token_ids) against the vocabulary."""
        for token in self.logit_bias:
            if token >= vocab_size:
                raise _err("logit_bias", f"keys must be token ids in [0, {vocab_size})", token)
        for token in self.stop_token_ids:
            if token >= vocab_size:
                raise _err("stop_token_ids", f"must be token ids in [0, {vocab_size})", token)

    # ---- derived -----------------------------------------------------------------------------

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE

    @property
    def has_grammar(self) -> bool:
        return self.regex is not None or self.json_schema is not None


# Fields whose null is a value of its own rather than "the default".
_NULLABLE = {"sampling_seed", "regex", "json_schema", "stream_interval"}

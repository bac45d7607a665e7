"""SamplingParams: defaults, normalization, and every rejected field named in the error."""

from __future__ import annotations

import dataclasses

import pytest

from sglrs.sampling.params import MAX_N, UNSUPPORTED_FIELDS, SamplingParams


def test_defaults_match_sglang() -> None:
    p = SamplingParams.from_dict({})
    assert (p.max_new_tokens, p.min_new_tokens, p.temperature, p.top_p, p.top_k) == (
        128, 0, 1.0, 1.0, -1,
    )  # fmt: skip
    assert (p.min_p, p.frequency_penalty, p.presence_penalty, p.repetition_penalty) == (
        0.0, 0.0, 0.0, 1.0,
    )  # fmt: skip
    assert p.stop == [] and p.stop_token_ids == [] and p.logit_bias == {}
    assert not p.ignore_eos and p.skip_special_tokens and p.spaces_between_special_tokens
    assert not p.no_stop_trim and p.sampling_seed is None and p.n == 1
    assert p.regex is None and p.json_schema is None and p.stream_interval is None
    assert not p.is_greedy


def test_normalization_and_aliases() -> None:
    p = SamplingParams.from_dict(
        {
            "stop": "###",
            "stop_token_ids": [7, 3, 7],
            "logit_bias": {"12": -1.5, 4: 2},
            "seed": 42,
            "temperature": 0,
            "top_p": None,  # null = default, as in SGLang
        }
    )
    assert p.stop == ["###"]
    assert p.stop_token_ids == [3, 7]
    assert p.logit_bias == {12: -1.5, 4: 2.0}
    assert p.sampling_seed == 42
    assert p.is_greedy and p.top_p == 1.0
    assert SamplingParams.from_dict({"temperature": 1e-7}).is_greedy
    assert SamplingParams.from_dict({"sampling_seed": -1}).sampling_seed == (1 << 64) - 1


def test_to_dict_round_trips() -> None:
    p = SamplingParams.from_dict(
        {"stop": ["a", "b"], "logit_bias": {"5": 1.0}, "sampling_seed": 9, "regex": "[ab]+"}
    )
    assert SamplingParams.from_dict(p.to_dict()) == p
    assert dataclasses.replace(p, max_new_tokens=0).max_new_tokens == 0


BAD = [
    ("max_new_tokens", -1),
    ("max_new_tokens", None),
    ("max_new_tokens", 1.5),
    ("min_new_tokens", -1),
    ("min_new_tokens", 200),  # > max_new_tokens (128)
    ("temperature", -0.1),
    ("temperature", float("nan")),
    ("temperature", "hot"),
    ("top_p", 0),
    ("top_p", 1.01),
    ("top_k", 0),
    ("top_k", -2),
    ("top_k", 2.0),
    ("min_p", -0.1),
    ("min_p", 1.5),
    ("frequency_penalty", 2.5),
    ("frequency_penalty", -2.1),
    ("presence_penalty", 3),
    ("repetition_penalty", 0),
    ("repetition_penalty", 2.1),
    ("stop", 5),
    ("stop", ["ok", ""]),
    ("stop", ["ok", 1]),
    ("stop_token_ids", [1, -2]),
    ("stop_token_ids", "12"),
    ("ignore_eos", 1),
    ("skip_special_tokens", "yes"),
    ("spaces_between_special_tokens", 0),
    ("no_stop_trim", "no"),
    ("logit_bias", {"abc": 1.0}),
    ("logit_bias", {"-3": 1.0}),
    ("logit_bias", [1, 2]),
    ("sampling_seed", "7"),
    ("seed", 1.5),
    ("n", 0),
    ("n", MAX_N + 1),
    ("regex", 5),
    ("json_schema", {"type": "object"}),
    ("stream_interval", 0),
    ("stream_interval", True),
]


@pytest.mark.parametrize(("field", "value"), BAD)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"sampling_params\.{field}"):
        SamplingParams.from_dict({field: value})


def test_error_message_format() -> None:
    with pytest.raises(ValueError) as e:
        SamplingParams.from_dict({"top_p": 0})
    assert str(e.value) == "sampling_params.top_p must be in (0, 1], got 0"


def test_logit_bias_value_named() -> None:
    with pytest.raises(ValueError, match=r"sampling_params\.logit_bias\['3'\] must be finite"):
        SamplingParams.from_dict({"logit_bias": {"3": float("inf")}})


def test_unknown_field_rejected() -> None:
    with pytest.raises(ValueError, match=r"sampling_params\.temprature is not a known"):
        SamplingParams.from_dict({"temprature": 0.5})


@pytest.mark.parametrize("field", UNSUPPORTED_FIELDS)
def test_unsupported_fields_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=rf"sampling_params\.{field} is not supported"):
        SamplingParams.from_dict({field: "x"})
    # An explicit null, or an empty value, asks for nothing and is accepted.
    for nothing in (None, [], ""):
        assert SamplingParams.from_dict({field: nothing}) == SamplingParams()


def test_one_grammar_at_most() -> None:
    with pytest.raises(ValueError, match="at most one of regex and json_schema"):
        SamplingParams.from_dict({"regex": "a", "json_schema": "{}"})


def test_seed_alias_conflict() -> None:
    with pytest.raises(ValueError, match=r"sampling_params\.seed conflicts"):
        SamplingParams.from_dict({"sampling_seed": 1, "seed": 2})


def test_not_an_object() -> None:
    with pytest.raises(ValueError, match="sampling_params must be an object"):
        SamplingParams.from_dict([1])  # type: ignore[arg-type]


def test_verify_vocab_range() -> None:
    SamplingParams.from_dict({"logit_bias": {"9": 1.0}, "stop_token_ids": [9]}).verify(10)
    with pytest.raises(ValueError, match=r"sampling_params\.logit_bias keys must be token ids"):
        SamplingParams.from_dict({"logit_bias": {"10": 1.0}}).verify(10)
    with pytest.raises(ValueError, match=r"sampling_params\.stop_token_ids must be token ids"):
        SamplingParams.from_dict({"stop_token_ids": [10]}).verify(10)

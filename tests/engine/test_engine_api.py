"""The offline Engine API end to end on the tiny random Llama (real SmolLM2 tokenizer)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from tiny_model import tiny_llama_dir

from sglrs.engine.engine import Engine


@pytest.fixture(scope="module")
def engine():
    with Engine(
        model_path=str(tiny_llama_dir()),
        max_total_tokens=8192,
        chunked_prefill_size=64,
        log_level="warning",
        random_seed=0,
    ) as eng:
        yield eng


def test_greedy_is_deterministic_and_reports_meta(engine):
    params = {"max_new_tokens": 10, "temperature": 0}
    a = engine.generate("The quick brown fox", params)
    b = engine.generate("The quick brown fox", params)
    assert a["output_ids"] == b["output_ids"] and len(a["output_ids"]) == 10
    assert a["meta_info"]["finish_reason"] == {"type": "length", "length": 10}
    assert a["meta_info"]["prompt_tokens"] == len(engine.tokenizer.encode("The quick brown fox"))
    assert b["meta_info"]["cached_tokens"] == b["meta_info"]["prompt_tokens"] - 1
    assert a["text"] == engine.tokenizer.decode(a["output_ids"])


def test_seeded_sampling_reproduces_alone_and_in_a_batch(engine):
    seeded = {"max_new_tokens": 12, "temperature": 1.0, "sampling_seed": 1234}
    alone = engine.generate("Once upon a time", seeded)["output_ids"]
    batch = engine.generate(
        ["Once upon a time", "Another prompt", "A third one"],
        [seeded, {"max_new_tokens": 12, "temperature": 1.0}, {"max_new_tokens": 5}],
    )
    assert batch[0]["output_ids"] == alone
    other = engine.generate("Once upon a time", {**seeded, "sampling_seed": 99})["output_ids"]
    assert other != alone


def test_stop_string_trims_and_reports_it(engine):
    free = engine.generate("Tell me", {"max_new_tokens": 16, "temperature": 0})["text"]
    stop = free[3:6]
    assert stop.strip(), "the tiny model's text should have a usable stop string"
    out = engine.generate("Tell me", {"max_new_tokens": 16, "temperature": 0, "stop": stop})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert out["text"] == free[: free.index(stop)]
    kept = engine.generate(
        "Tell me", {"max_new_tokens": 16, "temperature": 0, "stop": stop, "no_stop_trim": True}
    )
    assert kept["text"].startswith(free[: free.index(stop) + len(stop)])


def test_stop_token_ids(engine):
    free = engine.generate("Tell me", {"max_new_tokens": 8, "temperature": 0})["output_ids"]
    out = engine.generate(
        "Tell me", {"max_new_tokens": 8, "temperature": 0, "stop_token_ids": [free[2]]}
    )
    assert out["output_ids"][-1] == free[2] or len(out["output_ids"]) == 3
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": free[2]}
    assert len(out["output_ids"]) == free.index(free[2]) + 1


def test_regex_outputs_always_match(engine):
    pattern = r'\{"result": "[a-z]{1,8}", "confidence": [0-9]{1,2}\}'
    outs = engine.generate(
        ["Answer:"] * 6, {"max_new_tokens": 40, "temperature": 1.0, "regex": pattern}
    )
    for out in outs:
        assert re.fullmatch(pattern, out["text"]), out["text"]
        assert out["meta_info"]["finish_reason"]["type"] == "stop"


def test_json_schema_outputs_validate(engine):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "age": {"type": "integer", "minimum": 1, "maximum": 120},
            "role": {"enum": ["admin", "user"]},
        },
        "required": ["name", "age", "role"],
        "additionalProperties": False,
    }
    outs = engine.generate(
        ["Person:"] * 4,
        {"max_new_tokens": 60, "temperature": 1.0, "json_schema": json.dumps(schema)},
    )
    for out in outs:
        jsonschema.validate(json.loads(out["text"]), schema)


def test_n_samples_share_the_cached_prompt(engine):
    prompt = "A long shared prompt about the history of computing machines and their makers"
    outs = engine.generate(prompt, {"max_new_tokens": 4, "temperature": 1.0, "n": 3})
    assert len(outs) == 3
    prompt_tokens = outs[0]["meta_info"]["prompt_tokens"]
    assert all(o["meta_info"]["cached_tokens"] == prompt_tokens - 1 for o in outs)


def test_max_new_tokens_zero_only_prefills(engine):
    out = engine.generate("Just cache this prompt please", {"max_new_tokens": 0})
    assert out["output_ids"] == [] and out["text"] == ""
    assert out["meta_info"]["completion_tokens"] == 0
    again = engine.generate("Just cache this prompt please", {"max_new_tokens": 1})
    assert again["meta_info"]["cached_tokens"] == again["meta_info"]["prompt_tokens"] - 1


def test_logprobs(engine):
    out = engine.generate(
        "Logprobs here",
        {"max_new_tokens": 4, "temperature": 0},
        return_logprob=True,
        top_logprobs_num=3,
        logprob_start_len=0,
        return_text_in_logprobs=True,
    )
    meta = out["meta_info"]
    lps = meta["output_token_logprobs"]
    assert [t[1] for t in lps] == out["output_ids"]
    assert all(t[0] <= 0 and isinstance(t[2], str) for t in lps)
    # Greedy: the chosen token is the top alternative.
    assert all(top[0][1] == t[1] for top, t in zip(meta["output_top_logprobs"], lps, strict=True))
    inputs = meta["input_token_logprobs"]
    assert len(inputs) == meta["prompt_tokens"] and inputs[0][0] is None


def test_prompt_logprobs_of_a_cached_prompt_are_complete(engine):
    prompt = "A prompt that is cached before its logprobs are asked for"
    engine.generate(prompt, {"max_new_tokens": 1})
    first = engine.generate(
        prompt, {"max_new_tokens": 1}, return_logprob=True, logprob_start_len=0
    )["meta_info"]
    later = engine.generate(
        prompt, {"max_new_tokens": 1}, return_logprob=True, logprob_start_len=3
    )["meta_info"]
    assert len(first["input_token_logprobs"]) == first["prompt_tokens"]
    expected = first["input_token_logprobs"][3:]
    assert [t[1] for t in later["input_token_logprobs"]] == [t[1] for t in expected]
    got = [t[0] for t in later["input_token_logprobs"]]
    assert got == pytest.approx([t[0] for t in expected], abs=1e-4)


def test_bad_sampling_params_raise_value_error_naming_the_field(engine):
    with pytest.raises(ValueError, match="top_p"):
        engine.generate("x", {"top_p": 0})
    with pytest.raises(ValueError, match="not a known sampling parameter"):
        engine.generate("x", {"bogus": 1})
    with pytest.raises(ValueError, match="context length"):
        engine.generate("x", {"max_new_tokens": 10**6})
    # The engine is still serving.
    assert engine.generate("x", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2


def test_invalid_regex_aborts_only_that_request(engine):
    outs = engine.generate(["a", "b"], [{"regex": "(unclosed"}, {"max_new_tokens": 3}])
    assert outs[0]["meta_info"]["finish_reason"]["type"] == "abort"
    assert "grammar" in outs[0]["meta_info"]["finish_reason"]["message"]
    assert outs[1]["meta_info"]["completion_tokens"] == 3


def test_streaming_is_cumulative_and_ends_equal(engine):
    params = {"max_new_tokens": 8, "temperature": 0}
    chunks = list(engine.generate("Stream this", params, stream=True))
    final = engine.generate("Stream this", params)
    texts = [c["text"] for c in chunks]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert texts[-1] == final["text"]
    assert chunks[-1]["meta_info"]["finish_reason"] is not None


def test_flush_cache_and_integrity(engine):
    assert engine.flush_cache()
    stats = engine.get_server_info()["stats"]
    assert stats["cached_tokens"] == 0 and stats["integrity_ok"]

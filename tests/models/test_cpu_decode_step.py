"""The fused CPU decode step (one Rust call per layer; bfloat16 on AMX, float32 on AVX-512)
gives exactly the op-by-op path's logits, and steps aside where it does not apply."""

from __future__ import annotations

import pytest
import torch
from step_plans import PlanBuilder
from tiny_hf import save_tiny, tiny_hf_model

from sglrs.kv_cache import KVBudget
from sglrs.layers import amx_linear, f32_linear
from sglrs.model_loader import LoadConfig, load_model_config
from sglrs.models import cpu_decode_step
from sglrs.runner.model_runner import ModelRunner

needs_amx = pytest.mark.skipif(not amx_linear.available(), reason="no AMX-BF16 on this CPU")
needs_avx512 = pytest.mark.skipif(not f32_linear.available(), reason="no AVX-512 on this CPU")
DTYPES = [
    pytest.param("bfloat16", marks=needs_amx),
    pytest.param("float32", marks=needs_avx512),
]


def _decode_logits(runner: ModelRunner, monkeypatch, fused: bool) -> torch.Tensor:
    """Prefill three prompts, then five greedy decode steps; the decode steps' logits."""
    monkeypatch.setenv(cpu_decode_step.DISABLE_ENV, "0" if fused else "1")
    plans = PlanBuilder(capacity=runner.max_total_tokens, rows=4)
    prompts = {r: [(7 * r + 3 * i) % 1000 for i in range(5 + 4 * r)] for r in range(3)}
    for r in prompts:
        plans.add(r)
    out = runner.forward(plans.step(prompts))
    steps = []
    for _ in range(5):
        nxt = out.logits.argmax(-1).tolist()
        out = runner.forward(plans.step({r: [nxt[r]] for r in prompts}))
        steps.append(out.logits)
    return torch.stack(steps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads", [(4, 2), (2, 1)])  # head_dim 16 and 32
def test_fused_decode_matches_the_op_by_op_path(tmp_path, monkeypatch, heads, dtype):
    q_heads, kv_heads = heads
    hf = tiny_hf_model("llama", num_attention_heads=q_heads, num_key_value_heads=kv_heads)
    runner = _runner(save_tiny(hf, tmp_path), dtype)
    used = _spy(monkeypatch)
    op_by_op = _decode_logits(runner, monkeypatch, False)
    assert not any(used)
    fused = _decode_logits(runner, monkeypatch, True)
    assert used.count(True) == 5  # every decode step, no prefill step
    assert torch.equal(fused, op_by_op)


@needs_avx512
def test_float16_models_and_disabled_kernels_keep_the_op_by_op_path(tmp_path, monkeypatch):
    path = save_tiny(tiny_hf_model("llama"), tmp_path)
    runner = _runner(path, "float16")
    used = _spy(monkeypatch)
    _decode_logits(runner, monkeypatch, True)
    assert used and not any(used)
    monkeypatch.setenv(f32_linear.DISABLE_ENV, "1")  # float32 weights stay on oneDNN
    runner = _runner(path, "float32")
    used = _spy(monkeypatch)
    _decode_logits(runner, monkeypatch, True)
    assert used and not any(used)


def _runner(path, dtype: str) -> ModelRunner:
    return ModelRunner(
        load_model_config(path),
        LoadConfig(path, progress=False),
        "cpu",
        dtype,
        KVBudget(max_total_tokens=256),
        max_running_requests=4,
    )


def _spy(monkeypatch) -> list[bool]:
    """Records, per model forward, whether the fused call ran."""
    used: list[bool] = []
    real = cpu_decode_step.decode_layers

    def spy(*args):
        result = real(*args)
        used.append(result is not None)
        return result

    monkeypatch.setattr(cpu_decode_step, "decode_layers", spy)
    return used

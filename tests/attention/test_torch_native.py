"""torch_native against a direct per-query softmax over each request's KV, and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from step_plans import PlanBuilder

from sglrs.attention import ATTENTION_BACKENDS, AttentionBackend, create_attention_backend
from sglrs.kv_cache import KVPool
from sglrs.model_loader import ModelConfig
from sglrs.runner.forward_batch import ForwardBatch

HQ, HKV, D = 4, 2, 8


def config(window: int | None = None) -> ModelConfig:
    return ModelConfig(
        architecture="MistralForCausalLM",
        hidden_size=HQ * D,
        num_layers=2,
        num_heads=HQ,
        num_kv_heads=HKV,
        head_dim=D,
        intermediate_size=16,
        vocab_size=10,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        sliding_window=window,
    )


def reference(q, keys, values, positions, window):
    """o[t] = softmax(q[t] . k[j] / sqrt(D)) v over allowed keys j of that request."""
    out = torch.empty_like(q)
    for t in range(q.shape[0]):
        pos = positions[t]
        allowed = torch.arange(pos + 1)
        if window is not None:
            allowed = allowed[pos - allowed < window]
        for h in range(HQ):
            kh = h // (HQ // HKV)
            scores = keys[allowed, kh] @ q[t, h] / math.sqrt(D)
            out[t, h] = torch.softmax(scores, 0) @ values[allowed, kh]
    return out


@pytest.mark.parametrize("window", [None, 3])
def test_extend_mixed_and_decode_match_reference(window):
    torch.manual_seed(0)
    cfg = config(window)
    pool = KVPool(2, HKV, D, capacity=64, page_size=1, dtype=torch.float32, device="cpu")
    backend = create_attention_backend("torch_native", cfg, pool, "cpu")
    table = torch.zeros((4, 64), dtype=torch.int32)
    b = PlanBuilder(capacity=64)
    keys = {r: torch.empty(0, HKV, D) for r in (1, 2, 3)}
    values = {r: torch.empty(0, HKV, D) for r in (1, 2, 3)}
    b.add(1)
    b.add(2)
    steps = [({1: 5, 2: 3}, None), ({1: 1, 2: 1}, None), ({1: 1, 2: 4}, "mixed")]
    steps += [({1: 1, 2: 1}, None)] * 3
    for lens, kind in steps:
        plan = b.step({r: [0] * n for r, n in lens.items()}, kind=kind)
        fb = ForwardBatch.from_plan(plan, table, "cpu")
        fb.attn_backend = backend
        t = fb.num_tokens
        q, k, v = torch.randn(t, HQ, D), torch.randn(t, HKV, D), torch.randn(t, HKV, D)
        backend.init_forward_metadata(fb)
        out = backend.forward(q, k, v, 1, fb)
        for i, rid in enumerate(lens):
            s, e = fb.qo_indptr_cpu[i], fb.qo_indptr_cpu[i + 1]
            keys[rid] = torch.cat([keys[rid], k[s:e]])
            values[rid] = torch.cat([values[rid], v[s:e]])
            want = reference(q[s:e], keys[rid], values[rid], fb.positions[s:e].tolist(), window)
            torch.testing.assert_close(out[s:e], want, atol=1e-5, rtol=1e-5)
            slots = torch.tensor(b.reqs[rid].slots)
            torch.testing.assert_close(pool.k_buffer(1)[slots], keys[rid])
    assert pool.k_buffer(0).abs().sum() == 0  # layer 0 untouched


def test_registry():
    assert "torch_native" in ATTENTION_BACKENDS
    pool = KVPool(2, HKV, D, capacity=8, page_size=1, dtype=torch.float32, device="cpu")
    backend = create_attention_backend("torch_native", config(), pool, "cpu")
    assert isinstance(backend, AttentionBackend) and not backend.supports_cuda_graph
    with pytest.raises(NotImplementedError, match="torch_native.*CUDA graphs"):
        backend.init_cuda_graph_state(8, 64)
    with pytest.raises(ValueError, match="available: torch_native"):
        create_attention_backend("flashinfer", config(), pool, "cpu")

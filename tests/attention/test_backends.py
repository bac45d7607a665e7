"""Attention backends (torch_native; triton, interpreted without a GPU; a prefill/decode
hybrid of two) against a direct per-query softmax over each request's KV, and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from step_plans import PlanBuilder

from sglrs.attention import (
    ATTENTION_BACKENDS,
    AttentionBackend,
    create_attention_backend,
    create_attention_backends,
)
from sglrs.kv_cache import KVPool
from sglrs.model_loader import ModelConfig
from sglrs.runner.forward_batch import ForwardBatch

HQ, HKV, D = 4, 2, 8


def config(window: int | None = None, d: int = D) -> ModelConfig:
    return ModelConfig(
        architecture="MistralForCausalLM",
        hidden_size=HQ * d,
        num_layers=2,
        num_heads=HQ,
        num_kv_heads=HKV,
        head_dim=d,
        intermediate_size=16,
        vocab_size=10,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        sliding_window=window,
    )


def reference(q, keys, values, positions, window):
    """o[t] = softmax(q[t] . k[j] / sqrt(D)) v over allowed keys j of that request."""
    q, keys, values = q.double().cpu(), keys.double().cpu(), values.double().cpu()
    d = q.shape[-1]
    out = torch.empty_like(q)
    for t in range(q.shape[0]):
        pos = positions[t]
        allowed = torch.arange(pos + 1)
        if window is not None:
            allowed = allowed[pos - allowed < window]
        for h in range(HQ):
            kh = h // (HQ // HKV)
            scores = keys[allowed, kh] @ q[t, h] / math.sqrt(d)
            out[t, h] = torch.softmax(scores, 0) @ values[allowed, kh]
    return out


CUDA = torch.cuda.is_available()
# "a+b": prefill steps on backend a, decode steps on b (a hybrid over one pool).
CASES = [("torch_native", "cpu", torch.float32, D)]
if not CUDA:  # CPU tensors reach Triton kernels only through the interpreter
    CASES += [(name, "cpu", torch.float32, D) for name in ("triton", "torch_native+triton")]
else:  # bf16 on the GPU, head_dim 128 (FlashInfer's sizes)
    CASES += [(name, "cuda", torch.bfloat16, 128) for name in ("torch_native", "triton")]
    CASES += [(name, "cuda", torch.bfloat16, 128) for name in ("flashinfer", "flashinfer+triton")]


@pytest.mark.parametrize("backend_name,device,dtype,d", CASES)
@pytest.mark.parametrize("window", [None, 3])
def test_extend_mixed_and_decode_match_reference(window, backend_name, device, dtype, d):
    """Without a GPU the triton backend runs interpreted (tests/conftest.py). Steps cover
    prefill without a prefix, decode, mixed, and a prefill where one request has a cached
    prefix and another none."""
    prefill, _, decode = backend_name.partition("+")
    decode = decode or prefill
    for name in (prefill, decode):
        if name not in ATTENTION_BACKENDS:
            pytest.skip(f"{name} is not installed")
    torch.manual_seed(0)
    cfg = config(window, d)
    pool = KVPool(2, HKV, d, capacity=64, page_size=1, dtype=dtype, device=device)
    backend = create_attention_backends(prefill, decode, cfg, pool, device)
    table = torch.zeros((4, 64), dtype=torch.int32, device=device)
    b = PlanBuilder(capacity=64)
    keys = {r: torch.empty(0, HKV, d, dtype=dtype) for r in (1, 2, 3)}
    values = {r: torch.empty(0, HKV, d, dtype=dtype) for r in (1, 2, 3)}
    b.add(1)
    b.add(2)
    steps = [({1: 5, 2: 3}, None), ({1: 1, 2: 1}, None), ({1: 1, 2: 4}, "mixed")]
    steps += [({1: 1, 2: 1}, None), ({1: 3, 3: 6}, None), ({1: 1, 2: 1, 3: 1}, None)]
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for lens, kind in steps:
        if 3 in lens and 3 not in b.reqs:
            b.add(3)
        plan = b.step({r: [0] * n for r, n in lens.items()}, kind=kind)
        fb = ForwardBatch.from_plan(plan, table, device)
        fb.attn_backend = backend
        t = fb.num_tokens
        q, k, v = (torch.randn(t, h, d).to(dtype) for h in (HQ, HKV, HKV))
        backend.init_forward_metadata(fb)
        out = backend.forward(q.to(device), k.to(device), v.to(device), 1, fb).cpu()
        for i, rid in enumerate(lens):
            s, e = fb.qo_indptr_cpu[i], fb.qo_indptr_cpu[i + 1]
            keys[rid] = torch.cat([keys[rid], k[s:e]])
            values[rid] = torch.cat([values[rid], v[s:e]])
            want = reference(q[s:e], keys[rid], values[rid], fb.positions[s:e].tolist(), window)
            err = float((out[s:e].double() - want).norm() / want.norm())
            assert err < tol, f"step {lens} {kind}: request {rid} relative error {err:.2e}"
            slots = torch.tensor(b.reqs[rid].slots, device=device)
            assert torch.equal(pool.k_buffer(1)[slots].cpu(), keys[rid])
    assert pool.k_buffer(0).abs().sum() == 0  # layer 0 untouched


def test_registry():
    assert "torch_native" in ATTENTION_BACKENDS
    pool = KVPool(2, HKV, D, capacity=8, page_size=1, dtype=torch.float32, device="cpu")
    backend = create_attention_backend("torch_native", config(), pool, "cpu")
    assert isinstance(backend, AttentionBackend) and not backend.supports_cuda_graph
    with pytest.raises(NotImplementedError, match="torch_native.*CUDA graphs"):
        backend.init_cuda_graph_state(8, 64)
    with pytest.raises(ValueError, match="unknown attention backend 'nope'; available: "):
        create_attention_backend("nope", config(), pool, "cpu")


@pytest.mark.parametrize("lens,padded", [((5, 7, 6, 7), True), ((2, 9), False), ((4,), False)])
def test_cpu_prefill_of_similar_lengths_runs_as_one_padded_call(monkeypatch, lens, padded):
    """torch_native on the CPU: a prefill of requests without cached prefixes and of similar
    lengths is one right-padded causal SDPA call, equal to the per-request calls."""
    from sglrs.attention import torch_native

    torch.manual_seed(1)
    cfg = config(None, 16)
    outs = []
    for pad_max_work in (torch_native.PAD_MAX_WORK, 0.0):  # 0: never pad
        monkeypatch.setattr(torch_native, "PAD_MAX_WORK", pad_max_work)
        pool = KVPool(2, HKV, 16, capacity=64, page_size=1, dtype=torch.float32, device="cpu")
        backend = create_attention_backend("torch_native", cfg, pool, "cpu")
        b = PlanBuilder(capacity=64)
        for r in range(len(lens)):
            b.add(r)
        plan = b.step({r: [0] * n for r, n in enumerate(lens)})
        fb = ForwardBatch.from_plan(plan, torch.zeros((4, 64), dtype=torch.int32), "cpu")
        fb.attn_backend = backend
        backend.init_forward_metadata(fb)
        assert (backend._padded_rows is not None) == (padded and pad_max_work > 0)
        g = torch.Generator().manual_seed(2)
        q, k, v = (torch.randn(sum(lens), h, 16, generator=g) for h in (HQ, HKV, HKV))
        outs.append(backend.forward(q, k, v, 1, fb))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-5)

"""Programmatic dependent launch (sglrs.kernels.pdl): the decode kernels give bit-identical
results with and without it, eagerly and replayed in a CUDA graph, over a chain of layers long
enough that each kernel's successor launches while it still runs."""

from __future__ import annotations

import pytest
import torch
from kernel_env import DEVICE, load_kernel

needs_hopper = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9,
    reason="needs a CUDA GPU with compute capability 9.0 or later",
)


def test_pdl_off_on_the_cpu_and_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    pdl = load_kernel("pdl")
    assert not pdl.use_pdl(torch.zeros(1), 1)
    if DEVICE.type == "cuda":
        x = torch.zeros(1, device=DEVICE)
        assert pdl.use_pdl(x, 1) == (torch.cuda.get_device_capability()[0] >= 9)
        assert not pdl.use_pdl(x, pdl.PDL_MAX_ROWS + 1)  # large batches launch plainly
        monkeypatch.setenv("SGLRS_DISABLE_PDL", "1")
        assert not pdl.use_pdl(x, 1)


HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, LAYERS = 1024, 8, 2, 128, 2816, 4


def _decode_chain(weights: dict, state: dict) -> torch.Tensor:
    """Batch-1 Llama-shaped decode over `LAYERS` layers with the fused Triton kernels, in the
    order the model runs them (norm+QKV, rope, KV store, attention, o, norm+gate_up,
    silu*mul+down, final norm)."""
    gemv = load_kernel("gemv")
    rotary, kv_store = load_kernel("rotary"), load_kernel("kv_store")
    attn, norm = load_kernel("decode_attention"), load_kernel("norm")
    one_row = gemv.pick_config(1, 4096, 4096)
    hidden, residual = state["hidden"], None
    q_dim, kv_dim = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for layer in range(LAYERS):
        w = weights[layer]
        qkv, residual = gemv.gemv_rmsnorm(
            hidden, residual, w["norm1"], 1e-5, w["qkv"], None, one_row
        )
        qk = qkv[:, : q_dim + kv_dim].view(1, HEADS + KV_HEADS, HEAD_DIM)
        rotary.rope_inplace(qk, state["positions"], state["cos"], state["sin"])
        q = qk[:, :HEADS]
        k = qk[:, HEADS:]
        v = qkv[:, q_dim + kv_dim :].view(1, KV_HEADS, HEAD_DIM)
        k_buf, v_buf = state["k_buf"][layer], state["v_buf"][layer]
        kv_store.kv_store(k_buf, v_buf, state["loc"], k, v)
        o = torch.empty((1, HEADS, HEAD_DIM), dtype=hidden.dtype, device=DEVICE)
        attn.decode_attention(
            q, k_buf, v_buf, o, state["table"], state["rows"], state["seq_lens"],
            HEAD_DIM**-0.5, 4, state["workspace"],
        )  # fmt: skip
        hidden = gemv.gemv(o.view(1, q_dim), w["o"], None, one_row)
        gate_up, residual = gemv.gemv_rmsnorm(
            hidden, residual, w["norm2"], 1e-5, w["gate_up"], None, one_row
        )
        hidden = gemv.gemv_silu_mul(gate_up, w["down"], None, one_row)
    out, _ = norm.rmsnorm(hidden, state["final_norm"], 1e-5, residual)
    return out


def _case(seed: int) -> tuple[dict, dict]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    dt = torch.bfloat16

    def rand(*shape: int, scale: float = 0.05) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(dt).to(DEVICE)

    weights = {
        i: {
            "norm1": 1 + rand(HIDDEN),
            "norm2": 1 + rand(HIDDEN),
            "qkv": rand((HEADS + 2 * KV_HEADS) * HEAD_DIM, HIDDEN),
            "o": rand(HIDDEN, HEADS * HEAD_DIM),
            "gate_up": rand(2 * INTER, HIDDEN),
            "down": rand(HIDDEN, INTER),
        }
        for i in range(LAYERS)
    }
    slots, ctx = 512, 300
    freqs = torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM
    angles = torch.arange(1024, dtype=torch.float32)[:, None] / (10000.0**freqs)[None, :]
    angles = torch.cat([angles, angles], dim=1)
    state = {
        "hidden": rand(1, HIDDEN, scale=1.0),
        "positions": torch.tensor([ctx - 1], device=DEVICE),
        "cos": angles.cos().to(DEVICE),
        "sin": angles.sin().to(DEVICE),
        "k_buf": [rand(slots, KV_HEADS, HEAD_DIM, scale=1.0) for _ in range(LAYERS)],
        "v_buf": [rand(slots, KV_HEADS, HEAD_DIM, scale=1.0) for _ in range(LAYERS)],
        "loc": torch.tensor([ctx - 1], device=DEVICE),
        "table": torch.randperm(slots, generator=g)[:ctx].to(torch.int32).to(DEVICE)[None, :],
        "rows": torch.zeros(1, dtype=torch.int64, device=DEVICE),
        "seq_lens": torch.tensor([ctx], device=DEVICE),
        "workspace": load_kernel("decode_attention").DecodeWorkspace(1, HEADS, HEAD_DIM, 4, DEVICE),
        "final_norm": 1 + rand(HIDDEN),
    }
    return weights, state


@needs_hopper
def test_decode_chain_identical_with_and_without_pdl(monkeypatch: pytest.MonkeyPatch) -> None:
    weights, state = _case(0)
    monkeypatch.setenv("SGLRS_DISABLE_PDL", "1")
    ref = _decode_chain(weights, state).clone()
    ref_k = [k.clone() for k in state["k_buf"]]
    monkeypatch.delenv("SGLRS_DISABLE_PDL")
    eager = _decode_chain(weights, state)
    assert torch.equal(eager, ref)
    assert all(torch.equal(a, b) for a, b in zip(state["k_buf"], ref_k, strict=True))

    # Replays with new inputs each time: every kernel must read its predecessor's output.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _decode_chain(weights, state)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        captured = _decode_chain(weights, state)
    for step in range(3):
        state["hidden"].copy_(torch.randn_like(state["hidden"].float()).to(torch.bfloat16))
        monkeypatch.setenv("SGLRS_DISABLE_PDL", "1")
        expected = _decode_chain(weights, state).clone()
        monkeypatch.delenv("SGLRS_DISABLE_PDL")
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, expected), f"replay {step}"

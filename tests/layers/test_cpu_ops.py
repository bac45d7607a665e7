"""The Rust per-layer ops (sglrs.layers.cpu_ops) against the torch versions of the same layers
(`SGLRS_DISABLE_CPU_LAYER_OPS=1`) and HF's formulas: float32 and bfloat16, rows of any count,
rope on strided q/k views of a fused qkv row, and the fallbacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sglrs.layers import cpu_ops
from sglrs.layers.activation import SiluAndMul
from sglrs.layers.norm import RMSNorm
from sglrs.layers.rotary import RotaryEmbedding

TOL = {torch.float32: dict(atol=2e-6, rtol=2e-6), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def torch_version(monkeypatch: pytest.MonkeyPatch, fn, *args):
    with monkeypatch.context() as m:
        m.setenv(cpu_ops.DISABLE_ENV, "1")
        return fn(*args)


def hf_rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm.forward."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 7, 300])  # 300 x 576: split over threads
def test_rmsnorm_matches_hf_and_leaves_inputs(dtype, rows, monkeypatch):
    torch.manual_seed(rows)
    norm = RMSNorm(576, 1e-5)
    norm.weight.weight_loader(norm.weight, torch.randn(576).to(dtype))
    x, res = torch.randn(rows, 576).to(dtype), torch.randn(rows, 576).to(dtype)
    x0, res0 = x.clone(), res.clone()
    torch.testing.assert_close(norm(x), hf_rmsnorm(x, norm.weight, 1e-5), **TOL[dtype])
    out, new_res = norm(x, res)
    assert torch.equal(x, x0) and torch.equal(res, res0)
    assert torch.equal(new_res, x + res)  # one rounded add, as HF's `hidden + residual`
    torch.testing.assert_close(out, hf_rmsnorm(x + res, norm.weight, 1e-5), **TOL[dtype])
    want, want_res = torch_version(monkeypatch, norm, x, res)
    torch.testing.assert_close(out, want, **TOL[dtype])
    assert torch.equal(new_res, want_res)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 5, 64])
def test_silu_and_mul_matches_torch(dtype, rows, monkeypatch):
    torch.manual_seed(rows)
    x = (torch.randn(rows, 2 * 1536) * 4).to(dtype)
    got = SiluAndMul()(x)
    gate, up = x.chunk(2, dim=-1)
    torch.testing.assert_close(got, F.silu(gate) * up, **TOL[dtype])
    torch.testing.assert_close(got, torch_version(monkeypatch, SiluAndMul(), x), **TOL[dtype])
    # Extreme gates: silu saturates to 0 and x without NaN or inf.
    big = torch.tensor([[-200.0, -90.0, 0.0, 90.0, 1.0, 1.0, 1.0, 1.0]]).to(dtype)
    torch.testing.assert_close(SiluAndMul()(big), F.silu(big[:, :4]) * big[:, 4:], **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_in_place_on_fused_qkv_rows(dtype, monkeypatch):
    torch.manual_seed(0)
    t, hq, hkv, d = 9, 9, 3, 64
    rope = RotaryEmbedding(d, 2048, 10000.0, None)
    qkv = torch.randn(t, (hq + 2 * hkv) * d).to(dtype)
    positions = torch.tensor([0, 1, 2, 100, 5, 2047, 3, 3, 900])
    qk = qkv[:, : (hq + hkv) * d].view(t, hq + hkv, d)
    want = torch_version(monkeypatch, rope.rotate, positions, qk.clone())
    v_before = qkv[:, (hq + hkv) * d :].clone()
    got = rope.rotate(positions, qk)
    assert got is qk  # rotated in place
    torch.testing.assert_close(got, want, **TOL[dtype])
    assert torch.equal(qkv[:, (hq + hkv) * d :], v_before)  # v untouched


def test_rope_matches_hf_formula_bitwise_in_float32():
    torch.manual_seed(1)
    d = 64
    rope = RotaryEmbedding(d, 512, 10000.0, None)
    x = torch.randn(6, 4, d)
    positions = torch.tensor([0, 3, 511, 7, 7, 100])
    cos = rope.cos_cache[positions][:, None]
    sin = rope.sin_cache[positions][:, None]
    rotated_half = torch.cat((-x[..., d // 2 :], x[..., : d // 2]), dim=-1)
    want = x * cos + rotated_half * sin
    assert torch.equal(rope.rotate(positions, x.clone()), want)


def test_fallbacks_return_none():
    x = torch.randn(4, 8, dtype=torch.float64)
    assert cpu_ops.rms_norm(x, torch.ones(8, dtype=torch.float64), 1e-5) is None
    assert cpu_ops.silu_and_mul(x) is None
    assert cpu_ops.silu_and_mul(torch.randn(4, 8).t()) is None  # not contiguous rows
    y = torch.randn(4, 8)
    assert cpu_ops.rms_norm(y, torch.ones(8), 1e-5, torch.randn(4, 8).t().contiguous().t()) is None
    heads = torch.randn(3, 2, 8).transpose(1, 2)  # head_dim not contiguous
    table = torch.zeros(16, 2)
    assert cpu_ops.rope_inplace(heads, torch.arange(3), table, table) is None


def test_rope_rejects_positions_outside_the_table():
    rope = RotaryEmbedding(8, 16, 10000.0, None)
    with pytest.raises(ValueError, match="position 16 outside"):
        rope.rotate(torch.tensor([16]), torch.randn(1, 2, 8))

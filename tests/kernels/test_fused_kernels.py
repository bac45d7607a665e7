"""RMSNorm (+residual), SiLU-and-mul, in-place rope and the KV store against torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_env import DEVICE, DTYPES, TOL, load_kernel, rel_err


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 100])
def test_rmsnorm(dtype, hidden):
    kern = load_kernel("norm")
    x, r = torch.randn(7, hidden).to(dtype), torch.randn(7, hidden).to(dtype)
    w = torch.randn(hidden).to(dtype)

    def ref(x):
        xf = x.float()
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(dtype)

    out = kern.rmsnorm(x.to(DEVICE), w.to(DEVICE), 1e-6)
    assert rel_err(out.cpu(), ref(x)) < TOL[dtype]
    out, res = kern.rmsnorm(x.to(DEVICE), w.to(DEVICE), 1e-6, r.to(DEVICE))
    assert torch.equal(res.cpu(), x + r)
    assert rel_err(out.cpu(), ref(x + r)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul(dtype):
    kern = load_kernel("activation")
    x = torch.randn(5, 2 * 48).to(dtype)
    gate, up = x.chunk(2, dim=-1)
    assert rel_err(kern.silu_and_mul(x.to(DEVICE)).cpu(), F.silu(gate) * up) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_inplace_on_a_strided_view(dtype):
    kern = load_kernel("rotary")
    t, heads, d = 6, 5, 16
    qkv = torch.randn(t, (heads + 2) * d).to(dtype)  # k/v heads after the rotated ones
    pos = torch.tensor([0, 3, 9, 1, 30, 2])
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    freqs = torch.arange(64).float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()
    x = qkv[:, : heads * d].view(t, heads, d)
    x1, x2 = x.float().chunk(2, -1)
    c, s = cos[pos][:, None, :], sin[pos][:, None, :]
    ref = x.float() * c + torch.cat((-x2, x1), -1) * s
    rest = qkv[:, heads * d :].clone()
    dev = qkv.to(DEVICE)
    kern.rope_inplace(dev[:, : heads * d].view(t, heads, d), pos.to(DEVICE), cos.to(DEVICE),
                      sin.to(DEVICE))  # fmt: skip
    out = dev.cpu()
    assert rel_err(out[:, : heads * d].view(t, heads, d), ref) < TOL[dtype]
    assert torch.equal(out[:, heads * d :], rest)  # untouched


def test_kv_store():
    kern = load_kernel("kv_store")
    kv = torch.randn(4, 3 * 2 * 8)  # fused qkv rows: k and v are strided views
    k, v = kv[:, 16:32].view(4, 2, 8), kv[:, 32:].view(4, 2, 8)
    k_buf, v_buf = torch.zeros(10, 2, 8), torch.zeros(10, 2, 8)
    loc = torch.tensor([7, 0, 3, 9])
    kd, vd = k_buf.to(DEVICE), v_buf.to(DEVICE)
    dev = kv.to(DEVICE)
    kern.kv_store(kd, vd, loc.to(DEVICE), dev[:, 16:32].view(4, 2, 8), dev[:, 32:].view(4, 2, 8))
    k_buf[loc], v_buf[loc] = k, v
    assert torch.equal(kd.cpu(), k_buf) and torch.equal(vd.cpu(), v_buf)

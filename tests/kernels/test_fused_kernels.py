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


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_store_equals_rope_then_kv_store(dtype):
    """The fused rope + KV store: the same q/k in place and the same pool as rope_inplace on
    q and k heads, then kv_store of the rotated k and v (fused QKV rows, 3 q / 2 kv heads)."""
    rot, store = load_kernel("rotary"), load_kernel("kv_store")
    t, hq, hkv, d = 4, 3, 2, 16
    qkv = torch.randn(t, (hq + 2 * hkv) * d).to(dtype).to(DEVICE)
    pos = torch.tensor([5, 0, 17, 3], device=DEVICE)
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    emb = torch.arange(64).float()[:, None] * inv[None, :]
    cos, sin = (
        torch.cat((emb, emb), -1).cos().to(DEVICE),
        torch.cat((emb, emb), -1).sin().to(DEVICE),
    )
    loc = torch.tensor([7, 0, 3, 9], device=DEVICE)
    bufs = [torch.zeros(10, hkv, d, dtype=dtype, device=DEVICE) for _ in range(4)]

    def views(x):
        return x[:, : (hq + hkv) * d].view(t, hq + hkv, d), x[:, (hq + hkv) * d :].view(t, hkv, d)

    ref, fused = qkv.clone(), qkv.clone()
    qk, v = views(ref)
    rot.rope_inplace(qk, pos, cos, sin)
    store.kv_store(bufs[0], bufs[1], loc, qk[:, hq:], v)
    qk, v = views(fused)
    rot.rope_store(qk, hq, v, pos, cos, sin, bufs[2], bufs[3], loc)
    assert torch.equal(fused, ref)
    assert torch.equal(bufs[2], bufs[0]) and torch.equal(bufs[3], bufs[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_shard_embedding(dtype):
    """This rank's rows of a vocab-parallel table, zeros for the other ranks' ids."""
    kern = load_kernel("embedding")
    weight = torch.randn(7, 40).to(dtype)  # rows 10..16 of the vocabulary; 6 valid
    ids = torch.tensor([10, 3, 15, 16, 22, 12, 0])
    out = kern.shard_embedding(ids.to(DEVICE), weight.to(DEVICE), 10, 6).cpu()
    local = ids - 10
    mine = (local >= 0) & (local < 6)
    want = torch.where(mine[:, None], weight[local.clamp(0, 6)], torch.zeros(()).to(dtype))
    assert torch.equal(out, want)

"""Layers against transformers' reference implementations, and the shard-aware weight loaders."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import (
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

from sglrs.layers.activation import SiluAndMul
from sglrs.layers.embedding import LMHead, VocabEmbedding
from sglrs.layers.linear import MergedColumnLinear, QKVLinear, ReplicatedLinear, WeightLoadError
from sglrs.layers.norm import RMSNorm
from sglrs.layers.rotary import RotaryEmbedding
from sglrs.model_loader.config import rope_from_params

ROPES = [
    None,
    {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 128,
        "rope_theta": 500000.0,
    },
]


@pytest.mark.parametrize("params", ROPES, ids=["default", "linear", "llama3"])
def test_rotary_matches_transformers(params):
    head_dim, heads = 32, 3
    hf_cfg = LlamaConfig(
        hidden_size=head_dim * heads,
        num_attention_heads=heads,
        max_position_embeddings=1024,
        rope_parameters=params or {"rope_type": "default", "rope_theta": 10000.0},
    )
    theta, scaling = rope_from_params(params, 10000.0)
    ours = RotaryEmbedding(head_dim, 1024, theta, scaling)
    torch.manual_seed(0)
    positions = torch.tensor([0, 1, 5, 77, 300, 1023])
    q, k = torch.randn(6, heads, head_dim), torch.randn(6, 1, head_dim)
    cos, sin = LlamaRotaryEmbedding(hf_cfg)(q, positions[None])
    want_q, want_k = apply_rotary_pos_emb(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos, sin
    )
    got_q, got_k = ours(positions, q, k)
    torch.testing.assert_close(got_q, want_q[0].transpose(0, 1), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got_k, want_k[0].transpose(0, 1), atol=1e-6, rtol=1e-6)


def test_rmsnorm_with_and_without_residual():
    torch.manual_seed(0)
    ours, ref = RMSNorm(16, 1e-5), LlamaRMSNorm(16, eps=1e-5)
    w = torch.randn(16)
    ours.weight.weight_loader(ours.weight, w)
    ref.weight.data.copy_(w)
    x, res = torch.randn(5, 16), torch.randn(5, 16)
    torch.testing.assert_close(ours(x), ref(x))
    normed, new_res = ours(x, res)
    torch.testing.assert_close(normed, ref(x + res))
    torch.testing.assert_close(new_res, x + res)


def test_qkv_and_gate_up_load_by_shard():
    torch.manual_seed(0)
    qkv = QKVLinear(hidden_size=8, head_dim=2, num_heads=4, num_kv_heads=2, bias=True)
    parts = {"q": torch.randn(8, 8), "k": torch.randn(4, 8), "v": torch.randn(4, 8)}
    for sid, w in parts.items():
        qkv.weight.weight_loader(qkv.weight, w, sid)
        qkv.bias.weight_loader(qkv.bias, torch.full((w.shape[0],), float(len(sid))), sid)
    assert qkv.weight.shard_ids == ("q", "k", "v")
    x = torch.randn(3, 8)
    q, k, v = qkv.split(qkv(x))
    torch.testing.assert_close(k, x @ parts["k"].T + 1.0)
    torch.testing.assert_close(q, x @ parts["q"].T + 1.0)
    with pytest.raises(WeightLoadError, match="unknown shard 'o'"):
        qkv.weight.weight_loader(qkv.weight, parts["q"], "o")
    with pytest.raises(WeightLoadError, match=r"\(3, 8\).*\(4, 8\)"):
        qkv.weight.weight_loader(qkv.weight, torch.randn(3, 8), "k")

    gate_up = MergedColumnLinear(8, [6, 6])
    gate, up = torch.randn(6, 8), torch.randn(6, 8)
    gate_up.weight.weight_loader(gate_up.weight, up, 1)
    gate_up.weight.weight_loader(gate_up.weight, gate, 0)
    out = SiluAndMul()(gate_up(x))
    torch.testing.assert_close(out, torch.nn.functional.silu(x @ gate.T) * (x @ up.T))


def test_replicated_linear_and_tied_head():
    lin = ReplicatedLinear(4, 3)
    with pytest.raises(WeightLoadError, match="no shards"):
        lin.weight.weight_loader(lin.weight, torch.zeros(3, 4), "q")
    emb = VocabEmbedding(10, 4)
    emb.weight.weight_loader(emb.weight, torch.randn(10, 4))
    head = LMHead(10, 4, tied_to=emb)
    assert head.weight is emb.weight
    h = torch.randn(2, 4, dtype=torch.float32)
    assert head(h).dtype == torch.float32
    torch.testing.assert_close(head(h), h @ emb.weight.T)
    torch.testing.assert_close(emb(torch.tensor([3])), emb.weight[3:4])

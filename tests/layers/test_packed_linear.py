"""The oneDNN-prepacked linear path agrees with F.linear and is dropped on weight reloads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sglrs.layers.embedding import LMHead, VocabEmbedding
from sglrs.layers.linear import QKVLinear, ReplicatedLinear
from sglrs.layers.packed_linear import can_prepack, packed_linear, prepack_model, prepack_weight

needs_onednn = pytest.mark.skipif(
    not can_prepack(torch.empty(1, 1)), reason="this torch has no oneDNN linear"
)


@needs_onednn
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 32, 257])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_matches_plain_linear(rows, bias, dtype):
    torch.manual_seed(rows)
    w, x = torch.randn(48, 40, dtype=dtype), torch.randn(rows, 40, dtype=dtype)
    b = torch.randn(48, dtype=dtype) if bias else None
    packed = prepack_weight(w)
    if packed is None:
        pytest.skip(f"this torch's oneDNN cannot pack {dtype}")
    got = packed_linear(x, w, packed, b)
    tol = {"atol": 1e-4, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 0.1, "rtol": 0.02}
    torch.testing.assert_close(got, F.linear(x, w, b), **tol)


def test_no_packing_for_other_dtypes():
    assert prepack_weight(torch.randn(4, 4, dtype=torch.float64)) is None
    assert prepack_weight(torch.randn(4, 4, dtype=torch.float16)) is None


@needs_onednn
def test_prepack_model_and_reload_drops_the_packed_copy():
    torch.manual_seed(0)
    lin = ReplicatedLinear(8, 6, bias=True)
    qkv = QKVLinear(hidden_size=8, head_dim=2, num_heads=2, num_kv_heads=1, bias=False)
    emb = VocabEmbedding(10, 8)
    head = LMHead(10, 8, tied_to=emb)
    for p in (lin.weight, lin.bias, emb.weight):
        p.weight_loader(p, torch.randn(p.shape))
    for sid, n in (("q", 4), ("k", 2), ("v", 2)):
        qkv.weight.weight_loader(qkv.weight, torch.randn(n, 8), sid)
    model = torch.nn.ModuleList([lin, qkv, emb, head])
    assert prepack_model(model) == 3  # the embedding itself has nothing to pack
    x = torch.randn(5, 8)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(head(x), F.linear(x, emb.weight), atol=1e-4, rtol=1e-5)
    new = torch.randn(6, 8)
    lin.weight.weight_loader(lin.weight, new)  # a reload must not leave the old packed weight
    torch.testing.assert_close(lin(x), F.linear(x, new, lin.bias), atol=1e-4, rtol=1e-5)
    qkv.weight.weight_loader(qkv.weight, torch.zeros(4, 8), "q")
    assert qkv(x)[:, :4].abs().max() == 0

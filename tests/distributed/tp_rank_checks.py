"""Code each spawned rank of test_tp_collectives runs (a module the spawn children import).

Every rank builds the same full weights (seeded), loads its shard into the parallel layers and
the whole into tp-1 layers, runs both on the same input and compares: the collectives inside
the parallel layers must make the results equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sglrs.distributed import (
    all_gather_last_dim,
    all_reduce_min_int,
    broadcast_bytes,
    destroy_tensor_parallel,
    init_tensor_parallel,
)
from sglrs.layers.embedding import LMHead, VocabEmbedding
from sglrs.layers.linear import MergedColumnLinear, QKVLinear, RowLinear

HIDDEN, HEAD_DIM, HEADS, KV_HEADS, INTER, VOCAB = 16, 4, 4, 1, 24, 37


def _load(module: torch.nn.Module, weights: dict[str, torch.Tensor], shard: object = None) -> None:
    for name, param in module.named_parameters():
        param.weight_loader(param, weights[name], shard)  # type: ignore[attr-defined]


def _check_layers(rank: int, size: int) -> None:
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    x = rand(5, HIDDEN)
    # Fused q/k/v and the row-parallel output projection: attention's linear path.
    qkv_w = {"q": rand(HEADS * HEAD_DIM, HIDDEN), "k": rand(KV_HEADS * HEAD_DIM, HIDDEN)}
    qkv_w["v"] = rand(KV_HEADS * HEAD_DIM, HIDDEN)
    qkv_b = {k: rand(v.shape[0]) for k, v in qkv_w.items()}
    o_w, o_b = rand(HIDDEN, HEADS * HEAD_DIM), rand(HIDDEN)
    outs = []
    for r, s in ((0, 1), (rank, size)):
        qkv = QKVLinear(HIDDEN, HEAD_DIM, HEADS, KV_HEADS, True, tp_rank=r, tp_size=s)
        for sid in ("q", "k", "v"):
            qkv.weight.weight_loader(qkv.weight, qkv_w[sid], sid)
            qkv.bias.weight_loader(qkv.bias, qkv_b[sid], sid)
        o = RowLinear(HEADS * HEAD_DIM, HIDDEN, True, tp_rank=r, tp_size=s)
        _load(o, {"weight": o_w, "bias": o_b})
        q, k, v = qkv.split(qkv(x))
        # A stand-in for attention that mixes each query head with its own KV head.
        group = qkv.num_heads // qkv.num_kv_heads
        kv = (k * v).view(5, qkv.num_kv_heads, HEAD_DIM).repeat_interleave(group, dim=1)
        outs.append(o((q.view(5, qkv.num_heads, HEAD_DIM) * kv).reshape(5, -1)))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)

    gate, up, down = rand(INTER, HIDDEN), rand(INTER, HIDDEN), rand(HIDDEN, INTER)
    outs = []
    for r, s in ((0, 1), (rank, size)):
        gate_up = MergedColumnLinear(HIDDEN, [INTER, INTER], tp_rank=r, tp_size=s)
        gate_up.weight.weight_loader(gate_up.weight, gate, 0)
        gate_up.weight.weight_loader(gate_up.weight, up, 1)
        down_proj = RowLinear(INTER, HIDDEN, tp_rank=r, tp_size=s)
        _load(down_proj, {"weight": down})
        g, u = gate_up(x).chunk(2, dim=-1)
        outs.append(down_proj(F.silu(g) * u))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)

    # Vocab-parallel embedding and tied LM head (VOCAB is not a multiple of the tp size).
    emb_w, ids = rand(VOCAB, HIDDEN), torch.tensor([0, 5, VOCAB - 1, 18, 19, 36])
    outs = []
    for r, s in ((0, 1), (rank, size)):
        emb = VocabEmbedding(VOCAB, HIDDEN, tp_rank=r, tp_size=s)
        _load(emb, {"weight": emb_w})
        head = LMHead(VOCAB, HIDDEN, tied_to=emb, tp_rank=r, tp_size=s)
        outs.append((emb(ids), head(x)))
    torch.testing.assert_close(outs[1][0], outs[0][0])
    assert outs[1][1].shape == (5, VOCAB) and outs[1][1].dtype == torch.float32
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-5)


def _check_comm(rank: int, size: int) -> None:
    assert all_reduce_min_int(100 + rank) == 100
    gathered = all_gather_last_dim(torch.full((2, 3), float(rank)))
    assert gathered.shape == (2, 3 * size) and gathered[0, -1].item() == size - 1
    for n in (0, 17, 200_000):  # empty, one chunk, and more than one chunk
        payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
        got = broadcast_bytes(payload if rank == 0 else None)
        assert bytes(got) == payload, f"broadcast of {n} bytes"


def run_rank(rank: int, size: int, addr: str) -> None:
    """Process entry: join the gloo group, run every check; an assertion fails the process."""
    torch.set_num_threads(1)
    init_tensor_parallel(rank, size, addr, "cpu")
    try:
        _check_comm(rank, size)
        _check_layers(rank, size)
    finally:
        destroy_tensor_parallel()

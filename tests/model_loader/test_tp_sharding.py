"""Tensor-parallel shards: head split and KV replication, vocab padding, and loading a rank's
rows/columns from eager tensors and from lazy safetensors slices alike."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sglrs.layers.embedding import VocabEmbedding
from sglrs.layers.linear import MergedColumnLinear, QKVLinear, RowLinear
from sglrs.model_loader import ModelConfigError
from sglrs.model_loader.sharding import check_tp_size_of, split_heads, vocab_shard


def test_heads_split_evenly_or_replicate_kv():
    assert [split_heads(8, 4, r, 2).kv_head_start for r in range(2)] == [0, 2]
    shards = [split_heads(4, 2, r, 4) for r in range(4)]  # tp 4 > 2 KV heads
    assert [(s.num_heads, s.num_kv_heads) for s in shards] == [(1, 1)] * 4
    assert [s.kv_head_start for s in shards] == [0, 0, 1, 1]
    assert [s.q_head_start for s in shards] == [0, 1, 2, 3]
    with pytest.raises(ModelConfigError, match="num_attention_heads=9"):
        split_heads(9, 3, 0, 2)
    with pytest.raises(ModelConfigError, match="num_key_value_heads=3"):
        split_heads(12, 3, 0, 4)  # 4 neither divides 3 nor is a multiple of it


def test_vocab_shard_pads_the_last_rank():
    assert [vocab_shard(10, r, 4) for r in range(4)] == [(3, 0, 3), (3, 3, 3), (3, 6, 3), (3, 9, 1)]


def test_check_tp_size_of_reads_config_json(tmp_path):
    cfg = {"num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    check_tp_size_of(tmp_path, 3)
    with pytest.raises(ModelConfigError, match=r"--tp-size 2 does not fit.*num_attention_heads=9"):
        check_tp_size_of(tmp_path, 2)


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "q": torch.randn(16, 8),  # 4 heads of 4
        "k": torch.randn(8, 8),  # 2 KV heads
        "v": torch.randn(8, 8),
        "gate": torch.randn(12, 8),
        "up": torch.randn(12, 8),
        "down": torch.randn(8, 12),
        "embed": torch.randn(10, 8),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    with safe_open(str(path), framework="pt", device="cpu") as f:
        yield tensors, {name: f.get_slice(name) for name in tensors}


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("tp", [2, 4])
def test_each_rank_loads_its_rows_and_columns(weights, lazy, tp):
    full, slices = weights
    src = slices if lazy else full
    qkv_rows, gate_up_rows, down_cols, embed_rows = [], [], [], []
    for rank in range(tp):
        qkv = QKVLinear(8, 4, 4, 2, False, tp_rank=rank, tp_size=tp)
        for sid in ("q", "k", "v"):
            qkv.weight.weight_loader(qkv.weight, src[sid], sid)
        q, k, v = qkv.weight.split([qkv.q_size, qkv.kv_size, qkv.kv_size])
        qkv_rows.append((q, k, v))
        gate_up = MergedColumnLinear(8, [12, 12], tp_rank=rank, tp_size=tp)
        gate_up.weight.weight_loader(gate_up.weight, src["up"], 1)
        gate_up.weight.weight_loader(gate_up.weight, src["gate"], 0)
        gate_up_rows.append(gate_up.weight.chunk(2))
        down = RowLinear(12, 8, tp_rank=rank, tp_size=tp)
        down.weight.weight_loader(down.weight, src["down"])
        down_cols.append(down.weight)
        emb = VocabEmbedding(10, 8, tp_rank=rank, tp_size=tp)
        emb.weight.weight_loader(emb.weight, src["embed"])
        embed_rows.append(emb.weight)
    torch.testing.assert_close(torch.cat([q for q, _, _ in qkv_rows]), full["q"])
    kv_ranks = 2 if tp == 2 else 4
    for j in (1, 2):  # k, v: each rank holds its KV head(s); replicated at tp 4
        heads = torch.cat([rows[j] for rows in qkv_rows[:kv_ranks]])
        want = full["k" if j == 1 else "v"]
        if tp == 4:
            want = want.view(2, 4, 8).repeat_interleave(2, dim=0).reshape(16, 8)
        torch.testing.assert_close(heads, want)
    torch.testing.assert_close(torch.cat([g for g, _ in gate_up_rows]), full["gate"])
    torch.testing.assert_close(torch.cat([u for _, u in gate_up_rows]), full["up"])
    torch.testing.assert_close(torch.cat(down_cols, dim=1), full["down"])
    rows = torch.cat(embed_rows)
    torch.testing.assert_close(rows[:10], full["embed"])
    assert not rows[10:].any()  # padding rows stay zero


def test_wrong_checkpoint_shapes_are_named(weights):
    full, slices = weights
    down = RowLinear(12, 8, tp_rank=0, tp_size=2)
    with pytest.raises(ValueError, match=r"checkpoint shape \(12, 8\), model expects \(8, 12\)"):
        down.weight.weight_loader(down.weight, slices["gate"])
    qkv = QKVLinear(8, 4, 4, 2, False, tp_rank=1, tp_size=2)
    with pytest.raises(ValueError, match=r"shard 'k'.*\(16, 8\).*\(8, 8\)"):
        qkv.weight.weight_loader(qkv.weight, full["q"], "k")

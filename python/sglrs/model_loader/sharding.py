"""Tensor-parallel sharding of a model: which heads, rows and columns each rank holds.

Query heads are split evenly. KV heads are split evenly when `tp <= num_kv_heads`; when there are
more ranks than KV heads, each KV head is replicated on `tp / num_kv_heads` consecutive ranks
(rank r holds KV head `r // replicas`), so every rank's query heads find their KV head locally.

Checkpoint tensors arrive as torch tensors or as lazy safetensors slices (`get_slice`): a rank
narrows a lazy slice before reading it, so it never materializes more than its own shard.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sglrs.model_loader.config import ModelConfig, ModelConfigError, is_gguf, load_model_config


@dataclass(frozen=True)
class HeadShard:
    """The attention heads of one rank."""

    num_heads: int  # local query heads
    num_kv_heads: int  # local KV heads (1 when replicated)
    q_head_start: int
    kv_head_start: int


def _head_problems(num_heads: int, num_kv_heads: int, tp_size: int) -> list[str]:
    problems = []
    if num_heads % tp_size:
        problems.append(f"num_attention_heads={num_heads}")
    kv = num_kv_heads
    if (tp_size <= kv and kv % tp_size) or (tp_size > kv and tp_size % kv):
        problems.append(
            f"num_key_value_heads={kv} (tp must divide it, or be a multiple of it to replicate)"
        )
    return problems


def check_tp_size(config: ModelConfig, tp_size: int) -> None:
    """Raise a ModelConfigError naming each count that `tp_size` does not divide."""
    check_tp_counts(config.num_heads, config.num_kv_heads, config.intermediate_size, tp_size)


def check_tp_counts(num_heads: int, num_kv_heads: int, intermediate_size: int, tp: int) -> None:
    if tp < 1:
        raise ModelConfigError(f"tp size must be >= 1, got {tp}")
    problems = _head_problems(num_heads, num_kv_heads, tp)
    if intermediate_size % tp:
        problems.append(f"intermediate_size={intermediate_size}")
    if problems:
        raise ModelConfigError(f"--tp-size {tp} does not fit the model: {'; '.join(problems)}")


def check_tp_size_of(model_path: str | os.PathLike, tp_size: int) -> None:
    """`check_tp_size` for a checkpoint, reading a HF config.json directly (no transformers
    import: the launcher checks this before it starts any process)."""
    if is_gguf(model_path):
        check_tp_size(load_model_config(model_path), tp_size)
        return
    path = Path(model_path, "config.json")
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_path}: neither a .gguf file nor a directory with a config.json"
        )
    hf = json.loads(path.read_text())
    hf = hf.get("text_config", hf)
    heads = int(hf["num_attention_heads"])
    kv = int(hf.get("num_key_value_heads") or heads)
    check_tp_counts(heads, kv, int(hf["intermediate_size"]), tp_size)


def split_heads(num_heads: int, num_kv_heads: int, tp_rank: int, tp_size: int) -> HeadShard:
    """The query and KV heads of rank `tp_rank` of `tp_size`."""
    problems = _head_problems(num_heads, num_kv_heads, tp_size)
    if problems:
        raise ModelConfigError(f"--tp-size {tp_size} does not fit the model: {'; '.join(problems)}")
    if not 0 <= tp_rank < tp_size:
        raise ValueError(f"tp rank {tp_rank} outside 0..{tp_size - 1}")
    heads, kv = num_heads // tp_size, num_kv_heads
    if tp_size <= kv:
        local_kv, kv_start = kv // tp_size, tp_rank * (kv // tp_size)
    else:
        local_kv, kv_start = 1, tp_rank // (tp_size // kv)
    return HeadShard(heads, local_kv, tp_rank * heads, kv_start)


def rank_attention_config(config: ModelConfig, tp_size: int) -> ModelConfig:
    """The config as one rank's attention and KV pool see it: its own head counts."""
    check_tp_size(config, tp_size)
    shard = split_heads(config.num_heads, config.num_kv_heads, 0, tp_size)
    return dataclasses.replace(config, num_heads=shard.num_heads, num_kv_heads=shard.num_kv_heads)


def vocab_shard(vocab_size: int, tp_rank: int, tp_size: int) -> tuple[int, int, int]:
    """(rows per rank, first id of this rank, ids of this rank that exist): the vocabulary is
    padded up to a multiple of `tp_size`, the last rank holding the padding rows."""
    per_rank = -(-vocab_size // tp_size)
    start = tp_rank * per_rank
    return per_rank, start, max(0, min(per_rank, vocab_size - start))


# ---- checkpoint tensors, eager or lazy ----------------------------------------------------------


def weight_shape(loaded: Any) -> tuple[int, ...]:
    if isinstance(loaded, torch.Tensor):
        return tuple(loaded.shape)
    return tuple(int(d) for d in loaded.get_shape())  # safetensors slice


def full_weight(loaded: Any) -> torch.Tensor:
    """The whole tensor (reads a lazy slice)."""
    return loaded if isinstance(loaded, torch.Tensor) else loaded[:]


def narrow_weight(loaded: Any, dim: int, start: int, length: int) -> torch.Tensor:
    """`loaded.narrow(dim, start, length)`, reading only that part of a lazy slice."""
    shape = weight_shape(loaded)
    if dim >= len(shape) or start < 0 or start + length > shape[dim]:
        raise ValueError(
            f"shard [{start}, {start + length}) of dim {dim} is outside a tensor of shape {shape}"
        )
    if isinstance(loaded, torch.Tensor):
        return loaded.narrow(dim, start, length)
    index = tuple([slice(None)] * dim + [slice(start, start + length)])
    return loaded[index]

"""Linear layers whose parameters know how to load checkpoint tensors (and fused shards).

Tensor parallelism (`tp_rank`, `tp_size`; 0 and 1 mean none): column-parallel layers (`QKVLinear`,
`MergedColumnLinear`) hold their rank's rows of each fused projection, laid out
`[q_r | k_r | v_r]` and `[gate_r | up_r]`, so the output splits as without TP. `RowLinear` holds
its rank's input columns and sums the partial products over the ranks (the bias once, after).
Loaders narrow the checkpoint tensor (possibly a lazy safetensors slice) before reading it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sglrs.distributed.comm import all_reduce
from sglrs.layers.cuda_linear import device_linear
from sglrs.layers.packed_linear import Packed, prepack_weight
from sglrs.model_loader.sharding import full_weight, narrow_weight, split_heads, weight_shape


class WeightLoadError(ValueError):
    """A checkpoint tensor does not fit the model (name, shape or completeness)."""


def copy_weight(param: nn.Parameter, loaded: Any, name: str = "") -> None:
    """Copy a whole tensor into `param` (casting dtype, moving device) after a shape check."""
    shape = weight_shape(loaded)
    if tuple(param.shape) != shape:
        raise WeightLoadError(
            f"weight {name or '?'}: checkpoint shape {shape}, model expects {tuple(param.shape)}"
        )
    with torch.no_grad():
        param.copy_(full_weight(loaded))


def _attach_loader(param: nn.Parameter, loader, shard_ids: tuple | None = None) -> None:
    param.weight_loader = loader  # type: ignore[attr-defined]
    param.shard_ids = shard_ids  # type: ignore[attr-defined]


def _check_tp(tp_rank: int, tp_size: int) -> None:
    if tp_size < 1 or not 0 <= tp_rank < tp_size:
        raise ValueError(f"tp rank {tp_rank} of tp size {tp_size} is not a rank")


class ReplicatedLinear(nn.Module):
    """y = x W^T (+ b), the whole weight on this device."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None
        for p in self.parameters():
            _attach_loader(p, self.weight_loader)
        self._packed: Packed | None = None

    def prepack(self) -> bool:
        """Pack the loaded weight for the CPU matmul (see packed_linear); reloading a weight
        afterwards drops the packed copy."""
        self._packed = prepack_weight(self.weight)
        return self._packed is not None

    def weight_loader(self, param: nn.Parameter, loaded: Any, shard_id: object = None) -> None:
        if shard_id is not None:
            raise WeightLoadError(f"{type(self).__name__} has no shards (got {shard_id!r})")
        self._packed = None
        copy_weight(param, loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return device_linear(x, self.weight, self._packed, self.bias)


class _ShardedOutputLinear(ReplicatedLinear):
    """Several projections of the same input fused along the output dim, loaded shard by shard.

    `shards`: shard id -> (rows of this rank, rows in the checkpoint, first checkpoint row)."""

    def __init__(
        self, in_features: int, shards: dict[Any, tuple[int, int, int]], bias: bool = False
    ) -> None:
        super().__init__(in_features, sum(rows for rows, _, _ in shards.values()), bias)
        self.shard_sizes = {sid: rows for sid, (rows, _, _) in shards.items()}
        self.shard_sources = {sid: (full, start) for sid, (_, full, start) in shards.items()}
        offsets, start = {}, 0
        for sid, size in self.shard_sizes.items():
            offsets[sid] = start
            start += size
        self.shard_offsets = offsets
        for p in self.parameters():
            _attach_loader(p, self.weight_loader, tuple(shards))

    def weight_loader(self, param: nn.Parameter, loaded: Any, shard_id: object = None) -> None:
        if shard_id not in self.shard_sizes:
            shards = list(self.shard_sizes)
            raise WeightLoadError(f"{type(self).__name__}: unknown shard {shard_id!r}; {shards=}")
        start, size = self.shard_offsets[shard_id], self.shard_sizes[shard_id]
        full_rows, src_start = self.shard_sources[shard_id]
        shape = weight_shape(loaded)
        expected = (full_rows, *param.shape[1:])
        if shape != expected:
            raise WeightLoadError(
                f"shard {shard_id!r}: checkpoint shape {shape}, model expects {expected}"
            )
        self._packed = None
        part = narrow_weight(loaded, 0, src_start, size)
        copy_weight(param.narrow(0, start, size), part, f"shard {shard_id!r}")  # type: ignore[arg-type]


class QKVLinear(_ShardedOutputLinear):
    """q, k and v projections fused; the output is laid out [q | k | v] (this rank's heads).

    With more ranks than KV heads, each KV head is replicated on `tp / num_kv_heads` ranks."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int,
        num_heads: int,
        num_kv_heads: int,
        bias: bool,
        *,
        tp_rank: int = 0,
        tp_size: int = 1,
    ) -> None:
        _check_tp(tp_rank, tp_size)
        heads = split_heads(num_heads, num_kv_heads, tp_rank, tp_size)
        self.num_heads, self.num_kv_heads = heads.num_heads, heads.num_kv_heads
        self.q_size, self.kv_size = heads.num_heads * head_dim, heads.num_kv_heads * head_dim
        full_kv = num_kv_heads * head_dim
        shards = {
            "q": (self.q_size, num_heads * head_dim, heads.q_head_start * head_dim),
            "k": (self.kv_size, full_kv, heads.kv_head_start * head_dim),
            "v": (self.kv_size, full_kv, heads.kv_head_start * head_dim),
        }
        super().__init__(hidden_size, shards, bias)

    def split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)


class MergedColumnLinear(_ShardedOutputLinear):
    """Projections fused along the output dim with integer shard ids (e.g. gate=0, up=1); each
    rank holds its slice of every projection."""

    def __init__(
        self,
        in_features: int,
        output_sizes: list[int],
        bias: bool = False,
        *,
        tp_rank: int = 0,
        tp_size: int = 1,
    ) -> None:
        _check_tp(tp_rank, tp_size)
        bad = [s for s in output_sizes if s % tp_size]
        if bad:
            raise WeightLoadError(f"output sizes {bad} are not divisible by tp size {tp_size}")
        shards = {}
        for i, size in enumerate(output_sizes):
            local = size // tp_size
            shards[i] = (local, size, tp_rank * local)
        super().__init__(in_features, shards, bias)


class RowLinear(ReplicatedLinear):
    """y = sum over ranks of x_r W_r^T (+ b): this rank holds input columns
    `[rank * in / tp, (rank + 1) * in / tp)` and gets the input split the same way (the output
    of a column-parallel layer). The bias is replicated and added once, after the sum."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        tp_rank: int = 0,
        tp_size: int = 1,
    ) -> None:
        _check_tp(tp_rank, tp_size)
        if in_features % tp_size:
            raise WeightLoadError(f"in_features {in_features} not divisible by tp {tp_size}")
        super().__init__(in_features // tp_size, out_features, bias)
        self.full_in_features = in_features
        self.tp_rank, self.tp_size = tp_rank, tp_size

    def weight_loader(self, param: nn.Parameter, loaded: Any, shard_id: object = None) -> None:
        if shard_id is not None:
            raise WeightLoadError(f"{type(self).__name__} has no shards (got {shard_id!r})")
        self._packed = None
        if param is self.bias or self.tp_size == 1:
            copy_weight(param, loaded)
            return
        shape = weight_shape(loaded)
        expected = (self.out_features, self.full_in_features)
        if shape != expected:
            raise WeightLoadError(f"checkpoint shape {shape}, model expects {expected}")
        cols = self.in_features
        copy_weight(param, narrow_weight(loaded, 1, self.tp_rank * cols, cols))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return device_linear(x, self.weight, self._packed, self.bias)
        y = all_reduce(self.partial_sum(x))
        return y if self.bias is None else y + self.bias

    def partial_sum(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's term of the output's sum over the ranks (no bias): for a caller that
        reduces it later, fused with what comes next (cuda_fused.linear_reduce_norm)."""
        return device_linear(x, self.weight, self._packed)

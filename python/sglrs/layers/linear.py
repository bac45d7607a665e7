"""Linear layers whose parameters know how to load checkpoint tensors (and fused shards)."""

from __future__ import annotations

import torch
from torch import nn

from sglrs.layers.packed_linear import packed_linear, prepack_weight


class WeightLoadError(ValueError):
    """A checkpoint tensor does not fit the model (name, shape or completeness)."""


def copy_weight(param: nn.Parameter, loaded: torch.Tensor, name: str = "") -> None:
    """Copy a whole tensor into `param` (casting dtype, moving device) after a shape check."""
    if tuple(param.shape) != tuple(loaded.shape):
        raise WeightLoadError(
            f"weight {name or '?'}: checkpoint shape {tuple(loaded.shape)}, "
            f"model expects {tuple(param.shape)}"
        )
    with torch.no_grad():
        param.copy_(loaded)


def _attach_loader(param: nn.Parameter, loader, shard_ids: tuple | None = None) -> None:
    param.weight_loader = loader  # type: ignore[attr-defined]
    param.shard_ids = shard_ids  # type: ignore[attr-defined]


class ReplicatedLinear(nn.Module):
    """y = x W^T (+ b), the whole weight on this device."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None
        for p in self.parameters():
            _attach_loader(p, self.weight_loader)
        self._packed: torch.Tensor | None = None

    def prepack(self) -> bool:
        """Pack the loaded weight for the CPU matmul (see packed_linear); reloading a weight
        afterwards drops the packed copy."""
        self._packed = prepack_weight(self.weight)
        return self._packed is not None

    def weight_loader(
        self, param: nn.Parameter, loaded: torch.Tensor, shard_id: object = None
    ) -> None:
        if shard_id is not None:
            raise WeightLoadError(f"{type(self).__name__} has no shards (got {shard_id!r})")
        self._packed = None
        copy_weight(param, loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_linear(x, self.weight, self._packed, self.bias)


class _ShardedOutputLinear(ReplicatedLinear):
    """Several projections of the same input fused along the output dim, loaded shard by shard."""

    def __init__(self, in_features: int, shard_sizes: dict, bias: bool = False) -> None:
        super().__init__(in_features, sum(shard_sizes.values()), bias)
        self.shard_sizes = dict(shard_sizes)
        offsets, start = {}, 0
        for sid, size in shard_sizes.items():
            offsets[sid] = start
            start += size
        self.shard_offsets = offsets
        for p in self.parameters():
            _attach_loader(p, self.weight_loader, tuple(shard_sizes))

    def weight_loader(
        self, param: nn.Parameter, loaded: torch.Tensor, shard_id: object = None
    ) -> None:
        if shard_id not in self.shard_sizes:
            shards = list(self.shard_sizes)
            raise WeightLoadError(f"{type(self).__name__}: unknown shard {shard_id!r}; {shards=}")
        start, size = self.shard_offsets[shard_id], self.shard_sizes[shard_id]
        self._packed = None
        copy_weight(param.narrow(0, start, size), loaded, f"shard {shard_id!r}")  # type: ignore[arg-type]


class QKVLinear(_ShardedOutputLinear):
    """q, k and v projections fused; the output is laid out [q | k | v]."""

    def __init__(
        self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool
    ) -> None:
        self.q_size, self.kv_size = num_heads * head_dim, num_kv_heads * head_dim
        sizes = {"q": self.q_size, "k": self.kv_size, "v": self.kv_size}
        super().__init__(hidden_size, sizes, bias)

    def split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)


class MergedColumnLinear(_ShardedOutputLinear):
    """Projections fused along the output dim with integer shard ids (e.g. gate=0, up=1)."""

    def __init__(self, in_features: int, output_sizes: list[int], bias: bool = False) -> None:
        super().__init__(in_features, dict(enumerate(output_sizes)), bias)

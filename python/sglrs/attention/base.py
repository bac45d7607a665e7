"""The attention backend interface: per-step metadata once, then one call per layer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sglrs.kv_cache.pool import KVPool
    from sglrs.model_loader.config import ModelConfig
    from sglrs.runner.forward_batch import ForwardBatch


class AttentionBackend(ABC):
    """Stores the new tokens' K/V in the pool and attends over each request's whole KV.

    `forward` gets q `[T, Hq, D]` and k/v `[T, Hkv, D]` of the step's new tokens (in plan order)
    and returns o `[T, Hq, D]`: each query sees its request's cached prefix (read from the pool
    through `req_to_token`) and the new tokens up to its own position.

    The CUDA-graph hooks are part of the interface; backends that cannot run inside a graph
    keep the base versions, which raise.
    """

    name: str = "?"
    supports_cuda_graph: bool = False

    def __init__(self, config: ModelConfig, kv_pool: KVPool, device: torch.device) -> None:
        self.config = config
        self.kv_pool = kv_pool
        self.device = torch.device(device)
        self.scale = config.head_dim**-0.5
        self.sliding_window = config.sliding_window

    @abstractmethod
    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        """Build what every layer of this step shares (index tensors, masks, plans)."""

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        forward_batch: ForwardBatch,
        kv_stored: bool = False,
    ) -> torch.Tensor:
        """Store k/v at `forward_batch.out_cache_loc` (unless the caller did: `kv_stored`),
        return the attention output."""
        if not kv_stored:
            self.kv_pool.store(layer_id, forward_batch.out_cache_loc, k, v)
        if forward_batch.batch_size == 0:
            return torch.empty_like(q)
        return self.attend(q, k, v, layer_id, forward_batch)

    @abstractmethod
    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layer_id: int,
        forward_batch: ForwardBatch,
    ) -> torch.Tensor:
        """Attention of a non-empty batch; `k`/`v` (the new tokens') are already in the pool."""

    # CUDA graphs (decode): allocate static buffers, then fill them at capture and at replay.
    def init_cuda_graph_state(self, max_batch_size: int, max_context_len: int) -> None:
        raise NotImplementedError(f"attention backend {self.name!r} does not support CUDA graphs")

    def init_forward_metadata_capture(self, forward_batch: ForwardBatch) -> None:
        raise NotImplementedError(f"attention backend {self.name!r} does not support CUDA graphs")

    def init_forward_metadata_replay(self, forward_batch: ForwardBatch) -> None:
        raise NotImplementedError(f"attention backend {self.name!r} does not support CUDA graphs")

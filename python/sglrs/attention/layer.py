"""The attention module models call; the step's backend does the work."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from sglrs.runner.forward_batch import ForwardBatch


class Attention(nn.Module):
    def __init__(self, layer_id: int) -> None:
        super().__init__()
        self.layer_id = layer_id

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        forward_batch: ForwardBatch,
        kv_stored: bool = False,
    ) -> torch.Tensor:
        """`kv_stored`: the new tokens' k/v are already in the pool (stored with the rope)."""
        backend = forward_batch.attn_backend
        return backend.forward(q, k, v, self.layer_id, forward_batch, kv_stored)

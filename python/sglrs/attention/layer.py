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
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, forward_batch: ForwardBatch
    ) -> torch.Tensor:
        return forward_batch.attn_backend.forward(q, k, v, self.layer_id, forward_batch)

    def attend_stored(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, forward_batch: ForwardBatch
    ) -> torch.Tensor:
        """`forward` when the new tokens' k/v are already in the pool (stored with the rope)."""
        if forward_batch.batch_size == 0:
            return torch.empty_like(q)
        return forward_batch.attn_backend.attend(q, k, v, self.layer_id, forward_batch)

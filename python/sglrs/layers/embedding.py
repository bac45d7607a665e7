"""Token embedding and LM head (optionally tied to the embedding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglrs.layers.linear import copy_weight
from sglrs.layers.packed_linear import packed_linear, prepack_weight


def _loader(param: nn.Parameter, loaded: torch.Tensor, shard_id: object = None) -> None:
    copy_weight(param, loaded)


class VocabEmbedding(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size), requires_grad=False)
        self.weight.weight_loader = _loader  # type: ignore[attr-defined]
        self.weight.shard_ids = None  # type: ignore[attr-defined]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)


class LMHead(nn.Module):
    """hidden -> float32 logits over the vocabulary; `tied_to` shares the embedding's weight."""

    def __init__(
        self, vocab_size: int, hidden_size: int, tied_to: VocabEmbedding | None = None
    ) -> None:
        super().__init__()
        if tied_to is not None:
            self.weight = tied_to.weight
        else:
            self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size), requires_grad=False)
            self.weight.weight_loader = _loader  # type: ignore[attr-defined]
            self.weight.shard_ids = None  # type: ignore[attr-defined]
        self._packed: torch.Tensor | None = None

    def prepack(self) -> bool:
        """Pack the loaded (or tied) weight for the CPU matmul (see packed_linear)."""
        self._packed = prepack_weight(self.weight)
        return self._packed is not None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return packed_linear(hidden, self.weight, self._packed).float()

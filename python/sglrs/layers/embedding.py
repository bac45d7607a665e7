"""Token embedding and LM head (optionally tied to the embedding), vocab-parallel under TP.

With `tp_size > 1` each rank holds `ceil(vocab / tp)` consecutive rows (the last rank's tail is
zero padding). The embedding looks up the ids in its range, zeroes the others and sums over the
ranks; the LM head computes its slice of the logits and gathers the full row on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sglrs.distributed.comm import all_gather_last_dim, all_reduce
from sglrs.kernels import use_triton
from sglrs.layers.amx_linear import AmxWeight
from sglrs.layers.cuda_linear import device_linear
from sglrs.layers.linear import WeightLoadError, copy_weight
from sglrs.layers.packed_linear import Packed, packed_linear, prepack_weight
from sglrs.model_loader.sharding import narrow_weight, vocab_shard, weight_shape


class _VocabRows:
    """The loader of a `[vocab, hidden]` weight split by rows over the ranks."""

    def __init__(self, vocab_size: int, hidden_size: int, tp_rank: int, tp_size: int) -> None:
        if tp_size < 1 or not 0 <= tp_rank < tp_size:
            raise ValueError(f"tp rank {tp_rank} of tp size {tp_size} is not a rank")
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.tp_rank, self.tp_size = tp_rank, tp_size
        self.rows, self.start, self.valid = vocab_shard(vocab_size, tp_rank, tp_size)

    def new_weight(self) -> nn.Parameter:
        weight = nn.Parameter(torch.empty(self.rows, self.hidden_size), requires_grad=False)
        weight.weight_loader = self.load  # type: ignore[attr-defined]
        weight.shard_ids = None  # type: ignore[attr-defined]
        return weight

    def load(self, param: nn.Parameter, loaded: Any, shard_id: object = None) -> None:
        if shard_id is not None:
            raise WeightLoadError(f"vocabulary weights have no shards (got {shard_id!r})")
        if self.tp_size == 1:
            copy_weight(param, loaded)
            return
        shape, expected = weight_shape(loaded), (self.vocab_size, self.hidden_size)
        if shape != expected:
            raise WeightLoadError(f"checkpoint shape {shape}, model expects {expected}")
        with torch.no_grad():
            param[self.valid :].zero_()
        copy_weight(param[: self.valid], narrow_weight(loaded, 0, self.start, self.valid))  # type: ignore[arg-type]


class VocabEmbedding(nn.Module):
    def __init__(
        self, vocab_size: int, hidden_size: int, *, tp_rank: int = 0, tp_size: int = 1
    ) -> None:
        super().__init__()
        self.shard = _VocabRows(vocab_size, hidden_size, tp_rank, tp_size)
        self.weight = self.shard.new_weight()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.shard.tp_size == 1:
            return F.embedding(input_ids, self.weight)
        if use_triton(self.weight) and self.weight.stride(1) == 1:
            from sglrs.kernels.embedding import shard_embedding

            ids = input_ids.reshape(-1)
            out = shard_embedding(ids, self.weight, self.shard.start, self.shard.valid)
            return all_reduce(out.view(*input_ids.shape, -1))
        local = input_ids - self.shard.start
        outside = (local < 0) | (local >= self.shard.valid)
        out = F.embedding(local.masked_fill(outside, 0), self.weight)
        return all_reduce(out.masked_fill_(outside.unsqueeze(-1), 0))


class LMHead(nn.Module):
    """hidden -> float32 logits over the vocabulary; `tied_to` shares the embedding's weight
    (and its vocabulary split)."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        tied_to: VocabEmbedding | None = None,
        *,
        tp_rank: int = 0,
        tp_size: int = 1,
    ) -> None:
        super().__init__()
        if tied_to is not None:
            if (tied_to.shard.tp_rank, tied_to.shard.tp_size) != (tp_rank, tp_size):
                raise ValueError("a tied LM head must use its embedding's tp rank and size")
            self.shard = tied_to.shard
            self.weight = tied_to.weight
        else:
            self.shard = _VocabRows(vocab_size, hidden_size, tp_rank, tp_size)
            self.weight = self.shard.new_weight()
        self._packed: Packed | None = None

    def prepack(self) -> bool:
        """Pack the loaded (or tied) weight for the CPU matmul (see packed_linear)."""
        self._packed = prepack_weight(self.weight)
        return self._packed is not None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if isinstance(self._packed, AmxWeight) and self.shard.tp_size == 1:
            # CPU, AMX: float32 logits straight from the f32 sums (no bf16 copy to widen).
            return packed_linear(hidden, self.weight, self._packed, out_dtype=torch.float32)
        logits = device_linear(hidden, self.weight, self._packed)
        if self.shard.tp_size > 1:
            if logits.numel() == 0:  # no rows (every rank sees the same plan): nothing to gather
                return logits.new_empty((*logits.shape[:-1], self.shard.vocab_size)).float()
            logits = all_gather_last_dim(logits)
            if logits.shape[-1] != self.shard.vocab_size:  # drop the padding rows' logits
                logits = logits[..., : self.shard.vocab_size].contiguous()
        return logits.float()

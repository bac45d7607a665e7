"""Frequency, presence and repetition penalties, and min_new_tokens masking, on the device.

Counts of generated tokens live in a `[B, V]` int32 tensor updated each step by one
scatter-add of the sampled tokens; a request's history is scanned only when it joins the batch.
Semantics:
- frequency / presence (OpenAI, over generated tokens): `logit -= f * count + p * (count > 0)`.
- repetition (HF / SGLang, over prompt + generated tokens): positive logits are divided by the
  penalty, negative ones multiplied. It is applied first, on the raw logits, as in HF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sglrs.sampling.upload import upload

if TYPE_CHECKING:
    from sglrs.sampling.batch import SamplingBatch


class PenaltyState:
    """Token counts (and prompt membership) for the rows that use a penalty."""

    def __init__(self, vocab_size: int, device: torch.device) -> None:
        self.vocab_size = vocab_size
        self.device = device
        self.active = False
        self.use_repetition = False
        self.counts: torch.Tensor | None = None  # [B, V] int32, generated tokens
        self.in_prompt: torch.Tensor | None = None  # [B, V] bool, for repetition only

    def rebuild(self, requests: Sequence[Any], keep: list[int]) -> None:
        """New composition: carry retained rows (`keep[i]` = old row or -1), scan new ones."""
        params = [r.params for r in requests]
        b = len(params)
        freq = [p.frequency_penalty for p in params]
        pres = [p.presence_penalty for p in params]
        rep = [p.repetition_penalty for p in params]
        self.active = any(f != 0 for f in freq) or any(p != 0 for p in pres)
        self.use_repetition = any(r != 1 for r in rep)
        self.active = self.active or self.use_repetition
        old_counts, old_prompt = self.counts, self.in_prompt
        if not self.active:
            self.counts = self.in_prompt = None
            return
        dev = self.device
        self.frequency = upload(freq, torch.float32, dev).unsqueeze(1)
        self.presence = upload(pres, torch.float32, dev).unsqueeze(1)
        self.repetition = upload(rep, torch.float32, dev).unsqueeze(1)
        self.counts = torch.zeros((b, self.vocab_size), dtype=torch.int32, device=dev)
        self.in_prompt = (
            torch.zeros((b, self.vocab_size), dtype=torch.bool, device=dev)
            if self.use_repetition
            else None
        )
        self._fill(self.counts, old_counts, keep, [r.output_ids for r in requests], count=True)
        if self.in_prompt is not None:
            prompts = [r.prompt_ids for r in requests]
            self._fill(self.in_prompt, old_prompt, keep, prompts, count=False)

    def _fill(
        self,
        dst: torch.Tensor,
        old: torch.Tensor | None,
        keep: list[int],
        histories: list[Sequence[int]],
        count: bool,
    ) -> None:
        """Gather retained rows from `old` in one op; scatter the history of the others."""
        kept = [i for i, k in enumerate(keep) if k >= 0] if old is not None else []
        if kept:
            src = upload([keep[i] for i in kept], torch.int64, self.device)
            dst[upload(kept, torch.int64, self.device)] = old[src]
        kept_set = set(kept)
        fresh = [i for i in range(len(histories)) if i not in kept_set and len(histories[i])]
        if not fresh:
            return
        lens = [len(histories[i]) for i in fresh]
        rows = np.repeat(np.asarray(fresh, dtype=np.int64), lens)
        cols = np.concatenate([np.asarray(histories[i], dtype=np.int64) for i in fresh])
        index = (upload(rows, torch.int64, self.device), upload(cols, torch.int64, self.device))
        if count:
            dst.index_put_(
                index, torch.ones(len(rows), dtype=dst.dtype, device=self.device), accumulate=True
            )
        else:
            dst.index_put_(index, torch.ones(len(rows), dtype=torch.bool, device=self.device))

    def record(self, next_token_ids: torch.Tensor) -> None:
        if self.counts is None:
            return
        ids = next_token_ids.to(torch.int64).view(-1, 1)
        self.counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.int32))

    def apply_(self, logits: torch.Tensor) -> None:
        """Penalize `logits[:, :V]` in place (V = tokenizer vocab; padded columns untouched)."""
        if self.counts is None:
            return
        view = logits[:, : self.vocab_size]
        seen = self.counts > 0
        if self.in_prompt is not None:
            repeated = seen | self.in_prompt
            scaled = torch.where(view > 0, view / self.repetition, view * self.repetition)
            view.copy_(torch.where(repeated, scaled, view))
        view.sub_(self.counts.to(view.dtype) * self.frequency + seen.to(view.dtype) * self.presence)


def apply_min_new_tokens_(logits: torch.Tensor, batch: SamplingBatch) -> None:
    """EOS and stop token ids -> -inf for rows that have not generated min_new_tokens yet."""
    if not batch.has_min_new_tokens:
        return
    rows, cols = batch.min_rows, batch.min_cols
    below = batch.num_generated[rows] < batch.min_limits
    current = logits[rows, cols]
    # index_put_ with a where() keeps this free of host syncs (no boolean indexing).
    masked = torch.where(below, torch.full_like(current, float("-inf")), current)
    logits.index_put_((rows, cols), masked)


def apply_logit_bias_(logits: torch.Tensor, batch: SamplingBatch) -> None:
    """Add each request's sparse logit_bias to its row (one scatter)."""
    if batch.has_logit_bias:
        logits.index_put_((batch.bias_rows, batch.bias_cols), batch.bias_vals, accumulate=True)

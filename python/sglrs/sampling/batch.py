"""Per-batch sampling tensors, rebuilt only for the rows whose request is new to the batch.

The engine calls `SamplingBatch.update(requests)` once per step with the requests that sample,
in batch order. When the composition is unchanged nothing is rebuilt; otherwise the small
per-row parameter tensors are rebuilt from cached per-request values (one host-to-device copy)
and the `[B, V]` state (penalty token counts) of requests already in the batch is carried over
by a row gather, so history is never re-scanned for them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from sglrs.sampling.params import SamplingParams
from sglrs.sampling.penalties import PenaltyState
from sglrs.sampling.upload import upload


@dataclass
class SamplingRequest:
    """What the sampler needs to know about one request (the engine may pass any object with
    these attributes)."""

    rid: Hashable
    params: SamplingParams
    prompt_ids: Sequence[int] = ()
    # Tokens generated so far; read only when the request (re)joins the batch.
    output_ids: Sequence[int] = field(default_factory=list)
    return_logprob: bool = False
    top_logprobs_num: int = 0


class SamplingBatch:
    """Device tensors for the requests of the current step, in batch order."""

    def __init__(
        self,
        vocab_size: int,
        device: torch.device | str = "cpu",
        eos_token_ids: Sequence[int] = (),
        seed: int = 0,
    ) -> None:
        self.vocab_size = vocab_size
        self.device = torch.device(device)
        self.eos_token_ids = sorted(set(eos_token_ids))
        # Unseeded rows draw from one generator seeded by the server's random seed.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.rids: list[Hashable] = []
        self.requests: list[SamplingRequest] = []
        self.penalties = PenaltyState(vocab_size, self.device)
        self._set_empty()

    def _set_empty(self) -> None:
        self.batch_size = 0
        self.all_greedy = True
        self.any_greedy = False
        self.need_top_k = self.need_top_p = self.need_min_p = False
        self.top_k_everywhere = False
        self.max_top_k = 1
        self.has_seeded = self.has_unseeded = False
        self.return_logprob = False
        self.logprob_rows: list[int] = []
        self.top_logprobs_nums: list[int] = []

    # ---- composition -------------------------------------------------------------------------

    def update(self, requests: Sequence[SamplingRequest]) -> None:
        """Adopt this step's requests (batch order); cheap when the composition is unchanged."""
        rids = [r.rid for r in requests]
        if rids == self.rids:
            self.requests = list(requests)
            self._update_logprob_rows()
            return
        old_rows = {rid: i for i, rid in enumerate(self.rids)}
        keep = [old_rows.get(rid, -1) for rid in rids]
        self._build_params(requests)
        self.num_generated = self._carry(
            getattr(self, "num_generated", None),
            keep,
            [len(r.output_ids) for r in requests],
        )
        self.penalties.rebuild(requests, keep)
        self.rids = rids
        self.requests = list(requests)
        self._update_logprob_rows()

    def _carry(self, old: torch.Tensor | None, keep: list[int], fresh: list[int]) -> torch.Tensor:
        """Old values for retained rows (they may be ahead of the engine's lists), else fresh."""
        new = upload(fresh, torch.int64, self.device)
        if old is None or not any(k >= 0 for k in keep):
            return new
        rows = [i for i, k in enumerate(keep) if k >= 0]
        src = upload([keep[i] for i in rows], torch.int64, self.device)
        dst = upload(rows, torch.int64, self.device)
        new[dst] = old[src]
        return new

    def _build_params(self, requests: Sequence[SamplingRequest]) -> None:
        params = [r.params for r in requests]
        b = len(params)
        self.batch_size = b
        greedy = [p.is_greedy for p in params]
        self.all_greedy = all(greedy)
        self.any_greedy = any(greedy)
        # Greedy rows divide by 1 so their logprobs are the plain log-softmax (as SGLang's).
        temps = [1.0 if g else p.temperature for p, g in zip(params, greedy, strict=True)]
        top_ks = [
            self.vocab_size if p.top_k == -1 else min(p.top_k, self.vocab_size) for p in params
        ]
        sampled = [p for p, g in zip(params, greedy, strict=True) if not g]
        self.need_top_k = any(p.top_k != -1 and p.top_k < self.vocab_size for p in sampled)
        self.top_k_everywhere = bool(sampled) and all(p.top_k != -1 for p in sampled)
        self.max_top_k = max((k for k, g in zip(top_ks, greedy, strict=True) if not g), default=1)
        self.need_top_p = any(p.top_p < 1.0 for p in sampled)
        self.need_min_p = any(p.min_p > 0.0 for p in sampled)
        seeded = [p.sampling_seed is not None for p in params]
        self.has_seeded = any(s and not g for s, g in zip(seeded, greedy, strict=True))
        self.has_unseeded = any(not s and not g for s, g in zip(seeded, greedy, strict=True))

        def dev(values: list, dtype: torch.dtype) -> torch.Tensor:
            return upload(values, dtype, self.device)

        self.temperatures = dev(temps, torch.float32).unsqueeze(1)
        self.top_ks = dev(top_ks, torch.int64)
        self.top_ps = dev([p.top_p for p in params], torch.float32)
        self.min_ps = dev([p.min_p for p in params], torch.float32)
        self.is_greedy = dev(greedy, torch.bool)
        seeded_rows = [i for i, s in enumerate(seeded) if s]
        self.seeded_rows = dev(seeded_rows, torch.int64)
        # Seeds as two 32-bit halves: the noise hash works in 32-bit lanes of int64 tensors.
        seeds = [params[i].sampling_seed or 0 for i in seeded_rows]
        self.seed_lo = dev([s & 0xFFFFFFFF for s in seeds], torch.int64)
        self.seed_hi = dev([s >> 32 for s in seeds], torch.int64)
        self._build_logit_bias(params)
        self._build_min_new_tokens(params)

    def _build_logit_bias(self, params: list[SamplingParams]) -> None:
        rows, cols, vals = [], [], []
        for i, p in enumerate(params):
            for token, bias in p.logit_bias.items():
                rows.append(i)
                cols.append(token)
                vals.append(bias)
        self.has_logit_bias = bool(rows)
        self.bias_rows = upload(rows, torch.int64, self.device)
        self.bias_cols = upload(cols, torch.int64, self.device)
        self.bias_vals = upload(vals, torch.float32, self.device)

    def _build_min_new_tokens(self, params: list[SamplingParams]) -> None:
        """(row, token) pairs to mask while a row is below its min_new_tokens."""
        rows, cols, mins = [], [], []
        for i, p in enumerate(params):
            if p.min_new_tokens <= 0:
                continue
            for token in sorted(set(p.stop_token_ids) | set(self.eos_token_ids)):
                rows.append(i)
                cols.append(token)
                mins.append(p.min_new_tokens)
        self.has_min_new_tokens = bool(rows)
        self.min_rows = upload(rows, torch.int64, self.device)
        self.min_cols = upload(cols, torch.int64, self.device)
        self.min_limits = upload(mins, torch.int64, self.device)

    def _update_logprob_rows(self) -> None:
        self.logprob_rows = [i for i, r in enumerate(self.requests) if r.return_logprob]
        self.return_logprob = bool(self.logprob_rows)
        self.top_logprobs_nums = [self.requests[i].top_logprobs_num for i in self.logprob_rows]

    # ---- per step -----------------------------------------------------------------------------

    def record(self, next_token_ids: torch.Tensor) -> None:
        """Account this step's sampled tokens (penalty counts, generated-token counters)."""
        self.penalties.record(next_token_ids)
        self.num_generated += 1

"""Logprobs of sampled tokens, their top alternatives, and prompt logprobs.

Semantics follow SGLang's defaults (`SGLANG_RETURN_ORIGINAL_LOGPROB` unset, no
temperature scaling of input logprobs):
- output tokens: `log_softmax(logits / temperature)` of the logits *after* penalties,
  min_new_tokens, grammar mask and logit bias, *before* top-k / top-p / min-p filtering;
  greedy rows use temperature 1 (plain log-softmax).
- prompt tokens: `log_softmax` of the raw model logits (no temperature, no penalties).
Results are lists of `(logprob, token_id)` pairs; the server adds the token text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

Pair = tuple[float, int]


@dataclass
class TokenLogprobs:
    """The logprob of the sampled token and the top-N alternatives at one position."""

    logprob: float
    token_id: int
    top: list[Pair] = field(default_factory=list)


def gather_logprobs(
    logits: torch.Tensor,
    next_ids: torch.Tensor,
    rows: Sequence[int],
    top_nums: Sequence[int],
) -> list[TokenLogprobs | None]:
    """For batch rows `rows` (with `top_nums[j]` alternatives each): one host transfer."""
    out: list[TokenLogprobs | None] = [None] * logits.shape[0]
    if not rows:
        return out
    index = torch.as_tensor(list(rows), dtype=torch.int64, device=logits.device)
    lp = torch.log_softmax(logits.index_select(0, index), dim=-1)
    ids = next_ids.index_select(0, index)
    chosen = lp.gather(1, ids.view(-1, 1)).squeeze(1)
    k = min(max(top_nums), lp.shape[1])
    if k > 0:
        top_vals, top_ids = lp.topk(k, dim=-1)
        top_vals, top_ids = top_vals.tolist(), top_ids.tolist()
    chosen_l, ids_l = chosen.tolist(), ids.tolist()
    for j, row in enumerate(rows):
        n = min(top_nums[j], k)
        top = list(zip(top_vals[j][:n], top_ids[j][:n], strict=True)) if n > 0 else []
        out[row] = TokenLogprobs(chosen_l[j], ids_l[j], top)
    return out


@dataclass
class PromptLogprobs:
    """Prompt positions `start .. start + len - 1`: the first prompt token has no logprob."""

    start: int
    token_logprobs: list[tuple[float | None, int]]
    top_logprobs: list[list[Pair] | None]


def prompt_logprobs(
    logits: torch.Tensor,
    prompt_ids: Sequence[int],
    chunk_start: int,
    logprob_start_len: int,
    top_logprobs_num: int = 0,
) -> PromptLogprobs:
    """Prompt logprobs from one prefill chunk's all-position logits.

    `logits` `[n, V]` are the rows of positions `chunk_start .. chunk_start + n - 1`; row t
    predicts the token at position `chunk_start + t + 1`. This chunk scores the positions
    `p >= logprob_start_len` of the prompt whose predecessor `p - 1` is in the chunk, plus
    `p = 0` (no context: logprob None) in the first chunk; concatenating consecutive chunks'
    results gives every position from `logprob_start_len` on. A negative `logprob_start_len`
    (SGLang's -1: output logprobs only) scores nothing.
    """
    prompt_len = len(prompt_ids)
    if logprob_start_len < 0:
        return PromptLogprobs(start=prompt_len, token_logprobs=[], top_logprobs=[])
    start = max(logprob_start_len, 0 if chunk_start == 0 else chunk_start + 1)
    last = min(chunk_start + logits.shape[0], prompt_len - 1)
    pairs: list[tuple[float | None, int]] = []
    tops: list[list[Pair] | None] = []
    first = start
    if first == 0 and prompt_len > 0:
        pairs.append((None, int(prompt_ids[0])))
        tops.append(None)
        first = 1
    if first <= last:
        targets = [int(t) for t in prompt_ids[first : last + 1]]
        index = torch.tensor(targets, dtype=torch.int64).to(logits.device).view(-1, 1)
        lp = torch.log_softmax(logits[first - 1 - chunk_start : last - chunk_start].float(), -1)
        vals = lp.gather(1, index).squeeze(1).tolist()
        pairs.extend(zip(vals, targets, strict=True))
        k = min(top_logprobs_num, lp.shape[1])
        if k > 0:
            tv, ti = lp.topk(k, dim=-1)
            pairs_top = zip(tv.tolist(), ti.tolist(), strict=True)
            tops.extend(list(zip(v, i, strict=True)) for v, i in pairs_top)
        else:
            tops.extend([] for _ in vals)
    return PromptLogprobs(start=start, token_logprobs=pairs, top_logprobs=tops)

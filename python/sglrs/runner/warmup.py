"""A start-up prefill of the largest step the scheduler will plan, so that kernel compilation,
library loading and the allocator's growth for that shape happen before serving instead of in
the first requests' time (the first 16k-token chunk of an offline benchmark on an H100 took
~370 ms of host time without it), then two small prefills with odd shapes: Triton specializes
kernels on integer arguments that are 1 or multiples of 16, so a step of another parity (the
last, shorter chunk of a run; a single request) compiled its own variants while serving."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sglrs.runner.forward_batch import ForwardMode

WARMUP_REQUEST_TOKENS = 1024  # a typical prompt, not one long sequence
# (total tokens, tokens per request) of the odd-shaped warm-up steps: 3 requests, then 1.
ODD_WARMUP_STEPS = ((51, 17), (17, 17))


def warmup_plan(
    num_tokens: int,
    context_length: int,
    max_rows: int,
    capacity: int,
    vocab_size: int,
    request_tokens: int = WARMUP_REQUEST_TOKENS,
) -> SimpleNamespace | None:
    """A prefill plan of up to `num_tokens` new tokens in requests of up to `request_tokens`,
    on table rows `0..` and KV slots `0..` (free at start-up; later plans overwrite both), or
    None when nothing fits."""
    per_request = min(request_tokens, context_length)
    total = min(num_tokens, capacity, max_rows * per_request)
    if total <= 0 or per_request <= 0:
        return None
    extend = np.full(-(-total // per_request), per_request, dtype=np.int64)
    extend[-1] = total - per_request * (len(extend) - 1)
    n = len(extend)
    qo = np.concatenate([[0], np.cumsum(extend)])
    positions = np.arange(total, dtype=np.int64) - np.repeat(qo[:-1], extend)
    slots = np.arange(total, dtype=np.int64)
    return SimpleNamespace(
        kind=ForwardMode.EXTEND.value,
        req_ids=np.arange(n, dtype=np.uint64),
        req_pool_indices=np.arange(n, dtype=np.int64),
        prefix_lens=np.zeros(n, dtype=np.int64),
        extend_lens=extend,
        seq_lens=extend.copy(),
        qo_indptr=qo,
        input_ids=slots % vocab_size,
        positions=positions,
        out_cache_loc=slots,
        table_rows=np.arange(n, dtype=np.int64),
        table_starts=np.zeros(n, dtype=np.int64),
        table_indptr=qo,
        table_slots=slots,
        sample_mask=np.ones(n, dtype=bool),
    )

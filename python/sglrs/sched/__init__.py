"""Continuous-batching scheduler with a Rust core (``sglrs._core.Scheduler``).

Per step::

    plan = sched.schedule()            # StepPlan: flat numpy arrays (see docs/design.md)
    apply_table_writes(req_to_token, plan)
    next_ids = run_model(plan)         # one token per request with plan.sample_mask set
    done = Finished(*sched.update(next_ids, finished_mask))

Every plan, an idle one too, is answered by one ``update``.

Overlap scheduling plans the next step while the current one runs, before its tokens exist::

    plan = sched.schedule()                 # U
    launch(plan)
    while True:
        nxt = sched.schedule_ahead()        # N, planned while U runs; None: nothing changed
        if nxt is not None:
            launch(nxt)                     # placeholders resolved from U's tokens on the device
        done = Finished(*sched.update(sampled_tokens(plan)))  # commits U: oldest first
        if nxt is None:
            nxt = sched.schedule()
            launch(nxt)
        plan = nxt

In a plan from ``schedule_ahead``, ``input_ids[t] == -(j + 1)`` stands for token ``j`` of the
``token_ids`` passed to the previous plan's ``update`` (``plan.num_placeholders`` of them). A
request whose token in U ends it by length is not in N; one that ``update(U)`` finishes
otherwise (stop token, ``finished_mask``, ``abort``) keeps a dead row in N whose token is
ignored.
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from sglrs._core import Scheduler, StepPlan

__all__ = [
    "Finished",
    "FinishReason",
    "Scheduler",
    "SchedulerConfig",
    "StepPlan",
    "apply_table_writes",
    "resolve_placeholders",
]


class FinishReason(IntEnum):
    """Reason codes returned by ``Scheduler.update``."""

    LENGTH = 0
    STOP_TOKEN = 1
    PYTHON_FINISH = 2
    ABORT = 3
    ABORT_KV_CAPACITY = 4


@dataclasses.dataclass
class SchedulerConfig:
    """Scheduler knobs; the defaults mirror ``Scheduler.default_config``."""

    capacity_tokens: int
    page_size: int = 1
    max_running_requests: int = 256
    max_prefill_tokens: int = 16384
    # <= 0 (or None) disables chunked prefill.
    chunked_prefill_size: int | None = 8192
    schedule_policy: str = "fcfs"  # fcfs | lpm | dfs-weight | priority
    schedule_conservativeness: float = 1.0
    context_length: int = 8192
    enable_mixed_chunk: bool = False
    disable_radix_cache: bool = False
    emit_kv_indices: bool = False
    init_new_token_ratio: float = 0.7
    min_new_token_ratio_factor: float = 0.14
    new_token_ratio_decay_steps: int = 600
    clip_max_new_tokens: int = 4096
    retract_decode_steps: int = 20
    lpm_fallback_queue_len: int = 128
    starvation_steps: int = 1024
    starvation_overtakes: int = 256


class Finished(NamedTuple):
    """What ``Scheduler.update`` returns: requests that finished or were aborted."""

    ids: np.ndarray  # uint64
    reasons: np.ndarray  # uint8, FinishReason values
    matched_token_ids: np.ndarray  # int32, the stop token for STOP_TOKEN, else -1


def resolve_placeholders(input_ids: np.ndarray, prev_tokens: np.ndarray) -> np.ndarray:
    """``input_ids`` of a plan made ahead with each placeholder ``-(j + 1)`` replaced by
    ``prev_tokens[j]`` (the previous plan's sampled tokens); a CPU reference of the runner's
    on-device gather."""
    ids = np.asarray(input_ids)
    neg = ids < 0
    if not neg.any():
        return ids
    out = ids.copy()
    out[neg] = np.asarray(prev_tokens)[-ids[neg] - 1]
    return out


def apply_table_writes(req_to_token: np.ndarray, plan: StepPlan) -> None:
    """Apply ``plan``'s table writes to a numpy ``req_to_token[rows, context_length]`` table.

    A CPU reference of what a runner does on the device before the forward.
    """
    rows, starts, indptr, slots = (
        plan.table_rows,
        plan.table_starts,
        plan.table_indptr,
        plan.table_slots,
    )
    for w in range(len(rows)):
        lo, hi = int(indptr[w]), int(indptr[w + 1])
        start = int(starts[w])
        req_to_token[rows[w], start : start + hi - lo] = slots[lo:hi]

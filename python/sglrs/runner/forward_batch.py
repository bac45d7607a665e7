"""ForwardBatch: one StepPlan on the device, after applying its request-to-token table writes.

A plan is any object with the StepPlan attributes of docs/design.md (numpy arrays, `kind` a str).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import torch


class ForwardMode(Enum):
    EXTEND = "prefill"  # new tokens after a (possibly empty) cached prefix
    DECODE = "decode"  # exactly one new token per request
    MIXED = "mixed"  # extends and decodes in one batch
    IDLE = "idle"

    @property
    def is_decode(self) -> bool:
        return self is ForwardMode.DECODE


def _np(plan: Any, name: str, dtype: Any = np.int64) -> np.ndarray:
    return np.asarray(getattr(plan, name), dtype=dtype).reshape(-1)


def apply_table_writes(plan: Any, req_to_token: torch.Tensor) -> None:
    """`req_to_token[row_w, start_w : start_w + len_w] = slots_w` for every write `w`, at once."""
    rows, starts = _np(plan, "table_rows"), _np(plan, "table_starts")
    indptr, slots = _np(plan, "table_indptr"), _np(plan, "table_slots")
    if len(indptr) != len(rows) + 1 or len(starts) != len(rows) or indptr[-1] != len(slots):
        raise ValueError("plan table writes: table_indptr/rows/starts/slots lengths disagree")
    if len(slots) == 0:
        return
    lens = np.diff(indptr)
    row_of = np.repeat(rows, lens)
    col_of = np.repeat(starts - indptr[:-1], lens) + np.arange(len(slots))
    num_rows, num_cols = req_to_token.shape
    if row_of.min() < 0 or row_of.max() >= num_rows or col_of.min() < 0:
        raise ValueError(f"plan table write outside the request table's {num_rows} rows")
    if col_of.max() >= num_cols:
        raise ValueError(
            f"plan table write at position {col_of.max()} beyond context_length {num_cols}"
        )
    device = req_to_token.device
    req_to_token[torch.from_numpy(row_of).to(device), torch.from_numpy(col_of).to(device)] = (
        torch.from_numpy(slots.astype(np.int32)).to(device)
    )


@dataclass
class ForwardBatch:
    mode: ForwardMode
    batch_size: int
    req_ids: np.ndarray  # uint64 [B]
    sample_mask: np.ndarray  # bool [B]
    # Host copies (int64) for loops and slicing without device syncs.
    prefix_lens_cpu: np.ndarray
    extend_lens_cpu: np.ndarray
    seq_lens_cpu: np.ndarray
    qo_indptr_cpu: np.ndarray
    kv_indptr_cpu: np.ndarray
    # Device tensors (int64 so they index directly).
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    out_cache_loc: torch.Tensor  # [T]
    req_pool_indices: torch.Tensor  # [B]
    seq_lens: torch.Tensor  # [B]
    qo_indptr: torch.Tensor  # [B+1]
    kv_indptr: torch.Tensor  # [B+1]
    kv_indices: torch.Tensor  # [kv_indptr[-1]]: every KV slot of each request in position order
    req_to_token: torch.Tensor
    attn_backend: Any = field(default=None, repr=False)

    @property
    def num_tokens(self) -> int:
        return int(self.qo_indptr_cpu[-1])

    @classmethod
    def from_plan(
        cls, plan: Any, req_to_token: torch.Tensor, device: torch.device | str
    ) -> ForwardBatch:
        """Apply the plan's table writes to `req_to_token`, then build the device tensors."""
        mode = ForwardMode(plan.kind)
        apply_table_writes(plan, req_to_token)
        prefix, extend = _np(plan, "prefix_lens"), _np(plan, "extend_lens")
        seq, qo = _np(plan, "seq_lens"), _np(plan, "qo_indptr")
        rows = _np(plan, "req_pool_indices")
        input_ids, positions = _np(plan, "input_ids"), _np(plan, "positions")
        out_loc = _np(plan, "out_cache_loc")
        b, t = len(seq), int(extend.sum())
        if not (len(prefix) == len(extend) == len(rows) == b and len(qo) == b + 1):
            raise ValueError("plan: per-request arrays have different lengths")
        if not np.array_equal(seq, prefix + extend) or not np.array_equal(np.diff(qo), extend):
            raise ValueError("plan: seq_lens != prefix_lens + extend_lens or bad qo_indptr")
        if not (len(input_ids) == len(positions) == len(out_loc) == t):
            raise ValueError(f"plan: input_ids/positions/out_cache_loc must have {t} entries")
        if mode is ForwardMode.DECODE and np.any(extend != 1):
            raise ValueError("plan: a decode step must extend every request by one token")
        if b and seq.max() > req_to_token.shape[1]:
            raise ValueError(f"plan: sequence of {seq.max()} tokens exceeds context_length")
        kv_indptr = np.concatenate([[0], np.cumsum(seq)])
        dev = torch.device(device)

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(dev)

        rows_t, seq_t, kv_indptr_t = put(rows), put(seq), put(kv_indptr)
        # Every (row, position) of the batch's KV, gathered from the table on the device.
        n = int(kv_indptr[-1])
        row_of = torch.repeat_interleave(rows_t, seq_t, output_size=n)
        col_of = torch.arange(n, device=dev) - torch.repeat_interleave(
            kv_indptr_t[:-1], seq_t, output_size=n
        )
        kv_indices = req_to_token[row_of, col_of].long()
        return cls(
            mode=mode,
            batch_size=b,
            req_ids=np.asarray(plan.req_ids, dtype=np.uint64).reshape(-1),
            sample_mask=np.asarray(plan.sample_mask, dtype=bool).reshape(-1),
            prefix_lens_cpu=prefix,
            extend_lens_cpu=extend,
            seq_lens_cpu=seq,
            qo_indptr_cpu=qo,
            kv_indptr_cpu=kv_indptr,
            input_ids=put(input_ids),
            positions=put(positions),
            out_cache_loc=put(out_loc),
            req_pool_indices=rows_t,
            seq_lens=seq_t,
            qo_indptr=put(qo),
            kv_indptr=kv_indptr_t,
            kv_indices=kv_indices,
            req_to_token=req_to_token,
        )

    def check_kv_indices(self, plan: Any) -> None:
        """Raise unless the plan's own `kv_indptr`/`kv_indices` (config `emit_kv_indices`)
        equal what the request-to-token table gives: the table is in sync with the scheduler."""
        want_indptr, want = _np(plan, "kv_indptr"), _np(plan, "kv_indices")
        if not np.array_equal(want_indptr, self.kv_indptr_cpu):
            raise ValueError("plan kv_indptr disagrees with seq_lens")
        have = self.kv_indices.cpu().numpy()
        if not np.array_equal(have, want):
            bad = int(np.flatnonzero(have != want)[0])
            r = int(np.searchsorted(self.kv_indptr_cpu, bad, side="right") - 1)
            raise ValueError(
                f"request-to-token table out of sync: request {r} position "
                f"{bad - self.kv_indptr_cpu[r]} has slot {have[bad]}, the plan says {want[bad]}"
            )

"""ForwardBatch: one StepPlan on the device, after applying its request-to-token table writes.

A plan is any object with the StepPlan attributes of docs/design.md (numpy arrays, `kind` a str).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import torch

from sglrs.kernels import use_triton


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


def _table_write_indices(
    plan: Any, req_to_token: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, slots) of every table entry the plan writes, checked against the
    table's shape."""
    rows, starts = _np(plan, "table_rows"), _np(plan, "table_starts")
    indptr, slots = _np(plan, "table_indptr"), _np(plan, "table_slots")
    if len(indptr) != len(rows) + 1 or len(starts) != len(rows) or indptr[-1] != len(slots):
        raise ValueError("plan table writes: table_indptr/rows/starts/slots lengths disagree")
    if len(slots) == 0:
        return slots, slots, slots
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
    return row_of, col_of, slots


def apply_table_writes(plan: Any, req_to_token: torch.Tensor) -> None:
    """`req_to_token[row_w, start_w : start_w + len_w] = slots_w` for every write `w`, at once."""
    row_of, col_of, slots = _table_write_indices(plan, req_to_token)
    if len(slots) == 0:
        return
    device = req_to_token.device
    req_to_token[torch.from_numpy(row_of).to(device), torch.from_numpy(col_of).to(device)] = (
        torch.from_numpy(slots.astype(np.int32)).to(device)
    )


class StagingBuffer:
    """Pinned host memory for a step's int64 arrays, so they reach the GPU in one copy. Two
    buffers, used in turn: with overlap scheduling step N+1 is built while step N's copy may
    still be queued, but step N-1's has run (its sampled tokens were read, which waited for
    everything queued before them)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._hosts: list[torch.Tensor | None] = [None, None]
        self._turn = 0

    def upload(self, arrays: list[np.ndarray]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The arrays in one device tensor, and one view of it per array."""
        # Each view starts 16-byte aligned (arrays padded to even lengths): Triton specializes
        # kernels on pointer alignment, so views whose alignment followed the parity of the
        # arrays before them compiled new kernel variants mid-serving (a 3 s host stall in an
        # offline run on the H100).
        sizes = [len(a) for a in arrays]
        starts = [0]
        for n in sizes:
            starts.append(starts[-1] + n + (n & 1))
        total = starts[-1]
        if self.device.type != "cuda":
            dev = torch.zeros(total, dtype=torch.int64)
            host = dev.numpy()
        else:
            self._turn ^= 1
            pinned = self._hosts[self._turn]
            if pinned is None or pinned.numel() < total:
                pinned = torch.empty(max(total, 1 << 16) * 2, dtype=torch.int64, pin_memory=True)
                self._hosts[self._turn] = pinned
            host = pinned.numpy()
        for a, at in zip(arrays, starts, strict=False):
            host[at : at + len(a)] = a
        if self.device.type == "cuda":
            dev = pinned[:total].to(self.device, non_blocking=True)
        return dev, [dev[at : at + n] for at, n in zip(starts, sizes, strict=False)]


def _fill_placeholders(input_ids: torch.Tensor, prev_tokens: torch.Tensor) -> None:
    """Replace each placeholder `-(j + 1)` by `prev_tokens[j]`, in place, on the device (no
    host sync: the previous step's sampling is queued ahead of this copy)."""
    rows = (-input_ids - 1).clamp_(min=0, max=prev_tokens.numel() - 1)
    filled = torch.where(input_ids < 0, prev_tokens.to(input_ids.device)[rows], input_ids)
    input_ids.copy_(filled)


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
    req_to_token: torch.Tensor
    sample_rows: torch.Tensor  # [num sampled]: the row of `hidden` each sampled request reads
    attn_backend: Any = field(default=None, repr=False)
    # input_ids, positions, out_cache_loc, req_pool_indices, seq_lens as one [5, B] device view
    # (the CUDA-graph runner copies it into its static inputs at once).
    decode_block: torch.Tensor | None = field(default=None, repr=False)
    _kv_indices: torch.Tensor | None = field(default=None, repr=False)

    @property
    def num_tokens(self) -> int:
        return int(self.qo_indptr_cpu[-1])

    @property
    def kv_indices(self) -> torch.Tensor:
        """`[kv_indptr[-1]]`: every KV slot of each request in position order (gathered from
        the table on first use; the GPU backends read the table themselves)."""
        if self._kv_indices is None:
            n = int(self.kv_indptr_cpu[-1])
            row_of = torch.repeat_interleave(self.req_pool_indices, self.seq_lens, output_size=n)
            col_of = torch.arange(n, device=self.seq_lens.device) - torch.repeat_interleave(
                self.kv_indptr[:-1], self.seq_lens, output_size=n
            )
            self._kv_indices = self.req_to_token[row_of, col_of].long()
        return self._kv_indices

    @classmethod
    def from_plan(
        cls,
        plan: Any,
        req_to_token: torch.Tensor,
        device: torch.device | str,
        staging: StagingBuffer | None = None,
        prev_tokens: torch.Tensor | None = None,
    ) -> ForwardBatch:
        """Apply the plan's table writes to `req_to_token`, then build the device tensors
        (one host-to-device copy for all of them). A plan made ahead (`schedule_ahead`) has
        placeholder input ids `-(j + 1)`: the token of row `j` of `prev_tokens`."""
        mode = ForwardMode(plan.kind)
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
        sample_mask = np.asarray(plan.sample_mask, dtype=bool).reshape(-1)
        kv_indptr = np.concatenate([[0], np.cumsum(seq)])
        row_of, col_of, slots = _table_write_indices(plan, req_to_token)
        dev = torch.device(device)
        staging = staging or StagingBuffer(dev)
        flat, (w_rows, w_cols, w_slots, input_ids_t, positions_t, out_loc_t, rows_t, seq_t, qo_t,
               kv_indptr_t, sample_rows_t) = staging.upload(
            [row_of, col_of, slots, input_ids, positions, out_loc, rows, seq, qo, kv_indptr,
             qo[1:][sample_mask] - 1]
        )  # fmt: skip
        decode_block = None
        if mode is ForwardMode.DECODE:  # the five per-request arrays, each padded to even
            start = input_ids_t.storage_offset() - flat.storage_offset()
            padded = b + (b & 1)
            decode_block = flat[start : start + 5 * padded].view(5, padded)[:, :b]
        fill = bool(getattr(plan, "num_placeholders", 0))
        if fill and (prev_tokens is None or prev_tokens.numel() == 0):
            raise ValueError("the plan has placeholder input ids but no previous step's tokens")
        if use_triton(flat):  # one launch for both edits
            from sglrs.kernels.step_inputs import apply_step_inputs

            prev = prev_tokens if fill else None
            apply_step_inputs(input_ids_t, prev, req_to_token, w_rows, w_cols, w_slots)
        else:
            if len(slots):
                req_to_token[w_rows, w_cols] = w_slots.to(req_to_token.dtype)
            if fill:
                _fill_placeholders(input_ids_t, prev_tokens)
        return cls(
            mode=mode,
            batch_size=b,
            req_ids=np.asarray(plan.req_ids, dtype=np.uint64).reshape(-1),
            sample_mask=sample_mask,
            prefix_lens_cpu=prefix,
            extend_lens_cpu=extend,
            seq_lens_cpu=seq,
            qo_indptr_cpu=qo,
            kv_indptr_cpu=kv_indptr,
            input_ids=input_ids_t,
            positions=positions_t,
            out_cache_loc=out_loc_t,
            req_pool_indices=rows_t,
            seq_lens=seq_t,
            qo_indptr=qo_t,
            kv_indptr=kv_indptr_t,
            req_to_token=req_to_token,
            sample_rows=sample_rows_t,
            decode_block=decode_block,
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

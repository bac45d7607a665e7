"""Test fixture: hand-built StepPlans (the fields of docs/design.md) from a tiny slot allocator.

It stands in for the Rust scheduler in runner/model tests: requests get a table row, KV slots
are handed out in a shuffled order (so a request's slots are not contiguous), a new request may
adopt another's first slots as a cached prefix, and each step's plan carries only the table
writes for the slots that are new to the table.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Plan:
    kind: str
    req_ids: np.ndarray
    req_pool_indices: np.ndarray
    prefix_lens: np.ndarray
    extend_lens: np.ndarray
    seq_lens: np.ndarray
    qo_indptr: np.ndarray
    input_ids: np.ndarray
    positions: np.ndarray
    out_cache_loc: np.ndarray
    table_rows: np.ndarray
    table_starts: np.ndarray
    table_indptr: np.ndarray
    table_slots: np.ndarray
    sample_mask: np.ndarray
    finished_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    aborted_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    retracted_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    kv_indptr: np.ndarray | None = None
    kv_indices: np.ndarray | None = None


def i32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


@dataclass
class _Req:
    row: int
    slots: list[int]  # KV slot of every position computed so far (or adopted)
    tokens: list[int]
    new_prefix: list[int]  # adopted slots not yet written to the table


class PlanBuilder:
    def __init__(
        self, capacity: int = 256, rows: int = 8, seed: int = 0, emit_kv_indices: bool = False
    ) -> None:
        self.free = list(range(capacity))
        random.Random(seed).shuffle(self.free)
        self.free_rows = list(range(rows))[::-1]
        self.reqs: dict[int, _Req] = {}
        self.emit_kv_indices = emit_kv_indices

    def add(self, req_id: int, cached_from: tuple[int, int] | None = None) -> None:
        """Admit a request; `cached_from=(other_id, n)` adopts the other's first n slots."""
        prefix_slots, prefix_tokens = [], []
        if cached_from is not None:
            other, n = self.reqs[cached_from[0]], cached_from[1]
            prefix_slots, prefix_tokens = other.slots[:n], other.tokens[:n]
        row = self.free_rows.pop()
        self.reqs[req_id] = _Req(row, list(prefix_slots), list(prefix_tokens), list(prefix_slots))

    def finish(self, req_id: int) -> None:
        self.free_rows.append(self.reqs.pop(req_id).row)

    def step(
        self,
        new_tokens: dict[int, list[int]],
        sample: set[int] | None = None,
        kind: str | None = None,
    ) -> Plan:
        """A plan extending each request (in dict order) by its new tokens."""
        ids = list(new_tokens)
        prefix, extend, rows = [], [], []
        input_ids, positions, out_loc = [], [], []
        t_rows, t_starts, t_indptr, t_slots = [], [], [0], []
        for rid in ids:
            req, toks = self.reqs[rid], new_tokens[rid]
            if req.new_prefix:
                t_rows.append(req.row)
                t_starts.append(0)
                t_slots += req.new_prefix
                t_indptr.append(len(t_slots))
                req.new_prefix = []
            slots = [self.free.pop() for _ in toks]
            p = len(req.slots)
            t_rows.append(req.row)
            t_starts.append(p)
            t_slots += slots
            t_indptr.append(len(t_slots))
            prefix.append(p)
            extend.append(len(toks))
            rows.append(req.row)
            input_ids += toks
            positions += range(p, p + len(toks))
            out_loc += slots
            req.slots += slots
            req.tokens += toks
        if kind is None:
            kind = "decode" if all(e == 1 for e in extend) and all(prefix) else "prefill"
        seq = [p + e for p, e in zip(prefix, extend, strict=True)]
        plan = Plan(
            kind=kind,
            req_ids=np.asarray(ids, dtype=np.uint64),
            req_pool_indices=i32(rows),
            prefix_lens=i32(prefix),
            extend_lens=i32(extend),
            seq_lens=i32(seq),
            qo_indptr=i32(np.concatenate([[0], np.cumsum(extend)])),
            input_ids=i32(input_ids),
            positions=i32(positions),
            out_cache_loc=i32(out_loc),
            table_rows=i32(t_rows),
            table_starts=i32(t_starts),
            table_indptr=i32(t_indptr),
            table_slots=i32(t_slots),
            sample_mask=np.array([sample is None or r in sample for r in ids], dtype=bool),
        )
        if self.emit_kv_indices:
            plan.kv_indptr = i32(np.concatenate([[0], np.cumsum(seq)]))
            plan.kv_indices = i32([s for rid in ids for s in self.reqs[rid].slots])
        return plan

    def tokens(self, req_id: int) -> list[int]:
        return list(self.reqs[req_id].tokens)

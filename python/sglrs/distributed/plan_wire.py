"""Each step's plan as one compact byte buffer, for the broadcast from rank 0 to the others.

Layout: `[u32 header length][msgpack header][array bytes, each 8-byte aligned]`. The header
(msgspec, no pickle) holds the op, the plan's kind and counts, the requests whose every-position
logits are wanted, and each array's name, dtype and length. Decoding gives numpy views into the
received (writable) buffer: no copy per array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

PLAN_ARRAYS = (
    "req_ids",
    "req_pool_indices",
    "prefix_lens",
    "extend_lens",
    "seq_lens",
    "qo_indptr",
    "input_ids",
    "positions",
    "out_cache_loc",
    "table_rows",
    "table_starts",
    "table_indptr",
    "table_slots",
    "sample_mask",
    "finished_ids",
    "aborted_ids",
    "retracted_ids",
    "kv_indptr",
    "kv_indices",
)
PLAN_COUNTS = ("batch_size", "num_tokens", "num_sampled", "num_placeholders")
OP_FORWARD, OP_STOP, OP_HEARTBEAT = "forward", "stop", "heartbeat"
_ALIGN = 8
_HEADER_LEN = 4


class _Header(msgspec.Struct, array_like=True):
    op: str
    kind: str
    counts: list[int]
    all_logits_req_ids: list[int]
    names: list[str]
    dtypes: list[str]
    lengths: list[int]


@dataclass
class WirePlan:
    """A decoded plan: the StepPlan attributes (numpy arrays; None for absent optional ones)."""

    kind: str
    arrays: dict[str, np.ndarray | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        counts = self.__dict__.get("counts", {})
        if name in counts:
            return counts[name]
        raise AttributeError(name)


@dataclass
class StepMessage:
    op: str
    plan: WirePlan | None = None
    all_logits_req_ids: list[int] = field(default_factory=list)


def _pad(n: int) -> int:
    return -n % _ALIGN


def encode_step(plan: Any, all_logits_req_ids: list[int]) -> bytes:
    """Encode a StepPlan-like object (attributes of docs/design.md) for one forward."""
    arrays = []
    for name in PLAN_ARRAYS:
        value = getattr(plan, name, None)
        if value is not None:
            arrays.append((name, np.ascontiguousarray(value).reshape(-1)))
    counts = [int(getattr(plan, name, 0)) for name in PLAN_COUNTS]
    header = _Header(
        op=OP_FORWARD,
        kind=str(plan.kind),
        counts=counts,
        all_logits_req_ids=[int(r) for r in all_logits_req_ids],
        names=[n for n, _ in arrays],
        dtypes=[a.dtype.str for _, a in arrays],
        lengths=[len(a) for _, a in arrays],
    )
    return _pack(header, [a for _, a in arrays])


def encode_stop() -> bytes:
    return _pack(_Header(OP_STOP, "", [], [], [], [], []), [])


def encode_heartbeat() -> bytes:
    """Sent while idle: a rank that has died fails it, so rank 0 notices without a request."""
    return _pack(_Header(OP_HEARTBEAT, "", [], [], [], [], []), [])


def _pack(header: _Header, arrays: list[np.ndarray]) -> bytes:
    head = msgspec.msgpack.encode(header)
    parts = [len(head).to_bytes(_HEADER_LEN, "little"), head]
    offset = _HEADER_LEN + len(head)
    for a in arrays:
        parts.append(b"\0" * _pad(offset))
        offset += _pad(offset)
        parts.append(a.tobytes())
        offset += a.nbytes
    return b"".join(parts)


def decode_step(buf: bytearray) -> StepMessage:
    view = memoryview(buf)
    n = int.from_bytes(view[:_HEADER_LEN], "little")
    header = msgspec.msgpack.decode(view[_HEADER_LEN : _HEADER_LEN + n], type=_Header)
    if header.op in (OP_STOP, OP_HEARTBEAT):
        return StepMessage(header.op)
    if header.op != OP_FORWARD:
        raise ValueError(f"plan broadcast: unknown op {header.op!r}")
    offset = _HEADER_LEN + n
    arrays: dict[str, np.ndarray | None] = dict.fromkeys(PLAN_ARRAYS)
    for name, dtype, length in zip(header.names, header.dtypes, header.lengths, strict=True):
        offset += _pad(offset)
        dt = np.dtype(dtype)
        arrays[name] = np.frombuffer(buf, dtype=dt, count=length, offset=offset)
        offset += dt.itemsize * length
    if offset != len(buf):
        raise ValueError(f"plan broadcast: {len(buf) - offset} trailing bytes")
    counts = {k: v for k, v in zip(PLAN_COUNTS, header.counts, strict=True) if v >= 0}
    plan = WirePlan(header.kind, arrays, counts)
    return StepMessage(OP_FORWARD, plan, list(header.all_logits_req_ids))

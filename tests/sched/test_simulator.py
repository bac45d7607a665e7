"""Random workloads through the Python bindings with a fake model.

The fake model's token at a position is a hash of (request, position); the fake KV of a slot is
(position, token, hash of the prefix). After replaying each plan's table writes into a
simulated ``req_to_token`` table, every request of the batch must read exactly its own
sequence through its row, and ``kv_indices`` must agree with the row.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from sglrs.sched import FinishReason, Scheduler, apply_table_writes

EOS, STOP, VOCAB = 1, 2, 400


def _h(*parts: int) -> int:
    data = b",".join(str(p).encode() for p in parts)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def model_token(rid: int, pos: int) -> int:
    h = _h(rid, pos)
    if h % 100 < 2:
        return EOS
    if h % 100 == 2:
        return STOP
    return 3 + (h // 100) % (VOCAB - 3)


def python_finish(rid: int, pos: int) -> bool:
    return _h(rid, pos, 7) % 100 == 0


@dataclass
class Req:
    tokens: list[int]
    prompt_len: int
    expected: tuple[int, int]
    hashes: list[int] = field(default_factory=list)
    row: int | None = None
    done: bool = False


def expected_finish(
    rid: int, prompt_len: int, max_new: int, ignore_eos: bool, stops: set[int]
) -> tuple[int, int]:
    for k in range(1, max_new + 1):
        pos = prompt_len + k - 1
        if python_finish(rid, pos):
            return k, FinishReason.PYTHON_FINISH
        if not ignore_eos and model_token(rid, pos) in stops:
            return k, FinishReason.STOP_TOKEN
    return max_new, FinishReason.LENGTH


class Sim:
    def __init__(self, **cfg: object) -> None:
        self.s = Scheduler(emit_kv_indices=True, **cfg)
        c = self.s.config
        self.ctx = c["context_length"]
        self.capacity = c["capacity_tokens"] // c["page_size"] * c["page_size"]
        self.table = np.full((c["max_running_requests"], self.ctx), -1, dtype=np.int32)
        self.kv: dict[int, tuple[int, int, int]] = {}
        self.reqs: dict[int, Req] = {}
        self.aborted: set[int] = set()
        self.kinds: dict[str, int] = {}

    def add(self, rid: int, prompt: list[int], max_new: int, rng: random.Random) -> None:
        ignore_eos = rng.random() < 0.2
        stops = {STOP} if rng.random() < 0.5 else set()
        self.s.add_request(
            rid,
            prompt,
            max_new,
            ignore_eos=ignore_eos,
            stop_token_ids=sorted(stops),
            eos_token_ids=[EOS],
            priority=rng.randrange(3),
        )
        req = Req(
            list(prompt),
            len(prompt),
            expected_finish(rid, len(prompt), max_new, ignore_eos, stops | {EOS}),
        )
        h = 0
        for t in prompt:
            h = _h(h, t)
            req.hashes.append(h)
        self.reqs[rid] = req

    def live(self) -> list[int]:
        return sorted(r for r, q in self.reqs.items() if not q.done)

    def abort(self, rid: int) -> None:
        assert self.s.abort(rid) is True
        self.aborted.add(rid)
        self.reqs[rid].done = True

    def schedule(self) -> None:
        p = self.plan = self.s.schedule()
        self.kinds[p.kind] = self.kinds.get(p.kind, 0) + 1
        for rid in [*p.finished_ids.tolist(), *p.aborted_ids.tolist(), *p.retracted_ids.tolist()]:
            self.reqs[rid].row = None
        out = p.out_cache_loc
        assert len(set(out.tolist())) == out.size and (out < self.capacity).all()
        assert p.qo_indptr[-1] == p.input_ids.size == p.positions.size
        apply_table_writes(self.table, p)
        rows = p.req_pool_indices.tolist()
        assert len(set(rows)) == len(rows)
        for r, rid in enumerate(p.req_ids.tolist()):
            q = self.reqs[rid]
            assert not q.done
            if q.row is None:
                q.row = rows[r]
            assert q.row == rows[r]
            pre, seq = int(p.prefix_lens[r]), int(p.seq_lens[r])
            lo, hi = int(p.qo_indptr[r]), int(p.qo_indptr[r + 1])
            assert hi - lo == seq - pre >= 1 and seq <= len(q.tokens)
            assert bool(p.sample_mask[r]) == (seq == len(q.tokens))
            assert p.input_ids[lo:hi].tolist() == q.tokens[pre:seq]
            assert p.positions[lo:hi].tolist() == list(range(pre, seq))
            for j in range(pre, seq):
                self.kv[int(out[lo + j - pre])] = (j, q.tokens[j], q.hashes[j])
        for r, rid in enumerate(p.req_ids.tolist()):
            q, seq = self.reqs[rid], int(p.seq_lens[r])
            row = self.table[rows[r], :seq]
            kv = p.kv_indices[p.kv_indptr[r] : p.kv_indptr[r + 1]]
            assert row.tolist() == kv.tolist()
            got = [self.kv.get(int(s)) for s in row]
            assert got == list(zip(range(seq), q.tokens[:seq], q.hashes[:seq], strict=True))

    def update(self) -> None:
        p = self.plan
        tokens, fin = [], []
        for r in np.flatnonzero(p.sample_mask).tolist():
            rid, pos = int(p.req_ids[r]), int(p.seq_lens[r])
            tok = model_token(rid, pos)
            tokens.append(tok)
            fin.append(python_finish(rid, pos))
            q = self.reqs[rid]
            if not q.done:
                q.tokens.append(tok)
                q.hashes.append(_h(q.hashes[-1], tok))
        ids, reasons, matched = self.s.update(np.array(tokens, dtype=np.int64), np.array(fin))
        for rid, reason, m in zip(ids.tolist(), reasons.tolist(), matched.tolist(), strict=True):
            q = self.reqs[rid]
            if reason == FinishReason.ABORT:
                assert rid in self.aborted
                continue
            assert reason != FinishReason.ABORT_KV_CAPACITY
            assert not q.done
            q.done = True
            assert (len(q.tokens) - q.prompt_len, reason) == q.expected
            assert m == (q.tokens[-1] if reason == FinishReason.STOP_TOKEN else -1)


@pytest.mark.parametrize("page_size", [1, 4])
@pytest.mark.parametrize("chunked", [0, 12])
@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("policy", ["lpm", "fcfs", "dfs-weight", "priority"])
def test_random_workload(page_size: int, chunked: int, mixed: bool, policy: str) -> None:
    rng = random.Random(f"{page_size}-{chunked}-{mixed}-{policy}")
    sim = Sim(
        capacity_tokens=160,
        page_size=page_size,
        chunked_prefill_size=chunked,
        enable_mixed_chunk=mixed,
        schedule_policy=policy,
        max_running_requests=6,
        max_prefill_tokens=48,
        context_length=96,
        init_new_token_ratio=0.1,
    )
    templates = [[rng.randrange(3, VOCAB) for _ in range(rng.randrange(4, 30))] for _ in range(3)]
    n, next_id, steps = 25, 0, 0
    while next_id < n or sim.live():
        if next_id < n and rng.random() < 0.4:
            prompt = list(rng.choice(templates)) if rng.random() < 0.7 else []
            prompt += [rng.randrange(3, VOCAB) for _ in range(rng.randrange(1, 20))]
            sim.add(next_id, prompt, rng.randrange(1, 30), rng)
            next_id += 1
        if rng.random() < 0.03 and sim.live():
            sim.abort(rng.choice(sim.live()))
        sim.schedule()
        if rng.random() < 0.03 and sim.live():
            sim.abort(rng.choice(sim.live()))
        sim.update()
        sim.s.check_integrity()
        steps += 1
        assert steps < 3000
    sim.schedule()
    sim.update()
    assert len(sim.s) == 0
    assert sim.s.flush_cache()
    st = sim.s.stats()
    assert st["free_tokens"] == st["capacity_tokens"]
    assert st["num_finished"] + st["num_aborted"] == n
    if mixed:
        assert sim.kinds.get("mixed", 0) > 0

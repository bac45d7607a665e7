"""Planning a step ahead (``Scheduler.schedule_ahead``) through the bindings: placeholders,
oldest-first updates, dead rows, declines, and the same outputs as plain driving."""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest

from sglrs.sched import FinishReason, Scheduler, StepPlan, resolve_placeholders

EOS = 1


def make(**kw: object) -> Scheduler:
    kw.setdefault("capacity_tokens", 256)
    kw.setdefault("context_length", 128)
    return Scheduler(**kw)


def toks(*t: int) -> np.ndarray:
    return np.array(t, dtype=np.int32)


def test_placeholders_and_oldest_first_updates() -> None:
    s = make()
    for rid in range(3):
        s.add_request(rid, [10 + rid, 20, 30], 8, eos_token_ids=[EOS])
    with pytest.raises(RuntimeError, match="without a scheduled plan"):
        s.schedule_ahead()
    u = s.schedule()
    assert u.num_placeholders == 0
    n = s.schedule_ahead()
    assert isinstance(n, StepPlan) and n.kind == "decode"
    assert n.input_ids.tolist() == [-1, -2, -3] and n.num_placeholders == 3
    assert n.positions.tolist() == [3, 3, 3]
    with pytest.raises(RuntimeError):
        s.schedule_ahead()
    with pytest.raises(RuntimeError):
        s.schedule()
    s.check_integrity()
    with pytest.raises(ValueError, match="expected 3 tokens"):
        s.update(toks(5))
    s.update(toks(5, 6, 7))
    assert resolve_placeholders(n.input_ids, toks(5, 6, 7)).tolist() == [5, 6, 7]
    s.check_integrity()
    s.update(toks(8, 9, 4))
    plain = s.schedule()
    assert plain.input_ids.tolist() == [8, 9, 4] and plain.num_placeholders == 0
    s.update(toks(3, 3, 3))
    s.check_integrity()


def test_eos_in_u_leaves_a_dead_row_and_abort_with_two_in_flight() -> None:
    s = make()
    s.add_request(0, [4, 5], 1)  # length-finishes in U: not in N
    s.add_request(1, [6, 7], 5, eos_token_ids=[EOS])
    s.add_request(2, [8, 9], 5)
    s.add_request(3, [8, 7], 5)
    s.schedule()
    n = s.schedule_ahead()
    assert n is not None and n.req_ids.tolist() == [1, 2, 3]
    assert n.input_ids.tolist() == [-2, -3, -4]
    assert s.abort(3) is True
    ids, reasons, matched = s.update(toks(3, EOS, 3, 3))
    assert dict(zip(ids.tolist(), reasons.tolist(), strict=True)) == {
        3: FinishReason.ABORT,
        0: FinishReason.LENGTH,
        1: FinishReason.STOP_TOKEN,
    }
    s.check_integrity()
    ids, _, _ = s.update(toks(EOS, 3, 3))  # rows of 1 and 3 are dead: tokens ignored
    assert ids.size == 0
    s.check_integrity()
    p = s.schedule()
    assert p.req_ids.tolist() == [2]
    assert sorted(p.finished_ids.tolist()) == [0, 1] and p.aborted_ids.tolist() == [3]
    s.update(toks(3))
    s.abort(2)
    s.schedule()
    assert s.schedule_ahead() is None  # would be idle
    s.update(toks())
    assert len(s) == 0 and s.flush_cache()
    assert s.stats()["free_tokens"] == 256


def token_at(rid: int, pos: int) -> int:
    """The fake model: a deterministic token per (request, position); ~3% EOS."""
    h = (rid * 1_000_003 + pos * 7919) % 10_007
    return EOS if h % 33 == 0 else 3 + h % 500


def drive(stream: list[tuple[int, list[int], int]], ahead: bool, **cfg: object) -> dict:
    """Plays the stream (arrivals at fixed rounds) and returns {id: (tokens, reason)}."""
    s = make(**cfg)
    out: dict[int, list[int]] = {}
    reasons: dict[int, int] = {}
    prompts = {rid: p for rid, p, _ in stream}
    inflight: deque[tuple[StepPlan, np.ndarray]] = deque()
    pending = deque(stream)
    rounds = 0

    def run(plan: StepPlan) -> None:
        prev = inflight[-1][1] if inflight else np.zeros(0, dtype=np.int32)
        ids = resolve_placeholders(plan.input_ids, prev)
        for r, rid in enumerate(plan.req_ids.tolist()):
            lo, hi = int(plan.qo_indptr[r]), int(plan.qo_indptr[r + 1])
            pre = int(plan.prefix_lens[r])
            end, prompt = pre + hi - lo, prompts[rid]
            seq = prompt + [token_at(rid, q) for q in range(len(prompt), end)]
            assert ids[lo:hi].tolist() == seq[pre:end]
        rows = np.flatnonzero(plan.sample_mask)
        sampled = [token_at(int(plan.req_ids[r]), int(plan.seq_lens[r])) for r in rows]
        inflight.append((plan, np.array(sampled, dtype=np.int32)))

    def update() -> None:
        plan, sampled = inflight.popleft()
        for k, r in enumerate(np.flatnonzero(plan.sample_mask).tolist()):
            rid = int(plan.req_ids[r])
            if rid not in reasons:
                out.setdefault(rid, []).append(int(sampled[k]))
        ids, why, _ = s.update(sampled)
        reasons.update(zip(ids.tolist(), why.tolist(), strict=True))
        s.check_integrity()

    while pending or len(s) or inflight:
        rounds += 1
        assert rounds < 5000
        while pending and rounds % 3 == 0:
            rid, prompt, max_new = pending.popleft()
            s.add_request(rid, prompt, max_new, eos_token_ids=[EOS])
            if rid % 2:
                break
        if not inflight:
            run(s.schedule())
            s.check_integrity()
        if ahead:
            n = s.schedule_ahead()
            s.check_integrity()
            if n is not None:
                run(n)
        update()
    return {rid: (out.get(rid, []), reasons[rid]) for rid, _, _ in stream}


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"page_size": 4, "chunked_prefill_size": 8, "max_prefill_tokens": 24},
        {"enable_mixed_chunk": True, "chunked_prefill_size": 8, "max_running_requests": 4},
        {"capacity_tokens": 80, "init_new_token_ratio": 0.05, "chunked_prefill_size": 8},
    ],
)
def test_ahead_and_plain_driving_give_the_same_outputs(cfg: dict) -> None:
    rng = random.Random(str(cfg))
    head = [rng.randrange(3, 500) for _ in range(10)]
    stream = [
        (
            rid,
            head[: rng.randrange(0, 10)]
            + [rng.randrange(3, 500) for _ in range(rng.randrange(1, 20))],
            rng.randrange(1, 24),
        )
        for rid in range(30)
    ]
    plain = drive(stream, ahead=False, **cfg)
    ahead = drive(stream, ahead=True, **cfg)
    assert plain == ahead
    assert all(
        len(t) == n or r == FinishReason.STOP_TOKEN
        for (t, r), (_, _, n) in zip(plain.values(), stream, strict=True)
    )

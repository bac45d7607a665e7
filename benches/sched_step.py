"""Cost of one scheduler step from Python: ``schedule()`` + ``update()`` incl. the numpy hand-off.

Scenarios: steady decode of 32 / 256 / 1024 requests (512-token prompts, long max_new_tokens),
also planned ahead (``schedule_ahead`` while the previous step is in flight, then its
``update``; timed alternately with the plain steps and reported as a ratio to them), and one
prefill step admitting 64 requests with 2048-token prompts. The peer is a
straightforward Python scheduler doing the same step (free-list slots, a compressed radix tree
of Python nodes, numpy plan arrays built from lists), measured in the same run.
Also replays a shared-prefix trace under fcfs / lpm / dfs-weight and reports the hit rates.

Run: ``python benches/sched_step.py`` (writes benches/results/sched_step.{json,png} and
benches/results/sched_hit_rate.{json,png}).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from sglrs.sched import Scheduler

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT, MAX_NEW = 512, 2048
TARGETS_US = {"decode_32": 30, "decode_256": 100, "decode_1024": 300, "prefill_64x2048": 200}
TARGETS_US.update({f"decode_{n}_ahead": TARGETS_US[f"decode_{n}"] for n in (32, 256, 1024)})


def prompt(rid: int, n: int) -> list[int]:
    return [(rid * 7919 + p * 104729) % 30000 + 3 for p in range(n)]


# --------------------------------------------------------------------------- the Python peer


class PyNode:
    __slots__ = ("children", "key", "slots", "parent")

    def __init__(self, key: list[int], slots: list[int], parent: PyNode | None) -> None:
        self.children: dict[int, PyNode] = {}
        self.key, self.slots, self.parent = key, slots, parent


class PyRadix:
    """A compressed radix tree as a plain Python scheduler would keep it (no eviction needed)."""

    def __init__(self) -> None:
        self.root = PyNode([], [], None)

    def match(self, tokens: list[int]) -> list[int]:
        node, i, out = self.root, 0, []
        while i < len(tokens) and tokens[i] in node.children:
            child = node.children[tokens[i]]
            n = 0
            while n < len(child.key) and i + n < len(tokens) and child.key[n] == tokens[i + n]:
                n += 1
            out.extend(child.slots[:n])
            i += n
            if n < len(child.key):
                break
            node = child
        return out

    def insert(self, tokens: list[int], slots: list[int]) -> int:
        node, i = self.root, 0
        while i < len(tokens):
            child = node.children.get(tokens[i])
            if child is None:
                node.children[tokens[i]] = PyNode(tokens[i:], slots[i:], node)
                return i
            n = 0
            while n < len(child.key) and i + n < len(tokens) and child.key[n] == tokens[i + n]:
                n += 1
            if n < len(child.key):
                upper = PyNode(child.key[:n], child.slots[:n], node)
                node.children[tokens[i]] = upper
                child.key, child.slots, child.parent = child.key[n:], child.slots[n:], upper
                upper.children[child.key[0]] = child
                child = upper
            i += n
            node = child
        return i


class PyReq:
    __slots__ = ("rid", "tokens", "prompt_len", "max_new", "slots", "kv_len", "row", "stops", "on")

    def __init__(self, rid: int, tokens: list[int], max_new: int) -> None:
        self.rid, self.tokens, self.prompt_len, self.max_new = rid, tokens, len(tokens), max_new
        self.slots: list[int] = []
        self.kv_len, self.row, self.stops, self.on = 0, -1, frozenset(), False


class PyScheduler:
    """The same step as the Rust scheduler (prefill-priority, table writes), in plain Python."""

    def __init__(self, capacity: int, max_running: int) -> None:
        self.free = list(range(capacity - 1, -1, -1))
        self.rows = list(range(max_running - 1, -1, -1))
        self.tree = PyRadix()
        self.waiting: list[PyReq] = []
        self.running: list[PyReq] = []
        self.batch: list[tuple[PyReq, int]] = []

    def add_request(self, rid: int, tokens: list[int], max_new: int) -> None:
        self.waiting.append(PyReq(rid, list(tokens), max_new))

    def schedule(self) -> dict[str, np.ndarray]:
        batch = []
        while self.waiting and self.rows:
            r = self.waiting.pop(0)
            r.slots = self.tree.match(r.tokens[:-1])
            r.kv_len = len(r.slots)
            n = len(r.tokens) - r.kv_len
            new, self.free[-n:] = self.free[-n:], []
            r.slots.extend(new)
            r.row = self.rows.pop()
            batch.append((r, n, 0))
        if not batch:
            for r in self.running:
                r.slots.append(self.free.pop())
                batch.append((r, 1, r.kv_len))
        self.batch = batch
        ids, rows, pre, ext, seq, inp, pos, loc, starts, tslots, sample = ([] for _ in range(11))
        qo, tind = [0], [0]
        for r, n, dirty in batch:
            s = r.kv_len + n
            ids.append(r.rid)
            rows.append(r.row)
            pre.append(r.kv_len)
            ext.append(n)
            seq.append(s)
            qo.append(qo[-1] + n)
            inp.extend(r.tokens[r.kv_len : s])
            pos.extend(range(r.kv_len, s))
            loc.extend(r.slots[r.kv_len : s])
            starts.append(dirty)
            tslots.extend(r.slots[dirty:s])
            tind.append(len(tslots))
            sample.append(s == len(r.tokens))
        i32 = np.int32
        return {
            "req_ids": np.array(ids, dtype=np.uint64),
            "req_pool_indices": np.array(rows, dtype=i32),
            "prefix_lens": np.array(pre, dtype=i32),
            "extend_lens": np.array(ext, dtype=i32),
            "seq_lens": np.array(seq, dtype=i32),
            "qo_indptr": np.array(qo, dtype=i32),
            "input_ids": np.array(inp, dtype=i32),
            "positions": np.array(pos, dtype=i32),
            "out_cache_loc": np.array(loc, dtype=i32),
            "table_rows": np.array(rows, dtype=i32),
            "table_starts": np.array(starts, dtype=i32),
            "table_indptr": np.array(tind, dtype=i32),
            "table_slots": np.array(tslots, dtype=i32),
            "sample_mask": np.array(sample, dtype=bool),
        }

    def update(self, token_ids: np.ndarray) -> list[int]:
        done, k = [], 0
        toks = token_ids.tolist()
        for r, n, _ in self.batch:
            r.kv_len += n
            if not r.on:  # a prefill: cache the prompt, start decoding
                self.tree.insert(r.tokens[: r.kv_len], r.slots[: r.kv_len])
                self.running.append(r)
                r.on = True
            t = toks[k]
            k += 1
            r.tokens.append(t)
            if t in r.stops or len(r.tokens) - r.prompt_len >= r.max_new:
                done.append(r.rid)
        return done


# --------------------------------------------------------------------------- measurements


def time_steps(step, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        step()
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def decoding_scheduler(n: int) -> Scheduler:
    s = Scheduler(
        capacity_tokens=n * (PROMPT + MAX_NEW + 8),
        max_running_requests=n,
        context_length=PROMPT + MAX_NEW,
        max_prefill_tokens=n * PROMPT,
        chunked_prefill_size=0,
    )
    for rid in range(n):
        s.add_request(rid, prompt(rid, PROMPT), MAX_NEW, ignore_eos=True)
    plan = s.schedule()
    s.update(np.full(plan.num_sampled, 3, dtype=np.int32))
    return s


def decode_rust(n: int, steps: int) -> tuple[list[float], list[float]]:
    """Plain steps (``schedule`` + ``update``) and steps planned ahead (``schedule_ahead`` of
    N while U is in flight + ``update`` of U), timed alternately on two schedulers."""
    plain, ahead = decoding_scheduler(n), decoding_scheduler(n)
    tokens = np.full(n, 3, dtype=np.int32)

    def plain_step() -> None:
        plain.schedule()
        plain.update(tokens)

    def ahead_step() -> None:
        assert ahead.schedule_ahead() is not None
        ahead.update(tokens)

    plain_step()
    ahead.schedule()  # U in flight from here on
    ahead_step()
    assert plain.stats()["running"] == ahead.stats()["running"] == n
    out_plain, out_ahead = [], []
    for _ in range(steps // 10):
        out_plain += time_steps(plain_step, 10)
        out_ahead += time_steps(ahead_step, 10)
    return out_plain, out_ahead


def decode_python(n: int, steps: int) -> list[float]:
    s = PyScheduler(n * (PROMPT + MAX_NEW + 8), n)
    for rid in range(n):
        s.add_request(rid, prompt(rid, PROMPT), MAX_NEW)
    s.schedule()
    s.update(np.full(n, 3, dtype=np.int32))
    tokens = np.full(n, 3, dtype=np.int32)

    def step() -> None:
        s.schedule()
        s.update(tokens)

    return time_steps(step, steps)


def prefill_rust(reps: int, n: int = 64, length: int = 2048) -> list[float]:
    # int64 arrays, as the engine passes them (converting 131k Python ints right before the
    # step would also flush the CPU caches the step then reads from).
    prompts = [np.asarray(prompt(rid, length), dtype=np.int64) for rid in range(n)]
    tokens = np.full(n, 3, dtype=np.int32)
    out = []
    for _ in range(reps):
        s = Scheduler(
            capacity_tokens=n * (length + 64),
            max_running_requests=n,
            context_length=length + 64,
            max_prefill_tokens=n * length,
            chunked_prefill_size=0,
        )
        for rid, p in enumerate(prompts):
            s.add_request(rid, p, 32)
        t0 = time.perf_counter_ns()
        plan = s.schedule()
        s.update(tokens)
        out.append((time.perf_counter_ns() - t0) / 1e3)
        assert len(plan) == n
    return out


def prefill_python(reps: int, n: int = 64, length: int = 2048) -> list[float]:
    prompts = [prompt(rid, length) for rid in range(n)]
    tokens = np.full(n, 3, dtype=np.int32)
    out = []
    for _ in range(reps):
        s = PyScheduler(n * (length + 64), n)
        for rid, p in enumerate(prompts):
            s.add_request(rid, p, 32)
        t0 = time.perf_counter_ns()
        s.schedule()
        s.update(tokens)
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def hit_rates() -> dict[str, float]:
    """8 system prompts x 16 requests, interleaved, into a pool that holds ~5 prefixes."""
    rng = np.random.default_rng(5)
    heads = [rng.integers(3, 30000, 192).tolist() for _ in range(8)]
    trace = [h + rng.integers(3, 30000, 8).tolist() for _ in range(16) for h in heads]
    out = {}
    for policy in ("fcfs", "lpm", "dfs-weight"):
        s = Scheduler(
            capacity_tokens=1024,
            max_running_requests=8,
            max_prefill_tokens=1024,
            context_length=512,
            schedule_policy=policy,
        )
        for rid, p in enumerate(trace):
            s.add_request(rid, p, 4, ignore_eos=True)
        while len(s):
            plan = s.schedule()
            s.update(np.full(plan.num_sampled, 3, dtype=np.int32))
        out[policy] = s.stats()["cache_hit_rate"]
    return out


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    rows = []
    ahead_rows = []
    for n, steps in ((32, 2000), (256, 1000), (1024, 400)):
        rust, ahead = decode_rust(n, steps)
        py = decode_python(n, max(steps // 10, 20))
        rows.append((f"decode_{n}", rust, py))
        rows.append((f"decode_{n}_ahead", ahead, py))
        ahead_rows.append((f"decode_{n}", rust, ahead))
    rows.append(("prefill_64x2048", prefill_rust(60), prefill_python(10)))

    results = []
    print(
        f"{'scenario':<18}{'sglrs us':>10}{'min':>8}{'python us':>11}{'speedup':>9}"
        f"{'target us':>11}"
    )
    for name, rust, py in rows:
        r, p = statistics.median(rust), statistics.median(py)
        ok = "ok" if r <= TARGETS_US[name] else "MISSED"
        print(
            f"{name:<18}{r:>10.1f}{min(rust):>8.1f}{p:>11.1f}{p / r:>8.1f}x"
            f"{TARGETS_US[name]:>8} {ok}"
        )
        results.append(
            {
                "scenario": name,
                "sglrs_median_us": r,
                "sglrs_min_us": min(rust),
                "sglrs_p90_us": float(np.percentile(rust, 90)),
                "python_peer_median_us": p,
                "speedup_vs_python_peer": p / r,
                "target_us": TARGETS_US[name],
                "meets_target": r <= TARGETS_US[name],
            }
        )
    print(f"{'ahead vs plain':<18}{'plain us':>10}{'ahead us':>10}{'ratio':>8}")
    ahead_results = []
    for name, plain, ahead in ahead_rows:
        a, b = statistics.median(plain), statistics.median(ahead)
        print(f"{name:<18}{a:>10.1f}{b:>10.1f}{b / a:>8.2f}")
        ahead_results.append(
            {
                "scenario": name,
                "plain_median_us": a,
                "plain_min_us": min(plain),
                "ahead_median_us": b,
                "ahead_min_us": min(ahead),
                "ahead_over_plain": b / a,
            }
        )
    hits = hit_rates()
    print("hit rate on the shared-prefix trace:", {k: round(v, 3) for k, v in hits.items()})
    print(f"lpm - fcfs hit rate: {hits['lpm'] - hits['fcfs']:+.3f}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    (RESULTS / "sched_step.json").write_text(
        json.dumps({**meta, "results": results, "ahead_vs_plain": ahead_results}, indent=2)
    )
    (RESULTS / "sched_hit_rate.json").write_text(
        json.dumps({**meta, "trace": "8 prefixes x 16 requests interleaved", **hits}, indent=2)
    )
    plot(results, hits)


def plot(results: list[dict], hits: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(results))
    ax.bar(x - 0.2, [r["sglrs_median_us"] for r in results], 0.4, label="sglrs (Rust)")
    ax.bar(x + 0.2, [r["python_peer_median_us"] for r in results], 0.4, label="Python peer")
    ax.scatter(x - 0.2, [r["target_us"] for r in results], marker="_", s=400, c="k", label="target")
    ax.set_xticks(x, [r["scenario"] for r in results])
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("schedule + update, median us")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "sched_step.png", dpi=120)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(list(hits), list(hits.values()))
    ax.set_ylabel("prompt cache hit rate")
    ax.set_title("shared-prefix trace (8 prefixes x 16, interleaved)")
    fig.tight_layout()
    fig.savefig(RESULTS / "sched_hit_rate.png", dpi=120)


if __name__ == "__main__":
    main()

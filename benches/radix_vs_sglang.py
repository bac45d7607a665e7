"""Radix KV cache: sglrs.RadixCache vs SGLang's own radix caches on the same request traces.

Peers (SGLang 0.5.x, ``pip install sglang==0.5.23 --no-deps`` plus the few packages its
``sglang.srt.mem_cache`` import needs: psutil pybase64 aiohttp torchvision dill sentencepiece
compressed-tensors partial-json-parser):
  - ``sglang-py``: ``sglang.srt.mem_cache.radix_cache.RadixCache`` (pure Python tree);
  - ``sglang-rs``: ``sglang.srt.mem_cache.unified_radix_cache.UnifiedRadixCache`` with its
    default TreeCore backend, the bundled Rust extension ``rust_tree_core/mem_cache*.so``.
Both run on CPU with SGLang's own ``TokenToKVPoolAllocator``.

Every cache is driven with the protocol a scheduler uses, per request: match the prompt (and
read its prefix slots), lock the node, allocate slots for the rest (evicting from the tree when
the allocator runs dry), insert prompt + output, free duplicates, unlock. Reported per trace:
hit rate, mean / median / p99 microseconds per match, insert and evict call (per call, the
minimum over ``--repeats`` identical replays, which removes preemption by other processes),
and tree memory per cached token. Run: ``python benches/radix_vs_sglang.py`` (``--quick`` for a
smaller run).

Token ids: with ``--id-dtype auto`` (the default) each trace's prompts and outputs are numpy
arrays of the narrowest of **uint16** / int32 that holds every id of the trace, what sglrs's
engine hands its scheduler (uint16 prompts when the vocabulary is below 65,536; the traces' ids
are < 32,000, so uint16 throughout); ``--id-dtype int32`` / ``int64`` force one dtype. Either
way ``RadixCache`` reads the ids in place; slot rows stay the int32 the cache hands out. The
SGLang peers take their usual inputs: ``RadixKey`` over an ``array('q')`` (int64) and torch
int64 slot tensors, built outside the timed calls. The JSON records the dtype of each trace as
``traces.<name>.id_dtype``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# OpenBLAS worker threads spin after start-up and take a core of this 2-core machine from
# whichever process runs; nothing here uses BLAS. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from sglrs import RadixCache  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VOCAB = 32_000
ID_DTYPES = ("auto", "uint16", "int32", "int64")
PEERS = ("sglang-py", "sglang-rs")
IMPLS = ("sglrs", *PEERS)


@dataclass
class Request:
    prompt: np.ndarray  # token ids, in the trace's id dtype
    output: np.ndarray  # ids of the "generated" tokens, cached with the prompt


@dataclass
class Trace:
    name: str
    capacity: int
    requests: list[Request]

    @property
    def id_dtype(self) -> str:
        return str(self.requests[0].prompt.dtype)


def _tok(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, VOCAB, int(n), dtype=np.int64)


def narrowest_id_dtype(trace: Trace) -> str:
    """uint16 if every id of `trace` is below 65,536, else int32."""
    top = max(int(a.max(initial=0)) for r in trace.requests for a in (r.prompt, r.output))
    return "uint16" if top <= np.iinfo(np.uint16).max else "int32"


def with_id_dtype(trace: Trace, dtype: str) -> Trace:
    """The same trace with its arrays in `dtype` ("auto": the narrowest that holds its ids).
    The ids are drawn as int64 either way, so every dtype replays identical requests."""
    if dtype == "auto":
        dtype = narrowest_id_dtype(trace)
    requests = [Request(r.prompt.astype(dtype), r.output.astype(dtype)) for r in trace.requests]
    return Trace(trace.name, trace.capacity, requests)


def chat_trace(rng: np.random.Generator, scale: float) -> Trace:
    """Many users, multi-turn, one shared system prompt; turns of different users interleave."""
    system = _tok(rng, 1000)
    users = int(300 * scale)
    history = [system.copy() for _ in range(users)]
    turns_left = [4] * users
    requests = []
    while any(turns_left):
        u = int(rng.choice([i for i in range(users) if turns_left[i]]))
        prompt = np.concatenate([history[u], _tok(rng, rng.integers(30, 200))])
        output = _tok(rng, rng.integers(50, 300))
        requests.append(Request(prompt, output))
        history[u] = np.concatenate([prompt, output])
        turns_left[u] -= 1
    return Trace("chat", 64_000, requests)


def fewshot_trace(rng: np.random.Generator, scale: float) -> Trace:
    """Few-shot prompts: 10 long templates (popularity ~ 1/rank) + a short question each."""
    templates = [_tok(rng, rng.integers(1500, 3000)) for _ in range(10)]
    popularity = 1.0 / np.arange(1, 11)
    popularity /= popularity.sum()
    requests = []
    for _ in range(int(1500 * scale)):
        t = templates[int(rng.choice(10, p=popularity))]
        prompt = np.concatenate([t, _tok(rng, rng.integers(20, 100))])
        requests.append(Request(prompt, _tok(rng, rng.integers(20, 100))))
    return Trace("fewshot", 24_000, requests)


def tree_search_trace(rng: np.random.Generator, scale: float) -> Trace:
    """Tree search: per problem, expand a 3-way tree 4 levels deep, one step per request."""
    requests = []
    for _ in range(int(40 * scale)):
        frontier = [_tok(rng, rng.integers(300, 600))]
        for _depth in range(4):
            nxt = []
            for path in frontier:
                for _ in range(3):
                    step = _tok(rng, rng.integers(40, 120))
                    requests.append(Request(path, step))
                    nxt.append(np.concatenate([path, step]))
            frontier = nxt
    return Trace("tree_search", 16_000, requests)


def no_sharing_trace(rng: np.random.Generator, scale: float) -> Trace:
    """Independent random prompts: nothing to share, every match misses."""
    requests = [
        Request(_tok(rng, rng.integers(100, 1500)), _tok(rng, rng.integers(20, 200)))
        for _ in range(int(1500 * scale))
    ]
    return Trace("no_sharing", 32_000, requests)


def long_doc_trace(rng: np.random.Generator, scale: float) -> Trace:
    """One 32k-token document, many questions about it."""
    doc = _tok(rng, 32_768)
    requests = [
        Request(
            np.concatenate([doc, _tok(rng, rng.integers(20, 80))]),
            _tok(rng, rng.integers(50, 150)),
        )
        for _ in range(int(300 * scale))
    ]
    return Trace("doc_32k", 48_000, requests)


def make_traces(scale: float, id_dtype: str = "auto") -> list[Trace]:
    makers = [chat_trace, fewshot_trace, tree_search_trace, no_sharing_trace, long_doc_trace]
    return [
        with_id_dtype(make(np.random.default_rng(i), scale), id_dtype)
        for i, make in enumerate(makers)
    ]


# ---------------------------------------------------------------------------------------------
# Drivers: the same protocol, each written against its cache's native API so that the timed
# region is exactly the library call (plus the argument objects that API requires).


def run_sglrs(trace: Trace, cache: RadixCache | None = None) -> dict[str, Any]:
    cache = RadixCache(trace.capacity) if cache is None else cache
    ns = time.perf_counter_ns
    t_match, t_insert, t_evict = [], [], []
    hits = queried = 0
    for r in trace.requests:
        full = np.concatenate([r.prompt, r.output])
        t0 = ns()
        n, prefix, node = cache.match_prefix(r.prompt)
        t_match.append(ns() - t0)
        hits += n
        queried += len(r.prompt)
        cache.lock(node)
        need = len(full) - n
        own = cache.alloc(need)
        if own is None:
            t0 = ns()
            cache.evict(need - cache.available())
            t_evict.append(ns() - t0)
            own = cache.alloc(need)
            assert own is not None, "capacity too small for one request"
        row = np.concatenate([prefix, own])
        t0 = ns()
        already = cache.insert(full, row)
        t_insert.append(ns() - t0)
        if already > n:
            cache.free(own[: already - n])
        cache.unlock(node)
    cache.check_integrity()
    assert cache.available() + cache.total_size() == cache.capacity()
    return {
        "hits": hits,
        "queried": queried,
        "match_ns": t_match,
        "insert_ns": t_insert,
        "evict_ns": t_evict,
        "bytes_per_token": cache.memory_bytes() / max(cache.total_size(), 1),
        "cached_tokens": cache.total_size(),
        "cache": cache,
    }


def import_sglang() -> dict[str, Any]:
    """Imports SGLang's caches on CPU. Nothing GPU-only needs stubbing in 0.5.23; the one
    patch is the Rust TreeCore's PyTorch version gate (it declares 2.11-2.14, this machine has
    2.15; the bundled extension loads and runs against 2.15, which the benchmark checks by
    comparing every hit count with the Python tree's)."""
    warnings.filterwarnings("ignore")
    import sglang.srt.rust_extensions.torch_build as torch_build
    import torch

    running = tuple(int(x) for x in torch.__version__.split(".")[:2])
    torch_build._MAX_SUPPORTED_TORCH = max(torch_build._MAX_SUPPORTED_TORCH, running)
    from sglang.srt.mem_cache import base_prefix_cache as bpc
    from sglang.srt.mem_cache.allocator import TokenToKVPoolAllocator
    from sglang.srt.mem_cache.cache_init_params import CacheInitParams
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool
    from sglang.srt.mem_cache.radix_cache import RadixCache, RadixKey
    from sglang.srt.mem_cache.unified_cache.component_type import ComponentType
    from sglang.srt.mem_cache.unified_radix_cache import UnifiedRadixCache
    from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

    set_global_server_args_for_scheduler(ServerArgs(model_path="dummy", page_size=1))
    return {
        "torch": torch,
        "TokenToKVPoolAllocator": TokenToKVPoolAllocator,
        "CacheInitParams": CacheInitParams,
        "MHATokenToKVPool": MHATokenToKVPool,
        "SGRadixCache": RadixCache,
        "RadixKey": RadixKey,
        "ComponentType": ComponentType,
        "UnifiedRadixCache": UnifiedRadixCache,
        "MatchPrefixParams": bpc.MatchPrefixParams,
        "InsertParams": bpc.InsertParams,
        "EvictParams": bpc.EvictParams,
        "DecLockRefParams": bpc.DecLockRefParams,
    }


def make_sglang_cache(sg: dict[str, Any], impl: str, capacity: int) -> tuple[Any, Any]:
    torch = sg["torch"]
    # A one-layer, one-head, one-dim KV pool: the tree and allocator are what is measured.
    kv = sg["MHATokenToKVPool"](
        size=capacity,
        page_size=1,
        dtype=torch.float16,
        head_num=1,
        head_dim=1,
        layer_num=1,
        device="cpu",
        enable_memory_saver=False,
    )
    alloc = sg["TokenToKVPoolAllocator"](
        size=capacity, dtype=torch.float16, device="cpu", kvcache=kv, need_sort=False
    )
    params = sg["CacheInitParams"](
        req_to_token_pool=None,
        token_to_kv_pool_allocator=alloc,
        page_size=1,
        disable=False,
        tree_components=(sg["ComponentType"].FULL,),
        tree_core_backend="rust" if impl == "sglang-rs" else None,
    )
    if impl == "sglang-rs":
        cache = sg["UnifiedRadixCache"](params=params)
        assert cache._tree_core_backend == "rust", cache._tree_core_backend
    else:
        cache = sg["SGRadixCache"](params)
    return cache, alloc


def run_sglang(
    trace: Trace, sg: dict[str, Any], impl: str, prebuilt: tuple[Any, Any] | None = None
) -> dict[str, Any]:
    torch = sg["torch"]
    key_t, match_p, insert_p = sg["RadixKey"], sg["MatchPrefixParams"], sg["InsertParams"]
    evict_p, dec_p = sg["EvictParams"], sg["DecLockRefParams"]
    unified = impl == "sglang-rs"
    cache, alloc = make_sglang_cache(sg, impl, trace.capacity) if prebuilt is None else prebuilt
    ns = time.perf_counter_ns
    t_match, t_insert, t_evict = [], [], []
    hits = queried = 0
    for r in trace.requests:
        prompt = array("q", r.prompt.astype(np.int64).tobytes())
        full = array("q", np.concatenate([r.prompt, r.output]).astype(np.int64).tobytes())
        t0 = ns()
        m = cache.match_prefix(match_p(key=key_t(prompt)))
        node = m.last_device_node
        prefix = cache.path_device_indices(node)
        t_match.append(ns() - t0)
        n = m.device_prefix_len
        hits += n
        queried += len(prompt)
        lock = cache.inc_lock_ref(node)
        need = len(full) - n
        own = alloc.alloc(need)
        if own is None:
            t0 = ns()
            cache.evict(evict_p(num_tokens=need - alloc.available_size()))
            t_evict.append(ns() - t0)
            own = alloc.alloc(need)
            assert own is not None, "capacity too small for one request"
        row = torch.cat([prefix, own])
        t0 = ns()
        # The unified tree frees the duplicates past prev_prefix_len itself (its scheduler's
        # protocol); the Python tree leaves that to the caller.
        already = cache.insert(insert_p(key=key_t(full), value=row, prev_prefix_len=n)).prefix_len
        t_insert.append(ns() - t0)
        if already > n and not unified:
            alloc.free(own[: already - n])
        if unified:
            cache.dec_lock_ref(
                node,
                dec_p(node_id=lock.node_id, component_lock_uuids=lock.component_lock_uuids),
            )
        else:
            cache.dec_lock_ref(node)
    total = cache.evictable_size() + cache.protected_size()
    assert alloc.available_size() + total == trace.capacity, "slots leaked"
    return {
        "hits": hits,
        "queried": queried,
        "match_ns": t_match,
        "insert_ns": t_insert,
        "evict_ns": t_evict,
        "cached_tokens": total,
        "cache": (cache, alloc),
    }


# ---------------------------------------------------------------------------------------------
# Memory: live heap growth while a trace is replayed into a cache large enough that nothing is
# evicted (so the tree ends up holding every distinct token of the trace), in a fresh process
# per (impl, trace), inputs built before the baseline. Live heap = glibc's in-use bytes
# (mallinfo2: Rust/C++ heaps and torch CPU tensors) + tracemalloc's traced Python allocations.


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _live_heap_bytes() -> int:
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd + tracemalloc.get_traced_memory()[0]


def memory_probe(impl: str, trace_name: str, scale: float, id_dtype: str) -> None:
    trace = next(t for t in make_traces(scale, id_dtype) if t.name == trace_name)
    room = sum(len(r.prompt) + len(r.output) for r in trace.requests) + 16
    sg = import_sglang() if impl != "sglrs" else None
    # Warm up imports and lazy initialisation on a throwaway cache.
    warm = Trace(trace.name, room, trace.requests[:3])
    run_sglrs(warm) if sg is None else run_sglang(warm, sg, impl)
    # Build the cache and its allocator before the baseline: only the tree's growth counts.
    cache = RadixCache(room) if sg is None else make_sglang_cache(sg, impl, room)
    full = Trace(trace.name, room, trace.requests)
    tracemalloc.start()
    before = _live_heap_bytes()
    result = run_sglrs(full, cache) if sg is None else run_sglang(full, sg, impl, cache)
    del result["match_ns"], result["insert_ns"], result["evict_ns"]
    after = _live_heap_bytes()
    out = {"heap_growth": after - before, "cached_tokens": result["cached_tokens"]}
    if "bytes_per_token" in result:
        out["tree_bytes_per_token"] = result["bytes_per_token"]
    print(json.dumps(out))


def measure_memory(impl: str, trace: str, scale: float, id_dtype: str) -> dict[str, float] | None:
    cmd = [sys.executable, __file__, "--memory-probe", impl, trace, "--scale", str(scale)]
    cmd += ["--id-dtype", id_dtype]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"memory probe {impl}/{trace} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    d = json.loads(out.stdout.strip().splitlines()[-1])
    result = {
        "distinct_tokens": d["cached_tokens"],
        "heap_bytes_per_token": d["heap_growth"] / max(d["cached_tokens"], 1),
    }
    if "tree_bytes_per_token" in d:
        result["tree_bytes_per_token"] = d["tree_bytes_per_token"]
    return result


# ---------------------------------------------------------------------------------------------


OPS = ("match_ns", "insert_ns", "evict_ns")


def best_of(repeats: int, trace: Trace, sg: dict[str, Any], impl: str) -> dict[str, Any]:
    """Per call, the least time over `repeats` identical replays. A replay is deterministic
    (same calls, same tree states, for every implementation), so call i does the same work in
    every replay; this machine is shared, and a call preempted by another process adds
    milliseconds to one sample, which the minimum over replays removes. The same estimator
    is applied to every implementation."""
    runs = []
    for _ in range(repeats):
        gc.collect()
        run = run_sglrs(trace) if impl == "sglrs" else run_sglang(trace, sg, impl)
        run.pop("cache")
        runs.append(run)
    best = dict(runs[0])
    for op in OPS:
        counts = {len(r[op]) for r in runs}
        assert len(counts) == 1, f"{impl}: replays made different numbers of {op} calls"
        best[op] = np.min([r[op] for r in runs], axis=0).tolist()
    return best


def summarize(samples: list[int]) -> dict[str, float | int]:
    if not samples:
        nan = float("nan")
        return {"calls": 0, "mean_us": nan, "median_us": nan, "p99_us": nan}
    us = np.asarray(samples, dtype=np.float64) / 1000.0
    return {
        "calls": len(us),
        "mean_us": float(us.mean()),
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the requests")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--memory-probe", nargs=2, metavar=("IMPL", "TRACE"))
    ap.add_argument("--no-memory", action="store_true", help="skip the RSS probes")
    ap.add_argument(
        "--repeats", type=int, default=3, help="replays per trace; per call, the least is kept"
    )
    ap.add_argument(
        "--id-dtype",
        choices=ID_DTYPES,
        default="auto",
        help="numpy dtype of the traces' ids (auto: per trace, the narrowest of uint16/int32)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "radix_vs_sglang.json",
        help="JSON to write (the plot goes beside it, as .png)",
    )
    args = ap.parse_args()
    scale = args.scale if args.scale is not None else (0.25 if args.quick else 1.0)
    if args.memory_probe:
        memory_probe(*args.memory_probe, scale, args.id_dtype)
        return
    try:
        sg = import_sglang()
    except ImportError as e:
        sys.exit(f"SGLang is not importable ({e}); see this file's docstring for the install.")

    results: dict[str, Any] = {
        "scale": scale,
        "repeats": args.repeats,
        "id_dtype": {
            "option": args.id_dtype,
            "sglrs": "numpy tokens in traces.<name>.id_dtype, int32 slots (read in place)",
            "sglang": "array('q') int64 tokens, torch int64 slots",
        },
        "estimator": "per call, the minimum over the identical replays",
        "load_average_at_start": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "traces": {},
    }
    for trace in make_traces(scale, args.id_dtype):
        row: dict[str, Any] = {
            "capacity": trace.capacity,
            "requests": len(trace.requests),
            "id_dtype": trace.id_dtype,
        }
        for impl in IMPLS:
            raw = best_of(args.repeats, trace, sg, impl)
            entry = {
                "hit_rate": raw["hits"] / raw["queried"],
                "hit_tokens": raw["hits"],
                "match": summarize(raw["match_ns"]),
                "insert": summarize(raw["insert_ns"]),
                "evict": summarize(raw["evict_ns"]),
                "cached_tokens_at_end": raw["cached_tokens"],
            }
            if "bytes_per_token" in raw:
                entry["tree_bytes_per_token"] = raw["bytes_per_token"]
            if not args.no_memory:
                entry["memory_no_eviction"] = measure_memory(
                    impl, trace.name, scale, trace.id_dtype
                )
            row[impl] = entry
        ours = row["sglrs"]
        row["hits_identical"] = all(row[p]["hit_tokens"] == ours["hit_tokens"] for p in PEERS)
        for stat in ("mean", "median"):
            row[f"speedup_{stat}"] = {
                p: {
                    op: row[p][op][f"{stat}_us"] / ours[op][f"{stat}_us"]
                    for op in ("match", "insert", "evict")
                    if ours[op]["calls"] and row[p][op]["calls"]
                }
                for p in PEERS
            }
        results["traces"][trace.name] = row
        print_row(trace.name, row)

    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and .png")


def print_row(name: str, row: dict[str, Any]) -> None:
    print(
        f"\n== {name}: {row['requests']} requests, capacity {row['capacity']} tokens, "
        f"{row['id_dtype']} ids"
    )
    print(
        f"{'impl':10} {'hit rate':>8} | {'match us':>8} {'median':>7} {'p99':>7} | "
        f"{'insert us':>9} {'median':>7} {'p99':>7} | {'evict us':>8} {'median':>7} "
        f"{'p99':>7} {'n':>5} | {'tree B/tok':>10} {'heap B/tok':>10}"
    )
    for impl in IMPLS:
        e = row[impl]
        cells = []
        for op in ("match", "insert", "evict"):
            s = e[op]
            cells.append(f"{s['mean_us']:8.2f} {s['median_us']:7.2f} {s['p99_us']:7.2f}")
        tree = e.get("tree_bytes_per_token")
        mem = e.get("memory_no_eviction") or {}
        rss = mem.get("heap_bytes_per_token")
        tree_s = f"{tree:10.1f}" if tree is not None else f"{'-':>10}"
        rss_s = f"{rss:10.1f}" if rss is not None else f"{'-':>10}"
        print(
            f"{impl:10} {e['hit_rate']:8.4f} | {cells[0]} | {cells[1]:>25} | {cells[2]} "
            f"{e['evict']['calls']:5d} | {tree_s} {rss_s}"
        )
    for p in PEERS:
        for stat in ("mean", "median"):
            ratios = row[f"speedup_{stat}"][p]
            txt = ", ".join(f"{op} {v:.1f}x" for op, v in ratios.items())
            print(f"sglrs speedup vs {p} ({stat}): {txt}")
    print(f"hit counts identical to SGLang: {row['hits_identical']}")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["traces"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.27
    for ax, op in zip(axes, ("match", "insert", "evict"), strict=True):
        for k, impl in enumerate(IMPLS):
            x = np.arange(len(names)) + (k - 1) * width
            stats = [results["traces"][n][impl][op] for n in names]
            ax.bar(x, [s["median_us"] for s in stats], width, label=impl)
            ax.scatter(x, [s["p99_us"] for s in stats], marker="_", color="black", s=60)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(names)), names, rotation=20)
        ax.set_title(f"{op}: median us per call (bars), p99 (ticks)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle("Radix KV cache per-call latency: sglrs vs SGLang (same traces, same protocol)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

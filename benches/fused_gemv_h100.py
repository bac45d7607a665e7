"""Llama-3.1-8B's decode GEMVs with the op before them fused in (sglrs.kernels.gemv prologues)
against the separate kernels decode ran before, at M = 1, 2, 4, 8 rows, bf16, on one GPU:

    qkv     add+RMSNorm kernel, then the QKV GEMV       vs  gemv_rmsnorm   [6144 x 4096]
    gate_up add+RMSNorm kernel, then the gate_up GEMV   vs  gemv_rmsnorm   [28672 x 4096]
    down    SiLU*mul kernel, then the down GEMV         vs  gemv_silu_mul  [4096 x 14336]

    python3 benches/fused_gemv_h100.py [--sweep] [--out benches/results/fused_gemv_h100.json]

"Separate" is what the layers ran before the fusion: the Triton norm/activation kernel, then
`cuda_linear` (the GEMV where tuned, else F.linear). "Fused" is what `sglrs.layers.cuda_fused`
dispatches (`pick_fused_config`); for the norm, `stats_first` (a first pass for the statistics,
the unfused roundings) is timed beside it. Every call is timed inside a CUDA graph, so the launch
gaps between kernels count as they do in decode, over weight copies that outrun the L2 cache.
The limit is the op's bytes (weight, activations, residual) at the copy bandwidth. `--sweep`
also times candidate tiles for the fused kernels (to fill `FUSED_TUNING`). Writes JSON + PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemv_h100 import ROTATE_BYTES, rel_err, time_calls  # noqa: E402
from llama8b import LLAMA_8B, copy_bandwidth, precompile, run_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HIDDEN, INTER = LLAMA_8B["hidden_size"], LLAMA_8B["intermediate_size"]
LAYERS = LLAMA_8B["num_hidden_layers"]


def _dot_tile() -> Any:
    from sglrs.kernels.gemv import GemvConfig

    return GemvConfig(32, 256, num_stages=4, use_dot=True)  # the plain GEMV's few-row tile


EPS = LLAMA_8B["rms_norm_eps"]
# name -> (prologue, N, K of the weight)
OPS = {
    "qkv": ("rmsnorm", 6144, HIDDEN),
    "gate_up": ("rmsnorm", 2 * INTER, HIDDEN),
    "down": ("silu_mul", HIDDEN, INTER),
}
ROWS = (1, 2, 4, 8)


def candidates(m: int) -> list[Any]:
    """Fused tiles to sweep: FMA tiles at one row (wider ones amortize the prologue's extra
    activation loads), tensor-core tiles at 2-8 rows, never split-K."""
    from sglrs.kernels.gemv import GemvConfig

    if m == 1:
        fma = [(4, 1024, 4), (4, 2048, 4), (8, 1024, 4), (8, 1024, 8), (8, 2048, 8)]
        fma += [(16, 512, 4), (16, 1024, 8)]
        return [GemvConfig(bn, bk, 1, w) for bn, bk, w in fma]
    dot = [(16, 512, 4, 3), (16, 512, 4, 4), (32, 256, 4, 4), (32, 512, 4, 3), (64, 128, 4, 4)]
    dot += [(64, 256, 4, 3), (64, 256, 8, 3)]
    return [GemvConfig(bn, bk, 1, w, st, use_dot=True) for bn, bk, w, st in dot]


class Inputs:
    """One op's activations at M rows: h, residual and the norm weight, or gate_up."""

    def __init__(self, prologue: str, m: int, k: int) -> None:
        bf16 = dict(dtype=torch.bfloat16, device="cuda")
        self.prologue = prologue
        self.h = torch.randn((m, k), **bf16)
        self.residual = torch.randn((m, k), **bf16)
        self.g = (1 + 0.1 * torch.randn(k, device="cuda")).bfloat16()
        self.gate_up = torch.randn((m, 2 * k), **bf16)

    def bytes(self, n: int, k: int) -> int:
        """Bytes the op must move besides the weight: inputs, the residual out, y."""
        m = self.h.shape[0]
        acts = 3 * m * k + k if self.prologue == "rmsnorm" else 2 * m * k
        return 2 * (acts + m * n)


def separate(inp: Inputs) -> Callable:
    from sglrs.kernels.activation import silu_and_mul
    from sglrs.kernels.norm import rmsnorm
    from sglrs.layers.cuda_linear import cuda_linear

    if inp.prologue == "rmsnorm":

        def run(_: Any, w: torch.Tensor) -> torch.Tensor:
            normed, _residual = rmsnorm(inp.h, inp.g, EPS, inp.residual)
            return cuda_linear(normed, w)

        return run
    return lambda _, w: cuda_linear(silu_and_mul(inp.gate_up), w)


def fused(inp: Inputs, cfg: Any, stats_first: bool | None = None) -> Callable:
    from sglrs.kernels.gemv import gemv_rmsnorm, gemv_silu_mul

    if inp.prologue == "rmsnorm":
        return lambda _, w: gemv_rmsnorm(
            inp.h, inp.residual, inp.g, EPS, w, None, cfg, stats_first
        )[0]
    return lambda _, w: gemv_silu_mul(inp.gate_up, w, None, cfg)


def _compile_one(job: tuple[str, int, Any]) -> str:
    """Worker: run one fused config once, compiling it into the shared Triton cache."""
    name, m, cfg = job
    try:
        prologue, n, k = OPS[name]
        w = torch.empty((n, k), dtype=torch.bfloat16, device="cuda")
        fn = fused(Inputs(prologue, m, k), cfg)
        fn(None, w)
        if prologue == "rmsnorm":
            fused(Inputs(prologue, m, k), cfg, stats_first=True)(None, w)
        torch.cuda.synchronize()
        return ""
    except Exception as e:  # reported; the config is skipped in the sweep
        return f"{name} M={m} {cfg}: {type(e).__name__}: {e}"


def bench_op(name: str, m: int, weights: list[torch.Tensor], sweep: bool, bw: float) -> dict:
    from sglrs.kernels.gemv import pick_config, pick_fused_config

    prologue, n, k = OPS[name]
    inp = Inputs(prologue, m, k)
    nbytes = 2 * n * k + inp.bytes(n, k)
    plain = pick_config(m, n, k)
    # Several rows do not fuse (pick_fused_config: the tl.dot tiles measured slower fused);
    # they are timed with the plain GEMV's tile (or a default one) to keep the evidence current.
    cfg = pick_fused_config(m, n, k) or plain or _dot_tile()
    row: dict[str, Any] = {"op": name, "prologue": prologue, "N": n, "K": k, "M": m}
    row |= {"bytes": nbytes, "limit_us": nbytes / bw * 1e6, "config": asdict(cfg)}
    row["dispatched"] = pick_fused_config(m, n, k) is not None
    row["separate_linear"] = asdict(plain) if plain else "F.linear"
    ref = separate(inp)(None, weights[0])
    row["rel_err"] = rel_err(fused(inp, cfg)(None, weights[0]), ref.float())
    row["separate_us"] = time_calls(separate(inp), None, weights)
    row["fused_us"] = time_calls(fused(inp, cfg), None, weights)
    row["ratio"] = row["separate_us"] / row["fused_us"]  # > 1: the fusion wins
    if prologue == "rmsnorm":
        row["fused_stats_first_us"] = time_calls(fused(inp, cfg, True), None, weights)
    if sweep:
        results = []
        for c in candidates(m):
            for stats_first in (False, True) if prologue == "rmsnorm" else (None,):
                try:
                    err = rel_err(fused(inp, c, stats_first)(None, weights[0]), ref.float())
                    us = time_calls(fused(inp, c, stats_first), None, weights)
                except Exception as e:
                    print(f"  {name} M={m} {c}: {type(e).__name__}: {e}", flush=True)
                    continue
                results.append({"config": asdict(c), "stats_first": stats_first, "us": us,
                                "rel_err": err})  # fmt: skip
        ok = sorted((r for r in results if r["rel_err"] < 1e-2), key=lambda r: r["us"])
        row["sweep"] = results
        row["best"] = ok[0] if ok else None
    return row


def plot(result: dict[str, Any], path: Path) -> None:
    rows = result["rows"]
    labels = [f"{r['op']}\nM={r['M']}" for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.7), 4.5))
    ax.bar([i - 0.2 for i in xs], [r["separate_us"] for r in rows], 0.4, label="separate kernels")
    ax.bar([i + 0.2 for i in xs], [r["fused_us"] for r in rows], 0.4, label="fused GEMV")
    ax.scatter(list(xs), [r["limit_us"] for r in rows], color="k", marker="_", s=400,
               label="bandwidth limit", zorder=3)  # fmt: skip
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("µs per call (in a CUDA graph)")
    ax.set_title(f"Fused decode GEMVs, Llama-3.1-8B bf16 - {result['device']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sweep", action="store_true", help="also time candidate fused tiles")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--workers", type=int, default=12, help="processes compiling the sweep")
    p.add_argument("--out", default=str(RESULTS / "fused_gemv_h100.json"))
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

    names = args.ops.split(",")
    unknown = [n for n in names if n not in OPS]
    if unknown:
        p.error(f"unknown ops {unknown}; choose from {list(OPS)}")
    torch.manual_seed(0)
    if args.sweep:
        jobs = [(name, m, c) for name in names for m in ROWS for c in candidates(m)]
        precompile(_compile_one, jobs, args.workers)
    bw = copy_bandwidth()
    result: dict[str, Any] = run_header(triton=True)
    result |= {"copy_bandwidth_tb_s": bw / 1e12, "rows": []}
    print(f"{result['device']}: copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    for name in names:
        _, n, k = OPS[name]
        copies = max(2, math.ceil(ROTATE_BYTES / (n * k * 2)))
        weights = [torch.randn((n, k), device="cuda").mul_(0.02).bfloat16() for _ in range(copies)]
        for m in ROWS:
            row = bench_op(name, m, weights, args.sweep, bw)
            result["rows"].append(row)
            best = row.get("best")
            extra = (f"  best {best['us']:.1f} us {best['config']} stats_first="
                     f"{best['stats_first']}") if best else ""  # fmt: skip
            print(f"{name:8s} M={m}: separate {row['separate_us']:6.1f} us | fused "
                  f"{row['fused_us']:6.1f} us x{row['ratio']:.2f} | limit {row['limit_us']:5.1f}"
                  f" us | err {row['rel_err']:.1e}{extra}", flush=True)  # fmt: skip
        del weights
        torch.cuda.empty_cache()
    # What one decode step saves: each op runs once per layer.
    saved = {
        m: sum(r["separate_us"] - r["fused_us"] for r in result["rows"] if r["M"] == m)
        * LAYERS
        / 1e3
        for m in ROWS
    }
    result["saved_ms_per_step"] = {str(m): v for m, v in saved.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(f"\n{'op':8s} {'M':>2s} {'separate us':>11s} {'fused us':>9s} {'ratio':>5s} "
          f"{'stats_first us':>14s} {'limit us':>8s}  (copy bw {bw / 1e12:.2f} TB/s)")  # fmt: skip
    for r in result["rows"]:
        sf = r.get("fused_stats_first_us")
        print(f"{r['op']:8s} {r['M']:2d} {r['separate_us']:11.1f} {r['fused_us']:9.1f} "
              f"{r['ratio']:5.2f} {'' if sf is None else f'{sf:.1f}':>14s} "
              f"{r['limit_us']:8.1f}")  # fmt: skip
    shown = ", ".join(f"M={m}: {v:.3f} ms" for m, v in saved.items())
    print(f"saved per decode step over {LAYERS} layers ({', '.join(names)}): {shown}")


if __name__ == "__main__":
    main()

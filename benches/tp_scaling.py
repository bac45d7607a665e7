"""Tensor-parallel scaling on the Llama-3.1-8B shape (bf16, random weights), through sglrs.Engine:
batch-1 decode ms/token and the GPU issue's offline workload (512 requests, inputs uniform in
[128, 1024] tokens, 256 new tokens; benches/gpu_targets.py) at each tp size, on one host.

Ratios against tp 1 measured in the same run; the issue's targets: batch-1 decode at tp 2
>= 1.6x faster than tp 1 and at tp 4 >= 2.4x; offline throughput per GPU at tp 2 >= 80% of tp 1.
The hardware limit printed beside each batch-1 time: one rank's share of the weights (all
but the embedding table, split `tp` ways) read at the measured copy bandwidth.

    python benches/tp_scaling.py [--tp 1,2,4] [--tokenizer-path DIR] [--attention-backend auto]
        [--disable-cuda-graph]

Without --tokenizer-path the engines run on token ids only (--skip-tokenizer-init). Writes
benches/results/tp_scaling.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_targets import bench_decode, bench_offline  # noqa: E402
from llama8b import (  # noqa: E402
    DECODE_WEIGHT_BYTES,
    DUMMY_ENGINE_ARGS,
    LLAMA_8B,
    copy_bandwidth,
    engine_arg,
    run_header,
    write_model_dir,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"decode_speedup": {2: 1.6, 4: 2.4}, "offline_per_gpu": {2: 0.8}}


def engine_args(args: argparse.Namespace, tp: int) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        DUMMY_ENGINE_ARGS,
        tp_size=tp,
        attention_backend=args.attention_backend,
        disable_cuda_graph=args.disable_cuda_graph,
    )
    kw.update(dict(args.engine_arg))
    if args.tokenizer_path:
        kw["tokenizer_path"] = args.tokenizer_path
    else:
        kw["skip_tokenizer_init"] = True
    return kw


def measure(model_dir: Path, args: argparse.Namespace, tp: int, vocab: int) -> dict[str, Any]:
    from sglrs import Engine

    start = time.perf_counter()
    with Engine(str(model_dir), **engine_args(args, tp)) as engine:
        startup_s = time.perf_counter() - start
        info = engine.get_server_info()
        decode = bench_decode(engine, vocab)
        print(f"tp {tp}: decode {decode['ms_per_token']:.2f} ms/token", flush=True)
        offline = bench_offline(engine, vocab)
        print(f"tp {tp}: offline {offline['output_tok_s']:.0f} output tok/s", flush=True)
    return {
        "tp": tp,
        "startup_s": startup_s,
        "max_total_tokens": info.get("max_total_tokens"),
        "decode": decode,
        "offline": offline,
        "offline_tok_s_per_gpu": offline["output_tok_s"] / tp,
    }


def ratios(runs: dict[int, dict[str, Any]]) -> dict[int, dict[str, float]]:
    base = runs[1]
    out = {}
    for tp, run in runs.items():
        out[tp] = {
            "decode_speedup": base["decode"]["ms_per_token"] / run["decode"]["ms_per_token"],
            "offline_speedup": run["offline"]["output_tok_s"] / base["offline"]["output_tok_s"],
            "offline_per_gpu": run["offline_tok_s_per_gpu"] / base["offline_tok_s_per_gpu"],
        }
    return out


def table(runs: dict[int, dict[str, Any]], rel: dict[int, dict[str, float]]) -> str:
    lines = [
        "| tp | decode ms/token (floor) | decode speedup (target) | offline tok/s | per GPU | "
        "per-GPU vs tp 1 (target) |",
        "|---|---|---|---|---|---|",
    ]
    for tp, run in runs.items():
        d_target = TARGETS["decode_speedup"].get(tp)
        o_target = TARGETS["offline_per_gpu"].get(tp)
        lines.append(
            f"| {tp} | {run['decode']['ms_per_token']:.2f} ({run['decode']['floor_ms']:.2f}) | "
            f"{rel[tp]['decode_speedup']:.2f}x"
            + (f" (>= {d_target}x)" if d_target else "")
            + f" | {run['offline']['output_tok_s']:.0f} | {run['offline_tok_s_per_gpu']:.0f} | "
            + f"{rel[tp]['offline_per_gpu']:.0%}"
            + (f" (>= {o_target:.0%})" if o_target else "")
            + " |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    runs = {int(k): v for k, v in result["runs"].items()}
    rel = {int(k): v for k, v in result["ratios"].items()}
    tps = sorted(runs)
    labels = [f"tp {t}" for t in tps]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].bar(labels, [runs[t]["decode"]["ms_per_token"] for t in tps])
    axes[0].set_title("batch-1 decode, ms/token (lower is better)")
    axes[1].bar(labels, [rel[t]["decode_speedup"] for t in tps], label="measured")
    targets = [TARGETS["decode_speedup"].get(t, float("nan")) for t in tps]
    axes[1].plot(labels, targets, "r_", markersize=30, mew=3, label="target")
    axes[1].set_title("decode speedup vs tp 1")
    axes[1].legend()
    axes[2].bar(labels, [rel[t]["offline_per_gpu"] for t in tps], label="measured")
    targets = [TARGETS["offline_per_gpu"].get(t, float("nan")) for t in tps]
    axes[2].plot(labels, targets, "r_", markersize=30, mew=3, label="target")
    axes[2].set_title("offline output tok/s per GPU, vs tp 1")
    axes[2].legend()
    fig.suptitle(f"sglrs tensor parallelism on {result['device']}: Llama-3.1-8B shape, bf16")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tp", default="1,2,4", help="tp sizes, comma-separated; must include 1")
    p.add_argument("--tokenizer-path", default=None)
    p.add_argument("--attention-backend", default="auto")
    p.add_argument("--disable-cuda-graph", action="store_true")
    p.add_argument(
        "--engine-arg", type=engine_arg, action="append", default=[], metavar="KEY=VALUE"
    )
    p.add_argument("--out", default=str(RESULTS / "tp_scaling.json"))
    args = p.parse_args()
    tps = sorted({int(t) for t in args.tp.split(",")})
    if 1 not in tps:
        p.error("--tp must include 1: every ratio is against tp 1 measured in the same run")
    if torch.cuda.device_count() < max(tps):
        p.error(f"--tp {max(tps)} needs {max(tps)} GPUs, found {torch.cuda.device_count()}")
    # Inherited by every rank process; sglrs sets them again before each NCCL init.
    os.environ.update({"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"})

    vocab = min(LLAMA_8B["vocab_size"], 49152)  # prompts stay inside any tokenizer's vocab
    model_dir = write_model_dir(Path(tempfile.mkdtemp()) / "llama-3.1-8b")
    bw = copy_bandwidth()  # GPU 0's, before the engines take the GPUs
    runs = {tp: measure(model_dir, args, tp, vocab) for tp in tps}
    for tp, run in runs.items():
        run["decode"]["floor_ms"] = DECODE_WEIGHT_BYTES / tp / bw * 1e3
    rel = ratios(runs)
    result = run_header(f"{max(tps)} x {torch.cuda.get_device_name()}") | {
        "copy_bandwidth_tb_s": bw / 1e12,
        "targets": TARGETS,
        "runs": runs,
        "ratios": rel,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(table(runs, rel))


if __name__ == "__main__":
    main()

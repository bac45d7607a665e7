"""All-reduce latency inside CUDA graphs on one host: NCCL against sglrs' custom paths
(`sglrs.distributed.custom_all_reduce`: torch's one-shot symmetric-memory op, and the push
kernel for decode sizes), bf16, tensors of 1 to 8192 rows of the Llama-3.1-8B hidden size
(8 KB to 64 MB). A decode step all-reduces two
`[batch, 4096]` tensors per layer, so the small sizes set the batch-1 latency of tensor
parallelism.

    python benches/all_reduce_tp.py [--tp 2] [--out benches/results/all_reduce_tp.json]

Each method is captured 32 times in a row in one CUDA graph; the graph is replayed and the
per-call time is wall time / 32 (launch gaps included, as in a decode graph). The floor
printed beside each size is the NVLink bytes bound: every rank must receive the peer's
`size * (tp - 1) / tp` bytes twice (one-shot reads `size * (tp - 1)` once), at 450 GB/s per
direction on H100/H200 NVLink 4.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HIDDEN = 4096
ROWS = (1, 4, 16, 64, 128, 256, 512, 2048, 8192)
CALLS_PER_GRAPH = 32
NVLINK_GBPS = 450.0


def time_graph(fn: Any, x: torch.Tensor, replays: int = 20) -> float:
    """µs per call of `fn(x)` replayed in a CUDA graph of CALLS_PER_GRAPH calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(CALLS_PER_GRAPH):
            fn(x)
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    dist.barrier()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / (replays * CALLS_PER_GRAPH)


def worker(rank: int, tp: int, init_file: str, out_path: str) -> None:
    os.environ.update({"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"})
    from sglrs.distributed.custom_all_reduce import PUSH_MAX_BYTES, CustomAllReduce

    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl", init_method=f"file://{init_file}", rank=rank, world_size=tp, device_id=device
    )
    group = dist.group.WORLD
    max_bytes = max(ROWS) * HIDDEN * 2
    custom = CustomAllReduce(group, device, torch.bfloat16, max_bytes)
    assert custom.self_test(device), "one-shot all-reduce summed wrong"

    def nccl(x: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(x, group=group)
        return x

    rows_out = []
    for rows in ROWS:
        x = torch.randn(rows, HIDDEN, dtype=torch.bfloat16, device=device) * (rank + 1)
        expect = x.clone()
        dist.all_reduce(expect, group=group)
        nbytes = x.numel() * 2
        push = custom.push if custom.push is not None and nbytes <= PUSH_MAX_BYTES else None
        for method in (custom.one_shot, push):
            if method is not None:
                got = method(x)
                torch.testing.assert_close(got, expect, rtol=2e-2, atol=2e-2)
        row = {
            "rows": rows,
            "bytes": nbytes,
            "nccl_us": time_graph(nccl, x.clone()),
            "one_shot_us": time_graph(custom.one_shot, x),
            "push_us": time_graph(push, x) if push is not None else None,
            "floor_us": nbytes * (tp - 1) / tp * 2 / (NVLINK_GBPS * 1e3),
        }
        rows_out.append(row)
        if rank == 0:
            best = min(t for t in (row["one_shot_us"], row["push_us"]) if t is not None)
            push_text = f"{row['push_us']:>8.1f}" if push is not None else "       -"
            print(
                f"{rows:>6} rows {nbytes / 1024:>9.0f} KiB  nccl {row['nccl_us']:>8.1f} us  "
                f"one-shot {row['one_shot_us']:>8.1f} us  push {push_text} us  "
                f"nccl/best {row['nccl_us'] / best:>5.2f}x  floor {row['floor_us']:>7.1f} us",
                flush=True,
            )
    if rank == 0:
        Path(out_path).write_text(json.dumps(rows_out))
    dist.barrier()
    dist.destroy_process_group()


def plot(result: dict[str, Any], path: Path) -> None:
    rows = result["sizes"]
    kib = [r["bytes"] / 1024 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(kib, [r["nccl_us"] for r in rows], "o-", label="NCCL")
    ax.loglog(kib, [r["one_shot_us"] for r in rows], "s-", label="torch one-shot (symm mem)")
    pushed = [r for r in rows if r.get("push_us") is not None]
    ax.loglog(
        [r["bytes"] / 1024 for r in pushed], [r["push_us"] for r in pushed], "^-",
        label="sglrs push kernel",
    )  # fmt: skip
    ax.loglog(kib, [r["floor_us"] for r in rows], "k--", label="NVLink bytes floor")
    ax.set_xlabel("tensor size (KiB, bf16)")
    ax.set_ylabel("µs per all-reduce (in a CUDA graph)")
    ax.set_title(f"all-reduce at tp {result['tp']} on {result['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tp", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "all_reduce_tp.json"))
    args = p.parse_args()
    if torch.cuda.device_count() < args.tp:
        p.error(f"--tp {args.tp} needs {args.tp} GPUs, found {torch.cuda.device_count()}")
    tmp = Path(tempfile.mkdtemp())
    sizes_path = tmp / "sizes.json"
    mp.spawn(worker, args=(args.tp, str(tmp / "init"), str(sizes_path)), nprocs=args.tp)
    result = {
        "benchmark": "all_reduce_tp",
        "device": f"{args.tp} x {torch.cuda.get_device_name()}",
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "tp": args.tp,
        "calls_per_graph": CALLS_PER_GRAPH,
        "sizes": json.loads(sizes_path.read_text()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))


if __name__ == "__main__":
    main()

"""Launch-config sweep of the Triton decode and extend attention kernels (sglrs.kernels) on the
offline GPU workload's shapes: Llama-3.1-8B heads (32 query, 8 KV, head dim 128), bf16.

- decode: batch 512, lengths uniform in [129, 1281) (the KV read per step: ~49 GB), longest
  request first; against the copy bandwidth (the hardware limit) and the previous default
  (1 split, 32 positions per tile, 4 warps, 2 stages);
- extend: 12 requests x 700 new tokens (a prefill chunk), in TFLOP/s, against the tile of the
  earlier all-paged kernel (64x64, 4 warps, 3 stages). `benches/results/attention_extend_h100
  .json` holds the run that compared that kernel (0.323 ms per layer at its best) with the
  current one (0.184 ms).

    python3 benches/attention_sweep_h100.py [--parts decode,extend] [--out FILE.json]

Each config is timed as a CUDA-graph replay (20 replays). Writes JSON + PNG.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama8b import copy_bandwidth  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HQ, HKV, D = 32, 8, 128
PREVIOUS = {"decode": (1, 32, 4, 2), "extend": ((64, 64), 4, 3)}


def graph_ms(fn: Callable[[], None], reps: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps * 1e3


def kv(slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (slots, HKV, D)
    return (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(2))  # type: ignore[return-value]


def sweep_decode(batch: int = 512) -> list[dict[str, Any]]:
    """Lengths uniform in [129, 1281) (the offline workload's mid-run mix), each request's
    slots contiguous (a fresh pool), programs longest request first (as the backend runs)."""
    from sglrs.kernels.decode_attention import (
        DecodeWorkspace,
        _decode_stage1,
        _decode_stage2,
        longest_first,
    )

    g = torch.Generator().manual_seed(0)
    lens = torch.randint(129, 1281, (batch,), generator=g)
    slots = int(lens.sum())
    k, v = kv(slots)
    table = torch.zeros(batch, int(lens.max()), dtype=torch.int32)
    starts = torch.cumsum(lens, 0) - lens
    for i in range(batch):
        table[i, : lens[i]] = torch.arange(int(starts[i]), int(starts[i] + lens[i]))
    table = table.cuda()
    rows = torch.arange(batch, device="cuda")
    seq = lens.cuda()
    order = longest_first(seq)
    q = torch.randn(batch, HQ, D, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(q)
    ws = DecodeWorkspace(batch, HQ, D, 16, torch.device("cuda"))
    nbytes = 2 * k.numel() * k.element_size()
    rows_out = []
    for splits, block_n, warps, stages in itertools.product((1, 2), (32, 64), (4, 8), (2, 3, 4)):
        mid_o, mid_lse = ws.mid_o[: batch * HQ * splits * D], ws.mid_lse[: batch * HQ * splits]

        def run(splits=splits, block_n=block_n, warps=warps, stages=stages, mid_o=mid_o,
                mid_lse=mid_lse) -> None:  # fmt: skip
            _decode_stage1[(batch, HKV, splits)](
                q, k, v, table, rows, seq, order, mid_o, mid_lse, out, D**-0.5, q.stride(0),
                q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                table.stride(0), out.stride(0), out.stride(1), 0,
                GROUP=HQ // HKV, HEAD_DIM=D, NUM_SPLITS=splits, BLOCK_H=16, BLOCK_N=block_n,
                BLOCK_D=D, DOT_PRECISION="tf32", num_warps=warps, num_stages=stages,
            )  # fmt: skip
            if splits > 1:
                _decode_stage2[(batch, HQ)](
                    mid_o, mid_lse, out, out.stride(0), out.stride(1), HEAD_DIM=D,
                    NUM_SPLITS=splits, BLOCK_S=triton.next_power_of_2(splits), BLOCK_D=D,
                    num_warps=4,
                )  # fmt: skip

        ms = graph_ms(run)
        config = (splits, block_n, warps, stages)
        rows_out.append({"config": config, "ms": ms, "tb_s": nbytes / ms / 1e9})
        print(f"decode splits={splits} block_n={block_n} warps={warps} stages={stages}: "
              f"{ms:.3f} ms, {nbytes / ms / 1e9:.2f} TB/s", flush=True)  # fmt: skip
    return rows_out


def sweep_extend(requests: int = 12, length: int = 700) -> list[dict[str, Any]]:
    """Tiles of the extend kernel (paged prefix, contiguous new K/V, unmasked interior)."""
    from sglrs.kernels.extend_attention import extend_attention

    slots = requests * length
    k, v = kv(slots)
    table = torch.arange(slots, device="cuda", dtype=torch.int32).view(requests, length)
    rows = torch.arange(requests, device="cuda")
    prefix = torch.zeros(requests, device="cuda", dtype=torch.int64)
    qo = torch.arange(0, slots + 1, length, device="cuda")
    q = torch.randn(slots, HQ, D, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(q)
    flops = 4 * HQ * D * requests * length * length / 2  # causal
    rows_out = []
    tiles = ((64, 64), (128, 64), (128, 32), (64, 32), (128, 128))
    for (block_m, block_n), warps, stages in itertools.product(tiles, (4, 8), (2, 3)):

        def run(tile=(block_m, block_n, warps, stages)) -> None:
            extend_attention(q, k, v, k, v, out, table, rows, prefix, qo, length, D**-0.5,
                                None, tile)  # fmt: skip

        ms = graph_ms(run, 10)
        rows_out.append({"config": ((block_m, block_n), warps, stages), "ms": ms,
                         "tflops": flops / ms / 1e9})  # fmt: skip
        print(f"extend tile={block_m}x{block_n} warps={warps} stages={stages}: {ms:.3f} ms, "
              f"{flops / ms / 1e9:.0f} TFLOP/s", flush=True)  # fmt: skip
    return rows_out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default = Path(__file__).parent / "results" / "attention_sweep_h100.json"
    p.add_argument("--out", default=str(default))
    p.add_argument("--parts", default="decode,extend")
    args = p.parse_args()
    bw = copy_bandwidth()
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                              "triton": triton.__version__, "command": " ".join(sys.argv),
                              "copy_bandwidth_tb_s": bw / 1e12}  # fmt: skip
    sweeps = {"decode": sweep_decode, "extend": sweep_extend}
    for name in args.parts.split(","):
        sweep = sweeps[name]
        rows = sweep()
        best = min(rows, key=lambda r: r["ms"])
        prev = next(r for r in rows if tuple(r["config"]) == PREVIOUS[name])
        result[name] = {"rows": rows, "best": best, "previous": prev,
                        "speedup_vs_previous": prev["ms"] / best["ms"]}  # fmt: skip
        print(f"{name}: best {best['config']} {best['ms']:.3f} ms, "
              f"{prev['ms'] / best['ms']:.2f}x the previous default", flush=True)  # fmt: skip
    if "decode" in result:
        print(f"decode best {result['decode']['best']['tb_s']:.2f} TB/s vs copy "
              f"{bw / 1e12:.2f} TB/s")  # fmt: skip
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1))
    names = [n for n in sweeps if n in result]
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        unit = "tb_s" if name == "decode" else "tflops"
        rows = result[name]["rows"]
        ax.bar(range(len(rows)), [r[unit] for r in rows])
        ax.set_xticks(range(len(rows)), [str(r["config"]) for r in rows], rotation=90, fontsize=6)
        ax.set_title(f"{name} attention ({unit})")
        if name == "decode":
            ax.axhline(bw / 1e12, color="r", label="copy bandwidth")
            ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    main()

"""Per-layer decode attention on the CPU: the Rust paged kernel (`sglrs.attention.cpu_decode`)
vs the torch_native SDPA path (index_select gather of each request's K/V into a padded
`[B, S]` layout + masked `F.scaled_dot_product_attention`), on the same pool.

Default shape: SmolLM2-135M at batch 32 (Hq 9, Hkv 3, D 64, ~130-token contexts, bfloat16).
Slots as the scheduler lays them out: each prompt's slots in one run, then decode slots
interleaved across requests. Calls cycle through `--layers` layer buffers, as a forward does,
so K/V is not always hot in the cache. Times are per call (median of `--repeats` rounds):
wall (`perf_counter`) and CPU (`process_time`, all threads of this process); the load average
is reported because other work on the machine skews both.
Writes benches/results/cpu_decode_attention.json and .png.

    python benches/cpu_decode_attention.py [--batch 32] [--prompt-len 100] [--decoded 30]
        [--dtype bfloat16] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import torch
import torch.nn.functional as F

from sglrs.attention.cpu_decode import paged_decode_attention

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def build(args: argparse.Namespace) -> dict:
    dtype = getattr(torch, args.dtype)
    b, hq, hkv, d = args.batch, args.q_heads, args.kv_heads, args.head_dim
    seq_lens = torch.tensor([args.prompt_len + args.decoded - (r % 5) for r in range(b)])
    stride = int(seq_lens.max()) + 8
    table = torch.zeros(b, stride, dtype=torch.int32)
    at = 0
    for r in range(b):  # prompts: one run of slots each
        table[r, : args.prompt_len] = torch.arange(at, at + args.prompt_len)
        at += args.prompt_len
    for step in range(args.decoded):  # decode: one slot per running request per step
        for r in range(b):
            if args.prompt_len + step < seq_lens[r]:
                table[r, args.prompt_len + step] = at
                at += 1
    num_slots = at + 1  # + the padding slot
    gen = torch.Generator().manual_seed(0)
    pool = torch.randn(2, args.layers, num_slots, hkv, d, generator=gen).to(dtype)
    q = torch.randn(b, hq, d, generator=gen).to(dtype)
    return {
        "pool": pool,
        "q": q,
        "table": table,
        "rows": torch.arange(b),
        "seq_lens": seq_lens,
        "padding_slot": num_slots - 1,
        "scale": d**-0.5,
    }


def torch_native_call(x: dict) -> Callable[[int], torch.Tensor]:
    """The SDPA decode path of torch_native: per-step index/mask, per-layer gather + SDPA."""
    b, hkv = x["q"].shape[0], x["pool"].shape[3]
    max_len = int(x["seq_lens"].max())
    cols = torch.arange(max_len)[None, :]
    valid = cols < x["seq_lens"][:, None]
    index = x["table"][x["rows"], :max_len].long()
    index = torch.where(valid, index, x["padding_slot"]).view(-1)
    mask = valid[:, None, None, :]
    shape = (b, max_len, hkv, -1)
    q = x["q"].reshape(b, hkv, -1, x["q"].shape[-1])

    def call(layer: int) -> torch.Tensor:
        keys = x["pool"][0, layer].index_select(0, index).view(shape)
        values = x["pool"][1, layer].index_select(0, index).view(shape)
        return F.scaled_dot_product_attention(
            q, keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask, scale=x["scale"]
        ).reshape(x["q"].shape)

    return call


def kernel_call(x: dict, threads: int) -> Callable[[int], torch.Tensor]:
    rows, lens = x["rows"].numpy(), x["seq_lens"].numpy()

    def call(layer: int) -> torch.Tensor:
        return paged_decode_attention(
            x["q"], x["pool"][0, layer], x["pool"][1, layer], x["table"], rows, lens, x["scale"],
            num_threads=threads,
        )  # fmt: skip

    return call


def timed(call: Callable[[int], torch.Tensor], layers: int, repeats: int) -> dict:
    for layer in range(layers):  # warm-up
        call(layer)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for layer in range(layers):
            call(layer)
        walls.append((time.perf_counter() - w0) / layers)
        cpus.append((time.process_time() - c0) / layers)
    return {"wall_us": statistics.median(walls) * 1e6, "cpu_us": statistics.median(cpus) * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--q-heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=3)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=100)
    ap.add_argument("--decoded", type=int, default=30, help="decode steps already taken")
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    x = build(args)
    ref = torch_native_call(x)(0).float()
    got = kernel_call(x, 1)(0).float()
    err = (ref - got).abs().max().item()
    print(f"max |kernel - SDPA| = {err:.2e}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        load = os.getloadavg()[0]
        # Interleaved rounds so both see the same machine load.
        peer = timed(torch_native_call(x), args.layers, args.repeats)
        ours = timed(kernel_call(x, threads), args.layers, args.repeats)
        peer2 = timed(torch_native_call(x), args.layers, args.repeats)
        ours2 = timed(kernel_call(x, threads), args.layers, args.repeats)
        peer = {k: min(peer[k], peer2[k]) for k in peer}
        ours = {k: min(ours[k], ours2[k]) for k in ours}
        row = {"threads": threads, "load_avg_1min": load, "kernel": ours, "torch_native": peer}
        row["wall_ratio"] = peer["wall_us"] / ours["wall_us"]
        rows.append(row)
        print(
            f"threads {threads}: kernel {ours['wall_us']:7.1f} us wall {ours['cpu_us']:7.1f} us "
            f"cpu | index_select+SDPA {peer['wall_us']:7.1f} us wall {peer['cpu_us']:7.1f} us "
            f"cpu | {row['wall_ratio']:.2f}x faster (load avg {load:.2f})"
        )
    result = {
        "shape": {
            "batch": args.batch,
            "q_heads": args.q_heads,
            "kv_heads": args.kv_heads,
            "head_dim": args.head_dim,
            "seq_lens": [int(x["seq_lens"].min()), int(x["seq_lens"].max())],
            "dtype": args.dtype,
            "layers": args.layers,
        },
        "max_abs_diff_vs_sdpa": err,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "cpu_decode_attention"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["threads"] for r in rows]
    ax.plot(xs, [r["kernel"]["wall_us"] for r in rows], "o-", label="Rust paged kernel")
    ax.plot(xs, [r["torch_native"]["wall_us"] for r in rows], "s--", label="index_select + SDPA")
    ax.set(xlabel="threads", ylabel="µs per layer call", xticks=xs,
           title=f"decode attention, B={args.batch} {args.dtype}")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    main()

"""Per-step sampling time: sglrs.sampling.sample vs transformers' logits processors.

Peer: `transformers` RepetitionPenalty + Temperature + TopK + TopP processors and
`torch.multinomial` (the HF `generate` sampling path), on the same logits. sglrs does the same
work with per-request parameters (plus frequency penalty counts kept on the device).
Writes benches/results/sampling_<device>.json and .png.

    python benches/bench_sampling.py [--device cuda] [--vocab 49152] [--iters 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from sglrs.sampling import SamplingBatch, SamplingParams, SamplingRequest, sample

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARAMS = {"temperature": 0.8, "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.1}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, iters: int) -> float:
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def bench(batch: int, vocab: int, device: torch.device, iters: int) -> dict[str, float]:
    gen = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(batch, vocab, device=device, generator=gen) * 3
    history = torch.randint(0, vocab, (batch, 256), device=device, generator=gen)
    params = SamplingParams.from_dict(PARAMS)
    reqs = [
        SamplingRequest(i, params, prompt_ids=history[i, :128].tolist(), output_ids=[])
        for i in range(batch)
    ]
    state = SamplingBatch(vocab, device, seed=0)
    state.update(reqs)

    def ours() -> None:
        sample(logits.clone(), state)

    procs = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(PARAMS["repetition_penalty"]),
            TemperatureLogitsWarper(PARAMS["temperature"]),
            TopKLogitsWarper(PARAMS["top_k"]),
            TopPLogitsWarper(PARAMS["top_p"]),
        ]
    )

    def peer() -> None:
        scores = procs(history, logits.clone())
        torch.multinomial(torch.softmax(scores, -1), 1)

    return {"sglrs_ms": _time(ours, device, iters) * 1e3, "hf_ms": _time(peer, device, iters) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--batches", default="1,8,32,128")
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    print(f"device={device} vocab={args.vocab} params={PARAMS}")
    print(f"{'batch':>6} {'sglrs ms':>10} {'hf ms':>10} {'hf/sglrs':>9}")
    for b in (int(x) for x in args.batches.split(",")):
        r = {"batch": b, **bench(b, args.vocab, device, args.iters)}
        r["speedup"] = r["hf_ms"] / r["sglrs_ms"]
        rows.append(r)
        print(f"{b:>6} {r['sglrs_ms']:>10.3f} {r['hf_ms']:>10.3f} {r['speedup']:>8.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = f"sampling_{device.type}"
    meta = {"device": str(device), "vocab": args.vocab, "params": PARAMS, "rows": rows}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
    (RESULTS / f"{tag}.json").write_text(json.dumps(meta, indent=2))
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["batch"] for r in rows]
    ax.plot(xs, [r["sglrs_ms"] for r in rows], "o-", label="sglrs sample()")
    ax.plot(xs, [r["hf_ms"] for r in rows], "s--", label="transformers processors")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per step")
    ax.set_title(f"sampling step, vocab {args.vocab}, {meta.get('gpu', device.type)}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{tag}.png", dpi=120)


if __name__ == "__main__":
    main()

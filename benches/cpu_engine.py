"""sglrs Engine vs HF transformers `generate` on the CPU, SmolLM2-135M-Instruct (float32).

Two workloads, both greedy with exactly the asked number of new tokens:
- batch: 32 concurrent requests with ~100-token prompts, 64 new tokens each; output tokens/s.
  HF runs the 32 prompts as one left-padded batch.
- batch 1: a 32-token prompt, 128 new tokens; tokens/s end to end.
Both run on the same weights (the GGUF, dequantized) in the same dtype, for each of `--dtypes`
(float32: the exact-match reference dtype; bfloat16: what a CPU with AMX / AVX512-BF16 serves
in), sglrs and HF taking turns run by run (this shared 2-core VM's speed drifts over minutes;
alternating keeps a drift out of the ratio); the medians' ratio sglrs / HF is printed and
written, with every run's tokens/s, to benches/results/cpu_engine.{json,png}.

    python benches/cpu_engine.py [--runs 3] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from sglrs.engine.engine import Engine
from sglrs.model_loader import load_model_config, load_tokenizer
from sglrs.utils.default_model import default_model_path
from sglrs.utils.hf_reference import hf_llama

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = (
    "river mill village bridge steel library map sailor market apple wool copper station "
    "comet garden clock storm boat flour butter museum fossil train letter tulip"
).split()


def prompts(tokenizer, count: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(length - 8, length + 8)
        ids: list[int] = []
        while len(ids) < n:
            ids += tokenizer.encode(" ".join(rng.choices(WORDS, k=16)), add_special_tokens=False)
        out.append(ids[:n])
    return out


def time_hf(model, batch: list[list[int]], new_tokens: int, pad_id: int) -> float:
    width = max(map(len, batch))
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(batch):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
    elapsed = time.perf_counter() - start
    assert out.shape[1] == width + new_tokens
    return elapsed


def time_sglrs(engine: Engine, batch: list[list[int]], new_tokens: int) -> float:
    params = {"max_new_tokens": new_tokens, "temperature": 0, "ignore_eos": True}
    engine.flush_cache()  # every run computes its prompts (no reuse across runs)
    start = time.perf_counter()
    outs = engine.generate(input_ids=batch, sampling_params=params)
    elapsed = time.perf_counter() - start
    assert all(len(o["output_ids"]) == new_tokens for o in outs)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args()
    load_at_start = list(os.getloadavg())  # this shared VM's timings follow its load
    gguf = str(default_model_path())
    tokenizer = load_tokenizer(gguf)
    workloads = {
        "batch32_in100_out64": (prompts(tokenizer, 32, 100, 0), 64),
        "batch1_in32_out128": (prompts(tokenizer, 1, 32, 1), 128),
    }
    results: dict[str, dict[str, float | list[float]]] = {}
    for dtype in args.dtypes:
        results.update(run_dtype(gguf, tokenizer, workloads, dtype, args.runs))
    print(f"{'dtype/workload':<32} {'sglrs tok/s':>12} {'HF tok/s':>10} {'sglrs/HF':>9}")
    for name, r in results.items():
        print(f"{name:<32} {r['sglrs_tok_s']:>12.1f} {r['hf_tok_s']:>10.1f} {r['ratio']:>8.2f}x")
    record = {
        "benchmark": "cpu_engine",
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF, dequantized; both sides in the row's dtype",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} torch threads, {torch.backends.cpu.get_cpu_capability()}",
        "torch": torch.__version__,
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()),
        "command": "python benches/cpu_engine.py --runs "
        + str(args.runs)
        + " --dtypes "
        + " ".join(args.dtypes),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_engine.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(results, RESULTS / "cpu_engine.png")


def run_dtype(
    gguf: str, tokenizer, workloads: dict, dtype: str, runs: int
) -> dict[str, dict[str, float | list[float]]]:
    """sglrs and HF in turn on every workload, both in `dtype`; keys are "<dtype>/<workload>"."""
    times: dict[str, dict[str, list[float]]] = {n: {"sglrs": [], "hf": []} for n in workloads}
    hf = hf_llama(gguf, load_model_config(gguf)).to(getattr(torch, dtype))
    pad = tokenizer.pad_token_id or 0
    with Engine(model_path=gguf, dtype=dtype, log_level="warning") as engine:
        time_sglrs(engine, workloads["batch1_in32_out128"][0], 8)  # warm-up
        time_hf(hf, workloads["batch1_in32_out128"][0], 8, pad)
        for _ in range(runs):
            for name, (batch, new) in workloads.items():
                times[name]["sglrs"].append(time_sglrs(engine, batch, new))
                times[name]["hf"].append(time_hf(hf, batch, new, pad))
    del hf
    results: dict[str, dict[str, float | list[float]]] = {}
    for name, (batch, new) in workloads.items():
        tokens = len(batch) * new
        sglrs, peer = (statistics.median(times[name][side]) for side in ("sglrs", "hf"))
        results[f"{dtype}/{name}"] = {
            "sglrs_tok_s": tokens / sglrs,
            "hf_tok_s": tokens / peer,
            "ratio": peer / sglrs,
            "sglrs_runs_tok_s": [round(tokens / t, 1) for t in times[name]["sglrs"]],
            "hf_runs_tok_s": [round(tokens / t, 1) for t in times[name]["hf"]],
        }
    return results


def plot(results: dict[str, dict[str, float | list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar([i - 0.2 for i in x], [results[n]["sglrs_tok_s"] for n in names], 0.4, label="sglrs")
    ax.bar([i + 0.2 for i in x], [results[n]["hf_tok_s"] for n in names], 0.4, label="HF")
    ax.set_xticks(list(x), [n.replace("/", "\n") for n in names], fontsize=8)
    for i, n in enumerate(names):
        top = max(results[n]["sglrs_tok_s"], results[n]["hf_tok_s"])
        ax.text(i, top, f"{results[n]['ratio']:.2f}x", ha="center", va="bottom")
    ax.set_ylabel("output tokens/s")
    ax.set_title("CPU (2 cores), SmolLM2-135M: sglrs vs HF generate, same dtype")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

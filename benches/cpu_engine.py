"""sglrs Engine vs HF transformers `generate` on the CPU, SmolLM2-135M-Instruct (float32).

Two workloads, both greedy with exactly the asked number of new tokens:
- batch: 32 concurrent requests with ~100-token prompts, 64 new tokens each; output tokens/s.
  HF runs the 32 prompts as one left-padded batch.
- batch 1: a 32-token prompt, 128 new tokens; tokens/s end to end.
Both run in this process one after the other on the same weights (the GGUF, dequantized); the
ratio sglrs / HF is printed and written to benches/results/cpu_engine.{json,png}.

    python benches/cpu_engine.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args()
    gguf = str(default_model_path())
    tokenizer = load_tokenizer(gguf)
    workloads = {
        "batch32_in100_out64": (prompts(tokenizer, 32, 100, 0), 64),
        "batch1_in32_out128": (prompts(tokenizer, 1, 32, 1), 128),
    }
    results: dict[str, dict[str, float]] = {}
    with Engine(model_path=gguf, dtype="float32", log_level="warning") as engine:
        time_sglrs(engine, workloads["batch1_in32_out128"][0], 8)  # warm-up
        for name, (batch, new) in workloads.items():
            t = statistics.median(time_sglrs(engine, batch, new) for _ in range(args.runs))
            results[name] = {"sglrs_tok_s": len(batch) * new / t}
    hf = hf_llama(gguf, load_model_config(gguf))
    pad = tokenizer.pad_token_id or 0
    time_hf(hf, workloads["batch1_in32_out128"][0], 8, pad)  # warm-up
    for name, (batch, new) in workloads.items():
        t = statistics.median(time_hf(hf, batch, new, pad) for _ in range(args.runs))
        results[name]["hf_tok_s"] = len(batch) * new / t
        results[name]["ratio"] = results[name]["sglrs_tok_s"] / results[name]["hf_tok_s"]
    print(f"{'workload':<22} {'sglrs tok/s':>12} {'HF tok/s':>10} {'sglrs/HF':>9}")
    for name, r in results.items():
        print(f"{name:<22} {r['sglrs_tok_s']:>12.1f} {r['hf_tok_s']:>10.1f} {r['ratio']:>8.2f}x")
    record = {
        "benchmark": "cpu_engine",
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF, dequantized to float32",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "command": "python benches/cpu_engine.py --runs " + str(args.runs),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_engine.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(results, RESULTS / "cpu_engine.png")


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([i - 0.2 for i in x], [results[n]["sglrs_tok_s"] for n in names], 0.4, label="sglrs")
    ax.bar([i + 0.2 for i in x], [results[n]["hf_tok_s"] for n in names], 0.4, label="HF")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("output tokens/s")
    ax.set_title("CPU, SmolLM2-135M float32")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

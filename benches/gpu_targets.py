"""The GPU issue's four targets on Llama-3.1-8B (bf16, random weights), through sglrs.Engine:

1. batch-1 decode ms/token (128-token prompt, 256 new tokens), against the memory-bandwidth
   floor (decode weight bytes / measured copy bandwidth) and HF transformers measured here;
2. offline throughput: 512 requests, input lengths uniform in [128, 1024], 256 new tokens;
3. shared prefix: 256 requests = a 2,048-token prefix + unique 64-token suffixes, 64 new
   tokens, radix cache on vs `--disable-radix-cache`;
4. JSON-schema constrained decoding at 64 concurrent requests vs the same unconstrained.

    python benches/gpu_targets.py --tokenizer-path DIR [--only decode,offline,shared,json]
        [--attention-backend auto] [--disable-cuda-graph] [--hf-peer]

The tokenizer (any HF tokenizer directory; token ids of the prompts stay below its vocab)
serves the grammar of target 4 and the detokenizer. Writes benches/results/gpu_targets.json
and .png.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
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
TARGETS = {"decode_ms": 5.5, "offline_tok_s": 9000.0, "shared_speedup": 3.0, "json_gap": 0.10}
JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "bio": {"type": "string"},
    },
    "required": ["name", "age", "tags", "bio"],
}


def ids(rng: random.Random, n: int, vocab: int) -> list[int]:
    return [rng.randrange(1000, vocab) for _ in range(n)]


def greedy(max_new: int, **extra: Any) -> dict[str, Any]:
    return {"temperature": 0.0, "max_new_tokens": max_new, "ignore_eos": True, **extra}


def bench_decode(engine: Any, vocab: int, runs: int = 3) -> dict[str, Any]:
    rng = random.Random(0)
    per_token = []
    for _ in range(runs + 1):  # the first run warms up
        stamps: list[float] = []
        for _chunk in engine.generate(
            input_ids=ids(rng, 128, vocab), sampling_params=greedy(256), stream=True
        ):
            stamps.append(time.perf_counter())
        per_token.append((stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1e3)
    return {"ms_per_token": statistics.median(per_token[1:]), "runs_ms": per_token[1:]}


def run_batch(engine: Any, prompts: list[list[int]], params: list[dict]) -> dict[str, Any]:
    start = time.perf_counter()
    outs = engine.generate(input_ids=prompts, sampling_params=params)
    seconds = time.perf_counter() - start
    out_tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
    in_tokens = sum(len(p) for p in prompts)
    cached = sum(o["meta_info"]["cached_tokens"] for o in outs)
    return {
        "requests": len(prompts),
        "seconds": seconds,
        "output_tok_s": out_tokens / seconds,
        "input_tok_s": in_tokens / seconds,
        "output_tokens": out_tokens,
        "cache_hit_rate": cached / in_tokens,
    }


def bench_offline(engine: Any, vocab: int) -> dict[str, Any]:
    rng = random.Random(1)
    prompts = [ids(rng, rng.randint(128, 1024), vocab) for _ in range(512)]
    run_batch(engine, prompts[:16], [greedy(16)] * 16)  # warm-up
    engine.flush_cache()
    return run_batch(engine, prompts, [greedy(256)] * len(prompts))


def shared_prefix_prompts(vocab: int) -> list[list[int]]:
    rng = random.Random(2)
    prefix = ids(rng, 2048, vocab)
    return [prefix + ids(rng, 64, vocab) for _ in range(256)]


def bench_json(engine: Any, vocab: int) -> dict[str, Any]:
    rng = random.Random(3)
    prompts = [ids(rng, 256, vocab) for _ in range(64)]
    schema = json.dumps(JSON_SCHEMA)
    run_batch(engine, prompts[:4], [greedy(8, json_schema=schema)] * 4)  # compile, warm up
    constrained = run_batch(
        engine, prompts, [{"temperature": 0.0, "max_new_tokens": 256, "json_schema": schema}] * 64
    )
    engine.flush_cache()
    free = run_batch(engine, prompts, [greedy(256)] * 64)
    gap = 1 - constrained["output_tok_s"] / free["output_tok_s"]
    return {"constrained": constrained, "unconstrained": free, "throughput_gap": gap}


def hf_decode_ms(model_dir: Path, steps: int = 64) -> float:
    """HF transformers greedy decode of the same shape (random weights), ms per token."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16).eval()
    prompt = torch.randint(1000, 30000, (1, 128), device="cuda")
    kwargs = dict(do_sample=False, min_new_tokens=steps, max_new_tokens=steps)
    model.generate(prompt, **kwargs)  # warm-up
    torch.cuda.synchronize()
    times = []
    for n in (1, steps):
        kwargs.update(min_new_tokens=n, max_new_tokens=n)
        start = time.perf_counter()
        model.generate(prompt, **kwargs)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    del model
    torch.cuda.empty_cache()
    return (times[1] - times[0]) / (steps - 1) * 1e3


def engine_args(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    kw = dict(
        DUMMY_ENGINE_ARGS,
        tokenizer_path=args.tokenizer_path,
        attention_backend=args.attention_backend,
        disable_cuda_graph=args.disable_cuda_graph,
        disable_overlap_schedule=args.disable_overlap_schedule,
    )
    if args.cuda_graph_max_bs:
        kw["cuda_graph_max_bs"] = args.cuda_graph_max_bs
    if args.max_running_requests:
        kw["max_running_requests"] = args.max_running_requests
    kw.update(dict(args.engine_arg))
    kw.update(extra)
    return kw


def plot(result: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    t = result["targets"]
    if "decode" in t:
        d = t["decode"]
        bars = {"sglrs": d["ms_per_token"], "floor": d["floor_ms"], "target": 5.5}
        if d.get("hf_ms"):
            bars["HF"] = d["hf_ms"]
        axes[0].bar(list(bars), list(bars.values()), color="C0")
        axes[0].set_title("batch-1 decode, ms/token (lower is better)")
    if "offline" in t:
        axes[1].bar(["sglrs", "target", "HF (issue)"], [t["offline"]["output_tok_s"], 9000, 466])
        axes[1].set_title("offline output tok/s")
    if "shared" in t:
        s = t["shared"]
        axes[2].bar(["radix on", "radix off"], [s["on"]["output_tok_s"], s["off"]["output_tok_s"]])
        axes[2].set_title(f"shared prefix, {s['speedup']:.2f}x (target 3x)")
    if "json" in t:
        j = t["json"]
        axes[3].bar(
            ["json_schema", "free"],
            [j["constrained"]["output_tok_s"], j["unconstrained"]["output_tok_s"]],
        )
        axes[3].set_title(f"64 concurrent, gap {j['throughput_gap']:.1%} (target <= 10%)")
    fig.suptitle(f"sglrs on {result['device']}, Llama-3.1-8B shape, bf16, random weights")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokenizer-path", required=True)
    p.add_argument("--only", default="decode,offline,shared,json")
    p.add_argument("--attention-backend", default="auto")
    p.add_argument("--disable-cuda-graph", action="store_true")
    p.add_argument("--disable-overlap-schedule", action="store_true")
    p.add_argument("--cuda-graph-max-bs", type=int, default=None)
    p.add_argument("--max-running-requests", type=int, default=None)
    p.add_argument(
        "--engine-arg", type=engine_arg, action="append", default=[], metavar="KEY=VALUE"
    )
    p.add_argument("--hf-peer", action="store_true", help="also time HF transformers decode")
    p.add_argument("--out", default=str(RESULTS / "gpu_targets.json"))
    args = p.parse_args()
    from sglrs import Engine

    only = set(args.only.split(","))
    vocab = min(LLAMA_8B["vocab_size"], 49152)  # prompts stay inside the tokenizer's vocab
    model_dir = write_model_dir(Path(tempfile.mkdtemp()) / "llama-3.1-8b")
    bw = copy_bandwidth()
    result: dict[str, Any] = run_header() | {
        "copy_bandwidth_tb_s": bw / 1e12,
        "targets": {},
    }
    t = result["targets"]
    with Engine(str(model_dir), **engine_args(args)) as engine:
        info = engine.get_server_info()
        result["server"] = {k: info.get(k) for k in ("attention_backend", "max_total_tokens")}
        if "decode" in only:
            t["decode"] = bench_decode(engine, vocab)
            # Reading the weights once at the measured copy rate (bytes read + written / s).
            t["decode"]["floor_ms"] = DECODE_WEIGHT_BYTES / bw * 1e3
            print(f"decode: {t['decode']['ms_per_token']:.2f} ms/token "
                  f"(floor {t['decode']['floor_ms']:.2f}, target 5.5)", flush=True)  # fmt: skip
        if "offline" in only:
            t["offline"] = bench_offline(engine, vocab)
            print(f"offline: {t['offline']['output_tok_s']:.0f} output tok/s (target 9000)",
                  flush=True)  # fmt: skip
        if "json" in only:
            t["json"] = bench_json(engine, vocab)
            print(f"json: gap {t['json']['throughput_gap']:.1%} (target <= 10%)", flush=True)
        if "shared" in only:
            prompts = shared_prefix_prompts(vocab)
            engine.flush_cache()
            run_batch(engine, prompts[:1], [greedy(1)])  # the prefix is cached once
            on = run_batch(engine, prompts, [greedy(64)] * len(prompts))
    if "shared" in only:
        with Engine(str(model_dir), **engine_args(args, disable_radix_cache=True)) as engine:
            run_batch(engine, prompts[:4], [greedy(4)] * 4)  # warm-up
            off = run_batch(engine, prompts, [greedy(64)] * len(prompts))
        t["shared"] = {"on": on, "off": off, "speedup": on["output_tok_s"] / off["output_tok_s"]}
        print(f"shared prefix: radix {t['shared']['speedup']:.2f}x (target 3x)", flush=True)
    if args.hf_peer and "decode" in only:
        t["decode"]["hf_ms"] = hf_decode_ms(model_dir)
        print(f"HF transformers decode: {t['decode']['hf_ms']:.1f} ms/token", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(json.dumps(t, indent=1))


if __name__ == "__main__":
    main()

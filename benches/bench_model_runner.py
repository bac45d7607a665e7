"""Greedy prefill + decode throughput: sglrs ModelRunner (torch_native attention) vs HF
transformers (`LlamaForCausalLM` with its KV cache), same weights, same device and dtype.

Models: `smollm2` (the default GGUF, dequantized) or `dummy-llama-8b` (Llama-3.1-8B shape,
random weights in place on the device; the dummy load time is reported too).
Writes benches/results/model_runner_<device>.json and .png.

    python benches/bench_model_runner.py [--device cuda] [--model dummy-llama-8b]
        [--batch 1 8] [--prompt-len 128] [--decode-steps 32] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import torch

from sglrs.attention import resolve_attention_backend
from sglrs.kv_cache import KVBudget
from sglrs.model_loader import LoadConfig, ModelConfig, load_model_config
from sglrs.runner.model_runner import ModelRunner

# The StepPlan stand-in the runner tests use (the Rust scheduler is not needed to time the model).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runner"))
from step_plans import PlanBuilder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama8b import LLAMA_8B  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hf_state_dict(model: torch.nn.Module, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF names for our weights (fused q/k/v and gate/up split back; views, no copies)."""
    out = {}
    for name, p in model.named_parameters():
        if ".qkv_proj." in name:
            parts = p.split([cfg.q_size, cfg.kv_size, cfg.kv_size])
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), parts, strict=True):
                out[name.replace("qkv_proj", proj)] = part
        elif ".gate_up_proj." in name:
            gate, up = p.chunk(2)
            out[name.replace("gate_up_proj", "gate_proj")] = gate
            out[name.replace("gate_up_proj", "up_proj")] = up
        else:
            out[name] = p
    return out


def hf_peer(runner: ModelRunner, path: str | None) -> torch.nn.Module:
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from sglrs.utils.hf_reference import hf_llama_config

    cfg = runner.config
    if path is not None and Path(path, "config.json").is_file():
        hf_cfg = AutoConfig.from_pretrained(path)
    else:
        hf_cfg = hf_llama_config(cfg)
    with torch.device("meta"):
        hf = LlamaForCausalLM(hf_cfg).eval()
    hf.load_state_dict(hf_state_dict(runner.model, cfg), strict=False, assign=True)
    if cfg.tie_word_embeddings:
        hf.lm_head.weight = hf.model.embed_tokens.weight
    with torch.device(runner.device):
        hf.model.rotary_emb = LlamaRotaryEmbedding(hf_cfg)
    return hf


@torch.inference_mode()
def run_ours(runner: ModelRunner, prompts: torch.Tensor, steps: int) -> tuple[float, float]:
    batch, dev = prompts.shape[0], runner.device
    plans = PlanBuilder(capacity=runner.max_total_tokens, rows=batch)
    for r in range(batch):
        plans.add(r)
    sync(dev)
    t0 = time.perf_counter()
    out = runner.forward(plans.step({r: prompts[r].tolist() for r in range(batch)}))
    nxt = out.logits.argmax(-1).tolist()
    sync(dev)
    t1 = time.perf_counter()
    for _ in range(steps):
        out = runner.forward(plans.step({r: [nxt[r]] for r in range(batch)}))
        nxt = out.logits.argmax(-1).tolist()
    sync(dev)
    return t1 - t0, time.perf_counter() - t1


@torch.inference_mode()
def run_hf(hf: torch.nn.Module, prompts: torch.Tensor, steps: int) -> tuple[float, float]:
    dev = prompts.device
    sync(dev)
    t0 = time.perf_counter()
    out = hf(prompts, use_cache=True)
    nxt = out.logits[:, -1].argmax(-1)
    nxt.tolist()
    sync(dev)
    t1 = time.perf_counter()
    cache = out.past_key_values
    for _ in range(steps):
        out = hf(nxt[:, None], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1)
        nxt.tolist()  # both sides bring the token ids to the host each step
    sync(dev)
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=["smollm2", "dummy-llama-8b"], default="smollm2")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--attention-backend", default="auto")
    ap.add_argument("--disable-cuda-graph", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print the top ops of decode")
    args = ap.parse_args()
    device = torch.device(args.device)
    tmp = None
    if args.model == "smollm2":
        from sglrs.utils.default_model import default_model_path

        path, load_format = str(default_model_path()), "auto"
    else:
        tmp = tempfile.TemporaryDirectory()
        Path(tmp.name, "config.json").write_text(json.dumps(LLAMA_8B))
        path, load_format = tmp.name, "dummy"
    cfg = load_model_config(path)
    tokens_needed = max(args.batch) * (args.prompt_len + args.decode_steps + 1)
    t0 = time.perf_counter()
    runner = ModelRunner(
        cfg,
        LoadConfig(path, load_format, progress=False),
        device,
        args.dtype,
        KVBudget(max_total_tokens=tokens_needed),
        attention_backend=resolve_attention_backend(args.attention_backend, device),
        max_running_requests=max(args.batch),
        context_length=args.prompt_len + args.decode_steps + 8,
        disable_cuda_graph=args.disable_cuda_graph,
    )
    sync(device)
    load_s = time.perf_counter() - t0
    hf = hf_peer(runner, path if load_format == "dummy" else None)
    rows = []
    for batch in args.batch:
        gen = torch.Generator().manual_seed(batch)
        prompts = torch.randint(0, cfg.vocab_size, (batch, args.prompt_len), generator=gen)
        prompts = prompts.to(device)
        run_ours(runner, prompts, 2)  # warm-up (allocator, kernels)
        run_hf(hf, prompts, 2)
        ours, peer = (
            run_ours(runner, prompts, args.decode_steps),
            run_hf(hf, prompts, args.decode_steps),
        )
        row = {
            "batch": batch,
            "prefill_tok_s": batch * args.prompt_len / ours[0],
            "hf_prefill_tok_s": batch * args.prompt_len / peer[0],
            "decode_tok_s": batch * args.decode_steps / ours[1],
            "hf_decode_tok_s": batch * args.decode_steps / peer[1],
        }
        row["prefill_ratio"] = row["prefill_tok_s"] / row["hf_prefill_tok_s"]
        row["decode_ratio"] = row["decode_tok_s"] / row["hf_decode_tok_s"]
        rows.append(row)
        print(
            f"batch {batch:3d}: prefill {row['prefill_tok_s']:9.1f} tok/s "
            f"(HF {row['hf_prefill_tok_s']:9.1f}, ratio {row['prefill_ratio']:.2f}x)  "
            f"decode {row['decode_tok_s']:8.1f} tok/s "
            f"(HF {row['hf_decode_tok_s']:8.1f}, ratio {row['decode_ratio']:.2f}x)"
        )
    result = {
        "model": args.model,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(runner.dtype),
        "torch_threads": torch.get_num_threads(),
        "prompt_len": args.prompt_len,
        "decode_steps": args.decode_steps,
        "load_s": load_s,
        "rows": rows,
    }
    print(f"load ({load_format}): {load_s:.2f}s")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"model_runner_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("prefill", "decode"), strict=True):
        xs = [r["batch"] for r in rows]
        ax.plot(xs, [r[f"{key}_tok_s"] for r in rows], "o-", label="sglrs torch_native")
        ax.plot(xs, [r[f"hf_{key}_tok_s"] for r in rows], "s--", label="HF transformers")
        ax.set(xlabel="batch", ylabel="tokens/s", title=f"{key} ({args.model}, {result['device']})")
        ax.set_xscale("log", base=2)
        ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=100)
    if args.profile:
        for batch in args.batch:
            profile_decode(runner, batch, args.prompt_len)
    if tmp is not None:
        tmp.cleanup()


class _ProfiledCore:
    """`sglrs._core` with each function call recorded as `rust::<name>` (the profiler does not
    see the Rust kernels of the CPU path otherwise)."""

    def __init__(self, core) -> None:
        self._core = core

    def __getattr__(self, name: str):
        from torch.profiler import record_function

        fn = getattr(self._core, name)

        def call(*args, **kwargs):
            with record_function(f"rust::{name}"):
                return fn(*args, **kwargs)

        return call


def profile_decode(runner: ModelRunner, batch: int, prompt_len: int) -> None:
    """Top ops of 8 decode steps at `batch` (CUDA-graph replays show their kernels; on the CPU
    the Rust kernels show as `rust::*`)."""
    from torch.profiler import ProfilerActivity, profile

    from sglrs.attention import cpu_decode
    from sglrs.layers import cpu_ops

    gen = torch.Generator().manual_seed(batch)
    prompts = torch.randint(0, runner.config.vocab_size, (batch, prompt_len), generator=gen)
    cuda = runner.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    saved = cpu_decode._core, cpu_ops._core
    cpu_decode._core = cpu_ops._core = _ProfiledCore(saved[0])
    try:
        with profile(activities=activities) as prof:
            run_ours(runner, prompts.to(runner.device), 8)
    finally:
        cpu_decode._core, cpu_ops._core = saved
    print(f"--- decode profile, batch {batch} (includes one prefill) ---")
    sort = "cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()

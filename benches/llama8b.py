"""The Llama-3.1-8B configuration the GPU benchmarks run with random weights."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "torch_dtype": "bfloat16",
}
# Engine settings every GPU benchmark of this model shares (random bf16 weights).
DUMMY_ENGINE_ARGS = {
    "load_format": "dummy",
    "dtype": "bfloat16",
    "context_length": 4096,
    "log_level": "warning",
}
# Bytes one decode step must read: every weight but the embedding table (one row of it).
DECODE_WEIGHT_BYTES = 2 * (8_030_261_248 - 128256 * 4096)


def engine_arg(text: str) -> tuple[str, Any]:
    """`--engine-arg KEY=VALUE` (argparse type): any sglrs.Engine keyword, VALUE read as JSON
    when it parses (numbers, true/false), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.replace("-", "_"), value


def write_model_dir(path: Path) -> Path:
    """A model directory holding only config.json (load it with load_format='dummy')."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(LLAMA_8B))
    return path


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        y.copy_(x)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / 10
    del x, y
    torch.cuda.empty_cache()
    return 2 * (2 << 30) / seconds


def run_header(device: str | None = None, triton: bool = False) -> dict[str, Any]:
    """What every GPU benchmark's JSON starts with: the device, the versions, the command."""
    import sglrs

    versions = {"sglrs": sglrs.__version__, "torch": torch.__version__}
    if triton:
        import triton as triton_module

        versions["triton"] = triton_module.__version__
    versions["python"] = platform.python_version()
    return {
        "device": device or torch.cuda.get_device_name(),
        "versions": versions,
        "command": " ".join(sys.argv),
    }


def precompile(compile_one: Callable[[Any], str], jobs: list[Any], workers: int) -> None:
    """Compile a sweep's Triton configs in `workers` spawned processes (into the shared cache);
    `compile_one` (a module-level function) returns "" or what failed, which is printed."""
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        errors = [e for e in pool.map(compile_one, jobs) if e]
    print(f"compiled {len(jobs)} sweep configs in {time.perf_counter() - start:.0f} s; "
          f"{len(errors)} failed", flush=True)  # fmt: skip
    for e in errors[:20]:
        print("  ", e, flush=True)

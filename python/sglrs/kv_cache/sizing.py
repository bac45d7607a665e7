"""How many KV tokens fit: an explicit count, a byte budget (CPU), or a GPU memory fraction."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglrs.model_loader.config import ModelConfig

DEFAULT_CPU_KV_BYTES = 1 << 30  # 1 GiB when nothing is asked on CPU
DEFAULT_MEM_FRACTION_STATIC = 0.85
# One rank on a >= 60 GB GPU (SGLang's tp-1 default): 0.85 left an H100 with room for 418k
# tokens of Llama-3.1-8B KV where the offline benchmark peaks at ~431k, so the scheduler held
# requests back and ran them as a small-batch tail (7,909 vs 8,727 output tok/s at 0.88).
LARGE_GPU_MEM_FRACTION_STATIC = 0.88
LARGE_GPU_BYTES = 60 * 2**30


def large_gpu(device: torch.device) -> bool:
    """A GPU of the serving class (H100/H200): big decode batches, big prefill chunks."""
    return device.type == "cuda" and torch.cuda.get_device_properties(device).total_memory >= (
        LARGE_GPU_BYTES
    )


def default_mem_fraction_static(device: torch.device, tp_size: int) -> float:
    """The GPU fraction weights + KV take when `--mem-fraction-static` is not given."""
    if tp_size == 1 and large_gpu(device):
        return LARGE_GPU_MEM_FRACTION_STATIC
    return DEFAULT_MEM_FRACTION_STATIC


@dataclass(frozen=True)
class KVBudget:
    """Set one of these. `max_total_tokens` wins; then `memory_bytes`; then the GPU's
    `mem_fraction_static`: weights + KV pool take that fraction of the GPU's total memory (as
    SGLang's flag), the rest stays for activations, CUDA graphs and workspaces."""

    max_total_tokens: int | None = None
    memory_bytes: int | None = None
    mem_fraction_static: float | None = None


def kv_bytes_per_token(config: ModelConfig, dtype: torch.dtype) -> int:
    """K and V of every layer for one token."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * itemsize


def kv_token_capacity(
    config: ModelConfig,
    dtype: torch.dtype,
    page_size: int,
    budget: KVBudget,
    device: torch.device | str,
) -> int:
    """Token capacity (a multiple of `page_size`) the budget allows, the padding page excluded."""
    per_token = kv_bytes_per_token(config, dtype)
    device = torch.device(device)
    if budget.max_total_tokens is not None:
        tokens = budget.max_total_tokens
    else:
        if budget.memory_bytes is not None:
            nbytes = budget.memory_bytes
        elif device.type == "cuda":
            fraction = budget.mem_fraction_static
            if fraction is None:
                from sglrs.distributed import get_tp_size

                fraction = default_mem_fraction_static(device, get_tp_size())
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"--mem-fraction-static must be in (0, 1), got {fraction}")
            free, total = torch.cuda.mem_get_info(device)
            used = total - free  # weights, the CUDA context, other processes
            nbytes = int(total * fraction) - used
            if nbytes < per_token * 16 * page_size:
                raise ValueError(
                    f"out of GPU memory for the KV cache: --mem-fraction-static {fraction} "
                    f"allows {total * fraction / 2**30:.1f} GiB of {total / 2**30:.1f} GiB, and "
                    f"{used / 2**30:.1f} GiB is in use already (model weights); raise "
                    "--mem-fraction-static or use a smaller model or dtype"
                )
        elif budget.mem_fraction_static is not None:
            raise ValueError("mem_fraction_static sizes a GPU pool; on CPU give memory_bytes")
        else:
            nbytes = DEFAULT_CPU_KV_BYTES
        tokens = nbytes // per_token - page_size  # room for the padding page
    tokens = tokens // page_size * page_size
    if tokens < page_size:
        raise ValueError(
            f"KV budget {budget} leaves no room for a single page ({page_size} tokens of "
            f"{per_token} bytes each)"
        )
    return tokens

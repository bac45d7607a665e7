"""`F.linear` for CUDA tensors, with the Triton GEMV (sglrs.kernels.gemv) for the few-row
bf16/fp16 products of decode where it measured faster than cuBLAS.

A Triton launch from Python costs far more host time than cuBLAS (~110 vs ~21 µs per call on
the H100 machine, benches/gemv_h100.py). Inside a CUDA graph that is paid once, at capture, so
captured calls use the GEMV; eager calls use it only for weights whose read takes well over a
launch (the LM head), and once per variant so that it is compiled and loaded before a capture.
`SGLRS_DISABLE_GEMV=1` keeps F.linear for all of these (as `SGLRS_DISABLE_TRITON_KERNELS=1`
does for every Triton kernel), to compare. The GEMVs with a fused prologue (cuda_fused) follow
the same policy (`launch_now`).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from sglrs.kernels import use_triton
from sglrs.layers.packed_linear import packed_linear

_HALF = (torch.bfloat16, torch.float16)
# Eager calls on weights this large use the GEMV: >= ~60 µs of reading at 3 TB/s, so the LM
# head's shard at tp 2 and 4 (525 / 263 MB on Llama-3.1-8B) too: at tp 2 on H200 the GEMV
# reads it in 118 µs against cuBLAS's 131 (benches/gemv_h100.py, shape lm_head_tp2).
EAGER_MIN_WEIGHT_BYTES = 192 << 20
_launched: set[tuple] = set()


def launch_now(key: tuple, weight: torch.Tensor) -> bool:
    """Whether this call should launch the Triton kernel of `key` (see the module docstring)."""
    if torch.cuda.is_current_stream_capturing():
        return True
    if weight.numel() * weight.element_size() >= EAGER_MIN_WEIGHT_BYTES:
        return True
    if key not in _launched:  # compile and load it eagerly, never during a capture
        _launched.add(key)
        return True
    return False


def cuda_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`F.linear(x, weight, bias)`."""
    if (
        x.dtype in _HALF
        and weight.dtype == x.dtype
        and (bias is None or bias.dtype == x.dtype)
        and weight.dim() == 2
        and weight.stride(1) == 1
        and x.stride(-1) == 1
        and use_triton(x)
        and os.environ.get("SGLRS_DISABLE_GEMV") != "1"
    ):
        from sglrs.kernels.gemv import gemv, pick_config

        n, k = weight.shape
        m = x.numel() // k if k else 0
        config = pick_config(m, n, k) if x.shape[-1] == k else None
        key = (config, m, n, k, x.dtype, bias is None, x.device)
        if config is not None and launch_now(key, weight):
            return gemv(x.reshape(m, k), weight, bias, config).view(*x.shape[:-1], n)
    return F.linear(x, weight, bias)


def device_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    packed: torch.Tensor | None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """`cuda_linear` for CUDA inputs, else `packed_linear` (the CPU path, unchanged)."""
    if x.is_cuda:
        return cuda_linear(x, weight, bias)
    return packed_linear(x, weight, packed, bias)

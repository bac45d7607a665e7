"""The per-layer ops of a CPU decoder step as single-pass Rust kernels (`crates/cpu_attn`,
`layer_ops`): RMSNorm with the residual add, SiLU(gate) * up, and rope in place.

torch runs each of these on the CPU as 3-8 elementwise kernels with a temporary (and, in
bfloat16, a conversion to float32) between every two; at SmolLM2's sizes they took a third of a
bfloat16 prefill step. Rounding follows HF's Llama code (see the crate), so float32 results are
HF's. `SGLRS_DISABLE_CPU_LAYER_OPS=1` keeps the torch versions, to compare.

Each function returns None where it does not apply (a non-CPU tensor, another dtype, a layout
it does not take); the caller then runs its torch version.
"""

from __future__ import annotations

import os

import torch

from sglrs import _core

# The dtype codes of the `_core` functions (as in sglrs.attention.cpu_decode).
_DTYPE_CODES: dict[torch.dtype, int] = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
DISABLE_ENV = "SGLRS_DISABLE_CPU_LAYER_OPS"


def enabled(x: torch.Tensor) -> bool:
    """Whether `x` (its device and dtype) runs on these kernels."""
    return (
        x.device.type == "cpu"
        and x.dtype in _DTYPE_CODES
        and os.environ.get(DISABLE_ENV) != "1"
        and not x.requires_grad
    )


def _rows(x: torch.Tensor) -> bool:
    return x.dim() >= 1 and x.is_contiguous()


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
    """RMSNorm(x) * weight; with `residual`, (RMSNorm(x + residual) * weight, x + residual).
    The inputs are left unchanged."""
    if not (enabled(x) and _rows(x) and weight.dtype == x.dtype and weight.is_contiguous()):
        return None
    dim = weight.numel()
    if x.shape[-1] != dim or weight.device.type != "cpu":
        return None
    rows = x.numel() // dim if dim else 0
    out = torch.empty_like(x)
    threads = torch.get_num_threads()
    code = _DTYPE_CODES[x.dtype]
    if residual is None:
        _core.rms_norm(dtype=code, x_ptr=x.data_ptr(), rows=rows, dim=dim,
                       weight_ptr=weight.data_ptr(), eps=eps, out_ptr=out.data_ptr(),
                       num_threads=threads)  # fmt: skip
        return out
    if residual.shape != x.shape or residual.dtype != x.dtype or not _rows(residual):
        return None
    res_out = torch.empty_like(x)
    _core.add_rms_norm(dtype=code, x_ptr=x.data_ptr(), residual_ptr=residual.data_ptr(),
                       rows=rows, dim=dim, weight_ptr=weight.data_ptr(), eps=eps,
                       out_ptr=out.data_ptr(), res_out_ptr=res_out.data_ptr(),
                       num_threads=threads)  # fmt: skip
    return out, res_out


def silu_and_mul(x: torch.Tensor) -> torch.Tensor | None:
    """silu(gate) * up for rows `[gate | up]` of `x` `[..., 2 * inter]`."""
    if not (enabled(x) and _rows(x) and x.shape[-1] % 2 == 0):
        return None
    inter = x.shape[-1] // 2
    out = torch.empty((*x.shape[:-1], inter), dtype=x.dtype)
    rows = out.numel() // inter if inter else 0
    _core.silu_and_mul(dtype=_DTYPE_CODES[x.dtype], gate_up_ptr=x.data_ptr(), rows=rows,
                       inter=inter, out_ptr=out.data_ptr(),
                       num_threads=torch.get_num_threads())  # fmt: skip
    return out


def rope_inplace(
    x: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor | None:
    """Rope (HF's half-split layout) in place on `x` `[T, heads, head_dim]` (heads and dims
    contiguous, rows any stride, e.g. the q and k heads of a fused qkv row) from float32
    `[max_position, head_dim]` tables; returns `x`."""
    if not enabled(x) or x.dim() != 3:
        return None
    t, heads, head_dim = x.shape
    if x.stride(2) != 1 or x.stride(1) != head_dim or (t > 1 and x.stride(0) < heads * head_dim):
        return None
    if positions.dtype != torch.int64 or positions.device.type != "cpu" or positions.dim() != 1:
        return None
    if positions.shape[0] != t or not positions.is_contiguous():
        return None
    if cos.dtype != torch.float32 or not (cos.is_contiguous() and sin.is_contiguous()):
        return None
    if cos.shape != sin.shape or cos.dim() != 2 or cos.shape[1] != head_dim:
        return None
    _core.rope_inplace(dtype=_DTYPE_CODES[x.dtype], x_ptr=x.data_ptr(), rows=t,
                       row_stride=x.stride(0) if t > 1 else heads * head_dim, heads=heads,
                       head_dim=head_dim, positions_ptr=positions.data_ptr(),
                       cos_ptr=cos.data_ptr(), sin_ptr=sin.data_ptr(), max_position=cos.shape[0],
                       num_threads=torch.get_num_threads())  # fmt: skip
    return x

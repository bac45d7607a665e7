"""Linear layers on oneDNN-prepacked weights for float32 and bfloat16 on the CPU.

A plain CPU matmul re-packs the weight on every call (MKL's sgemm for float32; oneDNN's
reorder into the AMX/VNNI tile layout for bfloat16); for the small row counts of decode (one
row per running request) that repacking is a large share of each matmul. oneDNN's linear on a
weight reordered once into its blocked layout avoids it. Measured on SmolLM2's shapes (2-core
Sapphire Rapids): float32 ~1.3-2x faster from 4 rows up; bfloat16 ~1.7x at 2-128 rows, equal
at 1 row; at the CPU prefill chunk (512 rows, weights not cache-hot, one thread) bfloat16 is
5-15% faster packed (a 500-token prefill step 5-8%), so each dtype has its own row range
(`PACKED_ROWS`). It is an internal torch op, so other dtypes, non-CPU weights or a
torch without it keep `F.linear`.

On CPUs with AMX, bfloat16 weights are packed for the Rust AMX kernel instead
(sglrs.layers.amx_linear): decode's rows read the weight at ~2.4x oneDNN's rate; the many rows
of a prefill chunk (`AMX_MAX_ROWS` and up), where oneDNN's blocking wins, take `F.linear`, as
fast there as oneDNN's packed weight (2048 rows) without a second packed copy.

On CPUs with AVX-512, float32 weights are packed for the Rust AVX-512 kernel
(sglrs.layers.f32_linear) in the same way: up to `F32_MAX_ROWS` rows it is ahead of oneDNN's
packed weight (SmolLM2's 30 layers, cold: 19 vs 22 ms at 1 row, 21 vs 28 at 4, 41 vs 46 at 32,
62 vs 73 at 64); from 128 rows `F.linear` (MKL) is as fast as oneDNN's packed weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglrs.layers import amx_linear, f32_linear
from sglrs.layers.amx_linear import AmxWeight
from sglrs.layers.f32_linear import F32Weight

# A packing hint only: the packed weight serves any number of rows.
PACK_ROWS_HINT = 32
# Rows (inclusive) for which the packed weight is used, per dtype. Below the range the matmul
# is bound by reading the weight and the plain path is as fast; above it (bfloat16 prefills
# longer than the CPU chunk) the packed kernel was not measured faster.
PACKED_ROWS = {torch.float32: (4, 1 << 62), torch.bfloat16: (2, 1024)}
# Rows (inclusive) that run on an AMX-packed weight; more go to `F.linear` (oneDNN's blocking
# is ahead from a few hundred rows: 0.75-0.85x at 512 and 2048 rows on SmolLM2's shapes).
AMX_MAX_ROWS = 64
# Rows (inclusive) that run on an AVX-512-packed float32 weight; more go to `F.linear`.
F32_MAX_ROWS = 64


def can_prepack(weight: torch.Tensor) -> bool:
    return (
        weight.device.type == "cpu"
        and weight.dtype in PACKED_ROWS
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


Packed = torch.Tensor | AmxWeight | F32Weight


def prepack_weight(weight: torch.Tensor) -> Packed | None:
    """The AMX-packed (bfloat16 on an AMX CPU), AVX-512-packed (float32 on an AVX-512 CPU) or
    oneDNN-blocked copy of a `[out, in]` weight, or None where packing is unavailable."""
    packed = amx_linear.pack(weight)
    if packed is None:
        packed = f32_linear.pack(weight)
    if packed is not None:
        return packed
    if not can_prepack(weight):
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS_HINT)
    except RuntimeError:  # a torch build whose oneDNN rejects the reorder: stay on F.linear
        return None


def packed_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    packed: Packed | None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, on the packed weight when there is one. `out_dtype`
    float32 (the LM head): an AMX product is written in float32 without rounding to bfloat16;
    otherwise the result is cast."""
    if isinstance(packed, AmxWeight):
        if x.dtype == weight.dtype and x.numel() <= AMX_MAX_ROWS * x.shape[-1]:
            return amx_linear.linear(x, packed, bias, out_dtype or x.dtype)
        packed = None
    elif isinstance(packed, F32Weight):
        if x.dtype == weight.dtype and x.numel() <= F32_MAX_ROWS * x.shape[-1]:
            out = f32_linear.linear(x, packed, bias)
            return out if out_dtype is None else out.to(out_dtype)
        packed = None
    out = _packed_linear(x, weight, packed, bias)
    return out if out_dtype is None else out.to(out_dtype)


def _packed_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    packed: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    if packed is None or x.dtype != weight.dtype:
        return F.linear(x, weight, bias)
    low, high = PACKED_ROWS[x.dtype]
    if not low * x.shape[-1] <= x.numel() <= high * x.shape[-1]:
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def prepack_model(model: nn.Module) -> int:
    """Prepack every module that has `prepack()` (after the weights are loaded); returns how
    many were packed."""
    packed = 0
    for module in model.modules():
        prepack = getattr(module, "prepack", None)
        if callable(prepack) and prepack():
            packed += 1
    return packed

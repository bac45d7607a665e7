"""Linear layers on oneDNN-prepacked weights for float32 on the CPU.

MKL's plain sgemm re-packs the weight on every call; for the small row counts of decode
(one row per running request) that repacking is a large share of each matmul. oneDNN's
linear on a weight reordered once into its blocked layout is ~1.3-2x faster there and works
for any row count (under PACKED_MIN_ROWS rows plain sgemm is kept). It is an internal torch op,
so anything but float32 CPU weights (or a torch without it) keeps `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# A packing hint only: the packed weight serves any number of rows.
PACK_ROWS_HINT = 32
# Below this many rows the matmul is bound by reading the weight, and plain sgemm was as fast
# or faster (measured on SmolLM2's shapes): batch-1 decode keeps F.linear.
PACKED_MIN_ROWS = 4


def can_prepack(weight: torch.Tensor) -> bool:
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def prepack_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """The oneDNN-blocked copy of a `[out, in]` weight, or None where packing is unavailable."""
    if not can_prepack(weight):
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS_HINT)
    except RuntimeError:  # a torch build whose oneDNN rejects the reorder: stay on F.linear
        return None


def packed_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    packed: torch.Tensor | None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, on the packed weight when there is one."""
    if packed is None or x.dtype != torch.float32 or x.numel() < PACKED_MIN_ROWS * x.shape[-1]:
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

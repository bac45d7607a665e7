"""Gated activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglrs.kernels import use_triton
from sglrs.layers import cpu_ops


class SiluAndMul(nn.Module):
    """silu(gate) * up for the fused [gate | up] projection output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_triton(x) and x.dim() == 2 and x.stride(-1) == 1:
            from sglrs.kernels.activation import silu_and_mul

            return silu_and_mul(x)
        if x.device.type == "cpu":  # one Rust pass (cpu_ops) where it takes the tensor
            fused = cpu_ops.silu_and_mul(x)
            if fused is not None:
                return fused
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate).mul_(up)  # in place on silu's fresh output: one less buffer

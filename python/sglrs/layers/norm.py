"""RMSNorm, computed in float32 like the reference implementations."""

from __future__ import annotations

import torch
from torch import nn

from sglrs.kernels import use_triton
from sglrs.layers import cpu_ops
from sglrs.layers.linear import copy_weight


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(hidden_size), requires_grad=False)
        self.weight.weight_loader = lambda p, w, shard_id=None: copy_weight(p, w)  # type: ignore[attr-defined]
        self.weight.shard_ids = None  # type: ignore[attr-defined]

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Norm of `x`; with `residual`, norm of `x + residual` and that sum (the new residual)."""
        if use_triton(x) and x.stride(-1) == 1:
            from sglrs.kernels.norm import rmsnorm

            return rmsnorm(x, self.weight, self.eps, residual)
        if x.device.type == "cpu":  # one Rust pass (cpu_ops) where it takes the tensors
            fused = cpu_ops.rms_norm(x, self.weight, self.eps, residual)
            if fused is not None:
                return fused
        if residual is None:
            return self._norm(x)
        x = x + residual
        return self._norm(x), x

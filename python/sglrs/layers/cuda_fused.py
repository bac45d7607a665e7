"""RMSNorm and SiLU*mul fused into the decode GEMV that follows them (sglrs.kernels.gemv), for
the Llama-family layers: `norm_linear` (a norm with its residual add, then the QKV or gate_up
projection) and `silu_mul_linear` (the activation, then the down projection).

The fused kernel runs where the plain GEMV would (sglrs.layers.cuda_linear): CUDA bf16/fp16
tensors with Triton enabled, few rows (decode: `pick_fused_config`), inside a CUDA-graph capture
or on a variant's first eager call (which compiles it before any capture). Everywhere else the
separate ops run, exactly as before. `SGLRS_DISABLE_GEMV=1` or `SGLRS_DISABLE_TRITON_KERNELS=1`
turn it off; `SGLRS_DISABLE_FUSED_GEMV=1` turns off only the fusion (the separate norm or
activation kernel, then the plain GEMV), to measure what it saves.

Tensor parallelism: QKV and gate_up are column-parallel, so each rank has whole input rows and
normalizes them itself. Down is row-parallel over gate_up's columns and SiLU*mul is elementwise
on this rank's `[gate_r | up_r]`, so the fused product is this rank's partial sum, reduced as
RowLinear reduces it (the bias once, after the sum). The Llama layers also take the sums of
o_proj and down together with the norm that follows each (`linear_reduce_norm`): a one-row
GEMV's epilogue pushes its terms to the other ranks, sums theirs, adds the residual and
normalizes (kernels/gemv.py's REDUCE_NORM), so no all-reduce kernel runs between the two
projections; elsewhere the push all-reduce kernel sums, adds and normalizes in one launch
(`reduce_norm`). The projection after it is a plain GEMV with no prologue. `norm_linear_rope` and
`linear_rope` also let a one-row QKV GEMV rotate q and k and store k and v in the KV pool in its
epilogue (kernels/gemv.py's `RopeStore`), saving the rope kernel.
`SGLRS_DISABLE_REDUCE_NORM_EPILOGUE=1` keeps the separate all-reduce + norm kernel (to measure
what the epilogue saves).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from sglrs.distributed.comm import all_reduce, all_reduce_rmsnorm, reduce_norm_epilogue
from sglrs.kernels import use_triton
from sglrs.layers.activation import SiluAndMul
from sglrs.layers.cuda_linear import launch_now
from sglrs.layers.linear import ReplicatedLinear, RowLinear
from sglrs.layers.norm import RMSNorm

if TYPE_CHECKING:
    from sglrs.kernels.gemv import RopeStore

_HALF = (torch.bfloat16, torch.float16)


def _tp_size(linear: ReplicatedLinear) -> int:
    return linear.tp_size if isinstance(linear, RowLinear) else 1


def _fusable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """The plain GEMV's conditions (cuda_linear) for rows `x [M, *]` and `weight [N, K]`."""
    return (
        use_triton(x)
        and os.environ.get("SGLRS_DISABLE_GEMV") != "1"
        and os.environ.get("SGLRS_DISABLE_FUSED_GEMV") != "1"
        and x.dtype in _HALF
        and x.dim() == 2
        and x.stride(-1) == 1
        and weight.dtype == x.dtype
        and weight.dim() == 2
        and weight.stride(1) == 1
        and (bias is None or bias.dtype == x.dtype)
    )


def reduce_norm(
    norm: RMSNorm, partial: torch.Tensor, residual: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`norm(s)` and `s`, where `s = residual + the sum over the ranks of partial` (this rank's
    term of a bias-free row-parallel output): one kernel where the push all-reduce takes it,
    else the all-reduce and then the norm."""
    if type(norm) is RMSNorm:
        fused = all_reduce_rmsnorm(partial, residual, norm.weight, norm.eps)
        if fused is not None:
            return fused
    return norm(all_reduce(partial), residual)


def _norm(
    norm: RMSNorm, hidden: torch.Tensor, residual: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`norm(hidden + residual)` and that sum; `norm(hidden)` and `hidden` without one."""
    if residual is None:
        return norm(hidden), hidden
    return norm(hidden, residual)


def norm_linear(
    norm: RMSNorm,
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    linear: ReplicatedLinear,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`linear(norm(hidden + residual))` and `hidden + residual` (the next residual); without
    `residual`, `linear(norm(hidden))` and `hidden`. `linear` takes whole rows (replicated or
    column-parallel)."""
    y, residual, _ = norm_linear_rope(norm, hidden, residual, linear, None)
    return y, residual


def norm_linear_rope(
    norm: RMSNorm,
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    linear: ReplicatedLinear,
    rope: RopeStore | None,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """`norm_linear` of a fused q/k/v projection, and whether its GEMV also rotated q and k
    and stored k and v in the KV pool (the GEMV's ROPE epilogue: `rope`, where it fits)."""
    weight, bias, g = linear.weight, linear.bias, norm.weight
    if (
        _fusable(hidden, weight, bias)
        and type(norm) is RMSNorm  # a subclass may normalize differently
        and _tp_size(linear) == 1
        and g.dtype == hidden.dtype
        and g.stride(0) == 1
        and (
            residual is None
            or (
                residual.shape == hidden.shape
                and residual.dtype == hidden.dtype
                and residual.stride(-1) == 1
            )
        )
    ):
        from sglrs.kernels.gemv import gemv_rmsnorm, pick_fused_config, rope_fits

        (m, k), n = hidden.shape, weight.shape[0]
        config = pick_fused_config(m, n, k) if weight.shape[1] == k else None
        if rope is not None and (config is None or not rope_fits(rope, weight, config)):
            rope = None
        key = ("rmsnorm", config, m, n, k, hidden.dtype, residual is None, bias is None,
               rope is not None, hidden.device)  # fmt: skip
        if config is not None and launch_now(key, weight):
            y, residual = gemv_rmsnorm(hidden, residual, g, norm.eps, weight, bias, config,
                                       rope=rope)  # fmt: skip
            return y, residual, rope is not None
    x, residual = _norm(norm, hidden, residual)
    y, roped = linear_rope(x, linear, rope)
    return y, residual, roped


def linear_rope(
    x: torch.Tensor, linear: ReplicatedLinear, rope: RopeStore | None
) -> tuple[torch.Tensor, bool]:
    """`linear(x)` (whole rows: replicated or column-parallel), through the plain GEMV with the
    ROPE epilogue where `rope` fits it (then True)."""
    weight, bias = linear.weight, linear.bias
    if rope is not None and _fusable(x, weight, bias) and weight.shape[1] == x.shape[1]:
        from sglrs.kernels.gemv import gemv, pick_config, rope_fits

        (m, k), n = x.shape, weight.shape[0]
        config = pick_config(m, n, k)
        if config is not None and rope_fits(rope, weight, config):
            key = ("rope", config, m, n, k, x.dtype, bias is None, x.device)
            if launch_now(key, weight):
                return gemv(x, weight, bias, config, rope=rope), True
    return linear(x), False


def silu_mul_linear(
    act: SiluAndMul, gate_up: torch.Tensor, down: ReplicatedLinear, reduce: bool = True
) -> torch.Tensor:
    """`down(act(gate_up))` for `gate_up = [gate | up]`; `down` is row-parallel or whole.
    `reduce=False` (row-parallel `down` without a bias): this rank's term of the sum, for the
    caller to reduce (`linear_reduce_norm`)."""
    weight, tp = down.weight, _tp_size(down)
    if not reduce and (tp == 1 or down.bias is not None):
        raise ValueError("reduce=False needs a row-parallel projection without a bias")
    bias = down.bias if tp == 1 else None
    if type(act) is SiluAndMul and _fusable(gate_up, weight, down.bias):
        from sglrs.kernels.gemv import gemv_silu_mul, pick_fused_config

        m, (n, k) = gate_up.shape[0], weight.shape
        config = pick_fused_config(m, n, k) if gate_up.shape[1] == 2 * k else None
        key = ("silu_mul", config, m, n, k, gate_up.dtype, bias is None, gate_up.device)
        if config is not None and launch_now(key, weight):
            y = gemv_silu_mul(gate_up, weight, bias, config)
            if tp == 1 or not reduce:
                return y
            y = all_reduce(y)
            return y if down.bias is None else y + down.bias
    if not reduce:
        assert isinstance(down, RowLinear)
        return down.partial_sum(act(gate_up))
    return down(act(gate_up))


def linear_reduce_norm(
    x: torch.Tensor,
    linear: RowLinear,
    norm: RMSNorm,
    residual: torch.Tensor,
    act: SiluAndMul | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`norm(s)` and `s` for `s = residual + linear(x)` (`linear(act(x))` with `act`), where
    `linear` is row-parallel without a bias: one GEMV whose epilogue takes the sum over the
    ranks, the residual add and the norm (kernels/gemv.py's REDUCE_NORM) for one row on a GPU
    where it fits, else this rank's term and then `reduce_norm`. Every rank decides alike (same
    shapes, same order of calls)."""
    if linear.bias is not None:
        raise ValueError("linear_reduce_norm: the projection has a bias (added after the sum)")
    weight = linear.weight
    fused_act = type(act) is SiluAndMul
    if (
        (act is None or fused_act)
        and type(norm) is RMSNorm
        and x.shape[0] == 1  # measured at batch 1; larger batches keep the separate kernel
        and _fusable(x, weight, None)
        and os.environ.get("SGLRS_DISABLE_REDUCE_NORM_EPILOGUE") != "1"
    ):
        rn = reduce_norm_epilogue(residual, norm.weight, norm.eps)
        (m, kx), (n, k) = x.shape, weight.shape
        if rn is not None and kx == (2 * k if fused_act else k):
            from sglrs.kernels.gemv import (
                gemv_reduce_norm,
                pick_config,
                pick_fused_config,
                reduce_norm_fits,
            )

            config = (pick_fused_config if fused_act else pick_config)(m, n, k)
            if config is not None and reduce_norm_fits(rn, x, weight, config):
                key = ("reduce_norm", config, m, n, k, x.dtype, fused_act, x.device)
                if launch_now(key, weight):
                    return gemv_reduce_norm(x, weight, config, rn, silu_mul=fused_act)
    if act is None:
        partial = linear.partial_sum(x)
    else:
        partial = silu_mul_linear(act, x, linear, reduce=False)
    return reduce_norm(norm, partial, residual)

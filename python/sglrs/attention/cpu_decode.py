"""Paged decode attention on the CPU: the Rust kernel of `crates/cpu_attn`, reading each
request's K/V in place from the pool through `req_to_token` (no gather into a padded copy).

One query token per request; query head `h` uses KV head `h // (Hq // Hkv)`; with a
`sliding_window` only the last `sliding_window` positions are attended (as the torch_native
masks do). Arithmetic in float32 for float32, bfloat16 and float16 tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from sglrs import _core

# The dtype codes of `_core.paged_decode_attention`.
DTYPE_CODES: dict[torch.dtype, int] = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def supports(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the kernel runs on tensors of this device and KV dtype."""
    return device.type == "cpu" and dtype in DTYPE_CODES


def _host_ints(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got {x.device}")
        return x.numpy()
    return np.asarray(x)


def paged_decode_attention(
    q: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor | np.ndarray,
    seq_lens: torch.Tensor | np.ndarray,
    scale: float,
    sliding_window: int | None = None,
    out: torch.Tensor | None = None,
    num_threads: int = 1,
) -> torch.Tensor:
    """Attention of `q` `[B, Hq, D]` over K/V buffers `[num_slots, Hkv, D]`: request `b`
    attends positions `0 .. seq_lens[b]` of table row `req_pool_indices[b]` of `req_to_token`
    (int32 `[rows, stride]`). Returns `out` (`[B, Hq, D]`, q's dtype), allocated if not given.
    Raises ValueError on any inconsistent input, including slot ids outside the buffers.

    `num_threads` > 1 runs the (request, KV head) items on a Rust thread pool (the
    torch_native backend passes torch's thread count: the kernel is bound by reading K/V, and
    one core reads at about half the rate of two). torch's OpenMP workers spin between ops;
    the engine bounds that spin (`GOMP_SPINCOUNT`, sglrs.engine.runtime) so they yield the
    cores to these threads.
    """
    for name, t in (("q", q), ("k_buffer", k_buffer), ("v_buffer", v_buffer),
                    ("req_to_token", req_to_token)):  # fmt: skip
        if t.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got {t.device}")
    code = DTYPE_CODES.get(q.dtype)
    if code is None:
        raise ValueError(f"q dtype {q.dtype} is not supported (float32, bfloat16, float16)")
    if k_buffer.dtype != q.dtype or v_buffer.dtype != q.dtype:
        raise ValueError(
            f"q, k_buffer and v_buffer must share a dtype, got {q.dtype}, {k_buffer.dtype}, "
            f"{v_buffer.dtype}"
        )
    if q.dim() != 3 or q.stride(2) != 1:
        raise ValueError(f"q must be [B, Hq, D] with contiguous rows, got {tuple(q.shape)}")
    if k_buffer.dim() != 3 or k_buffer.shape != v_buffer.shape:
        raise ValueError(
            f"k_buffer and v_buffer must both be [num_slots, Hkv, D], got "
            f"{tuple(k_buffer.shape)} and {tuple(v_buffer.shape)}"
        )
    if not (k_buffer.is_contiguous() and v_buffer.is_contiguous()):
        raise ValueError("k_buffer and v_buffer must be contiguous")
    batch, q_heads, head_dim = q.shape
    num_slots, kv_heads, kv_dim = k_buffer.shape
    if kv_dim != head_dim:
        raise ValueError(f"head_dim of q ({head_dim}) and K/V ({kv_dim}) differ")
    if req_to_token.dtype != torch.int32 or req_to_token.dim() != 2:
        raise ValueError(f"req_to_token must be an int32 [rows, stride] tensor, got "
                         f"{req_to_token.dtype} {tuple(req_to_token.shape)}")  # fmt: skip
    if not req_to_token.is_contiguous():
        raise ValueError("req_to_token must be contiguous")
    rows = _host_ints(req_pool_indices, "req_pool_indices")
    lens = _host_ints(seq_lens, "seq_lens")
    if rows.shape != (batch,) or lens.shape != (batch,):
        raise ValueError(
            f"req_pool_indices {rows.shape} and seq_lens {lens.shape} must be 1-D with B = "
            f"{batch} entries"
        )
    if out is None:
        out = torch.empty((batch, q_heads, head_dim), dtype=q.dtype)
    elif (
        out.shape != q.shape
        or out.dtype != q.dtype
        or out.device.type != "cpu"
        or not out.is_contiguous()
    ):
        raise ValueError(
            f"out must be a contiguous CPU {q.dtype} tensor of shape {tuple(q.shape)}, got "
            f"{out.dtype} {tuple(out.shape)} on {out.device}"
        )
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window must be at least 1, got {sliding_window}")
    _core.paged_decode_attention(
        dtype=code,
        q_ptr=q.data_ptr(),
        q_shape=(batch, q_heads, head_dim),
        q_strides=q.stride(),
        k_ptr=k_buffer.data_ptr(),
        v_ptr=v_buffer.data_ptr(),
        num_slots=num_slots,
        kv_heads=kv_heads,
        table_ptr=req_to_token.data_ptr(),
        table_shape=tuple(req_to_token.shape),
        req_pool_indices=rows,
        seq_lens=lens,
        scale=float(scale),
        sliding_window=sliding_window,
        out_ptr=out.data_ptr(),
        num_threads=num_threads,
    )
    return out

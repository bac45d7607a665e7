"""Rotary position embedding (HF's half-split layout) with linear and Llama 3.1 scaling."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from sglrs.kernels import use_triton
from sglrs.layers import cpu_ops
from sglrs.model_loader.config import RopeScaling

if TYPE_CHECKING:
    from sglrs.kv_cache.pool import KVPool


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    """Per-pair inverse frequencies (float32, CPU)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    if scaling.rope_type == "llama3":
        # Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
        old_len = scaling.original_max_position_embeddings
        low_wavelen = old_len / scaling.low_freq_factor
        high_wavelen = old_len / scaling.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
        smooth = (old_len / wavelen - scaling.low_freq_factor) / (
            scaling.high_freq_factor - scaling.low_freq_factor
        )
        blended = (1 - smooth) * scaled / scaling.factor + smooth * scaled
        in_band = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(in_band, blended, scaled)
    raise ValueError(f"unsupported rope scaling {scaling.rope_type!r}")


class RotaryEmbedding(nn.Module):
    """Applies rope to q/k `[T, heads, head_dim]` from a float32 cos/sin table by position."""

    def __init__(
        self, head_dim: int, max_position: int, theta: float, scaling: RopeScaling | None
    ) -> None:
        super().__init__()
        inv_freq = rope_inv_freq(head_dim, theta, scaling).to(torch.get_default_device())
        pos = torch.arange(max_position, dtype=torch.float32, device=inv_freq.device)
        freqs = pos[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cache", emb.cos(), persistent=False)
        self.register_buffer("sin_cache", emb.sin(), persistent=False)
        # sin with the first half negated: rotate_half(x) * sin == halves_swapped(x) * this.
        half = head_dim // 2
        signed = torch.cat((-emb[:, :half].sin(), emb[:, half:].sin()), dim=-1)
        self.register_buffer("signed_sin_cache", signed, persistent=False)
        # The (positions, dtype) of the last lookup and its cos/sin: every layer of a step
        # passes the same positions tensor, so the table gather runs once per step.
        self._last: tuple[torch.Tensor, torch.dtype, torch.Tensor, torch.Tensor] | None = None

    def cos_sin(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin (first half negated) `[T, 1, head_dim]` of `positions` (positions
        are never updated in place)."""
        last = self._last
        if last is not None and last[0] is positions and last[1] == dtype:
            return last[2], last[3]
        cos = self.cos_cache[positions].unsqueeze(1).to(dtype)
        sin = self.signed_sin_cache[positions].unsqueeze(1).to(dtype)
        self._last = (positions, dtype, cos, sin)
        return cos, sin

    def rotate(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Rope on `x` `[T, heads, head_dim]` (q and k heads may share one call). On CUDA, and
        on the CPU where the Rust kernel takes the layout, the rotation is done in place by one
        kernel and `x` itself is returned."""
        if use_triton(x) and x.stride(-1) == 1:
            from sglrs.kernels.rotary import rope_inplace

            return rope_inplace(x, positions, self.cos_cache, self.sin_cache)
        if x.device.type == "cpu":
            done = cpu_ops.rope_inplace(x, positions, self.cos_cache, self.sin_cache)
            if done is not None:
                return done
        cos, signed_sin = self.cos_sin(positions, x.dtype)
        # HF's x * cos + rotate_half(x) * sin, with rotate_half's (-x2, x1) written as the
        # swapped halves (x2, x1) times the signed sin: one copy (flip) instead of neg + cat.
        t, h, d = x.shape
        swapped = x.view(t, h, 2, d // 2).flip(2).view(t, h, d)
        return torch.addcmul(x * cos, swapped, signed_sin)

    def rotate_store(
        self,
        positions: torch.Tensor,
        qk: torch.Tensor,
        num_q_heads: int,
        v: torch.Tensor,
        kv_pool: KVPool,
        layer: int,
        loc: torch.Tensor,
    ) -> bool:
        """Rope on `qk` `[T, q heads + kv heads, head_dim]` in place and the pool store of its
        k heads and `v` at slots `loc`, in one kernel, where that applies (CUDA with Triton,
        unit-stride heads, the pool's dtype); returns whether it did (else nothing is done)."""
        if not (
            use_triton(qk)
            and qk.stride(-1) == 1
            and v.stride(-1) == 1
            and v.stride(1) == v.shape[2]
            and qk.dtype == kv_pool.dtype
        ):
            return False
        from sglrs.kernels.rotary import rope_store

        k_buf, v_buf = kv_pool.k_buffer(layer), kv_pool.v_buffer(layer)
        rope_store(qk, num_q_heads, v, positions, self.cos_cache, self.sin_cache, k_buf, v_buf, loc)
        return True

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotate(positions, q), self.rotate(positions, k)

"""The paged KV pool: K and V of every layer in one allocation, addressed by slot id.

Slots `0 .. capacity-1` are the ones the scheduler hands out (`capacity` is a multiple of
`page_size`; page `p` is slots `p*page_size .. (p+1)*page_size-1`). One extra page after them is
reserved: its first slot, `padding_slot == capacity`, is where padded rows (CUDA-graph batches,
masked gathers) point, so the scheduler's slot numbering needs no offset.
"""

from __future__ import annotations

import torch

from sglrs.kernels import use_triton


class KVPool:
    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        capacity: int,
        page_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        if page_size < 1 or capacity < page_size or capacity % page_size:
            raise ValueError(
                f"KV capacity {capacity} must be a positive multiple of page_size {page_size}"
            )
        self.num_layers, self.num_kv_heads, self.head_dim = num_layers, num_kv_heads, head_dim
        self.capacity, self.page_size = capacity, page_size
        self.num_pages = capacity // page_size
        self.padding_slot = capacity
        self.num_slots = capacity + page_size
        self.dtype, self.device = dtype, torch.device(device)
        # [K/V, layer, slot, head, dim]; zeros so masked reads of never-written slots stay finite.
        self.buffer = torch.zeros(
            (2, num_layers, self.num_slots, num_kv_heads, head_dim), dtype=dtype, device=device
        )

    def k_buffer(self, layer: int) -> torch.Tensor:
        """`[num_slots, kv_heads, head_dim]` keys of `layer` (a view)."""
        return self.buffer[0, layer]

    def v_buffer(self, layer: int) -> torch.Tensor:
        return self.buffer[1, layer]

    def kv_pages(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of `layer` as `[num_pages + 1, page_size, kv_heads, head_dim]` views."""
        shape = (self.num_pages + 1, self.page_size, self.num_kv_heads, self.head_dim)
        return self.buffer[0, layer].view(shape), self.buffer[1, layer].view(shape)

    def store(self, layer: int, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write the new tokens' `k`, `v` (`[T, kv_heads, head_dim]`) at slots `loc` (`[T]`)."""
        if use_triton(k) and k.stride(-1) == 1 and k.stride(1) == k.shape[2]:
            from sglrs.kernels.kv_store import kv_store

            kv_store(self.buffer[0, layer], self.buffer[1, layer], loc, k, v)
            return
        self.buffer[0, layer].index_copy_(0, loc, k.to(self.dtype))
        self.buffer[1, layer].index_copy_(0, loc, v.to(self.dtype))

    def check(self, loc: torch.Tensor) -> None:
        """Raise if any slot in `loc` is outside `0 .. capacity-1` (the padding page included)."""
        if loc.numel() == 0:
            return
        lo, hi = int(loc.min()), int(loc.max())
        if lo < 0 or hi >= self.capacity:
            raise ValueError(f"KV slots must lie in [0, {self.capacity}); got [{lo}, {hi}]")

    @property
    def size_bytes(self) -> int:
        return self.buffer.numel() * self.buffer.element_size()

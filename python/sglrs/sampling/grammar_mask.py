"""Apply a packed token bitmask (xgrammar's layout) to logits, in place, on CPU or CUDA.

`bitmask` is int32 `[R, ceil(V/32)]`: bit `i` of word `w` set means token `32*w + i` is
allowed. Tokens past the mask's width (a model vocab padded beyond the tokenizer's) are
disallowed.
"""

from __future__ import annotations

import torch

from sglrs.sampling.upload import upload

_shift_cache: dict[torch.device, torch.Tensor] = {}


def _shifts(device: torch.device) -> torch.Tensor:
    if device not in _shift_cache:
        _shift_cache[device] = torch.arange(32, dtype=torch.int32, device=device)
    return _shift_cache[device]


def unpack_bitmask(bitmask: torch.Tensor, width: int) -> torch.Tensor:
    """Bool `[R, width]`: allowed tokens; ids past the mask's 32*W bits are False."""
    if bitmask.dtype != torch.int32 or bitmask.dim() != 2:
        raise ValueError(
            f"bitmask must be int32 [rows, words], got {bitmask.dtype} {bitmask.dim()}D"
        )
    # The arithmetic shift of bit 31 is harmless: only the lowest bit is kept.
    bits = (bitmask.unsqueeze(-1) >> _shifts(bitmask.device)) & 1
    allowed = bits.view(bitmask.shape[0], -1).bool()
    n = allowed.shape[1]
    if n >= width:
        return allowed[:, :width]
    pad = torch.zeros((bitmask.shape[0], width - n), dtype=torch.bool, device=bitmask.device)
    return torch.cat([allowed, pad], dim=1)


def apply_token_bitmask_(
    logits: torch.Tensor,
    bitmask: torch.Tensor,
    indices: torch.Tensor | list[int] | None = None,
) -> None:
    """Set disallowed tokens to -inf in place.

    Without `indices`, `bitmask` has one row per logits row (an all-ones row leaves its row
    unchanged); with `indices`, bitmask row j applies to logits row `indices[j]` and the other
    rows are untouched.
    """
    if bitmask.device != logits.device:
        bitmask = bitmask.to(logits.device, non_blocking=True)
    if indices is None:
        if bitmask.shape[0] != logits.shape[0]:
            raise ValueError(
                f"bitmask has {bitmask.shape[0]} rows for {logits.shape[0]} logits rows"
            )
        logits.masked_fill_(~unpack_bitmask(bitmask, logits.shape[1]), float("-inf"))
        return
    if isinstance(indices, torch.Tensor):
        rows = indices.to(logits.device, torch.int64)
    else:  # asynchronous: a pageable copy would wait for the queued forward
        rows = upload(indices, torch.int64, logits.device)
    if rows.numel() != bitmask.shape[0]:
        raise ValueError(f"bitmask has {bitmask.shape[0]} rows for {rows.numel()} indices")
    if rows.numel() == 0:
        return
    allowed = unpack_bitmask(bitmask, logits.shape[1])
    sub = logits.index_select(0, rows)
    logits.index_copy_(0, rows, sub.masked_fill_(~allowed, float("-inf")))

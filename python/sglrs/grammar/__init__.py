"""Constrained decoding: token masks for regexes, JSON schemas and any-JSON output.

The matching core is Rust (`sglrs._core`); this package re-exports it and adds the bitmask
helpers and a grammar cache. A bitmask row has `ceil(vocab_size / 32)` int32 words; bit `i` of
word `w` allows token `32 * w + i` (the layout xgrammar uses).
"""

from __future__ import annotations

import numpy as np

from sglrs._core import Grammar, Matcher, TokenizerInfo, fill_bitmasks
from sglrs.grammar.cache import GrammarCache

__all__ = [
    "Grammar",
    "GrammarCache",
    "Matcher",
    "TokenizerInfo",
    "allocate_bitmask",
    "bitmask_to_bool",
    "fill_bitmasks",
]


def allocate_bitmask(batch: int, vocab_size: int) -> np.ndarray:
    """An int32 `[batch, ceil(vocab_size / 32)]` bitmask with every token allowed."""
    return np.full((batch, (vocab_size + 31) // 32), -1, dtype=np.int32)


def bitmask_to_bool(bitmask: np.ndarray, vocab_size: int) -> np.ndarray:
    """Unpack bitmask rows into a bool array `[..., vocab_size]` (True = allowed)."""
    as_bytes = np.ascontiguousarray(bitmask, dtype="<i4").view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")
    return bits[..., :vocab_size].astype(bool)

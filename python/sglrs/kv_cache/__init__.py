"""Paged KV cache storage: the per-layer K/V tensors and their sizing."""

from sglrs.kv_cache.pool import KVPool
from sglrs.kv_cache.sizing import KVBudget, kv_bytes_per_token, kv_token_capacity

__all__ = ["KVBudget", "KVPool", "kv_bytes_per_token", "kv_token_capacity"]

"""Attention backends by name: `torch_native` (CPU and GPU), `triton` and `flashinfer` (GPU).

`flashinfer` registers only when the package imports; `auto` picks the fastest available."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from sglrs.attention.base import AttentionBackend

if TYPE_CHECKING:
    from sglrs.kv_cache.pool import KVPool
    from sglrs.model_loader.config import ModelConfig

BackendFactory = Callable[["ModelConfig", "KVPool", torch.device], AttentionBackend]
ATTENTION_BACKENDS: dict[str, BackendFactory] = {}


def register_attention_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def register(factory: BackendFactory) -> BackendFactory:
        if name in ATTENTION_BACKENDS:
            raise ValueError(f"attention backend {name!r} registered twice")
        ATTENTION_BACKENDS[name] = factory
        return factory

    return register


def create_attention_backend(
    name: str, config: ModelConfig, kv_pool: KVPool, device: torch.device | str
) -> AttentionBackend:
    if name not in ATTENTION_BACKENDS:
        available = ", ".join(sorted(ATTENTION_BACKENDS))
        raise ValueError(f"unknown attention backend {name!r}; available: {available}")
    return ATTENTION_BACKENDS[name](config, kv_pool, torch.device(device))


def create_attention_backends(
    prefill: str, decode: str, config: ModelConfig, kv_pool: KVPool, device: torch.device | str
) -> AttentionBackend:
    """One backend, or a hybrid when prefill and decode steps name different ones."""
    if prefill == decode:
        return create_attention_backend(decode, config, kv_pool, device)
    from sglrs.attention.hybrid import HybridBackend

    return HybridBackend(
        create_attention_backend(prefill, config, kv_pool, device),
        create_attention_backend(decode, config, kv_pool, device),
    )


def resolve_attention_backend(name: str, device: torch.device | str) -> str:
    """`auto`: the fastest measured on the device (benches/results/gpu_targets.json): triton on
    CUDA (its decode needs no per-step host planning), torch_native on CPU."""
    if name != "auto":
        return name
    if torch.device(device).type != "cuda":
        return "torch_native"
    for fastest in ("triton", "flashinfer"):
        if fastest in ATTENTION_BACKENDS:
            return fastest
    return "torch_native"


# Importing a backend module registers it; the GPU ones need their packages.
from sglrs.attention import torch_native  # noqa: E402, F401

try:
    from sglrs.attention import triton_backend  # noqa: E402, F401
except ImportError:  # no triton
    pass
try:
    import flashinfer  # noqa: E402, F401
except ImportError:  # no flashinfer
    pass
else:
    from sglrs.attention import flashinfer_backend  # noqa: E402, F401

__all__ = [
    "ATTENTION_BACKENDS",
    "AttentionBackend",
    "create_attention_backend",
    "register_attention_backend",
    "resolve_attention_backend",
]

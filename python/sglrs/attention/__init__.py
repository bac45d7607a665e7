"""Attention backends by name: `torch_native` now; `flashinfer` and `triton` register later."""

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


# Importing a backend module registers it.
from sglrs.attention import torch_native  # noqa: E402, F401

__all__ = [
    "ATTENTION_BACKENDS",
    "AttentionBackend",
    "create_attention_backend",
    "register_attention_backend",
]

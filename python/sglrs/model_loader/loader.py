"""Build a model on its device in its dtype, then fill its weights from the chosen format."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sglrs.model_loader.config import ModelConfig, is_gguf

LOAD_FORMATS = ("auto", "safetensors", "gguf", "dummy")


@dataclass(frozen=True)
class LoadConfig:
    """`auto` picks `gguf` for a .gguf file and `safetensors` for a directory."""

    model_path: str | os.PathLike
    load_format: str = "auto"
    seed: int = 0  # dummy weights
    progress: bool = True

    def resolved_format(self) -> str:
        if self.load_format not in LOAD_FORMATS:
            raise ValueError(
                f"load_format {self.load_format!r} not supported; choose one of "
                f"{', '.join(LOAD_FORMATS)}"
            )
        if self.load_format != "auto":
            return self.load_format
        return "gguf" if is_gguf(self.model_path) else "safetensors"


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def load_model(
    config: ModelConfig, load_config: LoadConfig, device: torch.device | str, dtype: torch.dtype
) -> nn.Module:
    """The model for `config.architecture`, weights loaded, in eval mode."""
    from sglrs.models import get_model_class

    cls = get_model_class(config.architecture)
    fmt = load_config.resolved_format()
    # Parameters are created empty directly on the device: no CPU copy, no wasted init.
    with torch.device(device), _default_dtype(dtype):
        model = cls(config)
    if fmt == "dummy":
        from sglrs.model_loader.dummy import init_dummy_weights

        init_dummy_weights(model, load_config.seed)
    elif fmt == "gguf":
        from sglrs.model_loader.gguf_file import open_gguf

        model.load_weights(open_gguf(load_config.model_path).iter_weights(load_config.progress))
    elif fmt == "safetensors":
        from sglrs.model_loader.safetensors_files import iter_safetensors

        if not Path(load_config.model_path).is_dir():
            raise FileNotFoundError(f"{load_config.model_path}: not a model directory")
        weights = iter_safetensors(load_config.model_path, load_config.progress, lazy=True)
        model.load_weights(weights)
    return model.eval()

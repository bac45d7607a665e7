"""Model configs, weights (HF safetensors, GGUF, dummy) and tokenizers."""

from sglrs.model_loader.config import (
    DTYPE_CHOICES,
    SUPPORTED_ARCHITECTURES,
    ModelConfig,
    ModelConfigError,
    load_model_config,
    resolve_dtype,
)
from sglrs.model_loader.loader import LOAD_FORMATS, LoadConfig, load_model
from sglrs.model_loader.tokenizer import load_tokenizer

__all__ = [
    "DTYPE_CHOICES",
    "LOAD_FORMATS",
    "SUPPORTED_ARCHITECTURES",
    "LoadConfig",
    "ModelConfig",
    "ModelConfigError",
    "load_model",
    "load_model_config",
    "load_tokenizer",
    "resolve_dtype",
]

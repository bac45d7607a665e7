"""Model registry: HF architecture name -> our implementation."""

from __future__ import annotations

from torch import nn

from sglrs.model_loader.config import SUPPORTED_ARCHITECTURES, ModelConfigError
from sglrs.models.llama import LlamaForCausalLM, MistralForCausalLM
from sglrs.models.qwen import Qwen2ForCausalLM, Qwen3ForCausalLM

MODEL_REGISTRY: dict[str, type[nn.Module]] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": MistralForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
}
assert tuple(MODEL_REGISTRY) == SUPPORTED_ARCHITECTURES


def get_model_class(architecture: str) -> type[nn.Module]:
    if architecture not in MODEL_REGISTRY:
        raise ModelConfigError(
            f"unsupported architecture {architecture!r}; supported: {', '.join(MODEL_REGISTRY)}"
        )
    return MODEL_REGISTRY[architecture]

"""The architecture registry."""

from __future__ import annotations

import pytest

from sglrs.model_loader import SUPPORTED_ARCHITECTURES, ModelConfigError
from sglrs.models import MODEL_REGISTRY, get_model_class
from sglrs.models.llama import LlamaForCausalLM
from sglrs.models.qwen import Qwen3ForCausalLM


def test_registry_covers_the_supported_architectures():
    assert tuple(MODEL_REGISTRY) == SUPPORTED_ARCHITECTURES
    assert get_model_class("Qwen3ForCausalLM") is Qwen3ForCausalLM
    assert issubclass(get_model_class("MistralForCausalLM"), LlamaForCausalLM)


def test_unknown_architecture():
    with pytest.raises(ModelConfigError, match="'FalconForCausalLM'.*LlamaForCausalLM"):
        get_model_class("FalconForCausalLM")

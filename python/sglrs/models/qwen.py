"""Qwen2 (bias on q/k/v) and Qwen3 (per-head RMSNorm on q and k) on the Llama decoder."""

from __future__ import annotations

from sglrs.model_loader.config import ModelConfig
from sglrs.models.llama import AttentionOptions, LlamaForCausalLM


class Qwen2ForCausalLM(LlamaForCausalLM):
    @classmethod
    def attention_options(cls, config: ModelConfig) -> AttentionOptions:
        return AttentionOptions(qkv_bias=True)


class Qwen3ForCausalLM(LlamaForCausalLM):
    @classmethod
    def attention_options(cls, config: ModelConfig) -> AttentionOptions:
        return AttentionOptions(
            qkv_bias=config.attention_bias, o_bias=config.attention_bias, qk_norm=True
        )

"""HF transformers' LlamaForCausalLM holding the weights of a GGUF file: the reference that
tests and benchmarks compare sglrs against (same dequantized weights, HF's own model code)."""

from __future__ import annotations

from typing import Any

import torch

from sglrs.model_loader import ModelConfig
from sglrs.model_loader.gguf_file import open_gguf


def hf_llama_config(cfg: ModelConfig) -> Any:
    """transformers' LlamaConfig with the shape of `cfg` (default rope)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_word_embeddings,
    )


def hf_llama(gguf_path: str, cfg: ModelConfig) -> Any:
    """LlamaForCausalLM (CPU, float32) with the GGUF's weights; `cfg` is its ModelConfig."""
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    hf_cfg = hf_llama_config(cfg)
    with torch.device("meta"):  # skip HF's random init: every weight is assigned below
        hf = LlamaForCausalLM(hf_cfg).eval()
    state = dict(open_gguf(gguf_path).iter_weights(progress=False))
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    assert missing == ["lm_head.weight"] and not unexpected  # tied to the embedding
    hf.tie_weights()
    hf.model.rotary_emb = LlamaRotaryEmbedding(hf_cfg)  # its buffer was left on "meta"
    assert all(p.device.type == "cpu" for p in hf.parameters())
    return hf

"""Test fixture: tiny seeded random HF models of each supported architecture, saved to disk."""

from __future__ import annotations

from pathlib import Path

import torch

BASE = dict(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
)
LLAMA31_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def hf_config(arch: str, tie: bool = False, **overrides):
    import transformers

    kwargs = dict(BASE, tie_word_embeddings=tie)
    if arch == "llama31":
        kwargs["rope_parameters"] = dict(LLAMA31_ROPE)
        arch = "llama"
    if arch == "qwen3":
        kwargs["head_dim"] = 32  # not hidden/heads: the explicit head_dim must be honoured
    if arch == "mistral":
        kwargs["sliding_window"] = 6  # shorter than the test sequences: the mask matters
    kwargs.update(overrides)
    cls = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "mistral": transformers.MistralConfig,
    }[arch]
    return cls(**kwargs)


def tiny_hf_model(arch: str, tie: bool = False, seed: int = 0, std: float = 0.15, **overrides):
    """A float32 HF causal LM with random weights (norm weights near 1, biases non-zero)."""
    from transformers import AutoModelForCausalLM

    config = hf_config(arch, tie, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
    return model


def save_tiny(model, path: Path, max_shard_size: str | None = None) -> Path:
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(str(path), **kwargs)
    return path


@torch.no_grad()
def hf_logits(model, tokens: list[int]) -> torch.Tensor:
    """float32 logits `[len(tokens), vocab]` of one sequence."""
    return model(torch.tensor([tokens])).logits[0].float()

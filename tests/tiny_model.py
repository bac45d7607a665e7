"""A tiny random-weight Llama with SmolLM2's real tokenizer, saved as a HuggingFace directory.

Built once per machine into the sglrs cache directory (seeded, so every build is identical).
Its random weights use a larger init than HF's default so greedy decoding produces varied
tokens (with HF's 0.02 the tied embedding dominates and the model repeats its last input).
"""

from __future__ import annotations

import os
from pathlib import Path

TINY_VERSION = 1
TINY_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
)
INIT_STD = 0.25


def tiny_llama_dir() -> Path:
    from sglrs.utils.default_model import cache_dir, default_model_path

    target = cache_dir() / "test-models" / f"tiny-llama-v{TINY_VERSION}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sglrs.model_loader import load_tokenizer

    tokenizer = load_tokenizer(default_model_path(quiet=True))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **TINY_CONFIG,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, INIT_STD)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    os.replace(partial, target)
    return target

"""GGUF checkpoints: metadata -> ModelConfig, tensors dequantized under HF names.

llama.cpp's converter permutes the rows of Llama q/k weights so that each head's rotary pairs
are interleaved (GGML's rope layout); our rotary uses HF's half-split layout, so we undo it.
Qwen2/Qwen3 are converted without that permutation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sglrs.model_loader.config import ModelConfig, ModelConfigError, RopeScaling

# GGUF `general.architecture` -> our architecture.
GGUF_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
# llama.cpp per-block tensor names -> HF module names.
BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# general.file_type: 0 = all F32, 1 = mostly F16; anything else is quantized (bf16 compute).
_FILE_TYPE_DTYPE = {0: "float32", 1: "float16"}


def _f32_decimal(x: float) -> float:
    """GGUF stores float32: recover the checkpoint's decimal (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(x)))


def unpermute_rotary_rows(w: np.ndarray, num_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k row permutation: per head, (pairs, 2) -> (2, pairs)."""
    rows = w.shape[0]
    per_head = rows // num_heads
    grouped = w.reshape(num_heads, per_head // 2, 2, *w.shape[1:])
    return grouped.swapaxes(1, 2).reshape(w.shape)


class GGUFFile:
    """A `.gguf` checkpoint read through `gguf.GGUFReader` (memory-mapped)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from gguf import GGUFReader

        self.path = str(path)
        self.reader = GGUFReader(self.path)
        self.metadata: dict[str, Any] = {n: f.contents() for n, f in self.reader.fields.items()}
        self.arch: str = self.metadata.get("general.architecture", "")
        if self.arch not in GGUF_ARCHITECTURES:
            raise ModelConfigError(
                f"{self.path}: GGUF architecture {self.arch!r} is not supported; supported: "
                f"{', '.join(GGUF_ARCHITECTURES)}"
            )
        self.tensor_names = {t.name for t in self.reader.tensors}

    def _meta(self, key: str, default: Any = None) -> Any:
        value = self.metadata.get(f"{self.arch}.{key}", default)
        if value is None:
            raise ModelConfigError(f"{self.path}: GGUF metadata lacks {self.arch}.{key}")
        return value

    def model_config(self) -> ModelConfig:
        if "rope_freqs.weight" in self.tensor_names:
            raise ModelConfigError(
                f"{self.path}: rope_freqs (Llama 3.1 rope scaling baked into GGUF) is not "
                "supported; load the HF safetensors checkpoint instead"
            )
        hidden = int(self._meta("embedding_length"))
        heads = int(self._meta("attention.head_count"))
        head_dim = int(self._meta("attention.key_length", hidden // heads))
        if int(self._meta("rope.dimension_count", head_dim)) != head_dim:
            raise ModelConfigError(f"{self.path}: partial rotary embeddings are not supported")
        scaling = None
        rope_type = self.metadata.get(f"{self.arch}.rope.scaling.type", "none")
        if rope_type == "linear":
            scaling = RopeScaling("linear", float(self._meta("rope.scaling.factor")))
        elif rope_type != "none":
            raise ModelConfigError(
                f"{self.path}: GGUF rope scaling {rope_type!r} is not supported (only linear)"
            )
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        vocab = int(self._meta("vocab_size", len(tokens) if tokens else None))
        eos = self.metadata.get("tokenizer.ggml.eos_token_id")
        file_type = int(self.metadata.get("general.file_type", -1))
        arch = GGUF_ARCHITECTURES[self.arch]
        return ModelConfig(
            architecture=arch,
            hidden_size=hidden,
            num_layers=int(self._meta("block_count")),
            num_heads=heads,
            num_kv_heads=int(self._meta("attention.head_count_kv", heads)),
            head_dim=head_dim,
            intermediate_size=int(self._meta("feed_forward_length")),
            vocab_size=vocab,
            max_position_embeddings=int(self._meta("context_length")),
            rms_norm_eps=_f32_decimal(self._meta("attention.layer_norm_rms_epsilon")),
            rope_theta=_f32_decimal(self._meta("rope.freq_base", 10000.0)),
            rope_scaling=scaling,
            tie_word_embeddings="output.weight" not in self.tensor_names,
            # Llama GGUFs carry biases only if the HF model had attention_bias.
            attention_bias=arch == "LlamaForCausalLM" and "blk.0.attn_q.bias" in self.tensor_names,
            mlp_bias="blk.0.ffn_up.bias" in self.tensor_names,
            torch_dtype=_FILE_TYPE_DTYPE.get(file_type, "bfloat16"),
            eos_token_ids=() if eos is None else (int(eos),),
        )

    def hf_name(self, gguf_name: str) -> str:
        if gguf_name in GLOBAL_NAMES:
            return GLOBAL_NAMES[gguf_name]
        parts = gguf_name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in BLOCK_NAMES:
            return f"model.layers.{int(parts[1])}.{BLOCK_NAMES[parts[2]]}.{parts[3]}"
        raise ModelConfigError(f"{self.path}: unexpected GGUF tensor {gguf_name!r}")

    def iter_weights(self, progress: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, float32 CPU tensor) for every tensor, dequantized."""
        from gguf.quants import dequantize
        from tqdm import tqdm

        config = self.model_config()
        heads = {"attn_q": config.num_heads, "attn_k": config.num_kv_heads}
        tensors = tqdm(
            self.reader.tensors, desc="loading GGUF", unit="tensor", disable=not progress
        )
        for t in tensors:
            name = self.hf_name(t.name)
            shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists the inner dim first
            w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
            kind = t.name.split(".")[2] if t.name.startswith("blk.") else ""
            if self.arch == "llama" and kind in heads:
                w = unpermute_rotary_rows(w, heads[kind])
            yield name, torch.from_numpy(np.array(w, dtype=np.float32, order="C"))


@functools.lru_cache(maxsize=2)
def _open_cached(path: str, mtime_ns: int) -> GGUFFile:
    return GGUFFile(path)


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    """A GGUFFile, shared by config, weight and tokenizer loading: parsing the header of a
    49k-token vocabulary takes seconds."""
    resolved = Path(path).resolve()
    return _open_cached(str(resolved), resolved.stat().st_mtime_ns)

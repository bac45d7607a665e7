"""Model configuration: one small dataclass read from a HF directory or from GGUF metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)


class ModelConfigError(ValueError):
    """The checkpoint asks for something sglrs does not support."""


@dataclass(frozen=True)
class RopeScaling:
    """Rotary scaling: `linear` (positions / factor) or Llama 3.1's `llama3` frequency blend."""

    rope_type: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Llama's flag: bias on q, k, v and o
    mlp_bias: bool = False
    sliding_window: int | None = None  # Mistral: keys further back than this are masked
    torch_dtype: str = "float32"
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim


def is_gguf(path: str | os.PathLike) -> bool:
    """A GGUF file: by suffix, or by the `GGUF` magic for files named otherwise."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix == ".gguf":
        return True
    with open(p, "rb") as f:
        return f.read(4) == b"GGUF"


def load_model_config(model_path: str | os.PathLike) -> ModelConfig:
    """Config of a HF model directory or of a `.gguf` file."""
    if is_gguf(model_path):
        from sglrs.model_loader.gguf_file import open_gguf

        return open_gguf(model_path).model_config()
    if not Path(model_path, "config.json").is_file():
        raise FileNotFoundError(
            f"{model_path}: neither a .gguf file nor a directory with a config.json"
        )
    from transformers import AutoConfig

    return config_from_hf(AutoConfig.from_pretrained(str(model_path)))


def _check_architecture(arch: str) -> None:
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelConfigError(
            f"unsupported architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )


def rope_from_params(
    params: dict[str, Any] | None, theta: float
) -> tuple[float, RopeScaling | None]:
    """(theta, scaling) from transformers' `rope_parameters` / legacy `rope_scaling` dict."""
    if not params:
        return theta, None
    theta = float(params.get("rope_theta", theta))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ModelConfigError(
            f"unsupported rope scaling {rope_type!r}; supported: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    if rope_type == "default":
        return theta, None
    extra = {}
    if rope_type == "llama3":
        extra = {
            "low_freq_factor": float(params["low_freq_factor"]),
            "high_freq_factor": float(params["high_freq_factor"]),
            "original_max_position_embeddings": int(params["original_max_position_embeddings"]),
        }
    return theta, RopeScaling(rope_type, float(params["factor"]), **extra)


def config_from_hf(hf: Any) -> ModelConfig:
    """Our config from a `transformers.PretrainedConfig`."""
    archs = getattr(hf, "architectures", None) or []
    if len(archs) != 1:
        raise ModelConfigError(f"config.json must name exactly one architecture, got {archs}")
    arch = archs[0]
    _check_architecture(arch)
    act = getattr(hf, "hidden_act", "silu")
    if act != "silu":
        raise ModelConfigError(f"hidden_act {act!r} is not supported (only 'silu')")
    # transformers >= 5 folds rope_theta/rope_scaling into rope_parameters.
    params = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None)
    theta, scaling = rope_from_params(params, float(getattr(hf, "rope_theta", None) or 10000.0))
    heads = hf.num_attention_heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    sliding = getattr(hf, "sliding_window", None)
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        # Qwen keeps a sliding_window value around but only uses it with use_sliding_window.
        if getattr(hf, "use_sliding_window", False):
            raise ModelConfigError(f"{arch} with use_sliding_window=True is not supported")
        sliding = None
    elif arch == "LlamaForCausalLM":
        sliding = None
    dtype = getattr(hf, "dtype", None) or getattr(hf, "torch_dtype", None) or "float32"
    dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise ModelConfigError(f"config dtype {dtype!r}; supported: {', '.join(DTYPES)}")
    eos = getattr(hf, "eos_token_id", None)
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
    return ModelConfig(
        architecture=arch,
        hidden_size=hf.hidden_size,
        num_layers=hf.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=getattr(hf, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        intermediate_size=hf.intermediate_size,
        vocab_size=hf.vocab_size,
        max_position_embeddings=hf.max_position_embeddings,
        rms_norm_eps=float(hf.rms_norm_eps),
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
        attention_bias=bool(getattr(hf, "attention_bias", False)),
        mlp_bias=bool(getattr(hf, "mlp_bias", False)),
        sliding_window=sliding,
        torch_dtype=dtype,
        eos_token_ids=eos_ids,
    )


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX512-BF16 dot products).
    Without either, torch emulates bf16 matmuls through float32 and they are slower than
    float32 itself."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_dtype(
    dtype: str | torch.dtype, config: ModelConfig, device: torch.device
) -> torch.dtype:
    """`auto`: on a CPU bfloat16 where it multiplies bf16 natively (as vLLM's CPU backend
    serves; on this repo's 2-core AMX host ~3x float32's batch-32 throughput), float32 on other
    CPUs; on a GPU the config's dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(
                f"dtype {dtype} not supported; choose one of {', '.join(DTYPE_CHOICES)}"
            )
        return dtype
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype {dtype!r} not supported; choose one of {', '.join(DTYPE_CHOICES)}")
    if dtype == "auto":
        if torch.device(device).type == "cpu":
            return torch.bfloat16 if cpu_has_bf16_matmul() else torch.float32
        return DTYPES[config.torch_dtype]
    return DTYPES[dtype]

"""ModelConfig from HF configs: architectures, rope, dtype, sliding window, and the errors."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_hf import hf_config

from sglrs.model_loader import ModelConfigError, load_model_config, resolve_dtype
from sglrs.model_loader.config import RopeScaling, config_from_hf


def with_arch(cfg, arch: str):
    cfg.architectures = [arch]
    return cfg


def test_llama31_rope_and_fields():
    cfg = config_from_hf(with_arch(hf_config("llama31"), "LlamaForCausalLM"))
    assert cfg.rope_theta == 500000.0
    assert cfg.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, 64)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.num_layers) == (4, 2, 16, 2)
    assert cfg.sliding_window is None and not cfg.tie_word_embeddings


def test_qwen_and_mistral():
    qwen3 = config_from_hf(with_arch(hf_config("qwen3", tie=True), "Qwen3ForCausalLM"))
    assert qwen3.head_dim == 32 and qwen3.tie_word_embeddings and qwen3.sliding_window is None
    mistral = config_from_hf(with_arch(hf_config("mistral"), "MistralForCausalLM"))
    assert mistral.sliding_window == 6
    qwen2 = with_arch(
        hf_config("qwen2", use_sliding_window=True, sliding_window=8), "Qwen2ForCausalLM"
    )
    with pytest.raises(ModelConfigError, match="use_sliding_window"):
        config_from_hf(qwen2)


def test_errors():
    with pytest.raises(ModelConfigError, match="'GPT2LMHeadModel'.*LlamaForCausalLM, Mistral"):
        config_from_hf(with_arch(hf_config("llama"), "GPT2LMHeadModel"))
    yarn = hf_config(
        "llama", rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}
    )
    with pytest.raises(ModelConfigError, match="'yarn'.*default, linear, llama3"):
        config_from_hf(with_arch(yarn, "LlamaForCausalLM"))
    gelu = hf_config("llama", hidden_act="gelu")
    with pytest.raises(ModelConfigError, match="gelu"):
        config_from_hf(with_arch(gelu, "LlamaForCausalLM"))


def test_load_from_directory(tmp_path):
    cfg = hf_config("qwen2")
    cfg.architectures = ["Qwen2ForCausalLM"]
    cfg.save_pretrained(str(tmp_path))
    loaded = load_model_config(tmp_path)
    assert loaded.architecture == "Qwen2ForCausalLM" and loaded.vocab_size == 1000
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["architectures"] = ["BertModel"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelConfigError, match="BertModel"):
        load_model_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model_config(tmp_path / "nothing")


def test_resolve_dtype(monkeypatch):
    cfg = config_from_hf(with_arch(hf_config("llama", dtype="bfloat16"), "LlamaForCausalLM"))
    assert cfg.torch_dtype == "bfloat16"
    # `auto` on the CPU follows the bf16 probes (either one suffices), whatever the config says.
    for amx, avx512_bf16, want in [
        (False, False, torch.float32),
        (True, False, torch.bfloat16),
        (False, True, torch.bfloat16),
    ]:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert resolve_dtype("auto", cfg, torch.device("cpu")) == want
    f32_cfg = config_from_hf(with_arch(hf_config("llama", dtype="float32"), "LlamaForCausalLM"))
    assert resolve_dtype("auto", f32_cfg, torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert resolve_dtype("auto", f32_cfg, torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", cfg, torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", cfg, torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="'int8'.*auto, float32, bfloat16, float16"):
        resolve_dtype("int8", cfg, torch.device("cpu"))

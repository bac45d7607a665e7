"""HF safetensors loading: single file, sharded with an index, tied heads, and clear errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_hf import tiny_hf_model

from sglrs.layers.linear import WeightLoadError
from sglrs.model_loader import LoadConfig, load_model, load_model_config
from sglrs.model_loader.safetensors_files import INDEX_NAME, safetensors_files


def load(path):
    return load_model(
        load_model_config(path), LoadConfig(path, progress=False), "cpu", torch.float32
    )


def assert_same_weights(model, hf) -> None:
    sd = hf.state_dict()
    attn = model.model.layers[1].self_attn
    q, k, v = attn.qkv_proj.split(attn.qkv_proj.weight.T)
    torch.testing.assert_close(k.T, sd["model.layers.1.self_attn.k_proj.weight"], atol=0, rtol=0)
    gate_up = model.model.layers[0].mlp.gate_up_proj.weight
    torch.testing.assert_close(
        gate_up[128:], sd["model.layers.0.mlp.up_proj.weight"], atol=0, rtol=0
    )
    torch.testing.assert_close(model.lm_head.weight, sd["lm_head.weight"], atol=0, rtol=0)


def test_sharded_checkpoint(tmp_path):
    hf = tiny_hf_model("llama")
    hf.save_pretrained(str(tmp_path), max_shard_size="100KB")
    assert (tmp_path / INDEX_NAME).is_file() and len(safetensors_files(tmp_path)) > 2
    assert_same_weights(load(tmp_path), hf)
    (tmp_path / safetensors_files(tmp_path)[1].name).unlink()
    with pytest.raises(FileNotFoundError, match="missing shards"):
        load(tmp_path)


@pytest.mark.parametrize("tie", [True, False])
def test_tied_and_untied_heads(tmp_path, tie):
    hf = tiny_hf_model("qwen2", tie=tie)
    hf.save_pretrained(str(tmp_path))
    model = load(tmp_path)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie
    assert_same_weights(model, hf)


def test_missing_unexpected_and_misshapen_weights(tmp_path):
    hf = tiny_hf_model("llama")
    hf.save_pretrained(str(tmp_path))
    (file,) = safetensors_files(tmp_path)
    good = load_file(str(file))

    def rewrite(tensors) -> None:
        save_file(tensors, str(file), metadata={"format": "pt"})

    rewrite({k: v for k, v in good.items() if k != "model.layers.1.self_attn.v_proj.weight"})
    with pytest.raises(
        WeightLoadError, match=r"lacks 1 weights: model.layers.1.self_attn.qkv_proj.weight\['v'\]"
    ):
        load(tmp_path)
    rewrite(dict(good, **{"model.layers.0.mlp.extra.weight": torch.zeros(2)}))
    with pytest.raises(WeightLoadError, match="'model.layers.0.mlp.extra.weight' has no place"):
        load(tmp_path)
    rewrite(dict(good, **{"model.norm.weight": torch.zeros(3)}))
    with pytest.raises(WeightLoadError, match=r"model.norm.weight.*\(3,\).*\(64,\)"):
        load(tmp_path)


def test_no_safetensors(tmp_path):
    hf = tiny_hf_model("llama")
    hf.config.architectures = ["LlamaForCausalLM"]
    hf.config.save_pretrained(str(tmp_path))
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin.*not supported"):
        load(tmp_path)
    with pytest.raises(ValueError, match="load_format 'pt'"):
        LoadConfig(tmp_path, load_format="pt").resolved_format()

"""GGUF weights: tiny HF models written as GGUF the way llama.cpp's converter lays them out
(llama q/k rows permuted for GGML's rope), loaded back, logits equal to HF's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from step_plans import PlanBuilder
from tiny_hf import hf_logits, tiny_hf_model

from sglrs.kv_cache import KVBudget
from sglrs.model_loader import LoadConfig, ModelConfigError, load_model_config
from sglrs.model_loader.gguf_file import unpermute_rotary_rows
from sglrs.runner.model_runner import ModelRunner

HF_TO_GGUF = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def ggml_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's converter does to Llama q/k rows (the inverse of our unpermute)."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def write_gguf(hf, arch: str, path) -> None:
    import gguf

    c = hf.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_vocab_size(c.vocab_size)
    for name, t in hf.state_dict().items():
        a = t.numpy().astype(np.float32)
        if name == "lm_head.weight":
            if c.tie_word_embeddings:
                continue
            gname = "output.weight"
        elif name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            gname = f"blk.{layer}.{HF_TO_GGUF[module]}.{kind}"
            if arch == "llama" and module in ("self_attn.q_proj", "self_attn.k_proj"):
                heads = c.num_attention_heads if "q_proj" in module else c.num_key_value_heads
                a = ggml_permute(a, heads)
        w.add_tensor(gname, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_unpermute_inverts_the_converter():
    w = np.arange(8 * 3 * 4, dtype=np.float32).reshape(8 * 3, 4)
    assert np.array_equal(unpermute_rotary_rows(ggml_permute(w, 3), 3), w)


@pytest.mark.parametrize("arch,tie", [("llama", False), ("qwen2", True), ("qwen3", False)])
def test_gguf_model_matches_hf(arch, tie, tmp_path):
    hf = tiny_hf_model(arch, tie=tie)
    path = tmp_path / "tiny.gguf"
    write_gguf(hf, arch, path)
    cfg = load_model_config(path)
    assert cfg.architecture == type(hf).__name__ and cfg.tie_word_embeddings == tie
    runner = ModelRunner(
        cfg, LoadConfig(path, progress=False), "cpu", "float32", KVBudget(max_total_tokens=64)
    )
    b = PlanBuilder(capacity=64)
    b.add(0)
    tokens = [3, 14, 15, 92, 65, 35, 89, 79]
    out = runner.forward(b.step({0: tokens}), all_logits_req_ids=[0])
    torch.testing.assert_close(out.all_logits[0], hf_logits(hf, tokens), atol=2e-4, rtol=0)


def test_unsupported_gguf_architecture(tmp_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "gemma")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelConfigError, match="'gemma'.*llama, qwen2, qwen3"):
        load_model_config(tmp_path / "x.gguf")

"""KVPool layout, store, padding slot, and capacity from a budget."""

from __future__ import annotations

import pytest
import torch

from sglrs.kv_cache import KVBudget, KVPool, kv_bytes_per_token, kv_token_capacity
from sglrs.model_loader import ModelConfig

CFG = ModelConfig(
    architecture="LlamaForCausalLM",
    hidden_size=64,
    num_layers=3,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    intermediate_size=128,
    vocab_size=100,
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    rope_theta=1e4,
)


def test_store_and_views():
    pool = KVPool(3, 2, 16, capacity=32, page_size=4, dtype=torch.float32, device="cpu")
    assert pool.padding_slot == 32 and pool.num_slots == 36 and pool.num_pages == 8
    loc = torch.tensor([5, 0, 31])
    k, v = torch.randn(3, 2, 16), torch.randn(3, 2, 16)
    pool.store(1, loc, k, v)
    assert torch.equal(pool.k_buffer(1)[loc], k) and torch.equal(pool.v_buffer(1)[loc], v)
    assert pool.k_buffer(0).abs().sum() == 0 and pool.k_buffer(2).abs().sum() == 0
    k_pages, _ = pool.kv_pages(1)
    assert k_pages.shape == (9, 4, 2, 16) and torch.equal(k_pages[1, 1], k[0])
    pool.check(loc)
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        pool.check(torch.tensor([32]))
    with pytest.raises(ValueError, match="multiple of page_size"):
        KVPool(3, 2, 16, capacity=30, page_size=4, dtype=torch.float32, device="cpu")


def test_capacity_from_budgets():
    per_token = kv_bytes_per_token(CFG, torch.float32)
    assert per_token == 2 * 3 * 2 * 16 * 4
    assert kv_bytes_per_token(CFG, torch.bfloat16) == per_token // 2
    tokens = kv_token_capacity(CFG, torch.float32, 16, KVBudget(max_total_tokens=100), "cpu")
    assert tokens == 96
    by_bytes = kv_token_capacity(
        CFG, torch.float32, 1, KVBudget(memory_bytes=per_token * 50), "cpu"
    )
    assert by_bytes == 49  # one slot kept for the padding page
    pool = KVPool(3, 2, 16, by_bytes, 1, torch.float32, "cpu")
    assert pool.size_bytes == per_token * 50
    with pytest.raises(ValueError, match="no room"):
        kv_token_capacity(CFG, torch.float32, 16, KVBudget(max_total_tokens=8), "cpu")
    with pytest.raises(ValueError, match="GPU"):
        kv_token_capacity(CFG, torch.float32, 1, KVBudget(mem_fraction_static=0.5), "cpu")


@pytest.mark.parametrize(
    "gib,tp,want", [(80, 1, 0.88), (141, 1, 0.88), (80, 2, 0.85), (24, 1, 0.85)]
)
def test_default_mem_fraction_static(monkeypatch, gib, tp, want):
    """One rank on a >= 60 GB GPU keeps SGLang's 0.88; smaller GPUs and TP ranks 0.85."""
    from types import SimpleNamespace

    from sglrs.kv_cache import sizing

    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=gib * 2**30)
    )
    assert sizing.default_mem_fraction_static(torch.device("cuda", 0), tp) == want

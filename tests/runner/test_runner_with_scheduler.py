"""The runner driven by the real Rust scheduler (radix prefix hits, chunked prefill, paging):
with `emit_kv_indices` every plan's KV slots must match the runner's request-to-token table,
and every sampled row must equal HF's logits at that position."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import hf_logits, save_tiny, tiny_hf_model

from sglrs.kv_cache import KVBudget
from sglrs.model_loader import LoadConfig, load_model_config
from sglrs.runner.model_runner import ModelRunner

core = pytest.importorskip("sglrs._core")


@pytest.mark.parametrize("page_size", [1, 4])
def test_scheduler_plans_match_hf(tmp_path, page_size):
    if not hasattr(core, "Scheduler"):
        pytest.skip("sglrs._core has no Scheduler")
    hf = tiny_hf_model("llama")
    path = save_tiny(hf, tmp_path)
    runner = ModelRunner(
        load_model_config(path),
        LoadConfig(path, progress=False),
        "cpu",
        "float32",
        kv_budget=KVBudget(max_total_tokens=128),
        max_running_requests=4,
        context_length=64,
        page_size=page_size,
    )
    sched = core.Scheduler(
        capacity_tokens=runner.max_total_tokens,
        page_size=page_size,
        max_running_requests=4,
        chunked_prefill_size=8,
        context_length=64,
        emit_kv_indices=True,
    )
    shared = list(range(100, 112))
    prompts = {1: shared + [5, 6, 7], 2: shared + [8], 3: [9, 10, 11, 12, 13], 4: shared + [14]}
    seqs = {rid: list(p) for rid, p in prompts.items()}
    for rid in (1, 2, 3):
        sched.add_request(rid, prompts[rid], 6, ignore_eos=True)
    steps, finished = 0, set()
    while len(finished) < len(prompts):
        if steps == 12:
            sched.add_request(4, prompts[4], 4, ignore_eos=True)  # after 1's prefix is cached
        plan = sched.schedule()
        out = runner.forward(plan)  # checks plan.kv_indices against the table
        sampled = [int(r) for r, m in zip(plan.req_ids, plan.sample_mask, strict=True) if m]
        tokens = out.logits.argmax(-1)
        for i, rid in enumerate(sampled):
            ref = hf_logits(hf, seqs[rid])[-1]
            torch.testing.assert_close(out.logits[i], ref, atol=2e-4, rtol=0)
            seqs[rid].append(int(tokens[i]))
        ids, _reasons, _matched = sched.update(tokens.numpy().astype("int32"))
        finished.update(int(i) for i in ids)
        sched.check_integrity()
        steps += 1
        assert steps < 200
    assert sched.stats()["hit_tokens"] >= len(shared) // page_size * page_size  # prefix reused

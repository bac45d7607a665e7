"""ModelRunner end to end against HF transformers on tiny random models (CPU, float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from step_plans import PlanBuilder
from tiny_hf import hf_logits, save_tiny, tiny_hf_model

from sglrs.kv_cache import KVBudget
from sglrs.model_loader import LoadConfig, load_model_config
from sglrs.runner.model_runner import ModelRunner

ATOL = 2e-4
# The same checks run on a GPU when there is one (CI has none).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_runner(path, device: str = "cpu", **kwargs) -> ModelRunner:
    kwargs.setdefault("kv_budget", KVBudget(max_total_tokens=256))
    kwargs.setdefault("max_running_requests", 8)
    kwargs.setdefault("dtype", "float32")  # exact-match checks: `auto` is bf16 on AMX CPUs
    return ModelRunner(load_model_config(path), LoadConfig(path, progress=False), device, **kwargs)


def prompt(seed: int, n: int) -> list[int]:
    return torch.randint(0, 1000, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


class Checker:
    """Compares every logits row the runner returns with HF's logits of the same position."""

    def __init__(self, hf, builder: PlanBuilder) -> None:
        self.hf, self.builder, self.max_err = hf, builder, 0.0

    def row(self, req_id: int, ours: torch.Tensor) -> None:
        ours = ours.cpu()
        ref = hf_logits(self.hf, self.builder.tokens(req_id))[-1]
        torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
        self.max_err = max(self.max_err, (ours - ref).abs().max().item())

    def step(self, out, req_ids: list[int]) -> list[int]:
        for i, rid in enumerate(req_ids):
            self.row(rid, out.logits[i])
        return out.logits.argmax(-1).tolist()


ARCHS = [
    ("llama", False),
    ("llama", True),
    ("llama31", False),
    ("qwen2", True),
    ("qwen2", False),
    ("qwen3", False),
    ("mistral", False),
]


@pytest.fixture(
    scope="module", params=ARCHS, ids=[f"{a}-{'tied' if t else 'untied'}" for a, t in ARCHS]
)
def tiny(request, tmp_path_factory):
    arch, tie = request.param
    hf = tiny_hf_model(arch, tie=tie)
    return hf, save_tiny(hf, tmp_path_factory.mktemp(f"{arch}{int(tie)}"))


@pytest.mark.parametrize("device", DEVICES)
def test_prefill_prefix_mixed_and_decode_match_hf(tiny, device):
    hf, path = tiny
    runner = make_runner(path, device)
    b = PlanBuilder(emit_kv_indices=True)
    check = Checker(hf, b)
    # Batched prefill of different lengths, one wanting every position's logits.
    b.add(1)
    b.add(2)
    out = runner.forward(b.step({1: prompt(1, 7), 2: prompt(2, 12)}), all_logits_req_ids=[2])
    torch.testing.assert_close(
        out.all_logits[2].cpu(), hf_logits(hf, b.tokens(2)), atol=ATOL, rtol=0
    )
    nxt = check.step(out, [1, 2])
    # Request 3 reuses request 1's first 5 slots (prefix served from the pool) and joins a
    # mixed batch with two decodes.
    b.add(3, cached_from=(1, 5))
    out = runner.forward(b.step({1: [nxt[0]], 2: [nxt[1]], 3: prompt(3, 4)}, kind="mixed"))
    nxt = check.step(out, [1, 2, 3])
    # Request 4: chunked prefill; its first chunk samples nothing.
    b.add(4)
    chunk = prompt(4, 9)
    plan = b.step({1: [nxt[0]], 2: [nxt[1]], 3: [nxt[2]], 4: chunk[:5]}, sample={1, 2, 3})
    out = runner.forward(plan, all_logits_req_ids=[4])
    assert out.logits.shape[0] == 3
    torch.testing.assert_close(out.all_logits[4].cpu(), hf_logits(hf, chunk[:5]), atol=ATOL, rtol=0)
    nxt = check.step(out, [1, 2, 3])
    out = runner.forward(b.step({1: [nxt[0]], 2: [nxt[1]], 3: [nxt[2]], 4: chunk[5:]}))
    nxt = check.step(out, [1, 2, 3, 4])
    for _ in range(8):
        out = runner.forward(b.step({r: [t] for r, t in zip([1, 2, 3, 4], nxt, strict=True)}))
        nxt = check.step(out, [1, 2, 3, 4])
    assert check.max_err < ATOL


def test_decode_equals_full_prefill(tiny):
    """A decode step gives the logits a fresh prefill of the same sequences gives."""
    _, path = tiny
    runner = make_runner(path)
    b = PlanBuilder(seed=1)
    seqs = {1: prompt(11, 5), 2: prompt(12, 13), 3: prompt(13, 2)}
    for rid in seqs:
        b.add(rid)
    out = runner.forward(b.step(seqs))
    for _ in range(3):
        nxt = out.logits.argmax(-1).tolist()
        out = runner.forward(b.step({r: [t] for r, t in zip(seqs, nxt, strict=True)}))
    decoded = out.logits
    fresh = PlanBuilder(seed=2)
    full = {rid + 10: b.tokens(rid) for rid in seqs}
    for rid in full:
        fresh.add(rid)
    prefill = make_runner(path).forward(fresh.step(full)).logits
    torch.testing.assert_close(decoded, prefill, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    hf = tiny_hf_model("llama")
    return hf, save_tiny(hf, tmp_path_factory.mktemp("llama"))


def test_sliding_window_changes_reference(tmp_path):
    """The mistral case is not vacuous: HF's window-6 logits differ from full attention."""
    windowed = tiny_hf_model("mistral")
    full = tiny_hf_model("mistral", sliding_window=None)
    tokens = prompt(5, 12)
    assert (hf_logits(windowed, tokens)[-1] - hf_logits(full, tokens)[-1]).abs().max() > 1e-2


def test_paged_pool_and_idle_plan(llama_dir):
    hf, path = llama_dir
    runner = make_runner(path, page_size=4, kv_budget=KVBudget(max_total_tokens=64))
    assert runner.max_total_tokens == 64 and runner.kv_pool.padding_slot == 64
    b = PlanBuilder(capacity=64)
    b.add(7)
    out = runner.forward(b.step({7: prompt(7, 10)}))
    Checker(hf, b).row(7, out.logits[0])
    idle = b.step({})
    idle.kind = "idle"
    assert runner.forward(idle).logits.shape == (0, 1000)


def test_out_of_sync_table_is_reported(llama_dir):
    _, path = llama_dir
    runner = make_runner(path)
    b = PlanBuilder(emit_kv_indices=True)
    b.add(1)
    plan = b.step({1: prompt(1, 4)})
    plan.kv_indices = plan.kv_indices.copy()
    plan.kv_indices[2] += 1
    with pytest.raises(ValueError, match="out of sync"):
        runner.forward(plan)


def test_bad_requests(llama_dir):
    _, path = llama_dir
    runner = make_runner(path)
    b = PlanBuilder()
    b.add(1)
    with pytest.raises(ValueError, match="not in this plan"):
        runner.forward(b.step({1: prompt(1, 3)}), all_logits_req_ids=[99])
    with pytest.raises(ValueError, match="context_length"):
        make_runner(path, context_length=100_000)
    with pytest.raises(ValueError, match="unknown attention backend 'nope'.*torch_native"):
        make_runner(path, attention_backend="nope")
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        make_runner(path, dtype="fp8")


def test_plan_ids_are_uint64(llama_dir):
    _, path = llama_dir
    runner = make_runner(path)
    b = PlanBuilder()
    big = 2**63 + 5
    b.add(big)
    out = runner.forward(b.step({big: prompt(2, 3)}), all_logits_req_ids=[big])
    assert list(out.all_logits) == [big]
    assert np.isfinite(out.logits.numpy()).all()


def test_warm_up_leaves_nothing_behind(llama_dir):
    """The start-up prefill (GPU engines run one of their largest step) writes table rows and
    KV slots the scheduler has not handed out yet; later plans get HF's logits regardless."""
    hf, path = llama_dir
    runner = make_runner(path)
    runner.warm_up(10_000)  # capped to the pool (256 slots) and the 8 table rows
    b = PlanBuilder()
    b.add(3)
    Checker(hf, b).row(3, runner.forward(b.step({3: prompt(3, 9)})).logits[0])


def test_warmup_plan_shapes():
    from sglrs.runner.warmup import warmup_plan

    plan = warmup_plan(2500, context_length=4096, max_rows=8, capacity=10_000, vocab_size=50)
    assert plan.extend_lens.tolist() == [1024, 1024, 452]
    assert plan.positions[1024] == 0 and plan.positions[-1] == 451
    assert plan.input_ids.max() < 50 and plan.out_cache_loc.tolist() == list(range(2500))
    small = warmup_plan(2500, context_length=100, max_rows=3, capacity=10_000, vocab_size=50)
    assert small.extend_lens.tolist() == [100, 100, 100]
    assert warmup_plan(10, context_length=100, max_rows=3, capacity=0, vocab_size=50) is None

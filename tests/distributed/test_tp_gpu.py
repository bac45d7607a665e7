"""GPU tensor parallelism (NCCL): greedy tokens at tp 2/3/4 equal tp 1's; the Llama-3.1-8B shape
serves with dummy weights at tp 2 and 4. Each test skips without enough GPUs.

Models are random-weight Llamas the test writes (no tokenizer: token ids in and out), in float32
so the only difference between tp sizes is the summation order of the all-reduces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from sglrs.engine.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
NEW_TOKENS = 16
# Head layouts: 4 query / 2 KV heads (tp 4 replicates KV heads) and SmolLM2-135M's 9 / 3.
SHAPES = {
    "llama-4q-2kv": dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=256, vocab_size=1024),
    "smollm2-9q-3kv": dict(hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                           intermediate_size=1536, vocab_size=1536),
}  # fmt: skip


def _need_gpus(n: int) -> None:
    if torch.cuda.device_count() < n:
        pytest.skip(f"needs {n} GPUs, found {torch.cuda.device_count()}")


def _random_llama(path: Path, shape: dict) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(num_hidden_layers=2, max_position_embeddings=1024, **shape)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.25 / (shape["hidden_size"] / 64) ** 0.5)
    model.save_pretrained(path, safe_serialization=True)
    return path


def _prompts(vocab: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (5, 37, 120, 300)]


def _greedy(model: Path, tp: int, prompts: list[list[int]], **extra: object) -> list[list[int]]:
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}
    with Engine(
        model_path=str(model),
        tp_size=tp,
        device="cuda",
        skip_tokenizer_init=True,
        max_total_tokens=8192,
        log_level="warning",
        **extra,
    ) as engine:
        outs = engine.generate(input_ids=prompts, sampling_params=[params] * len(prompts))
        # One request alone too: batch-1 decode steps (one-row GEMVs and their fusions).
        outs.append(engine.generate(input_ids=prompts[-1], sampling_params=params))
    return [o["output_ids"] for o in outs]


@pytest.mark.parametrize(
    ("shape", "tp"), [("llama-4q-2kv", 2), ("llama-4q-2kv", 4), ("smollm2-9q-3kv", 3)]
)
def test_greedy_tokens_equal_tp1(tmp_path, shape, tp):
    _need_gpus(tp)
    model = _random_llama(tmp_path / shape, SHAPES[shape])
    prompts = _prompts(SHAPES[shape]["vocab_size"])
    want = _greedy(model, 1, prompts, dtype="float32")
    assert _greedy(model, tp, prompts, dtype="float32") == want


def test_rope_epilogue_changes_no_token_at_tp2(tmp_path, monkeypatch):
    """bf16 at tp 2 (where the one-row GEMVs fuse): the QKV GEMV's rope + KV-store epilogue
    gives the same tokens as the separate rope_store kernel."""
    _need_gpus(2)
    shape = "llama-4q-2kv"
    model = _random_llama(tmp_path / shape, SHAPES[shape])
    prompts = _prompts(SHAPES[shape]["vocab_size"])[:2]
    fused = _greedy(model, 2, prompts, dtype="bfloat16")
    monkeypatch.setenv("SGLRS_DISABLE_ROPE_EPILOGUE", "1")
    assert _greedy(model, 2, prompts, dtype="bfloat16") == fused


def test_greedy_tokens_equal_with_nccl_only(tmp_path):
    """The one-shot symmetric-memory all-reduce (decode) and NCCL (--disable-custom-all-reduce)
    add the same two partial sums, so tp 2 gives the same tokens either way."""
    _need_gpus(2)
    shape = "llama-4q-2kv"
    model = _random_llama(tmp_path / shape, SHAPES[shape])
    prompts = _prompts(SHAPES[shape]["vocab_size"])
    want = _greedy(model, 2, prompts, dtype="float32", disable_custom_all_reduce=True)
    assert _greedy(model, 2, prompts, dtype="float32") == want


@pytest.mark.parametrize("tp", [2, 4])
def test_custom_all_reduce_sums_like_nccl(tp):
    """In `tp` processes: every size the custom paths take sums like NCCL (bit for bit at tp 2,
    where the order of a two-term sum does not matter; identical bits on every rank at tp 4),
    eagerly and replayed in a CUDA graph with new inputs."""
    _need_gpus(tp)
    import torch.multiprocessing as mp

    mp.spawn(_custom_all_reduce_rank, args=(tp, _free_port()), nprocs=tp)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_sum(got: torch.Tensor, x: torch.Tensor, tp: int, custom: bool = True) -> None:
    """`got` (this rank's all-reduce of `x`) against NCCL's where NCCL made it or at tp 2 (a
    two-term sum: the same bits), else against the float32 sum of every rank's `x` rounded
    once (the custom paths add in float32 in their own order, NCCL's ring rounds each hop to
    bf16, so at 4 ranks the two can differ by more than the result's last bit); the same bits
    on every rank."""
    import torch.distributed as dist

    if tp == 2 or not custom:
        want = x.clone()
        dist.all_reduce(want)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:
        parts = [torch.empty_like(x) for _ in range(tp)]
        dist.all_gather(parts, x.contiguous())
        exact = sum(p.float() for p in parts)
        # One bf16 rounding of the result, wherever the float32 order tips it.
        torch.testing.assert_close(got.float(), exact, rtol=2**-7, atol=1e-3)
    first = got.clone()
    dist.broadcast(first, 0)
    assert torch.equal(got, first), "every rank must get the same bits"


def _check_sum_norm(x: torch.Tensor, tp: int) -> None:
    """The push kernel's fused all-reduce + residual add + RMSNorm of `x` where it takes `x`,
    against NCCL's sum and then the norm kernel: the same bits at tp 2, and on every rank."""
    import torch.distributed as dist

    from sglrs.distributed import comm
    from sglrs.kernels.norm import rmsnorm

    # The residual and the norm weight are the same on every rank, as in a model.
    common = torch.Generator().manual_seed(7)
    residual = torch.randn(x.shape, generator=common).bfloat16().to(x.device)
    weight = torch.randn(x.shape[1], generator=common).bfloat16().to(x.device)
    fused = comm.all_reduce_rmsnorm(x, residual, weight, 1e-5)
    push = comm._CUSTOM.push
    assert (fused is not None) == push.handles(x)
    if fused is None:
        return
    summed = x.clone()
    dist.all_reduce(summed)
    want = rmsnorm(summed, weight, 1e-5, residual)
    for got, ref in zip(fused, want, strict=True):
        if tp == 2:
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
        else:
            torch.testing.assert_close(got, ref, rtol=2e-2, atol=5e-2)
        first = got.clone()
        dist.broadcast(first, 0)
        assert torch.equal(got, first), "every rank must get the same bits"


def _check_gemv_reduce_norm(device: torch.device, tp: int, gen: torch.Generator) -> None:
    """The GEMV's REDUCE_NORM epilogue (o_proj's and down's shapes at tp 4, down with the SiLU
    prologue), eagerly and over CUDA-graph replays between plain push all-reduces, against the
    same GEMV's terms summed in float32 and the norm kernel: `s` exactly at tp 2, the norm
    within one ulp (its sum of squares is grouped differently), every rank's bits the same."""
    import torch.distributed as dist

    from sglrs.distributed import all_reduce, comm
    from sglrs.kernels.gemv import (
        gemv,
        gemv_reduce_norm,
        gemv_silu_mul,
        pick_config,
        pick_fused_config,
    )
    from sglrs.kernels.norm import rmsnorm

    common = torch.Generator().manual_seed(11)  # residual and norm weight: alike on every rank
    residual = torch.randn(1, 4096, generator=common).bfloat16().to(device)
    weight = torch.randn(4096, generator=common).bfloat16().to(device)
    cases = []
    for k, silu in ((1024, False), (3584, True)):
        pick = pick_fused_config if silu else pick_config
        config = pick(1, 4096, k)
        w = (torch.randn(4096, k, generator=gen, device=device) / k**0.5).bfloat16()
        x = torch.randn(1, 2 * k if silu else k, generator=gen, device=device).bfloat16()
        cases.append((config, w, x, silu))

    def run(config, w, x, silu):
        rn = comm.reduce_norm_epilogue(residual, weight, 1e-5)
        assert rn is not None
        return gemv_reduce_norm(x, w, config, rn, silu_mul=silu)

    def check(got, config, w, x, silu) -> None:
        term = gemv_silu_mul(x, w, None, config) if silu else gemv(x, w, None, config)
        terms = [torch.empty_like(term) for _ in range(tp)]
        dist.all_gather(terms, term)
        summed = sum(t.float() for t in terms).bfloat16()  # rounded once, as the kernel does
        want = rmsnorm(summed, weight, 1e-5, residual)
        # Past two terms the kernel's float32 tree may group them differently: one bf16 ulp of
        # a term's size (the reference's roundings are otherwise the kernel's).
        tol = {"rtol": 0, "atol": 0} if tp == 2 else {"rtol": 2**-7, "atol": 2**-5}
        torch.testing.assert_close(got[1], want[1], **tol)
        torch.testing.assert_close(got[0], want[0], rtol=2**-7, atol=2**-5)
        for t in got:
            first = t.clone()
            dist.broadcast(first, 0)
            assert torch.equal(t, first), "every rank must get the same bits"

    for case in cases:
        check(run(*case), *case)
    ids = torch.zeros(1, 4096, device=device, dtype=torch.bfloat16)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        a = all_reduce(ids)
        outs = [run(*case) for case in cases]
        c = all_reduce(ids + 1)
    for _ in range(3):
        ids.copy_(torch.randn(1, 4096, generator=gen, device=device))
        for _config, _w, x, _silu in cases:
            x.copy_(torch.randn(x.shape, generator=gen, device=device))
        graph.replay()
        torch.cuda.synchronize(device)
        _check_sum(a, ids, tp)
        for got, case in zip(outs, cases, strict=True):
            check(got, *case)
        _check_sum(c, ids + 1, tp)


def _custom_all_reduce_rank(rank: int, tp: int, port: int) -> None:
    import torch.distributed as dist

    from sglrs.distributed import (
        all_reduce,
        comm,
        destroy_tensor_parallel,
        enable_custom_all_reduce,
        init_tensor_parallel,
    )
    from sglrs.distributed.custom_all_reduce import PUSH_MAX_BYTES

    device = torch.device("cuda", rank)
    init_tensor_parallel(rank, tp, f"127.0.0.1:{port}", device)
    try:
        assert enable_custom_all_reduce(torch.bfloat16)
        assert comm._CUSTOM is not None and comm._CUSTOM.push is not None
        gen = torch.Generator(device=device).manual_seed(rank)
        for rows in (1, 3, 64, 512):
            x = torch.randn(rows, 4096, generator=gen, device=device).bfloat16()
            x[0, :7] = -0.0  # the push path's "empty" mark, sent as +0.0
            assert comm._CUSTOM.handles(x) == (tp == 2 or x.numel() * 2 <= 512 * 1024)
            if comm._CUSTOM.handles(x):
                assert comm._CUSTOM.push.handles(x) == (x.numel() * 2 <= PUSH_MAX_BYTES)
            sent = x.clone()  # NCCL (past the custom paths' sizes) reduces `x` in place
            custom = comm._CUSTOM.handles(x)
            got = all_reduce(x)
            _check_sum(got, sent, tp, custom)
            _check_sum_norm(sent, tp)
        # Replays of a graph of 3 push all-reduces (an odd count: the halves alternate between
        # replays too) with new inputs each time.
        x = torch.zeros(2, 4096, device=device, dtype=torch.bfloat16)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        weight = torch.randn(4096, generator=gen, device=device).bfloat16()
        with torch.cuda.stream(stream):  # compiled before the capture, as the runner does
            all_reduce(x)
            comm.all_reduce_rmsnorm(x, x, weight, 1e-5)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            a = all_reduce(x)
            b, s = comm.all_reduce_rmsnorm(a * 0.5, x, weight, 1e-5)
            c = all_reduce(b + x)
        for _ in range(5):
            x.copy_(torch.randn(2, 4096, generator=gen, device=device))
            graph.replay()
            torch.cuda.synchronize(device)
            _check_sum(a, x, tp)
            summed = a * 0.5
            dist.all_reduce(summed)
            tol = 0 if tp == 2 else 5e-2
            want = (summed.float() + x.float()).bfloat16()
            torch.testing.assert_close(s, want, rtol=tol, atol=tol)
            _check_sum(c, b + x, tp)
        _check_gemv_reduce_norm(device, tp, gen)
        big = torch.ones(2048, 4096, device=device).bfloat16()  # 16 MiB: NCCL, in place
        assert all_reduce(big).data_ptr() == big.data_ptr()
        assert bool((big == tp).all())
    finally:
        destroy_tensor_parallel()


def test_smollm2_tp3_equals_tp1():
    _need_gpus(3)
    from sglrs.utils.default_model import DefaultModelUnavailable, default_model_path

    try:
        model = default_model_path(quiet=True)
    except DefaultModelUnavailable as e:
        pytest.skip(f"SmolLM2 unavailable: {e}")
    prompts = _prompts(49152)
    want = _greedy(model, 1, prompts, dtype="float32")
    assert _greedy(model, 3, prompts, dtype="float32") == want


@pytest.mark.parametrize("tp", [2, 4])
def test_llama8b_dummy_serves(tmp_path, tp):
    _need_gpus(tp)
    sys.path.insert(0, str(ROOT / "benches"))
    from llama8b import write_model_dir

    model = write_model_dir(tmp_path / "llama-3.1-8b")
    outs = _greedy(
        model, tp, _prompts(128256), load_format="dummy", dtype="bfloat16", context_length=4096
    )
    assert [len(o) for o in outs] == [NEW_TOKENS] * 4

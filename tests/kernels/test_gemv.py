"""The few-row GEMV (sglrs.kernels.gemv) and its dispatch against F.linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_env import DEVICE, INTERPRETED, load_kernel, rel_err

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# Interpreted: float32 and float16 (numpy has no bfloat16); on a GPU the dispatched dtypes.
DTYPES = [torch.float32, torch.float16] if INTERPRETED else [torch.bfloat16, torch.float16]
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def _configs(kern):
    C = kern.GemvConfig
    return [
        C(8, 32),  # FMA, one K split
        C(4, 64, split_k=3),  # FMA, split-K with a ragged last split
        C(16, 32, use_dot=True),
        C(16, 16, split_k=2, use_dot=True),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 8])
def test_gemv_matches_linear(dtype, m):
    kern = load_kernel("gemv")
    # N not a multiple of the tile and K not a multiple of BLOCK_K: the masked paths.
    for n, k, bias in [(40, 96, False), (37, 100, True)]:
        for cfg in _configs(kern):
            x, w = torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype)
            b = torch.randn(n).to(dtype) if bias else None
            out = kern.gemv(x.to(DEVICE), w.to(DEVICE), None if b is None else b.to(DEVICE), cfg)
            ref = F.linear(x.double(), w.double(), None if b is None else b.double())
            assert out.shape == (m, n) and out.dtype == dtype
            assert rel_err(out.cpu(), ref) < TOL[dtype], (cfg, n, k, bias)


def test_gemv_rejects_what_it_cannot_do():
    kern = load_kernel("gemv")
    cfg = kern.GemvConfig(8, 32)
    with pytest.raises(ValueError, match="more than"):
        kern.gemv(torch.randn(9, 32).to(DEVICE), torch.randn(8, 32).to(DEVICE), None, cfg)
    with pytest.raises(ValueError, match="unit stride"):
        w = torch.randn(32, 8).to(DEVICE).t()
        kern.gemv(torch.randn(1, 32).to(DEVICE), w, None, cfg)
    with pytest.raises(ValueError, match="shapes"):
        kern.gemv(torch.randn(1, 16).to(DEVICE), torch.randn(8, 32).to(DEVICE), None, cfg)


def test_split_counters_reset_between_calls():
    """The last program of each tile zeroes its counter: a second call (or graph replay)
    starts from zero and gives the same result."""
    kern = load_kernel("gemv")
    cfg = kern.GemvConfig(8, 32, split_k=4)
    x, w = torch.randn(2, 128).to(DEVICE), torch.randn(24, 128).to(DEVICE)
    first = kern.gemv(x, w, None, cfg)
    assert torch.equal(first, kern.gemv(x, w, None, cfg))
    assert not kern._counters[x.device][:3].any()


def test_pick_config_classes_and_row_limit():
    kern = load_kernel("gemv")
    assert kern.shape_class(4096, 14336) == "deep"
    assert kern.shape_class(28672, 4096) == "wide"
    assert kern.shape_class(6144, 4096) == "square"
    assert kern.pick_config(0, 4096, 4096) is None
    assert kern.pick_config(kern.MAX_ROWS + 1, 4096, 4096) is None


def test_one_row_shard_shapes_override_the_table_for_plain_gemvs(monkeypatch):
    kern = load_kernel("gemv")
    for (n, k), config in kern.ONE_ROW_BY_SHAPE.items():
        assert kern.pick_config(1, n, k) == config
        table = kern.TUNING[(kern.shape_class(n, k), 1)]
        assert kern.pick_fused_config(1, n, k) == table  # prologue-fused GEMVs keep the table
        assert kern.pick_config(2, n, k) == kern.TUNING[(kern.shape_class(n, k), 2)]
    monkeypatch.setenv("SGLRS_DISABLE_GEMV_SHAPE_TUNING", "1")
    assert kern.pick_config(1, 4096, 1024) == kern.TUNING[("square", 1)]


def test_cpu_dispatch_keeps_packed_path():
    from sglrs.layers.cuda_linear import device_linear

    x, w, b = torch.randn(3, 16), torch.randn(8, 16), torch.randn(8)
    assert torch.allclose(device_linear(x, w, None, b), F.linear(x, w, b))


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", [1, 2, 4, 8])
def test_dispatch_at_llama8b_shapes(dtype, m):
    """Llama-3.1-8B's decode GEMVs through the layers' dispatch, and every tuned config."""
    from sglrs.kernels import gemv as kern
    from sglrs.layers.cuda_linear import cuda_linear

    shapes = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096)]
    for n, k in shapes + list(kern.ONE_ROW_BY_SHAPE):  # whole weights, then tp shards
        x = torch.randn(m, k, device="cuda").to(dtype)
        w = (torch.randn(n, k, device="cuda") * 0.02).to(dtype)
        ref = F.linear(x.double(), w.double())
        assert rel_err(cuda_linear(x, w), ref) < TOL[dtype]
        cfg = kern.pick_config(m, n, k)
        if cfg is not None:
            assert rel_err(kern.gemv(x, w, None, cfg), ref) < TOL[dtype]
        del w


@requires_cuda
def test_gemv_split_k_is_deterministic_and_graph_safe():
    """Split-K sums partials in a fixed order: repeated runs and CUDA-graph replays give
    identical bits (a race on the counters would not)."""
    from sglrs.kernels import gemv as kern

    x = torch.randn(4, 14336, device="cuda", dtype=torch.bfloat16)
    w = (torch.randn(4096, 14336, device="cuda") * 0.02).bfloat16()
    b = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    for cfg in [kern.GemvConfig(8, 512, split_k=4), kern.GemvConfig(16, 256, 4, use_dot=True)]:
        first = kern.gemv(x, w, b, cfg)
        assert rel_err(first, F.linear(x.double(), w.double(), b.double())) < 1e-2
        for _ in range(20):
            assert torch.equal(kern.gemv(x, w, b, cfg), first)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = kern.gemv(x, w, b, cfg)
        for _ in range(5):
            out.zero_()
            graph.replay()
            assert torch.equal(out, first)


@requires_cuda
def test_dispatch_gemv_when_captured_f_linear_when_eager():
    """Captured calls run the GEMV; eager ones after the first (which compiles it) F.linear."""
    from sglrs.kernels import gemv as kern
    from sglrs.layers import cuda_linear as disp

    n, k = 4096, 4096
    x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
    w = (torch.randn(n, k, device="cuda") * 0.02).bfloat16()
    cfg = kern.pick_config(1, n, k)
    assert cfg is not None
    disp._launched.clear()
    via_gemv, via_cublas = kern.gemv(x, w, None, cfg), F.linear(x, w)
    assert torch.equal(disp.cuda_linear(x, w), via_gemv)  # first eager call: the GEMV
    assert torch.equal(disp.cuda_linear(x, w), via_cublas)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = disp.cuda_linear(x, w)
    graph.replay()
    assert torch.equal(out, via_gemv)

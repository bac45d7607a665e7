"""The GEMV with a fused prologue (RMSNorm + residual add, SiLU*mul; sglrs.kernels.gemv) against
the separate ops, and the layers' dispatch to it (sglrs.layers.cuda_fused)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_env import DEVICE, INTERPRETED, load_kernel, rel_err

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# Interpreted: float32 and float16 (numpy has no bfloat16); on a GPU the dispatched dtypes.
DTYPES = [torch.float32, torch.float16] if INTERPRETED else [torch.bfloat16, torch.float16]
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
EPS = 1e-6


def _configs(kern):
    C = kern.GemvConfig
    return [C(8, 32), C(4, 64, num_warps=2), C(16, 32, use_dot=True)]


def ref_norm(h, residual, g, eps=EPS):
    """sglrs.layers.norm.RMSNorm's torch path: `(g * norm(x), x)` with `x = h (+ residual)`."""
    x = h if residual is None else h + residual
    xf = x.float()
    return g * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype), x


def ref_silu_mul(gate_up):
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 8])
def test_gemv_rmsnorm_matches_separate_ops(dtype, m):
    kern = load_kernel("gemv")
    # N not a multiple of the tile and K not a multiple of BLOCK_K: the masked paths.
    for n, k, bias in [(40, 96, False), (37, 100, True)]:
        for cfg in _configs(kern):
            for with_residual in (False, True):
                h, r = torch.randn(m, k).to(dtype), torch.randn(m, k).to(dtype)
                r = r if with_residual else None
                g = (1 + 0.1 * torch.randn(k)).to(dtype)
                w, b = torch.randn(n, k).to(dtype), torch.randn(n).to(dtype) if bias else None
                normed, x = ref_norm(h, r, g)
                ref = F.linear(normed.double(), w.double(), None if b is None else b.double())
                dev = [None if t is None else t.to(DEVICE) for t in (h, r, g, w, b)]
                for stats_first in (False, True):
                    y, res = kern.gemv_rmsnorm(
                        dev[0], dev[1], dev[2], EPS, dev[3], dev[4], cfg, stats_first
                    )
                    assert y.shape == (m, n) and y.dtype == dtype
                    assert torch.equal(res.cpu(), x)
                    if r is None:
                        assert res is dev[0]  # no residual: h itself is the next one
                    err = rel_err(y.cpu(), ref)
                    assert err < TOL[dtype], (cfg, n, k, with_residual, stats_first, err)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 8])
def test_gemv_silu_mul_matches_separate_ops(dtype, m):
    kern = load_kernel("gemv")
    for n, k, bias in [(40, 96, True), (37, 100, False)]:
        for cfg in _configs(kern):
            # A wider row stride than 2K: a view of a larger buffer.
            gate_up = torch.randn(m, 2 * k + 8).to(dtype)[:, : 2 * k]
            w, b = torch.randn(n, k).to(dtype), torch.randn(n).to(dtype) if bias else None
            ref = F.linear(
                ref_silu_mul(gate_up).double(), w.double(), None if b is None else b.double()
            )
            dev_b = None if b is None else b.to(DEVICE)
            y = kern.gemv_silu_mul(gate_up.to(DEVICE), w.to(DEVICE), dev_b, cfg)
            assert y.shape == (m, n) and y.dtype == dtype
            assert rel_err(y.cpu(), ref) < TOL[dtype], (cfg, n, k, bias)


def test_prologues_reject_what_they_cannot_do():
    kern = load_kernel("gemv")
    cfg = kern.GemvConfig(8, 32)
    h, w, g = (torch.randn(2, 32).to(DEVICE), torch.randn(8, 32).to(DEVICE),
               torch.ones(32).to(DEVICE))  # fmt: skip
    with pytest.raises(ValueError, match="split_k 1"):
        kern.gemv_rmsnorm(h, None, g, EPS, w, None, kern.GemvConfig(8, 32, split_k=2))
    with pytest.raises(ValueError, match="split_k 1"):
        kern.gemv_silu_mul(torch.randn(2, 64).to(DEVICE), w, None, kern.GemvConfig(8, 32, 2))
    with pytest.raises(ValueError, match="residual"):
        kern.gemv_rmsnorm(h, torch.randn(3, 32).to(DEVICE), g, EPS, w, None, cfg)
    with pytest.raises(ValueError, match="norm weight"):
        kern.gemv_rmsnorm(h, None, g.double(), EPS, w, None, cfg)
    with pytest.raises(ValueError, match=r"\[M, 2K\]"):
        kern.gemv_silu_mul(h, w, None, cfg)
    with pytest.raises(ValueError, match="more than"):
        kern.gemv_silu_mul(torch.randn(9, 64).to(DEVICE), w, None, cfg)


def test_pick_fused_config():
    kern = load_kernel("gemv")
    # One row: the plain GEMV's FMA tile. Several rows (tl.dot tiles, slower fused): none.
    assert kern.pick_fused_config(1, 6144, 4096) == kern.pick_config(1, 6144, 4096)
    assert not kern.pick_fused_config(1, 6144, 4096).use_dot
    assert kern.pick_fused_config(4, 6144, 4096) is None
    assert kern.pick_fused_config(4, 28672, 4096) is None
    assert kern.pick_fused_config(0, 4096, 4096) is None
    assert kern.pick_fused_config(kern.MAX_ROWS + 1, 4096, 4096) is None


# --- the layers' dispatch (sglrs.layers.cuda_fused) ---


def _layers(k: int, n: int, inter: int, dtype: torch.dtype, tp_size: int = 1):
    from sglrs.layers.linear import MergedColumnLinear, RowLinear
    from sglrs.layers.norm import RMSNorm

    norm = RMSNorm(k, EPS)
    gate_up = MergedColumnLinear(k, [inter, inter], bias=True)
    down = RowLinear(inter * tp_size, n, bias=True, tp_rank=0, tp_size=tp_size)
    with torch.no_grad():
        for p in (*norm.parameters(), *gate_up.parameters(), *down.parameters()):
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p is norm.weight else 0.0))
    return [mod.to(dtype) for mod in (norm, gate_up, down)]


def _separate(norm, gate_up, down, h, residual):
    from sglrs.layers.activation import SiluAndMul

    if residual is None:
        x, residual = norm(h), h
    else:
        x, residual = norm(h, residual)
    return down(SiluAndMul()(gate_up(x))), residual


def _fused(norm, gate_up, down, h, residual):
    from sglrs.layers.activation import SiluAndMul
    from sglrs.layers.cuda_fused import norm_linear, silu_mul_linear

    y, residual = norm_linear(norm, h, residual, gate_up)
    return silu_mul_linear(SiluAndMul(), y, down), residual


def test_cpu_tensors_run_the_separate_ops_unchanged():
    torch.manual_seed(0)
    norm, gate_up, down = _layers(32, 24, 40, torch.float32)
    h, r = torch.randn(3, 32), torch.randn(3, 32)
    for residual in (None, r):
        out, res = _fused(norm, gate_up, down, h, residual)
        ref, ref_res = _separate(norm, gate_up, down, h, residual)
        assert torch.equal(out, ref) and torch.equal(res, ref_res)


class _Spy:
    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.skipif(not INTERPRETED, reason="runs the GPU dispatch on CPU tensors, interpreted")
@pytest.mark.parametrize("tp_size", [1, 2])
def test_dispatch_fuses_on_the_gpu_path_and_honours_disable(monkeypatch, tp_size):
    """CPU fp16 tensors with the CUDA check forced on: the fused kernels run (interpreted) for
    one row and match the separate ops; `SGLRS_DISABLE_GEMV=1`, `SGLRS_DISABLE_FUSED_GEMV=1`,
    several rows (tl.dot tiles, not fused: slower) or too many rows give the separate ops bit
    for bit. tp 2 (no process group: the all-reduce is the identity) adds the row-parallel bias
    once, after the product."""
    kern = load_kernel("gemv")
    from sglrs.layers import cuda_fused

    monkeypatch.setattr(cuda_fused, "use_triton", lambda x: True)
    monkeypatch.setattr(cuda_fused, "launch_now", lambda key, weight: True)
    norm_spy, silu_spy = _Spy(kern.gemv_rmsnorm), _Spy(kern.gemv_silu_mul)
    monkeypatch.setattr(kern, "gemv_rmsnorm", norm_spy)
    monkeypatch.setattr(kern, "gemv_silu_mul", silu_spy)
    torch.manual_seed(0)
    norm, gate_up, down = _layers(64, 48, 80 // tp_size, torch.float16, tp_size)
    for m in (1,):
        h, r = torch.randn(m, 64).half(), torch.randn(m, 64).half()
        for residual in (None, r):
            calls = norm_spy.calls, silu_spy.calls
            out, res = _fused(norm, gate_up, down, h, residual)
            assert (norm_spy.calls, silu_spy.calls) == (calls[0] + 1, calls[1] + 1)
            ref, ref_res = _separate(norm, gate_up, down, h, residual)
            assert torch.equal(res, ref_res)
            assert rel_err(out, ref) < 5e-3
    calls = norm_spy.calls, silu_spy.calls
    for m in (3, 9):  # tl.dot tiles, and more rows than MAX_ROWS
        h, r = torch.randn(m, 64).half(), torch.randn(m, 64).half()
        out, res = _fused(norm, gate_up, down, h, r)
        ref, ref_res = _separate(norm, gate_up, down, h, r)
        assert torch.equal(out, ref) and torch.equal(res, ref_res)
    for var in ("SGLRS_DISABLE_GEMV", "SGLRS_DISABLE_FUSED_GEMV"):
        with monkeypatch.context() as mp:
            mp.setenv(var, "1")
            out, res = _fused(norm, gate_up, down, h[:2], r[:2])
            ref, ref_res = _separate(norm, gate_up, down, h[:2], r[:2])
            assert torch.equal(out, ref) and torch.equal(res, ref_res)
    assert (norm_spy.calls, silu_spy.calls) == calls


# --- GPU only ---


def _fused_test_config(kern, m: int, n: int, k: int):
    if m == 1:
        cfg = kern.pick_fused_config(m, n, k)
        assert cfg is not None
        return cfg
    assert kern.pick_fused_config(m, n, k) is None
    return kern.GemvConfig(32, 256, num_stages=4, use_dot=True)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", [1, 2, 4, 8])
def test_fused_at_llama8b_shapes(dtype, m):
    """QKV and gate_up after add+RMSNorm, down after SiLU*mul: with the dispatched config at one
    row, and at 2-8 rows with the tensor-core tiles the kernel takes (not dispatched there: the
    separate ops were faster)."""
    from sglrs.kernels import gemv as kern
    from sglrs.kernels.norm import rmsnorm

    hidden, inter = 4096, 14336
    h = torch.randn(m, hidden, device="cuda").to(dtype)
    r = (torch.randn(m, hidden, device="cuda") * 4).to(dtype)
    g = (1 + 0.1 * torch.randn(hidden, device="cuda")).to(dtype)
    for n in (6144, 28672):
        w = (torch.randn(n, hidden, device="cuda") * 0.02).to(dtype)
        cfg = _fused_test_config(kern, m, n, hidden)
        normed, x = rmsnorm(h, g, 1e-5, r)
        ref = F.linear(normed.double(), w.double())
        for stats_first in (None, False, True):
            y, res = kern.gemv_rmsnorm(h, r, g, 1e-5, w, None, cfg, stats_first)
            assert torch.equal(res, x)
            assert rel_err(y, ref) < TOL[dtype], (n, stats_first)
        del w
    gate_up = torch.randn(m, 2 * inter, device="cuda").to(dtype)
    w = (torch.randn(hidden, inter, device="cuda") * 0.02).to(dtype)
    cfg = _fused_test_config(kern, m, hidden, inter)
    ref = F.linear(ref_silu_mul(gate_up).double(), w.double())
    assert rel_err(kern.gemv_silu_mul(gate_up, w, None, cfg), ref) < TOL[dtype]


@requires_cuda
def test_fused_layers_in_a_cuda_graph(monkeypatch):
    """Captured, the dispatch runs the fused kernels: replays with new inputs give the kernels'
    direct results, and the separate ops' within bf16 tolerance. With either disable variable
    the capture holds the separate ops."""
    from sglrs.kernels import gemv as kern

    torch.manual_seed(0)
    layers = [mod.cuda() for mod in _layers(4096, 4096, 14336, torch.bfloat16)]
    norm_spy = _Spy(kern.gemv_rmsnorm)
    monkeypatch.setattr(kern, "gemv_rmsnorm", norm_spy)
    h_in = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)  # fused at one row
    r_in = torch.randn_like(h_in)

    def capture():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            _fused(*layers, h_in, r_in)  # warm-up: compiles
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            out = _fused(*layers, h_in, r_in)
        return graph, out

    graph, (out, res) = capture()
    assert norm_spy.calls >= 1  # the capture (and the warm-up, unless compiled before)
    norm, gate_up, down = layers
    for _ in range(3):
        h_in.copy_(torch.randn_like(h_in))
        r_in.copy_(torch.randn_like(r_in))
        graph.replay()
        up_cfg, down_cfg = (
            kern.pick_fused_config(1, 28672, 4096),
            kern.pick_fused_config(1, 4096, 14336),
        )
        y, direct_res = kern.gemv_rmsnorm(
            h_in, r_in, norm.weight, EPS, gate_up.weight, gate_up.bias, up_cfg
        )
        direct = kern.gemv_silu_mul(y, down.weight, down.bias, down_cfg)
        assert torch.equal(out, direct) and torch.equal(res, direct_res)
        ref, ref_res = _separate(*layers, h_in, r_in)
        assert torch.equal(res, ref_res)
        assert rel_err(out, ref) < 1e-2
    for var in ("SGLRS_DISABLE_GEMV", "SGLRS_DISABLE_TRITON_KERNELS", "SGLRS_DISABLE_FUSED_GEMV"):
        with monkeypatch.context() as mp:
            mp.setenv(var, "1")
            calls = norm_spy.calls
            graph, (out, res) = capture()
            assert norm_spy.calls == calls
            graph.replay()
            ref, ref_res = _separate(*layers, h_in, r_in)
            assert torch.equal(res, ref_res) and rel_err(out, ref) < 1e-2


@requires_cuda
def test_model_logits_fused_vs_disabled(monkeypatch, tmp_path):
    """A tiny Llama (head_dim 128) in bf16 with CUDA graphs: decode logits with the fused GEMVs
    match the ones with `SGLRS_DISABLE_GEMV=1` within bf16 tolerance."""
    from runner.step_plans import PlanBuilder
    from runner.tiny_hf import save_tiny, tiny_hf_model

    from sglrs.attention import ATTENTION_BACKENDS
    from sglrs.kernels import gemv as kern
    from sglrs.kv_cache import KVBudget
    from sglrs.model_loader import LoadConfig, load_model_config
    from sglrs.runner.model_runner import ModelRunner

    if "triton" not in ATTENTION_BACKENDS:
        pytest.skip("the triton attention backend is not available")
    wide = dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=2, head_dim=128)
    path = save_tiny(tiny_hf_model("llama", std=0.15 * (64 / 512) ** 0.5, **wide), tmp_path)
    prompts = {1: list(range(10, 27)), 2: list(range(300, 305)), 3: list(range(500, 540))}
    decode = [[7, 8, 9], [40, 41, 42], [600, 601, 602]]

    def run(disabled: bool) -> tuple[list[torch.Tensor], int]:
        spy = _Spy(kern.gemv_rmsnorm)
        with monkeypatch.context() as mp:
            mp.setattr(kern, "gemv_rmsnorm", spy)
            if disabled:
                mp.setenv("SGLRS_DISABLE_GEMV", "1")
            runner = ModelRunner(
                load_model_config(path),
                LoadConfig(path, progress=False),
                "cuda",
                dtype=torch.bfloat16,
                kv_budget=KVBudget(max_total_tokens=256),
                attention_backend="triton",
                max_running_requests=4,
                context_length=128,
                cuda_graph_max_bs=4,
            )
            assert runner.graph_runner is not None
            b = PlanBuilder()
            for rid in prompts:
                b.add(rid)
            logits = [runner.forward(b.step(prompts)).logits.float().cpu()]
            for step in range(3):  # teacher-forced: both runs see the same tokens
                plan = b.step({rid: [decode[step][i]] for i, rid in enumerate(prompts)})
                logits.append(runner.forward(plan).logits.float().cpu())
        return logits, spy.calls

    fused, fused_calls = run(disabled=False)
    plain, plain_calls = run(disabled=True)
    assert fused_calls > 0 and plain_calls == 0
    for a, b in zip(fused, plain, strict=True):
        assert rel_err(a, b) < 2e-2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_gemv_rope_epilogue_matches_gemv_then_rope_store(dtype, m, bias):
    """The ROPE epilogue (q/k rotated in the output, k and v stored at the rows' pool slots)
    against the plain GEMV followed by kernels/rotary.py's rope_store, with and without the
    RMSNorm prologue. Both round the product to the dtype before rotating; the compiler may
    contract the rotation's multiply-adds differently in the two kernels, which an fp16
    rounding can show as one ulp (v, copied, is exact)."""
    kern = load_kernel("gemv")
    rotary = load_kernel("rotary")
    from sglrs.layers.rotary import RotaryEmbedding

    hq, hkv, d, k, slots = 4, 2, 16, 64, 10
    n = (hq + 2 * hkv) * d
    gen = torch.Generator().manual_seed(3)
    table = RotaryEmbedding(d, 64, 10000.0, None)
    cos, sin = table.cos_cache.to(DEVICE), table.sin_cache.to(DEVICE)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype).to(DEVICE)

    x, w, g = rand(m, k), rand(n, k), rand(k)
    b = rand(n) if bias else None
    positions = torch.tensor([5, 63][:m], device=DEVICE)
    loc = torch.tensor([7, 2][:m], device=DEVICE)
    for cfg in (kern.GemvConfig(4, 64), kern.GemvConfig(8, 32, num_warps=2)):
        for prologue in (False, True):
            pools = [torch.zeros(slots, hkv, d, dtype=dtype, device=DEVICE) for _ in range(4)]
            rope = kern.RopeStore(positions, cos, sin, loc, pools[0], pools[1], hq, hkv, d)
            assert kern.rope_fits(rope, w, cfg)
            if prologue:
                got, _ = kern.gemv_rmsnorm(x, None, g, EPS, w, b, cfg, rope=rope)
                want, _ = kern.gemv_rmsnorm(x, None, g, EPS, w, b, cfg)
            else:
                got = kern.gemv(x, w, b, cfg, rope=rope)
                want = kern.gemv(x, w, b, cfg)
            qk = want[:, : (hq + hkv) * d].view(m, hq + hkv, d)
            v = want[:, (hq + hkv) * d :].view(m, hkv, d)
            rotary.rope_store(qk, hq, v, positions, cos, sin, pools[2], pools[3], loc)
            ulp = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
            torch.testing.assert_close(got, want, rtol=ulp, atol=ulp)
            torch.testing.assert_close(pools[0], pools[2], rtol=ulp, atol=ulp)
            assert torch.equal(pools[1], pools[3]), (cfg, prologue)


def test_rope_epilogue_refuses_what_it_cannot_take():
    kern = load_kernel("gemv")
    pool = torch.zeros(4, 2, 16)
    rope = kern.RopeStore(torch.zeros(1), pool, pool, torch.zeros(1), pool, pool, 4, 2, 16)
    w = torch.zeros(8 * 16, 64)
    assert not kern.rope_fits(rope, w, kern.GemvConfig(16, 32, use_dot=True))  # tensor cores
    assert not kern.rope_fits(rope, w, kern.GemvConfig(32, 32))  # a tile wider than a head
    assert not kern.rope_fits(rope, torch.zeros(7 * 16, 64), kern.GemvConfig(4, 32))  # heads
    with pytest.raises(ValueError, match="rope epilogue"):
        kern.gemv(torch.zeros(1, 64), w, None, kern.GemvConfig(32, 32), rope=rope)

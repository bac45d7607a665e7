"""The AVX-512 float32 linear kernel agrees with F.linear, packs only what it takes, and the
packed linear path routes decode rows to it and prefill rows to F.linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sglrs.layers import f32_linear
from sglrs.layers.embedding import LMHead
from sglrs.layers.f32_linear import F32Weight
from sglrs.layers.packed_linear import F32_MAX_ROWS, packed_linear, prepack_weight

needs_avx512 = pytest.mark.skipif(not f32_linear.available(), reason="no AVX-512 on this CPU")


def _reference(x, w, b=None):
    """The products summed in float64: the kernel's f32 sums may differ in order only."""
    y = x.double() @ w.double().T
    return (y if b is None else y + b.double()).float()


@needs_avx512
@pytest.mark.parametrize("rows", [1, 5, 12, 13, 32, 64, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_f32_linear_matches_the_exact_product(rows, bias):
    torch.manual_seed(rows)
    w = torch.randn(96, 120)
    x = torch.randn(3, rows, 120)  # leading dims are flattened into rows
    b = torch.randn(96) if bias else None
    packed = f32_linear.pack(w)
    assert isinstance(packed, F32Weight) and (packed.n, packed.k) == (96, 120)
    got = f32_linear.linear(x, packed, b)
    assert got.shape == (3, rows, 96) and got.dtype == torch.float32
    torch.testing.assert_close(got, _reference(x, w, b), atol=1e-4, rtol=1e-5)


@needs_avx512
def test_pack_takes_only_f32_cpu_weights_with_outputs_in_32s():
    assert f32_linear.pack(torch.randn(64, 64).bfloat16()) is None  # bfloat16
    assert f32_linear.pack(torch.randn(48, 64)) is None  # 48 outputs
    assert f32_linear.pack(torch.randn(64, 40)) is not None  # any input size


@needs_avx512
def test_bad_inputs_are_errors():
    packed = f32_linear.pack(torch.randn(32, 64))
    with pytest.raises(ValueError, match="float32"):
        f32_linear.linear(torch.randn(2, 64).bfloat16(), packed)
    with pytest.raises(ValueError, match=r"\[\.\.\., 64\]"):
        f32_linear.linear(torch.randn(2, 32), packed)


@needs_avx512
def test_disabled_by_env(monkeypatch):
    monkeypatch.setenv(f32_linear.DISABLE_ENV, "1")
    assert not f32_linear.available()
    assert f32_linear.pack(torch.randn(64, 64)) is None


@needs_avx512
@pytest.mark.parametrize("rows", [1, F32_MAX_ROWS, F32_MAX_ROWS + 1, 300])
def test_packed_linear_routes_rows(rows):
    torch.manual_seed(rows)
    w, x, b = torch.randn(64, 96), torch.randn(rows, 96), torch.randn(64)
    packed = prepack_weight(w)
    assert isinstance(packed, F32Weight)
    got = packed_linear(x, w, packed, b)
    if rows <= F32_MAX_ROWS:
        assert torch.equal(got, f32_linear.linear(x, packed, b))
    else:  # prefill rows: MKL through F.linear on the plain weight
        assert torch.equal(got, F.linear(x, w, b))


@needs_avx512
def test_lm_head_uses_the_kernel():
    torch.manual_seed(0)
    head = LMHead(96, 64)
    head.weight.weight_loader(head.weight, torch.randn(96, 64))
    assert head.prepack() and isinstance(head._packed, F32Weight)
    x = torch.randn(4, 64)
    logits = head(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, _reference(x, head.weight), atol=1e-4, rtol=1e-5)

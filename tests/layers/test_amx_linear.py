"""The AMX bf16 linear kernel agrees with F.linear, packs only what it takes, and the packed
linear path routes decode rows to it and prefill rows to F.linear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sglrs.layers import amx_linear
from sglrs.layers.amx_linear import AmxWeight
from sglrs.layers.embedding import LMHead
from sglrs.layers.packed_linear import AMX_MAX_ROWS, packed_linear, prepack_weight

needs_amx = pytest.mark.skipif(not amx_linear.available(), reason="no AMX-BF16 on this CPU")


def _f32_reference(x, w, b=None):
    """The exact products summed in float64: the kernel's f32 sums may differ in order only."""
    y = x.double() @ w.double().T
    return (y if b is None else y + b.double()).float()


@needs_amx
@pytest.mark.parametrize("rows", [1, 5, 16, 17, 32, 33, 64, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_amx_linear_matches_the_exact_product(rows, bias):
    torch.manual_seed(rows)
    w = torch.randn(96, 128).bfloat16()
    x = torch.randn(3, rows, 128).bfloat16()  # leading dims are flattened into rows
    b = torch.randn(96).bfloat16() if bias else None
    packed = amx_linear.pack(w)
    assert isinstance(packed, AmxWeight) and (packed.n, packed.k) == (96, 128)
    want = _f32_reference(x, w, b)
    got32 = amx_linear.linear(x, packed, b, torch.float32)
    assert got32.shape == (3, rows, 96) and got32.dtype == torch.float32
    torch.testing.assert_close(got32, want, atol=1e-4, rtol=1e-5)
    # The bf16 output is the f32 result rounded once.
    got16 = amx_linear.linear(x, packed, b)
    assert torch.equal(got16, got32.bfloat16())


@needs_amx
def test_pack_takes_only_bf16_cpu_weights_with_sizes_in_32s():
    assert amx_linear.pack(torch.randn(64, 64)) is None  # float32
    assert amx_linear.pack(torch.randn(48, 64).bfloat16()) is None  # 48 rows
    assert amx_linear.pack(torch.randn(64, 40).bfloat16()) is None  # 40 columns
    assert amx_linear.pack(torch.randn(64, 64).bfloat16()) is not None


@needs_amx
def test_bad_inputs_are_errors():
    packed = amx_linear.pack(torch.randn(32, 64).bfloat16())
    with pytest.raises(ValueError, match="bfloat16"):
        amx_linear.linear(torch.randn(2, 64), packed)
    with pytest.raises(ValueError, match=r"\[\.\.\., 64\]"):
        amx_linear.linear(torch.randn(2, 32).bfloat16(), packed)
    with pytest.raises(ValueError, match="float16"):
        amx_linear.linear(torch.randn(2, 64).bfloat16(), packed, out_dtype=torch.float16)


@needs_amx
def test_disabled_by_env(monkeypatch):
    monkeypatch.setenv(amx_linear.DISABLE_ENV, "1")
    assert not amx_linear.available()
    assert amx_linear.pack(torch.randn(64, 64).bfloat16()) is None


@needs_amx
@pytest.mark.parametrize("rows", [1, AMX_MAX_ROWS, AMX_MAX_ROWS + 1, 300])
def test_packed_linear_routes_rows(rows):
    torch.manual_seed(rows)
    w, x = torch.randn(64, 96).bfloat16(), torch.randn(rows, 96).bfloat16()
    packed = prepack_weight(w)
    assert isinstance(packed, AmxWeight)
    got = packed_linear(x, w, packed)
    if rows <= AMX_MAX_ROWS:
        assert torch.equal(got, amx_linear.linear(x, packed))
    else:  # prefill rows: oneDNN through F.linear on the plain weight
        assert torch.equal(got, F.linear(x, w))


@needs_amx
def test_lm_head_writes_float32_logits_from_the_f32_sums():
    torch.manual_seed(0)
    head = LMHead(96, 64)
    head.weight.weight_loader(head.weight, torch.randn(96, 64))
    head.weight.data = head.weight.data.bfloat16()
    assert head.prepack() and isinstance(head._packed, AmxWeight)
    x = torch.randn(4, 64).bfloat16()
    logits = head(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, _f32_reference(x, head.weight), atol=1e-4, rtol=1e-5)

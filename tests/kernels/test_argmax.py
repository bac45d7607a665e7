"""Row-wise argmax (sglrs.kernels.argmax) equals torch's: first maximum wins, NaN is largest."""

from __future__ import annotations

import pytest
import torch
from kernel_env import DEVICE, load_kernel


@pytest.mark.parametrize("shape", [(1, 128256), (3, 5000), (2, 4096), (1, 7)])
def test_matches_torch(shape):
    kern = load_kernel("argmax")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(shape[1]))
    x[0, -1] = x[0].max() + 1  # the last column wins row 0
    if shape[0] > 1:
        x[1, 3] = x[1, shape[1] // 2] = x[1].max() + 1  # a tie: the first one wins
    if shape[0] > 2:
        x[2, 10] = float("nan")
    got = kern.argmax_rows(x.to(DEVICE)).cpu()
    assert torch.equal(got, x.argmax(dim=-1))

"""Decode and extend attention kernels against a float64 reference over the paged layout."""

from __future__ import annotations

import math

import pytest
import torch
from kernel_env import DEVICE, DTYPES, TOL, load_kernel, rel_err


def paged_case(lens: list[int], hq: int, hkv: int, d: int, dtype: torch.dtype, seed: int):
    """Random K/V in a shuffled pool, a request table with spare rows, random queries."""
    g = torch.Generator().manual_seed(seed)
    total = sum(lens) + 7
    k_buf = torch.randn(total, hkv, d, generator=g).to(dtype)
    v_buf = torch.randn(total, hkv, d, generator=g).to(dtype)
    perm = torch.randperm(total, generator=g)
    table = torch.zeros(len(lens) + 3, max(lens) + 5, dtype=torch.int32)
    rows = torch.randperm(len(lens) + 3, generator=g)[: len(lens)]
    used = 0
    for r, n in zip(rows.tolist(), lens, strict=True):
        table[r, :n] = perm[used : used + n].int()
        used += n
    return k_buf, v_buf, table, rows


def ref_attention(q, k, v, q_pos, scale, window=None):
    """q [E, Hq, D] at absolute positions q_pos; k/v [S, Hkv, D] positions 0..S-1."""
    hq, hkv = q.shape[1], k.shape[1]
    k = k.double().repeat_interleave(hq // hkv, dim=1)
    v = v.double().repeat_interleave(hq // hkv, dim=1)
    s = torch.einsum("ehd,shd->hes", q.double(), k) * scale
    pos = torch.arange(k.shape[0])
    mask = pos[None, :] <= q_pos[:, None]
    if window is not None:
        mask &= q_pos[:, None] - pos[None, :] < window
    s = s.masked_fill(~mask[None], float("-inf"))
    return torch.einsum("hes,shd->ehd", s.softmax(-1), v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "lens,hq,hkv,d,splits,window",
    [
        ([1, 5, 70, 33], 4, 2, 16, 4, None),
        ([129, 3], 6, 2, 32, 2, None),
        ([40, 90], 4, 4, 16, 8, 17),
        ([1], 2, 1, 16, 1, None),
    ],
)
@pytest.mark.parametrize("longest_first", [False, True])
def test_decode_attention(lens, hq, hkv, d, splits, window, dtype, longest_first):
    kern = load_kernel("decode_attention")
    k_buf, v_buf, table, rows = paged_case(lens, hq, hkv, d, dtype, seed=len(lens) * 7 + d)
    q = torch.randn(len(lens), hq, d).to(dtype)
    scale = 1 / math.sqrt(d)
    ws = kern.DecodeWorkspace(len(lens), hq, d, splits, DEVICE)
    out = torch.full_like(q, float("nan"), device=DEVICE)
    kern.decode_attention(
        q.to(DEVICE), k_buf.to(DEVICE), v_buf.to(DEVICE), out, table.to(DEVICE),
        rows.to(DEVICE), torch.tensor(lens, device=DEVICE), scale, splits, ws, window,
        kern.longest_first(torch.tensor(lens, device=DEVICE)) if longest_first else None,
    )  # fmt: skip
    for i, n in enumerate(lens):
        slots = table[rows[i], :n].long()
        ref = ref_attention(q[i : i + 1], k_buf[slots], v_buf[slots], torch.tensor([n - 1]),
                            scale, window)  # fmt: skip
        assert rel_err(out[i : i + 1].cpu(), ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "prefix,extend,hq,hkv,d,window",
    [
        ([0, 3, 0], [5, 40, 1], 4, 2, 16, None),
        ([70, 0], [33, 65], 2, 2, 32, None),
        ([10, 50], [45, 20], 4, 1, 16, 19),
        ([7, 0, 40], [70, 129, 33], 6, 2, 16, None),  # several key tiles and blocks
        ([90, 0], [100, 75], 6, 2, 16, 40),
    ],
)
def test_extend_attention(prefix, extend, hq, hkv, d, window, dtype):
    kern = load_kernel("extend_attention")
    lens = [p + e for p, e in zip(prefix, extend, strict=True)]
    k_buf, v_buf, table, rows = paged_case(lens, hq, hkv, d, dtype, seed=sum(lens))
    t = sum(extend)
    q = torch.randn(t, hq, d).to(dtype)
    qo = torch.tensor([0] + list(torch.tensor(extend).cumsum(0)))
    out = torch.full((t, hq, d), float("nan"), dtype=dtype, device=DEVICE)
    rest = (table.to(DEVICE), rows.to(DEVICE), torch.tensor(prefix, device=DEVICE),
            qo.to(DEVICE), max(extend), 1 / math.sqrt(d), window)  # fmt: skip
    # The new tokens' K/V as the step hands them over: contiguous, in qo_indptr order.
    new = torch.cat([table[rows[i], prefix[i] : lens[i]].long() for i in range(len(lens))])
    kern.extend_attention(
        q.to(DEVICE), k_buf[new].to(DEVICE), v_buf[new].to(DEVICE), k_buf.to(DEVICE),
        v_buf.to(DEVICE), out, *rest,
    )  # fmt: skip
    for i in range(len(lens)):
        slots = table[rows[i], : lens[i]].long()
        q_pos = torch.arange(prefix[i], lens[i])
        ref = ref_attention(q[qo[i] : qo[i + 1]], k_buf[slots], v_buf[slots], q_pos,
                            1 / math.sqrt(d), window)  # fmt: skip
        assert rel_err(out[qo[i] : qo[i + 1]].cpu(), ref) < TOL[dtype]


@pytest.mark.parametrize("page_size", [1, 4])
def test_page_table(page_size):
    kern = load_kernel("page_table")
    table = torch.arange(3 * 64, dtype=torch.int32).view(3, 64).flip(0).contiguous()
    rows = torch.tensor([2, 0])
    pages = torch.tensor([3, 5])
    indptr = torch.tensor([0, 3, 8])
    out = torch.full((8,), -1, dtype=torch.int32, device=DEVICE)
    start = torch.tensor([1, 0])
    kern.build_page_table(table.to(DEVICE), rows.to(DEVICE), pages.to(DEVICE),
                          indptr.to(DEVICE), out, page_size, start.to(DEVICE))  # fmt: skip
    want = [table[2, (1 + j) * page_size] // page_size for j in range(3)]
    want += [table[0, j * page_size] // page_size for j in range(5)]
    assert out.cpu().tolist() == [int(w) for w in want]

"""The Rust paged decode kernel (`sglrs.attention.cpu_decode`) against SDPA over K/V gathered
from the pool, and its input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sglrs.attention.cpu_decode import paged_decode_attention

TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def make_pool(
    seq_lens: list[int],
    hq: int,
    hkv: int,
    d: int,
    dtype: torch.dtype,
    stride: int = 64,
    seed: int = 0,
) -> dict:
    """Random K/V in a pool with spare slots; each request's slots shuffled over the pool and
    its table row reversed from its batch index (as after churn)."""
    gen = torch.Generator().manual_seed(seed)
    num_slots = sum(seq_lens) + 7
    b = len(seq_lens)
    perm = torch.randperm(num_slots, generator=gen).to(torch.int32)
    table = torch.full((b + 2, stride), -1, dtype=torch.int32)
    rows = torch.arange(b + 1, 1, -1)
    at = 0
    for r, n in enumerate(seq_lens):
        table[rows[r], :n] = perm[at : at + n]
        at += n
    return {
        "q": torch.randn(b, hq, d, generator=gen).to(dtype),
        "k_buffer": torch.randn(num_slots, hkv, d, generator=gen).to(dtype),
        "v_buffer": torch.randn(num_slots, hkv, d, generator=gen).to(dtype),
        "req_to_token": table,
        "req_pool_indices": rows,
        "seq_lens": torch.tensor(seq_lens),
        "scale": d**-0.5,
    }


def sdpa_reference(p: dict, window: int | None) -> torch.Tensor:
    """Per request: its K/V gathered by index_select, SDPA in float32 over the same values."""
    q, kb, vb = p["q"].float(), p["k_buffer"].float(), p["v_buffer"].float()
    out = torch.empty_like(q)
    rows, lens = p["req_pool_indices"].tolist(), p["seq_lens"].tolist()
    for b, (row, n) in enumerate(zip(rows, lens, strict=True)):
        first = 0 if window is None else max(0, n - window)
        idx = p["req_to_token"][row, first:n].long()
        keys, values = kb.index_select(0, idx), vb.index_select(0, idx)  # [S, Hkv, D]
        out[b] = F.scaled_dot_product_attention(
            q[b][:, None],  # [Hq, 1, D]
            keys.transpose(0, 1),
            values.transpose(0, 1),
            scale=p["scale"],
            enable_gqa=True,
        )[:, 0]
    return out


def check(p: dict, window: int | None = None, **kw) -> None:
    got = paged_decode_attention(**p, sliding_window=window, **kw)
    assert got.dtype == p["q"].dtype and got.shape == p["q"].shape
    want = sdpa_reference(p, window)
    torch.testing.assert_close(got.float(), want, atol=TOL[got.dtype], rtol=TOL[got.dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("hq", "hkv", "d"), [(4, 4, 64), (9, 3, 64), (8, 1, 128), (6, 2, 80)])
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_sdpa_on_gathered_kv(dtype, hq, hkv, d, threads):
    p = make_pool([1, 17, 40, 33, 64, 2], hq, hkv, d, dtype, seed=hq * d)
    check(p, num_threads=threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("window", [1, 3, 16, 40, 100])
def test_sliding_window(dtype, window):
    check(make_pool([1, 5, 40, 64], 4, 2, 64, dtype, seed=window), window)


def test_long_context_and_numpy_request_arrays():
    p = make_pool([3000, 5], 4, 1, 64, torch.float32, stride=3000)
    p["req_pool_indices"] = p["req_pool_indices"].numpy().astype("int32")
    p["seq_lens"] = p["seq_lens"].numpy()
    p["scale"] = 2.0  # large scores: the online softmax must stay stable
    got = paged_decode_attention(**p)
    assert torch.isfinite(got).all()
    p["req_pool_indices"] = torch.from_numpy(p["req_pool_indices"])
    p["seq_lens"] = torch.from_numpy(p["seq_lens"])
    torch.testing.assert_close(got, sdpa_reference(p, None), atol=1e-4, rtol=1e-4)


def test_strided_q_and_given_out():
    p = make_pool([9, 4, 30], 4, 2, 64, torch.bfloat16)
    # q as the first heads of a fused qkv row, as the model's projection produces it.
    qkv = torch.randn(3, (4 + 2 * 2) * 64).to(torch.bfloat16)
    p["q"] = qkv[:, : 4 * 64].view(3, 4, 64)
    assert not p["q"].is_contiguous()
    out = torch.empty(3, 4, 64, dtype=torch.bfloat16)
    got = paged_decode_attention(**p, out=out)
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(got.float(), sdpa_reference(p, None), atol=2e-2, rtol=2e-2)


def test_empty_batch():
    p = make_pool([], 4, 2, 8, torch.float32)
    assert paged_decode_attention(**p).shape == (0, 4, 8)


def bad(p: dict, match: str, **kw) -> None:
    with pytest.raises(ValueError, match=match):
        paged_decode_attention(**p, **kw)


def test_bad_inputs_raise():
    def fresh() -> dict:
        return make_pool([3, 5], 4, 2, 8, torch.float32, stride=6)

    p = fresh()
    row = int(p["req_pool_indices"][1])
    p["req_to_token"][row, 4] = p["k_buffer"].shape[0]  # one past the last slot
    bad(p, "request 1 position 4 has KV slot")
    p["req_to_token"][row, 4] = -3
    bad(p, "KV slot -3")

    p = fresh()
    p["seq_lens"] = torch.tensor([3, 7])  # longer than the table stride
    bad(p, "seq_len 7")
    p["seq_lens"] = torch.tensor([0, 5])
    bad(p, "seq_len 0")
    p = fresh()
    p["req_pool_indices"] = torch.tensor([0, 99])
    bad(p, "table row 99")
    p["req_pool_indices"] = torch.tensor([0, -1])
    bad(p, "req_pool_indices")
    p = fresh()
    p["seq_lens"] = torch.tensor([3])
    bad(p, "must be 1-D with B = 2")

    p = fresh()
    p["req_to_token"] = p["req_to_token"].long()
    bad(p, "int32")
    p = fresh()
    p["k_buffer"] = p["k_buffer"].to(torch.bfloat16)
    bad(p, "share a dtype")
    p = fresh()
    p["q"] = p["q"].to(torch.int32)
    bad(p, "not supported")
    p = fresh()
    p["q"] = p["q"][:, :3]
    bad(p, "not a multiple")
    p = fresh()
    p["k_buffer"] = p["k_buffer"].transpose(0, 1).contiguous().transpose(0, 1)
    bad(p, "contiguous")
    p = fresh()
    p["v_buffer"] = p["v_buffer"][:-1]
    bad(p, r"\[num_slots, Hkv, D\]")
    p = fresh()
    p["q"] = p["q"].to("meta")
    bad(p, "must be on the CPU")
    p = fresh()
    bad(p, "out must be", out=torch.empty(2, 4, 7))
    bad(p, "out overlaps q", out=p["q"])
    bad(p, "sliding_window", sliding_window=0)
    bad(p, "num_threads", num_threads=0)

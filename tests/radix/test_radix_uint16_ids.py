"""sglrs.RadixCache with uint16 token ids (vocabularies below 65,536): read in place like
int32/int64, with the same results as int32 ids, narrow edges compared at their own width and
wide ones (tokens >= 65,536 inserted as int32) widened."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from sglrs import RadixCache


def doc_ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65_536, n).astype(np.int64)


def replay(dtype: type, requests: list[np.ndarray]) -> list[tuple[int, list[int], int]]:
    """Match, alloc, insert, free duplicates for each request; (matched, slots, cached) each."""
    cache = RadixCache(20_000)
    out = []
    for tokens in requests:
        t = tokens.astype(dtype)
        n, prefix, node = cache.match_prefix(t)
        cache.lock(node)
        own = cache.alloc(len(t) - n)
        assert own is not None
        cached = cache.insert(t, np.concatenate([prefix, own]))
        if cached > n:
            cache.free(own[: cached - n])
        cache.unlock(node)
        out.append((n, prefix.tolist(), cached))
    cache.check_integrity()
    return out


def test_uint16_and_int32_ids_build_and_match_the_same_tree() -> None:
    doc = doc_ids(3_000)
    doc[[0, 1_500, 2_999]] = [65_535, 0, 65_535]
    requests = [
        doc,
        np.concatenate([doc[:2_000], doc_ids(300, 1)]),
        np.concatenate([doc, doc_ids(50, 2)]),
        doc[:1_234],
        doc_ids(700, 3),
        np.concatenate([doc[:10], doc_ids(5, 4)]),
        doc,
    ]
    assert replay(np.uint16, requests) == replay(np.int32, requests)


def test_long_uint16_queries_match_exactly_at_any_offset_and_alignment() -> None:
    """Views into a larger uint16 array (read in place at every offset from a cache line, 32
    ids to a line) against a 5,000-token narrow edge, differing at vector and block edges."""
    cache = RadixCache(12_000)
    doc = doc_ids(5_000)
    slots = cache.alloc(5_000)
    assert cache.insert(doc.astype(np.uint16), slots) == 0
    for skew in range(0, 33, 3):
        backing = np.zeros(skew + 5_010, dtype=np.uint16)
        query = backing[skew : skew + 5_010]
        query[:5_000] = doc
        query[5_000:] = 7
        assert query.base is backing and query.flags.c_contiguous
        for cut in [0, 31, 32, 255, 287, 288, 2_500, 4_999]:
            query[cut] ^= 1 << 15
            n, got, _ = cache.match_prefix(query)
            assert n == cut and np.array_equal(got, slots[:cut]), (skew, cut)
            query[cut] = doc[cut]
        n, got, _ = cache.match_prefix(query)
        assert n == 5_000 and np.array_equal(got, slots)
    cache.check_integrity()


def test_uint16_queries_against_wide_edges_stop_at_the_first_large_token() -> None:
    cache = RadixCache(10_000)
    doc = doc_ids(2_000)
    wide = np.concatenate([doc, [65_536, 70_000], doc[:300]]).astype(np.int32)
    slots = cache.alloc(len(wide))
    assert cache.insert(wide, slots) == 0
    # 65,536 as uint16 wraps to 0: still a different token than the edge's.
    for tail in ([0, 4_464], [65_535, 1], []):
        query = np.concatenate([doc, tail]).astype(np.uint16)
        n, got, _ = cache.match_prefix(query)
        assert n == 2_000 and np.array_equal(got, slots[:2_000])
    own = cache.alloc(2)
    tokens = np.concatenate([doc, [0, 4_464]]).astype(np.uint16)
    assert cache.insert(tokens, np.concatenate([slots[:2_000], own])) == 2_000
    n, got, _ = cache.match_prefix(tokens)
    assert n == 2_002 and np.array_equal(got[2_000:], own)
    cache.check_integrity()


@pytest.mark.parametrize("slot_dtype", [np.int32, np.int64, np.uint32])
def test_uint16_tokens_with_every_slot_dtype(slot_dtype: type) -> None:
    cache = RadixCache(64)
    tokens = np.array([5, 6, 7, 65_535, 0], dtype=np.uint16)
    slots = cache.alloc(5)
    assert cache.insert(tokens, slots.astype(slot_dtype)) == 0
    n, got, _ = cache.match_prefix(tokens)
    assert (n, got.tolist()) == (5, slots.tolist())
    cache.check_integrity()


def unaligned_uint16(ids: list[int]) -> np.ndarray:
    """A uint16 array at an odd address (not readable in place: converted)."""
    raw = b"\0" + np.array(ids, dtype=np.uint16).tobytes()
    arr = np.frombuffer(raw, dtype=np.uint16, offset=1)
    assert not arr.flags.aligned
    return arr


@pytest.mark.parametrize(
    "make",
    [
        lambda ids: array("H", ids),
        lambda ids: np.array(ids, dtype=np.uint16)[::-1][::-1],  # a reversed view of a view
        lambda ids: np.repeat(np.array(ids, dtype=np.uint16), 2)[::2],  # strided: converted
        lambda ids: np.array(ids, dtype=">u2"),  # other byte order: swapped, then read
        unaligned_uint16,
    ],
    ids=["array_H", "view", "strided", "big_endian", "unaligned"],
)
def test_other_uint16_buffers_give_the_same_ids(make) -> None:  # noqa: ANN001
    cache = RadixCache(64)
    ids = [9, 65_535, 3, 0, 12]
    slots = cache.alloc(5)
    assert cache.insert(np.array(ids, dtype=np.int32), slots) == 0
    n, got, _ = cache.match_prefix(make(ids))
    assert (n, got.tolist()) == (5, slots.tolist())
    own = cache.alloc(1)
    assert cache.insert(make([*ids, 1]), np.concatenate([slots, own])) == 5
    assert cache.match_prefix(np.array([*ids, 1], dtype=np.uint16))[0] == 6
    cache.check_integrity()


def test_bad_uint16_inputs_are_value_errors_and_leave_the_tree_intact() -> None:
    cache = RadixCache(64)
    tokens = np.arange(10, dtype=np.uint16)
    slots = cache.alloc(10)
    assert cache.insert(tokens, slots) == 0
    longer = np.arange(12, dtype=np.uint16)
    own = cache.alloc(2)
    before = (cache.total_size(), cache.available(), cache.stats())
    row = np.concatenate([slots, own])
    with pytest.raises(ValueError, match="tokens .* and slots .* differ in length|length"):
        cache.insert(longer, row[:11])
    bad = row.copy()
    bad[11] = -5
    with pytest.raises(ValueError, match="slot_ids: value -5 at position 11 is out of range"):
        cache.insert(longer, bad)
    bad[11] = 64
    with pytest.raises(ValueError, match="slot_ids: slot 64 is out of range"):
        cache.insert(longer, bad)
    bad[11] = slots[3]
    with pytest.raises(ValueError, match="already cached"):
        cache.insert(longer, bad)
    with pytest.raises(ValueError, match="expected a 1-D buffer"):
        cache.match_prefix(np.zeros((2, 3), dtype=np.uint16))
    with pytest.raises(ValueError, match="expected a 1-D buffer"):
        cache.insert(np.zeros((2, 6), dtype=np.uint16), row)
    assert (cache.total_size(), cache.available(), cache.stats()) == before
    cache.check_integrity()
    # The refused inserts left nothing behind: the same insert now succeeds.
    assert cache.insert(longer, row) == 10
    assert cache.match_prefix(longer)[0] == 12
    cache.check_integrity()

"""sglrs.RadixCache with ids read in place: numpy int64/int32/uint32 inputs without a copy,
matched slots shared with the tree (read-only views), and validation of every id the cache
reads (the caller's slots for an already-cached prefix are its own and are not read)."""

from __future__ import annotations

import numpy as np
import pytest

from sglrs import RadixCache


def fill(cache: RadixCache, tokens: np.ndarray) -> np.ndarray:
    slots = cache.alloc(len(tokens))
    assert slots is not None
    assert cache.insert(tokens, slots) == 0
    return slots


def test_long_one_edge_match_is_a_read_only_view_that_outlives_the_node() -> None:
    cache = RadixCache(20_000)
    doc = np.arange(10_000, dtype=np.int64) * 3
    slots = fill(cache, doc)
    query = np.concatenate([doc[:9_000], [1]])
    n, got, node = cache.match_prefix(query)
    assert n == 9_000 and got.dtype == np.int32
    assert np.array_equal(got, slots[:9_000])
    assert not got.flags.writeable
    with pytest.raises(ValueError):
        got[0] = 5
    with pytest.raises(ValueError):
        got.flags.writeable = True
    # The match split the edge; eviction then frees both parts: the view is unchanged.
    cache.check_integrity()
    assert len(cache.evict(20_000)) == 10_000
    cache.reset()
    assert np.array_equal(got, slots[:9_000])
    with pytest.raises(ValueError, match="stale"):
        cache.lock(node)


def test_every_match_result_is_read_only_and_misses_share_one_empty_array() -> None:
    cache = RadixCache(100)
    fill(cache, np.array([1, 2, 3]))
    own = cache.alloc(5)
    assert cache.insert([1, 2, 3, 4, 5], own) == 3  # a second edge under the first
    cache.free(own[:3])
    n, two_edges, _ = cache.match_prefix([1, 2, 3, 4, 5])
    assert n == 5 and not two_edges.flags.writeable
    n, short, _ = cache.match_prefix([1, 2])
    assert n == 2 and not short.flags.writeable
    miss_a = cache.match_prefix([9])
    miss_b = cache.match_prefix(np.array([], dtype=np.int64))
    assert miss_a[0] == miss_b[0] == 0
    assert miss_a[1].shape == (0,) and not miss_a[1].flags.writeable
    assert miss_a[2] == miss_b[2]


@pytest.mark.parametrize(
    "token_dtype", [np.int64, np.int32, np.uint32, np.int16, np.uint64, ">i4", ">i8", ">u4"]
)
@pytest.mark.parametrize("slot_dtype", [np.int32, np.int64, np.uint32])
def test_integer_dtypes_and_strided_arrays_give_the_same_tree(
    token_dtype: type, slot_dtype: type
) -> None:
    cache = RadixCache(64)
    tokens = np.array([5, 6, 7, 8, 9, 10], dtype=token_dtype)
    slots = cache.alloc(6)
    assert cache.insert(tokens, slots.astype(slot_dtype)) == 0
    n, got, _ = cache.match_prefix(tokens[::2].copy())  # [5, 7, 9]: only 5 matches
    assert (n, got.tolist()) == (1, slots[:1].tolist())
    n, got, _ = cache.match_prefix(np.array([5, 6, 7, 8, 9, 10, 11], dtype=np.int64)[:6])
    assert (n, got.tolist()) == (6, slots.tolist())
    strided = np.repeat(tokens, 2)[::2]  # not contiguous: converted, same ids
    assert not strided.flags.c_contiguous
    assert cache.match_prefix(strided)[0] == 6
    cache.check_integrity()


def test_invalid_ids_anywhere_are_value_errors_and_leave_the_tree_intact() -> None:
    cache = RadixCache(64)
    slots = fill(cache, np.arange(10, dtype=np.int64))
    calls = cache.stats()["match_calls"]
    bad_queries = [
        (np.array([0, 1, 2, -4], dtype=np.int64), "position 3"),
        (np.array([0, 1, 2**32], dtype=np.int64), "position 2"),
        (np.array([0, 1, -1], dtype=np.int32), "position 2"),
    ]
    for query, where in bad_queries:
        with pytest.raises(ValueError, match=f"tokens: value .* at {where} is out of range"):
            cache.match_prefix(query)
    assert cache.stats()["match_calls"] == calls
    # Inserting: a bad token past the cached part, a bad slot in the new part (adopted).
    own = cache.alloc(2)
    row = np.concatenate([slots, own])
    with pytest.raises(ValueError, match="tokens: value -1 at position 11"):
        cache.insert(np.array([*range(11), -1]), row)
    new_bad = row.copy()
    new_bad[11] = -5
    with pytest.raises(ValueError, match="slot_ids: value -5 at position 11 is out of range"):
        cache.insert(np.arange(12), new_bad)
    with pytest.raises(ValueError, match="slot_ids: slot 64 is out of range"):
        cache.insert(np.arange(12), np.concatenate([slots, [own[0], 64]]).astype(np.int64))
    assert cache.total_size() == 10 and cache.available() == 64 - 12
    cache.check_integrity()
    # The slots of the cached prefix are the caller's duplicates: not read (free checks them).
    cached_bad = row.copy()
    cached_bad[3] = -3
    assert cache.insert(np.arange(12), cached_bad) == 10
    with pytest.raises(ValueError, match="out of range"):
        cache.free(cached_bad[:10])
    n, got, _ = cache.match_prefix(np.arange(12))
    assert n == 12 and np.array_equal(got, row)
    cache.check_integrity()


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
def test_long_queries_match_exactly_at_any_offset_and_alignment(dtype: type) -> None:
    """A 5,000-token edge compared with queries that start at every offset from a cache line
    (views into a larger array) and differ or hold an invalid id at block boundaries."""
    cache = RadixCache(12_000)
    doc = (np.arange(5_000, dtype=np.int64) * 7919) % 30_000
    slots = fill(cache, doc.astype(dtype))
    for skew in range(8):
        backing = np.zeros(skew + 5_010, dtype=dtype)
        query = backing[skew : skew + 5_010]
        query[:5_000] = doc
        query[5_000:] = 31_000
        for cut in [0, 15, 16, 127, 143, 144, 2_500, 4_999]:
            query[cut] = 31_001
            n, got, _ = cache.match_prefix(query)
            assert n == cut and np.array_equal(got, slots[:cut]), (skew, cut)
            if dtype != np.uint32:
                query[cut] = -1
                with pytest.raises(ValueError, match=f"tokens: value -1 at position {cut} "):
                    cache.match_prefix(query)
            query[cut] = doc[cut]
        n, got, _ = cache.match_prefix(query)
        assert n == 5_000 and np.array_equal(got, slots)
    cache.check_integrity()


def test_long_insert_checks_the_adopted_slots_and_skips_the_cached_ones() -> None:
    cache = RadixCache(12_000)
    doc = np.arange(5_000, dtype=np.int32)
    slots = fill(cache, doc)
    own = cache.alloc(10)
    tokens = np.concatenate([doc, np.arange(10, dtype=np.int32) + 20_000])
    for at in [0, 3, 9]:
        row = np.concatenate([slots, own])
        row[5_000 + at] = 12_000
        with pytest.raises(ValueError, match="slot_ids: slot 12000 is out of range"):
            cache.insert(tokens, row)
    assert cache.total_size() == 5_000
    cache.check_integrity()
    # Bad ids among the duplicates of the cached prefix are not read.
    row = np.concatenate([slots, own])
    row[[0, 17, 2_500, 4_999]] = [12_000, -1, 2**31 - 1, 7]
    assert cache.insert(tokens, row) == 5_000
    n, got, _ = cache.match_prefix(tokens)
    assert n == 5_010 and np.array_equal(got, np.concatenate([slots, own]))
    cache.check_integrity()


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
def test_token_ids_above_65535_share_the_tree_with_narrow_edges(dtype: type) -> None:
    """Edges store tokens as u16 when all fit: prompts mixing small and large ids (>= 2^16)
    match, split and evict exactly, whichever width each edge has."""
    cache = RadixCache(50_000)
    rng = np.random.default_rng(0)
    doc = rng.integers(0, 65_536, 3_000).astype(dtype)
    doc[[0, 1_500]] = [65_535, 0]
    slots = fill(cache, doc)
    big = np.array([65_536, 70_000, 2**31 - 1], dtype=dtype)
    tail = np.concatenate([doc[:2_000], big, doc[2_000:2_100]])
    own = cache.alloc(len(tail) - 2_000)
    assert cache.insert(tail, np.concatenate([slots[:2_000], own])) == 2_000
    for query, want in [
        (doc, slots),
        (tail, np.concatenate([slots[:2_000], own])),
        (np.concatenate([doc[:2_000], big[:2], [5]]).astype(dtype), None),
        (np.concatenate([doc[:999], [65_536]]).astype(dtype), slots[:999]),
    ]:
        n, got, _ = cache.match_prefix(query)
        if want is None:
            want = np.concatenate([slots[:2_000], own[:2]])
        assert n == len(want) and np.array_equal(got, want)
        cache.check_integrity()
    # A wide edge split so that its lower part holds only small ids, then evicted.
    n, _, _ = cache.match_prefix(tail[: 2_000 + 3])
    assert n == 2_003
    cache.check_integrity()
    assert len(cache.evict(50_000)) == 3_000 + 103
    assert cache.total_size() == 0
    cache.check_integrity()

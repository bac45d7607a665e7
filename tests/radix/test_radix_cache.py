"""Tests of sglrs.RadixCache: the radix-tree KV cache and its slot allocator."""

from __future__ import annotations

import array
import threading

import numpy as np
import pytest

from sglrs import RadixCache, RadixNode


def cached(cache: RadixCache, tokens: list[int]) -> np.ndarray:
    """Allocate slots for `tokens`, insert them, and return the slots."""
    slots = cache.alloc(len(tokens))
    assert slots is not None
    assert cache.insert(tokens, slots) == 0
    return slots


def test_match_insert_split_and_slots() -> None:
    cache = RadixCache(100)
    slots = cached(cache, [1, 2, 3, 4])
    n, got, node = cache.match_prefix([1, 2, 3, 9])
    assert n == 3
    assert got.dtype == np.int32
    assert got.tolist() == slots[:3].tolist()
    assert cache.total_size() == 4
    # Inserting a longer sequence returns the cached length; the caller frees its duplicates.
    more = cache.alloc(6)
    assert cache.insert([1, 2, 3, 4, 5, 6], more) == 4
    cache.free(more[:4])
    assert cache.total_size() == 6
    assert cache.available() == 100 - 6
    n, got, _ = cache.match_prefix(np.array([1, 2, 3, 4, 5, 6, 7]))
    assert (n, got.tolist()) == (6, slots.tolist() + more[4:].tolist())
    cache.check_integrity()
    assert isinstance(node, RadixNode) and repr(node).startswith("RadixNode(")
    assert cache.match_prefix([1, 2, 3])[2] == node  # handles compare by node identity


def test_empty_match_returns_root_and_empty_slots() -> None:
    cache = RadixCache(16)
    n, got, node = cache.match_prefix([])
    assert n == 0 and got.shape == (0,) and got.dtype == np.int32
    cache.lock(node)  # locking the root protects nothing
    cache.unlock(node)
    assert cache.protected_size() == 0


def test_lock_unlock_and_evict_lru_order() -> None:
    cache = RadixCache(64)
    a = cached(cache, [1, 1, 1])
    b = cached(cache, [2, 2, 2])
    c = cached(cache, [3, 3, 3])
    _, _, node_a = cache.match_prefix([1, 1, 1])  # a is now the most recent
    cache.lock(node_a)
    assert (cache.protected_size(), cache.evictable_size()) == (3, 6)
    before = cache.available()
    freed = cache.evict(1)
    assert freed.tolist() == b.tolist()  # b is the least recently used
    assert cache.available() == before + 3
    assert cache.evict(100).tolist() == c.tolist()  # a is locked
    cache.unlock(node_a)
    assert cache.evict(100).tolist() == a.tolist()
    assert cache.total_size() == 0 and cache.available() == 64
    stats = cache.stats()
    assert stats["evicted_tokens"] == 9 and stats["match_calls"] == 1
    assert stats["hit_tokens"] == 3 and stats["queried_tokens"] == 3
    assert stats["inserted_tokens"] == 9
    cache.check_integrity()


def test_paging() -> None:
    cache = RadixCache(64, page_size=4)
    assert cache.page_size == 4 and cache.capacity() == 64
    slots = cache.alloc(12)
    # Only whole pages are cached: 10 tokens -> 8 cached, the caller keeps the last page.
    assert cache.insert(list(range(10)), slots[:10]) == 0
    assert cache.total_size() == 8
    cache.free(slots[8:12])
    n, got, _ = cache.match_prefix(list(range(7)))
    assert (n, got.tolist()) == (4, slots[:4].tolist())
    with pytest.raises(ValueError, match="multiple of page_size"):
        cache.alloc(3)
    cache.check_integrity()


def test_free_plus_cached_plus_held_is_capacity() -> None:
    """The scheduler protocol: match, lock, alloc the suffix, insert, unlock, evict when dry."""
    rng = np.random.default_rng(0)
    cache = RadixCache(256, page_size=2)
    system = rng.integers(0, 1000, 40)
    held = 0
    for _ in range(60):
        prompt = np.concatenate([system, rng.integers(0, 1000, int(rng.integers(1, 30)))])
        n, prefix, node = cache.match_prefix(prompt)
        cache.lock(node)
        need = -(-(len(prompt) - n) // 2) * 2
        own = cache.alloc(need)
        if own is None:
            cache.evict(need - cache.available())
            own = cache.alloc(need)
        assert own is not None
        held = len(own)
        assert cache.available() + cache.total_size() + held == cache.capacity()
        row = np.concatenate([prefix, own[: len(prompt) - n]])
        already = cache.insert(prompt, row)
        assert already == n
        adopted = len(prompt) // 2 * 2 - n
        cache.free(own[adopted:])
        held = 0
        cache.unlock(node)
        assert cache.available() + cache.total_size() + held == cache.capacity()
        cache.check_integrity()
    cache.reset()
    assert cache.available() == cache.capacity() and cache.total_size() == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda v: v,
        lambda v: np.array(v, dtype=np.int64),
        lambda v: np.array(v, dtype=np.int32),
        lambda v: np.array(v, dtype=np.uint32),
        lambda v: np.array(v, dtype=np.int16),
        lambda v: np.array(v, dtype=np.int64)[::-1][::-1],  # a view
        lambda v: np.repeat(np.array(v, dtype=np.int64), 2)[::2],  # non-contiguous
        lambda v: array.array("q", v),
        lambda v: bytes(v),
        lambda v: bytearray(v),
        lambda v: memoryview(array.array("i", v)),
    ],
    ids=[
        "list",
        "int64",
        "int32",
        "uint32",
        "int16",
        "view",
        "strided",
        "array_q",
        "bytes",
        "bytearray",
        "memoryview",
    ],
)
def test_input_buffer_kinds(make) -> None:
    cache = RadixCache(32)
    tokens = [5, 6, 7, 8]
    slots = cache.alloc(4)
    assert cache.insert(make(tokens), make(slots.tolist())) == 0
    n, got, _ = cache.match_prefix(make(tokens))
    assert (n, got.tolist()) == (4, slots.tolist())
    cache.check_integrity()


def test_bad_construction() -> None:
    for cap, page in [(0, 1), (-5, 1), (16, 0), (16, -1), (3, 4)]:
        with pytest.raises(ValueError):
            RadixCache(cap, page)


def test_bad_inputs_raise_value_error_and_leave_cache_intact() -> None:
    cache = RadixCache(32)
    slots = cached(cache, [1, 2, 3])
    own = cache.alloc(2)
    state = (cache.total_size(), cache.available(), cache.evictable_size())

    def intact() -> None:
        assert (cache.total_size(), cache.available(), cache.evictable_size()) == state
        cache.check_integrity()

    bad_calls = [
        (lambda: cache.match_prefix([1, -2]), "out of range"),
        (lambda: cache.match_prefix(np.array([1, -2])), "out of range"),
        (lambda: cache.insert([1, 2], [own[0], -1]), "out of range"),
        (lambda: cache.insert([1, 2, 3, 4], own[:1]), "length mismatch"),
        (lambda: cache.insert([9], [1000]), "out of range"),
        (lambda: cache.insert([9, 9], [own[0], own[0]]), "already cached"),
        (lambda: cache.insert([9], slots[:1]), "already cached"),
        (lambda: cache.insert([9], [31]), "free"),  # never allocated
        (lambda: cache.free([31]), "double free"),
        (lambda: cache.free([40]), "out of range"),
        (lambda: cache.free(slots[:1]), "cached in the tree"),
        (lambda: cache.evict(-1), "must be >= 0"),
        (lambda: cache.alloc(-1), "must be >= 0"),
        (lambda: cache.match_prefix([1.5, 2.0]), "integers"),
    ]
    for call, message in bad_calls:
        with pytest.raises((ValueError, TypeError), match=message):
            call()
        intact()


def test_node_handles() -> None:
    cache = RadixCache(32)
    other = RadixCache(32)
    cached(cache, [1, 2])
    _, _, node = cache.match_prefix([1, 2])
    with pytest.raises(ValueError, match="another RadixCache"):
        other.lock(node)
    with pytest.raises(ValueError, match="not locked"):
        cache.unlock(node)
    cache.lock(node)
    with pytest.raises(ValueError, match="locked"):
        cache.reset()
    cache.unlock(node)
    cache.evict(2)
    with pytest.raises(ValueError, match="stale"):
        cache.lock(node)
    with pytest.raises(ValueError, match="stale"):
        cache.unlock(node)
    cache.check_integrity()


def test_long_prompt_releases_gil_and_works() -> None:
    cache = RadixCache(200_000, page_size=16)
    tokens = np.arange(131_072, dtype=np.int64)
    slots = cache.alloc(len(tokens))
    assert cache.insert(tokens, slots) == 0
    probe = tokens.copy()
    probe[70_000] = 999_999
    n, got, node = cache.match_prefix(probe)
    assert n == 70_000 // 16 * 16
    assert np.array_equal(got, slots[:n])
    cache.lock(node)
    assert len(cache.evict(10**9)) == len(tokens) - n
    cache.unlock(node)
    assert cache.memory_bytes() / cache.total_size() <= 16
    cache.check_integrity()


def test_threads_share_one_cache() -> None:
    """Heavy calls release the GIL; concurrent callers must still see a consistent cache."""
    cache = RadixCache(1 << 16)
    system = np.arange(5000, dtype=np.int64)
    errors: list[BaseException] = []
    lock = threading.Lock()  # guards the caller-side "alloc then insert" bookkeeping only

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(40):
                prompt = np.concatenate([system, rng.integers(10_000, 20_000, 100)])
                n, prefix, node = cache.match_prefix(prompt)
                cache.lock(node)
                with lock:
                    own = cache.alloc(len(prompt) - n)
                    if own is None:
                        cache.evict(len(prompt))
                        own = cache.alloc(len(prompt) - n)
                assert own is not None
                already = cache.insert(prompt, np.concatenate([prefix, own]))
                cache.free(own[: already - n])
                cache.unlock(node)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    cache.check_integrity()
    assert cache.protected_size() == 0
    assert cache.available() + cache.total_size() == cache.capacity()


def test_slots_in_any_order() -> None:
    cache = RadixCache(64, page_size=2)
    slots = cache.alloc(8)
    pages = slots.reshape(4, 2)[[2, 0, 3, 1]].ravel()  # whole pages, out of order
    assert cache.insert(list(range(8)), pages) == 0
    cache.check_integrity()
    assert sorted(cache.evict(8).tolist()) == sorted(slots.tolist())
    assert cache.available() == 64
    cache.check_integrity()

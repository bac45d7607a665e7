"""Matcher API on a tiny byte-level tokenizer: masks, EOS, rollback, batches, threads."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from grammar_helpers import TINY_EOS, ByteTokens, accepts_fully, allowed_ids, tiny_tokenizer_json

from sglrs.grammar import (
    Grammar,
    GrammarCache,
    Matcher,
    TokenizerInfo,
    allocate_bitmask,
    fill_bitmasks,
)


def test_tokenizer_info(tiny_info: TokenizerInfo) -> None:
    assert tiny_info.eos_token_ids == [TINY_EOS]
    assert tiny_info.mask_words == (tiny_info.vocab_size + 31) // 32
    assert tiny_info.token_bytes(TINY_EOS) == b""
    assert tiny_info.token_bytes(2) == b""  # added (non-special) tokens are never text
    tok = ByteTokens(tiny_info)
    assert tiny_info.token_bytes(tok.by_bytes["é".encode()]) == "é".encode()
    padded = TokenizerInfo.from_tokenizer_json(
        tiny_tokenizer_json(), [TINY_EOS], vocab_size=tiny_info.vocab_size + 100
    )
    assert padded.vocab_size == tiny_info.vocab_size + 100


@pytest.mark.parametrize(
    ("pattern", "text", "ok"),
    [
        (r"[a-z]+(\.[a-z]+)*", "a.b", True),
        (r"[a-z]+(\.[a-z]+)*", "a.", False),
        (r"[a-z0-9._]+@[a-z]+\.org", "x.y@a.org", True),
        ("aé+b", "aéééb", True),
        ("(true|false)", "true", True),
        ("(true|false)", "truefalse", False),
    ],
)
def test_regex_acceptance(tiny_info: TokenizerInfo, pattern: str, text: str, ok: bool) -> None:
    tok = ByteTokens(tiny_info)
    g = Grammar.from_regex(pattern, tiny_info)
    data = text.encode()
    assert accepts_fully(g, tok.encode(data)) == ok
    assert accepts_fully(g, tok.encode(data, longest=False)) == ok
    assert bool(re.fullmatch(pattern, text)) == ok


def test_mask_matches_accept_and_eos(tiny_info: TokenizerInfo) -> None:
    g = Grammar.from_regex(r"ab(c|12)?", tiny_info)
    m = Matcher(g)
    tok = ByteTokens(tiny_info)
    for step in range(3):
        allowed = set(allowed_ids(m, tiny_info.vocab_size).tolist())
        for tid in range(tiny_info.vocab_size):
            ok = m.accept_token(tid)
            assert ok == (tid in allowed), (step, tid)
            if ok:
                m.rollback(1)
        assert (TINY_EOS in allowed) == m.can_end()
        assert 2 not in allowed  # the added token
        if step == 0:
            assert m.accept_token(tok.by_bytes[b"ab"])
        elif step == 1:
            assert m.can_end() and not m.is_terminated()
            assert m.accept_token(tok.by_bytes[b"12"])
    assert m.is_terminated()  # only EOS can follow
    assert m.accept_token(TINY_EOS) and m.is_terminated()
    assert m.num_accepted == 3
    m.rollback(2)
    assert m.num_accepted == 1 and m.can_end() and not m.is_terminated()
    with pytest.raises(ValueError, match="roll back"):
        m.rollback(5)
    assert not m.accept_token(-1) and not m.accept_token(10**9)


def test_forced_continuation(tiny_info: TokenizerInfo) -> None:
    g = Grammar.from_json_schema(
        {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
        tiny_info,
    )
    m = Matcher(g)
    assert m.forced_continuation() == b'{"ok":'
    assert m.accept_token(ByteTokens(tiny_info).by_bytes[b'{"'])
    assert m.forced_continuation() == b'ok":'


def test_bitmask_rows_and_batches(tiny_info: TokenizerInfo) -> None:
    v = tiny_info.vocab_size
    grammars = [Grammar.from_regex(p, tiny_info) for p in ["a+", "b", "(true|null)"]]
    matchers = [Matcher(g) for g in grammars]
    batch = allocate_bitmask(4, v)
    assert batch.shape == (4, (v + 31) // 32) and batch.dtype == np.int32
    fill_bitmasks([matchers[0], None, matchers[1], matchers[2]], batch)
    assert (batch[1] == -1).all()  # None leaves the row alone
    for row, m in zip([0, 2, 3], matchers, strict=True):
        single = allocate_bitmask(1, v)
        m.fill_next_token_bitmask(single)
        assert (single[0] == batch[row]).all()
        again = np.zeros(single.shape[1], dtype=np.int32)
        m.fill_next_token_bitmask(again)
        assert (again == single[0]).all()
    matchers[0].fill_next_token_bitmask(batch, 3)
    assert (batch[3] == batch[0]).all()
    with pytest.raises(TypeError):
        matchers[0].fill_next_token_bitmask(np.zeros(batch.shape[1], dtype=np.int64))
    with pytest.raises(ValueError):
        matchers[0].fill_next_token_bitmask(batch, 9)
    with pytest.raises(ValueError):
        fill_bitmasks([matchers[0], matchers[0]], batch)
    with pytest.raises(ValueError):
        fill_bitmasks(matchers, allocate_bitmask(2, v))


def test_invalid_inputs_raise_value_error(tiny_info: TokenizerInfo) -> None:
    with pytest.raises(ValueError, match="regex"):
        Grammar.from_regex("a(", tiny_info)
    with pytest.raises(ValueError, match="not valid JSON"):
        Grammar.from_json_schema("{", tiny_info)
    with pytest.raises(ValueError, match="whitespace"):
        Grammar.from_json_schema({}, tiny_info, whitespace="loose")
    with pytest.raises(ValueError, match="EOS id"):
        TokenizerInfo.from_tokenizer_json(tiny_tokenizer_json(), [10**6])
    with pytest.raises(ValueError, match="cannot read"):
        TokenizerInfo.from_tokenizer_json("/nonexistent/tokenizer.json", [])


def test_threads_share_a_grammar(tiny_info: TokenizerInfo) -> None:
    cache = GrammarCache(tiny_info)
    tok = ByteTokens(tiny_info)

    def run(i: int) -> bool:
        g = cache.regex(r"[a-z]{1,8}@a\.(org|com)")
        text = ("x" * (1 + i % 8) + "@a.org").encode()
        return accepts_fully(g, tok.encode(text))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, range(64)))
    assert len(cache) == 1 and cache.misses >= 1 and cache.hits + cache.misses == 64


def test_grammar_cache_keys(tiny_info: TokenizerInfo) -> None:
    cache = GrammarCache(tiny_info, max_entries=2)
    schema = {"type": "object", "properties": {"a": {"type": "null"}}}
    a = cache.json_schema(schema)
    assert cache.json_schema('{"type": "object", "properties": {"a": {"type": "null"}}}') is a
    assert cache.json_schema(schema, whitespace="flexible") is not a
    assert cache.json_object().kind == "json_object"
    assert len(cache) == 2
    with pytest.raises(ValueError):
        cache.regex("(")
    assert len(cache) == 2

"""Shared helpers: tokenizing bytes greedily over a TokenizerInfo, random walks over masks."""

from __future__ import annotations

import json
import random

import numpy as np

from sglrs.grammar import Grammar, Matcher, TokenizerInfo, allocate_bitmask, bitmask_to_bool


class ByteTokens:
    """Token ids by byte string, for greedy longest-match tokenization in tests."""

    def __init__(self, info: TokenizerInfo) -> None:
        self.info = info
        self.by_bytes: dict[bytes, int] = {}
        for i in range(info.vocab_size):
            b = info.token_bytes(i)
            if b:
                self.by_bytes.setdefault(b, i)
        self.max_len = max(len(b) for b in self.by_bytes)

    def encode(self, data: bytes, longest: bool = True) -> list[int]:
        out = []
        i = 0
        while i < len(data):
            lengths = range(min(self.max_len, len(data) - i), 0, -1) if longest else [1]
            for n in lengths:
                tid = self.by_bytes.get(data[i : i + n])
                if tid is not None:
                    out.append(tid)
                    i += n
                    break
            else:
                raise ValueError(f"no token for byte {data[i]:#x}")
        return out


def allowed_ids(matcher: Matcher, vocab_size: int) -> np.ndarray:
    row = allocate_bitmask(1, vocab_size)
    matcher.fill_next_token_bitmask(row)
    return np.flatnonzero(bitmask_to_bool(row[0], vocab_size))


def accepts_fully(grammar: Grammar, ids: list[int]) -> bool:
    m = Matcher(grammar)
    return all(m.accept_token(t) for t in ids) and m.can_end()


STRUCTURAL = set(b'"[]{},:@.-')


class VocabView:
    """Per-token facts as numpy arrays, for fast sampling in random walks."""

    _cache: dict[int, VocabView] = {}

    def __init__(self, info: TokenizerInfo) -> None:
        self.tokens = ByteTokens(info)
        self.eos = np.array(info.eos_token_ids, dtype=np.int64)
        self.structural = np.array(
            [any(c in STRUCTURAL for c in info.token_bytes(i)) for i in range(info.vocab_size)]
        )

    @classmethod
    def of(cls, info: TokenizerInfo) -> VocabView:
        view = cls._cache.get(id(info))
        if view is None or view.tokens.info is not info:
            view = cls._cache[id(info)] = cls(info)
        return view


def random_walk(
    grammar: Grammar, info: TokenizerInfo, rng: random.Random, max_steps: int = 300
) -> bytes | None:
    """Sample allowed tokens until EOS; None if the walk did not finish within max_steps.

    Steps follow the forced continuation when there is one, and otherwise favour tokens with
    structural characters (quotes, brackets, separators), so that walks stay short.
    """
    view = VocabView.of(info)
    m = Matcher(grammar)
    out = b""
    for _ in range(max_steps):
        ids = allowed_ids(m, info.vocab_size)
        assert len(ids) > 0, f"dead end after {out!r}"
        is_eos = np.isin(ids, view.eos)
        if is_eos.any() and (rng.random() < 0.5 or is_eos.all()):
            assert m.accept_token(int(ids[is_eos][0]))
            assert m.is_terminated()
            return out
        text = ids[~is_eos]
        forced = m.forced_continuation()
        pick = None
        r = rng.random()
        if forced and r < 0.7:
            for n in range(min(len(forced), view.tokens.max_len), 0, -1):
                pick = view.tokens.by_bytes.get(forced[:n])
                if pick is not None:
                    break
        elif r < 0.6:
            structural = text[view.structural[text]]
            if len(structural):
                pick = int(structural[rng.randrange(len(structural))])
        if pick is None:
            pick = int(text[rng.randrange(len(text))])
        assert m.accept_token(pick), f"masked-in token {pick} rejected after {out!r}"
        out += info.token_bytes(pick)
    return None


TINY_EOS = 1


def tiny_tokenizer_json() -> str:
    """A byte-level BPE tokenizer.json: every byte, some words, two special tokens."""
    # GPT-2's byte map: printable Latin-1 bytes stand for themselves, the rest shift to U+0100+.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    byte_char: dict[int, str] = {}
    shifted = 0
    for b in range(256):
        if b in printable:
            byte_char[b] = chr(b)
        else:
            byte_char[b] = chr(256 + shifted)
            shifted += 1
    vocab: dict[str, int] = {"<unk>": 0, "</s>": 1, "<tool>": 2}
    for b in range(256):
        vocab.setdefault(byte_char[b], len(vocab))
    words = ["ab", "abc", "true", "false", "null", '{"', '":', '",', '"}', "12", "é", " x", "@a"]
    for w in words:
        vocab.setdefault("".join(byte_char[b] for b in w.encode()), len(vocab))
    added = [
        {"id": 1, "content": "</s>", "special": True},
        {"id": 2, "content": "<tool>", "special": False},
    ]
    doc = {
        "added_tokens": added,
        "pre_tokenizer": {"type": "ByteLevel"},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": []},
    }
    return json.dumps(doc)

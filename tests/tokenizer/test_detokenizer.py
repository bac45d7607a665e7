"""Incremental detokenization against full decodes, with a byte-level BPE and SmolLM2's."""

from __future__ import annotations

import random

import pytest

from sglrs.tokenizer import BatchDetokenizer, IncrementalDetokenizer

TEXTS = [
    "Hello world! Hello there, general Kenobi.",
    "Emoji: 🎉🚀👍🏽 and 👨‍👩‍👧 families, flags 🇫🇷 done",
    "日本語のテキストと中文文本，还有한국어도 있어요。",
    "  leading spaces,   runs of   spaces\n\tnewline and tab  ",
    "naïve café résumé — déjà vu",
    "def main():\n    return 42  # code",
]


def stream(detok: BatchDetokenizer, ids: list[int], rng: random.Random, **opts) -> list[str]:
    state = IncrementalDetokenizer(**opts)
    pieces, i = [], 0
    while i < len(ids):
        n = rng.choice([1, 1, 1, 2, 3])
        pieces.append(detok.step([state], [ids[i : i + n]])[0])
        i += n
    pieces.append(detok.flush(state))
    return pieces


@pytest.fixture(params=["bpe", "smollm"])
def tokenizer(request, bpe_tokenizer):
    if request.param == "bpe":
        return bpe_tokenizer
    return request.getfixturevalue("smollm_tokenizer")


@pytest.mark.parametrize("text", TEXTS)
def test_streaming_equals_full_decode(tokenizer, text: str) -> None:
    detok = BatchDetokenizer(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    for seed in range(3):
        pieces = stream(detok, ids, random.Random(seed))
        assert "".join(pieces) == tokenizer.decode(ids) == text
        assert not any("\ufffd" in p for p in pieces)


def test_split_characters_are_held_back(bpe_tokenizer) -> None:
    detok = BatchDetokenizer(bpe_tokenizer)
    ids = bpe_tokenizer.encode("a🎉", add_special_tokens=False)
    assert len(ids) >= 3  # the emoji's 4 bytes span several tokens
    state = IncrementalDetokenizer()
    assert detok.step([state], [ids[:1]])[0] == "a"
    for t in ids[1:-1]:
        assert detok.step([state], [[t]])[0] == ""
        assert state.pending > 0
    assert detok.step([state], [ids[-1:]])[0] == "🎉"


def test_flush_emits_an_unfinished_character(bpe_tokenizer) -> None:
    detok = BatchDetokenizer(bpe_tokenizer)
    ids = bpe_tokenizer.encode("x🎉", add_special_tokens=False)
    state = IncrementalDetokenizer()
    assert detok.step([state], [ids[:1]])[0] == "x"
    assert detok.step([state], [ids[1:-1]])[0] == ""  # "x" + half an emoji: held
    assert detok.flush(state).endswith("\ufffd")


def test_special_tokens(bpe_tokenizer) -> None:
    detok = BatchDetokenizer(bpe_tokenizer)
    ids = bpe_tokenizer.encode("<|im_start|>Hello<|im_end|><|endoftext|>", add_special_tokens=False)
    rng = random.Random(0)
    assert "".join(stream(detok, ids, rng)) == "Hello"
    kept = "".join(stream(detok, ids, rng, skip_special_tokens=False))
    assert kept == "<|im_start|> Hello <|im_end|> <|endoftext|>"
    plain = stream(detok, ids, rng, skip_special_tokens=False, spaces_between_special_tokens=False)
    assert "".join(plain) == "<|im_start|>Hello<|im_end|><|endoftext|>"
    assert "".join(plain) == bpe_tokenizer.decode(ids, skip_special_tokens=False)


def test_prompt_context(tokenizer) -> None:
    detok = BatchDetokenizer(tokenizer)
    prompt = tokenizer.encode("Question: say hi", add_special_tokens=False)
    out = tokenizer.encode(" Hello 世界", add_special_tokens=False)
    state = IncrementalDetokenizer(prompt_ids=prompt)
    text = "".join(detok.step([state], [[t]])[0] for t in out)
    full = tokenizer.decode(prompt + out)
    assert text == full[len(tokenizer.decode(prompt)) :] == " Hello 世界"


def test_batch_matches_individual(bpe_tokenizer) -> None:
    detok = BatchDetokenizer(bpe_tokenizer)
    opts = [{}, {"skip_special_tokens": False}, {}, {"spaces_between_special_tokens": False}]
    seqs = [
        bpe_tokenizer.encode(t + "<|im_end|>", add_special_tokens=False)
        for t in (TEXTS[0], TEXTS[1], TEXTS[2], TEXTS[4])
    ]
    states = [IncrementalDetokenizer(**o) for o in opts]
    got = ["" for _ in seqs]
    for step in range(max(len(s) for s in seqs)):
        live = [i for i, s in enumerate(seqs) if step < len(s)]
        texts = detok.step([states[i] for i in live], [[seqs[i][step]] for i in live])
        for i, t in zip(live, texts, strict=True):
            got[i] += t
    for i, o in enumerate(opts):
        want = "".join(stream(detok, seqs[i], random.Random(1), **o))
        assert got[i] == want

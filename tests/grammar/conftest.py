"""Tokenizers for the grammar tests: a tiny synthetic one and SmolLM2's real vocabulary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sglrs.grammar import TokenizerInfo

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


@pytest.fixture(scope="session")
def tiny_info() -> TokenizerInfo:
    return TokenizerInfo.from_tokenizer_json(tiny_tokenizer_json(), [TINY_EOS])


@pytest.fixture(scope="session")
def smol_tokenizer_json() -> Path:
    """SmolLM2's vocabulary as a tokenizer.json, converted from the default GGUF once."""
    from sglrs.utils.default_model import cache_dir, default_model_path

    target = cache_dir() / "tokenizers" / "SmolLM2-135M-Instruct.tokenizer.json"
    if target.exists():
        return target
    gguf = default_model_path(quiet=True)
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(tok.backend_tokenizer.to_str())
    os.replace(partial, target)
    return target


SMOL_EOS = 2  # <|im_end|>


@pytest.fixture(scope="session")
def smol_info(smol_tokenizer_json: Path) -> TokenizerInfo:
    return TokenizerInfo.from_tokenizer_json(str(smol_tokenizer_json), [SMOL_EOS])

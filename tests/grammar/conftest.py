"""Tokenizers for the grammar tests: a tiny synthetic one and SmolLM2's real vocabulary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from grammar_helpers import TINY_EOS, tiny_tokenizer_json

from sglrs.grammar import TokenizerInfo


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

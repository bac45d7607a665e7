"""Tokenizer (with chat template) for a model: HF directory via AutoTokenizer, or GGUF metadata."""

from __future__ import annotations

import os
from typing import Any

from sglrs.model_loader.config import is_gguf


def load_tokenizer(
    model_path: str | os.PathLike, tokenizer_path: str | os.PathLike | None = None
) -> Any:
    """A `transformers` fast tokenizer from `tokenizer_path`, else from `model_path`."""
    path = tokenizer_path if tokenizer_path is not None else model_path
    if is_gguf(path):
        from sglrs.model_loader.gguf_file import open_gguf
        from sglrs.model_loader.gguf_tokenizer import gguf_tokenizer

        return gguf_tokenizer(open_gguf(path).metadata)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))

"""The tokenizer every sglrs process uses: the model's, with `--chat-template` applied."""

from __future__ import annotations

import os
from typing import Any

from sglrs.server_args import ServerArgs


def load_server_tokenizer(args: ServerArgs) -> Any | None:
    """None with --skip-tokenizer-init; else the model's tokenizer (GGUF or HF directory)."""
    if args.skip_tokenizer_init:
        return None
    from sglrs.model_loader import load_tokenizer

    assert args.model_path is not None
    tokenizer = load_tokenizer(args.model_path, args.tokenizer_path)
    if args.chat_template is not None:
        tokenizer.chat_template = read_chat_template(args.chat_template)
    return tokenizer


def read_chat_template(value: str) -> str:
    """A Jinja template given as a file path or as the template text itself."""
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            return f.read()
    if "{%" in value or "{{" in value:
        return value
    raise ValueError(f"--chat-template: {value!r} is neither a file nor a Jinja template")

"""The tokenizer rebuilt from GGUF metadata: SmolLM2's (digits split, chat template, special
tokens, round trip) and the errors for what is not supported."""

from __future__ import annotations

import pytest

from sglrs.model_loader import load_tokenizer
from sglrs.model_loader.gguf_tokenizer import GGUFTokenizerError, build_gguf_tokenizer
from sglrs.utils.default_model import DefaultModelUnavailable, default_model_path


@pytest.fixture(scope="module")
def tok():
    try:
        return load_tokenizer(default_model_path(quiet=True))
    except DefaultModelUnavailable as e:
        pytest.skip(f"default model unavailable: {e}")


def test_digits_are_split_one_by_one(tok):
    assert tok.tokenize(" 2024") == ["Ġ", "2", "0", "2", "4"]
    # The split happens before the byte-level regex, so a space run before digits stays whole.
    assert tok.tokenize("a  40") == ["a", "ĠĠ", "4", "0"]


def test_special_tokens_and_chat_template(tok):
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (1, 2, 0)
    assert tok("<|im_start|>user<|im_end|>")["input_ids"][0] == 1
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi!"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\n")


def test_round_trip(tok):
    text = "def f(x):\n    return x ** 2  # 3.14 naïve 漢字 😀\n\ttabs"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    with_special = "<|im_start|>assistant\nok<|im_end|>"
    assert tok.decode(tok(with_special)["input_ids"], skip_special_tokens=True) == "assistant\nok"


def meta(**overrides):
    base = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": ["a", "b", "ab", "<s>"],
        "tokenizer.ggml.token_type": [1, 1, 1, 3],
        "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.bos_token_id": 3,
        "tokenizer.ggml.eos_token_id": 3,
    }
    return base | overrides


def test_small_vocabulary_and_errors():
    assert build_gguf_tokenizer(meta()).encode("ab<s>").ids == [2, 3]
    bos = build_gguf_tokenizer(meta(**{"tokenizer.ggml.add_bos_token": True}))
    assert bos.encode("ab").ids == [3, 2]
    with pytest.raises(GGUFTokenizerError, match="'deepseek-llm'.*smollm"):
        build_gguf_tokenizer(meta(**{"tokenizer.ggml.pre": "deepseek-llm"}))
    with pytest.raises(GGUFTokenizerError, match="'llama'"):
        build_gguf_tokenizer(meta(**{"tokenizer.ggml.model": "llama"}))
    with pytest.raises(GGUFTokenizerError, match="duplicate"):
        build_gguf_tokenizer(meta(**{"tokenizer.ggml.tokens": ["a", "a", "ab", "<s>"]}))

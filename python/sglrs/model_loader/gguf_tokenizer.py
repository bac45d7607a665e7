"""A HF fast tokenizer rebuilt from GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).

Only byte-level BPE (`tokenizer.ggml.model == "gpt2"`) is supported. The pre-tokenizer follows
llama.cpp's `tokenizer.ggml.pre`: e.g. SmolLM2's `smollm` splits every digit apart before the
GPT-2 byte-level split, which transformers' own GGUF loader does not do.
"""

from __future__ import annotations

from typing import Any

# Split patterns of the pre-tokenizers that are not plain GPT-2 (from their tokenizer.json).
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SUPPORTED_PRE_TOKENIZERS = ("smollm", "gpt2", "default", "llama-bpe", "qwen2")
# llama.cpp token types.
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4


class GGUFTokenizerError(ValueError):
    pass


def _pre_tokenizer(pre: str, add_prefix_space: bool) -> Any:
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    if pre == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("gpt2", "default"):
        return byte_level
    if pre in ("llama-bpe", "qwen2"):
        pattern = _LLAMA3_PATTERN if pre == "llama-bpe" else _QWEN2_PATTERN
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False),
            ]
        )
    raise GGUFTokenizerError(
        f"GGUF pre-tokenizer {pre!r} is not supported; supported: "
        f"{', '.join(SUPPORTED_PRE_TOKENIZERS)}"
    )


def _post_processor(meta: dict[str, Any], tokens: list[str]) -> Any:
    from tokenizers import processors

    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    if not (add_bos or add_eos):
        return processors.ByteLevel(trim_offsets=False)
    bos_id, eos_id = (
        meta.get("tokenizer.ggml.bos_token_id"),
        meta.get("tokenizer.ggml.eos_token_id"),
    )
    pre = [tokens[bos_id]] if add_bos else []
    post = [tokens[eos_id]] if add_eos else []
    specials = {t: tokens.index(t) for t in pre + post}
    single = " ".join(pre + ["$A:0"] + post)
    pair = " ".join(pre + ["$A:0"] + post + [f"{t}:1" for t in pre] + ["$B:1"] + post)
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=list(specials.items())
    )


def build_gguf_tokenizer(meta: dict[str, Any]) -> Any:
    """`tokenizers.Tokenizer` from GGUF metadata."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFTokenizerError(
            f"GGUF tokenizer model {model!r} is not supported (only byte-level BPE, 'gpt2')"
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise GGUFTokenizerError("GGUF vocabulary has duplicate tokens")
    merges = []
    for entry in meta.get("tokenizer.ggml.merges", []):
        pair = entry.split(" ")
        if len(pair) != 2:
            raise GGUFTokenizerError(f"GGUF merge {entry!r} is not a pair")
        merges.append((pair[0], pair[1]))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    pre = meta.get("tokenizer.ggml.pre", "default")
    tok.pre_tokenizer = _pre_tokenizer(pre, bool(meta.get("tokenizer.ggml.add_space_prefix")))
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = _post_processor(meta, tokens)
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)  # all normal
    if len(types) != len(tokens):
        raise GGUFTokenizerError(f"GGUF has {len(types)} token types for {len(tokens)} tokens")
    # Control tokens are special (skipped when decoding with skip_special_tokens); user-defined
    # ones are matched whole but decoded as text, as llama.cpp does.
    tok.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty == TOKEN_USER_DEFINED
        ]
    )
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty == TOKEN_CONTROL
        ]
    )
    if tok.get_vocab_size() != len(tokens):
        raise GGUFTokenizerError(
            f"rebuilt tokenizer has {tok.get_vocab_size()} ids, GGUF has {len(tokens)}"
        )
    return tok


def gguf_tokenizer(meta: dict[str, Any]) -> Any:
    """`transformers.PreTrainedTokenizerFast` with special tokens and chat template from GGUF."""
    from transformers import PreTrainedTokenizerFast

    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])

    def token(key: str) -> str | None:
        idx = meta.get(f"tokenizer.ggml.{key}_token_id")
        return None if idx is None else tokens[int(idx)]

    arch = meta.get("general.architecture", "")
    kwargs: dict[str, Any] = {
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "pad_token": token("padding"),
        "unk_token": token("unknown"),
        "clean_up_tokenization_spaces": False,
    }
    if f"{arch}.context_length" in meta:
        kwargs["model_max_length"] = int(meta[f"{arch}.context_length"])
    if meta.get("tokenizer.chat_template"):
        kwargs["chat_template"] = meta["tokenizer.chat_template"]
    return PreTrainedTokenizerFast(
        tokenizer_object=build_gguf_tokenizer(meta),
        **{k: v for k, v in kwargs.items() if v is not None},
    )

"""Tokenizers for the detokenizer tests: a small byte-level BPE trained here, and SmolLM2's."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, general Kenobi.",
    "naïve café résumé — déjà vu, façade, jalapeño",
    "日本語のテキストと中文文本，还有한국어도 있어요。",
    "Emoji: 🎉🚀👍🏽 and 👨‍👩‍👧 families, flags 🇫🇷",
    "def main():\n    return 42  # code\n\tindented",
    "Stop here ### and there END of story. The end.",
] * 20


@pytest.fixture(scope="session")
def bpe_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:],
        clean_up_tokenization_spaces=False,
    )


@pytest.fixture(scope="session")
def smollm_tokenizer():
    """SmolLM2-135M's tokenizer from the default GGUF; skipped only if it cannot be fetched."""
    from transformers import AutoTokenizer

    from sglrs.utils.default_model import DefaultModelUnavailable, default_model_path

    try:
        path = default_model_path(quiet=True)
    except DefaultModelUnavailable as e:
        pytest.skip(f"default model unavailable: {e}")
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)

"""Incremental detokenization and stop conditions on the decoded text."""

from sglrs.tokenizer.detokenizer import BatchDetokenizer, IncrementalDetokenizer
from sglrs.tokenizer.stop import (
    DecodeStream,
    DecodeStreams,
    StopStrings,
    StreamDelta,
    finish_length,
    finish_matched,
    held_suffix_len,
)

__all__ = [
    "BatchDetokenizer",
    "DecodeStream",
    "DecodeStreams",
    "IncrementalDetokenizer",
    "StopStrings",
    "StreamDelta",
    "finish_length",
    "finish_matched",
    "held_suffix_len",
]

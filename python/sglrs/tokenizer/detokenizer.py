"""Incremental detokenization: per request, the new text that a step's token ids add.

Each request keeps a window of ids with two offsets (as vLLM / TGI do): `prefix_offset ..
read_offset` is text already emitted, kept as context so that byte-level BPE and SentencePiece
leading spaces decode right; the new text is `decode(ids[prefix:]) - decode(ids[prefix:read])`.
While the decode ends in U+FFFD (a UTF-8 character split across tokens) nothing is emitted.
`BatchDetokenizer` decodes every request of a step with one `decode_batch` call per option set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REPLACEMENT = "\ufffd"
# Prompt tokens kept as left context for the first output tokens (SGLang uses 5).
PROMPT_CONTEXT = 5


class IncrementalDetokenizer:
    """One request's detokenization state."""

    def __init__(
        self,
        prompt_ids: Sequence[int] = (),
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
    ) -> None:
        self.skip_special_tokens = skip_special_tokens
        self.spaces_between_special_tokens = spaces_between_special_tokens
        tail = list(prompt_ids)[-PROMPT_CONTEXT:] if PROMPT_CONTEXT else []
        self.ids: list[int] = [int(t) for t in tail]
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def windows(self) -> tuple[list[int], list[int]]:
        """(already emitted context, context + pending ids) to decode."""
        return self.ids[self.prefix_offset : self.read_offset], self.ids[self.prefix_offset :]

    def advance(self, prefix_text: str, full_text: str, final: bool = False) -> str:
        """The new text given the two windows' decodes; holds back split UTF-8 unless final."""
        if len(full_text) <= len(prefix_text):
            return ""
        if full_text.endswith(REPLACEMENT) and not final:
            return ""
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return full_text[len(prefix_text) :]

    @property
    def pending(self) -> int:
        """Ids received but not yet turned into text."""
        return len(self.ids) - self.read_offset


class BatchDetokenizer:
    """Decodes the windows of many requests per call; wraps a `transformers` tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.special_ids = self._special_ids()
        # transformers skips its WordPiece-era clean-up for BPE models; do the same.
        self.cleanup = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False)) and (
            self.backend is None or type(self.backend.model).__name__ != "BPE"
        )

    def _special_ids(self) -> set[int]:
        ids = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        if self.backend is not None:
            for token_id, token in self.backend.get_added_tokens_decoder().items():
                if token.special:
                    ids.add(token_id)
        return ids

    # ---- decoding -------------------------------------------------------------------------

    def decode_batch(
        self,
        seqs: list[list[int]],
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
    ) -> list[str]:
        """Decode like `tokenizer.decode`, plus spaces around kept special tokens if asked.

        `spaces_between_special_tokens` (the slow HF tokenizers' rule: each kept special token
        is separated from its neighbours by one space) only matters when special tokens are
        kept (`skip_special_tokens=False`); fast tokenizers ignore the flag, sglrs does not.
        """
        if not skip_special_tokens and spaces_between_special_tokens:
            return self._decode_spaced(seqs)
        return self._decode_plain(seqs, skip_special_tokens)

    def _decode_plain(self, seqs: list[list[int]], skip: bool) -> list[str]:
        if not seqs:
            return []
        if self.backend is None:
            return list(self.tokenizer.batch_decode(seqs, skip_special_tokens=skip))
        texts = self.backend.decode_batch(seqs, skip_special_tokens=skip)
        if self.cleanup:
            texts = [self.tokenizer.clean_up_tokenization(t) for t in texts]
        return texts

    def _decode_spaced(self, seqs: list[list[int]]) -> list[str]:
        # Split at special tokens; decode every plain run of every sequence in one call.
        layouts: list[list[str | int]] = []
        runs: list[list[int]] = []
        for seq in seqs:
            parts: list[str | int] = []
            run: list[int] = []
            for t in seq:
                if t in self.special_ids:
                    if run:
                        parts.append(len(runs))
                        runs.append(run)
                        run = []
                    parts.append(self.tokenizer.convert_ids_to_tokens(t))
                else:
                    run.append(t)
            if run:
                parts.append(len(runs))
                runs.append(run)
            layouts.append(parts)
        decoded = self._decode_plain(runs, skip=False)
        return [
            " ".join(decoded[p] if isinstance(p, int) else p for p in parts) for parts in layouts
        ]

    # ---- incremental ----------------------------------------------------------------------

    def step(
        self,
        states: Sequence[IncrementalDetokenizer],
        new_ids: Sequence[Sequence[int]],
        final: Sequence[bool] | None = None,
    ) -> list[str]:
        """Append each request's new ids and return its new text (requests in any mix)."""
        for state, ids in zip(states, new_ids, strict=True):
            state.ids.extend(int(t) for t in ids)
        groups: dict[tuple[bool, bool], list[int]] = {}
        for i, s in enumerate(states):
            key = (s.skip_special_tokens, s.spaces_between_special_tokens)
            groups.setdefault(key, []).append(i)
        out = [""] * len(states)
        for (skip, spaces), members in groups.items():
            seqs: list[list[int]] = []
            for i in members:
                seqs.extend(states[i].windows())
            texts = self.decode_batch(seqs, skip, spaces)
            for j, i in enumerate(members):
                is_final = bool(final[i]) if final is not None else False
                out[i] = states[i].advance(texts[2 * j], texts[2 * j + 1], is_final)
        return out

    def flush(self, state: IncrementalDetokenizer) -> str:
        """Everything still held back (a request finished on a split UTF-8 character)."""
        return self.step([state], [[]], final=[True])[0]

"""Stop conditions on a detokenized stream: stop strings (with hold-back), stop token ids, EOS,
length; and `DecodeStreams`, which runs detokenization and stop checks for a batch.

Finish reasons are SGLang's dicts: `{"type": "stop", "matched": "<str>" | <token id>}` and
`{"type": "length", "length": n}`. Per token, in SGLang's order: length (`max_new_tokens`), then
stop token ids and EOS (both off with `ignore_eos`, as in SGLang); a matched stop token's text
is dropped unless `no_stop_trim`. A stop string found in the text decided so far wins over a
token-level reason of the same step, so that the reason always agrees with the trimmed text.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from sglrs.tokenizer.detokenizer import BatchDetokenizer, IncrementalDetokenizer

FinishReason = dict[str, Any]


def finish_length(length: int) -> FinishReason:
    return {"type": "length", "length": length}


def finish_matched(matched: str | int) -> FinishReason:
    return {"type": "stop", "matched": matched}


def held_suffix_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class StopStrings:
    """Stop-string matching over a growing text, releasing only text that cannot be the start
    of a stop string."""

    def __init__(self, stops: Sequence[str], no_stop_trim: bool = False) -> None:
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        self.stops = list(stops)
        self.no_stop_trim = no_stop_trim
        self.max_len = max((len(s) for s in self.stops), default=0)
        self.text = ""  # everything decoded so far
        self.sent = 0  # chars of `text` already released
        self.matched: str | None = None

    def feed(self, delta: str) -> str:
        """Add decoded text; return what may be streamed now (trimmed at a matched stop)."""
        if self.matched is not None or not delta:
            return ""
        searched_from = max(0, len(self.text) - self.max_len + 1)
        self.text += delta
        if not self.stops:
            return self._release(len(self.text))
        hit = self._find(searched_from)
        if hit is not None:
            pos, stop = hit
            self.matched = stop
            end = len(self.text) if self.no_stop_trim else pos
            self.text = self.text[:end]
            return self._release(end)
        return self._release(len(self.text) - held_suffix_len(self.text, self.stops))

    def _find(self, start: int) -> tuple[int, str] | None:
        """The earliest stop string occurrence at or after `start` (longest on ties)."""
        best: tuple[int, str] | None = None
        for stop in self.stops:
            pos = self.text.find(stop, start)
            if pos >= 0 and (
                best is None or pos < best[0] or (pos == best[0] and len(stop) > len(best[1]))
            ):
                best = (pos, stop)
        return best

    def _release(self, upto: int) -> str:
        upto = max(upto, self.sent)
        out = self.text[self.sent : upto]
        self.sent = upto
        return out

    def flush(self) -> str:
        """At a finish for another reason: release the held-back tail."""
        return self._release(len(self.text))


@dataclass
class StreamDelta:
    text: str  # new text to stream (stop strings trimmed, split UTF-8 held back)
    num_tokens: int  # how many of the step's ids were accepted (the rest came after a finish)
    finish_reason: FinishReason | None


class DecodeStream:
    """One request: its detokenizer and its stop conditions."""

    def __init__(
        self,
        params: Any,
        prompt_ids: Sequence[int] = (),
        eos_token_ids: Sequence[int] = (),
    ) -> None:
        self.detok = IncrementalDetokenizer(
            prompt_ids, params.skip_special_tokens, params.spaces_between_special_tokens
        )
        self.stops = StopStrings(params.stop, params.no_stop_trim)
        self.max_new_tokens: int = params.max_new_tokens
        self.no_stop_trim: bool = params.no_stop_trim
        self.stop_ids: set[int] = set()
        if not params.ignore_eos:
            self.stop_ids = set(params.stop_token_ids) | set(eos_token_ids)
        self.num_generated = 0
        self.finish_reason: FinishReason | None = None

    def accept(self, ids: Sequence[int]) -> tuple[list[int], int, FinishReason | None]:
        """Token-level checks: (ids to detokenize, ids accepted, finish reason)."""
        text_ids: list[int] = []
        for n, t in enumerate(ids, start=1):
            t = int(t)
            self.num_generated += 1
            if self.num_generated >= self.max_new_tokens:
                text_ids.append(t)
                return text_ids, n, finish_length(self.max_new_tokens)
            if t in self.stop_ids:
                if self.no_stop_trim:
                    text_ids.append(t)
                return text_ids, n, finish_matched(t)
            text_ids.append(t)
        return text_ids, len(ids), None


class DecodeStreams:
    """Detokenization + stop checks for all running requests; one batched decode per step."""

    def __init__(self, tokenizer: Any, eos_token_ids: Sequence[int] = ()) -> None:
        self.detokenizer = BatchDetokenizer(tokenizer)
        self.eos_token_ids = list(eos_token_ids)
        self.streams: dict[Hashable, DecodeStream] = {}

    def add(self, rid: Hashable, params: Any, prompt_ids: Sequence[int] = ()) -> None:
        """Start a request; `params` is a SamplingParams (or has its decode/stop fields)."""
        if rid in self.streams:
            raise ValueError(f"request {rid!r} already has a decode stream")
        self.streams[rid] = DecodeStream(params, prompt_ids, self.eos_token_ids)

    def remove(self, rid: Hashable) -> None:
        self.streams.pop(rid, None)

    def step(
        self,
        items: Sequence[tuple[Hashable, Sequence[int]]],
        finish_reasons: Sequence[FinishReason | None] | None = None,
    ) -> list[StreamDelta]:
        """New ids per request -> new text and finish. A given finish reason (abort, grammar
        end, a scheduler decision) applies when the stream found none itself. Finished
        requests are removed."""
        streams = [self.streams[rid] for rid, _ in items]
        accepted = [s.accept(ids) for s, (_, ids) in zip(streams, items, strict=True)]
        given = list(finish_reasons) if finish_reasons is not None else [None] * len(items)
        reasons = [a[2] or g for a, g in zip(accepted, given, strict=True)]
        texts = self.detokenizer.step(
            [s.detok for s in streams],
            [a[0] for a in accepted],
            final=[r is not None for r in reasons],
        )
        out = []
        for (rid, _), stream, acc, reason, text in zip(
            items, streams, accepted, reasons, texts, strict=True
        ):
            visible = stream.stops.feed(text)
            if stream.stops.matched is not None:
                reason = finish_matched(stream.stops.matched)
            elif reason is not None:
                visible += stream.stops.flush()
            if reason is not None:
                stream.finish_reason = reason
                del self.streams[rid]
            out.append(StreamDelta(visible, acc[1], reason))
        return out

"""Benchmark workloads: random token prompts, shared-prefix groups, and ShareGPT files.

Synthetic prompts are token ids drawn from the vocabulary (special tokens left out), so prompt
lengths are exact and no tokenizer round trip changes them. ShareGPT prompts are sent as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATASETS = ("random", "shared-prefix", "sharegpt")
SHAREGPT_MIN_TOKENS = 2  # shorter prompts or replies say nothing about a real workload


@dataclass
class BenchRequest:
    """One request: text or token ids, its prompt length and the tokens it must generate."""

    prompt_len: int
    output_len: int
    input_ids: list[int] | None = None
    text: str | None = None


def lengths(full: int, range_ratio: float, num: int, rng: np.random.Generator) -> np.ndarray:
    """`num` integer lengths uniform in [max(1, floor(full * range_ratio)), full]."""
    if full < 1:
        raise ValueError(f"a length must be >= 1, got {full}")
    if not 0.0 <= range_ratio <= 1.0:
        raise ValueError(f"--random-range-ratio must be in [0, 1], got {range_ratio}")
    low = max(1, int(full * range_ratio))
    return rng.integers(low, full + 1, size=num)


def token_pool(vocab_size: int, special_ids: list[int] | None = None) -> np.ndarray:
    """Ids that random prompts draw from: the vocabulary without its special tokens."""
    pool = np.setdiff1d(np.arange(vocab_size), np.asarray(special_ids or [], dtype=np.int64))
    if pool.size == 0:
        raise ValueError("the vocabulary has no ordinary tokens to build prompts from")
    return pool


def _ids(pool: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    return rng.choice(pool, size=n).tolist()


def random_requests(
    num: int,
    input_len: int,
    output_len: int,
    range_ratio: float,
    pool: np.ndarray,
    rng: np.random.Generator,
) -> list[BenchRequest]:
    """Random prompts; input and output lengths each uniform in [len * ratio, len]."""
    in_lens = lengths(input_len, range_ratio, num, rng)
    out_lens = lengths(output_len, range_ratio, num, rng)
    return [
        BenchRequest(prompt_len=int(i), output_len=int(o), input_ids=_ids(pool, int(i), rng))
        for i, o in zip(in_lens, out_lens, strict=True)
    ]


def shared_prefix_requests(
    num_groups: int,
    prompts_per_group: int,
    system_prompt_len: int,
    question_len: int,
    output_len: int,
    pool: np.ndarray,
    rng: np.random.Generator,
) -> list[BenchRequest]:
    """Groups of prompts that share a system prompt, each with its own question; shuffled."""
    for value, flag in (
        (num_groups, "--shared-prefix-num-groups"),
        (prompts_per_group, "--shared-prefix-prompts-per-group"),
        (system_prompt_len, "--shared-prefix-system-prompt-len"),
        (question_len, "--shared-prefix-question-len"),
        (output_len, "--shared-prefix-output-len"),
    ):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    requests = []
    for _ in range(num_groups):
        system = _ids(pool, system_prompt_len, rng)
        for _ in range(prompts_per_group):
            ids = system + _ids(pool, question_len, rng)
            requests.append(BenchRequest(prompt_len=len(ids), output_len=output_len, input_ids=ids))
    order = rng.permutation(len(requests))
    return [requests[i] for i in order]


def _turns(entry: Any) -> list[Any] | None:
    if not isinstance(entry, dict):
        return None
    turns = entry.get("conversations", entry.get("conversation"))
    return turns if isinstance(turns, list) else None


def _turn_text(turn: Any, path: Path) -> str:
    if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
        raise ValueError(f"{path}: a ShareGPT turn must be an object with a string 'value'")
    return turn["value"]


def sharegpt_requests(
    path: str | Path,
    num: int,
    tokenizer: Any,
    context_length: int | None,
    output_len: int | None,
    rng: np.random.Generator,
) -> tuple[list[BenchRequest], int]:
    """First two turns of shuffled ShareGPT conversations: (requests, entries skipped).

    The reply's token count is the output length unless `output_len` is given. Conversations
    with fewer than two turns, too-short prompts or replies, or that do not fit the context
    are skipped and counted.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the ShareGPT file {path}: {e}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: a ShareGPT file is a JSON list of conversations")
    requests: list[BenchRequest] = []
    skipped = 0
    for index in rng.permutation(len(data)):
        if len(requests) == num:
            break
        turns = _turns(data[index])
        if turns is None or len(turns) < 2:
            skipped += 1
            continue
        prompt = _turn_text(turns[0], path)
        prompt_len = len(tokenizer.encode(prompt))
        out_len = output_len or len(tokenizer.encode(_turn_text(turns[1], path)))
        too_short = prompt_len < SHAREGPT_MIN_TOKENS or out_len < SHAREGPT_MIN_TOKENS
        too_long = context_length is not None and prompt_len + out_len > context_length
        if too_short or too_long:
            skipped += 1
            continue
        requests.append(BenchRequest(prompt_len=prompt_len, output_len=out_len, text=prompt))
    return requests, skipped


def check_fits(requests: list[BenchRequest], context_length: int | None) -> None:
    """Fail before the run if a request cannot fit the context (the engine would reject it)."""
    if context_length is None:
        return
    worst = max(requests, key=lambda r: r.prompt_len + r.output_len, default=None)
    if worst is not None and worst.prompt_len + worst.output_len > context_length:
        raise ValueError(
            f"a request needs {worst.prompt_len} prompt + {worst.output_len} output tokens, "
            f"more than the context length {context_length}: lower the dataset lengths "
            "(or raise --context-length for bench offline)"
        )

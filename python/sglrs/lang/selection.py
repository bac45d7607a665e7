"""`select`: score every choice after the prefix in one batched `/generate` request.

1. The prefix alone is prefilled (`max_new_tokens=0`): it enters the radix cache, and its
   token count P is known.
2. One batched request holds `prefix + choice` for every choice, with prompt logprobs from
   position P-1: every choice request reuses the cached prefix, and only its own tokens (plus
   the prefix's last token, which may merge with the choice's first characters) are computed.
3. A choice's tokens are the trailing tokens whose text covers the choice; they are scored by
   the `ChoicesMethod` (token-length-normalized logprob by default).
"""

from __future__ import annotations

import math
import random
from typing import Any

from sglrs.lang.backends.base import Backend
from sglrs.lang.choices import ChoicesMethod, Entry, best_index, mean_logprob


def choice_tokens(entries: list[Entry], choice: str) -> list[Entry]:
    """The shortest tail of `entries` whose token texts cover `choice` (token healing: a token
    shared by the prefix's end and the choice's start belongs to the choice)."""
    covered = 0
    for i in range(len(entries) - 1, -1, -1):
        covered += len(entries[i][2] or "")
        if covered >= len(choice):
            return entries[i:]
    return [e for e in entries if e[0] is not None] or entries


def select_choice(
    backend: Backend,
    prefix: str,
    choices: tuple[str, ...],
    method: ChoicesMethod,
    temperature: float,
) -> tuple[str, dict[str, Any]]:
    """(decision, meta_info) for `choices` after `prefix`."""
    if len(choices) == 1:
        return choices[0], {"method": method.name, "scores": None, "single_choice": True}
    start = 0
    if prefix:
        warm = backend.generate({"text": prefix, "sampling_params": {"max_new_tokens": 0}})
        start = max(int(warm["meta_info"]["prompt_tokens"]) - 1, 0)
    outs = backend.generate(
        {
            "text": [prefix + c for c in choices],
            "sampling_params": {"max_new_tokens": 0, "temperature": 0},
            "return_logprob": True,
            "return_text_in_logprobs": True,
            "logprob_start_len": start,
        }
    )
    conditional = [
        choice_tokens(out["meta_info"]["input_token_logprobs"], c)
        for out, c in zip(outs, choices, strict=True)
    ]
    unconditional = None
    if method.needs_unconditional:
        alone = backend.generate(
            {
                "input_ids": [[e[1] for e in entries] for entries in conditional],
                "sampling_params": {"max_new_tokens": 0, "temperature": 0},
                "return_logprob": True,
                "logprob_start_len": 0,
            }
        )
        unconditional = [out["meta_info"]["input_token_logprobs"] for out in alone]
    keys = method.keys(conditional, unconditional)
    if temperature > 0:
        if not method.scalar():
            raise ValueError(f"select with temperature > 0 needs a scalar method, not {method}")
        index = _sample(keys, temperature)
    else:
        index = best_index(keys)
    meta = {
        "method": method.name,
        "scores": keys,
        "normalized_prompt_logprobs": [mean_logprob(entries) for entries in conditional],
        "input_token_logprobs": conditional,
        "cached_tokens": [out["meta_info"].get("cached_tokens") for out in outs],
    }
    if unconditional is not None:
        meta["unconditional_token_logprobs"] = unconditional
    return choices[index], meta


def _sample(scores: list[float], temperature: float) -> int:
    top = max(scores)
    if top == -math.inf:
        return 0
    weights = [math.exp((s - top) / temperature) for s in scores]
    return random.choices(range(len(scores)), weights=weights)[0]

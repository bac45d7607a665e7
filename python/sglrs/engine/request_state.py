"""What the step loop keeps per request beside the Rust scheduler's own state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sglrs.sampling.params import SamplingParams


@dataclass
class RequestState:
    """One request inside the scheduler process.

    `id` is the scheduler's integer id; `rid` the client's string id. The attributes
    `params`, `prompt_ids`, `output_ids`, `return_logprob` and `top_logprobs_num` make it a
    `SamplingRequest` for the sampler.
    """

    id: int
    rid: str
    prompt_ids: list[int]
    params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    output_ids: list[int] = field(default_factory=list)
    matcher: Any = None  # sglrs.grammar Matcher when the request is constrained
    has_stop_strings: bool = False
    sent_decode_options: bool = False
    stream: bool = False
    # Sampled tokens (and their logprobs, None where not asked) not yet sent in a TokenOut.
    held_ids: list[int] = field(default_factory=list)
    held_logprobs: list[Any] = field(default_factory=list)
    sent_first_token: bool = False
    cached_tokens: int = -1  # set from the first plan's prefix_len (-1: not scheduled yet)
    num_retractions: int = 0
    # Prompt logprobs gathered chunk by chunk, sent with the first output token.
    input_logprobs: list[list[Any]] = field(default_factory=list)
    input_top_logprobs: list[Any] = field(default_factory=list)
    prompt_logprobs_pending: bool = False

    @property
    def wants_prompt_logprobs(self) -> bool:
        return self.return_logprob and self.logprob_start_len >= 0

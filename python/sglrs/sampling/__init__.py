"""Sampling: parameters and validation, batched sampling on the device, logprobs, grammar masks."""

from sglrs.sampling.batch import SamplingBatch, SamplingRequest
from sglrs.sampling.grammar_mask import apply_token_bitmask_, unpack_bitmask
from sglrs.sampling.logprobs import PromptLogprobs, TokenLogprobs, prompt_logprobs
from sglrs.sampling.params import SamplingParams
from sglrs.sampling.sampler import SampleOutput, sample

__all__ = [
    "PromptLogprobs",
    "SampleOutput",
    "SamplingBatch",
    "SamplingParams",
    "SamplingRequest",
    "TokenLogprobs",
    "apply_token_bitmask_",
    "prompt_logprobs",
    "sample",
    "unpack_bitmask",
]

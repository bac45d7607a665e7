"""Prompt logprobs from all-position logits, whole or chunked."""

from __future__ import annotations

import math

import torch

from sglrs.sampling import prompt_logprobs


def _setup(length: int = 9, vocab: int = 20):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(length, vocab, generator=gen)
    prompt = torch.randint(0, vocab, (length,), generator=gen).tolist()
    return logits, prompt


def test_values_and_first_token() -> None:
    logits, prompt = _setup()
    out = prompt_logprobs(logits, prompt, chunk_start=0, logprob_start_len=0, top_logprobs_num=3)
    assert out.start == 0 and len(out.token_logprobs) == len(prompt)
    assert out.token_logprobs[0] == (None, prompt[0]) and out.top_logprobs[0] is None
    ref = torch.log_softmax(logits, -1)
    for p in range(1, len(prompt)):
        value, token = out.token_logprobs[p]
        assert token == prompt[p]
        assert value is not None and math.isclose(value, float(ref[p - 1, token]), rel_tol=1e-5)
        top = out.top_logprobs[p]
        assert top is not None and [i for _, i in top] == ref[p - 1].topk(3).indices.tolist()


def test_chunks_concatenate_to_the_whole() -> None:
    logits, prompt = _setup(11)
    whole = prompt_logprobs(logits, prompt, 0, 2, 2)
    pieces, tops = [], []
    for start, end in ((0, 4), (4, 5), (5, 11)):
        part = prompt_logprobs(logits[start:end], prompt, start, 2, 2)
        pieces += part.token_logprobs
        tops += part.top_logprobs
    assert whole.start == 2
    assert pieces == whole.token_logprobs and tops == whole.top_logprobs
    assert [t for _, t in whole.token_logprobs] == prompt[2:]


def test_start_len_negative_means_none() -> None:
    logits, prompt = _setup()
    out = prompt_logprobs(logits, prompt, 0, -1)
    assert out.token_logprobs == [] and out.start == len(prompt)

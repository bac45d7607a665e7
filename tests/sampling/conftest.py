"""Helpers shared by the sampling tests: build a SamplingBatch from parameter dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sglrs.sampling import SamplingBatch, SamplingParams, SamplingRequest


def make_request(rid: Any, params: dict[str, Any] | None = None, **kw: Any) -> SamplingRequest:
    return SamplingRequest(rid=rid, params=SamplingParams.from_dict(params or {}), **kw)


def make_batch(
    vocab: int,
    requests: Sequence[SamplingRequest],
    eos: Sequence[int] = (),
    seed: int = 0,
) -> SamplingBatch:
    batch = SamplingBatch(vocab, "cpu", eos_token_ids=eos, seed=seed)
    batch.update(requests)
    return batch


@pytest.fixture
def req():
    return make_request


@pytest.fixture
def batch_of():
    return make_batch

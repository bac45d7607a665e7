"""A step whose forward and sampling are queued on the device but whose tokens the host has not
read yet (overlap scheduling keeps one while it plans and launches the next step)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from sglrs.engine.request_state import RequestState


@dataclass
class InflightStep:
    # The requests of the plan's sampling rows, in plan order (captured at launch: some may
    # finish or be aborted before the step resolves; their tokens are then dropped).
    sampled: list[RequestState]
    # Sampled ids on the device: the next plan's placeholder input ids are read from here.
    tokens: torch.Tensor | None = None
    logprobs: list[Any] | None = None
    waited_s: float = 0.0  # how long `host_tokens` waited for the device (step traces)
    _host: torch.Tensor | None = field(default=None, repr=False)
    _ready: torch.cuda.Event | None = field(default=None, repr=False)

    @classmethod
    def launch(
        cls,
        sampled: list[RequestState],
        tokens: torch.Tensor | None,
        logprobs: list[Any] | None = None,
    ) -> InflightStep:
        """Start the device-to-host copy of `tokens` behind the work queued so far."""
        step = cls(sampled, tokens, logprobs)
        if tokens is not None and tokens.is_cuda:
            step._host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
            step._host.copy_(tokens, non_blocking=True)
            step._ready = torch.cuda.Event()
            step._ready.record()
        else:
            step._host = tokens
        return step

    def host_tokens(self) -> list[int]:
        """The sampled ids (waits for this step's sampling only, not for later work)."""
        if self._host is None:
            return []
        if self._ready is not None:
            start = time.perf_counter()
            self._ready.synchronize()
            self.waited_s = time.perf_counter() - start
        return self._host.tolist()

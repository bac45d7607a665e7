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
        logprobs: list[Any] | None,
        readback: TokenReadback,
    ) -> InflightStep:
        """Start the device-to-host copy of `tokens` into `readback`'s buffers, behind the work
        queued so far."""
        step = cls(sampled, tokens, logprobs)
        if tokens is not None and tokens.is_cuda:
            step._host, step._ready = readback.copy(tokens)
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


class TokenReadback:
    """Pinned host buffers and their events for the sampled ids, two used in turn. A step's
    ids are read (`host_tokens`) before the step after it launches, so the buffer a launch
    takes was read two launches ago. Reusing them keeps a pinned allocation, an event and a
    stream lookup out of every step."""

    def __init__(self) -> None:
        self._buffers: list[torch.Tensor | None] = [None, None]
        self._events: list[torch.cuda.Event | None] = [None, None]
        self._stream: torch.cuda.Stream | None = None
        self._turn = 0

    def copy(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event]:
        """A pinned copy of `tokens` queued on the current stream, and its completion event."""
        self._turn ^= 1
        buf, event = self._buffers[self._turn], self._events[self._turn]
        n = tokens.numel()
        if buf is None or buf.numel() < n or buf.dtype != tokens.dtype:
            buf = torch.empty(max(n, 1024), dtype=tokens.dtype, pin_memory=True)
            self._buffers[self._turn] = buf
        if event is None:
            event = self._events[self._turn] = torch.cuda.Event()
        if self._stream is None or self._stream.device != tokens.device:
            self._stream = torch.cuda.current_stream(tokens.device)
        host = buf[:n].view(tokens.shape)
        host.copy_(tokens, non_blocking=True)
        event.record(self._stream)
        return host, event

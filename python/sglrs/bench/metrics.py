"""Per-request timings and the aggregate numbers a benchmark reports.

Latencies are kept in seconds and reported in milliseconds. Inter-token latency is measured
per token: a streamed chunk that brings n tokens after a gap g counts n samples of g / n.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class RequestResult:
    """What one request did; token counts come from the engine's meta_info."""

    success: bool
    start: float = 0.0  # seconds since the benchmark started
    e2e: float = 0.0
    ttft: float | None = None  # only known when streaming
    itls: list[float] = field(default_factory=list)
    prompt_len: int = 0
    output_len: int = 0
    cached_tokens: int = 0
    error: str = ""


class StreamTimer:
    """Turns the arrival times of streamed chunks into TTFT and per-token ITL samples."""

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.ttft: float | None = None
        self.itls: list[float] = []
        self._tokens = 0
        self._last = sent_at

    def chunk(self, now: float, completion_tokens: int) -> None:
        new = completion_tokens - self._tokens
        if new <= 0:  # e.g. the final chunk that only carries the finish reason
            return
        if self.ttft is None:
            self.ttft = now - self.sent_at
            new -= 1  # the first token's wait is the TTFT; the rest of the chunk came with it
            if new:
                self.itls.extend([0.0] * new)
        else:
            self.itls.extend([(now - self._last) / new] * new)
        self._tokens = completion_tokens
        self._last = now


@dataclass
class Summary:
    """Distribution of a latency, in milliseconds."""

    mean: float
    median: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: list[float]) -> Summary | None:
        if not seconds:
            return None
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(
            mean=float(ms.mean()),
            median=float(np.median(ms)),
            p99=float(np.percentile(ms, 99)),
            max=float(ms.max()),
        )


@dataclass
class BenchMetrics:
    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    total_cached_tokens: int
    request_throughput: float  # requests/s
    input_throughput: float  # tokens/s
    output_throughput: float  # tokens/s
    total_throughput: float  # tokens/s
    cache_hit_rate: float  # cached prompt tokens / prompt tokens
    mean_concurrency: float  # sum of request latencies / duration
    ttft_ms: Summary | None
    itl_ms: Summary | None
    tpot_ms: Summary | None  # per request: (e2e - ttft) / (output tokens - 1)
    e2e_ms: Summary | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(results: list[RequestResult], duration_s: float) -> BenchMetrics:
    """Aggregate the successful requests over the benchmark's wall time `duration_s`."""
    if duration_s <= 0:
        raise ValueError(f"the benchmark duration must be positive, got {duration_s}")
    ok = [r for r in results if r.success]
    inputs = sum(r.prompt_len for r in ok)
    outputs = sum(r.output_len for r in ok)
    cached = sum(r.cached_tokens for r in ok)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    tpots = [
        (r.e2e - r.ttft) / (r.output_len - 1) for r in ok if r.ttft is not None and r.output_len > 1
    ]
    return BenchMetrics(
        completed=len(ok),
        failed=len(results) - len(ok),
        duration_s=duration_s,
        total_input_tokens=inputs,
        total_output_tokens=outputs,
        total_cached_tokens=cached,
        request_throughput=len(ok) / duration_s,
        input_throughput=inputs / duration_s,
        output_throughput=outputs / duration_s,
        total_throughput=(inputs + outputs) / duration_s,
        cache_hit_rate=cached / inputs if inputs else 0.0,
        mean_concurrency=sum(r.e2e for r in ok) / duration_s,
        ttft_ms=Summary.of(ttfts),
        itl_ms=Summary.of([x for r in ok for x in r.itls]),
        tpot_ms=Summary.of(tpots),
        e2e_ms=Summary.of([r.e2e for r in ok]),
    )


def finish(result: RequestResult, output: dict[str, Any]) -> RequestResult:
    """Fill token counts from a final output's meta_info; an aborted request has failed."""
    meta = output["meta_info"]
    result.prompt_len = int(meta["prompt_tokens"])
    result.output_len = int(meta["completion_tokens"])
    result.cached_tokens = int(meta.get("cached_tokens") or 0)
    reason = meta.get("finish_reason") or {}
    if reason.get("type") == "abort":
        result.error = f"aborted: {reason.get('message') or 'no reason given'}"
        return result
    result.success = True
    return result
